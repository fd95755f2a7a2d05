// Package bench measures flight (github.com/actorflight/flight) against
// golang.org/x/sync/singleflight and resenje.org/singleflight on the
// workloads and targets of docs/performance.md. It is its own module, so that the library's
// go.mod never requires the peers.
//
// Everything is in the package's tests: the benchmarks (bench_test.go), the
// adapters that put the three implementations behind one interface
// (impl_test.go), the measuring helpers (measure_test.go) and tests that
// check the helpers measure what they claim (measure_helpers_test.go).
// cmd/compare runs the benchmarks and prints the comparison table; see
// README.md for what each workload measures and how.
package bench
