package flight_test

import (
	"context"
	"fmt"
	"testing"
	"time"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"

	"github.com/actorflight/flight"
	"github.com/actorflight/flight/internal/wait"
)

// A Coordinator with WithScope keeps one flight per (scope, key): two
// tenants asking for one key at once run fn twice, each with its own
// tenant's ctx; callers of one tenant share.
func TestCoordinatorScopeOneFlightPerScopeAndKey(t *testing.T) {
	c := flight.New[string, string](flight.WithScope(tenantOf))
	defer c.Close()
	release := make(chan struct{})
	started := make(chan any, 4)
	fn := func(ctx context.Context) (string, error) {
		started <- tenantOf(ctx)
		<-release
		return fmt.Sprint(tenantOf(ctx), ":report"), nil
	}
	alice, bob := withTenant("alice"), withTenant("bob")
	a1, a2 := c.DoChan(alice, "report", fn), c.DoChan(alice, "report", fn)
	b1 := c.DoChan(bob, "report", fn)
	got := map[any]bool{wait.Recv(t, started): true, wait.Recv(t, started): true}
	assert.Equal(t, map[any]bool{"alice": true, "bob": true}, got, "one execution per tenant")
	wait.Until(t, "three waiters", func() bool { return c.Stats().Waiters == 3 })
	close(release)
	for _, ch := range []<-chan flight.Result[string]{a1, a2} {
		r := wait.Recv(t, ch)
		require.NoError(t, r.Err)
		assert.Equal(t, "alice:report", r.Val)
		assert.True(t, r.Shared)
	}
	r := wait.Recv(t, b1)
	assert.Equal(t, "bob:report", r.Val)
	assert.False(t, r.Shared)
	assert.Equal(t, uint64(2), c.Stats().Flights)
	assert.Len(t, started, 0)
}

// A retained result is one tenant's: another tenant's call for the same key
// runs fn; Forget(key) forgets the key in every scope.
func TestCoordinatorScopeRetainAndForget(t *testing.T) {
	c := flight.New[string, string](flight.WithScope(tenantOf), flight.WithTTL(time.Hour), flight.WithShards(4))
	defer c.Close()
	runs := 0
	fn := func(ctx context.Context) (string, error) { runs++; return fmt.Sprint(tenantOf(ctx), runs), nil }
	alice, bob := withTenant("alice"), withTenant("bob")
	v, _, err := c.Do(alice, "k", fn)
	require.NoError(t, err)
	assert.Equal(t, "alice1", v)
	v, _, _ = c.Do(bob, "k", fn)
	assert.Equal(t, "bob2", v, "alice's retained result is not bob's")
	v, _, _ = c.Do(alice, "k", fn)
	assert.Equal(t, "alice1", v, "a hit within the scope")
	assert.Equal(t, 2, c.Stats().Entries)

	c.Do(alice, "other", fn) // runs 3
	c.Forget("k")
	assert.Equal(t, 1, c.Stats().Entries, "Forget dropped k in both scopes, not other")
	v, _, _ = c.Do(alice, "k", fn)
	assert.Equal(t, "alice4", v)
	v, _, _ = c.Do(bob, "k", fn)
	assert.Equal(t, "bob5", v)
	c.Forget("missing") // nothing to forget: returns
}

// A scope value that is not comparable fails the call with ErrInvalidKey;
// Forget of an invalid key does nothing.
func TestCoordinatorScopeInvalid(t *testing.T) {
	c := flight.New[any, int](flight.WithScope(func(ctx context.Context) any {
		if v := ctx.Value(tenantKey{}); v != nil {
			return v
		}
		return map[string]int{}
	}))
	defer c.Close()
	fn := func(context.Context) (int, error) { return 1, nil }
	_, _, err := c.Do(context.Background(), "k", fn)
	assert.ErrorIs(t, err, flight.ErrInvalidKey)
	assert.ErrorIs(t, wait.Recv(t, c.DoChan(context.Background(), "k", fn)).Err, flight.ErrInvalidKey)
	_, _, err = c.Do(withTenant("t"), []int{1}, fn)
	assert.ErrorIs(t, err, flight.ErrInvalidKey, "an invalid key in a valid scope")
	assert.NotPanics(t, func() { c.Forget([]int{1}) })
	v, _, err := c.Do(withTenant("t"), "k", fn)
	require.NoError(t, err)
	assert.Equal(t, 1, v)
	assert.Zero(t, c.Stats().Waiters)
}

// A scope function runs on the caller's goroutine before anything is
// posted, so its panic is the caller's, as a panic in the caller's own
// code would be: it propagates from the call, and the Coordinator or
// Batcher is left as it was, serving every other call.
func TestScopePanicIsTheCallers(t *testing.T) {
	scope := func(ctx context.Context) any {
		if v := tenantOf(ctx); v != "boom" {
			return v
		}
		panic("scope boom")
	}
	boom := withTenant("boom")
	fn := func(ctx context.Context) (string, error) { return fmt.Sprint(tenantOf(ctx)), nil }
	c := newC[string](t, flight.WithScope(scope))
	assert.PanicsWithValue(t, "scope boom", func() { _, _, _ = c.Do(boom, "k", fn) })
	assert.PanicsWithValue(t, "scope boom", func() { c.DoChan(boom, "k", fn) })
	v, _, err := c.Do(withTenant("a"), "k", fn)
	require.NoError(t, err)
	assert.Equal(t, "a", v)
	// The shard counts the flight's caller out and retires its key just
	// after it answers.
	wait.Until(t, "the coordinator idle", idle(c))
	assert.Equal(t, uint64(1), c.Stats().Flights, "the panicking calls started nothing")

	b := newBatcher(t, func(ctx context.Context, keys []string) (map[string]string, error) {
		m := make(map[string]string, len(keys))
		for _, k := range keys {
			m[k] = fmt.Sprint(tenantOf(ctx), ":", k)
		}
		return m, nil
	}, flight.WithScope(scope), flight.WithMaxWait(time.Millisecond))
	assert.PanicsWithValue(t, "scope boom", func() { _, _ = b.Load(boom, "k1") })
	assert.PanicsWithValue(t, "scope boom", func() { b.LoadChan(boom, "k1") })
	assert.PanicsWithValue(t, "scope boom", func() { _, _ = b.LoadMany(boom, []string{"k1", "k2"}) })
	got, err := b.LoadMany(withTenant("a"), []string{"k1", "k2"})
	require.NoError(t, err)
	assert.Equal(t, map[string]string{"k1": "a:k1", "k2": "a:k2"}, got)
	wait.Until(t, "the batcher idle", batchIdle(b))
	assert.Equal(t, uint64(2), b.Stats().Loads, "the panicking calls were never admitted")
}
