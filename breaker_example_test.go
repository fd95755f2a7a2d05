package flight_test

import (
	"context"
	"errors"
	"fmt"
	"time"

	"github.com/actorflight/flight"
)

// An upstream that goes down: the failed flight is answered with the last
// good value (stale), the breaker opens after one failure, and while it is
// open the callers get the stale value without the upstream being called.
// Without a stale value, an open breaker refuses with ErrOpen.
func ExampleWithBreaker() {
	// The TTL is a nanosecond so that the value is stale at once; a real
	// service keeps it fresh for a while (WithTTL(time.Minute), say).
	c := flight.New[string, string](flight.WithTTL(time.Nanosecond), flight.WithStaleIfError(time.Hour),
		flight.WithBreaker(1, time.Minute))
	defer c.Close()
	ctx := context.Background()

	calls := 0
	down := false
	get := func(context.Context) (string, error) {
		calls++
		if down {
			return "", errors.New("503")
		}
		return "price: 42", nil
	}
	v, _, err := c.Do(ctx, "item:7", get)
	fmt.Println(v, err)

	down = true
	for range 3 {
		r := <-c.DoChan(ctx, "item:7", get)
		fmt.Println(r.Val, r.Err, "stale:", r.Stale)
	}
	_, _, err = c.Do(ctx, "item:8", get) // no value to fall back on
	fmt.Println(err)
	_, _, err = c.Do(ctx, "item:8", get)
	fmt.Println(err, errors.Is(err, flight.ErrOpen))

	st := c.Stats()
	fmt.Println("upstream calls:", calls, "stale answers:", st.Stale, "open:", st.Open, "rejected:", st.Rejected)
	// Output:
	// price: 42 <nil>
	// price: 42 <nil> stale: true
	// price: 42 <nil> stale: true
	// price: 42 <nil> stale: true
	// 503
	// flight: circuit open true
	// upstream calls: 3 stale answers: 3 open: 2 rejected: 1
}
