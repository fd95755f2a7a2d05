package cluster_test

import (
	"fmt"
	"os"
	"strconv"
	"strings"
	"testing"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"

	"github.com/actorflight/flight/cluster/internal/racecheck"
)

// memSample is one MEM event.
type memSample struct{ heapInuse, heapAlloc, sys, rss, goroutines int64 }

func (c *child) mem(t testing.TB) memSample {
	c.send(t, "MEM")
	f := strings.Fields(c.expect(t, "MEM", nil))
	require.Len(t, f, 6)
	var v [5]int64
	for i := range v {
		v[i], _ = strconv.ParseInt(f[i+1], 10, 64)
	}
	return memSample{v[0], v[1], v[2], v[3], v[4]}
}

// goroutineSlack is how far an idle member's goroutine count may be from
// the start's.
const goroutineSlack = 2

// settledMem is mem, sampled again (up to ten times, each sample after a
// GC) while the goroutine count is more than goroutineSlack from want.
// protoactor's cluster runs periodic work on goroutines of its own (gossip
// rounds, the remote's endpoint writers, request futures), so one sample
// can catch two or three of them in flight: CI once saw 43 against a
// start of 40, and 40 again in the next cycle. A leaked goroutine is in
// every sample; a goroutine of that periodic work is not.
func (c *child) settledMem(t testing.TB, want int64) memSample {
	s := c.mem(t)
	for range 10 {
		if d := s.goroutines - want; d >= -goroutineSlack && d <= goroutineSlack {
			break
		}
		t.Logf("member %d: %d goroutines against a start of %d; sampling again", c.i, s.goroutines, want)
		s = c.mem(t)
	}
	return s
}

func mib(b int64) string { return fmt.Sprintf("%.1f", float64(b)/(1<<20)) }

// Memory after load returns to a bound that does not grow per cycle: three
// member processes, five cycles of fresh keys from every member, each
// followed by idle (every grain passivated, the grain address cache
// expired) and a GC. protoactor's process registry is filled first (see
// FillRegistry): its ~9 MiB, reached after a few hundred thousand
// short-lived actors, is a fixed cost of protoactor's, and would otherwise
// show as growth over the first cycles. Before the grain address cache
// expired its entries, the live heap grew by about 0.6 MiB per cycle.
func TestMemoryAfterLoadCycles(t *testing.T) {
	if testing.Short() {
		t.Skip("starts three member processes and loads them five times")
	}
	const cycles = 5
	keys := 3000 // fresh keys per member and cycle
	if racecheck.Enabled {
		keys = 1000 // the race detector makes a call about ten times slower
	}
	children := startChildren(t, 3, "FLIGHT_IDLE=300ms", "FLIGHT_FILL_REGISTRY=400000")
	base := make([]memSample, len(children))
	for i, c := range children {
		base[i] = c.mem(t)
	}
	samples := make([][]memSample, len(children))
	for cycle := range cycles {
		for _, c := range children {
			c.send(t, fmt.Sprintf("LOAD c%d %d", cycle, keys))
		}
		for _, c := range children {
			ev := c.expect(t, "LOADED", nil)
			require.True(t, strings.HasSuffix(ev, " 0"), "every call answered: %s", ev)
		}
		for _, c := range children {
			c.send(t, "GRAINS")
		}
		for _, c := range children {
			c.expect(t, "GRAINS 0", nil)
		}
		for i, c := range children {
			samples[i] = append(samples[i], c.settledMem(t, base[i].goroutines))
		}
		if p := os.Getenv("FLIGHT_HEAP"); p != "" && cycle == 0 {
			children[0].send(t, "HEAP "+p+".1")
			children[0].expect(t, "HEAP", nil)
		}
	}
	if p := os.Getenv("FLIGHT_HEAP"); p != "" {
		children[0].send(t, "HEAP "+p)
		children[0].expect(t, "HEAP", nil)
	}
	for i := range children {
		var b strings.Builder
		fmt.Fprintf(&b, "member %d: start live/in-use heap %s/%s MiB, rss %s MiB, %d goroutines; after each cycle:", i, mib(base[i].heapAlloc), mib(base[i].heapInuse), mib(base[i].rss), base[i].goroutines)
		for _, s := range samples[i] {
			fmt.Fprintf(&b, " %s/%s/%s/%d", mib(s.heapAlloc), mib(s.heapInuse), mib(s.rss), s.goroutines)
		}
		racecheck.Logf(t, "%s", b.String())
	}
	// The bound: every cycle's idle live heap within 2 MiB of the start's,
	// and no growth from cycle to cycle beyond 1.5 MiB (GC noise); the
	// goroutines back to the start's count.
	const slack, perCycle = 2 << 20, 3 << 19
	for i := range children {
		lo, hi := samples[i][0].heapAlloc, samples[i][0].heapAlloc
		for c, s := range samples[i] {
			assert.LessOrEqual(t, s.heapAlloc, base[i].heapAlloc+slack, "member %d cycle %d: live heap %s MiB, start %s MiB", i, c+1, mib(s.heapAlloc), mib(base[i].heapAlloc))
			assert.InDelta(t, base[i].goroutines, s.goroutines, goroutineSlack, "member %d cycle %d: goroutines", i, c+1)
			lo, hi = min(lo, s.heapAlloc), max(hi, s.heapAlloc)
		}
		assert.LessOrEqual(t, hi-lo, int64(perCycle), "member %d: live heap over the cycles between %s and %s MiB", i, mib(lo), mib(hi))
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
