package mailbox

import (
	"runtime"
	"sync"
	"sync/atomic"

	"github.com/asynkron/protoactor-go/actor"
)

// Mailbox is the shard actors' protoactor mailbox: it implements
// actor.Mailbox, so a shard is an ordinary protoactor actor (spawned from
// props, in the process registry, supervised, stopped with Stop, and
// reachable with RootContext.Send), but its mailbox is drained the way the
// synchronized dispatcher drains one — by the goroutine that posts to it
// while it is idle — without that dispatcher's costs.
//
// # Two ways in, one queue
//
// The shard's hot messages (a caller's join, fn's return, a caller leaving)
// do not take protoactor's send path: their poster calls [Mailbox.Post]
// with a [Node] that the message carries inside itself (a call, a flight,
// a waiter), so a post is one compare-and-swap on the queue's head, or none
// when it finds the mailbox idle and empty — no PID look-up, no envelope,
// no middleware, no allocation — and the drainer hands the node's message
// to the shard's handler (Handle) directly, not through protoactor's actor
// context. Anything sent the ordinary way
// (PostUserMessage, from RootContext.Send) is wrapped in a Node of its own
// and given to the invoker as protoactor would. Both go into the same FIFO,
// so every poster's messages are handled in the order it posted them
// (a Forget before a Do, a join before its leave).
//
// The queue is a lock-free stack of nodes: a post pushes; the drainer takes
// the whole stack with one swap, reverses it into posting order and handles
// every message it found in that one pass before it looks again.
//
// # What it keeps of protoactor's mailbox
//
// System messages first (checked before each user message),
// Suspend/ResumeMailbox honoured, a panic in a handler escalated to the
// invoker (EscalateFailure) as protoactor's mailbox does, a bounded number
// of messages between yields. Unlike protoactor's defaultMailbox it
// allocates nothing when it goes from idle to busy or per message posted
// with Post, does not unpack MessageBatch messages (shards never receive
// any) and runs no MailboxMiddleware.
//
// Make one with [New]; the zero value is not usable. Post, PostUserMessage
// and PostSystemMessage are safe for concurrent use; Handle is set before
// the first post and never changed.
type Mailbox struct {
	head   atomic.Pointer[Node] // posted and not yet taken, newest first
	userN  atomic.Int32         // user messages posted and not yet handled
	status atomic.Int32         // idle or running

	sysN      atomic.Int32 // messages in system
	suspended atomic.Bool

	mu     sync.Mutex // protects system
	system ring

	// local is the FIFO remainder of the last batch taken from head; only
	// the goroutine holding the running status touches it.
	local *Node

	// Handle is the handler of the messages posted with Post. It runs on
	// the draining goroutine, one message at a time.
	Handle func(msg any)

	invoker actor.MessageInvoker
}

// Node is the queue link of a message posted with [Mailbox.Post]: a struct
// that is posted often embeds one, sets Msg once (to itself, or to a
// one-pointer value naming it, which an interface holds without an
// allocation) and posts &node each time. A Node must not be posted again
// before its message has been handled.
type Node struct {
	next *Node
	Msg  any // what Handle gets
}

// userNode carries a message sent the protoactor way (PostUserMessage),
// which goes to the invoker: its Node's Msg is the userNode itself, so a
// Node needs no flag (it is two words and an interface: a flight, a call
// and a waiter each embed one, and the flight with its owner, and the call,
// are objects every key in flight holds).
type userNode struct {
	Node
	msg any
}

const (
	idle int32 = iota
	running
)

var _ actor.Mailbox = (*Mailbox)(nil)

// New returns an empty Mailbox whose Post messages go to handle.
func New(handle func(msg any)) *Mailbox { return &Mailbox{Handle: handle} }

// Post enqueues n and, if the mailbox was idle, drains it on the calling
// goroutine. It allocates nothing.
//
// A poster that finds the mailbox idle with nothing queued (the common
// case: a shard not shared at that instant) takes the running status first
// and hands n to the drain directly, as the remainder of a taken batch: no
// compare-and-swap on the queue's head, and no swap to take it back. If
// anything is queued, n goes behind it, so each poster's order holds.
func (m *Mailbox) Post(n *Node) {
	if m.status.Load() == idle && m.status.CompareAndSwap(idle, running) {
		if m.local == nil && m.head.Load() == nil {
			m.local = n
		} else {
			m.push(n)
		}
		m.drain(true)
		return
	}
	m.push(n)
	m.schedule()
}

// push puts n on the queue's head.
func (m *Mailbox) push(n *Node) {
	for {
		old := m.head.Load()
		n.next = old
		if m.head.CompareAndSwap(old, n) {
			return
		}
	}
}

// PostUserMessage enqueues msg, sent the ordinary protoactor way, to be given
// to the invoker, and, if the mailbox was idle, drains it on the calling
// goroutine. Its Node comes from a pool and goes back once msg is taken:
// no allocation once the pool is warm.
func (m *Mailbox) PostUserMessage(msg any) {
	u, _ := userNodes.Get().(*userNode)
	if u == nil {
		u = new(userNode)
		u.Msg = u
	}
	u.msg = msg
	m.userN.Add(1)
	m.Post(&u.Node)
}

// userNodes holds the userNodes of PostUserMessage between uses.
var userNodes sync.Pool

// PostSystemMessage enqueues a protoactor system message (Started, Stop,
// Watch, Restart, Suspend/ResumeMailbox …) ahead of user messages.
func (m *Mailbox) PostSystemMessage(msg any) {
	m.mu.Lock()
	m.system.push(msg)
	m.mu.Unlock()
	m.sysN.Add(1)
	m.schedule()
}

// RegisterHandlers is called by protoactor at spawn. The dispatcher is
// ignored: this mailbox always runs on the posting goroutine.
func (m *Mailbox) RegisterHandlers(invoker actor.MessageInvoker, _ actor.Dispatcher) {
	m.invoker = invoker
}

// Start is called by protoactor at spawn; there is nothing to start.
func (m *Mailbox) Start() {}

// UserMessageCount returns the user messages waiting: those sent the
// protoactor way (PostUserMessage), which protoactor's mailbox-length
// metric reads. The nodes posted with Post are the shard's own traffic,
// handled before their poster returns unless the shard is busy, and are
// not counted: counting them cost two atomic adds per message.
func (m *Mailbox) UserMessageCount() int { return int(m.userN.Load()) }

func (m *Mailbox) schedule() {
	if !m.status.CompareAndSwap(idle, running) {
		return // the goroutine draining it will see the message
	}
	m.drain(true)
}

// drain handles messages until the mailbox is empty. A poster (the
// goroutine that found the mailbox idle) handles at most throughput
// messages: if more are left — other goroutines keep posting — it hands the
// rest to a goroutine of its own and returns, so that no caller is kept
// draining a flood for others. That goroutine exits as soon as the mailbox
// is empty, so an idle shard still holds none.
func (m *Mailbox) drain(poster bool) {
	for {
		if more := m.run(poster); more {
			go m.drain(false) // the status stays running: it is handed over
			return
		}
		held := m.local != nil
		m.status.Store(idle)
		// A message posted after run saw the queues empty, but before the
		// store, found the mailbox running: take it over if nobody did.
		if m.sysN.Load() == 0 && (m.suspended.Load() || (m.head.Load() == nil && !held)) {
			return
		}
		if !m.status.CompareAndSwap(idle, running) {
			return
		}
	}
}

// run handles messages until the queues are empty (or the mailbox is
// suspended) and reports false; for a poster it stops after throughput
// messages with some left, and reports true. Others yield the processor
// every throughput messages and go on.
func (m *Mailbox) run(poster bool) (more bool) {
	var msg any
	defer func() {
		if r := recover(); r != nil {
			m.invoker.EscalateFailure(r, msg)
		}
	}()
	for i := 0; ; i++ {
		if i == throughput {
			if poster && (m.sysN.Load() > 0 || (!m.suspended.Load() && (m.local != nil || m.head.Load() != nil))) {
				return true
			}
			i = 0
			runtime.Gosched()
		}
		if m.sysN.Load() > 0 {
			m.mu.Lock()
			msg = m.system.pop()
			m.mu.Unlock()
			m.sysN.Add(-1)
			switch msg.(type) {
			case *actor.SuspendMailbox:
				m.suspended.Store(true)
			case *actor.ResumeMailbox:
				m.suspended.Store(false)
			default:
				m.invoker.InvokeSystemMessage(msg)
			}
			continue
		}
		if m.suspended.Load() {
			return false
		}
		n := m.local
		if n == nil {
			if n = m.take(); n == nil {
				return false
			}
		}
		m.local = n.next
		n.next = nil
		msg = n.Msg
		if u, ok := msg.(*userNode); ok {
			m.userN.Add(-1)
			msg, u.msg = u.msg, nil
			userNodes.Put(u)
			m.invoker.InvokeUserMessage(msg)
		} else {
			m.Handle(msg)
		}
	}
}

// take empties head and returns what it held in posting order (oldest
// first), or nil.
func (m *Mailbox) take() *Node {
	if m.head.Load() == nil {
		return nil
	}
	var fifo *Node
	for n := m.head.Swap(nil); n != nil; {
		next := n.next
		n.next = fifo
		fifo, n = n, next
	}
	return fifo
}

// ring is a FIFO of system messages that grows by doubling and never
// shrinks below its initial size.
type ring struct {
	buf        []any
	head, size int
}

func (r *ring) push(v any) {
	if r.size == len(r.buf) {
		n := max(16, 2*len(r.buf))
		buf := make([]any, n)
		k := copy(buf, r.buf[r.head:])
		copy(buf[k:], r.buf[:r.head])
		r.buf, r.head = buf, 0
	}
	r.buf[(r.head+r.size)%len(r.buf)] = v
	r.size++
}

func (r *ring) pop() any {
	v := r.buf[r.head]
	r.buf[r.head] = nil
	r.head = (r.head + 1) % len(r.buf)
	r.size--
	return v
}
