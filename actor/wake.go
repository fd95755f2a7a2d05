package actor

import "sync/atomic"

// signals is a Do caller's hand-off with its shard: how many signals the
// shard has given (the join handled, then, for a flight's first Do caller,
// its result), and whether the caller is parked on Wake for the next one.
//
// A caller whose shard answered before it looked — the common case: the
// caller's own post drained the shard's mailbox, or fn ran on the caller's
// goroutine and its Done was handled there — finds the signal with one
// atomic load and never touches the channel. Only a caller that must wait
// parks on Wake; the shard then sends one token, and only to a caller that
// said it was parked. Tokens sent and received stay balanced, so the
// channel is empty whenever the call is recycled.
type signals struct{ st atomic.Uint32 }

const (
	parked    = 1 << 31 // the caller waits on Wake
	countMask = parked - 1
)

// Signal gives w its next signal (written after everything the caller will
// read for it), waking the caller if it is parked. Shard only; never blocks:
// Wake has room for the tokens of a call's two signals.
func (w *Waiter[K, V]) Signal() {
	for {
		s := w.sig.st.Load()
		if w.sig.st.CompareAndSwap(s, (s+1)&countMask) {
			if s&parked != 0 {
				w.Wake <- struct{}{}
			}
			return
		}
	}
}

// Signalled reports whether the shard has given w at least n signals.
func (w *Waiter[K, V]) Signalled(n uint32) bool { return w.sig.st.Load()&countMask >= n }

// Park prepares the caller to wait for signal n: it reports false if that
// signal has come already, else true, and the caller must then receive from
// Wake (a token comes with the signal), or give up the call (ctx done): a
// token may then still be sent, so such a call is never recycled.
func (w *Waiter[K, V]) Park(n uint32) bool {
	for {
		s := w.sig.st.Load()
		if s&countMask >= n {
			return false
		}
		if w.Wake == nil {
			// Before the parked bit: the shard reads Wake once it sees the
			// bit (the compare-and-swap orders this write before).
			w.Wake = make(chan struct{}, 2)
		}
		if w.sig.st.CompareAndSwap(s, s|parked) {
			return true
		}
	}
}

// queue adds w, a Do caller that joins a flight another Do caller started,
// to the flight's joiners. It gets no signal now: its one signal comes with
// the result (answerQueued), so a joiner parks once, and reads its result
// from its own waiter, never from the flight, which its owner may then
// reuse at once.
func (f *Flight[K, V]) queue(w *Waiter[K, V]) {
	if f.dosTail == nil {
		f.dos = w
	} else {
		f.dosTail.nextDo = w
	}
	f.dosTail = w
}

// Queued reports whether w was queued as a joiner (see queue): its shard
// then gives it no join signal.
func (w *Waiter[K, V]) Queued() bool {
	return w.Flight != nil && !w.Answered && !w.first && w.Out == nil
}

// answerQueued gives every queued joiner still waiting the result and its
// signal: one compare-and-swap each, and a wake-up for those parked — the
// fan-out of a stampede, as cheap per waiter as x/sync's WaitGroup release.
func (f *Flight[K, V]) answerQueued(val V, err error, shared bool) {
	w := f.dos
	f.dos, f.dosTail = nil, nil
	for w != nil {
		next := w.nextDo // read first: once signalled, w may be reused
		w.nextDo = nil
		if !w.left {
			w.Val, w.Res, w.Shared, w.Answered = val, err, shared, true
			w.Signal()
		}
		w = next
	}
}
