package flight_test

// The errors a Batcher returns, each to the callers it concerns: bad keys in a
// LoadMany, a BatchFunc loading its own keys, a batch error that is more
// than a KeyErrors, LoadMany after Close, options for retained results or
// retries given their zero value.

import (
	"context"
	"errors"
	"fmt"
	"math"
	"slices"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"

	"github.com/actorflight/flight"
	"github.com/actorflight/flight/internal/wait"
)

// prompt bounds a wait for an answer that needs nothing to be released.
const prompt = 2 * time.Second

// A LoadMany with an unhashable key (a slice inside an any)
// answers the other keys and fails that one with ErrInvalidKey, instead of
// panicking on the caller's goroutine.
func TestBatchLoadManyInvalidKeys(t *testing.T) {
	var mu sync.Mutex
	var got [][]any // guarded by mu: batches may run at once
	b := flight.NewBatcher(func(_ context.Context, keys []any) (map[any]string, error) {
		mu.Lock()
		got = append(got, slices.Clone(keys))
		mu.Unlock()
		m := make(map[any]string, len(keys))
		for _, k := range keys {
			m[k] = fmt.Sprint("v:", k)
		}
		return m, nil
	}, flight.WithMaxWait(0), flight.WithShards(1))
	defer b.Close()

	keys := []any{"a", []int{1}, "b", math.NaN(), map[string]int{}, "a"}
	var vals map[any]string
	var err error
	require.NotPanics(t, func() { vals, err = b.LoadMany(context.Background(), keys) })
	assert.Equal(t, map[any]string{"a": "v:a", "b": "v:b"}, vals)
	require.ErrorIs(t, err, flight.ErrInvalidKey)
	// The NaN can be a map key: it is named in the KeyErrors. The slice and
	// the map cannot be: the joined error counts them.
	var ke flight.KeyErrors[any]
	require.ErrorAs(t, err, &ke)
	assert.Len(t, ke, 1)
	for k, e := range ke {
		f, ok := k.(float64)
		assert.True(t, ok && math.IsNaN(f), "the KeyErrors names %v", k)
		assert.ErrorIs(t, e, flight.ErrInvalidKey)
	}
	assert.Contains(t, err.Error(), "2 keys cannot be map keys")
	mu.Lock()
	assert.ElementsMatch(t, []any{"a", "b"}, slices.Concat(got...), "only the valid keys reach fn, once each")
	mu.Unlock()

	// Only unhashable keys: no KeyErrors at all, still ErrInvalidKey.
	vals, err = b.LoadMany(context.Background(), []any{[]int{2}})
	assert.Empty(t, vals)
	require.ErrorIs(t, err, flight.ErrInvalidKey)
	assert.False(t, errors.As(err, &ke))
}

// A BatchFunc that loads a key of its own batch with its own
// ctx (or one derived from it, or through another batch of the same
// Batcher) gets ErrRecursiveCall at once instead of waiting for itself
// until Close. A key outside its batch still loads.
func TestBatchRecursiveLoad(t *testing.T) {
	type out struct {
		self, derived, other error
		otherVal             string
		many                 error
		chanErr              error
	}
	outs := make(chan out, 1)
	var b *flight.Batcher[string, string]
	b = newBatcher(t, func(ctx context.Context, keys []string) (map[string]string, error) {
		m := map[string]string{}
		for _, k := range keys {
			m[k] = "v:" + k
		}
		if keys[0] != "a" {
			return m, nil
		}
		var o out
		_, o.self = b.Load(ctx, "a")
		dctx, cancel := context.WithCancel(context.WithValue(ctx, struct{}{}, 1))
		defer cancel()
		_, o.derived = b.Load(dctx, "a")
		o.otherVal, o.other = b.Load(ctx, "z")
		_, o.many = b.LoadMany(ctx, []string{"a", "y"})
		select {
		case r := <-b.LoadChan(ctx, "a"):
			o.chanErr = r.Err
		case <-time.After(prompt):
			o.chanErr = errors.New("LoadChan hung")
		}
		outs <- o
		return m, nil
	}, flight.WithMaxBatch(1))
	done := make(chan error, 1)
	go func() { _, err := b.Load(context.Background(), "a"); done <- err }()
	o := wait.Within(t, outs, prompt, "fn's loads of its own key")
	assert.ErrorIs(t, o.self, flight.ErrRecursiveCall)
	assert.ErrorIs(t, o.derived, flight.ErrRecursiveCall)
	assert.ErrorIs(t, o.chanErr, flight.ErrRecursiveCall)
	require.NoError(t, o.other)
	assert.Equal(t, "v:z", o.otherVal)
	var ke flight.KeyErrors[string]
	require.ErrorAs(t, o.many, &ke)
	assert.ErrorIs(t, ke["a"], flight.ErrRecursiveCall)
	assert.NotContains(t, ke, "y")
	require.NoError(t, wait.Within(t, done, prompt, "the outer load"))

	// After its batch has answered, the same ctx loads the key normally
	// (a new batch): the guard is about a running batch only.
	ctxs := make(chan context.Context, 1)
	b2 := newBatcher(t, func(ctx context.Context, keys []string) (map[string]string, error) {
		select {
		case ctxs <- ctx:
		default:
		}
		return map[string]string{keys[0]: "x"}, nil
	}, flight.WithMaxBatch(1))
	_, err := b2.Load(context.Background(), "k")
	require.NoError(t, err)
	stale := <-ctxs
	v, err := b2.Load(context.WithoutCancel(stale), "k")
	require.NoError(t, err)
	assert.Equal(t, "x", v)
}

// A chain: the batch of a loads b with its ctx; b's batch loads
// a with its own ctx. Each waits for the other: the second load is refused.
func TestBatchRecursiveLoadChain(t *testing.T) {
	inner := make(chan error, 1)
	var b *flight.Batcher[string, string]
	b = newBatcher(t, func(ctx context.Context, keys []string) (map[string]string, error) {
		switch keys[0] {
		case "a":
			_, err := b.Load(ctx, "b")
			return map[string]string{"a": "va"}, err
		case "b":
			_, err := b.Load(ctx, "a")
			inner <- err
		}
		return map[string]string{keys[0]: "v"}, nil
	}, flight.WithMaxBatch(1))
	done := make(chan error, 1)
	go func() { _, err := b.Load(context.Background(), "a"); done <- err }()
	assert.ErrorIs(t, wait.Within(t, inner, prompt, "b's load of a"), flight.ErrRecursiveCall)
	require.NoError(t, wait.Within(t, done, prompt, "the outer load"))
}

// A batch error that joins a KeyErrors with another error is a
// batch-wide error: every key gets it whole (the other error is not
// dropped, and errors.As still finds the KeyErrors in it). A KeyErrors
// wrapped alone (fmt.Errorf %w) still fails only the keys it names.
func TestBatchJoinedKeyErrorsIsBatchWide(t *testing.T) {
	other := errors.New("replica lagging")
	perKey := errors.New("gone")
	var wrapOnly bool
	b := newBatcher(t, func(_ context.Context, keys []string) (map[string]string, error) {
		m := map[string]string{}
		for _, k := range keys {
			m[k] = "v:" + k
		}
		if wrapOnly {
			return m, fmt.Errorf("partial: %w", flight.KeyErrors[string]{"a": perKey})
		}
		return m, errors.Join(other, flight.KeyErrors[string]{"a": perKey})
	}, flight.WithMaxBatch(2), flight.WithMaxWait(hour), flight.WithShards(1))
	ctx := context.Background()
	ra, rb := b.LoadChan(ctx, "a"), b.LoadChan(ctx, "b")
	for _, r := range []flight.Result[string]{wait.Recv(t, ra), wait.Recv(t, rb)} {
		assert.ErrorIs(t, r.Err, other)
		assert.ErrorIs(t, r.Err, perKey)
		assert.Empty(t, r.Val)
	}
	wait.Until(t, "idle", batchIdle(b))
	wrapOnly = true
	ra, rb = b.LoadChan(ctx, "a"), b.LoadChan(ctx, "b")
	assert.ErrorIs(t, wait.Recv(t, ra).Err, perKey)
	r := wait.Recv(t, rb)
	require.NoError(t, r.Err)
	assert.Equal(t, "v:b", r.Val)
}

// LoadMany after Close returns ErrClosed itself, as Load does,
// not a KeyErrors of ErrClosed.
func TestBatchLoadManyAfterClose(t *testing.T) {
	b := flight.NewBatcher(echo(nil))
	require.NoError(t, b.Close())
	vals, err := b.LoadMany(context.Background(), []string{"a", "b"})
	assert.Empty(t, vals)
	require.ErrorIs(t, err, flight.ErrClosed)
	var ke flight.KeyErrors[string]
	assert.False(t, errors.As(err, &ke), "after Close: %v", err)
	assert.Equal(t, flight.ErrClosed, err)
}

// An option for retries (or for the Coordinator's admission and breakers)
// is refused by NewBatcher whatever its value, WithRetry(1, nil) included:
// a service whose retry count comes from its configuration must not work in
// one environment and panic in the next. The options for retained results
// are accepted, at any valid value (WithTTL(0) retains nothing, as on New).
func TestBatchRefusesRetryOptionsAtZero(t *testing.T) {
	for name, o := range map[string]flight.Option{
		"WithRetry":       flight.WithRetry(1, nil),
		"WithRetryIf":     flight.WithRetryIf(func(error) bool { return false }),
		"WithBreaker":     flight.WithBreaker(1, time.Second),
		"WithMaxWaiters":  flight.WithMaxWaiters(1),
		"WithMaxInFlight": flight.WithMaxInFlight(1),
	} {
		t.Run(name, func(t *testing.T) {
			defer func() {
				r := recover()
				require.NotNil(t, r, "NewBatcher accepted %s", name)
				msg := fmt.Sprint(r)
				assert.True(t, strings.HasPrefix(msg, "flight: "), msg)
				assert.Contains(t, msg, name[len("With"):], msg)
			}()
			b := flight.NewBatcher(echo(nil), o)
			b.Close()
		})
	}
}

// NewBatcher takes the options of retained results and validates
// them as New does.
func TestBatchRetainOptions(t *testing.T) {
	for name, opts := range map[string][]flight.Option{
		"WithTTL(0)":             {flight.WithTTL(0)},
		"WithErrorTTL(0)":        {flight.WithErrorTTL(0)},
		"WithTTL(1s)":            {flight.WithTTL(time.Second)},
		"WithErrorTTL(1s)":       {flight.WithErrorTTL(time.Second)},
		"WithMaxEntries(1)":      {flight.WithTTL(time.Second), flight.WithMaxEntries(1)},
		"WithRefreshAhead":       {flight.WithTTL(time.Second), flight.WithRefreshAhead(time.Second / 2)},
		"WithStaleIfError":       {flight.WithTTL(time.Second), flight.WithStaleIfError(time.Second)},
		"WithTTL(math.MaxInt64)": {flight.WithTTL(math.MaxInt64)},
		"all":                    {flight.WithTTL(time.Second), flight.WithErrorTTL(time.Second), flight.WithRefreshAhead(time.Millisecond), flight.WithMaxEntries(10), flight.WithStaleIfError(time.Second), flight.WithScope(func(context.Context) any { return 1 })},
	} {
		t.Run(name, func(t *testing.T) {
			b := flight.NewBatcher(echo(nil), opts...)
			v, err := b.Load(context.Background(), "a")
			require.NoError(t, err)
			assert.Equal(t, "v:a", v)
			require.NoError(t, b.Close())
		})
	}
	for name, c := range map[string]struct {
		opts []flight.Option
		msg  string
	}{
		"WithTTL(-1)":                  {[]flight.Option{flight.WithTTL(-1)}, "WithTTL(-1ns)"},
		"WithErrorTTL(-1)":             {[]flight.Option{flight.WithErrorTTL(-1)}, "WithErrorTTL(-1ns)"},
		"WithMaxEntries(0)":            {[]flight.Option{flight.WithTTL(time.Second), flight.WithMaxEntries(0)}, "WithMaxEntries(0)"},
		"WithRefreshAhead without TTL": {[]flight.Option{flight.WithRefreshAhead(time.Second)}, "WithRefreshAhead"},
		"WithRefreshAhead >= TTL":      {[]flight.Option{flight.WithTTL(time.Second), flight.WithRefreshAhead(time.Second)}, "WithRefreshAhead"},
		"WithStaleIfError without TTL": {[]flight.Option{flight.WithStaleIfError(time.Second)}, "needs WithTTL"},
		"WithStaleIfError(0)":          {[]flight.Option{flight.WithTTL(time.Second), flight.WithStaleIfError(0)}, "WithStaleIfError(0s)"},
	} {
		t.Run(name, func(t *testing.T) {
			defer func() {
				r := recover()
				require.NotNil(t, r, "NewBatcher accepted %s", name)
				assert.Contains(t, fmt.Sprint(r), c.msg)
			}()
			flight.NewBatcher(echo(nil), c.opts...).Close()
		})
	}
}
