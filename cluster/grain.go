package cluster

import (
	"context"
	"fmt"

	"github.com/asynkron/protoactor-go/actor"
	pcluster "github.com/asynkron/protoactor-go/cluster"

	"github.com/actorflight/flight"
	"github.com/actorflight/flight/cluster/internal/wire"
	"github.com/actorflight/flight/internal/tracing"
)

// grain is the virtual actor that owns the flight of one (loader, key)
// identity on the member protoactor's identity lookup placed it on. Every
// member's call for the key is a Join; the grain hands each to its
// member's owner coordinator (a flight.Coordinator, which runs the loader
// once for all of them) with a context of its own, and a goroutine per call
// waits for the result and replies. Receive never blocks.
//
// All fields are owned by the actor and changed only in Receive.
type grain struct {
	node  *Node
	entry *entry
	key   string
	calls map[string]*pending // by call name: calls not yet answered or left
}

// pending is one Join the grain has not answered yet.
type pending struct {
	from   *actor.PID         // the requester, watched: its death is a leave
	cancel context.CancelFunc // leaves the owner coordinator's flight
}

// callDone tells the grain that a call's reply was sent (or skipped).
type callDone struct{ call string }

func (g *grain) Receive(ctx actor.Context) {
	switch m := ctx.Message().(type) {
	case *pcluster.ClusterInit:
		g.entry.grains.Add(1)
		g.key = m.Identity.Identity
		g.calls = map[string]*pending{}
		ctx.SetReceiveTimeout(g.node.cfg.Idle)
	case *wire.Join:
		g.join(ctx, m)
	case *wire.Leave:
		g.drop(ctx, m.Call)
	case *callDone:
		g.drop(ctx, m.call)
	case *actor.Terminated:
		for call, p := range g.calls {
			if p.from.Equal(m.Who) {
				g.drop(ctx, call)
			}
		}
	case *wire.Forget:
		g.entry.owner.Forget(g.key)
	case *actor.ReceiveTimeout:
		if len(g.calls) == 0 {
			ctx.Stop(ctx.Self()) // passivate; the next call activates it anew
		}
	case *actor.Stopped:
		g.entry.grains.Add(-1)
	case *actor.Stopping:
		// Moved by a topology change, passivated, or the member is closing:
		// leave every call. Requesters learn it from their watch and retry.
		for call := range g.calls {
			g.drop(ctx, call)
		}
		// A result the owner coordinator retained for the key (WithTTL,
		// WithErrorTTL) belongs to this activation: drop it with the
		// grain, so that a member that loses the key (a member joined)
		// and gets it back later (that member left) never answers from a
		// result older than the other owner's executions and Forgets.
		// Retained results thus live at most as long as the key's grain
		// (Config.Idle without a call); README.md, "Retained results".
		g.entry.owner.Forget(g.key)
	}
}

func (g *grain) join(ctx actor.Context, m *wire.Join) {
	from := ctx.Sender()
	if from == nil || m.Call == "" {
		return
	}
	if _, dup := g.calls[m.Call]; dup {
		return
	}
	owner := ctx.ActorSystem().Address()
	if refusal := g.refuse(m); refusal != nil {
		refusal.Call, refusal.Owner = m.Call, owner
		ctx.Send(from, refusal)
		return
	}
	ctx.CancelReceiveTimeout()
	base := context.Background()
	if g.entry.traced {
		// The caller's span context, remote: the owner's flight.run is its
		// child if this call starts the flight, and links it otherwise.
		base = tracing.WithRemoteCaller(base, m.Traceparent, m.Tracestate)
	}
	cctx, cancel := context.WithCancel(base)
	ch := g.entry.owner.DoChan(cctx, g.key, g.entry.load(g.key))
	call, self, system, max := m.Call, ctx.Self(), ctx.ActorSystem(), int(m.MaxValueSize)
	started := g.node.track(func() {
		r := <-ch
		if cctx.Err() == nil { // nobody left: reply
			system.Root.Send(from, reply(call, owner, max, r))
		}
		system.Root.Send(self, &callDone{call: call})
	})
	if !started { // the member is closing: answer at once, the requester retries
		cancel()
		ctx.Send(from, &wire.Reply{Call: call, Code: wire.Code_CODE_CLOSED, Owner: owner, Message: flight.ErrClosed.Error()})
		return
	}
	g.calls[call] = &pending{from: from, cancel: cancel}
	ctx.Watch(from)
}

// drop forgets call, leaving the owner's flight if it still waits.
func (g *grain) drop(ctx actor.Context, call string) {
	p, ok := g.calls[call]
	if !ok {
		return
	}
	delete(g.calls, call)
	p.cancel()
	ctx.Unwatch(p.from)
	if len(g.calls) == 0 {
		ctx.SetReceiveTimeout(g.node.cfg.Idle)
	}
}

// refuse returns the Reply (without Call and Owner) that refuses a Join
// this grain must not serve, or nil.
func (g *grain) refuse(m *wire.Join) *wire.Reply {
	switch {
	case m.Loader != "" && m.Loader != g.entry.name:
		return &wire.Reply{Code: wire.Code_CODE_NO_LOADER, Message: fmt.Sprintf("%v: %q (this grain serves %q)", ErrNoLoader, m.Loader, g.entry.name)}
	case m.Fingerprint != "" && m.Fingerprint != g.entry.fingerprint:
		return &wire.Reply{Code: wire.Code_CODE_MISMATCH, Message: fmt.Sprintf("%v: the owner registered %s, the caller %s", ErrMismatch, g.entry.fingerprint, m.Fingerprint)}
	}
	return nil
}

// reply is the Reply to one call for the result r; max is the caller's
// MaxValueSize (0: none).
func reply(call, owner string, max int, r flight.Result[[]byte]) *wire.Reply {
	if r.Err == nil && max > 0 && len(r.Val) > max {
		return &wire.Reply{Call: call, Code: wire.Code_CODE_TOO_LARGE, Shared: r.Shared, Owner: owner,
			Message: fmt.Sprintf("%v: %d bytes encoded, over the calling member's Config.MaxValueSize (%d)", ErrTooLarge, len(r.Val), max)}
	}
	if r.Err == nil {
		return &wire.Reply{Call: call, Code: wire.Code_CODE_OK, Value: r.Val, Shared: r.Shared, Owner: owner}
	}
	code, msg, stack := failure(r.Err)
	return &wire.Reply{Call: call, Code: code, Message: msg, Stack: stack, Shared: r.Shared, Owner: owner}
}
