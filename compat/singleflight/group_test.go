package singleflight_test

import (
	"bytes"
	"errors"
	"fmt"
	"os"
	"os/exec"
	"runtime"
	"runtime/debug"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"
	"unsafe"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"
	"go.uber.org/goleak"

	"github.com/actorflight/flight"
	"github.com/actorflight/flight/compat/singleflight"
	"github.com/actorflight/flight/internal/wait"
)

// hang bounds a wait for what must happen (see package internal/wait).
const hang = wait.Hang

// waiters waits until n callers wait on flights of the shared coordinator.
// The tests of this package do not run in parallel, so they are the only
// callers.
func waiters(t testing.TB, n int) {
	t.Helper()
	wait.Until(t, fmt.Sprintf("%d waiters", n), func() bool { return singleflight.EngineStats().Waiters == n })
}

// idle waits until the shared coordinator has no key, flight or waiter.
func idle(t testing.TB) {
	t.Helper()
	wait.Until(t, "an idle coordinator", func() bool {
		s := singleflight.EngineStats()
		return s.Keys == 0 && s.InFlight == 0 && s.Waiters == 0
	})
}

// doAsync runs g.Do on a new goroutine and delivers what it returned.
func doAsync(g *singleflight.Group, key string, fn func() (any, error)) <-chan singleflight.Result {
	ch := make(chan singleflight.Result, 1)
	go func() {
		v, err, shared := g.Do(key, fn)
		ch <- singleflight.Result{Val: v, Err: err, Shared: shared}
	}()
	return ch
}

func TestZeroValueGroup(t *testing.T) {
	defer goleak.VerifyNone(t)
	var s struct {
		name string
		g    singleflight.Group // a field, never initialised
	}
	v, err, shared := s.g.Do("k", func() (any, error) { return 42, nil })
	require.NoError(t, err)
	assert.Equal(t, 42, v)
	assert.False(t, shared)

	r := wait.Recv(t, s.g.DoChan("k", func() (any, error) { return "x", nil }))
	assert.Equal(t, singleflight.Result{Val: "x"}, r)

	s.g.Forget("never used")
	assert.Equal(t, uintptr(1), unsafe.Sizeof(s.g), "a Group should cost one byte")
	idle(t)
}

func TestDoReturnsValueAndError(t *testing.T) {
	var g singleflight.Group
	boom := errors.New("boom")
	v, err, _ := g.Do("k", func() (any, error) { return "partial", boom })
	assert.Same(t, boom, err)
	assert.Equal(t, "partial", v, "x/sync returns the value along with the error")
	r := wait.Recv(t, g.DoChan("k", func() (any, error) { return nil, boom }))
	assert.Same(t, boom, r.Err)
	assert.Nil(t, r.Val)
}

// Shared means what x/sync says: the flight had more than one caller, for
// the first caller too; a lone caller's flight is not shared.
func TestSharedFlag(t *testing.T) {
	defer goleak.VerifyNone(t)
	idle(t)
	var g singleflight.Group
	_, _, shared := g.Do("alone", func() (any, error) { return 1, nil })
	assert.False(t, shared, "a lone Do")
	assert.False(t, wait.Recv(t, g.DoChan("alone", func() (any, error) { return 1, nil })).Shared, "a lone DoChan")

	release := make(chan struct{})
	var calls atomic.Int32
	fn := func() (any, error) {
		calls.Add(1)
		<-release
		return "v", nil
	}
	first := doAsync(&g, "k", fn)
	waiters(t, 1)
	second := doAsync(&g, "k", fn)
	third := g.DoChan("k", fn)
	waiters(t, 3)
	close(release)
	for i, ch := range []<-chan singleflight.Result{first, second, third} {
		r := wait.Recv(t, ch)
		assert.Equal(t, singleflight.Result{Val: "v", Shared: true}, r, "caller %d", i)
	}
	assert.Equal(t, int32(1), calls.Load())
	idle(t)
}

// Each Group is its own namespace: the same key in two Groups is two flights.
func TestGroupsAreSeparateNamespaces(t *testing.T) {
	idle(t)
	var a, b singleflight.Group
	release := make(chan struct{})
	var calls atomic.Int32
	fn := func() (any, error) {
		calls.Add(1)
		<-release
		return nil, nil
	}
	ra := doAsync(&a, "k", fn)
	rb := doAsync(&b, "k", fn)
	waiters(t, 2)
	assert.Equal(t, 2, singleflight.EngineStats().InFlight)
	close(release)
	assert.False(t, wait.Recv(t, ra).Shared)
	assert.False(t, wait.Recv(t, rb).Shared)
	assert.Equal(t, int32(2), calls.Load())
}

// Do re-panics fn's panic in every caller, as an error holding the value and
// fn's stack, which errors.Is and errors.As see through.
func TestDoPanicReachesEveryCaller(t *testing.T) {
	defer goleak.VerifyNone(t)
	idle(t)
	var g singleflight.Group
	sentinel := errors.New("sentinel")
	release := make(chan struct{})
	fn := func() (any, error) {
		<-release
		panicInFn(sentinel)
		return nil, nil
	}
	const n = 4
	got := make(chan any, n)
	for range n {
		go func() {
			defer func() { got <- recover() }()
			g.Do("k", fn)
			got <- "Do returned"
		}()
	}
	waiters(t, n)
	close(release)
	var first error
	for i := range n {
		r := wait.Recv(t, got)
		err, ok := r.(error)
		require.True(t, ok, "caller %d recovered %#v, want an error", i, r)
		assert.ErrorIs(t, err, sentinel)
		assert.Contains(t, err.Error(), "sentinel")
		assert.Contains(t, err.Error(), "panicInFn", "the error should carry fn's stack")
		assert.False(t, strings.HasPrefix(err.Error(), "sentinel\n\ngoroutine "), "x/sync trims the goroutine line")
		if first == nil {
			first = err
		}
		assert.Same(t, first, err, "every caller panics with the same error, as with x/sync")
	}
	// The key is usable again at once.
	v, err, _ := g.Do("k", func() (any, error) { return "after", nil })
	require.NoError(t, err)
	assert.Equal(t, "after", v)
	idle(t)
}

//go:noinline
func panicInFn(v any) { panic(v) }

// A nil function panics in Do, as the call of nil does in x/sync's.
func TestDoNilFuncPanics(t *testing.T) {
	var g singleflight.Group
	var r any
	func() {
		defer func() { r = recover() }()
		g.Do("k", nil)
	}()
	err, ok := r.(error)
	require.True(t, ok, "recovered %#v, want an error", r)
	var re runtime.Error
	assert.ErrorAs(t, err, &re, "the nil call's runtime error")
}

// runtime.Goexit in fn makes every Do caller of the flight call
// runtime.Goexit: their deferred functions run, nothing is recovered, and Do
// does not return.
func TestGoexitReachesEveryDoCaller(t *testing.T) {
	defer goleak.VerifyNone(t)
	idle(t)
	var g singleflight.Group
	release := make(chan struct{})
	var calls atomic.Int32
	fn := func() (any, error) {
		calls.Add(1)
		<-release
		runtime.Goexit()
		return nil, nil
	}
	const n = 4
	type outcome struct {
		returned  bool
		recovered any
	}
	got := make(chan outcome, n)
	for range n {
		go func() {
			var o outcome
			defer func() {
				o.recovered = recover()
				got <- o
			}()
			g.Do("k", fn)
			o.returned = true
		}()
	}
	waiters(t, n)
	close(release)
	for i := range n {
		o := wait.Recv(t, got)
		assert.False(t, o.returned, "caller %d: Do returned", i)
		assert.Nil(t, o.recovered, "caller %d: Goexit is not a panic", i)
	}
	assert.Equal(t, int32(1), calls.Load())
	_, err, _ := g.Do("k", func() (any, error) { return nil, nil })
	assert.NoError(t, err, "the key is usable again")
	idle(t)
}

// Unlike x/sync's, whose channel then never receives (golang/go#52557), a
// DoChan caller of a flight whose fn called runtime.Goexit gets an error.
func TestGoexitInDoChan(t *testing.T) {
	var g singleflight.Group
	r := wait.Recv(t, g.DoChan("k", func() (any, error) {
		runtime.Goexit()
		return nil, nil
	}))
	assert.ErrorIs(t, r.Err, flight.ErrGoexit)
	assert.Nil(t, r.Val)
}

// DoChan's channel receives exactly one Result and is never closed.
func TestDoChanNeverClosed(t *testing.T) {
	idle(t)
	var g singleflight.Group
	release := make(chan struct{})
	fn := func() (any, error) { <-release; return 1, nil }
	chs := []<-chan singleflight.Result{g.DoChan("k", fn), g.DoChan("k", fn)}
	waiters(t, 2)
	close(release)
	for _, ch := range chs {
		assert.Equal(t, singleflight.Result{Val: 1, Shared: true}, wait.Recv(t, ch))
		assert.Equal(t, 1, cap(ch), "a buffer of one: an unread channel blocks nothing")
	}
	idle(t) // nothing more can be sent: the coordinator forgot the callers
	for i, ch := range chs {
		select {
		case r, ok := <-ch:
			t.Errorf("channel %d: second receive (%v, %v); want none, and never closed", i, r, ok)
		default:
		}
	}
}

// A DoChan result nobody reads leaks nothing.
func TestDoChanUnread(t *testing.T) {
	defer goleak.VerifyNone(t)
	var g singleflight.Group
	for i := range 100 {
		g.DoChan(fmt.Sprint(i%7), func() (any, error) { return i, nil })
	}
	idle(t)
}

// Forget detaches the running flight: its callers still get its result, the
// next call starts a new flight, and the old flight ending does not detach
// the new one (golang/go#31420). Forget is synchronous in effect: a call
// that starts after Forget returned, on any goroutine, never joins the
// forgotten flight.
func TestForget(t *testing.T) {
	defer goleak.VerifyNone(t)
	idle(t)
	var g singleflight.Group
	startedOld, releaseOld := make(chan struct{}), make(chan struct{})
	oldDone := make(chan struct{})
	old := doAsync(&g, "k", func() (any, error) {
		close(startedOld)
		<-releaseOld
		return "old", nil
	})
	<-startedOld
	oldJoiner := doAsync(&g, "k", func() (any, error) { return "never", nil })
	waiters(t, 2)

	g.Forget("k")
	// A call on another goroutine, ordered after Forget by a channel.
	forgotten := make(chan struct{})
	releaseNew := make(chan struct{})
	var newCalls atomic.Int32
	newFn := func() (any, error) {
		newCalls.Add(1)
		<-releaseNew
		return "new", nil
	}
	second := make(chan singleflight.Result, 1)
	go func() {
		<-forgotten
		second <- wait.Recv(t, g.DoChan("k", newFn))
	}()
	close(forgotten)
	waiters(t, 3)

	// As with x/sync, the new flight runs at once, beside the forgotten one ...
	wait.Until(t, "the new flight to start", func() bool { return newCalls.Load() == 1 })
	assert.Equal(t, 2, singleflight.EngineStats().InFlight)
	close(releaseOld)
	go func() {
		assert.Equal(t, singleflight.Result{Val: "old", Shared: true}, wait.Recv(t, old))
		assert.Equal(t, singleflight.Result{Val: "old", Shared: true}, wait.Recv(t, oldJoiner))
		close(oldDone)
	}()
	<-oldDone
	// ... and the old flight's end did not detach it: a third call joins it.
	third := g.DoChan("k", newFn)
	waiters(t, 2)
	close(releaseNew)
	assert.Equal(t, singleflight.Result{Val: "new", Shared: true}, wait.Recv(t, second))
	assert.Equal(t, singleflight.Result{Val: "new", Shared: true}, wait.Recv(t, third))
	assert.Equal(t, int32(1), newCalls.Load())
	idle(t)
}

func TestForgetFromFn(t *testing.T) {
	var g singleflight.Group
	v, err, _ := g.Do("k", func() (any, error) {
		g.Forget("k")
		return "v", nil
	})
	require.NoError(t, err)
	assert.Equal(t, "v", v)
	idle(t)
}

// fn may call Do on the same Group with another key, as with x/sync.
func TestNestedDo(t *testing.T) {
	var g singleflight.Group
	v, err, _ := g.Do("outer", func() (any, error) {
		v, err, _ := g.Do("inner", func() (any, error) { return 2, nil })
		return v.(int) + 1, err
	})
	require.NoError(t, err)
	assert.Equal(t, 3, v)
}

// Many Groups cost no actors and leave nothing behind: keys, goroutines and
// actors of the shared system return to what they were.
func TestManyGroupsCostNothing(t *testing.T) {
	defer goleak.VerifyNone(t)
	var warm singleflight.Group
	warm.Do("warm", func() (any, error) { return nil, nil }) // start the shared coordinator
	idle(t)
	actors := singleflight.SpawnedActors()

	const groups = 10_000
	var wg sync.WaitGroup
	for w := range 8 {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for i := w; i < groups; i += 8 {
				g := new(singleflight.Group)
				v, err, _ := g.Do("same key", func() (any, error) { return i, nil })
				if err != nil || v != i {
					t.Errorf("group %d: Do = %v, %v", i, v, err)
				}
				<-g.DoChan("same key", func() (any, error) { return i, nil })
			}
		}()
	}
	wg.Wait()
	assert.Equal(t, actors, singleflight.SpawnedActors(), "no actor spawned per Group")
	idle(t)
	assert.GreaterOrEqual(t, singleflight.EngineStats().Flights, uint64(2*groups))
}

// The coordinator, once used, holds no goroutine while no call is running.
func TestIdleHoldsNoGoroutine(t *testing.T) {
	var g singleflight.Group
	var wg sync.WaitGroup
	for i := range 64 {
		wg.Add(1)
		go func() {
			defer wg.Done()
			g.Do(fmt.Sprint(i%4), func() (any, error) { return nil, nil })
		}()
	}
	wg.Wait()
	idle(t)
	goleak.VerifyNone(t) // retries while the fn workers linger (≈ 2 ms)
}

// Under concurrent load every caller gets the result of a flight of its own
// key, and a flight never runs twice at once for a key.
func TestConcurrentKeys(t *testing.T) {
	defer goleak.VerifyNone(t)
	var g singleflight.Group
	const keys, goroutines, calls = 8, 16, 200
	var running [keys]atomic.Int32
	var execs atomic.Int64
	var wg sync.WaitGroup
	for w := range goroutines {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for i := range calls {
				k := (w + i) % keys
				v, err, _ := g.Do(fmt.Sprint(k), func() (any, error) {
					if running[k].Add(1) != 1 {
						t.Errorf("key %d: two executions at once", k)
					}
					execs.Add(1)
					runtime.Gosched()
					running[k].Add(-1)
					return k, nil
				})
				if err != nil || v != k {
					t.Errorf("key %d: Do = %v, %v", k, v, err)
					return
				}
			}
		}()
	}
	wg.Wait()
	assert.LessOrEqual(t, execs.Load(), int64(goroutines*calls))
	idle(t)
}

// The crash tests run this test binary again with crashEnv set; the child
// runs only the named test, which must crash the process.
const crashEnv = "FLIGHT_COMPAT_CRASH_CHILD"

func crashChild(t *testing.T) (out string) {
	t.Helper()
	exe, err := os.Executable()
	require.NoError(t, err)
	cmd := exec.Command(exe, "-test.run=^"+t.Name()+"$", "-test.v")
	cmd.Env = append(os.Environ(), crashEnv+"=1")
	var buf bytes.Buffer
	cmd.Stdout, cmd.Stderr = &buf, &buf
	err = cmd.Run()
	var exit *exec.ExitError
	require.ErrorAs(t, err, &exit, "the child should crash; output:\n%s", buf.String())
	return buf.String()
}

// A panic in a flight that a DoChan caller shares crashes the process, as
// with x/sync (there is no caller to hand it to), even if a Do caller of the
// same flight would recover it. The channel receives nothing.
func TestDoChanPanicCrashes(t *testing.T) {
	if os.Getenv(crashEnv) != "" {
		var g singleflight.Group
		release := make(chan struct{})
		go func() {
			defer func() { recover() }()
			g.Do("k", func() (any, error) {
				<-release
				panic("compat DoChan crash")
			})
		}()
		waiters(t, 1)
		ch := g.DoChan("k", func() (any, error) { panic("DoChan ran its own fn") })
		waiters(t, 2)
		close(release)
		r := <-ch
		fmt.Printf("DoChan received %v\n", r)
		os.Exit(0)
	}
	out := crashChild(t)
	assert.Contains(t, out, "panic: compat DoChan crash")
	assert.NotContains(t, out, "DoChan received")
	assert.NotContains(t, out, "DoChan ran its own fn")
}

// After Forget, a call runs fn at once even while the forgotten fn hangs, as
// with x/sync (the core's ForgetOverlaps).
func TestForgetLetsNextCallRunWhileOldHangs(t *testing.T) {
	var g singleflight.Group
	started, release := make(chan struct{}), make(chan struct{})
	old := doAsync(&g, "k", func() (any, error) { close(started); <-release; return "old", nil })
	<-started
	g.Forget("k")
	got := make(chan any, 1)
	go func() { v, _, _ := g.Do("k", func() (any, error) { return "new", nil }); got <- v }()
	select {
	case v := <-got:
		assert.Equal(t, "new", v)
	case <-time.After(hang):
		t.Fatal("the call after Forget waits for the forgotten fn")
	}
	close(release)
	assert.Equal(t, "old", wait.Recv(t, old).Val)
	idle(t)
}

// TestDoAllocs: a Do that starts its own flight allocates nothing: the
// adapter around fn is reused (it was a closure per call), and so is the
// flight's context, which an x/sync function never sees (it was one
// allocation per call).
func TestDoAllocs(t *testing.T) {
	if raceEnabled() {
		t.Skip("the race detector allocates")
	}
	var g singleflight.Group
	fn := func() (any, error) { return 1, nil }
	g.Do("warm", fn)
	if n := testing.AllocsPerRun(1000, func() { g.Do("a", fn) }); n != 0 {
		t.Errorf("Do allocates %v times per call, want 0", n)
	}
}

// TestAdapterReuse: callers that joined another's flight, whose fn never ran,
// and callers that ran theirs, reuse adapters without ever running another
// call's fn.
func TestAdapterReuse(t *testing.T) {
	defer goleak.VerifyNone(t)
	var g singleflight.Group
	release := make(chan struct{})
	leader := doAsync(&g, "k", func() (any, error) { <-release; return "leader", nil })
	waiters(t, 1)
	var joiners []<-chan singleflight.Result
	for i := 0; i < 8; i++ {
		joiners = append(joiners, doAsync(&g, "k", func() (any, error) { return "joiner", nil }))
	}
	waiters(t, 9)
	close(release)
	for _, ch := range append(joiners, leader) {
		r := <-ch
		assert.Equal(t, "leader", r.Val)
		assert.True(t, r.Shared)
	}
	// Later flights, each with its own fn, on adapters just recycled.
	var wg sync.WaitGroup
	for i := 0; i < 64; i++ {
		wg.Add(1)
		go func() {
			defer wg.Done()
			key := fmt.Sprint(i)
			for j := 0; j < 50; j++ {
				want := fmt.Sprint(i, "/", j)
				v, err, _ := g.Do(key, func() (any, error) { return want, nil })
				if err != nil || v != want {
					t.Errorf("Do(%s) = %v, %v; want %s", key, v, err, want)
					return
				}
			}
		}()
	}
	wg.Wait()
	idle(t)
}

// raceEnabled reports whether the test binary was built with -race.
func raceEnabled() bool {
	bi, ok := debug.ReadBuildInfo()
	if !ok {
		return false
	}
	for _, s := range bi.Settings {
		if s.Key == "-race" {
			return s.Value == "true"
		}
	}
	return false
}
