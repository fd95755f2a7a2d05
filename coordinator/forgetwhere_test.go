package coordinator

import (
	"context"
	"strings"
	"testing"

	"github.com/actorflight/flight/internal/wait"
)

// ForgetWhere detaches the running flights of the keys it matches (their
// callers still get their result; the next call starts a new flight) and
// leaves the others alone; a fault while a shard handles it does not hang
// it.
func TestForgetWhere(t *testing.T) {
	c := newTest(t, 0)
	ctx, cancel := context.WithCancel(context.Background())
	t.Cleanup(cancel)
	a, b := newBlocker(), newBlocker()
	t.Cleanup(a.unblock)
	t.Cleanup(b.unblock)
	ra := goDo(c, ctx, "x/a", a.fn("old-a"))
	rb := goDo(c, ctx, "y/b", b.fn("old-b"))
	wait.Recv(t, a.started)
	wait.Recv(t, b.started)
	c.ForgetWhere(func(k string) bool { return strings.HasPrefix(k, "x/") })
	if n := c.Stats().Forgotten; n != 1 {
		t.Fatalf("Forgotten = %d, want 1", n)
	}
	a.unblock()
	if r := wait.Recv(t, ra); r.v != "old-a" {
		t.Fatalf("the forgotten flight's caller: %+v", r)
	}
	b.unblock()
	if r := wait.Recv(t, rb); r.v != "old-b" {
		t.Fatalf("the other key's caller: %+v", r)
	}

	fired := inject(t, func(msg any) bool { _, ok := msg.(*forgetWhereMsg[string]); return ok })
	done := make(chan struct{})
	go func() { c.ForgetWhere(func(string) bool { return true }); close(done) }()
	wait.Recv(t, fired)
	wait.Within(t, done, prompt, "ForgetWhere after a fault")
}
