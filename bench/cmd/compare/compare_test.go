package main

import (
	"bytes"
	"encoding/xml"
	"math"
	"os"
	"strings"
	"testing"
	"time"
)

func parseCanned(t *testing.T) *Run {
	t.Helper()
	f, err := os.Open("testdata/bench.txt")
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	run, err := Parse(f)
	if err != nil {
		t.Fatal(err)
	}
	return run
}

func TestParse(t *testing.T) {
	run := parseCanned(t)
	if got := run.Header["cpu"]; got != "Intel(R) Xeon(R) Processor" {
		t.Errorf("cpu header = %q", got)
	}
	if run.Procs != 2 {
		t.Errorf("Procs = %d, want 2", run.Procs)
	}
	want := map[string]map[string][]float64{
		"Distinct/flight":                   {"ns/op": {2000, 2400, 9000}, "B/op": {415, 415, 415}, "allocs/op": {4, 4, 4}, "shared/op": {0, 0, 0}},
		"Stampede/callers=10000/resenje":    {"fanout-ns": {10913224}},
		"InFlight/keys=100000/xsync":        {"heap-B/key": {226.7}, "goroutines/key": {0}},
		"DistinctCtx/resenje":               {"ns/op": {2000}, "allocs/op": {7}},
		"Compat/flight":                     {"ns/op": {500}},
		"StampedeWhole/callers=10000/xsync": {"ns/op": {40000000}, "execs/stampede": {1}},
		"StampedeShare/callers=1000/flight": {"execs/stampede": {1.031}, "arrive-spread-ns": {1520070}},
	}
	for name, units := range want {
		for unit, vs := range units {
			got := run.Samples[name][unit]
			if len(got) != len(vs) {
				t.Errorf("%s %s = %v, want %v", name, unit, got, vs)
				continue
			}
			for i := range vs {
				if got[i] != vs[i] {
					t.Errorf("%s %s = %v, want %v", name, unit, got, vs)
				}
			}
		}
	}
	// Names without results (a FAIL line, a bare name) are not benchmarks.
	for name := range run.Samples {
		if strings.Contains(name, "Zipf") {
			t.Errorf("parsed a result for %q", name)
		}
	}
	if len(run.Order) != 27 || run.Order[0] != "Distinct/flight" {
		t.Errorf("Order = %v", run.Order)
	}
	if m, _ := run.Median("Distinct/flight", "ns/op"); m != 2400 {
		t.Errorf("median = %v, want 2400", m)
	}
	if m, _ := run.Median("Distinct/xsync", "ns/op"); m != 280 {
		t.Errorf("median = %v, want 280", m)
	}
	if _, ok := run.Median("Distinct/flight", "nope"); ok {
		t.Error("median of a missing unit")
	}
	if s := run.Spread("Distinct/flight", "ns/op"); math.Abs(s-7000.0/2400) > 1e-9 {
		t.Errorf("spread = %v", s)
	}
}

func TestParseRejectsMalformedPairs(t *testing.T) {
	for _, in := range []string{
		"BenchmarkX-2 10 12 ns/op 5\n",          // odd field count
		"BenchmarkX-2 10 twelve ns/op 5 B/op\n", // not a number
	} {
		if _, err := Parse(strings.NewReader(in)); err == nil {
			t.Errorf("Parse(%q): no error", in)
		}
	}
}

func TestSplitProcs(t *testing.T) {
	for in, want := range map[string]struct {
		name  string
		procs int
	}{
		"Distinct/flight-2":              {"Distinct/flight", 2},
		"Stampede/callers=1000/xsync-16": {"Stampede/callers=1000/xsync", 16},
		"Distinct/flight":                {"Distinct/flight", 0},
		"a-b/flight":                     {"a-b/flight", 0},
	} {
		name, procs := splitProcs(in)
		if name != want.name || procs != want.procs {
			t.Errorf("splitProcs(%q) = %q, %d", in, name, procs)
		}
	}
}

func outcome(t *testing.T, outs []Outcome, workload, unit string) Outcome {
	t.Helper()
	for _, o := range outs {
		if o.Workload == workload && o.Unit == unit {
			return o
		}
	}
	t.Fatalf("no row %s %s", workload, unit)
	return Outcome{}
}

func TestEvaluate(t *testing.T) {
	outs := Evaluate(parseCanned(t))
	// 2400 / 280 = 8.6× x/sync and 1.9× resenje: fails both bounds.
	d := outcome(t, outs, "Distinct", "ns/op")
	if !d.Checked || d.Pass || math.Abs(d.RatioX-2400.0/280) > 1e-9 || math.Abs(d.RatioR-2400.0/1267) > 1e-9 {
		t.Errorf("Distinct: %+v", d)
	}
	// 600,000 ≤ 750,000: passes ≤ 1× x/sync.
	if s := outcome(t, outs, "Stampede/callers=1000", "fanout-ns"); !s.Checked || !s.Pass {
		t.Errorf("Stampede 1000: %+v", s)
	}
	// 11.2 ms > 9.6 ms: fails.
	if s := outcome(t, outs, "Stampede/callers=10000", "fanout-ns"); !s.Checked || s.Pass {
		t.Errorf("Stampede 10000: %+v", s)
	}
	// 300 / 226.7 = 1.32 ≤ 1.5: passes; 1 goroutine per key ≤ 1: passes.
	if h := outcome(t, outs, "InFlight/keys=100000", "heap-B/key"); !h.Checked || !h.Pass {
		t.Errorf("heap: %+v", h)
	}
	if g := outcome(t, outs, "InFlight/keys=100000", "goroutines/key"); !g.Checked || !g.Pass || !math.IsNaN(g.RatioX) {
		t.Errorf("goroutines: %+v", g)
	}
	// One goroutine left on an idle coordinator: fails the target 0.
	if i := outcome(t, outs, "Idle", "idle-goroutines"); !i.Checked || i.Pass {
		t.Errorf("idle goroutines: %+v", i)
	}
	if i := outcome(t, outs, "Idle", "live-keys"); !i.Checked || !i.Pass {
		t.Errorf("live keys: %+v", i)
	}
	// Cancellable ctx: 1500 / 300 = 5× x/sync fails ≤ 3×, though 0.75×
	// resenje meets ≤ 0.8×: one bound missed is a FAIL.
	if d := outcome(t, outs, "DistinctCtx", "ns/op"); !d.Checked || d.Pass || math.Abs(d.RatioX-5) > 1e-9 || math.Abs(d.RatioR-0.75) > 1e-9 {
		t.Errorf("DistinctCtx: %+v", d)
	}
	// compat: 500 / 300 ≤ 2× x/sync; no resenje, which the target does not need.
	if c := outcome(t, outs, "Compat", "ns/op"); !c.Checked || !c.Pass || !math.IsNaN(c.RatioR) || c.Has["resenje"] {
		t.Errorf("Compat: %+v", c)
	}
	// Whole stampede: 1,000 is information; 50 ms / 40 ms = 1.25 > 1.1 fails.
	if w := outcome(t, outs, "StampedeWhole/callers=1000", "ns/op"); w.Checked || w.Target() != "" {
		t.Errorf("whole 1000: %+v", w)
	}
	if w := outcome(t, outs, "StampedeWhole/callers=10000", "ns/op"); !w.Checked || w.Pass || math.Abs(w.RatioX-1.25) > 1e-9 {
		t.Errorf("whole 10000: %+v", w)
	}
	// Executions per stampede: 1.031 > 1 (+1%) fails; 1.004 would pass.
	if e := outcome(t, outs, "StampedeShare/callers=1000", "execs/stampede"); !e.Checked || e.Pass {
		t.Errorf("execs/stampede: %+v", e)
	}
	if e := Evaluate(&Run{Samples: map[string]map[string][]float64{
		"StampedeShare/callers=1000/flight": {"execs/stampede": {1.004, 1, 1.2}},
	}}); len(e) != 1 || !e[0].Checked || !e[0].Pass {
		t.Errorf("execs/stampede median 1.004: %+v", e)
	}
	// Information rows are never checked; rows with no data (Zipf) are absent.
	if a := outcome(t, outs, "Distinct", "allocs/op"); a.Checked {
		t.Errorf("allocs: %+v", a)
	}
	for _, o := range outs {
		if o.Workload == "Zipf" {
			t.Errorf("row without data: %+v", o)
		}
	}
}

func TestWriteMarkdown(t *testing.T) {
	outs := Evaluate(parseCanned(t))
	m := Machine{Date: time.Date(2026, 11, 27, 10, 0, 0, 0, time.UTC), GoVersion: "go1.26.8", GOOS: "linux",
		GOARCH: "amd64", Procs: 2, CPU: "Test CPU", CPUs: 2, Commit: "abc1234", Count: 3, Benchtime: "1s"}
	var b bytes.Buffer
	if err := WriteMarkdown(&b, outs, m); err != nil {
		t.Fatal(err)
	}
	out := b.String()
	for _, want := range []string{
		"Machine: go1.26.8, linux/amd64, GOMAXPROCS=2, CPU: Test CPU (2 logical CPUs); 2026-11-27 10:00 UTC; commit abc1234; medians of -count 3, -benchtime 1s.",
		"| distinct keys, parallel | ns/op | 2.40 µs | 280 ns | 1.27 µs | 8.57× | 1.89× | ≤ 2× x/sync, ≤ 1× resenje | **FAIL** |",
		"| stampede, 1,000 callers | fanout-ns | 600 µs | 750 µs | 688 µs | 0.800× | 0.872× | ≤ 1× x/sync | PASS |",
		"| 100k keys in flight | goroutines/key | 1.00 | 0 | — | — | — | ≤ 1 | PASS |",
		"| idle after load | idle-goroutines | 1.00 | 0 | — | — | — | 0 | **FAIL** |",
		"| distinct keys, parallel | allocs/op | 4.00 | 1.00 | 6.00 | 4.00× | 0.667× |  | (info) |",
		"| distinct keys, parallel, cancellable ctx | ns/op | 1.50 µs | 300 ns | 2.00 µs | 5.00× | 0.750× | ≤ 3× x/sync, ≤ 0.8× resenje | **FAIL** |",
		"| compat/singleflight Do, distinct keys | ns/op | 500 ns | 300 ns | — | 1.67× | — | ≤ 2× x/sync | PASS |",
		"| stampede, 1,000 callers, whole | ns/op | 5.00 ms | 3.00 ms | 3.50 ms | 1.67× | 1.43× |  | (info) |",
		"| stampede, 10,000 callers, whole | ns/op | 50.0 ms | 40.0 ms | 45.0 ms | 1.25× | 1.11× | ≤ 1.1× x/sync | **FAIL** |",
		"| stampede, 1,000 callers released together, fn ≥ 2 ms | execs/stampede | 1.03 | 1.00 | 1.00 | 1.03× | 1.03× | ≤ 1 | **FAIL** |",
		"| stampede, 1,000 callers released together, fn ≥ 2 ms | arrive-spread-ns | 1.52 ms | 583 µs | 858 µs | 2.61× | 1.77× |  | (info) |",
		"| stampede, 1,000 callers, whole | execs/stampede | 1.50 | 1.00 | 1.00 | 1.50× | 1.50× |  | (info) |",
		"5 of 11 targets met.",
		"Distinct ns/op flight ±146%",
	} {
		if !strings.Contains(out, want) {
			t.Errorf("output lacks %q:\n%s", want, out)
		}
	}
}

// The chart is well-formed XML with a bar per implementation and value.
func TestWriteSVG(t *testing.T) {
	outs := Evaluate(parseCanned(t))
	var b bytes.Buffer
	if err := WriteSVG(&b, outs, Machine{Date: time.Unix(0, 0), GoVersion: "go1.26.8", Procs: 2, CPU: "Test <CPU> & co"}); err != nil {
		t.Fatal(err)
	}
	dec := xml.NewDecoder(bytes.NewReader(b.Bytes()))
	rects := 0
	for {
		tok, err := dec.Token()
		if err != nil {
			if err.Error() == "EOF" {
				break
			}
			t.Fatalf("invalid XML: %v\n%s", err, b.String())
		}
		if se, ok := tok.(xml.StartElement); ok && se.Name.Local == "rect" {
			rects++
		}
	}
	// background + 3 legend swatches + bars: Distinct 3, DistinctCtx 3,
	// Compat 2 (no resenje), Stampede 3 + 3, StampedeWhole at 10,000 3,
	// heap 2 (no resenje).
	if want := 1 + 3 + 3 + 3 + 2 + 3 + 3 + 3 + 2; rects != want {
		t.Errorf("%d rects, want %d", rects, want)
	}
	for _, want := range []string{"Test &lt;CPU&gt; &amp; co", "flight 2.40 µs (8.57×)", "idle after load, idle-goroutines: flight 1.00, x/sync 0; target 0: FAIL",
		"stampede, 1,000 callers released together, fn ≥ 2 ms, execs/stampede: flight 1.03, x/sync 1.00, resenje 1.00; target ≤ 1: FAIL"} {
		if !strings.Contains(b.String(), want) {
			t.Errorf("SVG lacks %q", want)
		}
	}
}

func TestFormatValue(t *testing.T) {
	for _, c := range []struct {
		v    float64
		unit string
		want string
	}{
		{2381, "ns/op", "2.38 µs"},
		{287.5, "ns/op", "288 ns"},
		{11177659, "fanout-ns", "11.2 ms"},
		{3.8e9, "ns/op", "3.80 s"},
		{9569, "settle-us", "9.57 ms"},
		{0.8832, "execs/call", "0.883"},
		{1052, "heap-B/key", "1052"},
		{0, "live-keys", "0"},
		{1.031, "execs/stampede", "1.03"},
		{1520070, "arrive-spread-ns", "1.52 ms"},
	} {
		if got := FormatValue(c.v, c.unit); got != c.want {
			t.Errorf("FormatValue(%v, %q) = %q, want %q", c.v, c.unit, got, c.want)
		}
	}
}

func TestCPUInfo(t *testing.T) {
	p := t.TempDir() + "/cpuinfo"
	data := "processor\t: 0\nmodel name\t: Some CPU @ 2.0GHz\n\nprocessor\t: 1\nmodel name\t: Some CPU @ 2.0GHz\n"
	if err := os.WriteFile(p, []byte(data), 0o644); err != nil {
		t.Fatal(err)
	}
	if model, n := cpuInfo(p); model != "Some CPU @ 2.0GHz" || n != 2 {
		t.Errorf("cpuInfo = %q, %d", model, n)
	}
}

// A run's description survives the raw output: Preamble, then Parse and
// MachineFromRun give it back.
func TestPreambleRoundTrip(t *testing.T) {
	m := Machine{Date: time.Date(2026, 11, 27, 11, 0, 0, 0, time.UTC), GoVersion: "go1.26.8", CPU: "Some CPU @ 2.0GHz",
		CPUs: 2, Commit: "abc1234 + uncommitted changes", Count: 5, Benchtime: "1s"}
	canned, err := os.ReadFile("testdata/bench.txt")
	if err != nil {
		t.Fatal(err)
	}
	run, err := Parse(strings.NewReader(m.Preamble() + string(canned)))
	if err != nil {
		t.Fatal(err)
	}
	got := MachineFromRun(run)
	want := m
	want.GOOS, want.GOARCH, want.Procs = "linux", "amd64", 2
	if got != want {
		t.Errorf("MachineFromRun = %+v\nwant %+v", got, want)
	}
}

// Plain go test output says nothing of the commit or date; the rounds are
// counted from the samples.
func TestMachineFromPlainOutput(t *testing.T) {
	m := MachineFromRun(parseCanned(t))
	if m.Commit != "" || !m.Date.IsZero() || m.Count != 3 || m.CPU != "Intel(R) Xeon(R) Processor" || m.Procs != 2 {
		t.Errorf("MachineFromRun = %+v", m)
	}
	if s := m.String(); !strings.HasPrefix(s, "Go version unknown, linux/amd64, GOMAXPROCS=2") || strings.Contains(s, "commit") {
		t.Errorf("String() = %q", s)
	}
}
