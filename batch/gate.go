package batch

import "sync/atomic"

// gate counts the goroutines that may still post to the engine's actors, so
// that Close stops the actors only when nobody will post to them again (a
// post to a stopped actor becomes a dead letter). It is the same device as
// package coordinator's shard gates: Dekker's ordering on two sequentially
// consistent atomics, so that either enter sees closed or close sees the
// entry.
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
