package cluster

import (
	"context"
	"errors"
	"fmt"

	"github.com/actorflight/flight"
	"github.com/actorflight/flight/cluster/internal/wire"
)

var (
	// ErrOwnerLost is returned (wrapped, match it with errors.Is) when the
	// member that owned a key's flight stopped, died or became unreachable
	// before it answered, and every retry (Config.Retries) met the same
	// fate. The loader may or may not have run on the lost member.
	ErrOwnerLost = errors.New("flight: cluster: owner of the flight was lost")
	// ErrNotStarted is returned by calls made before Node.Start returned.
	ErrNotStarted = errors.New("flight: cluster: node not started")
	// ErrNoLoader is returned when the member that owns a key has no loader
	// registered under the call's name (members registered different
	// loaders), and by Register for a bad name or a duplicate.
	ErrNoLoader = errors.New("flight: cluster: no such loader")
)

// RemoteError is the error callers get when the loader failed on the
// member that owned the flight, or when that member refused or could not
// encode the result. Errors cannot cross processes with their identity, so
// the loader's error arrives as its text; Unwrap gives the sentinel the
// failure corresponds to, so that errors.Is(err, context.DeadlineExceeded)
// holds after a WithTimeout expiry, errors.Is(err, flight.ErrOverloaded)
// after a refusal and errors.Is(err, flight.ErrGoexit) after Goexit, on
// every member alike. A panic in the loader arrives as a *flight.PanicError
// instead, whose Value is the panic's text.
type RemoteError struct {
	Owner   string // address of the member that owned the flight
	Message string // the error's text on that member
	code    wire.Code
}

// Error returns the owner's error text, prefixed with "flight: cluster:".
func (e *RemoteError) Error() string {
	return fmt.Sprintf("flight: cluster: on %s: %s", e.Owner, e.Message)
}

// Unwrap returns the sentinel matching the failure, or nil for an error the
// loader returned.
func (e *RemoteError) Unwrap() error {
	switch e.code {
	case wire.Code_CODE_TIMEOUT:
		return context.DeadlineExceeded
	case wire.Code_CODE_OVERLOADED:
		return flight.ErrOverloaded
	case wire.Code_CODE_GOEXIT:
		return flight.ErrGoexit
	case wire.Code_CODE_NO_LOADER:
		return ErrNoLoader
	case wire.Code_CODE_CLOSED:
		return flight.ErrClosed
	}
	return nil
}

// failure turns the owner's result error into a Reply's code and text.
func failure(err error) (wire.Code, string, []byte) {
	var pe *flight.PanicError
	switch {
	case errors.As(err, &pe):
		return wire.Code_CODE_PANIC, fmt.Sprint(pe.Value), pe.Stack
	case errors.Is(err, flight.ErrGoexit):
		return wire.Code_CODE_GOEXIT, err.Error(), nil
	case errors.Is(err, flight.ErrClosed):
		return wire.Code_CODE_CLOSED, err.Error(), nil
	case errors.Is(err, flight.ErrOverloaded):
		return wire.Code_CODE_OVERLOADED, err.Error(), nil
	case errors.Is(err, errCodec):
		return wire.Code_CODE_CODEC, err.Error(), nil
	case errors.Is(err, context.DeadlineExceeded):
		// The owner's per-call context is only ever cancelled, never given
		// a deadline, so a deadline here is the loader's WithTimeout.
		return wire.Code_CODE_TIMEOUT, err.Error(), nil
	}
	return wire.Code_CODE_ERROR, err.Error(), nil
}

// errCodec marks a failure to encode the loader's value on the owner.
var errCodec = errors.New("flight: cluster: codec")

// replyErr turns a Reply's failure back into an error on the caller's side.
func replyErr(r *wire.Reply) error {
	if r.Code == wire.Code_CODE_PANIC {
		return &flight.PanicError{Value: r.Message, Stack: r.Stack}
	}
	return &RemoteError{Owner: r.Owner, Message: r.Message, code: r.Code}
}
