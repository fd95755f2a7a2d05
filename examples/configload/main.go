// Command configload loads an expensive configuration once for the many
// goroutines of a service that all need it at start-up, caches it, and
// reloads it on demand with Forget.
//
//	go run ./examples/configload
//
// The configuration is a JSON file that the program writes to a temporary
// directory; loading it also "validates" it against a remote service, which
// a 100 ms timer stands in for. A Store keeps the last configuration loaded
// (an atomic.Pointer) and loads it through the coordinator, so that the 16
// goroutines of a service starting up share one load. While that load runs,
// an operator edits the file and asks for a reload. Reload calls Forget
// first: the running load may have read the file before it changed, so its
// waiting callers get what it read, but the reload starts a fresh load
// instead of joining the stale one. The coordinator runs the fresh load only
// once the stale one has returned, so the stale configuration can never be
// stored after the new. A run:
//
//	start-up: 16 goroutines ask for the configuration at once
//	  load #1 read version 1 (upstream db-a:5432)
//	  16 callers wait for load #1; the operator edits the file (version 2) and asks for a reload
//	  load #2 read version 2 (upstream db-b:5432)
//	  Reload returned version 2
//	  start-up callers got versions map[1:16] (16 of them shared a load)
//	after: Get returns version 2 from the cache; 2 loads in all
//	flight.Stats: {Keys:0 InFlight:0 Waiters:0 Flights:2 Joins:15 Panics:0 Timeouts:0 Abandoned:0 Forgotten:1 Overloaded:0}
package main

import (
	"context"
	"encoding/json"
	"fmt"
	"io"
	"os"
	"path/filepath"
	"sync"
	"sync/atomic"
	"time"

	"github.com/actorflight/flight"
)

func main() {
	if _, err := run(os.Stdout, 16, 100*time.Millisecond); err != nil {
		fmt.Fprintln(os.Stderr, "configload:", err)
		os.Exit(1)
	}
}

// Config is the service's configuration.
type Config struct {
	Version  int      `json:"version"`
	Upstream string   `json:"upstream"`
	Features []string `json:"features"`
}

// Store loads the configuration file at most once at a time, and keeps the
// last configuration loaded. Its methods are safe for concurrent use.
type Store struct {
	path     string
	validate time.Duration // the stand-in for a remote validation
	onRead   func(load int64, c *Config)

	cur   atomic.Pointer[Config] // the last configuration loaded; nil before the first
	loads atomic.Int64           // loads started
	f     *flight.Coordinator[string, *Config]
}

// key is the coordinator's only key: there is one configuration.
const key = "config"

// NewStore returns a Store for the file at path; onRead, if not nil, is
// told of each file read.
func NewStore(path string, validate time.Duration, onRead func(load int64, c *Config)) *Store {
	return &Store{path: path, validate: validate, onRead: onRead, f: flight.New[string, *Config]()}
}

// Get returns the configuration, loading it if none has been loaded yet.
// Concurrent first calls share one load.
func (s *Store) Get(ctx context.Context) (*Config, error) {
	if c := s.cur.Load(); c != nil {
		return c, nil
	}
	c, _, err := s.f.Do(ctx, key, s.load)
	return c, err
}

// Reload reads the file again and returns the new configuration. Forget
// first detaches a load that may be running, since it may have read the
// file before it changed: callers already waiting for that load still get
// its result, but this call starts a new load. The coordinator runs the new
// load only once the detached one has returned, so the stale configuration
// can never be stored after the fresh one.
func (s *Store) Reload(ctx context.Context) (*Config, error) {
	s.f.Forget(key)
	c, _, err := s.f.Do(ctx, key, s.load)
	return c, err
}

// Close waits for a running load and releases the coordinator.
func (s *Store) Close() error { return s.f.Close() }

func (s *Store) load(ctx context.Context) (*Config, error) {
	n := s.loads.Add(1)
	b, err := os.ReadFile(s.path)
	if err != nil {
		return nil, err
	}
	c := new(Config)
	if err := json.Unmarshal(b, c); err != nil {
		return nil, fmt.Errorf("%s: %w", s.path, err)
	}
	if s.onRead != nil {
		s.onRead(n, c)
	}
	t := time.NewTimer(s.validate)
	defer t.Stop()
	select {
	case <-t.C:
	case <-ctx.Done():
		return nil, ctx.Err()
	}
	s.cur.Store(c)
	return c, nil
}

func write(path string, c Config) error {
	b, err := json.Marshal(c)
	if err != nil {
		return err
	}
	return os.WriteFile(path, b, 0o600)
}

// outcome is what a run observed.
type outcome struct {
	StartupVersions map[int]int // version → start-up callers that got it
	StartupShared   int         // start-up callers whose load was shared
	Reloaded, After int         // versions returned by Reload, then by Get
	Loads           int64
	Stats           flight.Stats
}

func run(w io.Writer, callers int, validate time.Duration) (outcome, error) {
	out := outcome{StartupVersions: map[int]int{}}
	dir, err := os.MkdirTemp("", "configload")
	if err != nil {
		return out, err
	}
	defer os.RemoveAll(dir)
	path := filepath.Join(dir, "app.json")
	if err := write(path, Config{Version: 1, Upstream: "db-a:5432", Features: []string{"search"}}); err != nil {
		return out, err
	}

	read := make(chan int64, 4)
	s := NewStore(path, validate, func(load int64, c *Config) {
		fmt.Fprintf(w, "  load #%d read version %d (upstream %s)\n", load, c.Version, c.Upstream)
		read <- load
	})
	defer s.Close() // on an early return; Close is idempotent
	ctx := context.Background()

	fmt.Fprintf(w, "start-up: %d goroutines ask for the configuration at once\n", callers)
	type got struct {
		c      *Config
		shared bool
		err    error
	}
	results := make(chan got, callers)
	var asked, wg sync.WaitGroup
	asked.Add(callers)
	for range callers {
		wg.Go(func() {
			// Get, spelled out to see whether the load was shared, and with
			// DoChan: it has handed the call to the coordinator when it
			// returns, so the operator's Forget below, made once every
			// caller has asked, comes after all of their calls.
			ch := s.f.DoChan(ctx, key, s.load)
			asked.Done()
			r := <-ch
			results <- got{r.Val, r.Shared, r.Err}
		})
	}
	asked.Wait()
	<-read // load #1 has read version 1 and is validating it
	fmt.Fprintf(w, "  %d callers wait for load #1; the operator edits the file (version 2) and asks for a reload\n", callers)
	if err := write(path, Config{Version: 2, Upstream: "db-b:5432", Features: []string{"search", "beta"}}); err != nil {
		return out, err
	}
	c, err := s.Reload(ctx)
	if err != nil {
		return out, err
	}
	out.Reloaded = c.Version
	fmt.Fprintf(w, "  Reload returned version %d\n", c.Version)
	wg.Wait()
	close(results)
	for r := range results {
		if r.err != nil {
			return out, r.err
		}
		out.StartupVersions[r.c.Version]++
		if r.shared {
			out.StartupShared++
		}
	}
	fmt.Fprintf(w, "  start-up callers got versions %v (%d of them shared a load)\n", out.StartupVersions, out.StartupShared)
	c, err = s.Get(ctx)
	if err != nil {
		return out, err
	}
	out.After = c.Version
	out.Loads = s.loads.Load()
	fmt.Fprintf(w, "after: Get returns version %d from the cache; %d loads in all\n", c.Version, out.Loads)
	// Close returns once every load has returned and been retired: the
	// gauges it leaves are final.
	if err := s.Close(); err != nil {
		return out, err
	}
	out.Stats = s.f.Stats()
	fmt.Fprintf(w, "flight.Stats: %+v\n", out.Stats)
	return out, nil
}
