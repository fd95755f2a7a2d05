package main

import (
	"bytes"
	"context"
	"testing"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"
	"go.uber.org/goleak"
)

func TestMain(m *testing.M) { goleak.VerifyTestMain(m) }

func TestOneQueryPer100KeysAndALeaverFailsNobody(t *testing.T) {
	r, err := resolve()
	require.NoError(t, err)
	assert.Equal(t, int64(1000), r.Lookups)
	assert.Equal(t, int64(10), r.Queries, "one query per 100 keys")
	assert.Equal(t, int64(1000), r.Keys)
	assert.Equal(t, r.Queries, r.WithDeadline, "each query has its deadline")
	assert.Zero(t, r.Wrong)
	assert.ErrorIs(t, r.LeaverErr, context.Canceled)
	assert.Equal(t, 99, r.Others, "the leaver failed nobody")
}

// WithScope: two tenants asking for the same ids at the same time get one
// query each (100 keys), each run with its own tenant's token.
func TestTwoTenantsNeverShareAQuery(t *testing.T) {
	r := tenants()
	assert.Equal(t, int64(2), r.Queries, "one full batch per tenant")
	assert.True(t, r.RowsOfOwnTenant)
}

// WithTTL: a retained window; repeated loads within it run no query.
func TestRetainedWindow(t *testing.T) {
	r := window()
	assert.Equal(t, int64(1), r.Queries, "one query for the first round")
	assert.Equal(t, uint64(400), r.Hits, "the other four rounds are hits")
}

func TestOutput(t *testing.T) {
	var out bytes.Buffer
	require.NoError(t, run(&out))
	assert.Equal(t, `1000 author lookups from 1000 resolvers
queries: 10, keys per query: 100, every query had a deadline: true
wrong or failed lookups: 0
a caller that left early got: context canceled
the other 99 callers of its batch got their rows
two tenants, the same 100 ids each: 2 queries; every row read with its own tenant's token: true
a retained window (WithTTL): the same 100 ids loaded 5 times: 1 query, 400 hits
`, out.String())
}
