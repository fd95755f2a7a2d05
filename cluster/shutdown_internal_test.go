package cluster

import (
	"context"
	"sync/atomic"
	"testing"

	"github.com/asynkron/protoactor-go/cluster/clusterproviders/test"
	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"

	"github.com/actorflight/flight/cluster/internal/racecheck"
)

// protoactor remote's graceful stop panics with "send on closed channel"
// when an inbound connection ends while it runs (TestCloseNeverCrashes
// closes members until that moment comes). Here the panic is made to
// happen on every stop: Close contains it, stops the server at once, and
// returns nil; nothing is left running (goleak, in TestMain).
func TestShutdownContainsRemotePanic(t *testing.T) {
	if racecheck.Isolated(t) {
		return
	}
	node, err := NewNode(Config{Name: "panic", Provider: test.NewTestProvider(test.NewInMemAgent())})
	require.NoError(t, err)
	l, err := Register(node, "v", func(ctx context.Context, key string) (string, error) { return key, nil }, nil)
	require.NoError(t, err)
	require.NoError(t, node.Start())
	v, _, err := l.Do(context.Background(), "k")
	require.NoError(t, err)
	assert.Equal(t, "k", v)

	stop := node.remoteShutdown
	var graceful, forced atomic.Int64
	node.remoteShutdown = func(g bool) {
		if g {
			graceful.Add(1)
			ch := make(chan bool, 1) // what remote/endpoint_manager.go:119 meets
			close(ch)
			ch <- true
		}
		forced.Add(1)
		stop(false)
	}
	require.NoError(t, node.Close())
	assert.Equal(t, int64(1), graceful.Load(), "the graceful stop was tried")
	assert.Equal(t, int64(1), forced.Load(), "then the server was stopped at once")
}
