package batch

import (
	"context"
	"errors"
	"testing"

	"github.com/actorflight/flight/internal/wait"
)

// The batch's ctx carries the first caller's values but never its
// cancellation: while the batch is live (another caller still waits),
// context.Cause shows no cause of the first caller's, and a context derived
// from the batch's is not cancelled with that caller.
func TestBatchContextHidesCallerCancellation(t *testing.T) {
	type keyT struct{}
	in, release := make(chan context.Context, 1), make(chan struct{})
	c := testConfig(func(ctx context.Context, keys []string) (map[string]string, error) {
		in <- ctx
		<-release
		return map[string]string{keys[0]: "v"}, nil
	})
	e := newEngine(t, c)
	cause := errors.New("the first caller went away")
	first, cancel := context.WithCancelCause(context.WithValue(context.Background(), keyT{}, "v"))
	defer cancel(nil)
	firstOut := e.LoadChan(first, "a", nil)
	bctx := wait.Recv(t, in)
	other := e.LoadChan(context.Background(), "a", nil)
	wait.Until(t, "two waiters", func() bool { return e.Stats().Waiters() == 2 })
	cancel(cause)
	if r := wait.Recv(t, firstOut); !errors.Is(r.err, context.Canceled) {
		t.Fatalf("the first caller got %+v, want context.Canceled", r)
	}
	wait.Until(t, "one waiter", func() bool { return e.Stats().Waiters() == 1 })
	if err := bctx.Err(); err != nil {
		t.Fatalf("the batch's ctx ended with the first caller: %v", err)
	}
	if err := context.Cause(bctx); err != nil {
		t.Fatalf("the first caller's cause shows through the batch's ctx: %v", err)
	}
	if v := bctx.Value(keyT{}); v != "v" {
		t.Fatalf("the batch's ctx lost the first caller's value: %v", v)
	}
	child, stop := context.WithCancel(bctx)
	defer stop()
	if err := child.Err(); err != nil {
		t.Fatalf("a child of the batch's ctx was cancelled with the first caller: %v", err)
	}
	close(release)
	if r := wait.Recv(t, other); r.err != nil || r.v != "v" {
		t.Fatalf("the other caller got %+v", r)
	}
	wait.Until(t, "the batch's ctx ended", func() bool { return bctx.Err() != nil })
	if !errors.Is(child.Err(), context.Canceled) {
		t.Fatalf("a child of the batch's ctx is not cancelled with it: %v", child.Err())
	}
	if err := context.Cause(bctx); err != context.Canceled {
		t.Fatalf("the batch's ctx ended with cause %v, want context.Canceled", err)
	}
}
