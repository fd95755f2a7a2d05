package singleflight

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"runtime"
	"sync"
	"sync/atomic"

	"github.com/actorflight/flight"
	"github.com/actorflight/flight/internal/hooks"
)

// Group represents a class of work and forms a namespace in which units of
// work can be executed with duplicate suppression.
//
// The zero value is ready to use and costs one byte: a Group owns no map,
// no actor and no goroutine. Its calls go to the process-wide coordinator
// under keys made of the Group's address and the string key, so two Groups
// never share a flight. Like x/sync's Group, a Group must not be copied
// after first use (go vet's copylocks check reports copies). All methods
// are safe for concurrent use.
type Group struct {
	_ noCopy
	_ byte // a Group's address is part of its keys: distinct Groups need distinct addresses, so it must not be zero-size
}

// Result holds the results of Do, so they can be passed on a channel.
type Result struct {
	Val    interface{}
	Err    error
	Shared bool
}

// Do executes and returns the results of the given function, making sure
// that only one execution is in-flight for a given key at a time. If a
// duplicate comes in, the duplicate caller waits for the original to
// complete and receives the same results. The return value shared indicates
// whether v was given to multiple callers.
//
// fn runs on the first caller's goroutine, as with x/sync.
// If fn panics, every Do caller of the flight panics with an error holding
// the panic value and fn's stack; if fn calls runtime.Goexit, every Do
// caller of the flight calls runtime.Goexit.
func (g *Group) Do(key string, fn func() (interface{}, error)) (v interface{}, err error, shared bool) {
	a := getAdapter(fn)
	v, shared, err = engine().Do(context.Background(), groupKey{g, key}, a.run)
	a.release()
	if err != nil {
		if p, ok := err.(*panicError); ok {
			panic(p)
		} else if err == flight.ErrGoexit {
			runtime.Goexit()
		}
	}
	return v, err, shared
}

// DoChan is like Do but returns a channel that will receive the results
// when they are ready.
//
// The returned channel will not be closed. It has a buffer of one, so a
// caller that never reads it leaks nothing. If fn panics while a DoChan
// caller waits for it, the process crashes, as with x/sync, because the
// panic cannot be handed to a caller that may never read the channel. If
// fn calls runtime.Goexit, the channel receives a Result whose Err matches
// flight.ErrGoexit (errors.Is); x/sync's channel never receives anything
// then (golang/go#52557).
//
// Like x/sync's DoChan, it starts a goroutine per call: here the one that
// waits for the flight and hands its Result over (x/sync's runs fn).
func (g *Group) DoChan(key string, fn func() (interface{}, error)) <-chan Result {
	ch := make(chan Result, 1)
	r := engine().DoChan(context.Background(), groupKey{g, key}, adapt(fn))
	go func() { ch <- convert(<-r) }()
	return ch
}

// convert makes the Result a DoChan caller receives from the flight's.
//
// A panic in fn must not be swallowed, and there is no caller goroutine to
// re-panic in (the channel may never be read), so, as x/sync does, the
// panic is re-raised on this goroutine, which crashes the process.
func convert(r flight.Result[interface{}]) Result {
	if p, ok := r.Err.(*panicError); ok {
		panic(p)
	}
	if errors.Is(r.Err, flight.ErrGoexit) {
		r.Err = errGoexit
	}
	return Result{Val: r.Val, Err: r.Err, Shared: r.Shared}
}

// Forget tells the singleflight to forget about a key. Future calls to Do
// for this key will call the function rather than waiting for an earlier
// call to complete; callers already waiting still get the earlier call's
// result, and its end never affects the later calls (golang/go#31420).
// Forget takes effect before it returns for every call that starts after
// it returns.
//
// As with x/sync, the function of the later call starts at once, even while
// the forgotten one still runs.
func (g *Group) Forget(key string) {
	engine().Forget(groupKey{g, key})
}

// groupKey is a key of the process-wide coordinator: the Group and the
// caller's key. The pointer keeps the Group alive while it has a flight, so
// its address cannot be reused by another Group meanwhile.
type groupKey struct {
	g   *Group
	key string
}

// adapt turns an x/sync function into a flight function. fn ignores the
// flight's context, which is never cancelled here (no caller can leave and
// there is no timeout). A nil fn is called, and panics, on the worker, as
// it panics in x/sync's doCall.
func adapt(fn func() (interface{}, error)) func(context.Context) (interface{}, error) {
	return func(context.Context) (interface{}, error) { return fn() }
}

// An adapter is adapt's closure for Do, reusable: Do would otherwise
// allocate a closure per call (half of its allocations on distinct keys).
// run is the method value a.call, bound once when the adapter is made.
//
// Do puts its adapter back only once fn has started (started is set after
// run has read fn, so the next Do may overwrite it). A Do that joined
// another caller's flight never runs its fn, and a Do answered before its
// fn started (a fault in a shard's handler answers the waiters while the
// flight's fn may still be to run) must not hand an adapter that a flight
// still holds to another call: in both cases the adapter is dropped.
type adapter struct {
	fn      func() (interface{}, error)
	run     func(context.Context) (interface{}, error)
	started atomic.Bool
}

var adapters sync.Pool

func getAdapter(fn func() (interface{}, error)) *adapter {
	a, _ := adapters.Get().(*adapter)
	if a == nil {
		a = new(adapter)
		a.run = a.call
	}
	a.fn = fn
	return a
}

func (a *adapter) call(context.Context) (interface{}, error) {
	fn := a.fn
	a.started.Store(true)
	return fn()
}

// release recycles a once its fn has started (it is not reached when fn
// panicked, or called runtime.Goexit, on the caller's goroutine).
func (a *adapter) release() {
	if a.started.Load() {
		a.fn = nil
		a.started.Store(false)
		adapters.Put(a)
	}
}

// engine returns the process-wide coordinator, starting it on first use.
// It is never closed: while no call runs it holds no goroutine (its worker
// goroutines exit a moment after their last flight) and no per-key memory.
// It is made with two hooks for x/sync's behaviour: Forget lets the next
// call run beside the forgotten one, and a panic reaches the callers as
// x/sync's panicError (one value for all of them).
var engine = sync.OnceValue(func() *flight.Coordinator[groupKey, interface{}] {
	return flight.New[groupKey, interface{}](
		hooks.ForgetOverlaps().(flight.Option),
		hooks.PrivateCtx().(flight.Option),
		hooks.PanicErrors(newPanicError).(flight.Option))
})

// errGoexit is the error a DoChan caller receives when fn called
// runtime.Goexit (Do callers call runtime.Goexit instead).
var errGoexit error = goexitError{}

type goexitError struct{}

func (goexitError) Error() string { return "runtime.Goexit was called" }

// Unwrap makes errors.Is(err, flight.ErrGoexit) true.
func (goexitError) Unwrap() error { return flight.ErrGoexit }

// A panicError is an arbitrary value recovered from a panic with the stack
// trace during the execution of the given function. Do panics with it.
type panicError struct {
	value interface{}
	stack []byte
}

// Error implements the error interface.
func (p *panicError) Error() string {
	return fmt.Sprintf("%v\n\n%s", p.value, p.stack)
}

// Unwrap returns the panic value when it is an error.
func (p *panicError) Unwrap() error {
	err, ok := p.value.(error)
	if !ok {
		return nil
	}
	return err
}

// newPanicError records v and the stack of the goroutine that ran fn, taken
// by the worker where it recovered the panic.
func newPanicError(v interface{}, stack []byte) error {
	// The first line of the stack trace is of the form "goroutine N
	// [status]:", but by the time the panic reaches Do the goroutine may
	// have moved on. Trim out the misleading line, as x/sync does.
	if line := bytes.IndexByte(stack, '\n'); line >= 0 {
		stack = stack[line+1:]
	}
	return &panicError{value: v, stack: stack}
}

// noCopy makes go vet's copylocks check report copies of a Group, as it
// reports copies of x/sync's Group, whose sync.Mutex it sees. Copying a
// Group would make the copy a different namespace.
type noCopy struct{}

func (*noCopy) Lock()   {}
func (*noCopy) Unlock() {}
