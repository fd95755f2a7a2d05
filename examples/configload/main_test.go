package main

import (
	"bytes"
	"context"
	"os"
	"path/filepath"
	"sync"
	"testing"
	"time"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"
	"go.uber.org/goleak"
)

func TestMain(m *testing.M) { goleak.VerifyTestMain(m) }

func TestLoadOnceThenForgetToReload(t *testing.T) {
	var out bytes.Buffer
	// A longer validation than main's, for a loaded machine: load #1 must
	// still run when the last start-up caller asks.
	o, err := run(&out, 16, 300*time.Millisecond)
	t.Log("\n" + out.String())
	require.NoError(t, err)
	assert.Equal(t, map[int]int{1: 16}, o.StartupVersions, "the start-up callers share load #1, Forget or not")
	assert.Equal(t, 16, o.StartupShared)
	assert.Equal(t, 2, o.Reloaded, "the reload did not join the stale load")
	assert.Equal(t, 2, o.After, "the fresh configuration is the one kept")
	assert.Equal(t, int64(2), o.Loads)
	assert.Equal(t, uint64(2), o.Stats.Flights)
	assert.Equal(t, uint64(15), o.Stats.Joins)
	assert.Equal(t, uint64(1), o.Stats.Forgotten)
	assert.Zero(t, o.Stats.Keys+o.Stats.InFlight+o.Stats.Waiters, "gauges after Close")
}

// Get loads once for concurrent callers, then serves the cached value;
// Reload with no load running reads the file again.
func TestStoreGetAndReload(t *testing.T) {
	path := filepath.Join(t.TempDir(), "app.json")
	require.NoError(t, write(path, Config{Version: 7, Upstream: "u"}))
	s := NewStore(path, 10*time.Millisecond, nil)
	defer s.Close()
	ctx := context.Background()
	var wg sync.WaitGroup
	for range 50 {
		wg.Go(func() {
			c, err := s.Get(ctx)
			assert.NoError(t, err)
			assert.Equal(t, 7, c.Version)
		})
	}
	wg.Wait()
	assert.Equal(t, int64(1), s.loads.Load())
	c, err := s.Get(ctx)
	require.NoError(t, err)
	assert.Equal(t, 7, c.Version)
	assert.Equal(t, int64(1), s.loads.Load(), "cached")

	require.NoError(t, write(path, Config{Version: 8}))
	c, err = s.Reload(ctx)
	require.NoError(t, err)
	assert.Equal(t, 8, c.Version)
	assert.Equal(t, int64(2), s.loads.Load())
	assert.Zero(t, s.f.Stats().Forgotten, "nothing was running to forget")

	require.NoError(t, write(path, Config{Version: 9}))
	c, err = s.Get(ctx)
	require.NoError(t, err)
	assert.Equal(t, 8, c.Version, "Get does not reload by itself")

	// A broken file: the error reaches the caller, the last good
	// configuration is kept.
	require.NoError(t, writeRaw(path, "{not json"))
	_, err = s.Reload(ctx)
	assert.ErrorContains(t, err, "app.json")
	c, err = s.Get(ctx)
	require.NoError(t, err)
	assert.Equal(t, 8, c.Version)
}

func writeRaw(path, s string) error { return os.WriteFile(path, []byte(s), 0o600) }
