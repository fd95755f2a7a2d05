package flight

import (
	"time"

	fa "github.com/actorflight/flight/actor"
)

// engineErrors is the one error set both engines answer with, the
// Coordinator's and the Batcher's (which adds ErrNotFound and
// ErrInvalidKey, see NewBatcher), so that a caller matches the same values
// whichever it calls.
func engineErrors(timeout time.Duration, panicErr func(value any, stack []byte) error) fa.Errors {
	t := noTimeout
	if timeout > 0 {
		t = &timeoutError{timeout}
	}
	return fa.Errors{
		Closed:     ErrClosed,
		Overloaded: ErrOverloaded,
		Goexit:     ErrGoexit,
		Timeout:    t,
		Recursive:  ErrRecursiveCall,
		Panic:      panicErr,
		Stale:      errStale,
	}
}

// noTimeout is the Timeout error of an engine without WithTimeout: it is
// never given to a caller.
var noTimeout = &timeoutError{}
