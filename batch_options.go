package flight

import "time"

// WithMaxBatch bounds the keys of one call of a Batcher's fn: a batch is
// dispatched as soon as it holds n keys. The default is 100. It applies to
// NewBatcher only: New panics when given it. NewBatcher panics if n < 1.
func WithMaxBatch(n int) Option {
	return &option{id: optMaxBatch, n: n}
}

// WithMaxWait sets how long a Batcher's batch collects keys after its first
// one before it is dispatched (unless it fills up first). The default is 1
// ms; 0 dispatches a batch as soon as the batcher's collector handles the
// deadline's tick, with the keys that arrived meanwhile. The deadline is
// a timer (one per Batcher, reset for each batch), not a sleeping goroutine.
// It applies to NewBatcher only: New panics when given it. NewBatcher
// panics if d < 0.
//
// WithMaxWait is a duration, the batch's collection window; WithMaxWaiters,
// a Coordinator's option, counts the callers of one key.
func WithMaxWait(d time.Duration) Option {
	return &option{id: optMaxWait, d: d}
}

// WithMaxConcurrentBatches bounds the calls of a Batcher's fn running at
// once. A batch that is due (full, or WithMaxWait passed) while n calls run
// is not dispatched yet: it waits for a slot, oldest first, and meanwhile a
// batch that is not full still takes keys and a key whose callers all left
// is still taken out. 0, the default, means no bound. It applies to
// NewBatcher only: New panics when given it. NewBatcher panics if n < 0.
//
// WithMaxConcurrentBatches counts a Batcher's calls of fn running at once;
// WithMaxInFlight, its Coordinator counterpart, counts the flights across
// keys.
func WithMaxConcurrentBatches(n int) Option {
	return &option{id: optMaxConcurrentBatches, n: n}
}
