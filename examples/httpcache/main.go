// Command httpcache is a cache-aside HTTP service: an in-process cache
// (github.com/maypok86/otter/v2) in front of a slow upstream API, with a
// flight coordinator so that a burst of requests for a key that is not cached
// yet makes one upstream call instead of one per request (a cache stampede).
//
// It is a module of its own, so that the library's go.mod never requires
// otter or the OpenTelemetry SDK; its go.mod points at the library in this
// repository (replace github.com/actorflight/flight => ../..):
//
//	cd examples/httpcache && go run .
//
// It starts the upstream (an httptest server answering in 50 ms) and the
// service (a net/http server) on loopback, and fires bursts of 400
// concurrent requests over 8 items at the service: on a cold cache without
// the coordinator (plain cache-aside: every miss calls the upstream), then
// with it on a cold and on a warm cache. On a miss, the request loads the
// item through the coordinator, so that concurrent misses of one item make
// one upstream call; the function checks the cache again first, so a request
// that missed just before the previous load filled it does not call the
// upstream either. A run on a 2-core machine:
//
//	upstream on http://127.0.0.1:37663 (50ms per call); each burst: 400 concurrent requests over 8 items
//	cache-aside alone, cold cache: 400 requests in 245ms: upstream calls=275, cache hits=125, misses loaded alone=275, misses sharing a load=0, errors=0; latency p50=189.31ms p90=234.68ms p99=242.72ms max=242.82ms
//	cache-aside + flight, cold cache: 400 requests in 149ms: upstream calls=8, cache hits=0, misses loaded alone=0, misses sharing a load=400, errors=0; latency p50=128.97ms p90=140.97ms p99=147.27ms max=148.82ms
//	cache-aside + flight, warm cache: 400 requests in 20ms: upstream calls=0, cache hits=400, misses loaded alone=0, misses sharing a load=0, errors=0; latency p50=12.39ms p90=14.52ms p99=16.52ms max=18.32ms
//	flight.Stats: {Keys:0 InFlight:0 Waiters:0 Flights:8 Joins:392 Panics:0 Timeouts:0 Abandoned:0 Forgotten:0 Overloaded:0}
//	OpenTelemetry: flight.flights=8 flight.joins=392 flight.callers sum=400; flight.duration count=8 mean=62.6ms, buckets [0.01 0.025 0.05 0.075 0.1 0.25 0.5 1 2.5] s: [0 0 0 8 0 0 0 0 0 0]
//
// The figures vary from run to run: how many requests of the first burst
// miss depends on how fast 400 loopback connections open, so "alone" makes
// anywhere from about a hundred to 400 upstream calls, against exactly 8
// with the coordinator every time. Latencies include opening the
// connections.
//
// The coordinator reports OpenTelemetry metrics (WithMeterProvider) to an SDK
// provider with a View for the duration buckets; the last line is what a
// collection read, before Close unregistered them. The Stats line is read
// after Close, when the gauges are final.
//
// Shutting down cleanly takes, in order: http.Server.Shutdown, the client's
// CloseIdleConnections, the coordinator's Close, and for otter — whose
// expiring cache runs a clean-up goroutine until it is garbage-collected —
// StopAllGoroutines, plus an Executor that counts otter's maintenance tasks
// in a sync.WaitGroup so they can be waited for (otter's default runs each on
// a new goroutine and nobody waits for them). otter's own Cache.Get with a
// loader also deduplicates loads; the coordinator adds per-caller context
// cancellation, a deadline on the upstream call, bounds, and metrics.
package main

import (
	"context"
	"errors"
	"fmt"
	"io"
	"net"
	"net/http"
	"net/http/httptest"
	"os"
	"slices"
	"sync"
	"sync/atomic"
	"time"

	"github.com/maypok86/otter/v2"
	"go.opentelemetry.io/otel/attribute"
	"go.opentelemetry.io/otel/metric"
	"go.opentelemetry.io/otel/sdk/instrumentation"
	sdkmetric "go.opentelemetry.io/otel/sdk/metric"
	"go.opentelemetry.io/otel/sdk/metric/metricdata"

	"github.com/actorflight/flight"
)

func main() {
	if _, err := run(os.Stdout, config{
		Keys: 8, Requests: 400, Latency: 50 * time.Millisecond, TTL: time.Minute,
	}); err != nil {
		fmt.Fprintln(os.Stderr, "httpcache:", err)
		os.Exit(1)
	}
}

// config is one run's workload.
type config struct {
	Keys     int           // distinct items requested in each burst
	Requests int           // concurrent requests in each burst
	Latency  time.Duration // time the upstream takes to answer
	TTL      time.Duration // how long an item stays cached
}

// upstream is the slow API the service caches: GET /items/{id}.
type upstream struct {
	calls   atomic.Int64
	latency time.Duration
}

func (u *upstream) ServeHTTP(w http.ResponseWriter, r *http.Request) {
	u.calls.Add(1)
	t := time.NewTimer(u.latency)
	defer t.Stop()
	select {
	case <-t.C:
		fmt.Fprintf(w, "item %s, priced at %d cents", r.PathValue("id"), 100+len(r.PathValue("id")))
	case <-r.Context().Done():
	}
}

// service answers GET /items/{id} from its cache, and on a miss from the
// upstream through the coordinator, which makes concurrent misses of one id
// share one upstream call.
type service struct {
	cache    *otter.Cache[string, string]
	flights  *flight.Coordinator[string, string]
	client   *http.Client // to the upstream
	upstream string       // its base URL
	tasks    sync.WaitGroup
	dedupe   bool // misses go through flights; false: plain cache-aside

	// Requests answered from the cache, by a load of their own, by a
	// load shared with other requests.
	hits, misses, shared atomic.Int64
}

func newService(upstreamURL string, ttl time.Duration, dedupe bool, meters metric.MeterProvider) *service {
	s := &service{
		client:   &http.Client{Transport: &http.Transport{MaxIdleConnsPerHost: 64}},
		upstream: upstreamURL,
		dedupe:   dedupe,
		flights: flight.New[string, string](
			// A deadline on each upstream call, counted from the first miss:
			// every request waiting for it gets an error after 2 s, whatever
			// the upstream does.
			flight.WithTimeout(2*time.Second),
			flight.WithMeterProvider(meters),
			flight.WithMetricAttributes(attribute.String("flight.name", "items")),
		),
	}
	s.cache = otter.Must(&otter.Options[string, string]{
		MaximumSize:      10_000,
		ExpiryCalculator: otter.ExpiryWriting[string, string](ttl),
		// otter runs its maintenance on the Executor, by default one new
		// goroutine per task; counting them lets close wait for them.
		Executor: func(fn func()) { s.tasks.Go(fn) },
	})
	return s
}

func (s *service) ServeHTTP(w http.ResponseWriter, r *http.Request) {
	id := r.PathValue("id")
	if v, ok := s.cache.GetIfPresent(id); ok {
		s.hits.Add(1)
		w.Header().Set("X-Cache", "hit")
		io.WriteString(w, v)
		return
	}
	load := func(ctx context.Context) (string, error) {
		// Checked again inside the flight: a request that missed just before
		// the previous flight filled the cache must not call the upstream.
		if v, ok := s.cache.GetIfPresent(id); ok {
			return v, nil
		}
		v, err := s.fetch(ctx, id)
		if err == nil {
			s.cache.Set(id, v)
		}
		return v, err
	}
	var (
		v      string
		shared bool
		err    error
	)
	if s.dedupe {
		v, shared, err = s.flights.Do(r.Context(), id, load)
	} else {
		v, err = load(r.Context())
	}
	switch {
	case err != nil:
		http.Error(w, err.Error(), http.StatusBadGateway)
		return
	case shared:
		s.shared.Add(1)
		w.Header().Set("X-Cache", "shared")
	default:
		s.misses.Add(1)
		w.Header().Set("X-Cache", "miss")
	}
	io.WriteString(w, v)
}

func (s *service) fetch(ctx context.Context, id string) (string, error) {
	req, err := http.NewRequestWithContext(ctx, http.MethodGet, s.upstream+"/items/"+id, nil)
	if err != nil {
		return "", err
	}
	resp, err := s.client.Do(req)
	if err != nil {
		return "", err
	}
	defer resp.Body.Close()
	body, err := io.ReadAll(resp.Body)
	if err == nil && resp.StatusCode != http.StatusOK {
		err = fmt.Errorf("upstream: %s", resp.Status)
	}
	return string(body), err
}

// close waits for running flights, then stops the cache's clean-up
// goroutine and waits for its maintenance tasks, and closes the upstream
// connections.
func (s *service) close() {
	s.flights.Close()
	s.cache.StopAllGoroutines()
	s.tasks.Wait()
	s.client.CloseIdleConnections()
}

// burst is what one burst of requests measured.
type burst struct {
	Requests, Errors          int
	UpstreamCalls             int64
	Hits, Misses, Shared      int64
	P50, P90, P99, Max, Total time.Duration
}

func (b burst) String() string {
	return fmt.Sprintf("%d requests in %v: upstream calls=%d, cache hits=%d, misses loaded alone=%d, misses sharing a load=%d, errors=%d; latency p50=%v p90=%v p99=%v max=%v",
		b.Requests, b.Total.Round(time.Millisecond), b.UpstreamCalls, b.Hits, b.Misses, b.Shared, b.Errors,
		b.P50.Round(10*time.Microsecond), b.P90.Round(10*time.Microsecond), b.P99.Round(10*time.Microsecond), b.Max.Round(10*time.Microsecond))
}

// report is a whole run: a burst on a cold cache without the coordinator,
// then with it a burst on a cold cache and one on a warm cache.
type report struct {
	Alone, Cold, Warm burst
	Stats             flight.Stats // of the coordinator, after the two bursts and Close
	Metrics           metrics      // what its meter provider collected before Close
}

// metrics is what the service's OpenTelemetry reader collected.
type metrics struct {
	Flights, Joins       int64   // flight.flights, flight.joins
	Executions           uint64  // flight.duration's count
	MeanSeconds          float64 // flight.duration's sum / count
	Callers              int64   // flight.callers's sum
	DurationBounds       []float64
	DurationBucketCounts []uint64
}

// durationBounds are the buckets of flight.duration, in seconds, set with a
// View: the SDK's default ones are made for milliseconds.
var durationBounds = []float64{.01, .025, .05, .075, .1, .25, .5, 1, 2.5}

// newMeters returns an OpenTelemetry SDK provider read on demand (a real
// service would use a periodic reader and an exporter).
func newMeters() (*sdkmetric.MeterProvider, *sdkmetric.ManualReader) {
	r := sdkmetric.NewManualReader()
	p := sdkmetric.NewMeterProvider(sdkmetric.WithReader(r), sdkmetric.WithView(sdkmetric.NewView(
		sdkmetric.Instrument{Name: "flight.duration", Scope: instrumentation.Scope{Name: flight.MeterName}},
		sdkmetric.Stream{Aggregation: sdkmetric.AggregationExplicitBucketHistogram{Boundaries: durationBounds}},
	)))
	return p, r
}

func collect(r *sdkmetric.ManualReader) (metrics, error) {
	var m metrics
	var rm metricdata.ResourceMetrics
	if err := r.Collect(context.Background(), &rm); err != nil {
		return m, err
	}
	for _, sm := range rm.ScopeMetrics {
		for _, x := range sm.Metrics {
			switch d := x.Data.(type) {
			case metricdata.Sum[int64]:
				for _, dp := range d.DataPoints {
					switch x.Name {
					case "flight.flights":
						m.Flights += dp.Value
					case "flight.joins":
						m.Joins += dp.Value
					}
				}
			case metricdata.Histogram[float64]:
				for _, dp := range d.DataPoints {
					m.Executions += dp.Count
					m.MeanSeconds = dp.Sum / float64(dp.Count)
					m.DurationBounds, m.DurationBucketCounts = dp.Bounds, dp.BucketCounts
				}
			case metricdata.Histogram[int64]:
				for _, dp := range d.DataPoints {
					m.Callers += dp.Sum
				}
			}
		}
	}
	return m, nil
}

func run(w io.Writer, cfg config) (report, error) {
	var rep report
	meters, reader := newMeters()
	defer meters.Shutdown(context.Background())
	up := &upstream{latency: cfg.Latency}
	mux := http.NewServeMux()
	mux.Handle("GET /items/{id}", up)
	upSrv := httptest.NewServer(mux)
	defer upSrv.Close()
	fmt.Fprintf(w, "upstream on %s (%v per call); each burst: %d concurrent requests over %d items\n",
		upSrv.URL, cfg.Latency, cfg.Requests, cfg.Keys)

	bursts := []struct {
		name   string
		dedupe bool
		out    []*burst
	}{
		{"cache-aside alone", false, []*burst{&rep.Alone}},
		{"cache-aside + flight", true, []*burst{&rep.Cold, &rep.Warm}},
	}
	for _, x := range bursts {
		svc, err := serve(upSrv.URL, cfg.TTL, x.dedupe, meters)
		if err != nil {
			return rep, err
		}
		for i, b := range x.out {
			calls, hits, misses, shared := up.calls.Load(), svc.hits.Load(), svc.misses.Load(), svc.shared.Load()
			*b = fire(svc.http, svc.base, cfg)
			b.UpstreamCalls = up.calls.Load() - calls
			b.Hits, b.Misses, b.Shared = svc.hits.Load()-hits, svc.misses.Load()-misses, svc.shared.Load()-shared
			fmt.Fprintf(w, "%s, %s cache: %v\n", x.name, []string{"cold", "warm"}[i], b)
		}
		if !x.dedupe {
			svc.shutdown()
			continue
		}
		// The metrics first, while the coordinator still reports them
		// (Close unregisters them). Every request has been answered, so
		// every execution's histogram records are in: they are made as fn
		// returns, before its callers are answered.
		if rep.Metrics, err = collect(reader); err != nil {
			svc.shutdown()
			return rep, err
		}
		// Then the Stats, after Close: it returns once every flight has
		// been retired, so the gauges it leaves are final.
		svc.shutdown()
		rep.Stats = svc.flights.Stats()
		fmt.Fprintf(w, "flight.Stats: %+v\n", rep.Stats)
		m := rep.Metrics
		fmt.Fprintf(w, "OpenTelemetry: flight.flights=%d flight.joins=%d flight.callers sum=%d; flight.duration count=%d mean=%.1fms, buckets %v s: %v\n",
			m.Flights, m.Joins, m.Callers, m.Executions, 1000*m.MeanSeconds, m.DurationBounds, m.DurationBucketCounts)
	}
	return rep, nil
}

// running is a service listening on loopback, with a client for it.
type running struct {
	*service
	srv    *http.Server
	served chan error
	http   *http.Client
	base   string
}

func serve(upstreamURL string, ttl time.Duration, dedupe bool, meters metric.MeterProvider) (*running, error) {
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		return nil, err
	}
	svc := newService(upstreamURL, ttl, dedupe, meters)
	mux := http.NewServeMux()
	mux.Handle("GET /items/{id}", svc)
	r := &running{
		service: svc,
		srv:     &http.Server{Handler: mux, ReadHeaderTimeout: 5 * time.Second},
		served:  make(chan error, 1),
		http:    &http.Client{Transport: &http.Transport{MaxIdleConnsPerHost: 1024}, Timeout: 10 * time.Second},
		base:    "http://" + ln.Addr().String(),
	}
	go func() { r.served <- r.srv.Serve(ln) }()
	return r, nil
}

// shutdown stops the server (waiting for its handlers), closes the
// client's connections, then the service.
func (r *running) shutdown() {
	r.srv.Shutdown(context.Background())
	<-r.served
	r.http.CloseIdleConnections()
	r.service.close()
}

// fire sends cfg.Requests concurrent requests, spread over cfg.Keys ids,
// all released at once, and measures each one's latency.
func fire(client *http.Client, base string, cfg config) burst {
	lat := make([]time.Duration, cfg.Requests)
	errs := make([]error, cfg.Requests)
	start := make(chan struct{})
	var wg sync.WaitGroup
	for i := range cfg.Requests {
		wg.Go(func() {
			<-start
			t := time.Now()
			errs[i] = get(client, fmt.Sprintf("%s/items/sku-%d", base, i%cfg.Keys))
			lat[i] = time.Since(t)
		})
	}
	t := time.Now()
	close(start)
	wg.Wait()
	b := burst{Requests: cfg.Requests, Total: time.Since(t)}
	for _, err := range errs {
		if err != nil {
			b.Errors++
		}
	}
	slices.Sort(lat)
	pct := func(p float64) time.Duration { return lat[int(p*float64(len(lat)-1))] }
	b.P50, b.P90, b.P99, b.Max = pct(0.50), pct(0.90), pct(0.99), lat[len(lat)-1]
	return b
}

func get(client *http.Client, url string) error {
	resp, err := client.Get(url)
	if err != nil {
		return err
	}
	defer resp.Body.Close()
	if _, err := io.Copy(io.Discard, resp.Body); err != nil {
		return err
	}
	if resp.StatusCode != http.StatusOK {
		return errors.New(resp.Status)
	}
	return nil
}
