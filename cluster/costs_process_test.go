package cluster_test

import (
	"fmt"
	"os"
	"strconv"
	"strings"
	"testing"

	"github.com/stretchr/testify/require"

	"github.com/actorflight/flight/cluster/internal/racecheck"
)

// The costs of a call between member processes on loopback (README.md,
// "What it costs"): a member calls keys owned by another one, one call at
// a time, no-op loader: a hot key (its grain active on the owner) and
// fresh keys (each one an activation); and a hot key called on its own
// owner (no network hop). Three members, automanaged
// provider; FLIGHT_COST_CALLS sets the calls per figure (default 200;
// under -race 50, and the figures mean little).
func TestProcessCosts(t *testing.T) {
	if testing.Short() {
		t.Skip("starts three member processes")
	}
	calls := envInt(t, "FLIGHT_COST_CALLS", 200)
	if racecheck.Enabled {
		calls = min(calls, 50)
	}
	children := startChildren(t, 3)
	for _, mode := range []string{"hot", "fresh", "local"} {
		children[0].send(t, fmt.Sprintf("BENCH %s %d", mode, calls))
		ev := children[0].expect(t, "BENCH "+mode, nil)
		require.NotContains(t, ev, "ERR", ev)
		f := strings.Fields(ev)
		require.Len(t, f, 5, ev)
		what := map[string]string{"hot": "hot key, from a non-owner", "fresh": "fresh key, from a non-owner", "local": "hot key, on its owner"}[mode]
		racecheck.Logf(t, "%s, %d calls: median %s µs, mean %s µs, p90 %s µs", what, calls, f[2], f[3], f[4])
	}
	for _, c := range children {
		c.send(t, "QUIT")
	}
	for _, c := range children {
		c.expect(t, "CLOSED", nil)
		<-c.exited
		racecheck.Check(t, fmt.Sprintf("member process %d", c.i), c.stderr.String())
	}
}

// envInt is the integer in the environment variable name, or def.
func envInt(t testing.TB, name string, def int) int {
	s := os.Getenv(name)
	if s == "" {
		return def
	}
	n, err := strconv.Atoi(s)
	require.NoError(t, err, name)
	return n
}
