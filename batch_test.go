package flight_test

// Tests of the Batcher: one test (at least) per rule of its documentation.
// Events are ordered with channels and the batcher's own Stats; time limits
// only catch hangs.

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"math"
	"runtime"
	"slices"
	"strings"
	"sync"
	"testing"
	"testing/synctest"
	"time"

	"github.com/asynkron/protoactor-go/actor"
	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"
	"go.uber.org/goleak"

	"github.com/actorflight/flight"
	"github.com/actorflight/flight/internal/shared"
	"github.com/actorflight/flight/internal/wait"
)

// hour is a WithMaxWait that never passes during a test: batches are
// dispatched only when full (or by a test's own choice of MaxBatch).
const hour = time.Hour

func newBatcher[V any](t testing.TB, fn flight.BatchFunc[string, V], opts ...flight.Option) *flight.Batcher[string, V] {
	t.Helper()
	b := flight.NewBatcher(fn, opts...)
	t.Cleanup(func() { require.NoError(t, b.Close()) })
	return b
}

// echo answers "v:"+key for every key and sends each batch's keys on
// batches (when not nil).
func echo(batches chan<- []string) flight.BatchFunc[string, string] {
	return func(_ context.Context, keys []string) (map[string]string, error) {
		if batches != nil {
			batches <- slices.Clone(keys)
		}
		m := make(map[string]string, len(keys))
		for _, k := range keys {
			m[k] = "v:" + k
		}
		return m, nil
	}
}

// blocking is a batch function that reports each call on started and
// answers like echo once release is closed or its ctx is done (then with
// ctx.Err()). ctxs receives each call's ctx.
type blocking struct {
	started chan []string
	ctxs    chan context.Context
	release chan struct{}
}

func newBlocking() *blocking {
	return &blocking{started: make(chan []string, 100), ctxs: make(chan context.Context, 100), release: make(chan struct{})}
}

func (bl *blocking) fn(ctx context.Context, keys []string) (map[string]string, error) {
	bl.ctxs <- ctx
	bl.started <- slices.Clone(keys)
	select {
	case <-bl.release:
		return echo(nil)(ctx, keys)
	case <-ctx.Done():
		return nil, ctx.Err()
	}
}

func waiters(b *flight.Batcher[string, string], n int) func() bool {
	return func() bool { return b.Stats().Waiters == n }
}

func batchIdle[V any](b *flight.Batcher[string, V]) func() bool {
	return func() bool {
		s := b.Stats()
		return s.Keys == 0 && s.Waiters == 0 && s.Pending == 0 && s.Running == 0
	}
}

// Each caller gets its own key's value; a batch holds each key once, in
// first-arrival order.
func TestBatchOrderOnceAndOwnValues(t *testing.T) {
	batches := make(chan []string, 10)
	b := newBatcher(t, echo(batches), flight.WithMaxBatch(3), flight.WithMaxWait(hour))
	ctx := context.Background()
	var chans []<-chan flight.Result[string]
	for _, k := range []string{"c", "a", "c", "c"} {
		chans = append(chans, b.LoadChan(ctx, k))
		wait.Until(t, "the join", func() bool { return b.Stats().Loads == uint64(len(chans)) })
	}
	ra := b.LoadChan(ctx, "b") // the third distinct key fills the batch
	assert.Equal(t, []string{"c", "a", "b"}, wait.Recv(t, batches))
	for i, k := range []string{"c", "a", "c", "c"} {
		r := wait.Recv(t, chans[i])
		require.NoError(t, r.Err)
		assert.Equal(t, "v:"+k, r.Val)
		assert.Equal(t, k == "c", r.Shared, "Shared: the key had more than one caller (%s)", k)
	}
	r := wait.Recv(t, ra)
	assert.Equal(t, flight.Result[string]{Val: "v:b"}, r)
	st := b.Stats()
	assert.Equal(t, uint64(1), st.Batches)
	assert.Equal(t, uint64(3), st.BatchedKeys)
	assert.Equal(t, uint64(5), st.Loads)
	assert.Equal(t, uint64(2), st.Joins)
}

// A key already waiting for a batch is joined, never sent twice — here
// with Load on many goroutines.
func TestBatchJoinsWaitingKey(t *testing.T) {
	batches := make(chan []string, 10)
	b := newBatcher(t, echo(batches), flight.WithMaxBatch(2), flight.WithMaxWait(hour))
	var wg sync.WaitGroup
	for range 50 {
		wg.Go(func() {
			v, err := b.Load(context.Background(), "k")
			assert.NoError(t, err)
			assert.Equal(t, "v:k", v)
		})
	}
	wait.Until(t, "50 callers of k", waiters(b, 50))
	assert.Equal(t, 1, b.Stats().Keys)
	assert.Zero(t, b.Stats().Batches, "one key: the batch is not full")
	v, err := b.Load(context.Background(), "other") // fills the batch
	require.NoError(t, err)
	assert.Equal(t, "v:other", v)
	wg.Wait()
	assert.Equal(t, []string{"k", "other"}, wait.Recv(t, batches))
	assert.Empty(t, batches)
}

// A key inside a running batch is joined: its fn is not called again.
func TestBatchJoinsRunningKey(t *testing.T) {
	bl := newBlocking()
	b := newBatcher(t, bl.fn, flight.WithMaxBatch(1))
	first := b.LoadChan(context.Background(), "k")
	assert.Equal(t, []string{"k"}, wait.Recv(t, bl.started))
	second := b.LoadChan(context.Background(), "k")
	wait.Until(t, "the join", func() bool { return b.Stats().Joins == 1 })
	assert.Equal(t, 2, b.Stats().Waiters)
	close(bl.release)
	for _, ch := range []<-chan flight.Result[string]{first, second} {
		assert.Equal(t, flight.Result[string]{Val: "v:k", Shared: true}, wait.Recv(t, ch))
	}
	assert.Equal(t, uint64(1), b.Stats().Batches)
	// Once answered, the key is loaded again by a new batch (no cache).
	v, err := b.Load(context.Background(), "k")
	require.NoError(t, err)
	assert.Equal(t, "v:k", v)
	assert.Equal(t, uint64(2), b.Stats().Batches)
}

// At most WithMaxBatch keys per batch; a full batch is dispatched at
// once, without waiting for WithMaxWait.
func TestBatchMaxBatchDispatchesWhenFull(t *testing.T) {
	batches := make(chan []string, 10)
	b := newBatcher(t, echo(batches), flight.WithMaxBatch(100), flight.WithMaxWait(hour))
	keys := make([]string, 250)
	for i := range keys {
		keys[i] = fmt.Sprint(i)
	}
	res := make(chan error, 1)
	go func() {
		_, err := b.LoadMany(context.Background(), keys)
		res <- err
	}()
	// The keys reach the collector through their shards, so a key may
	// overtake another one posted just before it to a busy shard.
	sent := slices.Concat(wait.Recv(t, batches), wait.Recv(t, batches))
	assert.Len(t, sent, 200)
	wait.Until(t, "the last 50 keys waiting", func() bool { return b.Stats().Keys == 50 })
	st := b.Stats()
	assert.Equal(t, 1, st.Pending, "the third batch waits for its WithMaxWait")
	assert.Equal(t, uint64(2), st.Batches)
	assert.Equal(t, uint64(200), st.BatchedKeys)
	assert.Len(t, batches, 0)
	require.NoError(t, b.Close())
	assert.ErrorIs(t, wait.Recv(t, res), flight.ErrClosed)
}

// With one shard, a single caller's keys reach the batch in its order.
func TestBatchOneShardKeepsOrder(t *testing.T) {
	batches := make(chan []string, 10)
	b := newBatcher(t, echo(batches), flight.WithShards(1), flight.WithMaxBatch(100), flight.WithMaxWait(hour))
	keys := make([]string, 200)
	for i := range keys {
		keys[i] = fmt.Sprint(i)
	}
	_, err := b.LoadMany(context.Background(), keys)
	require.NoError(t, err)
	// The two batches run at once: their calls of fn may report in either
	// order, but each holds its keys in the caller's order.
	got := [][]string{wait.Recv(t, batches), wait.Recv(t, batches)}
	if len(got[0]) > 0 && got[0][0] != "0" {
		got[0], got[1] = got[1], got[0]
	}
	assert.Equal(t, [][]string{keys[:100], keys[100:200]}, got)
}

// A batch is dispatched WithMaxWait after its first key, not before,
// and not later — measured on synctest's clock.
func TestBatchMaxWait(t *testing.T) {
	shared.System() // the shared actor system lives outside the bubble
	synctest.Test(t, func(t *testing.T) {
		var mu sync.Mutex // the race detector does not see synctest.Wait as a sync point
		var at []time.Duration
		dispatches := func() []time.Duration { mu.Lock(); defer mu.Unlock(); return slices.Clone(at) }
		start := time.Now()
		b := flight.NewBatcher(func(_ context.Context, keys []string) (map[string]string, error) {
			mu.Lock()
			at = append(at, time.Since(start))
			mu.Unlock()
			return echo(nil)(nil, keys)
		}, flight.WithMaxWait(10*time.Millisecond))
		first := b.LoadChan(context.Background(), "a")
		time.Sleep(4 * time.Millisecond) // fake time: the bubble's clock
		second := b.LoadChan(context.Background(), "b")
		synctest.Wait()
		assert.Empty(t, dispatches(), "not dispatched before WithMaxWait")
		time.Sleep(6 * time.Millisecond)
		synctest.Wait()
		assert.Equal(t, []time.Duration{10 * time.Millisecond}, dispatches(), "dispatched WithMaxWait after the first key")
		assert.Equal(t, "v:a", (<-first).Val)
		assert.Equal(t, "v:b", (<-second).Val)
		assert.Equal(t, uint64(2), b.Stats().BatchedKeys)
		require.NoError(t, b.Close())
	})
}

// A key missing from fn's map gets ErrNotFound; the others their values.
func TestBatchMissingKeyNotFound(t *testing.T) {
	b := newBatcher(t, func(_ context.Context, keys []string) (map[string]string, error) {
		return map[string]string{"here": "v"}, nil
	}, flight.WithMaxBatch(2), flight.WithMaxWait(hour))
	missing := b.LoadChan(context.Background(), "missing")
	v, err := b.Load(context.Background(), "here")
	require.NoError(t, err)
	assert.Equal(t, "v", v)
	r := wait.Recv(t, missing)
	assert.ErrorIs(t, r.Err, flight.ErrNotFound)
	assert.Equal(t, "flight: key not in batch result", flight.ErrNotFound.Error())
}

// KeyErrors (matched with errors.As, so wrapped too) fails only the keys
// it names with a non-nil error; the others get their values.
func TestBatchKeyErrorsFailOnlyTheirKeys(t *testing.T) {
	bad := errors.New("bad row")
	b := newBatcher(t, func(_ context.Context, keys []string) (map[string]string, error) {
		m, _ := echo(nil)(nil, keys)
		return m, fmt.Errorf("wrapped: %w", flight.KeyErrors[string]{"bad": bad, "nilentry": nil})
	}, flight.WithMaxBatch(3), flight.WithMaxWait(hour))
	vals, err := b.LoadMany(context.Background(), []string{"ok", "bad", "nilentry"})
	var ke flight.KeyErrors[string]
	require.ErrorAs(t, err, &ke)
	assert.Equal(t, flight.KeyErrors[string]{"bad": bad}, ke)
	assert.Equal(t, map[string]string{"ok": "v:ok", "nilentry": "v:nilentry"}, vals)
	assert.Equal(t, "flight: 1 keys failed: bad: bad row", ke.Error())
}

// Any other error reaches every key of that batch; the next batch is
// unaffected.
func TestBatchErrorReachesOnlyItsBatch(t *testing.T) {
	boom := errors.New("db down")
	var calls int
	b := newBatcher(t, func(_ context.Context, keys []string) (map[string]string, error) {
		calls++ // batches run one after the other here
		if calls == 1 {
			return map[string]string{"a": "ignored"}, boom
		}
		return echo(nil)(nil, keys)
	}, flight.WithMaxBatch(2), flight.WithMaxWait(hour))
	a := b.LoadChan(context.Background(), "a")
	_, err := b.Load(context.Background(), "b")
	assert.ErrorIs(t, err, boom)
	assert.ErrorIs(t, wait.Recv(t, a).Err, boom)
	vals, err := b.LoadMany(context.Background(), []string{"a", "c"})
	require.NoError(t, err)
	assert.Equal(t, map[string]string{"a": "v:a", "c": "v:c"}, vals)
}

// A panic reaches every key of that batch as a *PanicError, and
// runtime.Goexit as ErrGoexit; the process lives on and the next batch is
// unaffected.
func TestBatchPanicAndGoexit(t *testing.T) {
	b := newBatcher(t, func(_ context.Context, keys []string) (map[string]string, error) {
		switch keys[0] {
		case "panic":
			panic(errors.New("boom"))
		case "goexit":
			runtime.Goexit()
		}
		return echo(nil)(nil, keys)
	}, flight.WithMaxBatch(2), flight.WithMaxWait(hour))
	// Each batch's first key decides what fn does: wait until it has joined
	// before the second key comes (the two may go to different shards).
	other := b.LoadChan(context.Background(), "panic")
	wait.Until(t, "the first key joined", waiters(b, 1))
	_, err := b.Load(context.Background(), "x")
	var pe *flight.PanicError
	require.ErrorAs(t, err, &pe)
	assert.EqualError(t, pe.Unwrap(), "boom")
	assert.Contains(t, string(pe.Stack), "TestBatchPanicAndGoexit")
	require.ErrorAs(t, wait.Recv(t, other).Err, &pe)

	// The gauges of the last batch settle after its callers are answered:
	// wait for them, or Waiters == 1 could be the last batch's count.
	wait.Until(t, "idle", batchIdle(b))
	other = b.LoadChan(context.Background(), "goexit")
	wait.Until(t, "the first key joined", waiters(b, 1))
	_, err = b.Load(context.Background(), "y")
	assert.ErrorIs(t, err, flight.ErrGoexit)
	assert.ErrorIs(t, wait.Recv(t, other).Err, flight.ErrGoexit)

	vals, err := b.LoadMany(context.Background(), []string{"after", "panic2"})
	require.NoError(t, err)
	assert.Len(t, vals, 2)
	assert.Equal(t, uint64(2), b.Stats().Panics)
}

type batchCtxKey struct{}

// The batch's ctx carries the first caller's values, and one caller
// leaving does not cancel it for the others (graph-gophers/dataloader#105).
func TestBatchCtxValuesAndOneCallerLeaving(t *testing.T) {
	bl := newBlocking()
	b := newBatcher(t, bl.fn, flight.WithMaxBatch(2), flight.WithMaxWait(hour))
	firstCtx, cancelFirst := context.WithCancel(context.WithValue(context.Background(), batchCtxKey{}, "first"))
	first := b.LoadChan(firstCtx, "a")
	wait.Until(t, "the first join", waiters(b, 1))
	second := b.LoadChan(context.WithValue(context.Background(), batchCtxKey{}, "second"), "b")
	fnCtx := wait.Recv(t, bl.ctxs)
	<-bl.started
	assert.Equal(t, "first", fnCtx.Value(batchCtxKey{}))
	cancelFirst()
	assert.ErrorIs(t, wait.Recv(t, first).Err, context.Canceled, "the caller that left gets its ctx's error")
	wait.Until(t, "the leave", waiters(b, 1))
	assert.NoError(t, fnCtx.Err(), "the batch goes on for the other caller")
	close(bl.release)
	assert.Equal(t, "v:b", wait.Recv(t, second).Val)
	assert.Zero(t, b.Stats().Abandoned)
}

// The batch's ctx is cancelled when every caller of every key in it has
// left; Stats counts it Abandoned.
func TestBatchCtxCancelledWhenEveryCallerLeft(t *testing.T) {
	bl := newBlocking()
	b := newBatcher(t, bl.fn, flight.WithMaxBatch(2), flight.WithMaxWait(hour))
	ctxA, cancelA := context.WithCancel(context.Background())
	ctxB, cancelB := context.WithCancel(context.Background())
	a1 := b.LoadChan(ctxA, "a")
	a2 := b.LoadChan(ctxB, "a") // a second caller of a, leaving separately
	wait.Until(t, "two callers of a", waiters(b, 2))
	bres := make(chan error, 1)
	go func() { _, err := b.Load(ctxB, "b"); bres <- err }()
	fnCtx := wait.Recv(t, bl.ctxs)
	<-bl.started
	cancelA()
	assert.ErrorIs(t, wait.Recv(t, a1).Err, context.Canceled)
	wait.Until(t, "a's first caller left", waiters(b, 2))
	assert.NoError(t, fnCtx.Err(), "a still has a caller")
	cancelB()
	assert.ErrorIs(t, wait.Recv(t, a2).Err, context.Canceled)
	assert.ErrorIs(t, wait.Recv(t, bres), context.Canceled)
	wait.Recv(t, fnCtx.Done())
	assert.ErrorIs(t, fnCtx.Err(), context.Canceled)
	wait.Until(t, "idle", batchIdle(b))
	assert.Equal(t, uint64(1), b.Stats().Abandoned)
}

// The batch's ctx is cancelled on WithTimeout, and every key of the batch
// gets an error matching context.DeadlineExceeded even if fn ignores its
// ctx.
func TestBatchTimeout(t *testing.T) {
	release := make(chan struct{})
	returned := make(chan error, 1)
	b := newBatcher(t, func(ctx context.Context, keys []string) (map[string]string, error) {
		<-ctx.Done()
		<-release // ignores the deadline a while longer
		returned <- ctx.Err()
		return map[string]string{"a": "late"}, nil
	}, flight.WithMaxBatch(2), flight.WithMaxWait(hour), flight.WithTimeout(20*time.Millisecond))
	a := b.LoadChan(context.Background(), "a")
	_, err := b.Load(context.Background(), "b")
	assert.ErrorIs(t, err, context.DeadlineExceeded)
	assert.ErrorIs(t, wait.Recv(t, a).Err, context.DeadlineExceeded)
	close(release)
	assert.ErrorIs(t, wait.Recv(t, returned), context.DeadlineExceeded)
	wait.Until(t, "idle", batchIdle(b))
	assert.Equal(t, uint64(1), b.Stats().Timeouts)
}

// A key whose every caller left before dispatch is taken out of the
// batch, and does not count toward WithMaxBatch.
func TestBatchKeyLeftBeforeDispatchTakenOut(t *testing.T) {
	batches := make(chan []string, 10)
	b := newBatcher(t, echo(batches), flight.WithMaxBatch(2), flight.WithMaxWait(hour))
	ctx, cancel := context.WithCancel(context.Background())
	gone := make(chan error, 1)
	go func() { _, err := b.Load(ctx, "gone"); gone <- err }()
	wait.Until(t, "the join", waiters(b, 1))
	cancel()
	assert.ErrorIs(t, wait.Recv(t, gone), context.Canceled)
	wait.Until(t, "the key taken out", func() bool { return b.Stats().Dropped == 1 })
	assert.Equal(t, 0, b.Stats().Pending, "the emptied batch is discarded")
	a := b.LoadChan(context.Background(), "a")
	v, err := b.Load(context.Background(), "b")
	require.NoError(t, err)
	assert.Equal(t, "v:b", v)
	assert.Equal(t, "v:a", wait.Recv(t, a).Val)
	assert.Equal(t, []string{"a", "b"}, wait.Recv(t, batches))
}

// A batch waiting for a WithMaxConcurrentBatches slot is not
// dispatched yet: fn is not called for it, and a key whose callers left
// meanwhile is taken out of it; it is dispatched when the slot frees.
func TestBatchWaitsForSlot(t *testing.T) {
	bl := newBlocking()
	b := newBatcher(t, bl.fn, flight.WithMaxBatch(2), flight.WithMaxWait(hour), flight.WithMaxConcurrentBatches(1))
	loadMany := func(ctx context.Context, keys ...string) <-chan error {
		ch := make(chan error, 1)
		go func() { _, err := b.LoadMany(ctx, keys); ch <- err }()
		return ch
	}
	first := loadMany(context.Background(), "a", "b")
	assert.Equal(t, []string{"a", "b"}, wait.Recv(t, bl.started))
	ctx, cancel := context.WithCancel(context.Background())
	gone := loadMany(ctx, "c")
	wait.Until(t, "c waiting", func() bool { return b.Stats().Keys == 3 })
	second := loadMany(context.Background(), "d", "e", "f")
	wait.Until(t, "six keys waiting", func() bool { return b.Stats().Keys == 6 })
	st := b.Stats()
	assert.Equal(t, 1, st.Running)
	assert.Equal(t, 2, st.Pending, "two full batches wait for the slot")
	assert.Equal(t, uint64(1), st.Batches)
	select {
	case keys := <-bl.started:
		t.Fatalf("a batch was dispatched without a slot: %v", keys)
	default:
	}
	cancel()
	assert.ErrorIs(t, wait.Recv(t, gone), context.Canceled)
	wait.Until(t, "c taken out", func() bool { return b.Stats().Dropped == 1 })
	close(bl.release)
	require.NoError(t, wait.Recv(t, first))
	require.NoError(t, wait.Recv(t, second))
	// Shards may hand d, e and f to the collector in any order; c is in none.
	sent := slices.Concat(wait.Recv(t, bl.started), wait.Recv(t, bl.started))
	assert.ElementsMatch(t, []string{"d", "e", "f"}, sent)
	wait.Until(t, "idle", batchIdle(b))
	assert.Equal(t, uint64(3), b.Stats().Batches)
	assert.Equal(t, uint64(5), b.Stats().BatchedKeys)
}

// LoadMany returns the values it got and a KeyErrors for the keys that
// failed, and ctx.Err() when its ctx ends first (its keys' callers leave).
func TestBatchLoadMany(t *testing.T) {
	bl := newBlocking()
	b := newBatcher(t, func(ctx context.Context, keys []string) (map[string]string, error) {
		// Not keys[0]: the keys of one LoadMany go to different shards,
		// and one drained by another goroutine just then may be overtaken.
		if slices.Contains(keys, "slow") {
			return bl.fn(ctx, keys)
		}
		return map[string]string{"a": "v:a"}, nil
	}, flight.WithMaxBatch(3), flight.WithMaxWait(hour))
	vals, err := b.LoadMany(context.Background(), []string{"a", "missing", "a", "other"})
	var ke flight.KeyErrors[string]
	require.ErrorAs(t, err, &ke)
	assert.Equal(t, map[string]string{"a": "v:a"}, vals)
	assert.Len(t, ke, 2)
	assert.ErrorIs(t, ke["missing"], flight.ErrNotFound)
	assert.ErrorIs(t, ke["other"], flight.ErrNotFound)

	vals, err = b.LoadMany(context.Background(), nil)
	assert.NoError(t, err)
	assert.Empty(t, vals)

	ctx, cancel := context.WithCancel(context.Background())
	res := make(chan error, 1)
	go func() { _, err := b.LoadMany(ctx, []string{"slow", "x", "y"}); res <- err }()
	fnCtx := wait.Recv(t, bl.ctxs)
	cancel()
	assert.ErrorIs(t, wait.Recv(t, res), context.Canceled)
	wait.Recv(t, fnCtx.Done()) // its callers left: the batch is abandoned
	wait.Until(t, "idle", batchIdle(b))
}

// Result.Shared means the key had more than one caller.
func TestBatchShared(t *testing.T) {
	b := newBatcher(t, echo(nil), flight.WithMaxBatch(3), flight.WithMaxWait(hour))
	x1 := b.LoadChan(context.Background(), "x")
	x2 := b.LoadChan(context.Background(), "x")
	y := b.LoadChan(context.Background(), "y")
	z := b.LoadChan(context.Background(), "z")
	assert.True(t, wait.Recv(t, x1).Shared)
	assert.True(t, wait.Recv(t, x2).Shared)
	assert.False(t, wait.Recv(t, y).Shared)
	assert.False(t, wait.Recv(t, z).Shared)
}

// Close answers waiters with ErrClosed (in a running batch and in one
// not dispatched), cancels the running batch's ctx, waits for fn to
// return, and refuses later loads. It is idempotent.
func TestBatchClose(t *testing.T) {
	defer goleak.VerifyNone(t)
	fnReturned := make(chan struct{})
	returnNow := make(chan struct{})
	started := make(chan context.Context, 1)
	b := flight.NewBatcher(func(ctx context.Context, keys []string) (map[string]string, error) {
		started <- ctx
		<-ctx.Done()
		<-returnNow
		close(fnReturned)
		return nil, ctx.Err()
	}, flight.WithMaxBatch(1), flight.WithMaxWait(hour), flight.WithMaxConcurrentBatches(1))
	running := b.LoadChan(context.Background(), "running")
	fnCtx := wait.Recv(t, started)
	queued := b.LoadChan(context.Background(), "queued")
	wait.Until(t, "the queued batch", func() bool { return b.Stats().Pending == 1 })
	closed := make(chan error, 1)
	go func() { closed <- b.Close() }()
	wait.Recv(t, fnCtx.Done())
	assert.ErrorIs(t, wait.Recv(t, running).Err, flight.ErrClosed)
	assert.ErrorIs(t, wait.Recv(t, queued).Err, flight.ErrClosed)
	select {
	case <-closed:
		t.Fatal("Close returned before fn")
	default:
	}
	close(returnNow)
	require.NoError(t, wait.Recv(t, closed))
	select {
	case <-fnReturned:
	default:
		t.Fatal("Close returned before fn")
	}
	require.NoError(t, b.Close())
	_, err := b.Load(context.Background(), "later")
	assert.ErrorIs(t, err, flight.ErrClosed)
	assert.ErrorIs(t, wait.Recv(t, b.LoadChan(context.Background(), "later")).Err, flight.ErrClosed)
	_, err = b.LoadMany(context.Background(), []string{"later"})
	assert.Equal(t, flight.ErrClosed, err, "LoadMany after Close: ErrClosed itself, as Load")
	st := b.Stats()
	assert.Zero(t, st.Keys+st.Waiters+st.Pending+st.Running, "%+v", st)
	assert.Equal(t, uint64(1), st.Batches, "the queued batch was never dispatched")
}

// LoadChan's channel gets exactly one Result: ctx.Err() when the caller
// leaves, even if the batch answers later.
func TestBatchLoadChanLeaves(t *testing.T) {
	bl := newBlocking()
	b := newBatcher(t, bl.fn, flight.WithMaxBatch(2), flight.WithMaxWait(hour))
	ctx, cancel := context.WithCancel(context.Background())
	left := b.LoadChan(ctx, "a")
	stays := b.LoadChan(context.Background(), "a")
	other := b.LoadChan(context.Background(), "b")
	<-bl.started
	cancel()
	assert.ErrorIs(t, wait.Recv(t, left).Err, context.Canceled)
	wait.Until(t, "the leave", waiters(b, 2))
	close(bl.release)
	assert.Equal(t, flight.Result[string]{Val: "v:a", Shared: true}, wait.Recv(t, stays))
	assert.Equal(t, "v:b", wait.Recv(t, other).Val)
	wait.Until(t, "idle", batchIdle(b))
	select {
	case r := <-left:
		t.Fatalf("a second result: %+v", r)
	default:
	}
	// A ctx already done never reaches the batcher.
	assert.ErrorIs(t, wait.Recv(t, b.LoadChan(ctx, "c")).Err, context.Canceled)
	_, err := b.Load(ctx, "c")
	assert.ErrorIs(t, err, context.Canceled)
}

// Bad input, on the Batcher: keys that can never be shared get
// ErrInvalidKey and never reach the actors.
func TestBatchInvalidKey(t *testing.T) {
	called := false
	b := flight.NewBatcher(func(_ context.Context, keys []any) (map[any]int, error) {
		called = true
		return nil, nil
	}, flight.WithMaxWait(0))
	defer b.Close()
	_, err := b.Load(context.Background(), []int{1})
	assert.ErrorIs(t, err, flight.ErrInvalidKey)
	assert.ErrorIs(t, wait.Recv(t, b.LoadChan(context.Background(), math.NaN())).Err, flight.ErrInvalidKey)
	_, err = b.LoadMany(context.Background(), []any{math.NaN()})
	var ke flight.KeyErrors[any]
	require.ErrorAs(t, err, &ke)
	assert.Len(t, ke, 1)
	assert.False(t, called)
	assert.Zero(t, b.Stats().Loads)
}

// Which options apply to which constructor; one that does not apply,
// or an invalid value, panics with a clear message; a nil fn panics with
// ErrNilFunc.
func TestBatchOptions(t *testing.T) {
	fn := echo(nil)
	panicsWith := func(t *testing.T, want string, f func()) {
		t.Helper()
		defer func() {
			r := recover()
			require.NotNil(t, r, "no panic")
			msg := fmt.Sprint(r)
			assert.True(t, strings.HasPrefix(msg, "flight: "), msg)
			assert.Contains(t, msg, want)
		}()
		f()
	}
	panicsWith(t, "WithMaxWaiters applies to New, not to NewBatcher", func() { flight.NewBatcher(fn, flight.WithMaxWaiters(3)) })
	panicsWith(t, "WithMaxInFlight applies to New, not to NewBatcher", func() { flight.NewBatcher(fn, flight.WithMaxInFlight(3)) })
	panicsWith(t, "WithMaxBatch applies to NewBatcher, not to New", func() { flight.New[string, string](flight.WithMaxBatch(3)) })
	panicsWith(t, "WithMaxWait applies to NewBatcher, not to New", func() { flight.New[string, string](flight.WithMaxWait(time.Second)) })
	panicsWith(t, "WithMaxConcurrentBatches applies to NewBatcher, not to New", func() {
		flight.New[string, string](flight.WithMaxConcurrentBatches(1))
	})
	panicsWith(t, "WithMaxBatch(0)", func() { flight.NewBatcher(fn, flight.WithMaxBatch(0)) })
	panicsWith(t, "WithMaxWait(-1ns)", func() { flight.NewBatcher(fn, flight.WithMaxWait(-1)) })
	panicsWith(t, "WithMaxConcurrentBatches(-1)", func() { flight.NewBatcher(fn, flight.WithMaxConcurrentBatches(-1)) })
	panicsWith(t, "nil function", func() { flight.NewBatcher[string, string](nil) })
	func() {
		defer func() { assert.ErrorIs(t, recover().(error), flight.ErrNilFunc) }()
		flight.NewBatcher[string, string](nil)
	}()

	// Every option that applies is accepted.
	sys := actor.NewActorSystem(actor.WithLoggerFactory(func(*actor.ActorSystem) *slog.Logger { return slog.New(slog.DiscardHandler) }))
	defer sys.Shutdown()
	b := flight.NewBatcher(fn, flight.WithMaxBatch(5), flight.WithMaxWait(0), flight.WithMaxConcurrentBatches(2),
		flight.WithTimeout(time.Minute), flight.WithShards(3), flight.WithActorSystem(sys),
		flight.WithLogger(nil), flight.WithMeterProvider(newMeters(t).provider))
	v, err := b.Load(context.Background(), "k")
	require.NoError(t, err)
	assert.Equal(t, "v:k", v)
	require.NoError(t, b.Close())
}

// An idle Batcher, not closed, holds no goroutine: the WithMaxWait deadline
// is a timer and the workers exit after their last batch.
func TestBatchIdleHoldsNoGoroutine(t *testing.T) {
	b := flight.NewBatcher(echo(nil), flight.WithMaxBatch(10))
	keys := make([]string, 1000)
	for i := range keys {
		keys[i] = fmt.Sprint(i)
	}
	vals, err := b.LoadMany(context.Background(), keys)
	require.NoError(t, err)
	assert.Len(t, vals, 1000)
	wait.Until(t, "idle", batchIdle(b))
	goleak.VerifyNone(t)
	require.NoError(t, b.Close())
}
