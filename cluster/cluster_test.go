package cluster_test

import (
	"context"
	"sync/atomic"
	"testing"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"

	fcluster "github.com/actorflight/flight/cluster"
	"github.com/actorflight/flight/cluster/internal/racecheck"
	"github.com/actorflight/flight/internal/wait"
)

type user struct {
	ID   string `json:"id"`
	Exec int64  `json:"exec"`
	By   int    `json:"by"` // the member that ran the loader
}

// Three members in one process, 30 callers on each for one key: the
// loader runs once in the whole cluster and all 90 callers get its value.
func TestOneExecutionAcrossThreeMembers(t *testing.T) {
	if racecheck.Isolated(t) {
		return
	}
	var execs atomic.Int64
	release := make(chan struct{})
	loaders := make([]*fcluster.Loader[user], 3)
	members(t, 3, func(i int, node *fcluster.Node) {
		l, err := fcluster.Register(node, "user", func(ctx context.Context, key string) (user, error) {
			e := execs.Add(1)
			select {
			case <-release:
			case <-ctx.Done():
				return user{}, ctx.Err()
			}
			return user{ID: key, Exec: e, By: i}, nil
		}, nil)
		require.NoError(t, err)
		loaders[i] = l
	})

	const perMember = 30
	type res struct {
		u      user
		shared bool
		err    error
	}
	results := make(chan res, 3*perMember)
	for _, l := range loaders {
		for range perMember {
			go func() {
				u, shared, err := l.Do(context.Background(), "42")
				results <- res{u, shared, err}
			}()
		}
	}
	// Every caller waits on its member, each member's one call has reached
	// the owner, and the owner runs one execution.
	wait.Until(t, "all callers waiting", func() bool {
		owners, waiting := 0, 0
		for _, l := range loaders {
			s := l.Stats()
			waiting += s.Callers.Waiters
			if s.Owner.InFlight == 1 && s.Owner.Waiters == 3 {
				owners++
			}
		}
		return waiting == 3*perMember && owners == 1
	})
	close(release)
	var first user
	for i := range 3 * perMember {
		r := wait.Recv(t, results)
		require.NoError(t, r.err)
		assert.True(t, r.shared)
		if i == 0 {
			first = r.u
		}
		assert.Equal(t, first, r.u)
	}
	assert.Equal(t, int64(1), execs.Load())
	assert.Equal(t, "42", first.ID)
	var flights uint64
	for _, l := range loaders {
		s := l.Stats()
		flights += s.Owner.Flights
		assert.Equal(t, uint64(1), s.Callers.Flights, "one remote call per member")
		assert.Equal(t, uint64(perMember-1), s.Callers.Joins)
	}
	assert.Equal(t, uint64(1), flights)
	racecheck.Logf(t, "owner member %d", first.By)
}
