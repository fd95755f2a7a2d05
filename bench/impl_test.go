package bench

import (
	"context"
	"reflect"

	xsync "golang.org/x/sync/singleflight"
	resenje "resenje.org/singleflight"

	"github.com/actorflight/flight"
	compat "github.com/actorflight/flight/compat/singleflight"
)

// work is the function a benchmark's flights run. Every implementation gets
// the same one, built once per group, so no implementation pays for a
// closure per call.
type work = func(ctx context.Context) (int, error)

// group is one implementation of "one execution per key at a time" behind a
// common interface. Every call goes through this interface, at the same cost
// (one indirect call) for all implementations.
type group interface {
	// Do runs or joins the flight for key with ctx. x/sync takes no
	// context and ignores it; flight and resenje pass it on. Every workload
	// passes context.Background() except BenchmarkDistinctCtx.
	Do(ctx context.Context, key string) (v int, shared bool, err error)
	// LiveKeys is the number of keys the implementation holds state for now.
	// For the peers it is the length of their unexported map (read with
	// reflect, without their lock: call it only while the group is quiet).
	LiveKeys() int
	// Close releases what the group holds (flight: Close; peers: nothing).
	Close()
}

// impl names an implementation and makes a group that runs fn.
type impl struct {
	name string
	new  func(fn work) group
}

// impls are the implementations every workload runs, in table order. The
// names are the last element of the benchmark names, which cmd/compare
// parses.
var impls = []impl{
	{"flight", newFlight},
	{"xsync", newXSync},
	{"resenje", newResenje},
}

// flightGroup is flight's Coordinator with default options.
type flightGroup struct {
	c  *flight.Coordinator[string, int]
	fn flight.Func[int]
}

func newFlight(fn work) group {
	return &flightGroup{c: flight.New[string, int](), fn: fn}
}

func (g *flightGroup) Do(ctx context.Context, key string) (int, bool, error) {
	return g.c.Do(ctx, key, g.fn)
}
func (g *flightGroup) LiveKeys() int { return g.c.Stats().Keys }
func (g *flightGroup) Close()        { _ = g.c.Close() }

// Stats gives the workloads flight's gauges (Waiters, Keys, InFlight).
func (g *flightGroup) Stats() flight.Stats { return g.c.Stats() }

// statser is implemented by groups that report flight's Stats.
type statser interface{ Stats() flight.Stats }

// xsyncGroup is golang.org/x/sync/singleflight. It takes no context: Do
// ignores ctx, and fn gets context.Background().
type xsyncGroup struct {
	g  xsync.Group
	fn func() (any, error)
}

func newXSync(fn work) group {
	x := &xsyncGroup{}
	x.fn = func() (any, error) { return fn(context.Background()) }
	return x
}

func (g *xsyncGroup) Do(_ context.Context, key string) (int, bool, error) {
	v, err, shared := g.g.Do(key, g.fn)
	n, _ := v.(int)
	return n, shared, err
}
func (g *xsyncGroup) LiveKeys() int { return mapLen(&g.g, "m") }
func (g *xsyncGroup) Close()        {}

// resenjeGroup is resenje.org/singleflight, generic and context-aware like
// flight.
type resenjeGroup struct {
	g  resenje.Group[string, int]
	fn work
}

func newResenje(fn work) group { return &resenjeGroup{fn: fn} }

func (g *resenjeGroup) Do(ctx context.Context, key string) (int, bool, error) {
	return g.g.Do(ctx, key, g.fn)
}
func (g *resenjeGroup) LiveKeys() int { return mapLen(&g.g, "calls") }
func (g *resenjeGroup) Close()        {}

// anyGroup is the API of golang.org/x/sync/singleflight's Group, which
// flight's compat/singleflight copies: BenchmarkCompat calls both through
// it.
type anyGroup interface {
	Do(key string, fn func() (any, error)) (v any, err error, shared bool)
}

// compatImpls are BenchmarkCompat's implementations. flight's is its
// compat/singleflight package, named "flight" so that cmd/compare puts it
// in flight's column.
var compatImpls = []struct {
	name string
	new  func() anyGroup
}{
	{"flight", func() anyGroup { return new(compat.Group) }},
	{"xsync", func() anyGroup { return new(xsync.Group) }},
}

// mapLen returns the length of the map in the unexported field of *ptr
// (reflect may read the length of an unexported field). It panics if the
// field is missing or not a map, so that a change in a peer's internals is
// seen, not measured as 0.
func mapLen(ptr any, field string) int {
	f := reflect.ValueOf(ptr).Elem().FieldByName(field)
	if f.Kind() != reflect.Map {
		panic("bench: " + reflect.TypeOf(ptr).String() + " has no map field " + field)
	}
	return f.Len()
}
