package cluster_test

// Per-call cost of a cluster-wide flight against the in-process
// coordinator, each call a flight of its own with a no-op loader (the
// overhead, not the loader, is measured):
//
//   - InProcess: flight.Coordinator.Do, a fresh key per call; and
//     parallel-hot: 8×GOMAXPROCS goroutines on one key (callers share
//     flights; ns/op is per caller).
//   - LocalOwner/hot: one member; the key's grain is active (same key, one
//     caller at a time): a requester actor, a Join and a Reply through the
//     member's actors, a JSON round trip.
//   - LocalOwner/fresh: one member, a fresh key per call: the above plus the
//     grain's activation (a placement request, an actor spawn).
//   - RemoteOwner/hot and /fresh: two members, keys owned by the other one:
//     the same over protoactor remote (gRPC on 127.0.0.1, protobuf).
//   - */parallel-hot: 8×GOMAXPROCS goroutines on member 0 call one key: the
//     callers of a member share one remote call (ns/op is per caller).
//
// Setup (member start, about 1 s) is outside the timed loop; members are
// closed once, after every benchmark (TestMain).

import (
	"context"
	"strconv"
	"strings"
	"sync"
	"testing"

	pcluster "github.com/asynkron/protoactor-go/cluster"
	"github.com/asynkron/protoactor-go/cluster/clusterproviders/test"

	"github.com/actorflight/flight"
	fcluster "github.com/actorflight/flight/cluster"
	"github.com/actorflight/flight/internal/wait"
)

type benchCluster struct {
	nodes   []*fcluster.Node
	loaders []*fcluster.Loader[int]
}

var (
	benchMu       sync.Mutex
	benchClusters = map[int]*benchCluster{}
)

// benchClusterOf returns an n-member cluster on the in-memory provider,
// started once for all benchmarks.
func benchClusterOf(b *testing.B, n int) *benchCluster {
	benchMu.Lock()
	defer benchMu.Unlock()
	if c, ok := benchClusters[n]; ok {
		return c
	}
	c := &benchCluster{}
	agent := test.NewInMemAgent()
	for range n {
		node, err := fcluster.NewNode(fcluster.Config{Name: "bench-" + strconv.Itoa(n), Provider: test.NewTestProvider(agent)})
		if err != nil {
			b.Fatal(err)
		}
		l, err := fcluster.Register(node, "noop", func(ctx context.Context, key string) (int, error) { return len(key), nil }, nil)
		if err != nil {
			b.Fatal(err)
		}
		c.nodes = append(c.nodes, node)
		c.loaders = append(c.loaders, l)
	}
	var wg sync.WaitGroup
	for _, node := range c.nodes {
		wg.Go(func() {
			if err := node.Start(); err != nil {
				b.Error(err)
			}
		})
	}
	wg.Wait()
	for _, node := range c.nodes {
		wait.Until(b, "members", func() bool { return len(node.Members()) == n })
	}
	benchClusters[n] = c
	return c
}

func closeBenchClusters() {
	benchMu.Lock()
	defer benchMu.Unlock()
	var wg sync.WaitGroup
	for _, c := range benchClusters {
		for _, node := range c.nodes {
			wg.Go(func() { _ = node.Close() })
		}
	}
	wg.Wait()
	clear(benchClusters)
}

func BenchmarkInProcess(b *testing.B) {
	c := flight.New[string, int]()
	defer c.Close()
	ctx := context.Background()
	fn := func(context.Context) (int, error) { return 1, nil }
	b.Run("fresh", func(b *testing.B) {
		keys := benchKeys("inproc", b.N)
		b.ReportAllocs()
		b.ResetTimer()
		for i := range b.N {
			if _, _, err := c.Do(ctx, keys[i], fn); err != nil {
				b.Fatal(err)
			}
		}
	})
	b.Run("parallel-hot", func(b *testing.B) {
		b.ReportAllocs()
		b.RunParallel(func(pb *testing.PB) {
			for pb.Next() {
				if _, _, err := c.Do(ctx, "hot", fn); err != nil {
					b.Error(err)
					return
				}
			}
		})
	})
}

// benchParallelHot: many goroutines on member 0 call one key, so that
// callers share flights (the per-caller cost under a stampede).
func benchParallelHot(b *testing.B, c *benchCluster, key string) {
	ctx := context.Background()
	l := c.loaders[0]
	if _, _, err := l.Do(ctx, key); err != nil {
		b.Fatal(err)
	}
	b.ReportAllocs()
	b.SetParallelism(8)
	b.ResetTimer()
	b.RunParallel(func(pb *testing.PB) {
		for pb.Next() {
			if _, _, err := l.Do(ctx, key); err != nil {
				b.Error(err)
				return
			}
		}
	})
}

var keySeq sync.Map // prefix → *int: fresh keys across benchmark runs

func benchKeys(prefix string, n int) []string {
	v, _ := keySeq.LoadOrStore(prefix, new(int))
	next := v.(*int)
	keys := make([]string, n)
	for i := range keys {
		keys[i] = prefix + strconv.Itoa(*next)
		*next++
	}
	return keys
}

// ownedBy returns n fresh keys that protoactor's disthash lookup places on
// member owner: the same rendezvous hashing, computed here over the
// members' addresses, so that no probe activates their grains.
func ownedBy(b *testing.B, c *benchCluster, owner, n int, prefix string) []string {
	var ms pcluster.Members
	for _, addr := range c.nodes[0].Members() {
		host, port, _ := strings.Cut(addr, ":")
		p, _ := strconv.Atoi(port)
		ms = append(ms, &pcluster.Member{Id: addr, Host: host, Port: int32(p), Kinds: []string{"flight.noop"}})
	}
	rdv := pcluster.NewRendezvous()
	rdv.UpdateMembers(ms)
	want := c.nodes[owner].Address()
	var keys []string
	for len(keys) < n {
		k := benchKeys(prefix, 1)[0]
		if rdv.GetByClusterIdentity(pcluster.NewClusterIdentity(k, "flight.noop")) == want {
			keys = append(keys, k)
		}
	}
	return keys
}

func benchHot(b *testing.B, c *benchCluster, key string) {
	ctx := context.Background()
	l := c.loaders[0]
	if _, _, err := l.Do(ctx, key); err != nil { // activates the grain
		b.Fatal(err)
	}
	b.ReportAllocs()
	b.ResetTimer()
	for range b.N {
		if _, _, err := l.Do(ctx, key); err != nil {
			b.Fatal(err)
		}
	}
}

func benchFresh(b *testing.B, c *benchCluster, keys []string) {
	ctx := context.Background()
	l := c.loaders[0]
	b.ReportAllocs()
	b.ResetTimer()
	for i := range b.N {
		if _, _, err := l.Do(ctx, keys[i]); err != nil {
			b.Fatal(err)
		}
	}
}

func BenchmarkLocalOwner(b *testing.B) {
	c := benchClusterOf(b, 1)
	b.Run("hot", func(b *testing.B) { benchHot(b, c, "hot") })
	b.Run("fresh", func(b *testing.B) { benchFresh(b, c, benchKeys("local", b.N)) })
	b.Run("parallel-hot", func(b *testing.B) { benchParallelHot(b, c, "phot") })
}

func BenchmarkRemoteOwner(b *testing.B) {
	c := benchClusterOf(b, 2)
	b.Run("hot", func(b *testing.B) { benchHot(b, c, ownedBy(b, c, 1, 1, "remotehot")[0]) })
	b.Run("fresh", func(b *testing.B) { benchFresh(b, c, ownedBy(b, c, 1, b.N, "remotefresh")) })
	b.Run("parallel-hot", func(b *testing.B) { benchParallelHot(b, c, ownedBy(b, c, 1, 1, "remotephot")[0]) })
	// The owner really is the other member.
	if s := c.loaders[0].Stats().Owner; s.Flights != 0 {
		b.Fatalf("member 0 owned %d flights", s.Flights)
	}
}
