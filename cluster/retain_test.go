package cluster_test

import (
	"context"
	"errors"
	"fmt"
	"net"
	"strconv"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	pcluster "github.com/asynkron/protoactor-go/cluster"
	"github.com/asynkron/protoactor-go/cluster/clusterproviders/test"
	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"

	"github.com/actorflight/flight"
	fcluster "github.com/actorflight/flight/cluster"
	"github.com/actorflight/flight/cluster/internal/racecheck"
	"github.com/actorflight/flight/internal/wait"
)

// placedOn returns the address disthash places (kind, key) on among the
// members at addrs: protoactor's rendezvous over their addresses.
func placedOn(t testing.TB, addrs []string, kind, key string) string {
	r := pcluster.NewRendezvous()
	var ms pcluster.Members
	for _, a := range addrs {
		host, port, err := net.SplitHostPort(a)
		require.NoError(t, err)
		p, err := strconv.Atoi(port)
		require.NoError(t, err)
		ms = append(ms, &pcluster.Member{Id: a, Host: host, Port: int32(p), Kinds: []string{kind}})
	}
	r.UpdateMembers(ms)
	return r.GetByClusterIdentity(&pcluster.ClusterIdentity{Kind: kind, Identity: key})
}

// With WithTTL the owner keeps a key's result: a repeated call from any
// member, the owner's own included, is answered without running the
// loader (the owner counts a hit); Forget from any member drops it on the
// owner; WithErrorTTL keeps an error the same way.
func TestRetainedResultOnOwner(t *testing.T) {
	if racecheck.Isolated(t) {
		return
	}
	var charges, failures atomic.Int64
	pays := make([]*fcluster.Loader[string], 3)
	fails := make([]*fcluster.Loader[string], 3)
	nodes := members(t, 3, func(i int, node *fcluster.Node) {
		var err error
		pays[i], err = fcluster.Register(node, "pay", func(ctx context.Context, key string) (string, error) {
			return fmt.Sprintf("%s charged (charge %d, on member %d)", key, charges.Add(1), i), nil
		}, nil, flight.WithTTL(time.Minute), flight.WithMaxEntries(1000))
		require.NoError(t, err)
		fails[i], err = fcluster.Register(node, "fail", func(ctx context.Context, key string) (string, error) {
			return "", fmt.Errorf("declined (%d)", failures.Add(1))
		}, nil, flight.WithErrorTTL(time.Minute))
		require.NoError(t, err)
	})
	ctx, cancel := context.WithTimeout(context.Background(), hang)
	defer cancel()
	owner := -1
	for i, n := range nodes {
		if placedOn(t, n.Members(), "flight.pay", "req-1") == n.Address() {
			owner = i
		}
	}
	require.GreaterOrEqual(t, owner, 0)
	caller := (owner + 1) % 3

	first, _, err := pays[caller].Do(ctx, "req-1")
	require.NoError(t, err)
	assert.Equal(t, uint64(1), pays[owner].Stats().Owner.Flights)
	assert.Equal(t, 1, pays[owner].Stats().Owner.Entries, "retained on the owner")
	for _, i := range []int{(owner + 2) % 3, caller, owner} { // another member, the same one, the owner itself
		v, shared, err := pays[i].Do(ctx, "req-1")
		require.NoError(t, err)
		assert.Equal(t, first, v, "member %d", i)
		assert.True(t, shared, "a retained result is shared")
	}
	assert.Equal(t, int64(1), charges.Load(), "the loader ran once")
	s := pays[owner].Stats()
	assert.Equal(t, uint64(1), s.Owner.Flights)
	assert.Equal(t, uint64(3), s.Owner.Hits, "three calls answered from the retained result")
	for i, l := range pays {
		if i != owner {
			assert.Zero(t, l.Stats().Owner.Entries, "only the owner retains")
		}
	}

	// Forget from a member that is not the owner drops it on the owner.
	pays[caller].Forget("req-1")
	wait.Until(t, "the owner dropped the result", func() bool { return pays[owner].Stats().Owner.Entries == 0 })
	v, _, err := pays[caller].Do(ctx, "req-1")
	require.NoError(t, err)
	assert.NotEqual(t, first, v, "a new execution after Forget")
	assert.Equal(t, int64(2), charges.Load())

	// WithErrorTTL: the owner keeps the error; every member gets its text.
	var msgs []string
	for i := range 3 {
		_, _, err := fails[i].Do(ctx, "card-9")
		var re *fcluster.RemoteError
		require.True(t, errors.As(err, &re), "%v", err)
		msgs = append(msgs, re.Message)
	}
	assert.Equal(t, []string{"declined (1)", "declined (1)", "declined (1)"}, msgs)
	assert.Equal(t, int64(1), failures.Load())
}

// Ownership moves: a retained result lives with its key's grain. When a
// member joins, the keys that move to it are run once more there, and
// their old owners drop their results (the grain stops); the keys that
// stay are still hits. When that member leaves again, the keys come back
// to their first owners, which run them anew instead of answering from
// the result they had before the move.
func TestRetainedResultWhenOwnershipMoves(t *testing.T) {
	if racecheck.Isolated(t) {
		return
	}
	const keys = 30
	agent := test.NewInMemAgent()
	var execs atomic.Int64
	newMember := func() (*fcluster.Node, *fcluster.Loader[string]) {
		node, err := fcluster.NewNode(fcluster.Config{Name: "moves", Provider: test.NewTestProvider(agent)})
		require.NoError(t, err)
		l, err := fcluster.Register(node, "v", func(ctx context.Context, key string) (string, error) {
			return key + "#" + strconv.FormatInt(execs.Add(1), 10), nil
		}, nil, flight.WithTTL(time.Minute))
		require.NoError(t, err)
		return node, l
	}
	var nodes []*fcluster.Node
	var loaders []*fcluster.Loader[string]
	for range 2 {
		n, l := newMember()
		nodes, loaders = append(nodes, n), append(loaders, l)
	}
	t.Cleanup(func() { closeAll(t, nodes) })
	var wg sync.WaitGroup
	for _, n := range nodes {
		wg.Go(func() { require.NoError(t, n.Start()) })
	}
	wg.Wait()
	for _, n := range nodes {
		wait.Until(t, "2 members", func() bool { return len(n.Members()) == 2 })
	}
	ctx, cancel := context.WithTimeout(context.Background(), 2*hang)
	defer cancel()
	key := func(k int) string { return "k" + strconv.Itoa(k) }
	first := map[string]string{}
	for k := range keys {
		v, _, err := loaders[0].Do(ctx, key(k))
		require.NoError(t, err)
		first[key(k)] = v
	}
	entries := func(ls ...*fcluster.Loader[string]) (n int) {
		for _, l := range ls {
			n += l.Stats().Owner.Entries
		}
		return n
	}
	require.Equal(t, keys, entries(loaders...))

	n3, l3 := newMember()
	require.NoError(t, n3.Start())
	all := []*fcluster.Node{nodes[0], nodes[1], n3}
	for _, n := range all {
		wait.Until(t, "3 members", func() bool { return len(n.Members()) == 3 })
	}
	moved := map[string]bool{}
	for k := range keys {
		moved[key(k)] = placedOn(t, n3.Members(), "flight.v", key(k)) == n3.Address()
	}
	stay := 0
	for _, m := range moved {
		if !m {
			stay++
		}
	}
	require.Less(t, stay, keys, "some keys move to the new member")
	// The moved keys' grains stop on their old owners, and their results go.
	wait.Until(t, "old owners keep only the keys that stay", func() bool {
		return entries(loaders...) == stay && loaders[0].Stats().Grains+loaders[1].Stats().Grains == stay
	})
	before := execs.Load()
	for k := range keys {
		v, _, err := loaders[0].Do(ctx, key(k))
		require.NoError(t, err)
		if moved[key(k)] {
			assert.NotEqual(t, first[key(k)], v, "%s moved: run again on the new owner", key(k))
		} else {
			assert.Equal(t, first[key(k)], v, "%s stayed: a hit", key(k))
		}
	}
	assert.Equal(t, int64(keys-stay), execs.Load()-before, "one execution per moved key")
	assert.Equal(t, uint64(keys-stay), l3.Stats().Owner.Flights)

	// The new member leaves: the moved keys come back and run anew.
	require.NoError(t, n3.Close())
	for _, n := range nodes {
		wait.Until(t, "2 members again", func() bool { return len(n.Members()) == 2 })
	}
	before = execs.Load()
	for k := range keys {
		v, _, err := loaders[1].Do(ctx, key(k))
		require.NoError(t, err)
		if moved[key(k)] {
			assert.NotEqual(t, first[key(k)], v, "%s came back: never the result from before the move", key(k))
		} else {
			assert.Equal(t, first[key(k)], v, "%s stayed: a hit", key(k))
		}
	}
	assert.Equal(t, int64(keys-stay), execs.Load()-before, "one execution per key that came back")
}

// WithRefreshAhead on the owner: a hit on a result older than the refresh
// age starts one background refresh there, whose value later calls from
// any member get; WithMaxEntries bounds the results the owner keeps.
func TestRetainedRefreshAheadAndMaxEntries(t *testing.T) {
	if racecheck.Isolated(t) {
		return
	}
	var runs atomic.Int64
	prices := make([]*fcluster.Loader[int64], 2)
	nodes := members(t, 2, func(i int, node *fcluster.Node) {
		var err error
		prices[i], err = fcluster.Register(node, "price", func(ctx context.Context, key string) (int64, error) {
			return runs.Add(1), nil
		}, nil, flight.WithTTL(time.Minute), flight.WithRefreshAhead(10*time.Millisecond), flight.WithMaxEntries(1))
		require.NoError(t, err)
	})
	ctx, cancel := context.WithTimeout(context.Background(), hang)
	defer cancel()
	// Two keys owned by member 0, called from member 1.
	var keys []string
	for k := 0; len(keys) < 2; k++ {
		key := "p" + strconv.Itoa(k)
		if placedOn(t, nodes[1].Members(), "flight.price", key) == nodes[0].Address() {
			keys = append(keys, key)
		}
	}
	v, _, err := prices[1].Do(ctx, keys[0])
	require.NoError(t, err)
	require.Equal(t, int64(1), v)
	// Hits until one finds the result older than 10 ms and refreshes it;
	// then a later call gets the refreshed value.
	wait.Until(t, "a hit refreshed the result on the owner", func() bool {
		v, _, err := prices[1].Do(ctx, keys[0])
		require.NoError(t, err)
		return v == 2
	})
	// The hit that saw 2 may itself have found 2 older than 10 ms (a slow
	// run) and started the next refresh: every execution after the first is
	// a refresh, and the loader ran once for each.
	wait.Until(t, "no refresh running", func() bool { return prices[0].Stats().Owner.InFlight == 0 })
	s := prices[0].Stats().Owner
	assert.GreaterOrEqual(t, s.Refreshes, uint64(1), "a refresh")
	assert.Equal(t, 1+s.Refreshes, s.Flights, "the first execution, then only refreshes")
	assert.Positive(t, s.Hits)

	// WithMaxEntries(1): the owner keeps one of the two keys' results (the
	// root module's eviction chooses which); calling both again runs the
	// loader for the one it dropped (and, depending on that choice, for the
	// other, whose result the first one's new result may evict in turn).
	_, _, err = prices[1].Do(ctx, keys[1])
	require.NoError(t, err)
	wait.Until(t, "one result kept", func() bool { return prices[0].Stats().Owner.Entries == 1 })
	before := runs.Load()
	for _, key := range keys {
		_, _, err = prices[1].Do(ctx, key)
		require.NoError(t, err)
	}
	assert.Contains(t, []int64{before + 1, before + 2}, runs.Load(), "the dropped key runs again")
	assert.LessOrEqual(t, prices[0].Stats().Owner.Entries, 1)
}
