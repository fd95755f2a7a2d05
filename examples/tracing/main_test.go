package main

import (
	"bytes"
	"strings"
	"testing"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"
	"go.uber.org/goleak"
)

func TestMain(m *testing.M) { goleak.VerifyTestMain(m) }

// Five requests share one load; the load's flight.run span is a child of
// the first request's span, links the four others and counts five callers;
// the query nests under it.
func TestTracingExample(t *testing.T) {
	var out bytes.Buffer
	require.NoError(t, run(&out, 5))
	t.Log("\n" + out.String())
	want := `5 concurrent requests for GET /users/42; 1 load

GET /users/42 #1
  flight.run  flight.attempt=1 flight.callers=5 flight.refresh=false
    links: GET /users/42 #2, GET /users/42 #3, GET /users/42 #4, GET /users/42 #5
    db.query users
GET /users/42 #2  (linked from flight.run)
GET /users/42 #3  (linked from flight.run)
GET /users/42 #4  (linked from flight.run)
GET /users/42 #5  (linked from flight.run)
`
	assert.Equal(t, want, out.String())
}

// 200 requests: 128 links at most, every caller counted.
func TestTracingExampleManyRequests(t *testing.T) {
	var out bytes.Buffer
	require.NoError(t, run(&out, 200))
	s := out.String()
	assert.Contains(t, s, "flight.callers=200")
	assert.Contains(t, s, "; 1 load")
	links := strings.SplitN(strings.SplitN(s, "links: ", 2)[1], "\n", 2)[0]
	assert.Len(t, strings.Split(links, ", "), 128)
}

func TestTracingExampleRefusesNoRequests(t *testing.T) {
	assert.Error(t, run(&bytes.Buffer{}, 0))
}
