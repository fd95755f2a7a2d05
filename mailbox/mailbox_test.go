package mailbox

import (
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/asynkron/protoactor-go/actor"
	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"

	"github.com/actorflight/flight/internal/wait"
	"go.uber.org/goleak"
)

func TestMain(m *testing.M) { goleak.VerifyTestMain(m) }

// recorder is a MessageInvoker that records what it is given, in order.
type recorder struct {
	mu        sync.Mutex
	user, sys []any
	failures  []any
	onUser    func(any)
}

func (r *recorder) InvokeSystemMessage(m any) { r.mu.Lock(); r.sys = append(r.sys, m); r.mu.Unlock() }
func (r *recorder) InvokeUserMessage(m any) {
	if r.onUser != nil {
		r.onUser(m)
	}
	r.mu.Lock()
	r.user = append(r.user, m)
	r.mu.Unlock()
}
func (r *recorder) EscalateFailure(reason, m any) {
	r.mu.Lock()
	r.failures = append(r.failures, reason)
	r.mu.Unlock()
}

func TestMailboxDrainsOnPosterInOrder(t *testing.T) {
	mb := New(nil)
	r := &recorder{}
	mb.RegisterHandlers(r, nil)
	for i := range 1000 {
		mb.PostUserMessage(i)
	}
	require.Len(t, r.user, 1000, "each post drained the mailbox on the posting goroutine")
	for i, m := range r.user {
		require.Equal(t, i, m)
	}
	assert.Equal(t, 0, mb.UserMessageCount())
}

// A message posted by a handler (re-entrant post) is handled after the
// current one, in the same drain, and system messages go first.
func TestMailboxReentrantAndSystemFirst(t *testing.T) {
	mb := New(nil)
	r := &recorder{}
	r.onUser = func(m any) {
		if m == "first" {
			mb.PostUserMessage("second")
			mb.PostSystemMessage("sys")
		}
	}
	mb.RegisterHandlers(r, nil)
	mb.PostUserMessage("first")
	assert.Equal(t, []any{"first", "second"}, r.user)
	assert.Equal(t, []any{"sys"}, r.sys)
}

func TestMailboxSuspendResume(t *testing.T) {
	mb := New(nil)
	r := &recorder{}
	mb.RegisterHandlers(r, nil)
	mb.PostSystemMessage(&actor.SuspendMailbox{})
	mb.PostUserMessage(1)
	mb.PostUserMessage(2)
	assert.Empty(t, r.user, "a suspended mailbox holds user messages")
	assert.Equal(t, 2, mb.UserMessageCount())
	mb.PostSystemMessage(&actor.ResumeMailbox{})
	assert.Equal(t, []any{1, 2}, r.user)
	assert.Empty(t, r.sys, "Suspend/Resume are the mailbox's own, not the invoker's")
}

func TestMailboxEscalatesPanics(t *testing.T) {
	mb := New(nil)
	r := &recorder{}
	r.onUser = func(m any) {
		if m == "boom" {
			panic("handler bug")
		}
	}
	mb.RegisterHandlers(r, nil)
	mb.PostUserMessage("boom")
	mb.PostUserMessage("after")
	assert.Equal(t, []any{"handler bug"}, r.failures)
	assert.Equal(t, []any{"after"}, r.user, "the mailbox goes on after a failure")
}

// Many goroutines post at once: every message is handled exactly once, by
// one goroutine at a time.
func TestMailboxConcurrentPosts(t *testing.T) {
	mb := New(nil)
	var inside, overlaps int32
	var mu sync.Mutex
	r := &recorder{}
	r.onUser = func(any) {
		mu.Lock()
		inside++
		if inside > 1 {
			overlaps++
		}
		mu.Unlock()
		mu.Lock()
		inside--
		mu.Unlock()
	}
	mb.RegisterHandlers(r, nil)
	var wg sync.WaitGroup
	for g := range 8 {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for i := range 2000 {
				mb.PostUserMessage(g*10000 + i)
			}
		}()
	}
	wg.Wait()
	// A poster drains at most throughput messages and hands the rest to a
	// goroutine of its own: wait for that one to finish.
	wait.Until(t, "every message handled", func() bool {
		r.mu.Lock()
		defer r.mu.Unlock()
		return len(r.user) == 16000
	})
	r.mu.Lock()
	defer r.mu.Unlock()
	assert.Len(t, r.user, 16000)
	mu.Lock()
	assert.Zero(t, overlaps)
	mu.Unlock()
	seen := map[any]bool{}
	for _, m := range r.user {
		require.False(t, seen[m], "message %v handled twice", m)
		seen[m] = true
	}
}

func TestRingGrowsAndWraps(t *testing.T) {
	var r ring
	var model []int // the same FIFO, as a plain slice
	next := 0
	for round := range 60 {
		for range round {
			r.push(next)
			model = append(model, next)
			next++
		}
		for range round / 2 {
			require.Equal(t, model[0], r.pop())
			model = model[1:]
		}
		require.Equal(t, len(model), r.size)
	}
	for len(model) > 0 {
		require.Equal(t, model[0], r.pop())
		model = model[1:]
	}
	assert.Zero(t, r.size)
}

// A poster that finds the mailbox idle drains at most throughput messages:
// while other goroutines keep posting, it hands the rest to a goroutine of
// its own and returns, so that no caller is kept draining a flood for
// others; that goroutine exits once the mailbox is empty.
func TestPosterHandsOverAFlood(t *testing.T) {
	mb := New(nil)
	block := make(chan struct{})
	r := &recorder{}
	first := true
	r.onUser = func(any) {
		if first { // the poster is held inside the first message while others post
			first = false
			<-block
		}
		// A handler slower than a post: the flood outpaces the drain.
		for t0 := time.Now(); time.Since(t0) < 5*time.Microsecond; {
		}
	}
	mb.RegisterHandlers(r, nil)
	posted := make(chan struct{})
	go func() {
		mb.PostUserMessage(0) // becomes the drainer, held in the handler
		close(posted)
	}()
	wait.Until(t, "the poster draining", func() bool { return mb.status.Load() == running })
	// A flood that goes on until the poster has returned.
	var n atomic.Int64
	flooded := make(chan struct{})
	go func() {
		defer close(flooded)
		for {
			select {
			case <-posted:
				return
			default:
			}
			mb.PostUserMessage(n.Add(1))
		}
	}()
	close(block)
	select {
	case <-posted:
	case <-time.After(wait.Hang):
		t.Fatal("the poster kept draining the flood")
	}
	<-flooded
	wait.Until(t, "the rest drained", func() bool {
		r.mu.Lock()
		defer r.mu.Unlock()
		return int64(len(r.user)) == n.Load()+1
	})
	wait.Until(t, "idle", func() bool { return mb.status.Load() == idle })
}

// node is a message posted with Post, carrying its own link.
type node struct {
	Node
	id int
}

func newNode(id int) *node {
	n := &node{id: id}
	n.Msg = n
	return n
}

// Messages posted with Post go to Handle, those sent the protoactor way to
// the invoker, and both keep one FIFO order.
func TestPostAndUserMessagesShareOneOrder(t *testing.T) {
	var order []any
	mb := New(func(m any) { order = append(order, m.(*node).id) })
	r := &recorder{onUser: func(m any) { order = append(order, m) }}
	mb.RegisterHandlers(r, nil)
	first := true
	mb.Handle = func(m any) {
		order = append(order, m.(*node).id)
		if first { // queue a mix while the mailbox is busy
			first = false
			for i := 1; i < 10; i++ {
				if i%3 == 0 {
					mb.PostUserMessage(i)
				} else {
					mb.Post(&newNode(i).Node)
				}
			}
		}
	}
	mb.Post(&newNode(0).Node)
	assert.Equal(t, []any{0, 1, 2, 3, 4, 5, 6, 7, 8, 9}, order)
	assert.Equal(t, 0, mb.UserMessageCount())
}

// A Suspend that arrives while a batch taken from the queue is being
// handled holds the rest of that batch until Resume.
func TestSuspendHoldsTheRestOfABatch(t *testing.T) {
	var got []int
	mb := New(nil)
	mb.RegisterHandlers(&recorder{}, nil)
	mb.Handle = func(m any) {
		id := m.(*node).id
		got = append(got, id)
		switch id {
		case 0: // queued behind 0, taken together in one batch
			mb.Post(&newNode(1).Node)
			mb.Post(&newNode(2).Node)
		case 1:
			mb.PostSystemMessage(&actor.SuspendMailbox{})
		}
	}
	mb.Post(&newNode(0).Node)
	assert.Equal(t, []int{0, 1}, got, "2 handled while suspended")
	assert.Equal(t, 0, mb.UserMessageCount(), "a node posted with Post is not a protoactor user message")
	mb.Post(&newNode(3).Node)
	assert.Equal(t, []int{0, 1}, got)
	mb.PostSystemMessage(&actor.ResumeMailbox{})
	assert.Equal(t, []int{0, 1, 2, 3}, got)
	assert.Equal(t, int32(idle), mb.status.Load())
}

// Many goroutines Post at once: each message is handled once, one at a
// time, and each poster's messages in its order.
func TestConcurrentPostsKeepEachPostersOrder(t *testing.T) {
	const posters, each = 8, 2000
	var mu sync.Mutex
	last := make([]int, posters)
	for i := range last {
		last[i] = -1
	}
	var handled atomic.Int64
	var inside atomic.Int32
	var bad atomic.Value
	mb := New(func(m any) {
		if inside.Add(1) != 1 {
			bad.Store("two handlers at once")
		}
		n := m.(*node)
		p, i := n.id/each, n.id%each
		mu.Lock()
		if last[p] != i-1 {
			bad.Store("out of order")
		}
		last[p] = i
		mu.Unlock()
		inside.Add(-1)
		handled.Add(1)
	})
	mb.RegisterHandlers(&recorder{}, nil)
	var wg sync.WaitGroup
	for p := range posters {
		wg.Go(func() {
			for i := range each {
				mb.Post(&newNode(p*each + i).Node)
			}
		})
	}
	wg.Wait()
	wait.Until(t, "every message handled", func() bool { return handled.Load() == posters*each })
	assert.Nil(t, bad.Load())
	wait.Until(t, "idle", func() bool { return mb.status.Load() == idle })
}

// Neither way in allocates per message once warm: Post uses the message's
// own Node, PostUserMessage a pooled one (the Batcher's actors post that
// way).
func TestPostsDoNotAllocate(t *testing.T) {
	mb := New(func(any) {})
	mb.RegisterHandlers(&recorder{onUser: func(any) {}}, nil)
	n := newNode(1)
	if a := testing.AllocsPerRun(1000, func() { mb.Post(&n.Node) }); a != 0 {
		t.Errorf("Post: %v allocations per message", a)
	}
	msg := any(n) // a pointer: boxing it does not allocate either
	if a := testing.AllocsPerRun(1000, func() { mb.PostUserMessage(msg) }); a != 0 {
		t.Errorf("PostUserMessage: %v allocations per message", a)
	}
}

// A post that finds the mailbox idle but a message still in the queue (one
// pushed just after the last drain looked, whose poster lost the race for
// the running status) handles that message first.
func TestPostToIdleMailboxKeepsQueuedMessageFirst(t *testing.T) {
	var got []int
	mb := New(nil)
	mb.RegisterHandlers(&recorder{}, nil)
	mb.Handle = func(m any) { got = append(got, m.(*node).id) }
	mb.push(&newNode(0).Node) // queued, mailbox idle: the state the race leaves
	mb.Post(&newNode(1).Node)
	assert.Equal(t, []int{0, 1}, got)
	assert.Equal(t, int32(idle), mb.status.Load())
	assert.Nil(t, mb.head.Load())
}

// UserMessageCount counts the messages sent the protoactor way that wait,
// not the shard's own posts.
func TestUserMessageCountCountsProtoactorMessages(t *testing.T) {
	mb := New(nil)
	r := &recorder{}
	mb.RegisterHandlers(r, nil)
	mb.Handle = func(any) {}
	mb.PostSystemMessage(&actor.SuspendMailbox{})
	mb.PostUserMessage("a")
	mb.Post(&newNode(1).Node)
	mb.PostUserMessage("b")
	assert.Equal(t, 2, mb.UserMessageCount())
	mb.PostSystemMessage(&actor.ResumeMailbox{})
	assert.Equal(t, 0, mb.UserMessageCount())
	assert.Equal(t, []any{"a", "b"}, r.user)
}
