// Command cluster starts three flight members in this process, on
// 127.0.0.1 with protoactor's automanaged provider (members find each other
// by polling each other's health endpoint; no external service), registers
// the same "user" loader on each, and sends 30 concurrent callers to every
// member for one key. The loader runs once in the whole cluster and every
// caller gets its value.
//
// Then a payment endpoint with an idempotency key: the "charge" loader is
// registered with flight.WithTTL, so the key's owner keeps the first
// answer, and a client that retries its request against another member
// (its first attempt timed out on its side, say) gets that answer instead
// of a second charge.
//
//	go run ./examples/cluster
package main

import (
	"context"
	"fmt"
	"io"
	"net"
	"os"
	"strconv"
	"sync"
	"sync/atomic"
	"time"

	"github.com/asynkron/protoactor-go/cluster/clusterproviders/automanaged"

	"github.com/actorflight/flight"
	fcluster "github.com/actorflight/flight/cluster"
)

// User is what the loader returns; it crosses members as JSON.
type User struct {
	ID   string `json:"id"`
	Name string `json:"name"`
}

func main() {
	if err := run(os.Stdout); err != nil {
		fmt.Fprintln(os.Stderr, err)
		os.Exit(1)
	}
}

func run(w io.Writer) error {
	const members, perMember = 3, 30
	ports, err := freePorts(members)
	if err != nil {
		return err
	}
	hosts := make([]string, members)
	for i, p := range ports {
		hosts[i] = "127.0.0.1:" + strconv.Itoa(p)
	}

	var execs, charges atomic.Int64
	ranOn := make(chan int, members)
	nodes := make([]*fcluster.Node, members)
	loaders := make([]*fcluster.Loader[User], members)
	payments := make([]*fcluster.Loader[Receipt], members)
	for i := range nodes {
		node, err := fcluster.NewNode(fcluster.Config{
			Name:     "example",
			Provider: automanaged.NewWithConfig(300*time.Millisecond, ports[i], hosts...),
		})
		if err != nil {
			return err
		}
		// The same loader on every member, registered before Start.
		loaders[i], err = fcluster.Register(node, "user", func(ctx context.Context, id string) (User, error) {
			execs.Add(1)
			ranOn <- i
			select { // a slow backend
			case <-time.After(300 * time.Millisecond):
			case <-ctx.Done():
				return User{}, ctx.Err()
			}
			return User{ID: id, Name: "user " + id}, nil
		}, nil)
		if err != nil {
			return err
		}
		// The payment loader: its owner keeps each request's receipt for a
		// minute, so a retry from any member gets it without a new charge.
		payments[i], err = fcluster.Register(node, "charge", func(ctx context.Context, requestID string) (Receipt, error) {
			n := charges.Add(1) // stands for the call to the payment provider
			return Receipt{RequestID: requestID, Charge: fmt.Sprintf("ch_%d", n), Member: i}, nil
		}, nil, flight.WithTTL(time.Minute))
		if err != nil {
			return err
		}
		nodes[i] = node
	}
	defer func() {
		var wg sync.WaitGroup
		for _, n := range nodes {
			wg.Go(func() { _ = n.Close() })
		}
		wg.Wait()
	}()
	errs := make(chan error, members)
	for _, n := range nodes {
		go func() { errs <- n.Start() }()
	}
	for range nodes {
		if err := <-errs; err != nil {
			return err
		}
	}
	// Wait until every member sees the three: before that, two members
	// could each believe they own the key.
	deadline := time.Now().Add(10 * time.Second)
	for _, n := range nodes {
		for len(n.Members()) != members {
			if time.Now().After(deadline) {
				return fmt.Errorf("members did not find each other: %v", n.Members())
			}
			time.Sleep(10 * time.Millisecond)
		}
	}
	fmt.Fprintf(w, "%d members up\n", members)

	var wg sync.WaitGroup
	var mu sync.Mutex
	got := map[User]int{}
	var failed []error
	for _, l := range loaders {
		for range perMember {
			wg.Go(func() {
				ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
				defer cancel()
				u, _, err := l.Do(ctx, "42")
				mu.Lock()
				defer mu.Unlock()
				if err != nil {
					failed = append(failed, err)
					return
				}
				got[u]++
			})
		}
	}
	wg.Wait()
	if len(failed) > 0 {
		return fmt.Errorf("%d callers failed, first: %w", len(failed), failed[0])
	}
	fmt.Fprintf(w, "%d callers on %d members, %d execution(s), on member %d\n",
		members*perMember, members, execs.Load(), <-ranOn)
	for u, n := range got {
		fmt.Fprintf(w, "%d callers got %+v\n", n, u)
	}

	// A client pays on member 0, then retries the same request on member 1.
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	first, _, err := payments[0].Do(ctx, "req-7")
	if err != nil {
		return err
	}
	retry, _, err := payments[1].Do(ctx, "req-7")
	if err != nil {
		return err
	}
	fmt.Fprintf(w, "payment req-7 on member 0, retried on member 1: same receipt %v, %d charge(s)\n", first == retry, charges.Load())
	return nil
}

// Receipt is what the payment loader returns for one request.
type Receipt struct {
	RequestID string `json:"request_id"`
	Charge    string `json:"charge"`
	Member    int    `json:"member"` // the member that charged
}

// freePorts returns n TCP ports free on 127.0.0.1 for the members' health
// endpoints (their remote ports are picked by the system).
func freePorts(n int) ([]int, error) {
	ports := make([]int, n)
	for i := range ports {
		l, err := net.Listen("tcp", "127.0.0.1:0")
		if err != nil {
			return nil, err
		}
		defer l.Close()
		ports[i] = l.Addr().(*net.TCPAddr).Port
	}
	return ports, nil
}
