package coordinator

import (
	"context"
	"errors"
	"fmt"
	"testing"

	"github.com/actorflight/flight/internal/wait"
)

// With bounds configured, DoChan calls cannot pile up in a shard's mailbox
// without limit: while the shard is busy (here: held inside a handler by the
// test hook), posts only enqueue, and beyond the backlog bound DoChan is
// refused with ErrOverloaded at once. Every call let into the mailbox is
// answered once the shard goes on.
func TestDoChanBacklogIsBounded(t *testing.T) {
	cfg := testConfig(0)
	cfg.MaxInFlight = 10
	c, err := New[string, string, result](cfg)
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close()
	if c.backlog != minBacklog {
		t.Fatalf("backlog = %d, want %d", c.backlog, minBacklog)
	}
	fn := func(context.Context) (string, error) { return "v", nil }

	// Hold the shard inside the handling of the first call. The goroutine
	// that posts it drains the mailbox, so it is the one held.
	held, release := make(chan struct{}), make(chan struct{})
	first := true // read and written only by the shard's draining goroutine
	hold := func(msg any) bool {
		if cl, ok := msg.(*call[string, string, result]); ok && cl.key == "hold" && first {
			first = false
			close(held)
			<-release
		}
		return false
	}
	fault.Store(&hold)
	t.Cleanup(func() { fault.Store(nil) })
	holder := make(chan (<-chan result), 1)
	go func() { holder <- c.DoChan(context.Background(), "hold", fn, nil) }()
	<-held

	// The holder's call is still counted (the hook runs before the join), so
	// minBacklog-1 more fit; the rest are refused before DoChan returns.
	const extra = 100
	var queued []<-chan result
	refused := 0
	for i := range minBacklog - 1 + extra {
		ch := c.DoChan(context.Background(), fmt.Sprint("k", i%5), fn, nil)
		select {
		case r := <-ch:
			if !errors.Is(r.err, errOverloaded) {
				t.Fatalf("call %d answered %+v while the shard was held", i, r)
			}
			refused++
		default:
			queued = append(queued, ch)
		}
	}
	if refused != extra || len(queued) != minBacklog-1 {
		t.Fatalf("refused %d, queued %d; want %d and %d", refused, len(queued), extra, minBacklog-1)
	}
	if got := c.Stats().Overloaded; got != extra {
		t.Fatalf("Stats().Overloaded = %d, want %d", got, extra)
	}

	close(release)
	if r := wait.Recv(t, wait.Recv(t, holder)); r.err != nil || r.v != "v" {
		t.Fatalf("holder got %+v", r)
	}
	for i, ch := range queued {
		if r := wait.Recv(t, ch); r.err != nil || r.v != "v" {
			t.Fatalf("queued call %d got %+v", i, r)
		}
	}
	wait.Until(t, "the backlog drains", func() bool {
		s := c.shards[0]
		return s.pending.Load() == 0 && c.Stats().Keys == 0
	})
	// With room again, DoChan is admitted.
	if r := wait.Recv(t, c.DoChan(context.Background(), "again", fn, nil)); r.err != nil {
		t.Fatalf("after the backlog drained: %+v", r)
	}
}

// Without bounds there is no backlog accounting at all.
func TestNoBacklogWithoutBounds(t *testing.T) {
	c, err := New[string, string, result](testConfig(0))
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close()
	if c.backlog != 0 {
		t.Fatalf("backlog = %d, want 0", c.backlog)
	}
	r := wait.Recv(t, c.DoChan(context.Background(), "k", func(context.Context) (string, error) { return "v", nil }, nil))
	if r.err != nil || c.shards[0].pending.Load() != 0 {
		t.Fatalf("got %+v, pending %d", r, c.shards[0].pending.Load())
	}
}
