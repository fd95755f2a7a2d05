// Package wait holds the waiting helpers the project's tests, examples and
// benchmarks share: they order events on channels and on the coordinator's
// own counters, and use a time limit only to call a hang a hang (it never
// delays a passing test).
package wait

import (
	"runtime"
	"sync"
	"testing"
	"time"
)

// Hang is how long a test waits for something that must happen before it
// declares a hang.
const Hang = 10 * time.Second

// Until polls cond (yielding between polls, no fixed sleep of any length
// that matters) until it holds, and fails the test after Hang.
func Until(t testing.TB, what string, cond func() bool) {
	t.Helper()
	if !For(Hang, cond) {
		t.Fatalf("timed out waiting for %s", what)
	}
}

// For polls cond as Until does until it holds or limit passes, and reports
// whether it held. It is for waits outside a test (runnable examples and
// example programs) and for those where a miss is not a failure (bench).
func For(limit time.Duration, cond func() bool) bool {
	deadline := time.Now().Add(limit)
	for !cond() {
		if time.Now().After(deadline) {
			return false
		}
		runtime.Gosched()
		time.Sleep(50 * time.Microsecond)
	}
	return true
}

// Recv receives one value from ch, or fails the test after Hang.
func Recv[T any](t testing.TB, ch <-chan T) T {
	t.Helper()
	return Within(t, ch, Hang, "a channel")
}

// Within receives one value from ch, or fails the test after d, naming what.
func Within[T any](t testing.TB, ch <-chan T, d time.Duration, what string) T {
	t.Helper()
	select {
	case v := <-ch:
		return v
	case <-time.After(d):
		t.Fatalf("timed out after %v waiting on %s", d, what)
		panic("unreachable")
	}
}

// Fataler is what Done needs of a test: a testing.TB, or a property-based
// test's own T.
type Fataler interface {
	Helper()
	Fatalf(format string, args ...any)
}

// Done waits until wg's counter is zero, or fails the test after d, naming
// what. The goroutine that waits on wg is left behind only when the test
// fails.
func Done(t Fataler, wg *sync.WaitGroup, d time.Duration, what string) {
	t.Helper()
	done := make(chan struct{})
	go func() { wg.Wait(); close(done) }()
	select {
	case <-done:
	case <-time.After(d):
		t.Fatalf("timed out after %v waiting for %s", d, what)
	}
}
