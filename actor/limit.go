package actor

import "sync/atomic"

// Limit bounds a count shared by several goroutines, such as flights admitted
// across all shards of a coordinator.
//
// A nil *Limit admits everything and counts nothing, so an unbounded
// coordinator pays nothing for it. A non-nil Limit is safe for concurrent use;
// tryAcquire is one atomic load and one compare-and-swap when uncontended.
type Limit struct {
	max int64
	n   atomic.Int64
}

// NewLimit returns a Limit of max, or nil (no limit) when max <= 0.
func NewLimit(max int) *Limit {
	if max <= 0 {
		return nil
	}
	return &Limit{max: int64(max)}
}

// tryAcquire takes one unit and reports true, or reports false without
// taking anything when max units are already taken.
func (l *Limit) tryAcquire() bool {
	if l == nil {
		return true
	}
	for {
		cur := l.n.Load()
		if cur >= l.max {
			return false
		}
		if l.n.CompareAndSwap(cur, cur+1) {
			return true
		}
	}
}

// release gives back one unit taken by tryAcquire.
func (l *Limit) release() {
	if l == nil {
		return
	}
	if l.n.Add(-1) < 0 {
		panic("flight: actor.Limit released more than acquired")
	}
}
