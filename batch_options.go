package flight

import (
	"context"
	"fmt"
	"reflect"
	"time"
)

// batchConfig is what the Batcher-only options set, and which options were
// given to a constructor they do not apply to.
type batchConfig struct {
	maxBatch      int
	maxWait       time.Duration
	maxConcurrent int
	scope         func(ctx context.Context) any // WithScope (scope.go); nil: none

	batcherOnly     string // the first Batcher-only option given; "": none
	coordinatorOnly string // the first Coordinator-only option given; "": none
}

const defaultMaxWait = time.Millisecond

func (b *batchConfig) forBatcher(name string) {
	if b.batcherOnly == "" {
		b.batcherOnly = name
	}
}

func (b *batchConfig) forCoordinator(name string) {
	if b.coordinatorOnly == "" {
		b.coordinatorOnly = name
	}
}

// WithMaxBatch bounds the keys of one call of a Batcher's fn: a batch is
// dispatched as soon as it holds n keys. The default is 100. It applies to
// NewBatcher only: New panics when given it. NewBatcher panics if n < 1.
func WithMaxBatch(n int) Option {
	return optionFunc(func(c *config) {
		c.batch.forBatcher("WithMaxBatch")
		if n < 1 {
			panic(fmt.Sprintf("flight: WithMaxBatch(%d): a batch holds at least one key", n))
		}
		c.batch.maxBatch = n
	})
}

// WithMaxWait sets how long a Batcher's batch collects keys after its first
// one before it is dispatched (unless it fills up first). The default is 1
// ms; 0 dispatches a batch as soon as the batcher's collector handles the
// deadline's tick, with the keys that arrived meanwhile. The deadline is
// a timer (one per Batcher, reset for each batch), not a sleeping goroutine.
// It applies to NewBatcher only: New panics when given it. NewBatcher
// panics if d < 0.
func WithMaxWait(d time.Duration) Option {
	return optionFunc(func(c *config) {
		c.batch.forBatcher("WithMaxWait")
		if d < 0 {
			panic(fmt.Sprintf("flight: WithMaxWait(%v): negative duration", d))
		}
		c.batch.maxWait = d
	})
}

// WithMaxConcurrentBatches bounds the calls of a Batcher's fn running at
// once. A batch that is due (full, or WithMaxWait passed) while n calls run
// is not dispatched yet: it waits for a slot, oldest first, and meanwhile a
// batch that is not full still takes keys and a key whose callers all left
// is still taken out. 0, the default, means no bound. It applies to
// NewBatcher only: New panics when given it. NewBatcher panics if n < 0.
func WithMaxConcurrentBatches(n int) Option {
	return optionFunc(func(c *config) {
		c.batch.forBatcher("WithMaxConcurrentBatches")
		if n < 0 {
			panic(fmt.Sprintf("flight: WithMaxConcurrentBatches(%d): negative bound", n))
		}
		c.batch.maxConcurrent = n
	})
}

// checkCoordinator panics when New was given an option that applies to a
// Batcher only.
func (c *config) checkCoordinator() {
	if name := c.batch.batcherOnly; name != "" {
		panic(fmt.Sprintf("flight: %s applies to NewBatcher, not to New", name))
	}
}

// batcherFields are the config fields that options accepted by NewBatcher
// set; every other field must keep its zero value.
var batcherFields = map[string]bool{
	"timeout": true, "shards": true, "system": true, "logger": true,
	"telemetry": true, "batch": true, "tracer": true,
	"retain": true, "refreshSet": true, "stale": true, // retained results (batch/retain.go)
}

// zeroSetField applies o to c, set to a config whose fields that options may set to
// their zero value hold a sentinel instead, and returns the name of the
// first such field o changed ("": none). Options only set fields (or
// panic on a bad argument, as they did when first applied), so applying
// one twice is harmless.
func zeroSetField(c *config, o Option) string {
	const s = -1
	sentinel := config{attempts: s}
	*c = sentinel
	o.apply(c)
	if c.attempts != sentinel.attempts {
		return "attempts"
	}
	return ""
}

// fieldOptions names the options behind config fields, for checkBatcher's
// message.
var fieldOptions = map[string]string{
	"attempts":  "WithRetry",
	"backoff":   "WithRetry",
	"retryable": "WithRetryIf",
	"breaker":   "WithBreaker",
}

// checkBatcher panics when NewBatcher was given an option that does not
// apply to a Batcher: one marked Coordinator-only, or any option that set a
// field a Batcher does not read (so that an option added for the
// Coordinator, retained results or retries, say, is refused rather than
// silently ignored). opts are probed once more for the fields an option
// may set to their zero value (WithTTL(0)): such an option is refused too,
// whatever its value, so that a service whose TTL comes from its
// configuration does not start in one environment and panic in the next.
func (c *config) checkBatcher(opts []Option) {
	probe := new(config) // one for all options: an option's apply makes it escape
	for _, o := range opts {
		if f := zeroSetField(probe, o); f != "" {
			panic(fmt.Sprintf("flight: NewBatcher: %s does not apply to a Batcher", fieldOptions[f]))
		}
	}
	if name := c.batch.coordinatorOnly; name != "" {
		panic(fmt.Sprintf("flight: %s applies to New, not to NewBatcher", name))
	}
	v := reflect.ValueOf(c).Elem()
	for i := range v.NumField() {
		f := v.Type().Field(i)
		if !batcherFields[f.Name] && !v.Field(i).IsZero() {
			what := fieldOptions[f.Name]
			if what == "" {
				what = fmt.Sprintf("an option given (it sets %q)", f.Name)
			}
			panic(fmt.Sprintf("flight: NewBatcher: %s does not apply to a Batcher", what))
		}
	}
}
