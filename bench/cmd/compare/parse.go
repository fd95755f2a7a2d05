package main

import (
	"bufio"
	"fmt"
	"io"
	"slices"
	"strconv"
	"strings"
)

// Run is the parsed output of one `go test -bench` invocation.
type Run struct {
	// Header holds go test's "goos", "goarch", "pkg" and "cpu" lines and
	// compare's own "compare-…" lines (Machine.Preamble), by key.
	Header map[string]string
	// Samples holds every reported value: Samples[bench][unit] has one
	// value per -count run, in output order. bench is the benchmark name
	// without its "Benchmark" prefix and "-GOMAXPROCS" suffix, e.g.
	// "Stampede/callers=1000/flight".
	Samples map[string]map[string][]float64
	Procs   int      // the GOMAXPROCS suffix of the benchmark names (0: none)
	Order   []string // benchmark names in first-seen order
}

// Parse reads `go test -bench` output. Lines that are not a header line or a
// benchmark result (PASS, ok, test logs) are ignored. A result line is the
// name, the iteration count, then value-unit pairs; a malformed pair is an
// error, so a change in the format is noticed, not mismeasured.
func Parse(r io.Reader) (*Run, error) {
	run := &Run{Header: map[string]string{}, Samples: map[string]map[string][]float64{}}
	sc := bufio.NewScanner(r)
	sc.Buffer(make([]byte, 64*1024), 1024*1024)
	for line := 1; sc.Scan(); line++ {
		text := sc.Text()
		if k, v, ok := strings.Cut(text, ": "); ok {
			switch {
			case k == "goos", k == "goarch", k == "pkg", k == "cpu", strings.HasPrefix(k, "compare-") && !strings.Contains(k, " "):
				run.Header[k] = strings.TrimSpace(v)
			}
		}
		if !strings.HasPrefix(text, "Benchmark") {
			continue
		}
		f := strings.Fields(text)
		// "BenchmarkX-2  --- FAIL" and a name alone (printed before a
		// sub-benchmark's results when it logs) are not results.
		if len(f) < 4 {
			continue
		}
		if _, err := strconv.ParseInt(f[1], 10, 64); err != nil {
			continue
		}
		if len(f)%2 != 0 {
			return nil, fmt.Errorf("line %d: odd number of value/unit fields: %q", line, text)
		}
		name, procs := splitProcs(strings.TrimPrefix(f[0], "Benchmark"))
		if procs > 0 {
			run.Procs = procs
		}
		units, ok := run.Samples[name]
		if !ok {
			units = map[string][]float64{}
			run.Samples[name] = units
			run.Order = append(run.Order, name)
		}
		for i := 2; i < len(f); i += 2 {
			v, err := strconv.ParseFloat(f[i], 64)
			if err != nil {
				return nil, fmt.Errorf("line %d: value %q: %v", line, f[i], err)
			}
			units[f[i+1]] = append(units[f[i+1]], v)
		}
	}
	return run, sc.Err()
}

// splitProcs splits "Distinct/flight-2" into "Distinct/flight" and 2. A
// name without a numeric suffix (GOMAXPROCS=1) is returned whole.
func splitProcs(name string) (string, int) {
	i := strings.LastIndexByte(name, '-')
	if i < 0 {
		return name, 0
	}
	n, err := strconv.Atoi(name[i+1:])
	if err != nil || n <= 0 {
		return name, 0
	}
	return name[:i], n
}

// Median returns the median of the samples of bench's unit, and false if
// there are none.
func (r *Run) Median(bench, unit string) (float64, bool) {
	vs := r.Samples[bench][unit]
	if len(vs) == 0 {
		return 0, false
	}
	return median(vs), true
}

// Count returns how many samples bench's unit has.
func (r *Run) Count(bench, unit string) int { return len(r.Samples[bench][unit]) }

func median(vs []float64) float64 {
	s := slices.Clone(vs)
	slices.Sort(s)
	n := len(s)
	if n%2 == 1 {
		return s[n/2]
	}
	return (s[n/2-1] + s[n/2]) / 2
}

// Spread is (max-min)/median of bench's unit, a rough measure of noise; 0
// when there are fewer than two samples or the median is 0.
func (r *Run) Spread(bench, unit string) float64 {
	vs := r.Samples[bench][unit]
	if len(vs) < 2 {
		return 0
	}
	m := median(vs)
	if m == 0 {
		return 0
	}
	return (slices.Max(vs) - slices.Min(vs)) / m
}
