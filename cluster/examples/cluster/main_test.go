package main

import (
	"bytes"
	"strings"
	"testing"

	"go.uber.org/goleak"

	"github.com/actorflight/flight/cluster/internal/racecheck"
)

func TestMain(m *testing.M) {
	goleak.VerifyTestMain(m, racecheck.UpstreamGoroutines...)
}

// The example's three members run the loader once for the 90 callers, and
// charge a payment retried on another member once.
func TestExample(t *testing.T) {
	if racecheck.Isolated(t) {
		return
	}
	var out bytes.Buffer
	if err := run(&out); err != nil {
		t.Fatal(err)
	}
	racecheck.Logf(t, "%s", strings.TrimSpace(out.String()))
	for _, want := range []string{"3 members up", "90 callers on 3 members, 1 execution(s)", "90 callers got {ID:42 Name:user 42}",
		"payment req-7 on member 0, retried on member 1: same receipt true, 1 charge(s)"} {
		if !strings.Contains(out.String(), want) {
			t.Errorf("output lacks %q:\n%s", want, out.String())
		}
	}
}
