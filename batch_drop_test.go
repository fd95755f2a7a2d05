package flight_test

import (
	"context"
	"testing"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"

	"github.com/actorflight/flight"
	"github.com/actorflight/flight/internal/wait"
)

// A Batcher dropped without Close (a loader made per request and
// forgotten) is closed by the garbage collector: its actors leave the
// actor system's registry.
func TestDroppedBatcherIsClosed(t *testing.T) {
	fn := func(_ context.Context, keys []int) (map[int]int, error) {
		m := map[int]int{}
		for _, k := range keys {
			m[k] = k
		}
		return m, nil
	}
	flight.NewBatcher(fn).Close() // the shared actor system exists
	before := settledActors(t)
	func() {
		for range 20 {
			b := flight.NewBatcher(fn)
			v, err := b.Load(context.Background(), 7)
			require.NoError(t, err)
			require.Equal(t, 7, v)
		}
		require.Greater(t, liveActors(), before)
	}()
	wait.Until(t, "the dropped batchers' actors stopped", func() bool {
		gc()
		return liveActors() <= before
	})
}

// A LoadChan pending on a Batcher nobody references any more is still
// answered with fn's values: only Close closes a Batcher in use.
func TestDroppedBatcherAnswersLoadChanInProgress(t *testing.T) {
	release, started := make(chan struct{}), make(chan struct{})
	ch := func() <-chan flight.Result[int] {
		b := flight.NewBatcher(func(ctx context.Context, keys []int) (map[int]int, error) {
			close(started)
			select {
			case <-release:
				return map[int]int{keys[0]: 42}, nil
			case <-ctx.Done():
				return nil, ctx.Err()
			}
		})
		return b.LoadChan(context.Background(), 1)
	}()
	<-started
	gc()
	close(release)
	r := wait.Recv(t, ch)
	require.NoError(t, r.Err)
	assert.Equal(t, 42, r.Val)
}
