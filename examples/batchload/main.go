// Command batchload shows a Batcher under a GraphQL-style resolver: 1,000
// posts each resolve their author with one row lookup (the N+1 pattern),
// and the Batcher turns those lookups into one query per 100 keys against a
// fake database that counts its queries and gets a deadline per query
// (WithTimeout). Then one caller of a running query leaves early: it gets
// its ctx's error at once, and the query goes on for the 99 other callers
// of its batch. Last, one long-lived Batcher serves two tenants with
// WithScope: each query runs with one tenant's credentials and holds only
// that tenant's keys, even for the same ids asked at the same time. And a
// Batcher with WithTTL keeps a retained window: the same 100 ids loaded five
// times make one query; the other 400 loads are hits, answered at once.
//
//	go run ./examples/batchload
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

func main() {
	if err := run(os.Stdout); err != nil {
		fmt.Fprintln(os.Stderr, "batchload:", err)
		os.Exit(1)
	}
}

// Row is one author row.
type Row struct {
	ID   int
	Name string
}

// DB is a fake database: one query loads many rows by id, and it counts
// queries and the keys they asked for.
type DB struct {
	Queries      atomic.Int64
	Keys         atomic.Int64
	WithDeadline atomic.Int64 // queries whose ctx had a deadline
	// hold, when set, is called inside each query with its ids (the
	// example uses it to hold one query open while a caller leaves).
	hold func(ctx context.Context, ids []int) error
}

// Rows is `SELECT id, name FROM authors WHERE id IN (…)`.
func (db *DB) Rows(ctx context.Context, ids []int) (map[int]Row, error) {
	db.Queries.Add(1)
	db.Keys.Add(int64(len(ids)))
	if _, ok := ctx.Deadline(); ok {
		db.WithDeadline.Add(1)
	}
	if db.hold != nil {
		if err := db.hold(ctx, ids); err != nil {
			return nil, err
		}
	}
	rows := make(map[int]Row, len(ids))
	for _, id := range ids {
		rows[id] = Row{ID: id, Name: fmt.Sprintf("author-%d", id)}
	}
	return rows, nil
}

// Report is what run found, for the test.
type Report struct {
	Lookups, Queries, Keys, WithDeadline int64
	Wrong                                int   // lookups that got a wrong row or an error
	LeaverErr                            error // what the caller that left got
	Others                               int   // callers of the leaver's batch that got their row
}

func run(w io.Writer) error {
	r, err := resolve()
	if err != nil {
		return err
	}
	tr := tenants()
	fmt.Fprintf(w, "%d author lookups from %d resolvers\n", r.Lookups, r.Lookups)
	fmt.Fprintf(w, "queries: %d, keys per query: %d, every query had a deadline: %v\n",
		r.Queries, r.Keys/r.Queries, r.WithDeadline == r.Queries)
	fmt.Fprintf(w, "wrong or failed lookups: %d\n", r.Wrong)
	fmt.Fprintf(w, "a caller that left early got: %v\n", r.LeaverErr)
	fmt.Fprintf(w, "the other %d callers of its batch got their rows\n", r.Others)
	fmt.Fprintf(w, "two tenants, the same 100 ids each: %d queries; every row read with its own tenant's token: %v\n",
		tr.Queries, tr.RowsOfOwnTenant)
	wr := window()
	fmt.Fprintf(w, "a retained window (WithTTL): the same 100 ids loaded %d times: %d query, %d hits\n",
		wr.Rounds, wr.Queries, wr.Hits)
	return nil
}

// WindowReport is what window found, for the test.
type WindowReport struct {
	Rounds  int
	Queries int64
	Hits    uint64
}

// window loads the same 100 ids several times from one Batcher with
// WithTTL: the first round makes one query, and every later load within
// the TTL is answered from the retained rows, at once, without a batch.
func window() WindowReport {
	db := &DB{}
	authors := flight.NewBatcher(db.Rows, flight.WithMaxBatch(100), flight.WithMaxWait(time.Second),
		flight.WithTTL(time.Minute))
	defer authors.Close()
	ids := make([]int, 100)
	for i := range ids {
		ids[i] = i
	}
	const rounds = 5
	for range rounds {
		if _, err := authors.LoadMany(context.Background(), ids); err != nil {
			panic(err) // the fake database never fails
		}
	}
	return WindowReport{Rounds: rounds, Queries: db.Queries.Load(), Hits: authors.Stats().Hits}
}

type tenantKey struct{}

// TenantReport is what tenants found, for the test.
type TenantReport struct {
	Queries         int64
	RowsOfOwnTenant bool // every caller got a row read with its own tenant's token
}

// tenants runs one long-lived Batcher for two tenants. The scope is the
// tenant in the request's ctx: a batch never mixes two tenants' keys, and
// its ctx carries a caller of its tenant, so the query runs with that
// tenant's token (graph-gophers/dataloader#121 is what happens without it).
func tenants() TenantReport {
	var queries atomic.Int64
	var mixed atomic.Bool
	rows := func(ctx context.Context, ids []int) (map[int]string, error) {
		queries.Add(1)
		token, _ := ctx.Value(tenantKey{}).(string) // the query's credentials
		out := make(map[int]string, len(ids))
		for _, id := range ids {
			out[id] = fmt.Sprintf("%s/row-%d", token, id)
		}
		return out, nil
	}
	users := flight.NewBatcher(rows, flight.WithMaxBatch(100), flight.WithMaxWait(time.Second),
		flight.WithScope(func(ctx context.Context) any { return ctx.Value(tenantKey{}) }))
	defer users.Close()
	var wg sync.WaitGroup
	for _, tenant := range []string{"acme", "globex"} {
		ctx := context.WithValue(context.Background(), tenantKey{}, tenant)
		for id := range 100 {
			wg.Go(func() {
				row, err := users.Load(ctx, id)
				if err != nil || row != fmt.Sprintf("%s/row-%d", tenant, id) {
					mixed.Store(true)
				}
			})
		}
	}
	wg.Wait()
	return TenantReport{Queries: queries.Load(), RowsOfOwnTenant: !mixed.Load()}
}

func resolve() (Report, error) {
	db := &DB{}
	// One query per 100 keys. WithMaxWait is long because every batch here
	// fills up long before it (a full batch goes at once): the wait only
	// bounds how long a lone key would wait. WithTimeout is each query's
	// deadline.
	users := flight.NewBatcher(db.Rows, flight.WithMaxBatch(100), flight.WithMaxWait(time.Second),
		flight.WithTimeout(5*time.Second))
	defer users.Close()

	// 1. 1,000 resolvers, each on its own goroutine, each asking for its
	//    post's author: the N+1 pattern.
	const posts = 1000
	var wrong atomic.Int64
	var wg sync.WaitGroup
	for post := range posts {
		wg.Go(func() {
			author := post // each post has its own author
			row, err := users.Load(context.Background(), author)
			if err != nil || row.ID != author {
				wrong.Add(1)
			}
		})
	}
	wg.Wait()
	r := Report{Lookups: posts, Queries: db.Queries.Load(), Keys: db.Keys.Load(),
		WithDeadline: db.WithDeadline.Load(), Wrong: int(wrong.Load())}

	// 2. 100 more lookups fill one batch; the query holds until the caller
	//    of author 5000 has left.
	started, left := make(chan struct{}), make(chan struct{})
	db.hold = func(ctx context.Context, ids []int) error {
		close(started)
		select {
		case <-left:
			return nil
		case <-ctx.Done():
			return ctx.Err()
		}
	}
	ctx, cancel := context.WithCancel(context.Background())
	leaver := make(chan error, 1)
	go func() {
		_, err := users.Load(ctx, 5000)
		leaver <- err
	}()
	var others atomic.Int64
	for id := 5001; id < 5100; id++ {
		wg.Go(func() {
			if row, err := users.Load(context.Background(), id); err == nil && row.ID == id {
				others.Add(1)
			}
		})
	}
	<-started
	cancel()
	r.LeaverErr = <-leaver
	close(left)
	wg.Wait()
	r.Others = int(others.Load())
	if !errors.Is(r.LeaverErr, context.Canceled) {
		return r, fmt.Errorf("the caller that left got %v", r.LeaverErr)
	}
	return r, nil
}
