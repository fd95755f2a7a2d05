package fnctx

import (
	"context"
	"testing"
	"time"

	"github.com/stretchr/testify/assert"
	"go.uber.org/goleak"
)

// ctx is the smallest context built on a Cancel, as the engines build theirs.
type ctx struct{ Cancel }

func (*ctx) Deadline() (time.Time, bool) { return time.Time{}, false }
func (c *ctx) Err() error {
	if c.Reason() != Live {
		return context.Canceled
	}
	return nil
}
func (*ctx) Value(any) any { return nil }

func TestCancel(t *testing.T) {
	defer goleak.VerifyNone(t)
	c := &ctx{}
	done := c.Done()
	assert.Equal(t, done, c.Done(), "one Done channel")
	child, cancelChild := context.WithCancel(c) // propagated through AfterFunc
	defer cancelChild()
	ran := 0
	stop := c.AfterFunc(func() { ran++ })
	assert.True(t, stop(), "stop before End removes the function")
	c.AfterFunc(func() { ran++ })
	c.End(2)
	c.End(3) // only the first End counts
	assert.Equal(t, uint8(2), c.Reason())
	assert.Equal(t, 1, ran, "a registered function runs once, a stopped one never")
	<-done
	<-child.Done()
	assert.ErrorIs(t, child.Err(), context.Canceled)
	late := make(chan struct{})
	assert.False(t, c.AfterFunc(func() { close(late) })(), "after End, f runs at once and stop reports false")
	<-late
	fresh := &ctx{}
	fresh.End(1)
	<-fresh.Done() // made after End: already closed
}
