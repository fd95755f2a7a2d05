// Command compare runs the benchmarks of the bench module (flight against
// golang.org/x/sync/singleflight and resenje.org/singleflight), then prints
// a Markdown table of the medians per implementation, the ratios
// flight/x-sync and flight/resenje, each workload's target and whether
// flight meets it, and writes an SVG bar chart.
//
// It builds the test binary once and runs the selected benchmarks -count
// times as whole rounds, so that every implementation sees the same share of
// a noisy machine; the table shows the median of the rounds.
//
// Run it inside bench/:
//
//	go run ./cmd/compare                       # -count 5: about 3 minutes on 2 cores
//	go run ./cmd/compare -count 10 -bench 'Distinct|Zipf'
//	go run ./cmd/compare -in results/bench.txt  # re-render a saved run
//
// The raw `go test -bench` output is saved (-raw) so that a run can be
// re-rendered or compared with benchstat. The exit status is 0 even when a
// target is missed: the table says so; it is 1 when the benchmarks fail.
package main

import (
	"bufio"
	"bytes"
	"flag"
	"fmt"
	"io"
	"os"
	"os/exec"
	"path/filepath"
	"runtime"
	"strings"
	"time"
)

func main() {
	var (
		count     = flag.Int("count", 5, "runs of each benchmark (go test -count); the table shows medians")
		benchtime = flag.String("benchtime", "1s", "go test -benchtime for each run")
		filter    = flag.String("bench", ".", "go test -bench regexp: which benchmarks to run")
		svgPath   = flag.String("svg", "results/compare.svg", "where to write the SVG chart (\"\" for none)")
		mdPath    = flag.String("md", "results/compare.md", "where to write the Markdown table too (\"\" for none)")
		rawPath   = flag.String("raw", "results/bench.txt", "where to save the raw benchmark output (\"\" for none)")
		in        = flag.String("in", "", "parse this saved output instead of running the benchmarks")
		dir       = flag.String("dir", ".", "the bench module's directory")
	)
	flag.Parse()
	if err := run(*count, *benchtime, *filter, *svgPath, *mdPath, *rawPath, *in, *dir); err != nil {
		fmt.Fprintln(os.Stderr, "compare:", err)
		os.Exit(1)
	}
}

func run(count int, benchtime, filter, svgPath, mdPath, rawPath, in, dir string) error {
	if _, err := os.Stat(filepath.Join(dir, "bench_test.go")); err != nil {
		return fmt.Errorf("%s is not the bench module (run inside bench/ or pass -dir): %v", dir, err)
	}
	var raw []byte
	if in != "" {
		var err error
		if raw, err = os.ReadFile(in); err != nil {
			return err
		}
	} else {
		if count < 1 {
			return fmt.Errorf("-count %d: want at least 1", count)
		}
		// Describe the tree before building it: the lead may commit while
		// the benchmarks run. The description heads the raw output, so a
		// saved run re-rendered with -in keeps it.
		raw = []byte(liveMachine(dir, count, benchtime).Preamble())
		start := time.Now()
		out, err := runRounds(dir, count, filter, benchtime)
		raw = append(raw, out...)
		fmt.Fprintf(os.Stderr, "compare: benchmarks took %v\n", time.Since(start).Round(time.Second))
		if rawPath != "" {
			if werr := writeFile(inDir(dir, rawPath), raw); werr != nil {
				return werr
			}
		}
		if err != nil {
			return fmt.Errorf("go test: %v", err)
		}
	}
	res, err := Parse(bytes.NewReader(raw))
	if err != nil {
		return err
	}
	if len(res.Samples) == 0 {
		return fmt.Errorf("no benchmark results in the output")
	}
	m := MachineFromRun(res)
	outs := Evaluate(res)

	var md bytes.Buffer
	if err := WriteMarkdown(&md, outs, m); err != nil {
		return err
	}
	os.Stdout.Write(md.Bytes())
	if mdPath != "" {
		if err := writeFile(inDir(dir, mdPath), md.Bytes()); err != nil {
			return err
		}
	}
	if svgPath != "" {
		var svg bytes.Buffer
		if err := WriteSVG(&svg, outs, m); err != nil {
			return err
		}
		p := inDir(dir, svgPath)
		if err := writeFile(p, svg.Bytes()); err != nil {
			return err
		}
		fmt.Fprintf(os.Stderr, "compare: wrote %s\n", p)
	}
	return nil
}

// runRounds builds the benchmark binary once, then runs the whole selection
// count times, one round after the other (not each benchmark count times in
// a row, as go test -count does), so that a noisy neighbour or a slow minute
// spreads over all implementations alike. It returns the rounds' output.
func runRounds(dir string, count int, filter, benchtime string) ([]byte, error) {
	tmp, err := os.MkdirTemp("", "flight-bench-")
	if err != nil {
		return nil, err
	}
	defer os.RemoveAll(tmp)
	bin := filepath.Join(tmp, "bench.test")
	fmt.Fprintf(os.Stderr, "compare: go test -c -o %s (in %s)\n", bin, dir)
	if out, err := runTee(dir, "go", "test", "-c", "-o", bin, "."); err != nil {
		return out, fmt.Errorf("go test -c: %v", err)
	}
	var all []byte
	for i := 1; i <= count; i++ {
		args := []string{"-test.run", "^$", "-test.bench", filter, "-test.benchtime", benchtime,
			"-test.count", "1", "-test.timeout", "60m"}
		fmt.Fprintf(os.Stderr, "compare: round %d/%d: bench.test %s\n", i, count, strings.Join(args, " "))
		out, err := runTee(dir, bin, args...)
		all = append(all, out...)
		if err != nil {
			return all, fmt.Errorf("round %d: %v", i, err)
		}
	}
	return all, nil
}

// runTee runs a command in dir, copying its output to stderr as it comes
// (progress), and returns the output.
func runTee(dir, name string, args ...string) ([]byte, error) {
	cmd := exec.Command(name, args...)
	cmd.Dir = dir
	var out bytes.Buffer
	pr, pw := io.Pipe()
	cmd.Stdout, cmd.Stderr = pw, pw
	done := make(chan struct{})
	go func() {
		defer close(done)
		sc := bufio.NewScanner(pr)
		sc.Buffer(make([]byte, 64*1024), 1024*1024)
		for sc.Scan() {
			out.Write(sc.Bytes())
			out.WriteByte('\n')
			fmt.Fprintln(os.Stderr, sc.Text())
		}
		io.Copy(io.Discard, pr)
	}()
	err := cmd.Run()
	pw.Close()
	<-done
	return out.Bytes(), err
}

// inDir resolves an output path: relative paths are taken from the bench
// module's directory, absolute ones as they are.
func inDir(dir, path string) string {
	if filepath.IsAbs(path) {
		return path
	}
	return filepath.Join(dir, path)
}

func writeFile(path string, data []byte) error {
	if err := os.MkdirAll(filepath.Dir(path), 0o755); err != nil {
		return err
	}
	return os.WriteFile(path, data, 0o644)
}

// liveMachine describes this machine, the Go toolchain and the tree in dir
// now, for a run of count rounds.
func liveMachine(dir string, count int, benchtime string) Machine {
	m := Machine{Date: time.Now().UTC(), Procs: runtime.GOMAXPROCS(0), Count: count, Benchtime: benchtime,
		GOOS: runtime.GOOS, GOARCH: runtime.GOARCH}
	m.GoVersion = strings.TrimSpace(output(dir, "go", "env", "GOVERSION"))
	if m.GoVersion == "" {
		m.GoVersion = runtime.Version()
	}
	m.CPU, m.CPUs = cpuInfo("/proc/cpuinfo")
	if c := strings.TrimSpace(output(dir, "git", "rev-parse", "--short", "HEAD")); c != "" {
		m.Commit = c
		// The benchmarks build the library from the work tree (replace
		// => ../): say when the files they build differ from the commit.
		if libraryChanged(dir) {
			m.Commit += " + uncommitted changes"
		}
	}
	return m
}

// libraryChanged reports whether a non-test Go file of a package of the
// flight module that the benchmarks build, or the module's go.mod or go.sum,
// differs from the commit checked out (other helpers' directories do not
// count). It reports false when git or go cannot say.
func libraryChanged(dir string) bool {
	root := strings.TrimSpace(output(dir, "git", "rev-parse", "--show-toplevel"))
	if root == "" {
		return false
	}
	pkgs := map[string]bool{}
	list := output(dir, "go", "list", "-deps", "-test", "-f", `{{with .Module}}{{if eq .Path "github.com/actorflight/flight"}}{{$.Dir}}{{end}}{{end}}`, ".")
	for _, d := range strings.Fields(list) {
		if rel, err := filepath.Rel(root, d); err == nil {
			pkgs[filepath.ToSlash(rel)] = true
		}
	}
	status := output(root, "git", "status", "--porcelain", "--untracked-files=no")
	for _, line := range strings.Split(status, "\n") {
		if len(line) < 4 {
			continue
		}
		p := line[3:]
		if _, to, ok := strings.Cut(p, " -> "); ok { // a rename
			p = to
		}
		switch {
		case p == "go.mod", p == "go.sum":
			return true
		case strings.HasSuffix(p, ".go") && !strings.HasSuffix(p, "_test.go") && pkgs[pathDir(p)]:
			return true
		}
	}
	return false
}

// pathDir is path.Dir with "." for a file at the top.
func pathDir(p string) string {
	if i := strings.LastIndexByte(p, '/'); i >= 0 {
		return p[:i]
	}
	return "."
}

// cpuInfo returns the first "model name" of a /proc/cpuinfo file and the
// number of processors it lists.
func cpuInfo(path string) (model string, n int) {
	data, err := os.ReadFile(path)
	if err != nil {
		return "", 0
	}
	for _, line := range strings.Split(string(data), "\n") {
		k, v, ok := strings.Cut(line, ":")
		if !ok {
			continue
		}
		switch strings.TrimSpace(k) {
		case "model name":
			if model == "" {
				model = strings.TrimSpace(v)
			}
		case "processor":
			n++
		}
	}
	return model, n
}

// output runs a command in dir and returns its standard output, "" on error.
func output(dir, name string, args ...string) string {
	cmd := exec.Command(name, args...)
	cmd.Dir = dir
	out, err := cmd.Output()
	if err != nil {
		return ""
	}
	return string(out)
}
