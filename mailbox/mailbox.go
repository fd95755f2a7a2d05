package mailbox

import (
	"runtime"
	"sync"
	"sync/atomic"

	"github.com/asynkron/protoactor-go/actor"
)

// Mailbox is the shard actors' protoactor mailbox: it implements
// actor.Mailbox, so a shard is an ordinary protoactor actor (spawned from
// props, in the process registry, sent to with RootContext.Send, stopped
// with Stop), but its mailbox is drained the way the synchronized
// dispatcher drains one — by the goroutine that posts to it while it is
// idle — without that dispatcher's costs.
//
// Why not protoactor's own: its defaultMailbox makes a closure each time it
// goes from idle to busy (twice per flight), checks every message for
// batches and envelopes and loops over its middlewares, and its lock-free
// queue allocates a node per message. This one has one mutex-guarded ring
// per queue, allocates nothing per message once its rings have grown, and
// keeps protoactor's semantics: system messages first,
// Suspend/ResumeMailbox honoured, a panic in a handler escalated to the
// invoker (EscalateFailure) as protoactor's mailbox does, a bounded number
// of messages between yields. (Figures in bench/README.md.)
//
// It does not unpack MessageBatch messages (shards never receive any) and
// runs no MailboxMiddleware.
type Mailbox struct {
	status    atomic.Int32 // idle or running
	userN     atomic.Int32 // messages in user
	sysN      atomic.Int32 // messages in system
	suspended atomic.Bool

	mu     sync.Mutex // protects user and system
	user   ring
	system ring

	invoker actor.MessageInvoker
}

const (
	idle int32 = iota
	running
)

var _ actor.Mailbox = (*Mailbox)(nil)

// newMailbox returns an empty Mailbox.
func newMailbox() *Mailbox { return &Mailbox{} }

// PostUserMessage enqueues msg and, if the mailbox was idle, drains it on the
// calling goroutine.
func (m *Mailbox) PostUserMessage(msg any) {
	m.mu.Lock()
	m.user.push(msg)
	m.mu.Unlock()
	m.userN.Add(1)
	m.schedule()
}

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

// UserMessageCount returns the user messages waiting.
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
		m.status.Store(idle)
		// A message posted after run saw the queues empty, but before the
		// store, found the mailbox running: take it over if nobody did.
		if m.sysN.Load() == 0 && (m.suspended.Load() || m.userN.Load() == 0) {
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
			if poster && (m.sysN.Load() > 0 || (!m.suspended.Load() && m.userN.Load() > 0)) {
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
		if m.suspended.Load() || m.userN.Load() == 0 {
			return false
		}
		m.mu.Lock()
		msg = m.user.pop()
		m.mu.Unlock()
		m.userN.Add(-1)
		m.invoker.InvokeUserMessage(msg)
	}
}

// ring is a FIFO of messages that grows by doubling and never shrinks below
// its initial size; a shard's rings stop allocating once they have grown
// to its peak backlog.
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
