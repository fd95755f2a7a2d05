package cluster_test

import (
	"testing"

	"go.uber.org/goleak"

	"github.com/actorflight/flight/cluster/internal/racecheck"
)

func TestMain(m *testing.M) {
	if memberMain() { // a child process of TestProcesses: never returns
		return
	}
	goleak.VerifyTestMain(m, racecheck.UpstreamGoroutines...)
}
