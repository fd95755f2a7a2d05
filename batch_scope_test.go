package flight_test

import (
	"context"
	"errors"
	"fmt"
	"slices"
	"sync"
	"testing"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"

	"github.com/actorflight/flight"
	"github.com/actorflight/flight/internal/wait"
)

type tenantKey struct{}

func tenantOf(ctx context.Context) any { return ctx.Value(tenantKey{}) }

func withTenant(t string) context.Context {
	return context.WithValue(context.Background(), tenantKey{}, t)
}

// With WithScope, a Batcher never puts keys of two
// scopes in one call of fn, the batch's ctx carries a caller of that scope,
// and loads share a key only within one scope.
func TestBatcherScope(t *testing.T) {
	type call struct {
		tenant any
		keys   []string
	}
	var mu sync.Mutex
	var calls []call
	b := newBatcher(t, func(ctx context.Context, keys []string) (map[string]string, error) {
		tenant := tenantOf(ctx)
		mu.Lock()
		calls = append(calls, call{tenant, slices.Clone(keys)})
		mu.Unlock()
		m := map[string]string{}
		for _, k := range keys {
			m[k] = fmt.Sprint(tenant, ":", k)
		}
		if slices.Contains(keys, "bad") {
			return m, flight.KeyErrors[string]{"bad": errors.New("bad")}
		}
		return m, nil
	}, flight.WithScope(tenantOf), flight.WithMaxBatch(3), flight.WithMaxWait(hour))

	alice, bob := withTenant("alice"), withTenant("bob")
	// Interleaved: alice k1, bob k1, alice k2, bob k2, alice k1 again (joins
	// alice's k1), alice k3 fills alice's batch, bob bad fills bob's.
	a1, b1 := b.LoadChan(alice, "k1"), b.LoadChan(bob, "k1")
	a2, b2 := b.LoadChan(alice, "k2"), b.LoadChan(bob, "k2")
	a1again := b.LoadChan(alice, "k1")
	wait.Until(t, "five loads", func() bool { return b.Stats().Loads == 5 })
	a3, bbad := b.LoadChan(alice, "k3"), b.LoadChan(bob, "bad")
	for want, ch := range map[string]<-chan flight.Result[string]{
		"alice:k1": a1, "bob:k1": b1, "alice:k2": a2, "bob:k2": b2, "alice:k3": a3,
	} {
		r := wait.Recv(t, ch)
		require.NoError(t, r.Err)
		assert.Equal(t, want, r.Val)
	}
	r := wait.Recv(t, a1again)
	assert.Equal(t, "alice:k1", r.Val)
	assert.True(t, r.Shared, "a second load of a key in the same scope joins it")
	assert.EqualError(t, wait.Recv(t, bbad).Err, "bad", "KeyErrors work with scopes")

	mu.Lock()
	got := slices.Clone(calls)
	mu.Unlock()
	require.Len(t, got, 2)
	for _, c := range got {
		switch c.tenant {
		case "alice":
			assert.Equal(t, []string{"k1", "k2", "k3"}, c.keys)
		case "bob":
			assert.Equal(t, []string{"k1", "k2", "bad"}, c.keys)
		default:
			t.Fatalf("a batch with the ctx of tenant %v: %v", c.tenant, c.keys)
		}
	}
	assert.Equal(t, uint64(1), b.Stats().Joins)

	// LoadMany scopes all its keys with its ctx.
	vals, err := b.LoadMany(bob, []string{"x", "y", "z"})
	require.NoError(t, err)
	assert.Equal(t, map[string]string{"x": "bob:x", "y": "bob:y", "z": "bob:z"}, vals)
	wait.Until(t, "idle", batchIdle(b))
}

// A scope value that is not comparable (or not equal to itself) makes the
// call fail with ErrInvalidKey, before anything is posted; a scoped
// Batcher's recursive load is still caught; a nil scope panics.
func TestBatcherScopeInvalidAndRecursive(t *testing.T) {
	inner := make(chan error, 1)
	var b *flight.Batcher[string, string]
	b = newBatcher(t, func(ctx context.Context, keys []string) (map[string]string, error) {
		if keys[0] == "rec" {
			_, err := b.Load(ctx, "rec")
			inner <- err
		}
		return map[string]string{keys[0]: "v"}, nil
	}, flight.WithScope(func(ctx context.Context) any {
		if v := ctx.Value(tenantKey{}); v != nil {
			return v
		}
		return []int{1} // not comparable
	}), flight.WithMaxBatch(1))
	_, err := b.Load(context.Background(), "k")
	assert.ErrorIs(t, err, flight.ErrInvalidKey)
	assert.ErrorIs(t, wait.Recv(t, b.LoadChan(context.Background(), "k")).Err, flight.ErrInvalidKey)
	_, err = b.LoadMany(context.Background(), []string{"k"})
	assert.ErrorIs(t, err, flight.ErrInvalidKey)
	assert.Zero(t, b.Stats().Loads)

	v, err := b.Load(withTenant("t"), "rec")
	require.NoError(t, err)
	assert.Equal(t, "v", v)
	assert.ErrorIs(t, wait.Within(t, inner, prompt, "the recursive load"), flight.ErrRecursiveCall)

	assert.PanicsWithValue(t, "flight: WithScope(nil)", func() { flight.NewBatcher(echo(nil), flight.WithScope(nil)) })
	assert.PanicsWithValue(t, "flight: WithScope(nil)", func() { flight.New[string, string](flight.WithScope(nil)) })
}
