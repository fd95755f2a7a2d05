package coordinator

import (
	"context"
	"runtime/debug"
	"sync/atomic"

	"github.com/asynkron/protoactor-go/actor"

	fa "github.com/actorflight/flight/actor"
	"github.com/actorflight/flight/internal/gate"
	"github.com/actorflight/flight/mailbox"
)

// shard is a supervisor actor: it owns the key actors of its share of the
// keyspace and handles every message about them, one at a time, drained by
// the goroutine that posts to it (see package mailbox). Its own messages are
// posted to its mailbox directly (Do, DoChan, send, postInternal); protoactor's
// lifecycle messages reach it through Receive.
type shard[K comparable, V, R any] struct {
	c    *Engine[K, V, R]
	pid  *actor.PID
	mb   *mailbox.Mailbox
	keys owners[K, V] // owned by the actor
	// free holds retired owners kept for reuse (fa.Owner.Recyclable), at
	// most maxFree: a distinct key's flight then allocates no owner
	// (owned by the actor).
	free  []*fa.Owner[K, V]
	env   fa.Env[K, V] // owned by the actor (Closed)
	stats fa.Stats

	drainedClosed bool // owned by the actor
	// anchor is the flight.Coordinator of a DoChan caller, held while the
	// shard has any key, and dropped with its last key (owned by the actor).
	// A DoChan caller may drop the coordinator while its answer is pending;
	// the shard is reachable from the actor system's registry, so holding
	// the coordinator here keeps the garbage collector from closing it under
	// a flight (Do callers keep it reachable on their own stacks).
	anchor any

	store *store[K, V]    // retained results; nil: none retained
	brk   *breakers[K, V] // per-key breakers (breaker.go); nil: none

	pending atomic.Int64  // DoChan calls posted and not yet handled (counted only with a backlog bound)
	api     gate.Gate     // callers of Do, DoChan and Forget that may post
	posts   gate.Gate     // timers, ctx watches and workers that may post
	drained chan struct{} // closed once the shard is closed and no fn of it runs
	stopped chan struct{} // closed when the actor has stopped
}

// testHookReceive, when set by a test, runs at the start of every message a
// shard handles; a panic in it stands for a bug in the shard's own code.
var testHookReceive func(msg any)

// Receive handles one message. Supervision: a panic while handling a message
// is contained here rather than escalated to protoactor, whose strategies
// drop the failing message (its callers would never be answered) and, after
// ten failures in ten seconds, stop the actor (every later caller of the
// shard would hang). Containing it means: the key the message was about has
// every waiter answered with a *PanicError and loses its flights, so it is
// usable again at once; every other key is untouched; the shard goes on
// serving — protoactor's Resume directive, applied to one key.
func (s *shard[K, V, R]) Receive(ctx actor.Context) {
	msg := ctx.Message()
	if _, ok := msg.(*actor.Stopped); ok {
		defer close(s.stopped) // even if handling it faults: Close waits for it
	}
	s.handle(msg)
}

// handle handles one message: the mailbox's Handle for the messages posted
// directly, and Receive's body for protoactor's. It is kept small, with the
// rare messages in handleRare: a caller whose post finds its shard idle runs
// it on its own goroutine, and a deep stack there would make every such
// caller grow its stack (measured: a fifth of a 10,000-caller stampede's
// CPU went to copying stacks).
func (s *shard[K, V, R]) handle(msg any) {
	defer func() {
		if r := recover(); r != nil {
			s.fault(msg, r, debug.Stack())
		}
		s.env.Publish() // the message's changes to the gauges, in one add
	}()
	if testHookReceive != nil {
		testHookReceive(msg)
	}
	switch m := msg.(type) {
	case *call[K, V, R]:
		s.join(m)
	case fa.Done[K, V]:
		k := m.F.Owner()
		k.Finish(m.F)
		s.retireIfIdle(k)
	case fa.Leave[K, V]:
		if m.W.Flight == nil {
			break // a Do caller that left while its join was queued: refused
		}
		k := m.W.Flight.Owner()
		k.Leave(m.W)
		s.retireIfIdle(k)
	default:
		s.handleRare(msg)
	}
}

// handleRare handles the messages that are not a flight's join, return or
// leave (handle's recover covers it).
//
//go:noinline
func (s *shard[K, V, R]) handleRare(msg any) {
	switch m := msg.(type) {
	case fa.Expired[K, V]:
		k := m.F.Owner()
		k.Expire(m.F)
		s.retireIfIdle(k)
	case fa.Retry[K, V]:
		k := m.F.Owner()
		k.Retry(m.F)
		s.retireIfIdle(k)
	case *forgetMsg[K]:
		if s.store != nil {
			s.store.remove(m.key)
		}
		if s.brk != nil {
			s.brk.remove(m.key) // Forget closes the key's breaker
		}
		if k := s.keys.get(m.h, m.key); k != nil {
			k.Forget()
		}
		if m.done != nil {
			close(m.done)
		}
	case *forgetWhereMsg[K]:
		s.forgetWhere(m)
		close(m.done)
	case expireMsg:
		s.store.expire()
	case breakerMsg:
		s.brk.expire(func(key K) bool { return s.keys.get(s.c.hash(key), key) != nil })
	case *refreshMsg[K, V]:
		s.refresh(m)
	case *closeMsg:
		if s.store != nil {
			s.store.close()
		}
		if s.brk != nil {
			s.brk.close()
		}
		s.env.Closed = true
		for k := range s.keys.all() {
			k.Close(s.env.Errors.Closed)
			s.retireIfIdle(k)
		}
		s.finished()
		close(m.done)
	}
}

// finished runs after each execution is retired (Env.Finished) and on close:
// it tells Close when the closed shard has no fn running. The counter it reads
// is the shard's own, written only by the shard actor, so no global
// WaitGroup is touched per flight.
func (s *shard[K, V, R]) finished() {
	if s.env.Closed && s.env.InFlight() == 0 && !s.drainedClosed {
		s.env.Publish() // before Close can return
		s.drainedClosed = true
		close(s.drained)
	}
}

func (s *shard[K, V, R]) join(cl *call[K, V, R]) {
	if (s.store != nil || s.brk != nil || cl.ch != nil) && s.joinRare(cl) {
		return
	}
	k := s.owner(cl.key, cl.h)
	k.Join(&cl.w)
	if cl.anchor != nil {
		s.anchor = cl.anchor
		cl.anchor = nil
	}
	s.retireIfIdle(k) // a refused first caller leaves the key empty
	s.replyTo(cl)
}

// joinRare is the part of join that most calls skip: a DoChan call's
// backlog count, a retained result, an open breaker. It reports
// whether it answered the call. Apart from join, and not inlined, to keep
// join's frame small (see Engine.Do).
//
//go:noinline
func (s *shard[K, V, R]) joinRare(cl *call[K, V, R]) bool {
	if cl.ch != nil && s.c.backlog > 0 {
		s.pending.Add(-1)
	}
	if s.store != nil && !s.env.Closed && cl.w.Ctx.Err() == nil {
		// The result may have been retained since the caller looked.
		if h, ok := s.store.find(cl.key, false); ok {
			s.stats.Hits.Add(1)
			if t := s.c.cfg.Tracer; t != nil { // tracing hook
				t.Hit(cl.w.Ctx)
			}
			cl.answer(h.val, h.err, true)
			s.replyTo(cl)
			return true
		}
	}
	if s.brk != nil && !s.env.Closed && cl.w.Ctx.Err() == nil && s.ownRefused(cl) {
		s.replyTo(cl)
		return true
	}
	return false
}

// replyTo tells a Do caller that its join was handled: its first signal
// (see fa.Waiter.Signal), unless it was queued as a joiner of a running
// flight, whose one signal comes with the result.
func (s *shard[K, V, R]) replyTo(cl *call[K, V, R]) {
	if cl.ch == nil && !cl.replied && !cl.w.Queued() {
		cl.replied = true
		s.env.Publish() // the join's changes to the gauges, before the caller goes on
		cl.w.Signal()
	}
}

// owner returns key's actor, making it on the key's first message; h is
// key's hash.
func (s *shard[K, V, R]) owner(key K, h uint64) *fa.Owner[K, V] {
	k := s.keys.get(h, key)
	if k == nil {
		if n := len(s.free); n > 0 {
			k = s.free[n-1]
			s.free[n-1] = nil
			s.free = s.free[:n-1]
			k.Reuse(key)
		} else {
			k = fa.NewOwner(key, &s.env)
		}
		k.Hash = h
		s.keys.put(k)
		s.stats.Keys.Add(1)
	}
	return k
}

// retireIfIdle removes a key actor that has no flight left. A key actor, once
// retired, never comes back; a stale message about it (a late leave) finds it
// idle and the map already pointing elsewhere or nowhere.
func (s *shard[K, V, R]) retireIfIdle(k *fa.Owner[K, V]) {
	if k.Idle() && s.keys.remove(k) {
		s.stats.Keys.Add(-1)
		if s.keys.len() == 0 {
			s.anchor = nil
		}
		if len(s.free) < maxFree && k.Recyclable() {
			k.Recycle()
			s.free = append(s.free, k)
		}
	}
}

// maxFree bounds the retired owners a shard keeps for reuse: enough for the
// keys one shard has in flight at once under a busy load, few enough that
// an idle coordinator holds a few kilobytes (no goroutine, no key).
const maxFree = 64

// fault contains a panic in the shard's own handling of msg (see Receive).
func (s *shard[K, V, R]) fault(msg any, r any, stack []byte) {
	err := s.env.Errors.Panic(r, stack)
	s.c.cfg.Logger.Error("flight: internal fault in shard; the key's waiters get a *PanicError",
		"panic", r, "message", msg)
	var k *fa.Owner[K, V]
	switch m := msg.(type) {
	case *call[K, V, R]:
		k = s.keys.get(m.h, m.key)
		if m.w.Flight == nil && m.w.Err == nil {
			m.w.Err = err
			if m.ch != nil {
				var zero V
				m.Deliver(zero, err, false)
			}
		}
		defer s.replyTo(m)
	case fa.Done[K, V]:
		k = m.F.Owner()
		k.FailFlight(m.F, err) // its waiters: once retired, Fail below no longer sees it
		k.Retire(m.F)          // finish the bookkeeping of the execution if it did not
	case fa.Leave[K, V]:
		if m.W.Flight != nil {
			k = m.W.Flight.Owner()
		}
	case fa.Expired[K, V]:
		k = m.F.Owner()
	case fa.Retry[K, V]:
		k = m.F.Owner()
	case *forgetMsg[K]:
		k = s.keys.get(m.h, m.key)
		if m.done != nil {
			defer close(m.done)
		}
	case *refreshMsg[K, V]:
		s.store.unclaim(m.i, m.gen)
	case *forgetWhereMsg[K]:
		defer close(m.done) // its keys keep their flights; ForgetWhere returns
	case *closeMsg:
		// Finish closing the other keys; this one is failed below.
		s.env.Closed = true
		for other := range s.keys.all() {
			other.Close(s.env.Errors.Closed)
			s.retireIfIdle(other)
		}
		defer close(m.done)
		defer s.finished()
	}
	if k != nil {
		k.Close(err)
		s.retireIfIdle(k)
	}
}

// send posts msg to the shard's mailbox directly, in a node of its own (an
// allocation: for the rare messages; the hot ones carry their node, see
// post). Callers must be inside one of its gates (or be Close, which stops
// the actor only after both gates are drained).
func (s *shard[K, V, R]) send(msg any) {
	s.mb.Post(&mailbox.Node{Msg: msg})
}

// postInternal is how timers, ctx watches and workers reach the shard. fn's
// return (Done) and a caller leaving (Leave) are posted in the node their
// flight or waiter carries: no allocation.
//
// A Done skips the posts gate (two atomic adds and a load per flight): its
// flight is counted in the shard's InFlight until the shard handles this
// very message, and Close closes that gate, and stops the actor, only after
// the closed shard's InFlight has reached 0 (shutdown's step 2; Owner.Close
// answers and cancels a running flight but leaves it counted until its fn
// returns). So a Done is always posted to a live actor. Timers and ctx
// watches fire at any time, and go through the gate.
func (s *shard[K, V, R]) postInternal(msg any) {
	if m, ok := msg.(fa.Done[K, V]); ok {
		s.mb.Post(m.F.DoneNode())
		return
	}
	if s.posts.Enter() {
		switch m := msg.(type) {
		case fa.Leave[K, V]:
			s.mb.Post(m.W.LeaveNode())
		default:
			s.send(msg)
		}
		s.posts.Exit()
	}
}

// hit answers a call from key's retained result, if it has one still valid:
// ok reports a hit. It runs on the caller's goroutine: a read lock, a map
// lookup, a clock reading, no allocation. A hit on a result older than
// WithRefreshAhead starts one background refresh of the key with the
// caller's fn and ctx values.
func (s *shard[K, V, R]) hit(ctx context.Context, key K, fn func(context.Context) (V, error)) (val V, err error, ok bool) {
	h, ok := s.store.find(key, true)
	if !ok || s.api.Closed() {
		return val, nil, false // after Close, the call goes on to be refused
	}
	s.stats.Hits.Add(1)
	if t := s.c.cfg.Tracer; t != nil { // tracing hook
		t.Hit(ctx)
	}
	if h.refresh {
		if s.api.Enter() {
			s.send(&refreshMsg[K, V]{i: h.i, gen: h.gen, ctx: ctx, fn: fn})
			s.api.Exit()
		}
		// else closed: the claim does not matter any more
	}
	return h.val, h.err, true
}

// refresh starts the refresh a hit asked for, unless the result it would
// refresh is gone or replaced already.
func (s *shard[K, V, R]) refresh(m *refreshMsg[K, V]) {
	key, ok := s.store.current(m.i, m.gen)
	if !ok {
		return
	}
	if s.brk != nil && s.brk.ownOpen(key) {
		s.store.unclaim(m.i, m.gen) // an open breaker starts no flight
		return
	}
	k := s.owner(key, s.c.hash(key))
	if !k.Refresh(m.ctx, m.fn) {
		s.store.unclaim(m.i, m.gen)
	}
	s.retireIfIdle(k)
}

// retain is the key actors' Env.Retain: it retains a result, and tells the
// key's breaker, if it has a state, which result the key holds now (see
// bstate.held). A refresh whose result is not retained leaves its entry's
// refresh claimed: each retained result is refreshed at most once, so a
// failing refresh is not started again on every hit (the old result stays
// until its TTL).
func (s *shard[K, V, R]) retain(key K, val V, err error, keep, _ bool) {
	if keep && (err == nil || s.store.cfg.Retainable == nil || s.store.cfg.Retainable(err)) {
		if h := s.store.keep(key, val, err); h != 0 && s.brk != nil {
			s.brk.retained(key, h)
		}
	}
}
