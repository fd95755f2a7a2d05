package cluster

import (
	"context"
	"errors"
	"fmt"
	"strconv"

	"github.com/asynkron/protoactor-go/actor"

	"github.com/actorflight/flight"
	"github.com/actorflight/flight/cluster/internal/wire"
	"github.com/actorflight/flight/internal/tracing"
)

// errLost marks an attempt whose owner went away before answering.
var errLost = errors.New("owner lost")

func (n *Node) usable() error {
	n.mu.Lock()
	defer n.mu.Unlock()
	switch {
	case n.closed:
		return flight.ErrClosed
	case !n.started:
		return ErrNotStarted
	}
	return nil
}

// resolve returns the PID of key's grain, activating it on its owner if
// needed (protoactor's identity lookup: a request to the owner's placement
// actor, bounded by its fixed 5 s timeout), or nil when no owner answered.
func (n *Node) resolve(kind, key string) *actor.PID {
	if pid, ok := n.pids.get(kind, key); ok {
		return pid
	}
	pid := n.cl.Get(key, kind)
	if pid != nil {
		n.pids.set(kind, key, pid)
	}
	return pid
}

// outcome is what a requester reports: the owner's reply, or why the owner
// was lost (and whether its whole address went away).
type outcome struct {
	reply    *wire.Reply
	lost     string
	deadAddr bool
	notFound bool // the grain did not exist (passivated): a stale cached PID
}

// lostError is an attempt whose owner went away; it wraps errLost.
type lostError struct {
	addr     string // the owner's address
	why      string
	deadAddr bool // the address terminated (process died or connection lost), not just the grain
	notFound bool // the grain no longer existed on a live member (a stale cached PID)
}

func (e *lostError) Error() string { return fmt.Sprintf("owner %s lost: %s", e.addr, e.why) }
func (e *lostError) Unwrap() error { return errLost }

// send makes one attempt: it resolves key's grain, and a requester actor
// watches the grain, sends it a Join and waits for its Reply. It returns
// the Reply, an error wrapping errLost when the grain could not be reached
// or stopped before replying, or ctx.Err() when ctx ended first (the grain
// is then sent a Leave).
func (n *Node) send(ctx context.Context, e *entry, key string) (*wire.Reply, error) {
	kind := e.kind
	pid := n.resolve(kind, key)
	if pid == nil {
		return nil, &lostError{why: "no owner answered the activation of " + kind + "/" + key}
	}
	out := make(chan outcome, 1)
	call := n.system.Address() + "#" + strconv.FormatUint(n.calls.Add(1), 36)
	join := &wire.Join{
		Call:         call,
		Loader:       e.name,
		Fingerprint:  e.fingerprint,
		MaxValueSize: int64(n.cfg.MaxValueSize),
	}
	if e.traced {
		// ctx is the context of this member's flight for the key: its span
		// is that flight's flight.run, which links this member's callers.
		join.Traceparent, join.Tracestate = tracing.TraceParent(ctx)
	}
	req := n.system.Root.Spawn(actor.PropsFromProducer(func() actor.Actor {
		return &requester{grain: pid, call: call, out: out, join: join}
	}, inline...))
	select {
	case o := <-out:
		if o.reply == nil {
			n.pids.remove(kind, key, pid)
			return nil, &lostError{addr: pid.Address, why: o.lost, deadAddr: o.deadAddr, notFound: o.notFound}
		}
		return o.reply, nil
	case <-ctx.Done():
		n.system.Root.Send(req, leaveNow{})
		return nil, ctx.Err()
	}
}

// leaveNow tells a requester that its caller left.
type leaveNow struct{}

// requester is the actor through which one attempt of one member's call
// talks to the key's grain. It lives for that attempt only. Watching the
// grain is what makes the call never hang on a lost owner: protoactor
// delivers Terminated when the grain stops (locally or through remote) and
// when the owner's address terminates (its process died or its connection
// failed), and answers a Watch of a grain that no longer exists with
// Terminated at once.
//
// All fields are owned by the actor; out is written at most once (done).
type requester struct {
	grain *actor.PID
	call  string
	join  *wire.Join // sent once, at start
	out   chan<- outcome
	done  bool
}

func (r *requester) Receive(ctx actor.Context) {
	switch m := ctx.Message().(type) {
	case *actor.Started:
		ctx.Watch(r.grain)
		ctx.Request(r.grain, r.join)
	case *wire.Reply:
		if m.Call == r.call {
			r.finish(ctx, outcome{reply: m})
		}
	case *actor.Terminated:
		if m.Who.Equal(r.grain) {
			r.finish(ctx, outcome{
				lost:     "grain terminated: " + m.Why.String(),
				deadAddr: m.Why == actor.TerminatedReason_AddressTerminated,
				notFound: m.Why == actor.TerminatedReason_NotFound,
			})
		}
	case *actor.DeadLetterResponse:
		r.finish(ctx, outcome{lost: "grain not found", notFound: true})
	case leaveNow:
		if !r.done {
			ctx.Send(r.grain, &wire.Leave{Call: r.call})
		}
		r.finish(ctx, outcome{})
	}
}

// finish reports o (once) and stops the requester.
func (r *requester) finish(ctx actor.Context, o outcome) {
	if r.done {
		return
	}
	r.done = true
	r.out <- o // buffered: never blocks, written once
	ctx.Unwatch(r.grain)
	ctx.Stop(ctx.Self())
}
