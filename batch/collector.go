package batch

import (
	"context"
	"runtime/debug"
	"slices"
	"sync"
	"sync/atomic"
	"time"

	"github.com/actorflight/flight/internal/outcome"
	"github.com/actorflight/flight/internal/tracing"
)

// collector owns the batches: the open one collecting keys, the full ones
// waiting for a slot (WithMaxConcurrentBatches), and the running ones.
//
// It is not an actor of its own: its events (add and drop from the shards,
// tick and expired from its timers, done from the workers, close) are
// handled under its mutex, on the goroutine that has them, one at a time
// as an actor's messages would be. A load thus costs one message (to its
// key's shard), not two. What it sends to the shards (their keys' results,
// failures) is sent after the mutex is released, since a send may run a
// shard's handler inline, which may call the collector again.
type collector[K comparable, V, R any] struct {
	e *Engine[K, V, R]

	mu  sync.Mutex // protects every field below but drained, and the batches' collector-owned fields
	out []shardMsg // sends to make once mu is released

	opens   []*batch[K, V, R] // collecting keys, oldest first: at most one per scope (one in all without WithScope)
	ready   []*batch[K, V, R] // full, waiting for a slot, oldest first
	running map[*batch[K, V, R]]struct{}
	closed  bool
	wait    *time.Timer // the oldest open batch's WithMaxWait deadline (armWait); nil until the first batch

	drainedClosed bool
	drained       chan struct{} // closed once closed and no fn runs
}

// shardMsg is a message for a shard, sent once the collector's mutex is
// released.
type shardMsg struct {
	to  int32
	msg any
}

// batch is one call of fn: the keys collected for it and, once dispatched,
// its context, its outcome and the shards to tell.
//
// The collector owns every field, except the outcome fields, which the
// worker writes before it hands doneMsg to the collector (its mutex orders
// those writes before the collector reads them). The collector writes the
// resolved fields before it posts resultMsg to the shards, which then only
// read them, with entries.
type batch[K comparable, V, R any] struct {
	c       *collector[K, V, R]
	entries []*entry[K, V, R] // first-arrival order; compacted at dispatch
	n       int               // entries not dropped
	live    int               // after dispatch: entries whose callers have not all left
	timer   *time.Timer       // after dispatch: the WithTimeout deadline; nil: none

	due        bool // WithMaxWait has passed: dispatch as soon as a slot is free
	dispatched bool
	answered   bool // resolved and posted to the shards (or dropped by Close)
	finished   bool // fn has returned

	keys   []K
	scope  any       // Config.Scope of its keys: a batch never mixes two scopes
	opened time.Time // when the batch opened: its WithMaxWait deadline is opened+MaxWait
	ctx    batchCtx  // fn's ctx; its deadline is the WithTimeout one

	// For the recursive-load check (recursive.go), read by loads made with ctx.
	returned   atomic.Bool // set by the worker once fn has returned (or panicked)
	keySetOnce sync.Once
	keySet     map[K]struct{} // keys as a set, for batches larger than smallBatch

	// Written by the worker.
	vals   map[K]V
	kerrs  map[K]error
	err    error
	how    outcome.How
	pvalue any
	pstack []byte

	trace *tracing.Batch // WithTracerProvider: the batch's span (trace.go); nil: none

	// Resolved by the collector.
	rerr   error       // the error of every key; nil: per key
	rvals  map[K]V     // values
	rkerrs map[K]error // per-key errors (KeyErrors)
}

// outcome returns key's answer from a resolved batch.
func (b *batch[K, V, R]) outcome(key K) (V, error) {
	var zero V
	if b.rerr != nil {
		return zero, b.rerr
	}
	if err := b.rkerrs[key]; err != nil {
		return zero, err
	}
	v, ok := b.rvals[key]
	if !ok {
		return zero, b.c.e.cfg.Errors.NotFound
	}
	return v, nil
}

// tickMsg is posted by the collector's WithMaxWait timer: the open batch
// may be due.
type tickMsg struct{}

// Messages to the collector. Each is a struct of one pointer, so boxing it
// in an interface does not allocate.
type (
	addMsg[K comparable, V, R any]     struct{ e *entry[K, V, R] }
	dropMsg[K comparable, V, R any]    struct{ e *entry[K, V, R] }
	doneMsg[K comparable, V, R any]    struct{ b *batch[K, V, R] } // fn returned
	expiredMsg[K comparable, V, R any] struct{ b *batch[K, V, R] } // WithTimeout passed
)

// send hands msg to the collector: it is handled at once, on the caller's
// goroutine, under the collector's mutex; then the messages it made for the
// shards are sent. A closeMsg's done is closed after those sends.
func (c *collector[K, V, R]) send(msg any) {
	c.mu.Lock()
	c.handle(msg)
	out := c.out
	if len(out) == 0 {
		out = nil // nothing to send: keep the buffer where it is
	} else {
		c.out = nil
	}
	c.mu.Unlock()
	for _, o := range out {
		c.e.shards[o.to].send(o.msg)
	}
	if out != nil {
		// Give the buffer back, so that an event costs no allocation for
		// its sends, unless another event made a buffer of its own meanwhile.
		clear(out)
		c.mu.Lock()
		if c.out == nil {
			c.out = out[:0]
		}
		c.mu.Unlock()
	}
	if m, ok := msg.(*closeMsg); ok {
		close(m.done)
	}
}

// tell queues msg for shard i (sent by send once the mutex is released).
func (c *collector[K, V, R]) tell(i int32, msg any) {
	c.out = append(c.out, shardMsg{i, msg})
}

// handle handles one event; c.mu is held. A panic while handling it is
// contained as in the shards (see shard.Receive and fault): the callers of
// the keys the event was about are answered with a *PanicError, the
// collector's own bookkeeping (slots, gauges, Close's wait for fn) is
// finished, and it goes on serving.
func (c *collector[K, V, R]) handle(msg any) {
	defer func() {
		if r := recover(); r != nil {
			c.fault(msg, r, debug.Stack())
		}
	}()
	if testHookCollector != nil {
		testHookCollector(msg)
	}
	switch m := msg.(type) {
	case addMsg[K, V, R]:
		c.add(m.e)
	case dropMsg[K, V, R]:
		c.drop(m.e)
	case tickMsg:
		c.tick()
	case doneMsg[K, V, R]:
		c.done(m.b)
	case expiredMsg[K, V, R]:
		c.expire(m.b)
	case *linkMsg[K, V, R]:
		c.traceLink(m) // tracing hook (trace.go)
	case *closeMsg:
		c.close()
	}
}

// fault contains a panic in the collector's handling of msg:
//   - add: the key's shard answers its callers with the *PanicError (failMsg);
//   - drop: nothing waits for the key; at worst its batch keeps it, or a
//     batch with no caller left runs to its end instead of being cancelled;
//   - tick (of the open batch), expired: the batch is answered with the
//     *PanicError at once (a batch not dispatched yet is discarded; a
//     running one goes on, holding its slot, until fn returns);
//   - done: the batch is answered with the *PanicError unless it was
//     answered already, and fn's return is still accounted for (slot,
//     gauges, the batches waiting for a slot, Close's wait);
//   - close: closing is finished, so Close still returns.
func (c *collector[K, V, R]) fault(msg, r any, stack []byte) {
	err := c.e.cfg.Errors.Panic(r, stack)
	c.e.cfg.Logger.Error("flight: internal fault in batch collector; the batch's callers get a *PanicError",
		"panic", r, "message", msg)
	switch m := msg.(type) {
	case addMsg[K, V, R]:
		c.tell(m.e.shard, failMsg[K, V, R]{m.e, err})
	case tickMsg:
		for _, b := range slices.Clone(c.opens) {
			if !b.due && c.overdue(b) { // else a stale tick: it changed nothing
				c.fail(b, err)
			}
		}
	case expiredMsg[K, V, R]:
		c.fail(m.b, err)
	case doneMsg[K, V, R]:
		c.fail(m.b, err)
		c.finish(m.b)
	case *closeMsg:
		c.close()
	}
}

// fail answers every caller of b with err, unless b is answered already: a
// batch not dispatched yet is taken out of the open slot or the queue and
// discarded; a running one keeps its slot until fn returns (done).
func (c *collector[K, V, R]) fail(b *batch[K, V, R], err error) {
	if b.answered {
		return
	}
	if !b.dispatched {
		queued := false
		if c.unopen(b) {
			queued = true
		} else if i := slices.Index(c.ready, b); i >= 0 {
			c.ready = slices.Delete(c.ready, i, i+1)
			queued = true
		}
		if !queued {
			return // discarded already (every key dropped, or Close)
		}
		c.e.stats.Pending.Add(-1)
	}
	b.answered = true
	b.rerr = err
	c.publish(b)
}

// armWait arms the WithMaxWait deadline of the batch just opened, if it is
// the only open one (else the timer is armed for an older one, and tick
// re-arms it for the next). The collector has one timer, made on its first
// batch and reset for each next one, rather than one per batch: a batch
// dispatched full costs no timer, and an idle collector's stopped timer
// holds no goroutine. A tick from an earlier deadline (the timer fired just
// as that batch was sealed) finds no open batch overdue and changes nothing
// but the timer, re-armed for the oldest open batch.
func (c *collector[K, V, R]) armWait() {
	if len(c.opens) != 1 {
		return
	}
	if c.wait == nil {
		e := c.e
		c.wait = time.AfterFunc(e.cfg.MaxWait, func() { e.post(c, tickMsg{}) })
		return
	}
	c.wait.Reset(c.e.cfg.MaxWait)
}

// overdue reports whether b's WithMaxWait deadline has passed.
func (c *collector[K, V, R]) overdue(b *batch[K, V, R]) bool {
	return time.Since(b.opened) >= c.e.cfg.MaxWait
}

// tick marks the open batches whose WithMaxWait deadline has passed due,
// dispatches them while slots are free, and re-arms the timer for the
// oldest open batch not due yet.
func (c *collector[K, V, R]) tick() {
	for _, b := range c.opens {
		if !b.due && c.overdue(b) {
			b.due = true
		}
	}
	c.dispatchReady()
	for _, b := range c.opens {
		if !b.due {
			c.wait.Reset(c.e.cfg.MaxWait - time.Since(b.opened))
			return
		}
	}
}

// openFor returns the open batch of scope, or nil. Without WithScope there
// is at most one; with it, the search is linear in the scopes that have an
// open batch at this moment.
func (c *collector[K, V, R]) openFor(scope any) *batch[K, V, R] {
	for _, b := range c.opens {
		if b.scope == scope {
			return b
		}
	}
	return nil
}

// unopen takes b out of the open batches, and reports whether it was one;
// the timer is stopped when none is left open.
func (c *collector[K, V, R]) unopen(b *batch[K, V, R]) bool {
	i := slices.Index(c.opens, b)
	if i < 0 {
		return false
	}
	c.opens = slices.Delete(c.opens, i, i+1)
	if len(c.opens) == 0 {
		c.wait.Stop()
	}
	return true
}

// add puts a key with a fresh entry into the open batch, opening one (and
// arming its WithMaxWait timer) if there is none. A full batch is sealed:
// dispatched at once if a slot is free, else queued.
func (c *collector[K, V, R]) add(en *entry[K, V, R]) {
	if c.closed {
		return // the shard's close answers its callers
	}
	cfg := &c.e.cfg
	var scope any
	if cfg.Scope != nil {
		scope = cfg.Scope(en.key)
	}
	b := c.openFor(scope)
	if b == nil {
		// Room for a full batch up front (up to 128 keys): one allocation
		// rather than one per doubling.
		b = &batch[K, V, R]{c: c, scope: scope, opened: time.Now(), entries: make([]*entry[K, V, R], 0, min(cfg.MaxBatch, 128))}
		c.opens = append(c.opens, b)
		c.e.stats.Pending.Add(1)
		c.armWait()
	}
	b.entries = append(b.entries, en)
	en.batch = b
	c.traceAdd(b, en) // tracing hook (trace.go)
	b.n++
	if b.n >= cfg.MaxBatch {
		c.unopen(b)
		if len(c.ready) == 0 && c.slotFree() {
			c.dispatch(b) // nothing older waits: no queue
			return
		}
		c.ready = append(c.ready, b)
		c.dispatchReady()
	}
}

// drop handles a key whose every caller left: taken out of its batch if
// that is not dispatched yet (a batch left empty is discarded), or counted
// off a running batch, which is cancelled when no key of it has a caller.
func (c *collector[K, V, R]) drop(en *entry[K, V, R]) {
	b := en.batch
	if c.closed || b == nil || b.answered {
		return
	}
	if b.dispatched {
		if b.live--; b.live == 0 {
			c.e.stats.Abandoned.Add(1)
			b.answered = true // nobody is left to answer
			b.ctx.cancel(context.Canceled)
		}
		return
	}
	en.dropped = true
	b.n--
	c.e.stats.Dropped.Add(1)
	if b.n > 0 {
		return
	}
	c.e.stats.Pending.Add(-1)
	if !c.unopen(b) {
		if i := slices.Index(c.ready, b); i >= 0 {
			c.ready = slices.Delete(c.ready, i, i+1)
		}
	}
}

func (c *collector[K, V, R]) slotFree() bool {
	m := c.e.cfg.MaxConcurrent
	return !c.closed && (m == 0 || len(c.running) < m)
}

// dispatchReady dispatches waiting batches while slots are free: the full
// ones first, oldest first, then the open one if its WithMaxWait passed.
func (c *collector[K, V, R]) dispatchReady() {
	for c.slotFree() {
		switch {
		case len(c.ready) > 0:
			b := c.ready[0]
			c.ready[0] = nil
			c.ready = c.ready[1:]
			c.dispatch(b)
		default:
			i := slices.IndexFunc(c.opens, func(b *batch[K, V, R]) bool { return b.due })
			if i < 0 {
				return
			}
			b := c.opens[i]
			c.unopen(b)
			c.dispatch(b)
		}
	}
}

// dispatch hands b to a worker: it takes out the dropped keys, makes the
// batch's context (the first caller's values, no cancellation of any
// caller's; the WithTimeout deadline) and starts fn.
func (c *collector[K, V, R]) dispatch(b *batch[K, V, R]) {
	e := c.e
	cfg := &e.cfg
	live := b.entries[:0]
	for _, en := range b.entries {
		if !en.dropped {
			live = append(live, en)
		}
	}
	clear(b.entries[len(live):])
	b.entries = live
	b.live = len(live)
	b.keys = make([]K, len(live))
	for i, en := range live {
		b.keys[i] = en.key
	}
	if !c.dispatchHooks(b, live[0].first) {
		return
	}
	b.dispatched = true
	if cfg.Timeout > 0 {
		// One timer both expires fn's ctx and tells the collector.
		b.ctx.deadline = time.Now().Add(cfg.Timeout)
		b.timer = time.AfterFunc(cfg.Timeout, func() {
			b.ctx.cancel(context.DeadlineExceeded)
			e.post(c, expiredMsg[K, V, R]{b})
		})
	}
	c.running[b] = struct{}{}
	e.stats.Pending.Add(-1)
	e.stats.Running.Add(1)
	e.stats.Batches.Add(1)
	e.stats.BatchedKeys.Add(uint64(len(live)))
	e.pool.Go(b)
}

// dispatchHooks runs the user's code that b's dispatch calls (a tracer's
// Start, a meter's Record) before b counts as dispatched, and reports
// whether it returned. A panic in it is contained here, not by fault: b's
// callers get the *PanicError and b is discarded, and the caller goes on
// (dispatchReady to the next batch), so a hook that panics on every batch
// never panics inside fault's own recovery.
func (c *collector[K, V, R]) dispatchHooks(b *batch[K, V, R], first context.Context) (ok bool) {
	defer func() {
		if r := recover(); r != nil {
			stack := debug.Stack()
			c.e.cfg.Logger.Error("flight: a tracer or meter panicked as a batch was dispatched; the batch's callers get a *PanicError",
				"panic", r)
			c.e.stats.Pending.Add(-1)
			b.answered, b.rerr = true, c.e.cfg.Errors.Panic(r, stack)
			if b.trace != nil {
				b.trace.End(b.rerr, nil) // a span started before the meter panicked
			}
			c.publish(b)
			ok = false
		}
	}()
	b.ctx.values, b.ctx.self = c.traceStart(b, first), b // tracing hook (trace.go)
	if cfg := &c.e.cfg; cfg.OnBatch != nil {
		cfg.OnBatch(len(b.keys))
	}
	return true
}

// Run is the worker's side of a batch: it calls fn and records how it
// ended (package outcome, as a flight's fn is run: a panic recovered with
// its stack, runtime.Goexit detected), then hands the batch back to the
// collector, in every case, so every caller is answered.
func (b *batch[K, V, R]) Run() { outcome.Run(b) }

// Call is fn's call, for outcome.Run.
func (b *batch[K, V, R]) Call() {
	e := b.c.e
	b.vals, b.err = e.cfg.Fn(&b.ctx, b.keys)
	if b.err != nil {
		if ke, ok := e.cfg.Hooks.KeyErrors(b.err); ok {
			b.kerrs, b.err = ke, nil
		}
	}
}

// Ended records how Call ended and hands the batch back, for outcome.Run.
func (b *batch[K, V, R]) Ended(how outcome.How, value any, stack []byte) {
	b.returned.Store(true)
	b.how, b.pvalue, b.pstack = how, value, stack
	b.c.e.post(b.c, doneMsg[K, V, R]{b})
}

// done handles fn's return: it resolves the outcome (unless the batch was
// answered already: timed out, abandoned, closed), tells the shards, frees
// the slot and dispatches what waits for it.
func (c *collector[K, V, R]) done(b *batch[K, V, R]) {
	e := c.e
	// Resolve into locals: once answered (timed out), the shards may be
	// reading the resolved fields.
	var rerr error
	var rvals map[K]V
	var rkerrs map[K]error
	switch b.how {
	case outcome.Panicked:
		e.stats.Panics.Add(1)
		e.logPanic(&b.ctx, len(b.keys), b.pvalue, b.pstack)
		rerr = e.cfg.Errors.Panic(b.pvalue, b.pstack)
	case outcome.Exited:
		e.stats.Panics.Add(1)
		rerr = e.cfg.Errors.Goexit
	default:
		switch {
		case !b.ctx.deadline.IsZero() && !time.Now().Before(b.ctx.deadline):
			// The deadline passed before the collector got fn's return:
			// the callers get the timeout, as they would have a moment
			// later, never what fn made of its cancelled ctx.
			rerr = e.cfg.Errors.Timeout
			if !b.answered {
				e.stats.Timeouts.Add(1)
			}
		case b.err != nil:
			rerr = b.err
		default:
			rvals, rkerrs = b.vals, b.kerrs
		}
	}
	c.traceEnd(b) // tracing hook (trace.go)
	b.vals, b.kerrs, b.err, b.pvalue, b.pstack = nil, nil, nil, nil, nil
	if !b.answered {
		b.answered = true
		b.rerr, b.rvals, b.rkerrs = rerr, rvals, rkerrs
		c.publish(b)
	}
	c.finish(b)
}

// finish accounts for fn's return: it cancels b's ctx, frees its slot and
// dispatches what waits for one. After a fault in done it runs again, so
// each step happens once, whatever had run before the fault.
func (c *collector[K, V, R]) finish(b *batch[K, V, R]) {
	b.finished = true
	if _, ok := c.running[b]; ok {
		delete(c.running, b)
		c.e.stats.Running.Add(-1)
	}
	if b.timer != nil {
		b.timer.Stop()
	}
	b.ctx.cancel(context.Canceled)
	c.dispatchReady()
	c.checkDrained()
}

// expire answers the callers of a running batch whose WithTimeout deadline
// passed with the timeout error; its fn goes on until it returns (its ctx
// is cancelled) and holds its slot until then.
func (c *collector[K, V, R]) expire(b *batch[K, V, R]) {
	if b.answered || b.finished {
		return
	}
	b.answered = true
	c.e.stats.Timeouts.Add(1)
	b.rerr = c.e.cfg.Errors.Timeout
	c.publish(b)
}

// publish posts the resolved b to every shard that has keys in it.
func (c *collector[K, V, R]) publish(b *batch[K, V, R]) {
	shards := c.e.shards
	if len(shards) == 1 {
		c.tell(0, resultMsg[K, V, R]{b})
		return
	}
	told := make([]bool, len(shards))
	for _, en := range b.entries {
		if !told[en.shard] {
			told[en.shard] = true
			c.tell(en.shard, resultMsg[K, V, R]{b})
		}
	}
}

// close stops dispatching, discards the batches not dispatched (the shards
// answer their callers) and cancels the running ones.
//
// After a fault during close, fault calls it again: each step is undone
// state (c.opens, c.ready) or idempotent (cancel), so none happens twice.
func (c *collector[K, V, R]) close() {
	c.closed = true
	if len(c.opens) > 0 {
		c.wait.Stop()
		c.e.stats.Pending.Add(-int64(len(c.opens)))
		c.opens = nil
	}
	c.e.stats.Pending.Add(-int64(len(c.ready)))
	c.ready = nil
	for b := range c.running {
		b.answered = true // the shards answer with ErrClosed
		b.ctx.cancel(context.Canceled)
	}
	c.checkDrained()
}

func (c *collector[K, V, R]) checkDrained() {
	if c.closed && len(c.running) == 0 && !c.drainedClosed {
		c.drainedClosed = true
		close(c.drained)
	}
}
