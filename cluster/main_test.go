package cluster_test

import (
	"fmt"
	"os"
	"testing"

	"go.uber.org/goleak"

	"github.com/actorflight/flight/cluster/internal/racecheck"
)

func TestMain(m *testing.M) {
	if memberMain() { // a child process of TestProcesses: never returns
		return
	}
	code := m.Run()
	closeBenchClusters()
	if code == 0 {
		// Goroutines of this module must all be gone; the upstream ones
		// listed in racecheck.UpstreamGoroutines are ignored.
		if err := goleak.Find(racecheck.UpstreamGoroutines...); err != nil {
			fmt.Fprintf(os.Stderr, "goleak: Errors on successful test run: %v\n", err)
			code = 1
		}
	}
	os.Exit(code)
}
