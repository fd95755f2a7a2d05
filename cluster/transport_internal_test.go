package cluster

import (
	"testing"

	"github.com/asynkron/protoactor-go/cluster/clusterproviders/test"
	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"
	"google.golang.org/grpc"
	"google.golang.org/grpc/keepalive"
)

// Transport's settings reach protoactor remote's configuration; the
// defaults lift gRPC's receive limit, bound the handshake and make one
// connection attempt.
func TestTransportReachesRemoteConfig(t *testing.T) {
	node, err := NewNode(Config{Name: "t", Provider: test.NewTestProvider(test.NewInMemAgent())})
	require.NoError(t, err)
	rc := node.pcfg.RemoteConfig
	assert.Len(t, rc.ServerOptions, 1, "the lifted receive limit")
	assert.Len(t, rc.DialOptions, 2, "plaintext and the handshake bound")
	assert.Equal(t, 1, rc.MaxRetryCount)
	require.NoError(t, node.Close())

	node, err = NewNode(Config{Name: "t", Provider: test.NewTestProvider(test.NewInMemAgent()), Transport: Transport{
		DialOptions:     []grpc.DialOption{grpc.WithKeepaliveParams(keepalive.ClientParameters{})},
		ServerOptions:   []grpc.ServerOption{grpc.KeepaliveParams(keepalive.ServerParameters{}), grpc.MaxRecvMsgSize(1 << 20)},
		CallOptions:     []grpc.CallOption{grpc.WaitForReady(false)},
		WriterQueueSize: 64,
		WriterBatchSize: 8,
		ConnectAttempts: 3,
	}})
	require.NoError(t, err)
	rc = node.pcfg.RemoteConfig
	assert.Len(t, rc.ServerOptions, 3, "the lifted limit first, then the user's (which win)")
	assert.Len(t, rc.DialOptions, 2, "the user's, then the handshake bound")
	assert.Len(t, rc.CallOptions, 1)
	assert.Equal(t, 64, rc.EndpointWriterQueueSize)
	assert.Equal(t, 8, rc.EndpointWriterBatchSize)
	assert.Equal(t, 3, rc.MaxRetryCount)
	require.NoError(t, node.Close())
}
