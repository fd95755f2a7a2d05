package batch

import (
	"context"
	"time"

	"github.com/actorflight/flight/internal/fnctx"
)

// batchCtx is the context fn runs with. It is embedded in its batch, so a
// batch costs no context allocation: it carries the first caller's values
// (Value asks that caller's ctx) but none of its cancellation, deadline or
// error, and its Done channel is made only if fn asks for it. The
// collector cancels it (every caller left, fn returned, Close); the
// WithTimeout timer expires it. It gives its batch for batchKey (see
// recursive.go).
//
// It implements the AfterFunc method that package context looks for on a
// parent, through its embedded fnctx.Cancel (shared with package actor's
// flight context), so that contexts fn derives from it are cancelled with
// it without a goroutine each, as with a stdlib parent.
type batchCtx struct {
	values   context.Context // the first caller's ctx: its values only
	self     ctxBatch        // the batch, for batchKey
	deadline time.Time       // WithTimeout; zero: none

	fnctx.Cancel // Done, AfterFunc; its reason is canceled or expired once ended
}

const (
	canceled uint8 = fnctx.Live + 1 + iota
	expired
)

func (c *batchCtx) Deadline() (time.Time, bool) { return c.deadline, !c.deadline.IsZero() }

func (c *batchCtx) Err() error {
	switch c.Reason() {
	case canceled:
		return context.Canceled
	case expired:
		return context.DeadlineExceeded
	}
	return nil
}

// Value returns the first caller's value for key, as
// context.WithoutCancel(first caller's ctx).Value would: package context's
// own key for a parent's cancellation (fnctx.CancelCtxKey, which
// context.Cause and WithCancel's propagation look up) is answered with nil,
// so that caller's cancellation never shows through.
func (c *batchCtx) Value(key any) any {
	switch key {
	case batchKey{}:
		return c.self
	case fnctx.CancelCtxKey:
		return nil
	}
	return c.values.Value(key)
}

func (c *batchCtx) String() string { return "flight.batchContext" }

// cancel ends c with err, context.Canceled or context.DeadlineExceeded;
// only the first call has an effect.
func (c *batchCtx) cancel(err error) {
	if err == context.DeadlineExceeded {
		c.End(expired)
		return
	}
	c.End(canceled)
}
