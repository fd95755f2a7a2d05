package batch

import (
	"context"
	"runtime/debug"

	"github.com/asynkron/protoactor-go/actor"

	"github.com/actorflight/flight/coordinator"
	"github.com/actorflight/flight/internal/gate"
	"github.com/actorflight/flight/mailbox"
)

// shard is a key actor supervisor: it owns the entries of its share of the
// keyspace and handles every message about them (join, leave, result,
// close), one at a time, on package mailbox's mailbox, as the
// Coordinator's shards do: a caller's join and leave are posted to the
// mailbox directly, in the node the call carries (no protoactor envelope,
// no allocation), and protoactor's own messages (Stopped) come through
// Receive.
type shard[K comparable, V, R any] struct {
	e      *Engine[K, V, R]
	idx    int32
	pid    *actor.PID
	mb     *mailbox.Mailbox
	keys   map[K]*entry[K, V, R] // owned by the actor
	closed bool                  // owned by the actor
	// anchor is the flight.Batcher of a LoadChan caller, held while the
	// shard has any key and dropped with its last one (owned by the actor):
	// the shard is reachable from the actor system's registry, so the
	// garbage collector does not close a Batcher under a pending LoadChan.
	anchor any

	api     gate.Gate     // callers of Load, LoadChan and LoadMany that may post
	stopped chan struct{} // closed when the actor has stopped
}

// entry is one key with callers: the key's actor. It is made by the key's
// first caller, joined by the later ones, and detached from its shard's map
// when its callers are answered or have all left, so an idle key costs
// nothing.
type entry[K comparable, V, R any] struct {
	key   K
	shard int32
	first context.Context // the first caller's ctx: the batch's values

	// Owned by the shard actor.
	calls   []*call[K, V, R] // every caller, answered or not; starts in call1
	call1   [1]*call[K, V, R]
	waiters int32 // callers not answered yet
	joined  int32 // callers ever
	gone    bool  // detached: answered, or every caller left

	// Owned by the collector (under its mutex).
	refresh bool // made by a refresh-ahead load (retain.go): a failure retains nothing

	batch   *batch[K, V, R] // the batch the key was added to
	dropped bool            // taken out of its batch before dispatch
}

// call is one caller's request for one key, and the message that joins it.
// key, ctx and the sink (ch, or g) are set by the caller before it posts;
// the rest belongs to the shard.
type call[K comparable, V, R any] struct {
	key     K
	ctx     context.Context
	ch      chan R       // Load, LoadChan: buffer of one, receives exactly one R
	g       *group[K, V] // LoadMany
	watch   bool         // LoadChan with a cancellable ctx: the shard watches it
	anchor  any          // LoadChan: keeps the caller's Batcher reachable while queued
	refresh bool         // a refresh-ahead load (retain.go): nobody reads ch

	entry    *entry[K, V, R]
	answered bool
	stop     func() bool // stops the ctx watch

	node, leave mailbox.Node // the join's and the leave's, posted once each

	// en1 is the key's entry when this call is its key's first: a key
	// with one caller costs one allocation, not two (owned by the shard).
	en1 entry[K, V, R]
}

// leaveMsg is posted when a caller's ctx is done before its answer.
type leaveMsg[K comparable, V, R any] struct{ c *call[K, V, R] }

// resultMsg is sent by the collector to each shard with keys in b once
// b's outcome is resolved.
type resultMsg[K comparable, V, R any] struct{ b *batch[K, V, R] }

// send posts msg to the shard's mailbox: a join or a leave in the node its
// call carries, anything else in a node of its own. Callers must be inside
// one of the engine's gates (or be Close, which stops the actor only after
// they are drained).
func (s *shard[K, V, R]) send(msg any) {
	switch m := msg.(type) {
	case *call[K, V, R]:
		m.node.Msg = m
		s.mb.Post(&m.node)
	case leaveMsg[K, V, R]:
		m.c.leave.Msg = m
		s.mb.Post(&m.c.leave)
	default:
		s.mb.Post(&mailbox.Node{Msg: msg})
	}
}

// failMsg is sent by the collector when its own handling of a key's
// message faulted: the shard answers the key's callers with err.
type failMsg[K comparable, V, R any] struct {
	e   *entry[K, V, R]
	err error
}

// testHookShard and testHookCollector, when set by a test, run at the start
// of every message a shard or the collector handles; a panic in them stands
// for a bug in the actor's own code.
var testHookShard, testHookCollector func(msg any)

// Receive handles one message. Supervision, as for the Coordinator's
// shards: a panic while handling a message is contained here rather than
// escalated to protoactor, whose strategies drop the failing message (its
// callers would never be answered) and, after ten failures in ten seconds,
// stop the actor (every later load of the shard would hang). Containing it
// means: every key the message was about has all its callers answered with
// a *PanicError and is detached, so that it is usable again at once (its
// batch, if running, goes on and no longer answers it); every other key is
// untouched; the shard goes on serving. See fault.
func (s *shard[K, V, R]) Receive(ctx actor.Context) { s.handle(ctx.Message()) }

// handle handles one message: the mailbox's Handle for the messages posted
// directly, and Receive's body for protoactor's.
func (s *shard[K, V, R]) handle(msg any) {
	if _, ok := msg.(*actor.Stopped); ok {
		defer close(s.stopped) // even if handling it faults: Close waits for it
	}
	defer func() {
		if r := recover(); r != nil {
			s.fault(msg, r, debug.Stack())
		}
	}()
	if testHookShard != nil {
		testHookShard(msg)
	}
	switch m := msg.(type) {
	case *call[K, V, R]:
		s.join(m)
	case leaveMsg[K, V, R]:
		s.leave(m.c)
	case resultMsg[K, V, R]:
		s.result(m.b)
	case failMsg[K, V, R]:
		s.fail(m.e, m.err)
	case *closeMsg:
		s.close()
		close(m.done)
	default:
		if s.e.ret != nil && coordinator.IsExpire(msg) {
			s.e.ret.Expire(int(s.idx))
		}
	}
}

// fault contains a panic in the shard's own handling of msg (see Receive).
// It answers every caller still waiting for the keys msg was about with a
// *PanicError; answer and publish skip callers already answered, so no
// caller is answered twice whatever the handler had done before it failed.
func (s *shard[K, V, R]) fault(msg, r any, stack []byte) {
	err := s.e.cfg.Errors.Panic(r, stack)
	s.e.cfg.Logger.Error("flight: internal fault in batch shard; the key's callers get a *PanicError",
		"panic", r, "message", msg)
	var zero V
	switch m := msg.(type) {
	case *call[K, V, R]:
		if en := s.keys[m.key]; en != nil {
			s.fail(en, err)
		}
		if !m.answered {
			if m.entry == nil {
				s.answer(m, zero, err, false) // never counted in: nothing to undo
			} else if !m.entry.gone {
				s.fail(m.entry, err)
			}
		}
	case leaveMsg[K, V, R]:
		if en := m.c.entry; en != nil && !en.gone {
			s.fail(en, err) // the leaver too, if not answered yet: its one answer
		}
	case resultMsg[K, V, R]:
		for _, en := range m.b.entries {
			if en.shard == s.idx && !en.gone {
				s.fail(en, err)
			}
		}
	case failMsg[K, V, R]:
		s.fail(m.e, err)
	case *closeMsg:
		// Finish closing: every caller still waiting gets ErrClosed.
		s.close()
		close(m.done)
	}
}

// fail answers every caller of en still waiting with err and detaches en,
// and tells the collector, as if its callers had left: a key not dispatched
// yet is taken out of its batch, and a running batch none of whose keys
// has a caller left is cancelled.
func (s *shard[K, V, R]) fail(en *entry[K, V, R], err error) {
	if en.gone {
		return
	}
	var zero V
	s.publish(en, zero, err)
	s.e.col.send(dropMsg[K, V, R]{en})
}

func (s *shard[K, V, R]) join(c *call[K, V, R]) {
	var zero V
	if s.closed {
		s.answer(c, zero, s.e.cfg.Errors.Closed, false)
		return
	}
	if err := c.ctx.Err(); err != nil {
		s.answer(c, zero, err, false)
		return
	}
	st := &s.e.stats
	en := s.keys[c.key]
	if en == nil {
		en = &c.en1
		*en = entry[K, V, R]{key: c.key, shard: s.idx, first: c.ctx, refresh: c.refresh}
		en.calls = en.call1[:0] // a key with one caller needs no slice of its own
		s.keys[c.key] = en
		st.Keys.Add(1)
		s.e.col.send(addMsg[K, V, R]{en})
	} else {
		// Before Joins counts it: the link reaches the collector before
		// anything that follows a caller's seeing the join counted.
		s.traceJoin(en, c.ctx) // tracing hook (trace.go)
		st.Joins.Add(1)
	}
	st.Loads.Add(1)
	st.AddGauges(0, 1)
	if c.anchor != nil {
		s.anchor, c.anchor = c.anchor, nil
	}
	en.calls = append(en.calls, c)
	en.waiters++
	en.joined++
	c.entry = en
	if c.watch {
		e := s.e
		c.stop = context.AfterFunc(c.ctx, func() { e.post(s, leaveMsg[K, V, R]{c}) })
	}
}

// answer gives c its one answer.
func (s *shard[K, V, R]) answer(c *call[K, V, R], v V, err error, shared bool) {
	c.answered = true
	if c.stop != nil {
		c.stop()
	}
	if err != nil && err == s.e.cfg.Errors.Stale {
		s.e.stats.Stale.Add(1)
		if c.g != nil {
			err = nil // LoadMany: a value like any other
		}
	}
	if c.g != nil {
		c.g.deliver(c.key, v, err)
		return
	}
	c.ch <- s.e.cfg.Hooks.Result(v, err, shared)
}

// leave detaches a caller whose ctx is done; a LoadChan caller gets
// ctx.Err() on its channel. When the key's last caller leaves, the entry is
// detached (a later caller starts a new one) and the collector told: a key
// not dispatched yet is taken out of its batch, and a running batch whose
// keys have all lost their callers is cancelled.
func (s *shard[K, V, R]) leave(c *call[K, V, R]) {
	en := c.entry
	if c.answered || en == nil || en.gone {
		return
	}
	c.answered = true
	if c.stop != nil {
		c.stop()
	}
	if c.watch {
		var zero V
		c.ch <- s.e.cfg.Hooks.Result(zero, c.ctx.Err(), false)
	}
	en.waiters--
	s.e.stats.AddGauges(0, -1)
	if en.waiters == 0 {
		s.detach(en)
		s.e.col.send(dropMsg[K, V, R]{en})
	}
}

func (s *shard[K, V, R]) detach(en *entry[K, V, R]) {
	en.gone = true
	en.calls = nil
	if s.keys[en.key] == en {
		delete(s.keys, en.key)
		s.e.stats.Keys.Add(-1)
		if len(s.keys) == 0 {
			s.anchor = nil
		}
	}
}

// result answers the callers of this shard's keys in b.
func (s *shard[K, V, R]) result(b *batch[K, V, R]) {
	if s.closed {
		return // every caller was answered with ErrClosed
	}
	for _, en := range b.entries {
		if en.shard != s.idx || en.gone {
			continue
		}
		v, err := b.outcome(en.key)
		if s.e.ret != nil {
			v, err = s.retain(en, b, v, err)
		}
		s.publish(en, v, err)
	}
}

// publish answers every caller of en still waiting and detaches it.
func (s *shard[K, V, R]) publish(en *entry[K, V, R], v V, err error) {
	shared := en.joined > 1
	for _, c := range en.calls {
		if !c.answered {
			s.answer(c, v, err, shared)
		}
	}
	s.e.stats.AddGauges(0, -int64(en.waiters))
	en.waiters = 0
	s.detach(en)
}

// close answers every caller still waiting with Errors.Closed; later joins
// are refused and later results ignored.
//
// After a fault during close, fault calls it again: the entries it had
// answered are gone from the map already.
func (s *shard[K, V, R]) close() {
	s.closed = true
	var zero V
	for _, en := range s.keys {
		s.publish(en, zero, s.e.cfg.Errors.Closed)
	}
	if s.e.ret != nil {
		s.e.ret.Close(int(s.idx)) // drops every retained result, stops the timer
	}
}
