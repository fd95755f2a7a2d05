package actor

import (
	"context"
	"errors"
	"runtime/debug"
	"slices"
	"sync/atomic"
	"time"

	"github.com/actorflight/flight/internal/tracing"
	"github.com/actorflight/flight/mailbox"
)

// Errors are the error values a key actor answers with. The root package
// supplies them so that callers can match them with errors.Is / errors.As.
type Errors struct {
	Closed     error
	Overloaded error
	Goexit     error
	Timeout    error                               // wraps context.DeadlineExceeded
	Recursive  error                               // a call from inside fn that would wait for fn
	Panic      func(value any, stack []byte) error // makes a *flight.PanicError
	// Stale marks an answer that is a stale value (WithStaleIfError): the
	// engine hands the caller a nil error, and DoChan's Result.Stale, in
	// its place. It never reaches a caller.
	Stale error
}

// Env is what a shard gives its key actors: limits, counters, the worker pool
// and the way back into the shard's mailbox. There is one Env per shard, owned
// by the shard actor: only its handlers read or write Closed.
type Env[K comparable, V any] struct {
	Pool       *Pool
	Limit      *Limit        // flights across the coordinator (WithMaxInFlight); nil: unbounded
	MaxWaiters int           // callers per flight (WithMaxWaiters); 0: unbounded
	Timeout    time.Duration // WithTimeout; 0: none
	Stats      *Stats
	Errors     Errors
	// Post sends a message to the shard's mailbox from any goroutine.
	Post func(msg any)
	// Finished runs after every execution of fn is retired, so that Close
	// can wait for all of them.
	Finished func()
	// OnPanic is told of each panic in fn, once, with the flight's context
	// (its values, and with tracing its execution's span) and the key, for
	// logging.
	OnPanic func(ctx context.Context, key K, value any, stack []byte)
	// OnFinish, when set (metrics), is told of each execution's duration and
	// of how many callers its flight had, when fn returns.
	OnFinish func(d time.Duration, callers int)
	// Retain, when set (retained results), is told of the end of an
	// execution before its waiters are answered: keep says whether its
	// result may be retained (the flight was still attached to its key, fn
	// returned, and its error, if any, is fn's own: not a ctx error, the
	// timeout, a panic, Goexit, or one of the coordinator's refusals);
	// refresh whether the flight was a background refresh.
	Retain func(key K, val V, err error, keep, refresh bool)
	// Attempts is how many times one flight may run fn (WithRetry); 0 or 1:
	// once. Backoff, when set, says how long to wait before attempt n+1
	// after n failures. Retryable says whether an error fn returned may be
	// retried (never called for a panic, a Goexit, the timeout, or once the
	// flight's ctx has ended).
	Attempts  int
	Backoff   func(n int) time.Duration
	Retryable func(error) bool
	// ForgetOverlaps lets the flight that follows a Forget start at once,
	// beside the forgotten one, as x/sync's Forget does (compat/singleflight
	// sets it); by default it waits for the forgotten fn to return.
	ForgetOverlaps bool
	// PrivateCtx says that fn never sees its ctx (compat/singleflight's
	// adapters ignore it) and that nothing else the engine hands it to
	// keeps it (no logger, no tracer): a flight's context is then reused
	// once its owner is retired (see spare), so a distinct key's flight
	// allocates nothing.
	PrivateCtx bool
	// spare holds the contexts of retired first flights for reuse, with
	// PrivateCtx only, at most maxSpare (owned by the shard actor).
	spare []*flightCtx
	// Outcome, when set (WithBreaker, WithStaleIfError), is told whether a
	// flight still attached to its key failed, as it is answered (before
	// its waiters are); for a failed one it may return a stale value to
	// answer the waiters with instead (see resil.go).
	Outcome func(key K, failed bool) (stale V, ok bool)
	// Tracked, when set, counts the keys whose breaker state the shard
	// holds: while it is 0 a success is not told to Outcome (nothing to
	// reset), which keeps a flight that succeeds at its cost without a
	// breaker.
	Tracked *atomic.Int64
	// Tracer, when set (WithTracerProvider), makes the spans of each
	// execution (trace.go); nil: no tracing.
	Tracer *tracing.Tracer

	// inFlight and waiters are the changes to Stats' two gauges that the
	// message being handled has made and Publish has not yet published.
	inFlight, waiters int64

	Closed bool // set by the shard on Close: refuse joins, start nothing
}

// Publish makes the gauge changes made so far by the message being handled
// visible in Stats, with one atomic add (none if they cancel out). The
// owner's code calls it before anything lets a caller or fn see the state
// (a caller answered or signalled, fn handed to a worker), and the shard
// after every message it handles, faulted or not.
func (e *Env[K, V]) Publish() {
	if e.inFlight != 0 || e.waiters != 0 {
		e.Stats.AddGauges(e.inFlight, e.waiters)
		e.inFlight, e.waiters = 0, 0
	}
}

// InFlight returns the flights whose fn is running, counting the current
// handler's changes (shard actor only).
func (e *Env[K, V]) InFlight() int64 { return e.Stats.InFlight() + e.inFlight }

// Owner is the actor of one key: it exists while the key has a flight and is
// retired as soon as it has none (Idle), so an idle key costs nothing.
//
// It serializes executions: at most one fn of the key runs at a time. A flight
// that was detached while its fn runs (abandoned, forgotten or timed out)
// keeps running as exec, and a new flight for the key waits as open until exec
// returns; its callers can leave meanwhile and its WithTimeout deadline counts
// from its creation. A flight waiting between two attempts (WithRetry) is not
// exec: no fn of it runs. A forgotten flight in that wait is parked; its next
// attempt runs when its wait is over and no other fn of the key runs.
//
// An Owner belongs to its shard actor: every method is called from the shard's
// handlers only, one message at a time.
type Owner[K comparable, V any] struct {
	Key K
	// Hash is Key's hash, set by the shard that keeps the owner (its table
	// of owners is keyed by it) and never read by this package.
	Hash uint64
	env  *Env[K, V]
	open *Flight[K, V]   // the flight new callers join; nil if none
	exec *Flight[K, V]   // the flight whose fn runs now; nil if none
	det  *detached[K, V] // forgotten flights still to end; nil until the first

	// first is the owner's first flight, allocated with it: most keys have
	// one flight in their owner's life, which then costs no allocation of
	// its own, and none at all when the shard reuses the owner (see
	// Recyclable). A later flight is allocated on its own (the first may
	// still be read by its callers).
	// It is in use once it has a context (newFlight gives every flight
	// one; Recycle clears it): no flag of its own, which would take the
	// owner past its size class of 256 bytes (TestOwnerSize).
	first Flight[K, V]
}

// detached holds an owner's forgotten flights that have not ended, apart
// from the owner because few keys ever have one: an owner (with its first
// flight) is one of the objects every key in flight holds.
type detached[K comparable, V any] struct {
	gone []*Flight[K, V] // forgotten flights whose fn still runs (Env.ForgetOverlaps)
	// parked are forgotten flights between two attempts (WithRetry): their
	// callers wait for their outcome, their next attempt waits for its
	// backoff and then for the key's exec to be free.
	parked []*Flight[K, V]
}

func (k *Owner[K, V]) gone() []*Flight[K, V] {
	if k.det == nil {
		return nil
	}
	return k.det.gone
}

func (k *Owner[K, V]) parked() []*Flight[K, V] {
	if k.det == nil {
		return nil
	}
	return k.det.parked
}

// dets returns k.det, made on first use.
func (k *Owner[K, V]) dets() *detached[K, V] {
	if k.det == nil {
		k.det = new(detached[K, V])
	}
	return k.det
}

// NewOwner returns the owner of key k.
func NewOwner[K comparable, V any](k K, env *Env[K, V]) *Owner[K, V] {
	return &Owner[K, V]{Key: k, env: env}
}

// Owner returns the owner of f's key.
func (f *Flight[K, V]) Owner() *Owner[K, V] { return f.owner }

// Idle reports whether the key has no flight left, so that its shard retires it.
func (k *Owner[K, V]) Idle() bool {
	return k.open == nil && k.exec == nil && len(k.gone()) == 0 && len(k.parked()) == 0
}

// Flight is one execution of a key's fn and the callers that share it.
//
// All fields belong to the owning shard actor, except val, err, outcome and
// panic, which the worker running fn writes before it posts Done (the mailbox
// hand-off orders those writes before the shard reads them), and fn, which is
// set before fn starts and never changes.
//
// The layout is kept small because a flight is the one allocation every
// distinct key pays for: what is rare (a panic) hangs off a pointer.
type Flight[K comparable, V any] struct {
	broadcast[V]

	owner *Owner[K, V]
	wake  *Waiter[K, V] // the first Do caller, woken on its own channel; see Waiter.Wake
	fn    func(context.Context) (V, error)
	ctx   *flightCtx
	timer *time.Timer // the WithTimeout deadline; nil without a timeout
	retry *time.Timer // the backoff before the next attempt (WithRetry); nil if none yet

	node mailbox.Node // Done's link in the shard's mailbox (see DoneNode)
	// dos and dosTail are the Do callers that joined after the first, in
	// order, each answered on its own waiter (see answerQueued).
	dos, dosTail *Waiter[K, V]

	gen       uint32 // bumped each time the owner (with its first flight) is reused
	waiters   int32  // callers attached and not answered
	joined    int32  // callers ever admitted
	attempts  int32  // attempts of fn started (WithRetry)
	started   bool
	refresh   bool // a background refresh (WithRefreshAhead): no caller started it
	backoff   bool // between two attempts: fn is not running (not counted in InFlight)
	due       bool // in backoff, whose wait is over: the next attempt waits for the key's exec
	finished  bool // fn has returned
	abandoned bool
	timedOut  bool
	outcome   outcome // written by the worker
	// The small fields are together: a flight, inside its owner, is one of
	// the objects every key in flight holds (TestOwnerSize).

	// Written by the worker.
	val   V
	err   error
	panic *panicInfo
}

type panicInfo struct {
	value any
	stack []byte
}

// epoch is the origin of flightCtx.began: a monotonic reading, so durations are
// immune to wall-clock steps.
var epoch = time.Now()

// Waiter is one caller's place in a flight. A Do caller waits on Done; a
// DoChan caller has an Out, and its Waiter subscribes to the flight's
// broadcast and forwards the one delivery to Out.
//
// Ctx, Fn and Out are set by the caller before it posts the Waiter; the shard
// sets the rest while it handles the join, and the caller reads Flight
// and Err only after the shard has signalled that the join was handled.
type Waiter[K comparable, V any] struct {
	Ctx context.Context
	Fn  func(context.Context) (V, error)
	Out Subscriber[V] // DoChan callers; nil for Do

	Flight *Flight[K, V]
	Err    error // set when the join was refused
	// Wake is a Do caller's own channel, with room for two tokens, made by
	// the caller the first time it must park (Park) and reused for its next
	// calls; the shard sends on it only to a caller parked for a signal
	// (see Signal). A caller that never parks (its own post handled its
	// join, and fn ran on its goroutine or returned while it yielded) has
	// none: 96 bytes fewer per key in flight (BenchmarkInFlight). The first signal says
	// the join was handled (refused, or admitted as the flight's first Do
	// caller), and the first Do caller then gets a second one with the
	// result. A later Do caller gets one signal only, with the result (see
	// Flight.queue).
	Wake chan struct{}
	// The result, for the flight's first Do caller (the one woken on
	// Wake): written by the shard before the token, so that this caller
	// never reads the Flight again, which its owner may reuse at once.
	Val V
	Res error

	slot   int           // index among Flight's subscribers
	stop   func() bool   // stops the ctx watch of a DoChan caller
	node   mailbox.Node  // Leave's link in the shard's mailbox (see LeaveNode)
	nextDo *Waiter[K, V] // next in Flight's queue of Do joiners

	gen uint32  // Flight's gen when it admitted this waiter
	sig signals // see Signal and Park: a Do caller's hand-off with its shard
	// RunHere tells a Do caller that its join started a flight whose fn it
	// must run itself, on its own goroutine, by calling Flight.Run (set by
	// the shard with the join-handled token; see Owner.Join).
	RunHere bool
	Shared  bool // with Val and Res
	// Answered says Val, Res and Shared hold the flight's result, written
	// with the waiter's one signal, for a Do caller that joined a flight
	// another Do caller started (see Flight.queue).
	Answered bool
	left     bool
	first    bool // the flight's first Do caller, woken on Wake for the result too (Flight.wake)
	// The small fields are last, together: a Waiter is part of the call
	// every key in flight holds (see coordinator's TestCallSize).
}

// Join admits w to the key's flight, starting one if there is none. On
// refusal (closed, overloaded, ctx already done) it sets w.Err and, for a
// DoChan caller, delivers it.
func (k *Owner[K, V]) Join(w *Waiter[K, V]) {
	env := k.env
	if env.Closed {
		k.refuse(w, env.Errors.Closed)
		return
	}
	if err := w.Ctx.Err(); err != nil {
		k.refuse(w, err)
		return
	}
	// A call made from inside the running fn of this key (with fn's ctx or
	// one derived from it, however deep) would wait for that fn: for its
	// flight if it joins it, or for the next flight, which runs only after
	// fn returns. Refuse it rather than let fn wait for itself.
	if k.exec != nil && callsFrom(w.Ctx, k.exec.ctx) {
		k.refuse(w, env.Errors.Recursive)
		return
	}
	f := k.open
	if f != nil && f.refresh {
		// A background refresh, which no caller asked for. A caller that
		// reaches the owner has missed (the result the refresh was to
		// replace expired, was evicted or forgotten): it does not wait for
		// a flight that runs another caller's fn with that caller's values
		// and nobody's deadline. Its own flight replaces the refresh, which
		// is abandoned (cancelled; its result is not retained) and, as
		// executions never overlap, runs once the refresh's fn has returned
		// (at once for a fn that honours its ctx).
		k.abandon(f)
		f = nil
	}
	if f == nil {
		if !env.Limit.tryAcquire() {
			env.Stats.Overloaded.Add(1)
			k.refuse(w, env.Errors.Overloaded)
			return
		}
		f = k.newFlight(w)
		k.open = f
		// Counted before fn starts, so that the publish before a worker
		// runs fn carries it: fn finds its caller in Waiters.
		env.waiters++
		if k.exec == nil {
			// fn runs on the caller's own goroutine when nothing is lost
			// by it: a Do caller whose ctx can never be done and with no
			// WithTimeout could not leave before fn returns anyway. That
			// saves the hand-off to a worker and two goroutine switches.
			// runtime.Goexit in fn then ends that caller's goroutine, as
			// calling fn directly would; the other waiters still get
			// ErrGoexit (Run posts Done on the way out).
			w.RunHere = w.Out == nil && w.Ctx.Done() == nil && env.Timeout == 0
			k.start(f, w.RunHere)
		}
	} else {
		if env.MaxWaiters > 0 && int(f.waiters) >= env.MaxWaiters {
			env.Stats.Overloaded.Add(1)
			k.refuse(w, env.Errors.Overloaded)
			return
		}
		env.Stats.Joins.Add(1)
		f.traceJoin(w) // tracing hook (trace.go)
		env.waiters++
	}
	f.waiters++
	f.joined++
	w.Flight, w.gen = f, f.gen
	if w.Out == nil {
		switch {
		case f.isPublished(): // an answered flight is detached at once: not seen today
			w.Val, w.Res, w.Shared, w.Answered = f.Val, f.Err, f.Shared, true
		case f.wake == nil:
			f.wake = w
			w.first = true
		default:
			f.queue(w)
		}
		return
	}
	w.slot = f.subscribe(w)
	if w.Ctx.Done() != nil {
		post := env.Post
		w.stop = context.AfterFunc(w.Ctx, func() { post(Leave[K, V]{w}) })
	}
}

// Deliver forwards the flight's result to the DoChan caller and stops the
// watch on its ctx. The shard calls it once, from deliverAll.
func (w *Waiter[K, V]) Deliver(val V, err error, shared bool) {
	if w.stop != nil {
		w.stop()
	}
	w.Out.Deliver(val, err, shared)
}

func (k *Owner[K, V]) refuse(w *Waiter[K, V], err error) {
	w.Err = err
	if w.Out != nil {
		var zero V
		w.Out.Deliver(zero, err, false)
	}
}

func (k *Owner[K, V]) newFlight(w *Waiter[K, V]) *Flight[K, V] {
	env := k.env
	var f *Flight[K, V]
	if k.first.ctx == nil {
		f = &k.first
	} else {
		f = new(Flight[K, V])
	}
	f.owner, f.fn = k, w.Fn
	// The flight keeps the first caller's values but not its cancellation:
	// it is cancelled only when every caller has left, on its deadline, or
	// on Close (see flightCtx.Value).
	if n := len(env.spare); n > 0 {
		f.ctx = env.spare[n-1]
		env.spare[n-1] = nil
		env.spare = env.spare[:n-1]
		f.ctx.values = w.Ctx
	} else {
		f.ctx = &flightCtx{values: w.Ctx}
	}
	k.traceNew(f) // tracing hook (trace.go)
	if env.Timeout > 0 {
		f.ctx.setDeadline(env.Timeout)
		post := env.Post
		f.timer = time.AfterFunc(env.Timeout, func() {
			f.ctx.cancel(ctxExpired)
			post(Expired[K, V]{f})
		})
	}
	return f
}

func (k *Owner[K, V]) start(f *Flight[K, V], byCaller bool) {
	env := k.env
	f.started = true
	if env.OnFinish != nil {
		f.ctx.began = time.Since(epoch)
	}
	k.exec = f
	f.attempts = 1
	f.traceStart() // tracing hook (trace.go)
	env.Stats.Flights.Add(1)
	env.inFlight++
	if !byCaller {
		env.Publish() // before fn can run: fn sees itself counted
		env.Pool.Go(f)
	}
}

// Leave detaches a caller whose ctx is done. A DoChan caller gets ctx.Err()
// on its channel. The last caller to leave abandons the flight: it is
// cancelled and detached, so the next caller starts a fresh one.
func (k *Owner[K, V]) Leave(w *Waiter[K, V]) {
	f := w.Flight
	if w.gen != f.gen || f.isPublished() || w.left {
		return // answered already (or f reused since); nothing to undo
	}
	w.left = true
	f.waiters--
	k.env.waiters--
	if w.Out != nil {
		if moved := f.unsubscribe(w.slot); moved != nil {
			moved.(*Waiter[K, V]).slot = w.slot
		}
		var zero V
		k.env.Publish() // before the caller gets its answer
		w.Out.Deliver(zero, w.Ctx.Err(), false)
	}
	if f.waiters == 0 {
		k.abandon(f)
	}
}

// abandon cancels and detaches f, which no caller waits for any more (every
// caller left, or a background refresh that nobody asked for was forgotten
// or superseded by a caller's flight).
func (k *Owner[K, V]) abandon(f *Flight[K, V]) {
	f.abandoned = true
	k.env.Stats.Abandoned.Add(1)
	k.detach(f)
}

// Expire answers every waiter of a flight whose WithTimeout deadline passed
// with the timeout error, and detaches it. Its fn, if running, goes on (its
// ctx is already cancelled) and the key's next flight waits for it.
func (k *Owner[K, V]) Expire(f *Flight[K, V]) {
	if f.isPublished() || f.abandoned || f.ctx.Err() != context.DeadlineExceeded {
		return
	}
	k.timeout(f)
	if v, ok := k.verdict(f, k.env.Errors.Timeout); ok {
		k.publishStale(f, v)
	} else {
		k.publish(f, *new(V), k.env.Errors.Timeout)
	}
	k.detach(f)
}

func (k *Owner[K, V]) timeout(f *Flight[K, V]) {
	if !f.timedOut {
		f.timedOut = true
		k.env.Stats.Timeouts.Add(1)
	}
}

// Finish handles the return of fn: it answers the waiters (unless they were
// already answered or all left), retires the execution and starts the key's
// next flight if one is waiting.
func (k *Owner[K, V]) Finish(f *Flight[K, V]) {
	again := false
	counted := false // InFlight counted fn's return out already (see below)
	defer func() {
		if !again {
			k.retire(f, counted) // runs even if what follows panics: Close counts on it
		}
	}()
	env := k.env
	err := f.err
	switch f.outcome {
	case fnPanicked:
		env.Stats.Panics.Add(1)
		if env.OnPanic != nil {
			env.OnPanic(f.ctx, k.Key, f.panic.value, f.panic.stack)
		}
		err = env.Errors.Panic(f.panic.value, f.panic.stack)
	case fnExited:
		env.Stats.Panics.Add(1)
		err = env.Errors.Goexit
	}
	again, err = k.retryAfter(f, err)
	f.traceEnd(err, again) // tracing hook (trace.go)
	if env.OnFinish != nil {
		callers := int(f.joined)
		if again {
			callers = 0 // the flight goes on: its callers are counted at its end
		}
		env.OnFinish(time.Since(epoch)-f.ctx.began, callers)
	}
	if again {
		k.runNext() // the wait frees the key's exec
		return
	}
	if !f.backoff {
		// fn has returned: InFlight counts it out now, so that the one add
		// that publish makes before it answers the callers carries this
		// change with theirs to Waiters.
		env.inFlight--
		counted = true
	}
	answer := !f.abandoned && !f.isPublished()
	expired := answer && f.ctx.passed()
	// WithBreaker, WithStaleIfError: the outcome counts before the waiters
	// are answered, and a failed flight answered with a stale value is
	// never retained.
	var staleVal V
	stale := false
	if answer && env.Outcome != nil && (err != nil || expired || env.Tracked == nil || env.Tracked.Load() > 0) {
		judged := err
		if expired {
			judged = env.Errors.Timeout
		}
		staleVal, stale = k.verdict(f, judged)
	}
	if env.Retain != nil {
		// Before the waiters are answered, so that a caller who asks again
		// at once finds the result retained.
		keep := !stale && !expired && k.open == f && f.outcome == fnReturned && k.retainable(err)
		if keep || f.refresh {
			env.Retain(k.Key, f.val, err, keep, f.refresh)
		}
	}
	switch {
	case stale:
		if expired {
			k.timeout(f)
		}
		k.publishStale(f, staleVal)
	case expired:
		// The deadline passed before the shard got fn's return, and Expire
		// has not run yet (its timer may not even have fired): the waiters
		// get the timeout, as they would have a moment later, never what fn
		// made of its cancelled ctx.
		k.timeout(f)
		k.publish(f, *new(V), env.Errors.Timeout)
	case answer:
		k.publish(f, f.val, err)
	}
}

// retryAfter decides, as fn returned err, whether the flight runs fn again
// (WithRetry), and if so arms the backoff timer, whose message (Retry)
// starts the next attempt: no goroutine waits. The flight keeps its callers,
// its ctx, its deadline and its place as the key's open flight meanwhile;
// callers may still join it, and leave. It gives up the key's exec (no fn
// of it runs, and InFlight does not count it), which matters only once it
// is forgotten: the key's next flight then runs without waiting for the
// backoff. It is never retried after a panic or Goexit, once its ctx has
// ended (every caller left, its deadline, Close), or once it has been
// answered.
//
// The WithRetryIf predicate and the backoff are the user's code, run here on
// the shard's goroutine: a panic in either is contained as a panic of fn is
// (counted in Panics, logged), and the flight ends with that *PanicError,
// which it returns as the flight's error; otherwise it returns err (fn's,
// which the execution's span records, also when another attempt follows).
func (k *Owner[K, V]) retryAfter(f *Flight[K, V], err error) (bool, error) {
	env := k.env
	if err == nil || int(f.attempts) >= env.Attempts || f.outcome != fnReturned ||
		f.abandoned || f.isPublished() || env.Closed || f.ctx.Err() != nil || f.ctx.passed() {
		return false, err
	}
	d, again, failed := k.askRetry(f, err)
	if failed != nil {
		return false, failed
	}
	if !again {
		return false, err
	}
	f.backoff = true
	env.inFlight--
	if k.exec == f {
		k.exec = nil
	}
	if k.open != f && !slices.Contains(k.parked(), f) {
		// Forgotten while its fn ran: parked from now on, as if forgotten
		// during the wait (a ForgetOverlaps flight too: its next attempt no
		// longer overlaps the key's flights).
		d := k.dets()
		if i := slices.Index(d.gone, f); i >= 0 {
			d.gone = slices.Delete(d.gone, i, i+1)
		}
		d.parked = append(d.parked, f)
	}
	f.val, f.err = *new(V), nil
	post := env.Post
	if f.retry == nil {
		f.retry = time.AfterFunc(d, func() { post(Retry[K, V]{f}) })
	} else {
		f.retry.Reset(d)
	}
	return true, err
}

// askRetry runs the user's Retryable and Backoff for f's failure with err,
// recovering a panic in either: failed is then the *PanicError every waiter
// gets.
func (k *Owner[K, V]) askRetry(f *Flight[K, V], err error) (d time.Duration, again bool, failed error) {
	env := k.env
	defer func() {
		if r := recover(); r != nil {
			stack := debug.Stack()
			env.Stats.Panics.Add(1)
			if env.OnPanic != nil {
				env.OnPanic(f.ctx, k.Key, r, stack)
			}
			d, again, failed = 0, false, env.Errors.Panic(r, stack)
		}
	}()
	if !env.Retryable(err) {
		return 0, false, nil
	}
	if env.Backoff != nil {
		d = max(env.Backoff(int(f.attempts)), 0)
	}
	return d, true, nil
}

// Retry is the end of f's backoff: its next attempt starts now if no other
// fn of the key runs, else as soon as none does (see runNext). A stale timer
// message (the wait was ended by detach) changes nothing.
func (k *Owner[K, V]) Retry(f *Flight[K, V]) {
	if !f.backoff || f.finished || f.due {
		return
	}
	f.due = true
	k.runNext()
}

// attempt starts the next attempt of f, whose backoff is over.
func (k *Owner[K, V]) attempt(f *Flight[K, V]) {
	env := k.env
	f.backoff, f.due = false, false
	f.attempts++
	f.outcome = fnReturned
	k.exec = f
	f.traceStart() // tracing hook (trace.go)
	env.Stats.Retries.Add(1)
	env.Stats.Flights.Add(1)
	env.inFlight++
	if env.OnFinish != nil {
		f.ctx.began = time.Since(epoch)
	}
	env.Publish() // before fn can run: fn sees itself counted
	env.Pool.Go(f)
}

// runNext starts what waits for the key's exec, if it is free: a parked
// (forgotten) flight whose backoff is over, first, since it was there
// before; else the open flight, its first attempt or its next one.
func (k *Owner[K, V]) runNext() {
	if k.exec != nil || k.env.Closed {
		return
	}
	for _, p := range k.parked() {
		if p.due {
			k.attempt(p)
			return
		}
	}
	if f := k.open; f != nil {
		switch {
		case !f.started:
			k.start(f, false)
		case f.backoff && f.due:
			k.attempt(f)
		}
	}
}

// retainable reports whether err may be retained as a result: nil, or an
// error of fn's own, never a ctx error or one of the coordinator's.
func (k *Owner[K, V]) retainable(err error) bool {
	if err == nil {
		return true
	}
	e := &k.env.Errors
	return !errors.Is(err, context.Canceled) && !errors.Is(err, context.DeadlineExceeded) &&
		!errors.Is(err, e.Closed) && !errors.Is(err, e.Overloaded) &&
		!errors.Is(err, e.Goexit) && !errors.Is(err, e.Recursive)
}

// Refresh starts a background refresh of the key: a flight with no caller
// that runs fn with ctx's values (not its cancellation), whose result, if
// retainable, replaces the retained one. It reports false, starting
// nothing, when the key already has an open flight (whose result will be
// retained anyway), after Close, or when WithMaxInFlight is full.
func (k *Owner[K, V]) Refresh(ctx context.Context, fn func(context.Context) (V, error)) bool {
	env := k.env
	if k.open != nil || env.Closed || !env.Limit.tryAcquire() {
		return false
	}
	f := k.newFlight(&Waiter[K, V]{Ctx: ctx, Fn: fn})
	f.refresh = true
	k.open = f
	env.Stats.Refreshes.Add(1)
	k.runNext()
	return true
}

// Retire ends the bookkeeping of f's execution after fn returned: the gauges,
// the admission unit, the ctx, and the start of the key's next flight. It is
// idempotent, so that the shard can call it again after a fault in Finish.
func (k *Owner[K, V]) Retire(f *Flight[K, V]) { k.retire(f, false) }

// retire is Retire; counted says that InFlight counted f's execution out
// already (Finish does, before it answers the callers).
func (k *Owner[K, V]) retire(f *Flight[K, V], counted bool) {
	if f.finished {
		return
	}
	env := k.env
	f.finished = true
	switch {
	case f.backoff:
		f.backoff, f.due = false, false // ended between two attempts: not counted in InFlight
	case !counted:
		env.inFlight--
	}
	env.Finished()
	env.Limit.release()
	if k.exec == f {
		k.exec = nil
	}
	if k.open == f {
		k.open = nil
	}
	if d := k.det; d != nil {
		if i := slices.Index(d.gone, f); i >= 0 {
			d.gone = slices.Delete(d.gone, i, i+1)
		}
		if i := slices.Index(d.parked, f); i >= 0 {
			d.parked = slices.Delete(d.parked, i, i+1)
		}
	}
	f.stopTimer()
	if !env.PrivateCtx {
		// Nobody can see a private context end (Env.PrivateCtx): not
		// ending it spares its lock (6.7% of compat's Do in a CPU profile
		// of BenchmarkCompat).
		f.ctx.cancel(ctxCanceled)
	}
	f.val, f.err, f.panic = *new(V), nil, nil
	k.runNext()
}

// Forget detaches the key's running flight: callers already in it get its
// result, later callers start a new flight, which runs after it. A flight
// that has not started yet is left alone: it will run after the Forget
// anyway. It reports whether a flight was detached.
//
// A detached flight that nobody waits for (a background refresh) is
// abandoned: nothing else would ever cancel it but WithTimeout or Close,
// and the key's next flight would wait for it. One that waits between two
// attempts is parked: the next flight does not wait for its backoff; its
// next attempt runs when its backoff is over and no other fn of the key
// runs (see runNext).
func (k *Owner[K, V]) Forget() bool {
	f := k.open
	if f == nil || (!f.started && !f.refresh) {
		return false
	}
	k.open = nil
	k.env.Stats.Forgotten.Add(1)
	switch {
	case f.waiters == 0:
		k.abandon(f)
	case f.backoff:
		d := k.dets()
		d.parked = append(d.parked, f)
	case k.env.ForgetOverlaps && k.exec == f:
		k.exec = nil
		d := k.dets()
		d.gone = append(d.gone, f)
	}
	return true
}

// Close answers every waiter of the key with err, cancels its flights and
// drops a flight that has not started, so that the key can be used again at
// once. A running fn goes on until it returns (Finish then retires it). The
// shard calls it on Close (setting env.Closed first) and after a fault in
// its own handling of one of the key's messages.
func (k *Owner[K, V]) Close(err error) {
	for _, f := range slices.Concat([]*Flight[K, V]{k.exec, k.open}, k.gone(), k.parked()) {
		if f == nil || f.finished {
			continue
		}
		k.publish(f, *new(V), err)
		k.detach(f)
	}
}

// FailFlight answers every waiter of f with err, unless f was answered or
// abandoned, and detaches it. The shard calls it when the message that
// failed was about f itself (its Done), since f may be retired already and
// then out of Fail's reach.
func (k *Owner[K, V]) FailFlight(f *Flight[K, V], err error) {
	if !f.isPublished() && !f.abandoned {
		k.publish(f, *new(V), err)
	}
	k.detach(f)
}

// detach takes f off the key so that no caller joins it again, cancels its
// ctx, and drops it at once if its fn never started.
func (k *Owner[K, V]) detach(f *Flight[K, V]) {
	if k.open == f {
		k.open = nil
	}
	f.ctx.cancel(ctxCanceled)
	if f.backoff {
		// Answered or abandoned between attempts: no further attempt
		// starts, and the flight ends now.
		k.Retire(f)
	}
	if !f.started && !f.finished {
		f.finished = true
		f.stopTimer()
		k.env.Limit.release()
	}
}

func (f *Flight[K, V]) stopTimer() {
	if f.timer != nil {
		f.timer.Stop()
	}
	if f.retry != nil {
		f.retry.Stop()
	}
}

func (k *Owner[K, V]) publish(f *Flight[K, V], val V, err error) {
	k.env.waiters -= int64(f.waiters)
	f.waiters = 0
	k.env.Publish() // before any caller is answered: none sees itself still counted
	if !f.deliverAll(val, err, f.joined > 1) {
		return
	}
	if w := f.wake; w != nil {
		w.Val, w.Res, w.Shared = val, err, f.joined > 1
		w.Signal() // the second signal, after the join's
		f.wake = nil
	}
	f.answerQueued(val, err, f.joined > 1)
}
