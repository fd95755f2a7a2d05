// Package tracing makes the OpenTelemetry spans of flight's engines: one
// span per execution of a Coordinator's fn (flight.run) and per call of a
// Batcher's fn (flight.batch), each a child of its first caller's span and
// linked to the spans of the other callers, and the flight.hit event of a
// call answered from a retained result.
//
// The engines hold a nil *Tracer when no provider was given: every hook is
// then one nil check, and nothing is allocated or traced (the global
// provider is never consulted). The names below are pinned: tests outside
// the repository read them.
//
// It is internal so that the engines (actor, batch, coordinator) and the
// cluster module can share it without the root package exporting it; see
// remote.go for what the cluster module calls.
package tracing

import (
	"context"
	"fmt"
	"sync"
	"sync/atomic"

	"go.opentelemetry.io/otel/attribute"
	"go.opentelemetry.io/otel/codes"
	semconv "go.opentelemetry.io/otel/semconv/v1.40.0"
	"go.opentelemetry.io/otel/trace"
)

// ScopeName is the instrumentation scope of the tracer taken from the
// provider given with flight.WithTracerProvider.
const ScopeName = "github.com/actorflight/flight"

// Span, event and attribute names.
const (
	RunSpan   = "flight.run"   // one execution of a Coordinator's fn
	BatchSpan = "flight.batch" // one call of a Batcher's fn
	HitEvent  = "flight.hit"   // on a caller's span: answered from a retained result

	Attempt   = attribute.Key("flight.attempt")    // int, 1-based (WithRetry)
	Refresh   = attribute.Key("flight.refresh")    // bool: a background refresh
	Callers   = attribute.Key("flight.callers")    // int, when the flight ends
	BatchKeys = attribute.Key("flight.batch.keys") // int
)

// MaxLinks bounds the links of one span: the callers beyond it are counted
// (flight.callers) but not linked.
const MaxLinks = 128

// spanKey is the key under which package trace keeps a context's span. It
// is unexported there; it is learnt once by asking SpanFromContext to look
// it up in a context that records what it was asked for. A flight's context
// answers it with the running execution's span (Run.Value), so that fn's
// own spans nest under flight.run while the context stays the flight's own
// (its cancellation without a goroutine, its recursion check).
var spanKey = func() any {
	spy := &keySpy{Context: context.Background()}
	trace.SpanFromContext(spy)
	return spy.key
}()

type keySpy struct {
	context.Context
	key any
}

func (s *keySpy) Value(key any) any {
	s.key = key
	return nil
}

// Tracer makes the spans of one Coordinator or Batcher. A nil *Tracer
// traces nothing; its methods may be called on it. It is safe for
// concurrent use.
type Tracer struct {
	t trace.Tracer

	// live holds the links of the running spans that StartSpan started
	// (flights that keep no Run), by their flight's key, from the first
	// later caller with a span to the span's end: only flights with more
	// than one caller have an entry.
	mu   sync.Mutex
	live map[any]*links // protected by mu
}

// New returns a Tracer on tp's tracer for ScopeName.
func New(tp trace.TracerProvider) *Tracer {
	return &Tracer{t: tp.Tracer(ScopeName), live: make(map[any]*links)}
}

// Hit adds the flight.hit event to ctx's span if it is recording. It runs
// on the caller's goroutine; with a nil t it does nothing.
func (t *Tracer) Hit(ctx context.Context) {
	if t == nil {
		return
	}
	if sp := trace.SpanFromContext(ctx); sp.IsRecording() {
		sp.AddEvent(HitEvent)
	}
}

// links is a deduplicated list of the span contexts of a span's callers,
// at most MaxLinks of them, without the parent's.
type links struct {
	parent trace.SpanContext
	list   []trace.Link
}

// add records sc unless it is invalid, the parent, already recorded, or
// beyond MaxLinks; it reports whether it did.
func (l *links) add(sc trace.SpanContext) bool {
	if !sc.IsValid() || len(l.list) >= MaxLinks || sc.Equal(l.parent) {
		return false
	}
	for i := range l.list {
		if l.list[i].SpanContext.Equal(sc) {
			return false
		}
	}
	l.list = append(l.list, trace.Link{SpanContext: sc})
	return true
}

// Run is the tracing of a flight of a Coordinator that keeps a record: the
// flight.run span of each of its executions (each attempt of WithRetry),
// all children of the first caller's span and each linked to every later
// caller. A flight that runs fn once and has no later caller before its
// execution starts keeps none (see StartRun); a Run is for a flight that
// may run fn again, one that a later caller with a span joined while it
// waited for the key's running fn, and one whose span cannot tell its
// parent.
//
// A Run is also a context: the first caller's values (the context it
// wraps), except that it answers the span key with the latest execution's
// span. The flight's context takes its values from the Run instead of from
// the first caller's ctx, so fn's own spans nest under flight.run, and the
// flight needs no field of its own for tracing.
//
// The flight's shard owns it: NewRun, LinkSpanContext, Start and End are
// called from its handlers only, one at a time. Value may be called from
// any goroutine (fn's, through the flight's context). It is kept small (64
// bytes): the links live apart, made by the first later caller with a
// span.
type Run struct {
	context.Context // the first caller's values; never cancelled

	t       *Tracer
	links   *links // nil until a later caller with a span joins
	running bool   // span is the running execution's

	mu   sync.Mutex // orders the shard's writes of span before Value's reads
	span trace.Span // the latest execution's; nil before the first
}

// NewRun returns the tracing of a flight whose first caller's context (its
// values) is parent. With a nil t it returns nil.
func (t *Tracer) NewRun(parent context.Context) *Run {
	if t == nil {
		return nil
	}
	return &Run{Context: parent, t: t}
}

// LinkSpanContext links a later caller, by its span context, from the
// flight's span (the running one, and those of later attempts), once per
// distinct span context, never the parent's, up to MaxLinks; an invalid
// span context adds nothing.
func (r *Run) LinkSpanContext(sc trace.SpanContext) {
	if !sc.IsValid() {
		return
	}
	if r.links == nil {
		r.links = &links{parent: trace.SpanContextFromContext(r.Context)}
	}
	if r.links.add(sc) && r.running {
		r.span.AddLink(trace.Link{SpanContext: sc})
	}
}

// Start starts the span of the flight's next execution, linked to the
// callers so far.
func (r *Run) Start() {
	// No span kind is passed: internal is the default (the API's and the
	// SDK's), and an option less is a little less work per span.
	var sp trace.Span
	if r.links == nil || len(r.links.list) == 0 {
		_, sp = r.t.t.Start(r.Context, RunSpan)
	} else {
		_, sp = r.t.t.Start(r.Context, RunSpan, trace.WithLinks(r.links.list...))
	}
	r.mu.Lock()
	r.span, r.running = sp, true
	r.mu.Unlock()
}

// End ends the running execution's span, with its flight.attempt (1-based)
// and flight.refresh (a background refresh). err is how fn ended (nil: it
// succeeded); p, when not nil, is its panic, recorded as an exception
// event; callers ≥ 0 is set as flight.callers when this execution ends the
// flight (the last attempt), and a negative callers sets nothing (another
// attempt follows). After End the span stays what Value answers, so that a
// log line written as fn ends still carries its trace.
//
// The attributes are all set here, in one call, not when the span starts:
// that saves the SDK two of the three allocations a span's attributes
// cost it (bench/: BenchmarkTracing). A sampler does not see them; none of
// flight's spans needs one to.
func (r *Run) End(err error, p *Panic, attempt int, refresh bool, callers int) {
	if !r.running {
		return
	}
	r.running = false
	sp := r.span
	end(sp, err, p)
	sp.SetAttributes(runAttrs(attempt, refresh, callers)...)
	sp.End()
}

// runAttrs returns the attributes of a flight.run span; those of the
// common spans (a first attempt, one to 64 callers) are made once, so that
// passing them allocates nothing.
func runAttrs(attempt int, refresh bool, callers int) []attribute.KeyValue {
	if attempt == 1 && !refresh && callers >= 0 && callers < len(firstAttempts) {
		return firstAttempts[callers]
	}
	kv := []attribute.KeyValue{Attempt.Int(attempt), Refresh.Bool(refresh)}
	if callers >= 0 {
		kv = append(kv, Callers.Int(callers))
	}
	return kv
}

var firstAttempts = func() (a [65][]attribute.KeyValue) {
	for n := range a {
		a[n] = []attribute.KeyValue{Attempt.Int(1), Refresh.Bool(false), Callers.Int(n)}
	}
	return a
}()

// The flight.run span of a flight that keeps no Run: one that cannot run
// again (no WithRetry) and that had no later caller before its execution
// started, which is every distinct-key flight. Its flight context takes its
// values from the context that the tracer's Start returns (the first
// caller's values with the span), which the SDK allocates anyway; the span
// is found in it again to be linked and ended, and the links of its later
// callers are kept in the Tracer's live table while it runs. That spares
// such a flight the Run's allocation and a lock on each span lookup of fn.

// parented is a span that tells its parent's span context, as the SDK's
// recording spans do: a later caller is then checked against the parent
// without a Run to remember it.
type parented interface{ Parent() trace.SpanContext }

// StartRun starts the span of the one execution of a flight whose first
// caller's context (its values) is parent, and returns parent with the
// span in it, for the flight's context. A recording span that cannot tell
// its parent (a provider other than the SDK) gets a Run instead, returned
// with the span running, which keeps what Link needs.
func (t *Tracer) StartRun(parent context.Context) context.Context {
	ctx, sp := t.t.Start(parent, RunSpan)
	if _, ok := sp.(parented); ok || !sp.IsRecording() {
		return ctx
	}
	return &Run{Context: parent, t: t, span: sp, running: true}
}

// LinkRunning links a later caller, by its span context sc, from the
// running span in ctx (what StartRun returned, not a Run) of the flight
// known by key: once per distinct span context, never the parent's, up to
// MaxLinks. A span that records nothing gets no link.
func (t *Tracer) LinkRunning(key any, ctx context.Context, sc trace.SpanContext) {
	if !sc.IsValid() {
		return
	}
	sp := trace.SpanFromContext(ctx)
	p, ok := sp.(parented)
	if !ok || !sp.IsRecording() {
		return
	}
	t.mu.Lock()
	l := t.live[key]
	if l == nil {
		l = &links{parent: p.Parent()}
		t.live[key] = l
		liveLinks.Add(1)
	}
	added := l.add(sc)
	t.mu.Unlock()
	if added {
		sp.AddLink(trace.Link{SpanContext: sc})
	}
}

// EndRun ends the span in ctx (what StartRun returned, not a Run) of the
// flight known by key, as Run.End ends a Run's; linked says whether
// LinkRunning may have been called for key (the flight had a later
// caller): its links are then dropped from the live table.
func (t *Tracer) EndRun(key any, ctx context.Context, err error, p *Panic, attempt int, refresh bool, callers int, linked bool) {
	if linked {
		t.mu.Lock()
		if _, ok := t.live[key]; ok {
			delete(t.live, key)
			liveLinks.Add(-1)
		}
		t.mu.Unlock()
	}
	sp := trace.SpanFromContext(ctx)
	end(sp, err, p)
	sp.SetAttributes(runAttrs(attempt, refresh, callers)...)
	sp.End()
}

// liveLinks counts the entries of every Tracer's live table.
var liveLinks atomic.Int64

// LiveLinks returns how many running spans of the process have links in a
// Tracer's live table: 0 once every traced flight has ended (a test's
// check that the table is emptied).
func LiveLinks() int64 { return liveLinks.Load() }

var internal = trace.WithSpanKind(trace.SpanKindInternal)

// Value answers the span key with the latest execution's span (or, before
// the first, the first caller's); any other key gets the first caller's
// value.
func (r *Run) Value(key any) any {
	if key == spanKey {
		r.mu.Lock()
		sp := r.span
		r.mu.Unlock()
		if sp != nil {
			return sp
		}
	}
	return r.Context.Value(key)
}

// Panic is a recovered panic of fn, for its exception event.
type Panic struct {
	Value any
	Stack []byte
}

// end sets sp's status from err and records p as an exception event.
func end(sp trace.Span, err error, p *Panic) {
	if p != nil {
		sp.AddEvent(semconv.ExceptionEventName, trace.WithAttributes(
			semconv.ExceptionType(fmt.Sprintf("%T", p.Value)),
			semconv.ExceptionMessage(fmt.Sprint(p.Value)),
			semconv.ExceptionStacktrace(string(p.Stack)),
		))
		sp.SetStatus(codes.Error, fmt.Sprintf("flight: function panicked: %v", p.Value))
		return
	}
	if err != nil {
		sp.SetStatus(codes.Error, err.Error())
	}
}

// Batch is the tracing of one call of a Batcher's fn: its flight.batch
// span, a child of the span of the batch's first caller and linked to the
// spans of every other caller of its keys.
//
// The Batcher's collector owns it: its methods are called from the
// collector's handlers only, one at a time. Before dispatch it collects candidates, each tagged
// with its key's entry, so that the callers of a key taken out of the
// batch (every caller left) are not linked.
type Batch struct {
	t     *Tracer
	cands []cand
	links links
	span  trace.Span // after Start, until End
	ended bool
}

type cand struct {
	tag any
	sc  trace.SpanContext
}

// maxCands bounds the candidates kept before dispatch.
const maxCands = 4 * MaxLinks

// NewBatch returns the tracing of a batch. With a nil t it returns nil.
func (t *Tracer) NewBatch() *Batch {
	if t == nil {
		return nil
	}
	return &Batch{t: t}
}

// Add records the span in a caller's ctx of the key tagged tag. Before
// Start it is a candidate; after Start it is linked at once (up to
// MaxLinks); after End it is ignored.
func (b *Batch) Add(tag any, sc trace.SpanContext) {
	switch {
	case b.ended || !sc.IsValid():
	case b.span != nil:
		if b.links.add(sc) {
			b.span.AddLink(trace.Link{SpanContext: sc})
		}
	case len(b.cands) < maxCands:
		b.cands = append(b.cands, cand{tag, sc})
	}
}

// Start starts the batch's span, a child of the span in parent (the first
// caller's ctx), with keys as flight.batch.keys, linked to the candidates
// whose tag live keeps, and returns parent with the span in it, for fn.
func (b *Batch) Start(parent context.Context, keys int, live func(tag any) bool) context.Context {
	b.links.parent = trace.SpanContextFromContext(parent)
	for _, c := range b.cands {
		if live(c.tag) {
			b.links.add(c.sc)
		}
	}
	b.cands = nil
	ctx, sp := b.t.t.Start(parent, BatchSpan, internal,
		trace.WithLinks(b.links.list...),
		trace.WithAttributes(BatchKeys.Int(keys)))
	b.span = sp
	return ctx
}

// End ends the batch's span: err is fn's batch-wide error (nil: it
// returned, per-key errors included), p its panic.
func (b *Batch) End(err error, p *Panic) {
	if b.ended || b.span == nil {
		return
	}
	b.ended = true
	end(b.span, err, p)
	b.span.End()
}
