package coordinator

import (
	"context"
	"errors"
	"fmt"
	"github.com/actorflight/flight/internal/wait"
	"log/slog"
	"sync/atomic"
	"testing"
	"time"

	"github.com/asynkron/protoactor-go/actor"
	"go.uber.org/goleak"

	fa "github.com/actorflight/flight/actor"
)

// Failure inside the machinery.
//
// testHookReceive runs at the start of every message a shard handles; a panic
// in it stands for a bug in the shard's own code. The supervision strategy
// under test (see shard.Receive) is containment, not protoactor's: a panic
// while a shard handles a message is recovered in Receive, because
// protoactor's strategies would drop the failing message (its callers never
// answered) and, after ten failures in ten seconds, stop the actor (every
// later caller of the shard hangs). Instead the key the message was about has
// every waiter answered at once with the panic as an error and loses its
// flights (a running fn goes on and is retired normally, and the key's next
// flight waits for it, as after Forget); every other key of the shard is
// untouched; the shard goes on serving — protoactor's Resume directive,
// applied to one key. A fault on Close still closes everything and returns.
//
// The hook is a package variable read by every shard without a lock, so it
// is set once, before any coordinator of these tests exists, to a function
// that consults an atomic "fault" slot the tests arm and disarm; no test here
// calls t.Parallel, and each test clears the slot in t.Cleanup.

func TestMain(m *testing.M) {
	testHookReceive = func(msg any) {
		if f := fault.Load(); f != nil && (*f)(msg) {
			panic(fmt.Sprintf("injected fault on %T", msg))
		}
	}
	goleak.VerifyTestMain(m)
}

// fault, when set, says whether the shard fails on msg.
var fault atomic.Pointer[func(msg any) bool]

// inject makes the shard fail on the first message that match accepts (only
// that one), and reports through the returned channel when it did.
func inject(t *testing.T, match func(msg any) bool) <-chan struct{} {
	t.Helper()
	fired := make(chan struct{})
	var once atomic.Bool
	f := func(msg any) bool {
		if match(msg) && once.CompareAndSwap(false, true) {
			close(fired)
			return true
		}
		return false
	}
	fault.Store(&f)
	t.Cleanup(func() { fault.Store(nil) })
	return fired
}

const (
	hang   = wait.Hang       // bounds a wait for what must happen
	prompt = 2 * time.Second // bounds a wait for an answer that needs no fn to return
)

type result struct {
	v      string
	err    error
	shared bool
}

type panicErr struct{ v any }

func (p *panicErr) Error() string { return fmt.Sprintf("flight: panic: %v", p.v) }

var (
	errClosed     = errors.New("flight: coordinator closed")
	errOverloaded = errors.New("flight: overloaded")
	errGoexit     = errors.New("flight: goexit")
	errTimeout    = fmt.Errorf("flight: timeout: %w", context.DeadlineExceeded)
	errNilFunc    = errors.New("flight: nil function")
)

func newTest(t *testing.T, timeout time.Duration) *Engine[string, string, result] {
	t.Helper()
	c, err := New[string, string, result](testConfig(timeout))
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { c.Close() })
	return c
}

func testConfig(timeout time.Duration) Config[string, result] {
	return Config[string, result]{
		Shards:  1, // every key on one shard: "other keys unaffected" means the same actor
		Timeout: timeout,
		Logger:  discardLogger,
		Errors: fa.Errors{
			Closed: errClosed, Overloaded: errOverloaded, Goexit: errGoexit, Timeout: errTimeout,
			Panic: func(v any, _ []byte) error { return &panicErr{v} },
		},
		ErrNilFunc: errNilFunc,
		Result:     func(v string, err error, shared bool) result { return result{v, err, shared} },
	}
}

// blocker is a fn that returns its key's value when released.
type blocker struct {
	started chan struct{}
	release chan struct{}
	calls   atomic.Int32
}

func newBlocker() *blocker {
	return &blocker{started: make(chan struct{}, 16), release: make(chan struct{})}
}

// unblock releases the fn; it may be called more than once.
func (b *blocker) unblock() {
	select {
	case <-b.release:
	default:
		close(b.release)
	}
}

func (b *blocker) fn(v string) func(context.Context) (string, error) {
	return func(context.Context) (string, error) {
		b.calls.Add(1)
		b.started <- struct{}{}
		<-b.release
		return v, nil
	}
}

func goDo(c *Engine[string, string, result], ctx context.Context, key string, fn func(context.Context) (string, error)) <-chan result {
	out := make(chan result, 1)
	go func() {
		v, shared, err := c.Do(ctx, key, fn)
		out <- result{v, err, shared}
	}()
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

func isPanicErr(err error) bool {
	var pe *panicErr
	return errors.As(err, &pe)
}

func keyOf(msg any) (string, bool) {
	switch m := msg.(type) {
	case *call[string, string, result]:
		return m.key, true
	case fa.Done[string, string]:
		return m.F.Owner().Key, true
	case fa.Leave[string, string]:
		return m.W.Flight.Owner().Key, true
	case fa.Expired[string, string]:
		return m.F.Owner().Key, true
	case *forgetMsg[string]:
		return m.key, true
	}
	return "", false
}

// scene is two keys of one shard, each with a running fn and three waiters
// (two Do callers and one DoChan caller).
type scene struct {
	c         *Engine[string, string, result]
	bad, good *blocker
	badOut    []<-chan result
	goodOut   []<-chan result
	badCh     <-chan result
	goodCh    <-chan result
}

func newScene(t *testing.T, timeout time.Duration) *scene {
	s := &scene{c: newTest(t, timeout), bad: newBlocker(), good: newBlocker()}
	t.Cleanup(s.bad.unblock) // before Close (cleanups run last-in first-out)
	t.Cleanup(s.good.unblock)
	// A cancellable ctx, so that fn runs on a worker, not on the first Do
	// caller's goroutine: the scene's Do callers must be free to be answered
	// while fn still runs.
	ctx, cancel := context.WithCancel(context.Background())
	t.Cleanup(cancel)
	for range 2 {
		s.badOut = append(s.badOut, goDo(s.c, ctx, "bad", s.bad.fn("bad-value")))
		s.goodOut = append(s.goodOut, goDo(s.c, ctx, "good", s.good.fn("good-value")))
	}
	s.badCh = s.c.DoChan(ctx, "bad", s.bad.fn("bad-value"), nil)
	s.goodCh = s.c.DoChan(ctx, "good", s.good.fn("good-value"), nil)
	wait.Until(t, "six waiters", func() bool { return s.c.Stats().Waiters == 6 })
	wait.Recv(t, s.bad.started)
	wait.Recv(t, s.good.started)
	return s
}

// expectBadFailed checks that every waiter of "bad" got a panic error while
// its fn still runs, and that "good" is untouched.
func (s *scene) expectBadFailed(t *testing.T) {
	t.Helper()
	for _, o := range s.badOut {
		r := wait.Recv(t, o)
		if !isPanicErr(r.err) {
			t.Fatalf("a Do waiter of the failed key got %+v, want a panic error", r)
		}
	}
	if r := wait.Recv(t, s.badCh); !isPanicErr(r.err) {
		t.Fatalf("the DoChan waiter of the failed key got %+v, want a panic error", r)
	}
	for _, o := range s.goodOut {
		pending(t, o, "a waiter of the other key")
	}
	pending(t, s.goodCh, "the DoChan waiter of the other key")
	wait.Until(t, "only the other key's waiters left", func() bool { return s.c.Stats().Waiters == 3 })
}

// expectServing checks that the shard still serves the failed key (a new
// flight, run once the old fn has returned) and the other key.
func (s *scene) expectServing(t *testing.T) {
	t.Helper()
	ctx := context.Background()
	again := goDo(s.c, ctx, "bad", func(context.Context) (string, error) { return "bad-again", nil })
	s.bad.unblock()
	if r := wait.Recv(t, again); r.err != nil || r.v != "bad-again" {
		t.Fatalf("the failed key after the fault: %+v", r)
	}
	s.good.unblock()
	for _, o := range s.goodOut {
		if r := wait.Recv(t, o); r.err != nil || r.v != "good-value" || !r.shared {
			t.Fatalf("a waiter of the other key got %+v", r)
		}
	}
	if r := wait.Recv(t, s.goodCh); r.err != nil || r.v != "good-value" {
		t.Fatalf("the DoChan waiter of the other key got %+v", r)
	}
	if n := s.bad.calls.Load() + s.good.calls.Load(); n != 2 {
		t.Fatalf("%d executions of the blocked fns, want 2", n)
	}
	v, _, err := s.c.Do(ctx, "fresh", func(context.Context) (string, error) { return "fresh", nil })
	if err != nil || v != "fresh" {
		t.Fatalf("a fresh key after the fault: %q, %v", v, err)
	}
	wait.Until(t, "idle", func() bool {
		st := s.c.Stats()
		return st.Keys == 0 && st.InFlight == 0 && st.Waiters == 0
	})
}

// A fault while the shard handles a caller's join: that caller and every
// waiter of its key get the panic error at once, without waiting for fn.
func TestFaultOnJoin(t *testing.T) {
	s := newScene(t, 0)
	fired := inject(t, func(msg any) bool {
		_, ok := msg.(*call[string, string, result])
		k, _ := keyOf(msg)
		return ok && k == "bad"
	})
	joiner := goDo(s.c, context.Background(), "bad", s.bad.fn("never"))
	wait.Recv(t, fired)
	if r := wait.Recv(t, joiner); !isPanicErr(r.err) {
		t.Fatalf("the caller whose join failed got %+v", r)
	}
	s.expectBadFailed(t)
	// A DoChan caller whose join fails gets the error on its channel.
	inject(t, func(msg any) bool {
		k, _ := keyOf(msg)
		_, ok := msg.(*call[string, string, result])
		return ok && k == "bad2"
	})
	if r := wait.Recv(t, s.c.DoChan(context.Background(), "bad2", s.bad.fn("never"), nil)); !isPanicErr(r.err) {
		t.Fatalf("a DoChan caller whose join failed got %+v", r)
	}
	s.expectServing(t)
}

// A fault on the Done message (fn finished): the execution is still retired
// (gauges and Close count on it) and its waiters get the panic error promptly
// rather than hanging.
//
// The waiters' contexts are cancelled on cleanup, before Close: if they are
// never answered, the test fails after prompt instead of hanging Close,
// which waits for its callers.
func TestFaultOnDone(t *testing.T) {
	c := newTest(t, 0)
	ctx, cancel := context.WithCancel(context.Background())
	t.Cleanup(cancel)
	good := newBlocker()
	t.Cleanup(good.unblock)
	goodOut := goDo(c, ctx, "good", good.fn("good-value"))
	wait.Recv(t, good.started)
	fired := inject(t, func(msg any) bool {
		_, ok := msg.(fa.Done[string, string])
		k, _ := keyOf(msg)
		return ok && k == "bad"
	})
	release := make(chan struct{})
	fn := func(context.Context) (string, error) { <-release; return "bad-value", nil }
	a, b := goDo(c, ctx, "bad", fn), c.DoChan(ctx, "bad", fn, nil)
	wait.Until(t, "three waiters", func() bool { return c.Stats().Waiters == 3 })
	close(release)
	wait.Recv(t, fired)
	if r := wait.Within(t, a, prompt, "the Do waiter of a flight whose Done message failed"); !isPanicErr(r.err) {
		t.Fatalf("Do waiter after a fault on Done: %+v", r)
	}
	if r := wait.Within(t, b, prompt, "the DoChan waiter of a flight whose Done message failed"); !isPanicErr(r.err) {
		t.Fatalf("DoChan waiter after a fault on Done: %+v", r)
	}
	wait.Until(t, "the failed execution retired", func() bool { st := c.Stats(); return st.InFlight == 1 && st.Waiters == 1 })
	pending(t, goodOut, "the other key's waiter")
	v, _, err := c.Do(ctx, "bad", func(context.Context) (string, error) { return "again", nil })
	if err != nil || v != "again" {
		t.Fatalf("the key after a fault on Done: %q, %v", v, err)
	}
	good.unblock()
	if r := wait.Recv(t, goodOut); r.err != nil || r.v != "good-value" {
		t.Fatalf("other key: %+v", r)
	}
	wait.Until(t, "idle", func() bool { st := c.Stats(); return st.Keys+st.InFlight+st.Waiters == 0 })
}

// A fault on a Leave (a caller's ctx done), a Forget and an Expired
// (WithTimeout) message: the key's other waiters get the panic error.
func TestFaultOnLeaveForgetExpired(t *testing.T) {
	t.Run("Leave", func(t *testing.T) {
		s := newScene(t, 0)
		ctx, cancel := context.WithCancel(context.Background())
		leaver := s.c.DoChan(ctx, "bad", s.bad.fn("never"), nil)
		wait.Until(t, "seven waiters", func() bool { return s.c.Stats().Waiters == 7 })
		fired := inject(t, func(msg any) bool {
			_, ok := msg.(fa.Leave[string, string])
			k, _ := keyOf(msg)
			return ok && k == "bad"
		})
		cancel()
		wait.Recv(t, fired)
		// The leaver gets exactly one answer: the panic error, since its
		// Leave was the message that failed.
		if r := wait.Recv(t, leaver); !isPanicErr(r.err) {
			t.Fatalf("leaver: %+v", r)
		}
		s.expectBadFailed(t)
		s.expectServing(t)
	})
	t.Run("Forget", func(t *testing.T) {
		s := newScene(t, 0)
		fired := inject(t, func(msg any) bool { _, ok := msg.(*forgetMsg[string]); k, _ := keyOf(msg); return ok && k == "bad" })
		s.c.Forget("bad")
		wait.Recv(t, fired)
		s.expectBadFailed(t)
		s.expectServing(t)
	})
	t.Run("Expired", func(t *testing.T) {
		c := newTest(t, 20*time.Millisecond)
		fired := inject(t, func(msg any) bool {
			_, ok := msg.(fa.Expired[string, string])
			k, _ := keyOf(msg)
			return ok && k == "bad"
		})
		release := make(chan struct{})
		a := goDo(c, context.Background(), "bad", func(context.Context) (string, error) { <-release; return "late", nil })
		wait.Recv(t, fired)
		if r := wait.Recv(t, a); !isPanicErr(r.err) {
			t.Fatalf("waiter after a fault on Expired: %+v", r)
		}
		close(release)
		v, _, err := c.Do(context.Background(), "bad", func(context.Context) (string, error) { return "again", nil })
		if err != nil || v != "again" {
			t.Fatalf("the key after a fault on Expired: %q, %v", v, err)
		}
	})
}

// Repeated faults: protoactor's default strategy would stop the actor after
// ten failures in ten seconds; containment keeps serving however many there
// are.
func TestManyFaultsShardKeepsServing(t *testing.T) {
	c := newTest(t, 0)
	var n atomic.Int32
	f := func(msg any) bool {
		if k, ok := keyOf(msg); ok && k == "bad" {
			n.Add(1)
			return true
		}
		return false
	}
	fault.Store(&f)
	t.Cleanup(func() { fault.Store(nil) })
	for i := range 50 {
		_, _, err := c.Do(context.Background(), "bad", func(context.Context) (string, error) { return "x", nil })
		if !isPanicErr(err) {
			t.Fatalf("call %d to the failing key: %v", i, err)
		}
		v, _, err := c.Do(context.Background(), "good", func(context.Context) (string, error) { return "ok", nil })
		if err != nil || v != "ok" {
			t.Fatalf("call %d to a healthy key: %q, %v", i, v, err)
		}
	}
	if n.Load() < 50 {
		t.Fatalf("%d faults injected, want at least 50", n.Load())
	}
	wait.Until(t, "idle", func() bool { st := c.Stats(); return st.Keys+st.InFlight+st.Waiters == 0 })
}

// A fault on the close message: Close still answers every waiter (ErrClosed),
// cancels every flight, waits for every fn and returns; nothing leaks.
func TestFaultOnClose(t *testing.T) {
	defer goleak.VerifyNone(t)
	s := newScene(t, 0)
	fired := inject(t, func(msg any) bool { _, ok := msg.(*closeMsg); return ok })
	closed := make(chan error, 1)
	go func() { closed <- s.c.Close() }()
	wait.Recv(t, fired)
	for _, o := range append(s.badOut, s.goodOut...) {
		if r := wait.Recv(t, o); !errors.Is(r.err, errClosed) && !isPanicErr(r.err) {
			t.Fatalf("a waiter at a faulty Close got %+v", r)
		}
	}
	for _, ch := range []<-chan result{s.badCh, s.goodCh} {
		if r := wait.Recv(t, ch); !errors.Is(r.err, errClosed) && !isPanicErr(r.err) {
			t.Fatalf("a DoChan waiter at a faulty Close got %+v", r)
		}
	}
	pending(t, closed, "Close, while fns still run,")
	s.bad.unblock()
	s.good.unblock()
	if err := wait.Recv(t, closed); err != nil {
		t.Fatal(err)
	}
	_, _, err := s.c.Do(context.Background(), "bad", func(context.Context) (string, error) { return "", nil })
	if !errors.Is(err, errClosed) {
		t.Fatalf("Do after a faulty Close: %v", err)
	}
	if st := s.c.Stats(); st.Keys+st.InFlight+st.Waiters != 0 {
		t.Fatalf("gauges after a faulty Close: %+v", st)
	}
}

// A fault while the shard handles its own Stopped message (the last step of
// Close) must not hang Close. The coordinator is not closed on cleanup: if
// Close hangs, a second Close would wait for the first forever.
func TestFaultOnStopped(t *testing.T) {
	c, err := New[string, string, result](testConfig(0))
	if err != nil {
		t.Fatal(err)
	}
	if _, _, err := c.Do(context.Background(), "k", func(context.Context) (string, error) { return "v", nil }); err != nil {
		t.Fatal(err)
	}
	fired := inject(t, func(msg any) bool { _, ok := msg.(*actor.Stopped); return ok })
	closed := make(chan error, 1)
	go func() { closed <- c.Close() }()
	wait.Recv(t, fired)
	if err := wait.Within(t, closed, prompt, "Close, after a fault while the shard handled *actor.Stopped,"); err != nil {
		t.Fatal(err)
	}
}

var discardLogger = slog.New(slog.DiscardHandler)
