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
	// ErrNoLoader is returned by Register for a bad name or a duplicate,
	// and (wrapped in a *RemoteError) when the grain that answered a call
	// serves another loader than the call's: a kind name of the cluster
	// shared by something else than this package.
	ErrNoLoader = errors.New("flight: cluster: no such loader")
	// ErrTooLarge is returned (wrapped) to every caller of a flight whose
	// encoded value is larger than Config.MaxValueSize on the member that
	// ran the loader, and to the callers on a member whose own
	// MaxValueSize the value exceeds. The value is never sent.
	ErrTooLarge = errors.New("flight: cluster: encoded value too large")
	// ErrMismatch is returned (wrapped) when the key's owner registered the
	// loader with another value type or codec than the calling member did:
	// the members run different builds or registrations. The owner does
	// not run the loader for such a call.
	ErrMismatch = errors.New("flight: cluster: loader registered differently on the owner")
	// ErrCodec is returned (wrapped) when the loader's codec failed: to
	// every caller when Marshal failed on the owner, to a member's callers
	// when Unmarshal failed there.
	ErrCodec = errors.New("flight: cluster: codec")
	// ErrResponseTimeout is returned (wrapped) when a call got no answer
	// from the key's owner within Config.ResponseTimeout (the owner froze
	// or vanished without the membership noticing, or the loader ran that
	// long). The owner is told that this member's call left.
	ErrResponseTimeout = errors.New("flight: cluster: no answer from the owner within Config.ResponseTimeout")
	// ErrUnroutable is returned by Start when the address the member would
	// advertise to the others cannot be dialled by them (an unspecified
	// address such as 0.0.0.0 or ::, or a multicast one): set
	// Config.AdvertisedHost.
	ErrUnroutable = errors.New("flight: cluster: advertised address is not routable")
	// ErrConfig is returned (wrapped) by NewNode for a Config it cannot
	// use: no Name, or no Provider.
	ErrConfig = errors.New("flight: cluster: invalid Config")
	// ErrStarted is returned (wrapped) by Register once the node has
	// started: loaders are registered before Start, on every member alike
	// (a grain kind cannot be added to a running protoactor cluster).
	ErrStarted = errors.New("flight: cluster: node already started")
	// ErrStart is returned (wrapped, with protoactor's reason) by Start when
	// protoactor could not start the member: its remote server could not
	// listen (a port in use), or its provider failed. Nothing is left
	// running; Close the node.
	ErrStart = errors.New("flight: cluster: start failed")
)

// RemoteError is the error callers get when the loader failed on the
// member that owned the flight, or when that member refused the call or
// could not encode or send the result. Errors cannot cross processes with their identity, so
// the loader's error arrives as its text; Unwrap gives the sentinel the
// failure corresponds to, so that errors.Is(err, context.DeadlineExceeded)
// holds after a WithTimeout expiry, errors.Is(err, flight.ErrOverloaded)
// after a refusal, errors.Is(err, flight.ErrGoexit) after Goexit, and
// ErrCodec, ErrTooLarge, ErrMismatch or ErrNoLoader for those failures, on
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
	case wire.Code_CODE_CODEC:
		return ErrCodec
	case wire.Code_CODE_TOO_LARGE:
		return ErrTooLarge
	case wire.Code_CODE_MISMATCH:
		return ErrMismatch
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
	case errors.Is(err, ErrCodec):
		return wire.Code_CODE_CODEC, err.Error(), nil
	case errors.Is(err, ErrTooLarge):
		return wire.Code_CODE_TOO_LARGE, err.Error(), nil
	case errors.Is(err, context.DeadlineExceeded):
		// The owner's per-call context is only ever cancelled, never given
		// a deadline, so a deadline here is the loader's WithTimeout.
		return wire.Code_CODE_TIMEOUT, err.Error(), nil
	}
	return wire.Code_CODE_ERROR, err.Error(), nil
}

// replyErr turns a Reply's failure back into an error on the caller's side.
func replyErr(r *wire.Reply) error {
	if r.Code == wire.Code_CODE_PANIC {
		return &flight.PanicError{Value: r.Message, Stack: r.Stack}
	}
	return &RemoteError{Owner: r.Owner, Message: r.Message, code: r.Code}
}
