package cluster_test

import (
	"context"
	"os"
	"strconv"
	"sync"
	"testing"
	"time"

	"github.com/asynkron/protoactor-go/cluster/clusterproviders/test"
	"github.com/stretchr/testify/require"

	fcluster "github.com/actorflight/flight/cluster"
	"github.com/actorflight/flight/cluster/internal/racecheck"
	"github.com/actorflight/flight/internal/wait"
)

// closesWanted is how many member closes TestCloseNeverCrashes makes:
// FLIGHT_CLOSES in the environment (CI sets 300), else 60.
func closesWanted(t *testing.T) int {
	if s := os.Getenv("FLIGHT_CLOSES"); s != "" {
		n, err := strconv.Atoi(s)
		require.NoError(t, err, "FLIGHT_CLOSES")
		return n
	}
	return 60
}

// Closing members never takes the process down. Rounds of clusters of
// three members whose members have called each other (so each has inbound
// connections from the others), then every member of the round closes at
// the same moment: each member's remote stop then meets its peers'
// connections ending, the moment protoactor remote's stop can panic with
// "send on closed channel". Every Close returns nil or, when protoactor's
// stop waits out one of its fixed 10 s timeouts (seen on a loaded
// machine), an error wrapping context.DeadlineExceeded at its bound
// (Config.CloseTimeout); a second Close then returns nil once the stop is
// done. The test binary (goleak in TestMain) finds no goroutine left
// behind.
func TestCloseNeverCrashes(t *testing.T) {
	if racecheck.Isolated(t) {
		return
	}
	const size, clusters = 3, 4 // members per cluster, clusters per round
	want := closesWanted(t)
	t0 := time.Now()
	closed, bounded := 0, 0
	for round := 0; closed < want; round++ {
		var nodes []*fcluster.Node
		var loaders []*fcluster.Loader[string]
		for p := range clusters {
			agent := test.NewInMemAgent()
			for range size {
				node, err := fcluster.NewNode(fcluster.Config{
					Name:     "close-" + strconv.Itoa(round) + "-" + strconv.Itoa(p),
					Provider: test.NewTestProvider(agent),
				})
				require.NoError(t, err)
				l, err := fcluster.Register(node, "v", func(ctx context.Context, key string) (string, error) { return key, nil }, nil)
				require.NoError(t, err)
				nodes, loaders = append(nodes, node), append(loaders, l)
			}
		}
		var wg sync.WaitGroup
		for _, n := range nodes {
			wg.Go(func() { require.NoError(t, n.Start()) })
		}
		wg.Wait()
		for _, n := range nodes {
			wait.Until(t, "the members of a cluster see each other", func() bool { return len(n.Members()) == size })
		}
		// Each member calls keys until one was owned by the next member of
		// its cluster: then every member has sent grain traffic.
		for i, l := range loaders {
			peer := loaders[i/size*size+(i+1)%size]
			for k := 0; peer.Stats().Owner.Flights == 0; k++ {
				ctx, cancel := context.WithTimeout(context.Background(), hang)
				_, _, err := l.Do(ctx, strconv.Itoa(i)+"-"+strconv.Itoa(k))
				cancel()
				require.NoError(t, err)
			}
		}
		start := make(chan struct{})
		errs := make(chan error, len(nodes))
		for _, n := range nodes {
			go func() {
				<-start
				errs <- n.Close()
			}()
		}
		close(start)
		for range nodes {
			if err := wait.Recv(t, errs); err != nil {
				// Close's bound (CloseTimeout) passed: the rest of the
				// stop goes on in the background; a second Close waits
				// for it.
				require.ErrorIs(t, err, context.DeadlineExceeded)
				bounded++
			}
		}
		for _, n := range nodes {
			require.NoError(t, n.Close())
		}
		closed += len(nodes)
	}
	racecheck.Logf(t, "%d members closed in %v; %d Close calls returned at their bound", closed, time.Since(t0).Round(time.Millisecond), bounded)
}
