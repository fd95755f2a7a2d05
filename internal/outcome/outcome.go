// Package outcome runs a function the way both engines run fn — the
// Coordinator's flights (package actor) and the Batcher's batches (package
// batch) — and says how it ended: returned, panicked (with the value and
// the stack of the panicking goroutine) or called runtime.Goexit.
package outcome

import "runtime/debug"

// How says how a function run by Run ended.
type How uint8

const (
	Returned How = iota // it returned
	Panicked            // it panicked; the value and stack are given
	Exited              // it called runtime.Goexit
)

// Task is what Run runs: Call, then Ended with how Call ended. Ended runs
// in every case, after a Goexit too (then on its way out of the
// goroutine), so that every waiter of the task is answered.
type Task interface {
	Call()
	Ended(how How, value any, stack []byte)
}

// Run calls t.Call and then t.Ended. A panic in Call is recovered here,
// with its stack: no panic of a user's function can crash the process
// (protoactor does not recover panics in goroutines it did not start).
// runtime.Goexit cannot be stopped, so it is detected the way
// x/sync/singleflight does it: the deferred function runs with neither a
// normal return nor a recovered panic recorded.
func Run(t Task) {
	normal, recovered := false, false
	how := Returned
	var value any
	var stack []byte
	defer func() {
		if !normal && !recovered {
			how = Exited
		}
		t.Ended(how, value, stack)
	}()
	func() {
		defer func() {
			if !normal {
				if r := recover(); r != nil {
					how, value, stack = Panicked, r, debug.Stack()
				}
			}
		}()
		t.Call()
		normal = true
	}()
	if !normal {
		recovered = true
	}
}
