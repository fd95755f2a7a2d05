package main

import (
	"fmt"
	"io"
	"math"
	"strconv"
	"strings"
	"time"
)

// Impls are the implementations in table order: the last element of each
// benchmark name, and the column titles.
var Impls = []struct{ Key, Title string }{
	{"flight", "flight"},
	{"xsync", "x/sync"},
	{"resenje", "resenje"},
}

// Row is one line of the comparison: a metric (unit) of a workload
// (benchmark name without the implementation) and its target.
type Row struct {
	Workload string // e.g. "Stampede/callers=1000"
	Unit     string // e.g. "fanout-ns"
	Label    string // what the table's first column says
	// A target is either relative (flight ≤ MaxX × x/sync, ≤ MaxR ×
	// resenje; 0 = no such bound) or absolute (flight ≤ Abs, when
	// HasAbs). A row with neither is information only.
	MaxX, MaxR float64
	Abs        float64
	HasAbs     bool
}

// Rows are the workloads of docs/performance.md with their targets, plus rows
// given for information.
var Rows = []Row{
	{Workload: "Distinct", Unit: "ns/op", Label: "distinct keys, parallel", MaxX: 2, MaxR: 1},
	{Workload: "Distinct", Unit: "allocs/op", Label: "distinct keys, parallel"},
	{Workload: "Distinct", Unit: "B/op", Label: "distinct keys, parallel"},
	{Workload: "DistinctCtx", Unit: "ns/op", Label: "distinct keys, parallel, cancellable ctx", MaxX: 3, MaxR: 0.8},
	{Workload: "DistinctCtx", Unit: "allocs/op", Label: "distinct keys, parallel, cancellable ctx"},
	{Workload: "DistinctSeq", Unit: "ns/op", Label: "distinct keys, one goroutine"},
	{Workload: "Compat", Unit: "ns/op", Label: "compat/singleflight Do, distinct keys", MaxX: 2},
	{Workload: "Compat", Unit: "allocs/op", Label: "compat/singleflight Do, distinct keys"},
	{Workload: "Stampede/callers=1000", Unit: "fanout-ns", Label: "stampede, 1,000 callers", MaxX: 1},
	{Workload: "StampedeWhole/callers=1000", Unit: "ns/op", Label: "stampede, 1,000 callers, whole"},
	{Workload: "StampedeWhole/callers=1000", Unit: "execs/stampede", Label: "stampede, 1,000 callers, whole"},
	{Workload: "Stampede/callers=10000", Unit: "fanout-ns", Label: "stampede, 10,000 callers", MaxX: 1},
	{Workload: "StampedeWhole/callers=10000", Unit: "ns/op", Label: "stampede, 10,000 callers, whole", MaxX: 1.1},
	{Workload: "StampedeWhole/callers=10000", Unit: "execs/stampede", Label: "stampede, 10,000 callers, whole"},
	{Workload: "StampedeShare/callers=1000", Unit: "execs/stampede", Label: "stampede, 1,000 callers released together, fn ≥ 2 ms", Abs: 1, HasAbs: true},
	{Workload: "StampedeShare/callers=1000", Unit: "arrive-spread-ns", Label: "stampede, 1,000 callers released together, fn ≥ 2 ms"},
	{Workload: "Zipf", Unit: "ns/op", Label: "Zipf 10k keys, 20 µs fn, 64 goroutines", MaxX: 1.1},
	{Workload: "Zipf", Unit: "execs/call", Label: "Zipf 10k keys, 20 µs fn, 64 goroutines", MaxX: 1.1},
	{Workload: "InFlight/keys=100000", Unit: "heap-B/key", Label: "100k keys in flight", MaxX: 1.5},
	{Workload: "InFlight/keys=100000", Unit: "goroutines/key", Label: "100k keys in flight", Abs: 1, HasAbs: true},
	{Workload: "InFlight/keys=100000", Unit: "stack-B/key", Label: "100k keys in flight"},
	{Workload: "Idle", Unit: "idle-goroutines", Label: "idle after load", Abs: 0, HasAbs: true},
	{Workload: "Idle", Unit: "live-keys", Label: "idle after load", Abs: 0, HasAbs: true},
	{Workload: "Idle", Unit: "settle-us", Label: "idle after load"},
}

// Target describes the row's target in words, "" for information rows.
func (r Row) Target() string {
	var parts []string
	if r.MaxX > 0 {
		parts = append(parts, "≤ "+trimFloat(r.MaxX)+"× x/sync")
	}
	if r.MaxR > 0 {
		parts = append(parts, "≤ "+trimFloat(r.MaxR)+"× resenje")
	}
	if r.HasAbs {
		if r.Abs == 0 {
			parts = append(parts, "0")
		} else {
			parts = append(parts, "≤ "+trimFloat(r.Abs))
		}
	}
	return strings.Join(parts, ", ")
}

// Outcome is a row evaluated on a run.
type Outcome struct {
	Row
	Val     map[string]float64 // median by implementation key
	Has     map[string]bool
	Spread  map[string]float64 // (max-min)/median by implementation key
	N       int                // samples of flight's value
	RatioX  float64            // flight / x/sync (NaN if unknown)
	RatioR  float64            // flight / resenje (NaN if unknown)
	Checked bool               // the row has a target and the data to check it
	Pass    bool
}

// Evaluate computes every row's medians, ratios and verdict. A row whose
// data is missing (a filtered run) has Checked false.
func Evaluate(run *Run) []Outcome {
	var out []Outcome
	for _, row := range Rows {
		o := Outcome{Row: row, Val: map[string]float64{}, Has: map[string]bool{}, Spread: map[string]float64{},
			RatioX: math.NaN(), RatioR: math.NaN()}
		for _, im := range Impls {
			name := row.Workload + "/" + im.Key
			if v, ok := run.Median(name, row.Unit); ok {
				o.Val[im.Key], o.Has[im.Key] = v, true
				o.Spread[im.Key] = run.Spread(name, row.Unit)
			}
		}
		if !o.Has["flight"] {
			continue
		}
		o.N = run.Count(row.Workload+"/flight", row.Unit)
		f := o.Val["flight"]
		o.RatioX = ratio(f, o.Val["xsync"], o.Has["xsync"])
		o.RatioR = ratio(f, o.Val["resenje"], o.Has["resenje"])
		// Checked: the row has a target and every value the target needs.
		o.Checked = row.MaxX > 0 || row.MaxR > 0 || row.HasAbs
		o.Pass = true
		if row.MaxX > 0 {
			o.Checked = o.Checked && o.Has["xsync"]
			o.Pass = o.Pass && f <= row.MaxX*o.Val["xsync"]
		}
		if row.MaxR > 0 {
			o.Checked = o.Checked && o.Has["resenje"]
			o.Pass = o.Pass && f <= row.MaxR*o.Val["resenje"]
		}
		if row.HasAbs {
			// Per-key goroutine counts are measured, not exact integers (a
			// goroutine may still be exiting), and executions per stampede
			// are a mean over the rounds (1.01: one round in a hundred ran
			// fn twice): allow 1% of a unit.
			o.Pass = o.Pass && f <= row.Abs+0.01
		}
		out = append(out, o)
	}
	return out
}

// ratio is a/b, NaN when b is missing or 0 (a ratio to nothing means nothing).
func ratio(a, b float64, hasB bool) float64 {
	if !hasB || b == 0 {
		return math.NaN()
	}
	return a / b
}

// Machine describes where and when the benchmarks ran.
type Machine struct {
	Date      time.Time
	GoVersion string
	GOOS      string
	GOARCH    string
	Procs     int    // GOMAXPROCS of the run
	CPU       string // model name from /proc/cpuinfo
	CPUs      int    // logical CPUs in /proc/cpuinfo
	Commit    string // git commit of the tree measured, "" if unknown
	Count     int    // -count
	Benchtime string // -benchtime
}

// Preamble renders m as "compare-…: value" lines, which head the raw output
// of a run and which Parse keeps in Run.Header.
func (m Machine) Preamble() string {
	var b strings.Builder
	line := func(k, v string) {
		if v != "" {
			fmt.Fprintf(&b, "compare-%s: %s\n", k, v)
		}
	}
	line("date", m.Date.UTC().Format(time.RFC3339))
	line("go", m.GoVersion)
	line("cpu-model", m.CPU)
	if m.CPUs > 0 {
		line("cpus", strconv.Itoa(m.CPUs))
	}
	line("commit", m.Commit)
	if m.Count > 0 {
		line("count", strconv.Itoa(m.Count))
	}
	line("benchtime", m.Benchtime)
	return b.String()
}

// MachineFromRun describes the machine of a parsed run from its preamble and
// go test's own header lines. What a run does not say (output of go test
// alone) stays empty, except the rounds, counted from the samples.
func MachineFromRun(r *Run) Machine {
	h := r.Header
	m := Machine{GOOS: h["goos"], GOARCH: h["goarch"], GoVersion: h["compare-go"], CPU: h["cpu"],
		Commit: h["compare-commit"], Benchtime: h["compare-benchtime"], Procs: r.Procs}
	if m.Procs == 0 {
		m.Procs = 1 // go test omits the suffix when GOMAXPROCS is 1
	}
	if v := h["compare-cpu-model"]; v != "" {
		m.CPU = v
	}
	m.CPUs, _ = strconv.Atoi(h["compare-cpus"])
	m.Date, _ = time.Parse(time.RFC3339, h["compare-date"])
	if m.Count, _ = strconv.Atoi(h["compare-count"]); m.Count == 0 {
		for _, units := range r.Samples {
			for _, vs := range units {
				m.Count = max(m.Count, len(vs))
			}
		}
	}
	return m
}

func (m Machine) String() string {
	var b strings.Builder
	goVersion := m.GoVersion
	if goVersion == "" {
		goVersion = "Go version unknown"
	}
	fmt.Fprintf(&b, "%s, %s/%s, GOMAXPROCS=%d, CPU: %s", goVersion, m.GOOS, m.GOARCH, m.Procs, m.CPU)
	if m.CPUs > 0 {
		fmt.Fprintf(&b, " (%d logical CPUs)", m.CPUs)
	}
	if !m.Date.IsZero() {
		fmt.Fprintf(&b, "; %s", m.Date.UTC().Format("2006-01-02 15:04 MST"))
	}
	if m.Commit != "" {
		fmt.Fprintf(&b, "; commit %s", m.Commit)
	}
	if m.Count > 0 {
		fmt.Fprintf(&b, "; medians of -count %d", m.Count)
		if m.Benchtime != "" {
			fmt.Fprintf(&b, ", -benchtime %s", m.Benchtime)
		}
	}
	return b.String()
}

// WriteMarkdown writes the comparison table and the machine line.
func WriteMarkdown(w io.Writer, outs []Outcome, m Machine) error {
	var b strings.Builder
	fmt.Fprintf(&b, "Machine: %s.\n\n", m)
	b.WriteString("| workload | metric | flight | x/sync | resenje | flight/x-sync | flight/resenje | target | result |\n")
	b.WriteString("|---|---|--:|--:|--:|--:|--:|---|---|\n")
	passed, checked := 0, 0
	for _, o := range outs {
		cells := []string{o.Label, o.Unit}
		for _, im := range Impls {
			if o.Has[im.Key] {
				cells = append(cells, FormatValue(o.Val[im.Key], o.Unit))
			} else {
				cells = append(cells, "—")
			}
		}
		cells = append(cells, formatRatio(o.RatioX), formatRatio(o.RatioR), o.Target())
		switch {
		case o.Target() == "":
			cells = append(cells, "(info)")
		case !o.Checked:
			cells = append(cells, "n/a")
		case o.Pass:
			cells = append(cells, "PASS")
		default:
			cells = append(cells, "**FAIL**")
		}
		if o.Target() != "" && o.Checked {
			checked++
			if o.Pass {
				passed++
			}
		}
		b.WriteString("| " + strings.Join(cells, " | ") + " |\n")
	}
	fmt.Fprintf(&b, "\n%d of %d targets met.", passed, checked)
	if noisy := noisyCells(outs); noisy != "" {
		fmt.Fprintf(&b, " Noisy (max−min of the rounds > 25%% of the median, shown as ±half of it): %s.", noisy)
	}
	b.WriteString("\n")
	_, err := io.WriteString(w, b.String())
	return err
}

// noisyCells lists the values of rows with a target whose runs spread more
// than 25% of their median (information rows are left out: a spread around
// a median near zero says nothing).
func noisyCells(outs []Outcome) string {
	var s []string
	for _, o := range outs {
		if o.Target() == "" {
			continue
		}
		for _, im := range Impls {
			if sp := o.Spread[im.Key]; sp > 0.25 {
				s = append(s, fmt.Sprintf("%s %s %s ±%.0f%%", o.Workload, o.Unit, im.Title, 50*sp))
			}
		}
	}
	return strings.Join(s, "; ")
}

// FormatValue formats a median for the table: durations for ns units,
// otherwise three significant digits.
func FormatValue(v float64, unit string) string {
	switch {
	case unit == "ns/op" || strings.HasSuffix(unit, "-ns"):
		return formatNs(v)
	case unit == "settle-us":
		return formatNs(v * 1e3)
	}
	return sig3(v)
}

func formatNs(ns float64) string {
	switch a := math.Abs(ns); {
	case a >= 1e9:
		return sig3(ns/1e9) + " s"
	case a >= 1e6:
		return sig3(ns/1e6) + " ms"
	case a >= 1e3:
		return sig3(ns/1e3) + " µs"
	}
	return sig3(ns) + " ns"
}

// sig3 formats v with three significant digits, without an exponent.
func sig3(v float64) string {
	if v == 0 {
		return "0"
	}
	a := math.Abs(v)
	digits := 2 - int(math.Floor(math.Log10(a)))
	if digits < 0 {
		digits = 0
	}
	return strconv.FormatFloat(v, 'f', digits, 64)
}

func formatRatio(r float64) string {
	if math.IsNaN(r) {
		return "—"
	}
	return sig3(r) + "×"
}

func trimFloat(v float64) string { return strconv.FormatFloat(v, 'f', -1, 64) }
