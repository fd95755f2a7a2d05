package batch

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"slices"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/asynkron/protoactor-go/actor"
	"go.uber.org/goleak"

	fa "github.com/actorflight/flight/actor"
	"github.com/actorflight/flight/internal/wait"
)

// Failure inside the machinery, as in coordinator/fault_test.go.
//
// testHookShard and testHookCollector run at the start of every message a
// shard or the collector handles; a panic in them stands for a bug in the
// actor's own code. The policy under test (see shard.Receive and
// collector.Receive) is containment: the callers of the keys the failing
// message was about are answered at once with the panic as an error and
// the keys detached (a running fn goes on; its batch no longer answers
// them); every other key is untouched; the actors go on serving; a fault on
// Close still closes everything and returns.
//
// The hooks are package variables read without a lock, so TestMain sets
// them once, to functions that consult an atomic "fault" slot the tests arm
// and disarm; no test here calls t.Parallel, and each test clears the slot
// in t.Cleanup.

func TestMain(m *testing.M) {
	testHookShard = func(msg any) { hook("shard", msg) }
	testHookCollector = func(msg any) { hook("collector", msg) }
	goleak.VerifyTestMain(m)
}

func hook(who string, msg any) {
	if f := fault.Load(); f != nil && (*f)(who, msg) {
		panic(fmt.Sprintf("injected fault in the %s on %T", who, msg))
	}
}

// fault, when set, says whether the actor who fails on msg.
var fault atomic.Pointer[func(who string, msg any) bool]

// inject makes the actor who fail on the first message about key of type
// T (only that one), and reports through the returned channel when it did.
func inject[T any](t *testing.T, who, key string) <-chan struct{} {
	t.Helper()
	fired := make(chan struct{})
	var once atomic.Bool
	f := func(w string, msg any) bool {
		if _, ok := msg.(T); ok && w == who && (key == "" || slices.Contains(keysOf(msg), key)) &&
			once.CompareAndSwap(false, true) {
			close(fired)
			return true
		}
		return false
	}
	fault.Store(&f)
	t.Cleanup(func() { fault.Store(nil) })
	return fired
}

type (
	eng = Engine[string, string, result]
	bat = batch[string, string, result]
)

// keysOf returns the keys msg is about.
func keysOf(msg any) []string {
	fromBatch := func(b *bat) []string {
		var ks []string
		for _, en := range b.entries {
			ks = append(ks, en.key)
		}
		return ks
	}
	switch m := msg.(type) {
	case *call[string, string, result]:
		return []string{m.key}
	case leaveMsg[string, string, result]:
		return []string{m.c.key}
	case resultMsg[string, string, result]:
		return fromBatch(m.b)
	case addMsg[string, string, result]:
		return []string{m.e.key}
	case doneMsg[string, string, result]:
		return fromBatch(m.b)
	case expiredMsg[string, string, result]:
		return fromBatch(m.b)
	}
	return nil
}

const prompt = 2 * time.Second // bounds a wait for an answer that needs no fn to return

type result struct {
	v      string
	err    error
	shared bool
}

// testHooks make a result of an answer; fn's errors fail whole batches.
type testHooks struct{}

func (testHooks) Result(v string, err error, shared bool) result { return result{v, err, shared} }
func (testHooks) KeyErrors(error) (map[string]error, bool)       { return nil, false }

type panicErr struct{ v any }

func (p *panicErr) Error() string { return fmt.Sprintf("flight: panic: %v", p.v) }

func isPanicErr(err error) bool {
	var pe *panicErr
	return errors.As(err, &pe)
}

var (
	errClosed    = errors.New("flight: closed")
	errNotFound  = errors.New("flight: not found")
	errInvalid   = errors.New("flight: invalid key")
	errRecursive = errors.New("flight: recursive")
	errGoexit    = errors.New("flight: goexit")
	errTimeout   = fmt.Errorf("flight: timeout: %w", context.DeadlineExceeded)
)

// gated is a batch function whose first call for each key blocks until
// release is closed (or its ctx is done); later calls answer at once.
type gated struct {
	mu      sync.Mutex
	seen    map[string]bool
	started chan []string
	release chan struct{}
	calls   atomic.Int32
}

func newGated(t *testing.T) *gated {
	g := &gated{seen: map[string]bool{}, started: make(chan []string, 64), release: make(chan struct{})}
	t.Cleanup(g.unblock) // before Close: cleanups run last-in first-out
	return g
}

func (g *gated) unblock() {
	select {
	case <-g.release:
	default:
		close(g.release)
	}
}

func (g *gated) fn(ctx context.Context, keys []string) (map[string]string, error) {
	g.calls.Add(1)
	g.mu.Lock()
	first := !g.seen[keys[0]]
	for _, k := range keys {
		g.seen[k] = true
	}
	g.mu.Unlock()
	g.started <- slices.Clone(keys)
	if first {
		select {
		case <-g.release:
		case <-ctx.Done():
			return nil, ctx.Err()
		}
	}
	m := make(map[string]string, len(keys))
	for _, k := range keys {
		m[k] = "v:" + k
	}
	return m, nil
}

func testConfig(fn func(context.Context, []string) (map[string]string, error)) Config[string, string, result] {
	return Config[string, string, result]{
		Fn:       fn,
		MaxBatch: 1, // each key its own batch unless a test says otherwise
		MaxWait:  time.Hour,
		Shards:   1, // every key on one shard: "other keys untouched" means the same actor
		Logger:   slog.New(slog.DiscardHandler),
		Errors: Errors{
			Errors: fa.Errors{
				Closed: errClosed, Recursive: errRecursive, Goexit: errGoexit, Timeout: errTimeout,
				Panic: func(v any, _ []byte) error { return &panicErr{v} },
			},
			NotFound: errNotFound, InvalidKey: errInvalid,
		},
		Hooks: testHooks{},
	}
}

func newEngine(t *testing.T, cfg Config[string, string, result]) *eng {
	t.Helper()
	e, err := New(cfg)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { e.Close() })
	return e
}

func goLoad(e *eng, ctx context.Context, key string) <-chan result {
	out := make(chan result, 1)
	go func() { out <- e.Load(ctx, key) }()
	return out
}

func pending[T any](t *testing.T, ch <-chan T, what string) {
	t.Helper()
	select {
	case v := <-ch:
		t.Fatalf("%s answered early: %+v", what, v)
	default:
	}
}

// scene is two keys of one shard, each in a running batch of its own, each
// with three callers (two Loads and one LoadChan).
type scene struct {
	e               *eng
	g               *gated
	badOut, goodOut []<-chan result
	badCh, goodCh   <-chan result
}

func newScene(t *testing.T, cfg func(*Config[string, string, result])) *scene {
	t.Helper()
	g := newGated(t)
	c := testConfig(g.fn)
	if cfg != nil {
		cfg(&c)
	}
	s := &scene{e: newEngine(t, c), g: g}
	ctx, cancel := context.WithCancel(context.Background())
	t.Cleanup(cancel)
	for range 2 {
		s.badOut = append(s.badOut, goLoad(s.e, ctx, "bad"))
		s.goodOut = append(s.goodOut, goLoad(s.e, ctx, "good"))
	}
	s.badCh = s.e.LoadChan(ctx, "bad", nil)
	s.goodCh = s.e.LoadChan(ctx, "good", nil)
	wait.Until(t, "six waiters", func() bool { return s.e.Stats().Waiters() == 6 })
	wait.Until(t, "two batches running", func() bool { return s.e.Stats().Running.Load() == 2 })
	// Both fns have started (and marked their keys seen): a later batch of
	// "bad" must not be taken for its first.
	wait.Recv(t, g.started)
	wait.Recv(t, g.started)
	return s
}

// expectBadFailed checks that every caller of "bad" got a panic error while
// its fn still runs, and that "good" is untouched.
func (s *scene) expectBadFailed(t *testing.T) {
	t.Helper()
	for _, o := range s.badOut {
		if r := wait.Within(t, o, prompt, "a Load of the failed key"); !isPanicErr(r.err) {
			t.Fatalf("a Load of the failed key got %+v, want a panic error", r)
		}
	}
	if r := wait.Within(t, s.badCh, prompt, "the LoadChan of the failed key"); !isPanicErr(r.err) {
		t.Fatalf("the LoadChan of the failed key got %+v, want a panic error", r)
	}
	for _, o := range s.goodOut {
		pending(t, o, "a Load of the other key")
	}
	pending(t, s.goodCh, "the LoadChan of the other key")
	wait.Until(t, "only the other key's callers left", func() bool { return s.e.Stats().Waiters() == 3 })
}

// expectServing checks that the shard still serves the failed key (a new
// batch) and the other key, and ends idle.
func (s *scene) expectServing(t *testing.T) {
	t.Helper()
	ctx := context.Background()
	if r := wait.Within(t, goLoad(s.e, ctx, "bad"), prompt, "the failed key after the fault"); r.err != nil || r.v != "v:bad" {
		t.Fatalf("the failed key after the fault: %+v", r)
	}
	s.g.unblock()
	for _, o := range s.goodOut {
		if r := wait.Recv(t, o); r.err != nil || r.v != "v:good" || !r.shared {
			t.Fatalf("a Load of the other key got %+v", r)
		}
	}
	if r := wait.Recv(t, s.goodCh); r.err != nil || r.v != "v:good" {
		t.Fatalf("the LoadChan of the other key got %+v", r)
	}
	if r := s.e.Load(ctx, "fresh"); r.err != nil || r.v != "v:fresh" {
		t.Fatalf("a fresh key after the fault: %+v", r)
	}
	wait.Until(t, "idle", func() bool { return idle(s.e) })
}

func idle(e *eng) bool {
	st := e.Stats()
	return st.Keys.Load()+st.Waiters()+st.Pending.Load()+st.Running.Load() == 0
}

// A fault while the shard handles a caller's join: that caller and every
// caller of its key get the panic error at once, without waiting for fn.
func TestFaultOnJoin(t *testing.T) {
	s := newScene(t, nil)
	fired := inject[*call[string, string, result]](t, "shard", "bad")
	joiner := goLoad(s.e, context.Background(), "bad")
	wait.Recv(t, fired)
	if r := wait.Within(t, joiner, prompt, "the caller whose join failed"); !isPanicErr(r.err) {
		t.Fatalf("the caller whose join failed got %+v", r)
	}
	s.expectBadFailed(t)
	// A LoadChan and a LoadMany whose join fails get the error too.
	inject[*call[string, string, result]](t, "shard", "bad2")
	if r := wait.Within(t, s.e.LoadChan(context.Background(), "bad2", nil), prompt, "LoadChan"); !isPanicErr(r.err) {
		t.Fatalf("a LoadChan whose join failed got %+v", r)
	}
	inject[*call[string, string, result]](t, "shard", "bad3")
	_, errs, _, err := s.e.LoadMany(context.Background(), []string{"bad3"})
	if err != nil || !isPanicErr(errs["bad3"]) {
		t.Fatalf("a LoadMany whose join of one key failed: %v, %v", errs, err)
	}
	s.expectServing(t)
}

// A fault on a leave (a caller's ctx done): the key's other callers get the
// panic error, and the leaver exactly one answer.
func TestFaultOnLeave(t *testing.T) {
	s := newScene(t, nil)
	ctx, cancel := context.WithCancel(context.Background())
	leaver := s.e.LoadChan(ctx, "bad", nil)
	wait.Until(t, "seven waiters", func() bool { return s.e.Stats().Waiters() == 7 })
	fired := inject[leaveMsg[string, string, result]](t, "shard", "bad")
	cancel()
	wait.Recv(t, fired)
	if r := wait.Within(t, leaver, prompt, "the leaver"); !isPanicErr(r.err) {
		t.Fatalf("leaver: %+v", r)
	}
	s.expectBadFailed(t)
	pending(t, leaver, "the leaver, a second time,")
	s.expectServing(t)
}

// A fault on a batch's result: its callers get the panic error instead of
// waiting forever; the shard goes on.
func TestFaultOnResult(t *testing.T) {
	s := newScene(t, nil)
	fired := inject[resultMsg[string, string, result]](t, "shard", "bad")
	s.g.unblock() // both batches return; the result for "bad" faults
	wait.Recv(t, fired)
	for _, o := range s.badOut {
		if r := wait.Within(t, o, prompt, "a Load of the failed batch"); !isPanicErr(r.err) {
			t.Fatalf("a Load of the failed batch got %+v", r)
		}
	}
	if r := wait.Within(t, s.badCh, prompt, "the LoadChan of the failed batch"); !isPanicErr(r.err) {
		t.Fatalf("the LoadChan of the failed batch got %+v", r)
	}
	s.expectServing(t)
}

// A fault while the collector adds a key: the key's callers get the panic
// error from its shard; the key is in no batch and loads again at once; a
// key in a running batch is untouched.
func TestFaultOnAdd(t *testing.T) {
	g := newGated(t)
	g.seen["new"] = true // its fn does not block (no other goroutine reads seen yet)
	e := newEngine(t, testConfig(g.fn))
	good := goLoad(e, context.Background(), "good")
	wait.Recv(t, g.started)
	fired := inject[addMsg[string, string, result]](t, "collector", "new")
	a, b := goLoad(e, context.Background(), "new"), e.LoadChan(context.Background(), "new", nil)
	wait.Recv(t, fired)
	for _, r := range []result{wait.Within(t, a, prompt, "Load"), wait.Within(t, b, prompt, "LoadChan")} {
		// b may have arrived after a's entry was failed: it then starts a
		// fresh entry that loads normally.
		if !isPanicErr(r.err) && (r.err != nil || r.v != "v:new") {
			t.Fatalf("a caller of the key whose add failed got %+v", r)
		}
	}
	if r := wait.Within(t, goLoad(e, context.Background(), "new"), prompt, "the key after the fault"); r.err != nil || r.v != "v:new" {
		t.Fatalf("the key after the fault: %+v", r)
	}
	pending(t, good, "the key in a running batch")
	g.unblock()
	if r := wait.Recv(t, good); r.err != nil || r.v != "v:good" {
		t.Fatalf("the key in a running batch: %+v", r)
	}
	wait.Until(t, "idle", func() bool { return idle(e) })
}

// A fault on the open batch's WithMaxWait tick: the batch is discarded and
// its callers get the panic error; fn is never called for it.
func TestFaultOnTick(t *testing.T) {
	g := newGated(t)
	c := testConfig(g.fn)
	c.MaxBatch, c.MaxWait = 10, time.Millisecond
	e := newEngine(t, c)
	fired := inject[tickMsg](t, "collector", "")
	ra, rb := e.LoadChan(context.Background(), "a", nil), goLoad(e, context.Background(), "b")
	wait.Recv(t, fired)
	for _, r := range []result{wait.Within(t, ra, prompt, "LoadChan a"), wait.Within(t, rb, prompt, "Load b")} {
		// b may have missed a's batch: then it is loaded in its own.
		if !isPanicErr(r.err) && r.err != nil {
			t.Fatalf("a caller of the batch whose tick failed got %+v", r)
		}
	}
	wait.Until(t, "idle", func() bool { return idle(e) })
	g.unblock()
	if r := e.Load(context.Background(), "a"); r.err != nil || r.v != "v:a" {
		t.Fatalf("the key after the fault: %+v", r)
	}
}

// A fault on done (fn returned): the batch's callers get the panic error,
// and fn's return is still accounted for: the slot is freed (a batch
// waiting for it is dispatched), the gauges return to 0, Close returns.
func TestFaultOnDone(t *testing.T) {
	g := newGated(t)
	c := testConfig(g.fn)
	c.MaxConcurrent = 1
	e := newEngine(t, c)
	a := goLoad(e, context.Background(), "a")
	wait.Recv(t, g.started)
	b := goLoad(e, context.Background(), "b") // waits for the slot
	wait.Until(t, "b's batch waits for the slot", func() bool { return e.Stats().Pending.Load() == 1 })
	fired := inject[doneMsg[string, string, result]](t, "collector", "a")
	g.unblock()
	wait.Recv(t, fired)
	if r := wait.Within(t, a, prompt, "the caller of the batch whose done failed"); !isPanicErr(r.err) {
		t.Fatalf("the caller of the batch whose done failed got %+v", r)
	}
	if r := wait.Within(t, b, prompt, "the batch that waited for the slot"); r.err != nil || r.v != "v:b" {
		t.Fatalf("the batch that waited for the slot: %+v", r)
	}
	wait.Until(t, "idle", func() bool { return idle(e) })
}

// A fault on the WithTimeout expiry: the batch's callers get the panic
// error at the deadline; its fn goes on and its return frees the slot.
func TestFaultOnExpired(t *testing.T) {
	release := make(chan struct{})
	// fn ignores its ctx, so that its return cannot answer the batch (with
	// the timeout error) before the expiry does.
	c := testConfig(func(_ context.Context, keys []string) (map[string]string, error) {
		if keys[0] == "a" {
			<-release
		}
		return map[string]string{keys[0]: "v:" + keys[0]}, nil
	})
	c.Timeout = 20 * time.Millisecond
	e := newEngine(t, c)
	t.Cleanup(func() { close(release) }) // before Close: cleanups run last-in first-out
	fired := inject[expiredMsg[string, string, result]](t, "collector", "a")
	a := goLoad(e, context.Background(), "a")
	wait.Recv(t, fired)
	if r := wait.Within(t, a, prompt, "the caller of the batch whose expiry failed"); !isPanicErr(r.err) {
		t.Fatalf("the caller of the batch whose expiry failed got %+v", r)
	}
	if r := e.Load(context.Background(), "b"); r.err != nil || r.v != "v:b" {
		t.Fatalf("another key while the expired batch's fn runs: %+v", r)
	}
	pending(t, a, "the caller, a second time,")
}

// Repeated faults: protoactor's default strategy would stop the actor after
// ten failures in ten seconds; containment keeps serving however many there
// are.
func TestManyFaultsKeepServing(t *testing.T) {
	e := newEngine(t, testConfig(func(_ context.Context, keys []string) (map[string]string, error) {
		return map[string]string{keys[0]: "v:" + keys[0]}, nil
	}))
	var n atomic.Int32
	f := func(who string, msg any) bool {
		if who == "shard" && slices.Contains(keysOf(msg), "bad") {
			n.Add(1)
			return true
		}
		return false
	}
	fault.Store(&f)
	t.Cleanup(func() { fault.Store(nil) })
	for i := range 50 {
		if r := e.Load(context.Background(), "bad"); !isPanicErr(r.err) {
			t.Fatalf("load %d of the failing key: %+v", i, r)
		}
		if r := e.Load(context.Background(), "good"); r.err != nil || r.v != "v:good" {
			t.Fatalf("load %d of a healthy key: %+v", i, r)
		}
	}
	if n.Load() < 50 {
		t.Fatalf("%d faults injected, want at least 50", n.Load())
	}
	wait.Until(t, "idle", func() bool { return idle(e) })
}

// A fault on the close message, in a shard or in the collector: Close still
// answers every caller, cancels the running batches, waits for fn and
// returns; nothing leaks.
func TestFaultOnClose(t *testing.T) {
	for _, who := range []string{"shard", "collector"} {
		t.Run(who, func(t *testing.T) {
			defer goleak.VerifyNone(t)
			s := newScene(t, nil)
			fired := inject[*closeMsg](t, who, "")
			closed := make(chan error, 1)
			go func() { closed <- s.e.Close() }()
			wait.Recv(t, fired)
			for _, o := range append(s.badOut, s.goodOut...) {
				if r := wait.Within(t, o, prompt, "a Load at a faulty Close"); !errors.Is(r.err, errClosed) && !isPanicErr(r.err) {
					t.Fatalf("a Load at a faulty Close got %+v", r)
				}
			}
			for _, ch := range []<-chan result{s.badCh, s.goodCh} {
				if r := wait.Within(t, ch, prompt, "a LoadChan at a faulty Close"); !errors.Is(r.err, errClosed) && !isPanicErr(r.err) {
					t.Fatalf("a LoadChan at a faulty Close got %+v", r)
				}
			}
			if err := wait.Within(t, closed, prompt, "Close"); err != nil {
				t.Fatal(err)
			}
			if r := s.e.Load(context.Background(), "bad"); !errors.Is(r.err, errClosed) {
				t.Fatalf("Load after a faulty Close: %+v", r)
			}
			if !idle(s.e) {
				t.Fatalf("gauges after a faulty Close: %+v", s.e.Stats())
			}
		})
	}
}

// A fault while a shard handles its own Stopped message (the last step of
// Close) must not hang Close. The engine is not closed on cleanup: if Close
// hangs, a second Close would wait for the first forever. (The collector is
// not an actor: it has no Stopped message.)
func TestFaultOnStopped(t *testing.T) {
	e, err := New(testConfig(func(_ context.Context, keys []string) (map[string]string, error) {
		return map[string]string{keys[0]: "v"}, nil
	}))
	if err != nil {
		t.Fatal(err)
	}
	if r := e.Load(context.Background(), "k"); r.err != nil {
		t.Fatal(r.err)
	}
	fired := inject[*actor.Stopped](t, "shard", "")
	closed := make(chan error, 1)
	go func() { closed <- e.Close() }()
	wait.Recv(t, fired)
	if err := wait.Within(t, closed, prompt, "Close, after a fault on *actor.Stopped,"); err != nil {
		t.Fatal(err)
	}
}
