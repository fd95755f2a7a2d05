//go:build !race

// The race detector's instrumentation changes frame sizes: what is measured
// here is the stack of the ordinary build.

package coordinator

import (
	"context"
	"sync"
	"sync/atomic"
	"testing"
	"unsafe"

	"github.com/actorflight/flight/internal/wait"
)

// TestJoinFitsFreshStack checks that a caller whose post finds its shard
// idle, and so runs the shard's handling of its join on its own goroutine,
// does not outgrow a fresh goroutine's first stack (2 KB, of which the
// runtime keeps 928 bytes as a guard) when its own frames above Do are
// about those of bench's stampede callers (see callerFrames). A
// stack that grows is copied, at the cost of a few microseconds per
// caller: in a stampede of fresh goroutines, that was most of what a join
// cost before it parked.
//
// Each of n joiners of one running flight is started only once the one
// before it has been counted, so each finds the shard idle and handles its
// own join; each notes the address of one of its locals before and after
// Do: a stack that grew was copied, and the address moved.
func TestJoinFitsFreshStack(t *testing.T) {
	const n = 200
	c := newTest(t, 0)
	release := make(chan struct{})
	started := make(chan struct{})
	go c.Do(context.Background(), "hot", func(context.Context) (string, error) {
		close(started)
		<-release
		return "v", nil
	})
	wait.Recv(t, started)

	var joiners sync.WaitGroup
	var moved atomic.Int32
	for i := range n {
		joiners.Add(1)
		go withCallerFrames(func() {
			var here byte
			at := uintptr(unsafe.Pointer(&here))
			if _, shared, err := c.Do(context.Background(), "hot", nil2); err != nil || !shared {
				t.Errorf("joiner: shared %v, err %v", shared, err)
			}
			if uintptr(unsafe.Pointer(&here)) != at {
				moved.Add(1)
			}
			joiners.Done()
		})
		wait.Until(t, "the joiner counted", func() bool { return c.Stats().Waiters == i+2 })
	}
	close(release)
	joiners.Wait()
	// A few may grow elsewhere (a collection's assist in the call's
	// allocation, say); before, every one did.
	if m := moved.Load(); m > n/10 {
		t.Errorf("%d of %d joiners grew their stack in Do: the join's handling outgrew a fresh stack", m, n)
	}
}

// nil2 is a joiner's fn: never called, since the joiners share the running
// flight.
func nil2(context.Context) (string, error) { return "", nil }

// callerFrames pads a joiner's stack above Do, with the joiner's closure
// (whose frame is itself about 100 bytes), to about what bench's stampede
// callers have there: 312 bytes on amd64 (BenchmarkStampedeShare's caller
// 168, its group's Do 72, flight's Coordinator.Do 72, each with its return
// address and frame pointer). Measured: with 48 bytes more padding every
// joiner grows its stack; with the shard's handling as deep as it was
// (Engine.Do, shard.join and shard.handle with their rare paths in their
// frames, 200 bytes more) every joiner did from a padding of 96 bytes.
const callerFrames = 192

//go:noinline
func withCallerFrames(f func()) {
	var pad [callerFrames - 64]byte // the rest of callerFrames: this frame's own words
	for i := range pad {
		pad[i] = padSeed
	}
	f()
	padSink = pad[int(padSeed)%len(pad)]
}

var padSeed, padSink byte
