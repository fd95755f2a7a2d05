package main

import (
	"context"
	"fmt"
	"io"
	"sync"
	"sync/atomic"
	"time"

	"github.com/actorflight/flight"
)

// Act two: the upstream goes down for a while.
//
// A service answers waves of requests, one wave per unit of time, each wave
// perKey concurrent callers for each of keys keys. Its coordinator keeps
// every answer for ttl (WithTTL), keeps it stale for an hour beyond that
// (WithStaleIfError), and gives every key a breaker that opens after 3
// failed flights for a cooldown (WithBreaker). The upstream takes half a
// unit per call. Between the waves downFrom and upFrom it fails every call.
//
// While it is down the callers keep getting each key's last good value
// (stale, with a nil error), and each key's breaker keeps the upstream's
// call count flat: 3 failed flights per key, then one trial flight per
// cooldown, instead of one flight per key per wave. When the upstream is
// back, the next trial succeeds and the key is fresh again.

// outageConfig is the scenario, in units of time.
type outageConfig struct {
	unit             time.Duration
	waves, keys      int
	perKey           int // callers per key per wave
	downFrom, upFrom int // waves
	ttl, cooldown    int // units
}

var defaultOutage = outageConfig{unit: 2 * time.Millisecond, waves: 150, keys: 10, perKey: 10,
	downFrom: 15, upFrom: 115, ttl: 10, cooldown: 20}

// phase is what one phase of the run measured.
type phase struct {
	Upstream     int64 // calls that reached the upstream
	Calls        int   // calls to the coordinator
	Fresh, Stale int   // answers with a nil error: fresh, stale (Result.Stale)
	Failed       int   // answers with an error
	OpenAtEnd    int   // Stats.Open when the phase ended
}

type outageReport struct {
	Before, Down, After phase
	Stats               flight.Stats // read after Close
}

type outageUpstream struct {
	unit  time.Duration
	down  atomic.Bool
	calls atomic.Int64
}

func (u *outageUpstream) get(ctx context.Context, key string) (string, error) {
	u.calls.Add(1)
	select {
	case <-time.After(u.unit / 2):
	case <-ctx.Done():
		return "", ctx.Err()
	}
	if u.down.Load() {
		return "", errUnavailable
	}
	return "value of " + key, nil
}

func outage(w io.Writer, cfg outageConfig) outageReport {
	up := &outageUpstream{unit: cfg.unit}
	c := flight.New[string, string](
		flight.WithTTL(time.Duration(cfg.ttl)*cfg.unit),
		flight.WithStaleIfError(time.Hour),
		flight.WithBreaker(3, time.Duration(cfg.cooldown)*cfg.unit))

	var r outageReport
	start := time.Now()
	var cur *phase
	var lastUp int64
	endPhase := func() {
		cur.Upstream = up.calls.Load() - lastUp
		cur.OpenAtEnd = c.Stats().Open
		lastUp = up.calls.Load()
	}
	for wave := range cfg.waves {
		switch wave {
		case 0:
			cur = &r.Before
		case cfg.downFrom:
			endPhase()
			up.down.Store(true)
			cur = &r.Down
		case cfg.upFrom:
			endPhase()
			up.down.Store(false)
			cur = &r.After
		}
		var mu sync.Mutex
		var wg sync.WaitGroup
		for i := range cfg.keys * cfg.perKey {
			key := fmt.Sprint("key-", i%cfg.keys)
			wg.Go(func() {
				ch := c.DoChan(context.Background(), key, func(ctx context.Context) (string, error) {
					return up.get(ctx, key)
				})
				res := <-ch
				mu.Lock()
				defer mu.Unlock()
				cur.Calls++
				switch {
				case res.Err != nil:
					cur.Failed++
				case res.Stale:
					cur.Stale++
				default:
					cur.Fresh++
				}
			})
		}
		wg.Wait()
		time.Sleep(time.Until(start.Add(time.Duration(wave+1) * cfg.unit)))
	}
	endPhase()
	c.Close()
	r.Stats = c.Stats()

	waves := func(from, to int) int { return to - from }
	fmt.Fprintf(w, "\nact two: the upstream goes down for %d of %d waves (%d keys × %d callers a wave; TTL %d units, breaker after 3 failures, cooldown %d units)\n",
		waves(cfg.downFrom, cfg.upFrom), cfg.waves, cfg.keys, cfg.perKey, cfg.ttl, cfg.cooldown)
	for _, p := range []struct {
		name   string
		p      phase
		waves  int
		expect string
	}{
		{"up", r.Before, cfg.downFrom, ""},
		{"down", r.Down, waves(cfg.downFrom, cfg.upFrom), fmt.Sprintf(" (one flight per key per wave would be %d)", cfg.keys*waves(cfg.downFrom, cfg.upFrom))},
		{"back up", r.After, waves(cfg.upFrom, cfg.waves), ""},
	} {
		fmt.Fprintf(w, "%-8s %4d calls: %4d fresh, %4d stale, %d failed; upstream calls: %d%s; breakers open at the end: %d\n",
			p.name, p.p.Calls, p.p.Fresh, p.p.Stale, p.p.Failed, p.p.Upstream, p.expect, p.p.OpenAtEnd)
	}
	fmt.Fprintf(w, "flight.Stats%+v\n", r.Stats)
	return r
}
