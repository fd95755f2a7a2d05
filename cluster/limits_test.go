package cluster_test

import (
	"context"
	"errors"
	"strconv"
	"strings"
	"sync/atomic"
	"testing"
	"time"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"

	"github.com/actorflight/flight"
	fcluster "github.com/actorflight/flight/cluster"
	"github.com/actorflight/flight/cluster/internal/racecheck"
	"github.com/actorflight/flight/internal/wait"
)

// ownerOf calls key from loaders[from] and returns the member whose
// loader ran for it (its Owner.Flights went up); the call's error is
// returned as well.
func ownerOf[V any](t *testing.T, loaders []*fcluster.Loader[V], from int, key string) (int, error) {
	t.Helper()
	before := make([]uint64, len(loaders))
	for i, l := range loaders {
		before[i] = l.Stats().Owner.Flights
	}
	ctx, cancel := context.WithTimeout(context.Background(), hang)
	defer cancel()
	_, _, err := loaders[from].Do(ctx, key)
	for i, l := range loaders {
		if l.Stats().Owner.Flights > before[i] {
			return i, err
		}
	}
	t.Fatalf("no member ran the loader for %q (err %v)", key, err)
	return -1, err
}

// A value over the 4 MiB gRPC message limit: members 0 and 1 raise
// MaxValueSize to 16 MiB, member 2 keeps the default 4 MiB. A 5 MiB value
// owned by member 0 reaches member 1's caller intact over gRPC, and member
// 2's caller gets ErrTooLarge (its own limit); one owned by member 2 gets
// ErrTooLarge on every member (the owner's limit). No caller has a
// deadline of its own beyond the hang guard: each is answered at once.
func TestTooLargeValue(t *testing.T) {
	if racecheck.Isolated(t) {
		return
	}
	big := strings.Repeat("x", 5<<20)
	loaders := make([]*fcluster.Loader[string], 3)
	membersWith(t, 3, func(i int, cfg *fcluster.Config) {
		if i < 2 {
			cfg.MaxValueSize = 16 << 20
		}
	}, func(i int, node *fcluster.Node) {
		l, err := fcluster.Register(node, "big", func(ctx context.Context, key string) (string, error) { return big, nil }, nil)
		require.NoError(t, err)
		loaders[i] = l
	})
	do := func(from int, key string) error {
		ctx, cancel := context.WithTimeout(context.Background(), hang)
		defer cancel()
		v, _, err := loaders[from].Do(ctx, key)
		if err == nil && v != big {
			return errors.New("a different value")
		}
		return err
	}
	var onZero, onTwo string
	for k := 0; onZero == "" || onTwo == ""; k++ {
		key := "k" + strconv.Itoa(k)
		owner, err := ownerOf(t, loaders, 1, key)
		switch owner {
		case 0:
			require.NoError(t, err, "member 0 to member 1, 5 MiB under both limits")
			onZero = key
		case 2:
			require.ErrorIs(t, err, fcluster.ErrTooLarge, "over the owner's limit")
			onTwo = key
		}
	}
	require.ErrorIs(t, do(2, onZero), fcluster.ErrTooLarge, "over the calling member's limit")
	require.NoError(t, do(0, onZero))
	for i := range loaders {
		err := do(i, onTwo)
		require.ErrorIs(t, err, fcluster.ErrTooLarge, "member %d", i)
		var re *fcluster.RemoteError
		require.ErrorAs(t, err, &re)
	}
}

// A call whose owner does not answer gets ErrResponseTimeout after
// Config.ResponseTimeout although its own ctx has no deadline, and the
// owner's execution is abandoned (its context cancelled).
func TestResponseTimeout(t *testing.T) {
	if racecheck.Isolated(t) {
		return
	}
	cancelled := make(chan error, 1)
	var l *fcluster.Loader[string]
	membersWith(t, 1, func(i int, cfg *fcluster.Config) {
		// Long enough for the grain's activation on a loaded machine, so
		// that the loader has started when it passes.
		cfg.ResponseTimeout = time.Second
	}, func(i int, node *fcluster.Node) {
		var err error
		l, err = fcluster.Register(node, "slow", func(ctx context.Context, key string) (string, error) {
			<-ctx.Done()
			cancelled <- ctx.Err()
			return "", ctx.Err()
		}, nil)
		require.NoError(t, err)
	})
	done := make(chan error, 1)
	go func() {
		_, _, err := l.Do(context.Background(), "k")
		done <- err
	}()
	err := wait.Recv(t, done)
	require.ErrorIs(t, err, fcluster.ErrResponseTimeout)
	require.ErrorIs(t, wait.Recv(t, cancelled), context.Canceled, "the owner's execution was abandoned")
	wait.Until(t, "abandoned at the owner", func() bool { return l.Stats().Owner.Abandoned == 1 })
}

// The same loader name with another value type on one member: calls whose
// owner is that member fail with ErrMismatch without running its loader;
// the others work. A codec failure matches ErrCodec on every member.
func TestMismatchAndCodecErrors(t *testing.T) {
	if racecheck.Isolated(t) {
		return
	}
	var strs []*fcluster.Loader[string]
	var ints *fcluster.Loader[int]
	var intRuns atomic.Int64
	var bads []*fcluster.Loader[int]
	membersWith(t, 2, func(int, *fcluster.Config) {}, func(i int, node *fcluster.Node) {
		if i == 0 {
			l, err := fcluster.Register(node, "v", func(ctx context.Context, key string) (string, error) { return key, nil }, nil)
			require.NoError(t, err)
			strs = append(strs, l)
		} else {
			l, err := fcluster.Register(node, "v", func(ctx context.Context, key string) (int, error) { intRuns.Add(1); return len(key), nil }, nil)
			require.NoError(t, err)
			ints = l
		}
		b, err := fcluster.Register(node, "bad", func(ctx context.Context, key string) (int, error) { return 0, nil }, failingCodec{})
		require.NoError(t, err)
		bads = append(bads, b)
	})
	var ok, mismatched int
	for k := 0; ok == 0 || mismatched == 0; k++ {
		ctx, cancel := context.WithTimeout(context.Background(), hang)
		v, _, err := strs[0].Do(ctx, "k"+strconv.Itoa(k))
		cancel()
		if err == nil {
			assert.Equal(t, "k"+strconv.Itoa(k), v)
			ok++
			continue
		}
		require.ErrorIs(t, err, fcluster.ErrMismatch)
		assert.Contains(t, err.Error(), "value string")
		assert.Contains(t, err.Error(), "value int")
		mismatched++
	}
	assert.Zero(t, intRuns.Load(), "the mismatched owner never ran its loader")
	assert.Zero(t, ints.Stats().Owner.Flights)
	for i, b := range bads {
		ctx, cancel := context.WithTimeout(context.Background(), hang)
		_, _, err := b.Do(ctx, "x")
		cancel()
		require.ErrorIs(t, err, fcluster.ErrCodec, "member %d", i)
	}
}

// failingCodec fails to marshal every value.
type failingCodec struct{}

func (failingCodec) Marshal(int) ([]byte, error)   { return nil, errors.New("cannot encode") }
func (failingCodec) Unmarshal([]byte) (int, error) { return 0, errors.New("cannot decode") }

// Shutdown with a ctx returns when the ctx ends even though a loader
// ignores its own context: the member's callers have got flight.ErrClosed,
// and a later Close waits for the rest once the loader returns.
func TestShutdownBoundedByContext(t *testing.T) {
	if racecheck.Isolated(t) {
		return
	}
	release := make(chan struct{})
	var l *fcluster.Loader[string]
	nodes := membersWith(t, 1, func(int, *fcluster.Config) {}, func(i int, node *fcluster.Node) {
		var err error
		l, err = fcluster.Register(node, "stubborn", func(ctx context.Context, key string) (string, error) {
			<-release // ignores ctx
			return key, nil
		}, nil)
		require.NoError(t, err)
	})
	done := make(chan error, 1)
	go func() {
		_, _, err := l.Do(context.Background(), "k")
		done <- err
	}()
	wait.Until(t, "the loader runs", func() bool { return l.Stats().Owner.InFlight == 1 })
	ctx, cancel := context.WithTimeout(context.Background(), 100*time.Millisecond)
	defer cancel()
	shut := make(chan error, 1)
	go func() { shut <- nodes[0].Shutdown(ctx) }()
	err := wait.Recv(t, shut)
	require.ErrorIs(t, err, context.DeadlineExceeded)
	require.ErrorIs(t, wait.Recv(t, done), flight.ErrClosed)
	_, _, err = l.Do(context.Background(), "k")
	require.ErrorIs(t, err, flight.ErrClosed)
	close(release)
	require.NoError(t, nodes[0].Close(), "the second Close waits for the first one's work")
}
