package singleflight_test

import (
	"os"
	"testing"

	"go.uber.org/goleak"
)

// TestMain fails the package if a goroutine is left behind: the shared
// coordinator must hold none once no call is running. The crash tests run
// this binary again as a child (see crashChild).
func TestMain(m *testing.M) {
	if os.Getenv(crashEnv) != "" {
		os.Exit(m.Run()) // the child is meant to crash; leaks do not matter
	}
	goleak.VerifyTestMain(m)
}
