package flight_test

import (
	"context"
	"errors"
	"fmt"
	"time"

	"github.com/actorflight/flight"
)

// A request retried by its client within the TTL gets the first answer:
// the payment is made once. Negative caching keeps a "not found" for a
// shorter while.
func ExampleWithTTL() {
	c := flight.New[string, string](flight.WithTTL(10*time.Minute), flight.WithErrorTTL(time.Minute))
	defer c.Close()
	ctx := context.Background()

	payments := 0
	pay := func(context.Context) (string, error) {
		payments++
		return fmt.Sprintf("receipt #%d", payments), nil
	}
	for range 3 { // the client retries request "req-42" twice
		receipt, shared, _ := c.Do(ctx, "req-42", pay)
		fmt.Println(receipt, shared)
	}

	errNotFound := errors.New("not found")
	lookups := 0
	lookup := func(context.Context) (string, error) { lookups++; return "", errNotFound }
	for range 2 {
		_, _, err := c.Do(ctx, "user:unknown", lookup)
		fmt.Println(err)
	}
	fmt.Println("payments:", payments, "lookups:", lookups, "hits:", c.Stats().Hits)
	// Output:
	// receipt #1 false
	// receipt #1 true
	// receipt #1 true
	// not found
	// not found
	// payments: 1 lookups: 1 hits: 3
}
