package coordinator

import "sync/atomic"

// gate counts the goroutines that may still post to a shard, so that Close
// can stop the shard's actor only when nobody will post to it again (a post to
// a stopped actor becomes a dead letter, and protoactor starts a goroutine to
// throttle dead-letter logging).
//
// enter/exit cost two atomic adds and two loads on the shard's own cache line.
// The ordering argument is Dekker's: close stores closed before it loads n,
// enter adds to n before it loads closed, and all four are sequentially
// consistent, so either enter sees closed or close sees the entry.
type gate struct {
	n      atomic.Int64
	closed atomic.Bool
	wake   chan struct{} // capacity 1; a token each time n drops to 0 after close
}

func newGate() gate { return gate{wake: make(chan struct{}, 1)} }

// enter reports whether the caller may post; if so it must call exit.
func (g *gate) enter() bool {
	g.n.Add(1)
	if g.closed.Load() {
		g.exit()
		return false
	}
	return true
}

func (g *gate) exit() {
	if g.n.Add(-1) == 0 && g.closed.Load() {
		select {
		case g.wake <- struct{}{}:
		default:
		}
	}
}

// close refuses later enters; wait then waits for those already in.
func (g *gate) close() { g.closed.Store(true) }

func (g *gate) wait() {
	for g.n.Load() != 0 {
		<-g.wake
	}
}
