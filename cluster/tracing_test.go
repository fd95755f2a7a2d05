package cluster_test

import (
	"context"
	"fmt"
	"testing"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"
	"go.opentelemetry.io/otel/attribute"
	sdktrace "go.opentelemetry.io/otel/sdk/trace"
	"go.opentelemetry.io/otel/sdk/trace/tracetest"
	"go.opentelemetry.io/otel/trace"

	"github.com/actorflight/flight"
	fcluster "github.com/actorflight/flight/cluster"
	"github.com/actorflight/flight/cluster/internal/racecheck"
	"github.com/actorflight/flight/internal/wait"
)

// member is one member's loader and the spans its provider recorded.
type member struct {
	loader *fcluster.Loader[string]
	rec    *tracetest.SpanRecorder
	tr     trace.Tracer
}

// runSpans returns the flight.run spans rec recorded whose parent is
// parent.
func runSpans(rec *tracetest.SpanRecorder, parent trace.SpanID) []sdktrace.ReadOnlySpan {
	var out []sdktrace.ReadOnlySpan
	for _, s := range rec.Ended() {
		if s.Name() == "flight.run" && s.Parent().SpanID() == parent {
			out = append(out, s)
		}
	}
	return out
}

// With flight.WithTracerProvider, a Join carries the span context of its
// member's call (the flight.run span of that member's flight for the key,
// a child of its first caller's span): the owner's flight.run is a child
// of the remote call that started it and links the calls of the other
// members, so a caller's trace leads to the one execution that served it.
func TestTraceRemoteCallers(t *testing.T) {
	if racecheck.Isolated(t) {
		return
	}
	started := make(chan string, 2)
	release := make(chan struct{})
	ms := make([]member, 2)
	nodes := members(t, 2, func(i int, node *fcluster.Node) {
		rec := tracetest.NewSpanRecorder()
		tp := sdktrace.NewTracerProvider(sdktrace.WithSampler(sdktrace.AlwaysSample()), sdktrace.WithSpanProcessor(rec))
		t.Cleanup(func() { _ = tp.Shutdown(context.Background()) })
		l, err := fcluster.Register(node, "traced", func(ctx context.Context, key string) (string, error) {
			started <- key
			<-release
			return "v:" + key, nil
		}, nil, flight.WithTracerProvider(tp))
		require.NoError(t, err)
		ms[i] = member{loader: l, rec: rec, tr: tp.Tracer("app")}
	})
	ctx, cancel := context.WithTimeout(context.Background(), hang)
	defer cancel()
	// Two keys of one owner: the first is started by a caller on the owner
	// and joined from the other member, the second the reverse.
	addrs := nodes[0].Members()
	localKey, remoteKey := "key-0", ""
	for i := 1; remoteKey == ""; i++ {
		if k := fmt.Sprintf("key-%d", i); placedOn(t, addrs, "flight.traced", k) == placedOn(t, addrs, "flight.traced", localKey) {
			remoteKey = k
		}
	}
	o := 0
	if nodes[1].Address() == placedOn(t, addrs, "flight.traced", localKey) {
		o = 1
	}
	owner, remote := ms[o], ms[1-o]

	type call struct {
		span trace.Span
		done chan error
	}
	do := func(m member, key, name string) call {
		cctx, sp := m.tr.Start(ctx, name)
		c := call{span: sp, done: make(chan error, 1)}
		go func() {
			_, _, err := m.loader.Do(cctx, key)
			sp.End()
			c.done <- err
		}()
		return c
	}

	localFirst := do(owner, localKey, "owner request")
	assert.Equal(t, localKey, wait.Recv(t, started))
	remoteFirst := do(remote, remoteKey, "remote request")
	assert.Equal(t, remoteKey, wait.Recv(t, started))
	localJoin := do(owner, remoteKey, "owner request 2")
	remoteJoin := do(remote, localKey, "remote request 2")
	wait.Until(t, "both joins reached the owner", func() bool { return owner.loader.Stats().Owner.Joins == 2 })
	close(release)
	for _, c := range []call{localFirst, remoteFirst, localJoin, remoteJoin} {
		require.NoError(t, wait.Recv(t, c.done))
	}

	// front returns the flight.run span of m's own flight for the call c
	// (the child of c's span), which its Join carried.
	front := func(m member, c call) sdktrace.ReadOnlySpan {
		s := runSpans(m.rec, c.span.SpanContext().SpanID())
		require.Len(t, s, 1, "one flight.run under the caller's span")
		return s[0]
	}
	callers := func(s sdktrace.ReadOnlySpan) int64 {
		for _, kv := range s.Attributes() {
			if kv.Key == attribute.Key("flight.callers") {
				return kv.Value.AsInt64()
			}
		}
		return -1
	}

	// local-first: the owner's execution is a child of its own member's
	// call and links the remote member's.
	ownerCall, remoteCall := front(owner, localFirst), front(remote, remoteJoin)
	exec := runSpans(owner.rec, ownerCall.SpanContext().SpanID())
	require.Len(t, exec, 1, "the owner's execution of local-first")
	require.Len(t, exec[0].Links(), 1)
	link := exec[0].Links()[0].SpanContext
	assert.Equal(t, remoteCall.SpanContext().SpanID(), link.SpanID(), "the remote call is linked")
	assert.Equal(t, remoteJoin.span.SpanContext().TraceID(), link.TraceID(), "in the remote caller's trace")
	assert.True(t, link.IsRemote())
	assert.Equal(t, int64(2), callers(exec[0]), "two members' calls")

	// remote-first: the owner's execution is a child of the remote
	// member's call, in the remote caller's trace, and links the owner's
	// own member's call.
	remoteCall, ownerCall = front(remote, remoteFirst), front(owner, localJoin)
	exec = runSpans(owner.rec, remoteCall.SpanContext().SpanID())
	require.Len(t, exec, 1, "the owner's execution of remote-first")
	assert.True(t, exec[0].Parent().IsRemote(), "its parent came over the wire")
	assert.Equal(t, remoteFirst.span.SpanContext().TraceID(), exec[0].SpanContext().TraceID())
	require.Len(t, exec[0].Links(), 1)
	assert.Equal(t, ownerCall.SpanContext().SpanID(), exec[0].Links()[0].SpanContext.SpanID())
	assert.Equal(t, int64(2), callers(exec[0]))

	// The remote member ran no execution: its only flight.run spans are its
	// calls.
	for _, s := range remote.rec.Ended() {
		if s.Name() == "flight.run" {
			assert.False(t, s.Parent().IsRemote(), "the remote member's flight.run %v is a call, not an execution", s.SpanContext().SpanID())
		}
	}
}
