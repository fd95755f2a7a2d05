package cluster

import (
	"net"
	"sync"
	"testing"

	"github.com/asynkron/protoactor-go/actor"
	"github.com/asynkron/protoactor-go/cluster/clusterproviders/test"
	"github.com/stretchr/testify/require"

	"github.com/actorflight/flight/cluster/internal/racecheck"
	"github.com/actorflight/flight/cluster/internal/wire"
	"github.com/actorflight/flight/internal/wait"
)

// A peer that accepts connections and never answers (a frozen process, or
// a member whose remote is stopping): protoactor's connection to it waits
// for an answer with no bound, inside the actor that Close must stop. The
// handshake bound (Transport.HandshakeTimeout) ends that wait, so Close
// returns within Config.CloseTimeout, and nil.
func TestCloseWithFrozenPeer(t *testing.T) {
	if racecheck.Isolated(t) {
		return
	}
	frozen, err := net.Listen("tcp", "127.0.0.1:0")
	require.NoError(t, err)
	accepted := make(chan struct{}, 1)
	var conns []net.Conn
	var mu sync.Mutex
	var wg sync.WaitGroup
	wg.Go(func() {
		for {
			c, err := frozen.Accept()
			if err != nil {
				return
			}
			mu.Lock()
			conns = append(conns, c)
			mu.Unlock()
			select {
			case accepted <- struct{}{}:
			default:
			}
		}
	})
	defer func() {
		_ = frozen.Close()
		wg.Wait()
		mu.Lock()
		defer mu.Unlock()
		for _, c := range conns {
			_ = c.Close()
		}
	}()

	node, err := NewNode(Config{Name: "frozen", Provider: test.NewTestProvider(test.NewInMemAgent())})
	require.NoError(t, err)
	require.NoError(t, node.Start())
	node.system.Root.Send(actor.NewPID(frozen.Addr().String(), "grain"), &wire.Forget{})
	wait.Recv(t, accepted)
	require.NoError(t, node.Close(), "Close within its 10 s bound")
}
