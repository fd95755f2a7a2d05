// Package hooks lets the module's own packages reach behaviour of package
// flight that its public API does not offer: package compat/singleflight,
// built on the public API, needs two of x/sync's behaviours, and package
// cluster needs to know whether its options trace. Package flight sets each
// hook in its init, so a package that imports flight finds them set.
package hooks

import "go.opentelemetry.io/otel/trace"

// ForgetOverlaps returns a flight.Option (as any, since this package cannot
// import flight) under which Forget lets the key's next flight start at
// once, beside the forgotten one, as golang.org/x/sync/singleflight's Forget
// does. The root Coordinator never overlaps executions of one key; package
// compat/singleflight needs x/sync's behaviour.
var ForgetOverlaps func() any

// PrivateCtx returns a flight.Option (as any) that tells the coordinator
// its functions never see the context they are given (package
// compat/singleflight's adapters call an x/sync function, which takes
// none), so nothing outside the engine can keep a flight's context once
// the flight has ended: the engine then reuses those contexts, and a
// distinct key's flight allocates nothing. It must not be combined with
// WithLogger or WithTracerProvider, which hand the context to user code.
var PrivateCtx func() any

// PanicErrors returns a flight.Option (as any) under which the error every
// waiter of a panicked flight gets is made by mk instead of being a
// *flight.PanicError: package compat/singleflight panics in every Do caller
// with one error of x/sync's shape.
var PanicErrors func(mk func(value any, stack []byte) error) any

// TracerProvider returns the trace.TracerProvider that opts (flight.Options,
// as any) set with flight.WithTracerProvider, or nil when none does.
// Package cluster gives it to the coordinator of a loader's callers as well
// as to the ones Register makes from opts, and carries trace context in its
// Joins only when it is set.
var TracerProvider func(opts []any) trace.TracerProvider
