package cluster_test

import (
	"context"
	"errors"
	"sync/atomic"
	"testing"
	"time"

	pcluster "github.com/asynkron/protoactor-go/cluster"
	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"

	"github.com/actorflight/flight"
	fcluster "github.com/actorflight/flight/cluster"
	"github.com/actorflight/flight/cluster/internal/racecheck"
	"github.com/actorflight/flight/internal/wait"
)

// Before Start a call fails at once; Close of a node never started is fine,
// and calls after it get flight.ErrClosed. DoLocal works without a cluster.
func TestNotStartedAndClosed(t *testing.T) {
	node, err := fcluster.NewNode(fcluster.Config{Name: "x", Provider: nil})
	require.Error(t, err, "a provider is required")
	assert.Nil(t, node)

	node, err = fcluster.NewNode(fcluster.Config{Name: "x", Provider: noProvider{}})
	require.NoError(t, err)
	l, err := fcluster.Register(node, "v", func(ctx context.Context, key string) (string, error) { return "v-" + key, nil }, nil)
	require.NoError(t, err)
	_, err = fcluster.Register(node, "v", func(ctx context.Context, key string) (string, error) { return "", nil }, nil)
	require.ErrorIs(t, err, fcluster.ErrNoLoader, "duplicate name")
	_, err = fcluster.Register(node, "a/b", func(ctx context.Context, key string) (string, error) { return "", nil }, nil)
	require.ErrorIs(t, err, fcluster.ErrNoLoader, "name with a slash")
	_, err = fcluster.Register[string](node, "nil", nil, nil)
	require.ErrorIs(t, err, flight.ErrNilFunc)

	_, _, err = l.Do(context.Background(), "1")
	require.ErrorIs(t, err, fcluster.ErrNotStarted)
	v, _, err := l.DoLocal(context.Background(), "1")
	require.NoError(t, err)
	assert.Equal(t, "v-1", v)
	assert.Nil(t, node.Members())
	assert.Empty(t, node.Address())

	require.NoError(t, node.Close())
	require.NoError(t, node.Close())
	_, _, err = l.Do(context.Background(), "1")
	require.ErrorIs(t, err, flight.ErrClosed)
	_, _, err = l.DoLocal(context.Background(), "1")
	require.ErrorIs(t, err, flight.ErrClosed)
	require.Error(t, node.Start(), "Start after Close")
}

// noProvider is a ClusterProvider for nodes that are never started.
type noProvider struct{ pcluster.ClusterProvider }

// Three members in one process: the rules of the in-process coordinator,
// cluster-wide. Each scenario uses its own loader; the last one closes a
// member.
func TestClusterSemantics(t *testing.T) {
	if racecheck.Isolated(t) {
		return
	}
	type hooks struct {
		started  chan int      // the member that started an execution
		canceled chan error    // a loader saw its context end
		release  chan struct{} // lets blocked loaders return
		execs    atomic.Int64  // executions, all members
	}
	h := map[string]*hooks{}
	for _, name := range []string{"leave", "panic", "error", "timeout", "forget", "local", "close"} {
		h[name] = &hooks{started: make(chan int, 16), canceled: make(chan error, 16), release: make(chan struct{})}
	}
	blocking := func(hk *hooks, i int) fcluster.LoaderFunc[int64] {
		return func(ctx context.Context, key string) (int64, error) {
			e := hk.execs.Add(1)
			hk.started <- i
			select {
			case <-hk.release:
				return e, nil
			case <-ctx.Done():
				hk.canceled <- ctx.Err()
				return 0, ctx.Err()
			}
		}
	}
	L := map[string][]*fcluster.Loader[int64]{}
	nodes := members(t, 3, func(i int, node *fcluster.Node) {
		reg := func(name string, fn fcluster.LoaderFunc[int64], opts ...flight.Option) {
			l, err := fcluster.Register(node, name, fn, nil, opts...)
			require.NoError(t, err)
			L[name] = append(L[name], l)
		}
		reg("leave", blocking(h["leave"], i))
		reg("panic", func(ctx context.Context, key string) (int64, error) {
			h["panic"].execs.Add(1)
			<-h["panic"].release
			panic("boom " + key)
		})
		reg("error", func(ctx context.Context, key string) (int64, error) {
			h["error"].execs.Add(1)
			<-h["error"].release
			return 0, errors.New("no such user " + key)
		})
		reg("timeout", blocking(h["timeout"], i), flight.WithTimeout(100*time.Millisecond))
		reg("forget", blocking(h["forget"], i))
		reg("local", func(ctx context.Context, key string) (int64, error) { return int64(i), nil })
		reg("close", blocking(h["close"], i))
	})
	ctx := context.Background()
	ownerOf := func(ls []*fcluster.Loader[int64], waiters int) int {
		owner := -1
		wait.Until(t, "one owner with the member calls", func() bool {
			for i, l := range ls {
				if s := l.Stats().Owner; s.InFlight == 1 && s.Waiters == waiters {
					owner = i
					return true
				}
			}
			return false
		})
		return owner
	}
	type res struct {
		v      int64
		shared bool
		err    error
	}
	doAsync := func(ctx context.Context, l *fcluster.Loader[int64], key string) <-chan res {
		ch := make(chan res, 1)
		go func() {
			v, shared, err := l.Do(ctx, key)
			ch <- res{v, shared, err}
		}()
		return ch
	}

	t.Run("each caller leaves on its own ctx; the last one cancels the flight", func(t *testing.T) {
		ls := L["leave"]
		ctxs := make([]context.CancelFunc, 3)
		outs := make([]<-chan res, 3)
		for i, l := range ls {
			c, cancel := context.WithCancel(ctx)
			ctxs[i], outs[i] = cancel, doAsync(c, l, "k")
		}
		wait.Recv(t, h["leave"].started)
		owner := ownerOf(ls, 3)
		for i := range ls {
			ctxs[i]()
			r := wait.Recv(t, outs[i])
			require.ErrorIs(t, r.err, context.Canceled)
			if i < 2 {
				wait.Until(t, "the owner flight goes on", func() bool { s := ls[owner].Stats().Owner; return s.InFlight == 1 && s.Waiters == 2-i })
				select {
				case err := <-h["leave"].canceled:
					t.Fatalf("loader cancelled with callers left: %v", err)
				default:
				}
			}
		}
		require.ErrorIs(t, wait.Recv(t, h["leave"].canceled), context.Canceled)
		wait.Until(t, "abandoned", func() bool { return ls[owner].Stats().Owner.Abandoned == 1 })
		assert.Equal(t, int64(1), h["leave"].execs.Load())
	})

	t.Run("a panic reaches every caller on every member", func(t *testing.T) {
		ls := L["panic"]
		var outs []<-chan res
		for _, l := range ls {
			outs = append(outs, doAsync(ctx, l, "p"))
		}
		ownerOf(ls, 3)
		close(h["panic"].release)
		for _, o := range outs {
			r := wait.Recv(t, o)
			var pe *flight.PanicError
			require.ErrorAs(t, r.err, &pe)
			assert.Equal(t, "boom p", pe.Value)
			assert.Contains(t, string(pe.Stack), "semantics_test.go")
		}
		assert.Equal(t, int64(1), h["panic"].execs.Load())
		v, _, err := ls[0].Do(ctx, "p2") // the key space stays usable
		require.Error(t, err)
		assert.Zero(t, v)
	})

	t.Run("the loader's error arrives as its text", func(t *testing.T) {
		ls := L["error"]
		var outs []<-chan res
		for _, l := range ls {
			outs = append(outs, doAsync(ctx, l, "e"))
		}
		owner := ownerOf(ls, 3)
		close(h["error"].release)
		for _, o := range outs {
			r := wait.Recv(t, o)
			var re *fcluster.RemoteError
			require.ErrorAs(t, r.err, &re)
			assert.Equal(t, "no such user e", re.Message)
			assert.Equal(t, nodes[owner].Address(), re.Owner)
			assert.True(t, r.shared)
		}
		assert.Equal(t, int64(1), h["error"].execs.Load())
	})

	t.Run("WithTimeout on the owner reaches every member as DeadlineExceeded", func(t *testing.T) {
		ls := L["timeout"]
		var outs []<-chan res
		for _, l := range ls {
			outs = append(outs, doAsync(ctx, l, "t"))
		}
		for _, o := range outs {
			r := wait.Recv(t, o)
			require.ErrorIs(t, r.err, context.DeadlineExceeded)
			var re *fcluster.RemoteError
			require.ErrorAs(t, r.err, &re)
		}
		require.ErrorIs(t, wait.Recv(t, h["timeout"].canceled), context.DeadlineExceeded)
	})

	t.Run("Forget detaches the flight at its owner", func(t *testing.T) {
		ls := L["forget"]
		old := doAsync(ctx, ls[0], "f")
		wait.Recv(t, h["forget"].started)
		owner := ownerOf(ls, 1)
		ls[1].Forget("f")
		wait.Until(t, "forgotten at the owner", func() bool { return ls[owner].Stats().Owner.Forgotten == 1 })
		fresh := doAsync(ctx, ls[2], "f")
		wait.Until(t, "a new flight waits for the old execution", func() bool {
			return ls[owner].Stats().Owner.Waiters == 2
		})
		close(h["forget"].release)
		assert.Equal(t, int64(1), wait.Recv(t, old).v, "the old callers get the old result")
		assert.Equal(t, int64(2), wait.Recv(t, fresh).v, "later callers get a new execution")
	})

	t.Run("DoLocal runs on the calling member", func(t *testing.T) {
		for i, l := range L["local"] {
			v, _, err := l.DoLocal(ctx, "any")
			require.NoError(t, err)
			assert.Equal(t, int64(i), v)
			assert.Zero(t, l.Stats().Owner.Flights)
		}
	})

	t.Run("the owner closes mid-flight: callers elsewhere are answered by a retry", func(t *testing.T) {
		ls := L["close"]
		var outs []<-chan res
		for _, l := range ls {
			outs = append(outs, doAsync(ctx, l, "c"))
		}
		wait.Recv(t, h["close"].started)
		owner := ownerOf(ls, 3)
		require.NoError(t, nodes[owner].Close())
		r := wait.Recv(t, outs[owner])
		require.ErrorIs(t, r.err, flight.ErrClosed, "the closing member's own callers")
		// The survivors retry on a new owner, whose loader blocks: release.
		close(h["close"].release)
		for i, o := range outs {
			if i == owner {
				continue
			}
			r := wait.Recv(t, o)
			require.NoError(t, r.err, "member %d", i)
			assert.Equal(t, int64(2), r.v, "the second execution, on a survivor")
		}
		var lost uint64
		for _, l := range ls {
			lost += l.Stats().Lost
		}
		assert.Positive(t, lost)
		_, _, err := ls[owner].Do(ctx, "c")
		require.ErrorIs(t, err, flight.ErrClosed)
	})
}
