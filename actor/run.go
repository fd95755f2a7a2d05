package actor

import "runtime/debug"

// outcome says how an execution of fn ended.
type outcome uint8

const (
	fnReturned outcome = iota // fn returned (a value, an error, or both)
	fnPanicked                // fn panicked; the value and stack are recorded
	fnExited                  // fn called runtime.Goexit
)

// Run is the worker's side of a flight: it calls fn with the flight's context
// and records how it ended, then hands the flight back to its shard. It runs
// on a pool worker, never on a shard's goroutine.
//
// A panic is recovered here, with the stack of the panicking goroutine: no
// panic in fn can crash the process (protoactor does not recover panics in
// goroutines it did not start). runtime.Goexit cannot be stopped, so it is
// detected the way x/sync/singleflight does it: the deferred function runs
// with neither a normal return nor a recovered panic recorded. The flight is
// handed back in every case, so every waiter is answered.
func (f *Flight[K, V]) Run() {
	normal, recovered := false, false
	defer func() {
		if !normal && !recovered {
			f.outcome = fnExited
		}
		f.owner.env.Post(Done[K, V]{f})
	}()
	func() {
		defer func() {
			if !normal {
				if r := recover(); r != nil {
					f.outcome = fnPanicked
					f.panic = &panicInfo{value: r, stack: debug.Stack()}
				}
			}
		}()
		f.val, f.err = f.fn(f.ctx)
		normal = true
	}()
	if !normal {
		recovered = true
	}
}

// Done is the message a worker posts to its shard when fn has ended. It is a
// struct of one pointer, so boxing it in an interface does not allocate.
type Done[K comparable, V any] struct{ F *Flight[K, V] }

// Expired is posted when a flight's WithTimeout deadline passes.
type Expired[K comparable, V any] struct{ F *Flight[K, V] }

// Retry is posted when a flight's backoff between two attempts has passed.
type Retry[K comparable, V any] struct{ F *Flight[K, V] }

// Leave is posted when a caller's context is done before its answer.
type Leave[K comparable, V any] struct{ W *Waiter[K, V] }
