// Command tracing shows what WithTracerProvider adds to a trace: five HTTP
// requests for one user arrive together, one load of the user serves them
// all, and the trace says so. The load runs under a flight.run span, a
// child of the first request's span (so the load's own span nests under
// it), and linked to the spans of the four requests that waited for it.
//
//	go run ./examples/tracing
//	go run ./examples/tracing -requests 20
//
// The spans go to an in-memory exporter of the OpenTelemetry SDK, which the
// program prints once the requests are answered. A run:
//
//	5 concurrent requests for GET /users/42; 1 load
//
//	GET /users/42 #1
//	  flight.run  flight.attempt=1 flight.callers=5 flight.refresh=false
//	    links: GET /users/42 #2, GET /users/42 #3, GET /users/42 #4, GET /users/42 #5
//	    db.query users
//	GET /users/42 #2  (linked from flight.run)
//	...
//
// A trace viewer shows the same: the first request's trace holds the load,
// and each other request's span is linked from it, so a slow request that
// only waited points at the execution it waited for. The requests wait for
// one another with the coordinator's own counter (Stats().Joins), not with
// sleeps, so every run shares one load.
package main

import (
	"context"
	"errors"
	"flag"
	"fmt"
	"io"
	"net"
	"net/http"
	"os"
	"slices"
	"strings"
	"sync"
	"time"

	"go.opentelemetry.io/otel/attribute"
	sdktrace "go.opentelemetry.io/otel/sdk/trace"
	"go.opentelemetry.io/otel/sdk/trace/tracetest"
	"go.opentelemetry.io/otel/trace"

	"github.com/actorflight/flight"
	"github.com/actorflight/flight/internal/wait"
)

func main() {
	requests := flag.Int("requests", 5, "concurrent requests for one user")
	flag.Parse()
	if err := run(os.Stdout, *requests); err != nil {
		fmt.Fprintln(os.Stderr, err)
		os.Exit(1)
	}
}

// service is an HTTP handler that loads users through a Coordinator.
type service struct {
	users  *flight.Coordinator[string, string]
	tracer trace.Tracer
	// ready is closed when the load may return: once every request has
	// joined it (see run).
	ready chan struct{}
	loads int
	mu    sync.Mutex // protects loads
}

func (s *service) ServeHTTP(w http.ResponseWriter, r *http.Request) {
	// A server span per request, as an HTTP middleware would start one
	// (here by hand, to keep the example's dependencies to the SDK).
	ctx, span := s.tracer.Start(r.Context(), "GET /users/42 #"+r.Header.Get("X-Request"),
		trace.WithSpanKind(trace.SpanKindServer))
	defer span.End()
	id := strings.TrimPrefix(r.URL.Path, "/users/")
	name, _, err := s.users.Do(ctx, "user:"+id, func(ctx context.Context) (string, error) {
		return s.load(ctx, id)
	})
	if err != nil {
		http.Error(w, err.Error(), http.StatusBadGateway)
		return
	}
	fmt.Fprintln(w, name)
}

// load is the database query: its span nests under flight.run, because
// the flight's ctx carries that span.
func (s *service) load(ctx context.Context, id string) (string, error) {
	_, span := s.tracer.Start(ctx, "db.query users", trace.WithAttributes(attribute.String("user.id", id)))
	defer span.End()
	s.mu.Lock()
	s.loads++
	s.mu.Unlock()
	select {
	case <-s.ready:
		return "Ada (user " + id + ")", nil
	case <-ctx.Done():
		return "", ctx.Err()
	}
}

// run serves requests concurrent requests for one user on a loopback
// listener and prints the spans they made.
func run(out io.Writer, requests int) error {
	if requests < 1 {
		return errors.New("tracing: -requests must be at least 1")
	}
	exporter := tracetest.NewInMemoryExporter()
	tp := sdktrace.NewTracerProvider(sdktrace.WithSyncer(exporter))
	defer tp.Shutdown(context.Background())
	users := flight.New[string, string](flight.WithTracerProvider(tp))
	s := &service{users: users, tracer: tp.Tracer("example/tracing"), ready: make(chan struct{})}

	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		return err
	}
	srv := &http.Server{Handler: s, ReadHeaderTimeout: 5 * time.Second}
	go srv.Serve(ln)

	client := &http.Client{Timeout: 10 * time.Second}
	url := "http://" + ln.Addr().String() + "/users/42"
	errs := make(chan error, requests)
	get := func(n int) {
		req, err := http.NewRequest(http.MethodGet, url, nil)
		if err != nil {
			errs <- err
			return
		}
		req.Header.Set("X-Request", fmt.Sprint(n))
		resp, err := client.Do(req)
		if err != nil {
			errs <- err
			return
		}
		_, _ = io.Copy(io.Discard, resp.Body)
		resp.Body.Close()
		if resp.StatusCode != http.StatusOK {
			err = fmt.Errorf("request %d: %s", n, resp.Status)
		}
		errs <- err
	}
	// The first request starts the load; the others join it while it
	// waits; the load returns once all have joined.
	go get(1)
	wait.For(10*time.Second, func() bool { return users.Stats().InFlight == 1 })
	for n := 2; n <= requests; n++ {
		go get(n)
	}
	wait.For(10*time.Second, func() bool { return users.Stats().Joins == uint64(requests-1) })
	close(s.ready)
	for range requests {
		if err := <-errs; err != nil {
			return err
		}
	}
	shutdown, cancel := context.WithTimeout(context.Background(), 5*time.Second)
	defer cancel()
	if err := srv.Shutdown(shutdown); err != nil {
		return err
	}
	if err := users.Close(); err != nil {
		return err
	}
	fmt.Fprintf(out, "%d concurrent requests for GET /users/42; %d load\n\n", requests, s.loads)
	printTree(out, exporter.GetSpans())
	return nil
}

// printTree prints the spans as trees of parents and children, with the
// links of each span by the names of the spans they point to.
func printTree(out io.Writer, spans tracetest.SpanStubs) {
	byID := map[trace.SpanID]tracetest.SpanStub{}
	children := map[trace.SpanID][]tracetest.SpanStub{}
	linkedFrom := map[trace.SpanID]string{}
	var roots []tracetest.SpanStub
	for _, s := range spans {
		byID[s.SpanContext.SpanID()] = s
	}
	for _, s := range spans {
		if p, ok := byID[s.Parent.SpanID()]; ok && s.Parent.IsValid() {
			children[p.SpanContext.SpanID()] = append(children[p.SpanContext.SpanID()], s)
		} else {
			roots = append(roots, s)
		}
		for _, l := range s.Links {
			linkedFrom[l.SpanContext.SpanID()] = s.Name
		}
	}
	byName := func(a, b tracetest.SpanStub) int { return naturally(a.Name, b.Name) }
	slices.SortFunc(roots, byName)
	var walk func(s tracetest.SpanStub, depth int)
	walk = func(s tracetest.SpanStub, depth int) {
		indent := strings.Repeat("  ", depth)
		line := indent + s.Name
		if attrs := attrString(s.Attributes); attrs != "" {
			line += "  " + attrs
		}
		if from, ok := linkedFrom[s.SpanContext.SpanID()]; ok {
			line += "  (linked from " + from + ")"
		}
		fmt.Fprintln(out, line)
		if len(s.Links) > 0 {
			var names []string
			for _, l := range s.Links {
				names = append(names, byID[l.SpanContext.SpanID()].Name)
			}
			slices.SortFunc(names, naturally)
			fmt.Fprintf(out, "%s  links: %s\n", indent, strings.Join(names, ", "))
		}
		kids := children[s.SpanContext.SpanID()]
		slices.SortFunc(kids, byName)
		for _, c := range kids {
			walk(c, depth+1)
		}
	}
	for _, r := range roots {
		walk(r, 0)
	}
}

// attrString prints the flight.* attributes of a span, sorted.
func attrString(kvs []attribute.KeyValue) string {
	var parts []string
	for _, kv := range kvs {
		if strings.HasPrefix(string(kv.Key), "flight.") {
			parts = append(parts, fmt.Sprintf("%s=%s", kv.Key, kv.Value.Emit()))
		}
	}
	slices.Sort(parts)
	return strings.Join(parts, " ")
}

// naturally orders "x #2" before "x #10".
func naturally(a, b string) int {
	if len(a) != len(b) {
		return len(a) - len(b)
	}
	return strings.Compare(a, b)
}
