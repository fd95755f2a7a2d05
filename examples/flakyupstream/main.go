// Command flakyupstream shows retries inside the flight: an upstream that
// fails its first two calls for every key, 1,000 concurrent callers over 10
// keys, and a coordinator made with WithRetry and ExponentialBackoff (and
// WithTTL, so that a caller arriving just after its key's answer gets it).
//
// Without a coordinator each of the 1,000 callers would retry on its own
// (up to 3,000 upstream calls, a retry storm against a service that is
// already struggling). With it there is one retry loop per key: 3 upstream
// calls per key, 30 in all, and every caller gets the key's final outcome.
// The waits between attempts are timer messages to the key's actor: no
// goroutine sleeps during a backoff.
//
//	go run ./examples/flakyupstream
//
// prints something like:
//
//	1000 callers, 10 keys, upstream fails the first 2 calls of each key
//	upstream calls: 30 (3 per key; without the coordinator up to 3000)
//	outcomes: 1000 ok, 0 failed; every caller of a key got the same value: true
//	time in backoff: 10 flights × 2 waits, 57ms in all (full jitter, base 5ms, max 50ms)
//	flight.Stats{Keys:0 InFlight:0 Waiters:0 Flights:30 Joins:987 ... Hits:3 ... Retries:20}
//
// Act two (outage.go): the upstream goes down for a while. A service
// answers 150 waves of 100 requests over 10 keys with a coordinator made
// with WithTTL, WithStaleIfError and WithBreaker(3, cooldown). While the
// upstream is down every caller still gets its key's last good value
// (stale, nil error), and each key's breaker keeps the upstream's calls
// flat: 3 failed flights per key, then one trial per cooldown — 70 calls
// in 100 waves instead of 1,000. When the upstream is back, the next trial
// closes each breaker:
//
//	act two: the upstream goes down for 100 of 150 waves (10 keys × 10 callers a wave; TTL 10 units, breaker after 3 failures, cooldown 20 units)
//	up       1500 calls: 1500 fresh,    0 stale, 0 failed; upstream calls: 20; breakers open at the end: 0
//	down     10000 calls:  700 fresh, 9300 stale, 0 failed; upstream calls: 70 (one flight per key per wave would be 1000); breakers open at the end: 10
//	back up  3500 calls: 2100 fresh, 1400 stale, 0 failed; upstream calls: 20; breakers open at the end: 0
package main

import (
	"context"
	"errors"
	"fmt"
	"io"
	"os"
	"sync"
	"sync/atomic"
	"time"

	"github.com/actorflight/flight"
)

// upstream fails the first `fails` calls for each key, then answers.
type upstream struct {
	fails int
	mu    sync.Mutex
	calls map[string]int
	total atomic.Int64
}

var errUnavailable = errors.New("upstream: 503 service unavailable")

func (u *upstream) get(_ context.Context, key string) (string, error) {
	u.total.Add(1)
	u.mu.Lock()
	u.calls[key]++
	n := u.calls[key]
	u.mu.Unlock()
	if n <= u.fails {
		return "", errUnavailable
	}
	return "value of " + key, nil
}

// report is what a run measured.
type report struct {
	Upstream int64         // calls that reached the upstream
	OK, Fail int           // callers' outcomes
	Same     bool          // every caller of a key got the same value
	Backoff  time.Duration // the sum of the waits between attempts
	Waits    int           // how many waits
	Stats    flight.Stats  // read after Close
}

func run(w io.Writer, callers, keys, fails int) report {
	up := &upstream{fails: fails, calls: map[string]int{}}
	var waited atomic.Int64
	var waits atomic.Int32
	jitter := flight.ExponentialBackoff(5*time.Millisecond, 50*time.Millisecond)
	backoff := func(n int) time.Duration {
		d := jitter(n)
		waited.Add(int64(d))
		waits.Add(1)
		return d
	}
	// WithTTL keeps each key's answer for a minute, so that a caller
	// scheduled after its key's flight ended gets that answer too instead of
	// asking the upstream again.
	c := flight.New[string, string](flight.WithRetry(fails+1, backoff),
		flight.WithTimeout(10*time.Second), flight.WithTTL(time.Minute))

	values := make([]string, callers)
	errs := make([]error, callers)
	var wg sync.WaitGroup
	start := make(chan struct{})
	for i := range callers {
		wg.Add(1)
		go func() {
			defer wg.Done()
			<-start
			key := fmt.Sprint("key-", i%keys)
			values[i], _, errs[i] = c.Do(context.Background(), key, func(ctx context.Context) (string, error) {
				return up.get(ctx, key)
			})
		}()
	}
	close(start)
	wg.Wait()
	c.Close()

	r := report{Upstream: up.total.Load(), Same: true, Backoff: time.Duration(waited.Load()), Waits: int(waits.Load()), Stats: c.Stats()}
	byKey := map[string]string{}
	for i := range callers {
		if errs[i] != nil {
			r.Fail++
			continue
		}
		r.OK++
		key := fmt.Sprint("key-", i%keys)
		if v, ok := byKey[key]; ok && v != values[i] {
			r.Same = false
		}
		byKey[key] = values[i]
	}
	fmt.Fprintf(w, "%d callers, %d keys, upstream fails the first %d calls of each key\n", callers, keys, fails)
	fmt.Fprintf(w, "upstream calls: %d (%d per key; without the coordinator up to %d)\n",
		r.Upstream, r.Upstream/int64(keys), callers*(fails+1))
	fmt.Fprintf(w, "outcomes: %d ok, %d failed; every caller of a key got the same value: %v\n", r.OK, r.Fail, r.Same)
	fmt.Fprintf(w, "time in backoff: %d flights × %d waits, %v in all (full jitter, base 5ms, max 50ms)\n",
		keys, r.Waits/max(keys, 1), r.Backoff.Round(time.Millisecond))
	fmt.Fprintf(w, "flight.Stats%+v\n", r.Stats)
	return r
}

func main() {
	r := run(os.Stdout, 1000, 10, 2)
	if r.Fail > 0 || !r.Same {
		os.Exit(1)
	}
	o := outage(os.Stdout, defaultOutage)
	if o.Before.Failed+o.Down.Failed+o.After.Failed > 0 {
		os.Exit(1)
	}
}
