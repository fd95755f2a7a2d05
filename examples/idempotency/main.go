// Command idempotency shows retained results as a dedup window: a
// payment-style HTTP endpoint where a client that retries a request with the
// same request id within the window gets the first answer, and the upstream
// (the card processor) is charged once.
//
// The handler keys a Coordinator made with WithTTL by the request's
// Idempotency-Key header. A retry that arrives while the first attempt is
// still being processed joins its flight; one that arrives later, within the
// TTL, gets the retained receipt at once, without reaching the upstream.
// Declined payments are fn's own errors and are kept for a shorter while
// (WithErrorTTL), so that a client hammering a declined card does not reach
// the processor each time either.
//
//	go run ./examples/idempotency
//
// prints something like:
//
//	100 payments, each sent 3 times (twice at once, once after the answer): 300 requests
//	upstream charges: 100 (declines: 10); answers: 270 receipts, 30 declined
//	every retry got the first answer: true
//	flight.Stats{Keys:0 InFlight:0 Waiters:0 Flights:100 Joins:97 ... Entries:0 Hits:103 ...}
//
// (Entries is 0 because the Stats are read after Close, which drops the
// retained results.)
package main

import (
	"context"
	"errors"
	"fmt"
	"io"
	"net/http"
	"net/http/httptest"
	"os"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	"github.com/actorflight/flight"
)

// processor is the upstream that must be charged at most once per request.
type processor struct {
	charges atomic.Int64
	declies atomic.Int64
	// A slow upstream: no charge completes before `want` charges have
	// started, so that the retries sent at once find their payment in
	// flight.
	want int64
	gate chan struct{}
}

var errDeclined = errors.New("card declined")

func (p *processor) charge(ctx context.Context, id string) (string, error) {
	n := p.charges.Add(1)
	if n == p.want {
		close(p.gate)
	}
	select {
	case <-p.gate:
	case <-ctx.Done():
		return "", ctx.Err()
	}
	if strings.HasSuffix(id, "0") { // every tenth payment is declined
		p.declies.Add(1)
		return "", errDeclined
	}
	return fmt.Sprintf("receipt-%d for %s", n, id), nil
}

// handler answers POST /pay: one charge per Idempotency-Key within the
// window.
func handler(c *flight.Coordinator[string, string], p *processor) http.Handler {
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		id := r.Header.Get("Idempotency-Key")
		if id == "" {
			http.Error(w, "missing Idempotency-Key", http.StatusBadRequest)
			return
		}
		receipt, _, err := c.Do(r.Context(), id, func(ctx context.Context) (string, error) {
			return p.charge(ctx, id)
		})
		switch {
		case errors.Is(err, errDeclined):
			http.Error(w, err.Error(), http.StatusPaymentRequired)
		case err != nil:
			http.Error(w, err.Error(), http.StatusServiceUnavailable)
		default:
			io.WriteString(w, receipt)
		}
	})
}

type report struct {
	Requests, Receipts, Declined int
	Charges, Declines            int64
	Same                         bool
	Stats                        flight.Stats
}

func run(w io.Writer, payments int) report {
	c := flight.New[string, string](flight.WithTTL(10*time.Minute), flight.WithErrorTTL(time.Minute))
	p := &processor{want: int64(payments), gate: make(chan struct{})}
	srv := httptest.NewServer(handler(c, p))
	defer srv.Close()
	client := srv.Client()

	send := func(id string) (int, string) {
		req, _ := http.NewRequest(http.MethodPost, srv.URL+"/pay", nil)
		req.Header.Set("Idempotency-Key", id)
		resp, err := client.Do(req)
		if err != nil {
			return 0, err.Error()
		}
		defer resp.Body.Close()
		body, _ := io.ReadAll(resp.Body)
		return resp.StatusCode, string(body)
	}

	type answer struct {
		code int
		body string
	}
	answers := make([][3]answer, payments)
	var all sync.WaitGroup
	for i := range payments {
		id := fmt.Sprintf("pay-%03d", i)
		// The first attempt and a retry sent at once (the client timed out
		// on its side and tried again): the retry joins the payment's
		// flight, or, if it comes after the answer, gets it from the window.
		for a := range 2 {
			all.Add(1)
			go func() {
				defer all.Done()
				code, body := send(id)
				answers[i][a] = answer{code, body}
			}()
		}
	}
	all.Wait()
	// A late retry of every payment, after its answer: served from the
	// window.
	for i := range payments {
		code, body := send(fmt.Sprintf("pay-%03d", i))
		answers[i][2] = answer{code, body}
	}
	c.Close()

	r := report{Requests: 3 * payments, Charges: p.charges.Load(), Declines: p.declies.Load(), Same: true, Stats: c.Stats()}
	for _, a := range answers {
		for _, x := range a {
			if x.code == http.StatusOK {
				r.Receipts++
			} else {
				r.Declined++
			}
			if x != a[0] {
				r.Same = false
			}
		}
	}
	fmt.Fprintf(w, "%d payments, each sent 3 times (twice at once, once after the answer): %d requests\n", payments, r.Requests)
	fmt.Fprintf(w, "upstream charges: %d (declines: %d); answers: %d receipts, %d declined\n", r.Charges, r.Declines, r.Receipts, r.Declined)
	fmt.Fprintf(w, "every retry got the first answer: %v\n", r.Same)
	fmt.Fprintf(w, "flight.Stats%+v\n", r.Stats)
	return r
}

func main() {
	r := run(os.Stdout, 100)
	if !r.Same || r.Charges != 100 {
		os.Exit(1)
	}
}
