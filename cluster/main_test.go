package cluster_test

import (
	"fmt"
	"os"
	"testing"
	"time"

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
		// listed in racecheck.UpstreamGoroutines are ignored. protoactor's
		// automanaged provider may still be in its monitor's sleep just
		// after Close (its refresh interval, 1 s, taken under a global
		// mutex, one provider after another): on a loaded machine that
		// outlasts one goleak.Find, so look again for up to 5 s before
		// calling anything left a leak.
		var err error
		for deadline := time.Now().Add(5 * time.Second); ; {
			if err = goleak.Find(racecheck.UpstreamGoroutines...); err == nil || time.Now().After(deadline) {
				break
			}
		}
		if err != nil {
			fmt.Fprintf(os.Stderr, "goleak: Errors on successful test run: %v\n", err)
			code = 1
		}
	}
	os.Exit(code)
}
