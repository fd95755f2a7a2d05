package flight

import (
	"context"
	"fmt"
	"log/slog"
	"strings"
	"time"

	"github.com/asynkron/protoactor-go/actor"
	"go.opentelemetry.io/otel/attribute"
	"go.opentelemetry.io/otel/metric"
	"go.opentelemetry.io/otel/trace"

	"github.com/actorflight/flight/coordinator"
	"github.com/actorflight/flight/internal/hooks"
	"github.com/actorflight/flight/internal/logroute"
	"github.com/actorflight/flight/internal/shared"
)

// Option configures a Coordinator or a Batcher; pass options to New or
// NewBatcher. Each option's doc says which constructors take it, its
// default and its range.
type Option interface{ apply(*config) }

// config is what the options set, with the constructor's defaults.
type config struct {
	given       optionSet // the options given, whatever their values
	timeout     time.Duration
	maxWaiters  int
	maxInFlight int
	shards      int
	system      *actor.ActorSystem
	logger      *slog.Logger
	telemetry   telemetryConfig // WithMeterProvider, WithMetricAttributes
	retain      coordinator.RetainConfig
	batch       batchConfig // WithMaxBatch, WithMaxWait, WithMaxConcurrentBatches, WithScope
	attempts    int         // WithRetry; 0: once
	backoff     func(n int) time.Duration
	retryable   func(error) bool          // WithRetryIf; nil: defaultRetryable
	stale       time.Duration             // WithStaleIfError; 0: none
	breaker     coordinator.BreakerConfig // WithBreaker; zero: none

	tracer trace.TracerProvider // WithTracerProvider; nil: no tracing

	// For compat/singleflight only, through package hooks.
	forgetOverlaps bool                                // hooks.ForgetOverlaps
	privateCtx     bool                                // hooks.PrivateCtx
	panicErr       func(value any, stack []byte) error // hooks.PanicErrors; default: a *PanicError
}

// batchConfig is what the Batcher's options set.
type batchConfig struct {
	maxBatch      int
	maxWait       time.Duration
	maxConcurrent int
	scope         func(ctx context.Context) any // WithScope; nil: none
}

// The Batcher's defaults.
const (
	defaultMaxBatch = 100
	defaultMaxWait  = time.Millisecond
)

// optionID names an option.
type optionID uint8

const (
	optTimeout optionID = iota
	optMaxWaiters
	optMaxInFlight
	optShards
	optActorSystem
	optLogger
	optMeterProvider
	optMetricAttributes
	optTracerProvider
	optTTL
	optErrorTTL
	optRefreshAhead
	optMaxEntries
	optStaleIfError
	optBreaker
	optRetry
	optRetryIf
	optScope
	optMaxBatch
	optMaxWait
	optMaxConcurrentBatches
	optForgetOverlaps
	optPrivateCtx
	optPanicErrors
	numOptions
)

// optionSet is a set of options.
type optionSet uint32

func (s optionSet) has(id optionID) bool { return s&(1<<id) != 0 }

// constructor is New or NewBatcher.
type constructor uint8

const (
	forNew constructor = 1 << iota
	forBatcher
	forBoth = forNew | forBatcher
)

// A rule is an option's name, the constructors that take it, and what its
// arguments must be.
type rule struct {
	name  string
	takes constructor
	// check returns what is wrong with o's arguments, "" when nothing is;
	// nil: every argument is valid.
	check func(o option) string
	// refused is the message of NewBatcher refusing the option: a
	// Coordinator's bound names its constructors, the other options of a
	// Coordinator only say that they do not apply.
	refused string
}

func nonNegativeDuration(o option) string {
	if o.d < 0 {
		return "negative duration"
	}
	return ""
}

func positiveDuration(o option) string {
	if o.d <= 0 {
		return "need a positive duration"
	}
	return ""
}

func nonNegativeBound(o option) string {
	if o.n < 0 {
		return "negative bound"
	}
	return ""
}

func notNil(o option) string {
	if o.isNil {
		return "nil argument"
	}
	return ""
}

const (
	appliesToNew     = "flight: %s applies to New, not to NewBatcher"
	notForBatcher    = "flight: NewBatcher: %s does not apply to a Batcher"
	appliesToBatcher = "flight: %s applies to NewBatcher, not to New"
)

// rules holds every option's rule, each written once; validate applies
// them.
var rules = [numOptions]rule{
	optTimeout:          {name: "WithTimeout", takes: forBoth, check: nonNegativeDuration},
	optMaxWaiters:       {name: "WithMaxWaiters", takes: forNew, check: nonNegativeBound, refused: appliesToNew},
	optMaxInFlight:      {name: "WithMaxInFlight", takes: forNew, check: nonNegativeBound, refused: appliesToNew},
	optShards:           {name: "WithShards", takes: forBoth, check: shardsInRange},
	optActorSystem:      {name: "WithActorSystem", takes: forBoth, check: notNil},
	optLogger:           {name: "WithLogger", takes: forBoth},
	optMeterProvider:    {name: "WithMeterProvider", takes: forBoth, check: notNil},
	optMetricAttributes: {name: "WithMetricAttributes", takes: forBoth},
	optTracerProvider:   {name: "WithTracerProvider", takes: forBoth, check: notNil},
	optTTL:              {name: "WithTTL", takes: forBoth, check: nonNegativeDuration},
	optErrorTTL:         {name: "WithErrorTTL", takes: forBoth, check: nonNegativeDuration},
	optRefreshAhead:     {name: "WithRefreshAhead", takes: forBoth}, // checked against WithTTL in validate
	optMaxEntries: {name: "WithMaxEntries", takes: forBoth, check: func(o option) string {
		if o.n < 1 {
			return "need at least 1"
		}
		return ""
	}},
	optStaleIfError: {name: "WithStaleIfError", takes: forBoth, check: positiveDuration},
	optBreaker: {name: "WithBreaker", takes: forNew, refused: notForBatcher, check: func(o option) string {
		if o.n < 1 || o.d <= 0 {
			return "need failures >= 1 and cooldown > 0"
		}
		return ""
	}},
	optRetry: {name: "WithRetry", takes: forNew, refused: notForBatcher, check: func(o option) string {
		if o.n < 1 {
			return "attempts must be at least 1"
		}
		return ""
	}},
	optRetryIf: {name: "WithRetryIf", takes: forNew, refused: notForBatcher, check: notNil},
	optScope:   {name: "WithScope", takes: forBoth, check: notNil},
	optMaxBatch: {name: "WithMaxBatch", takes: forBatcher, check: func(o option) string {
		if o.n < 1 {
			return "a batch holds at least one key"
		}
		return ""
	}},
	optMaxWait:              {name: "WithMaxWait", takes: forBatcher, check: nonNegativeDuration},
	optMaxConcurrentBatches: {name: "WithMaxConcurrentBatches", takes: forBatcher, check: nonNegativeBound},
	optForgetOverlaps:       {name: "hooks.ForgetOverlaps", takes: forNew, refused: notForBatcher},
	optPrivateCtx:           {name: "hooks.PrivateCtx", takes: forNew, refused: notForBatcher},
	optPanicErrors:          {name: "hooks.PanicErrors", takes: forNew, refused: notForBatcher},
}

func shardsInRange(o option) string {
	if o.n < 1 || o.n > 1<<16 {
		return "out of range [1, 65536]"
	}
	return ""
}

// option is every Option: which one it is and its arguments.
type option struct {
	id    optionID
	d     time.Duration // a duration argument
	n     int           // an int argument
	p     any           // any other argument, typed (a nil func or pointer is a typed nil)
	isNil bool          // p holds a nil pointer, func or interface
}

// apply sets the option's fields of c; it never panics (validate checks the
// arguments).
func (o *option) apply(c *config) {
	c.given |= 1 << o.id
	switch o.id {
	case optTimeout:
		c.timeout = o.d
	case optMaxWaiters:
		c.maxWaiters = o.n
	case optMaxInFlight:
		c.maxInFlight = o.n
	case optShards:
		c.shards = o.n
	case optActorSystem:
		c.system = o.p.(*actor.ActorSystem)
	case optLogger:
		c.logger = o.p.(*slog.Logger)
	case optMeterProvider:
		c.telemetry.provider, _ = o.p.(metric.MeterProvider)
	case optMetricAttributes:
		c.telemetry.attrs = append(c.telemetry.attrs, o.p.([]attribute.KeyValue)...)
	case optTracerProvider:
		c.tracer, _ = o.p.(trace.TracerProvider)
	case optTTL:
		c.retain.TTL = o.d
	case optErrorTTL:
		c.retain.ErrorTTL = o.d
	case optRefreshAhead:
		c.retain.RefreshAhead = o.d
	case optMaxEntries:
		c.retain.MaxEntries = o.n
	case optStaleIfError:
		c.stale = o.d
	case optBreaker:
		c.breaker.Failures, c.breaker.Cooldown = o.n, o.d
	case optRetry:
		c.attempts, c.backoff = o.n, o.p.(func(int) time.Duration)
	case optRetryIf:
		c.retryable = o.p.(func(error) bool)
	case optScope:
		c.batch.scope = o.p.(func(context.Context) any)
	case optMaxBatch:
		c.batch.maxBatch = o.n
	case optMaxWait:
		c.batch.maxWait = o.d
	case optMaxConcurrentBatches:
		c.batch.maxConcurrent = o.n
	case optForgetOverlaps:
		c.forgetOverlaps = true
	case optPrivateCtx:
		c.privateCtx = true
	case optPanicErrors:
		c.panicErr = o.p.(func(any, []byte) error)
	}
}

// call spells the option as it was called, for a message: WithTimeout(-1s).
func (o *option) call() string {
	var args []string
	switch o.id {
	case optMaxWaiters, optMaxInFlight, optShards, optMaxEntries, optMaxBatch, optMaxConcurrentBatches:
		args = []string{fmt.Sprint(o.n)}
	case optBreaker:
		args = []string{fmt.Sprint(o.n), fmt.Sprint(o.d)}
	case optRetry:
		args = []string{fmt.Sprint(o.n), "…"}
	default:
		if o.isNil {
			args = []string{"nil"}
		} else {
			args = []string{fmt.Sprint(o.d)}
		}
	}
	return rules[o.id].name + "(" + strings.Join(args, ", ") + ")"
}

func init() {
	hooks.ForgetOverlaps = func() any { return &option{id: optForgetOverlaps} }
	hooks.PrivateCtx = func() any { return &option{id: optPrivateCtx} }
	hooks.PanicErrors = func(mk func(value any, stack []byte) error) any {
		return &option{id: optPanicErrors, p: mk, isNil: mk == nil}
	}
}

// newConfig returns the configuration opts make for the constructor ctor,
// or panics with a message that names the option at fault: the first
// option (in the order given) whose arguments are out of range, then the
// first that ctor does not take, then the options that need one another.
func newConfig(ctor constructor, opts []Option) config {
	c := config{shards: shared.DefaultShards(), logger: discard, panicErr: newPanicError}
	if ctor == forBatcher {
		c.batch = batchConfig{maxBatch: defaultMaxBatch, maxWait: defaultMaxWait}
	}
	for _, o := range opts {
		// *option is the only Option (apply is unexported); calling apply
		// on it, not on the interface, keeps c off the heap.
		o, _ := o.(*option)
		if o == nil {
			panic("flight: a nil Option")
		}
		if r := rules[o.id]; r.check != nil {
			// By value: a check is called through a func value, which
			// would make every option given escape to the heap (one
			// allocation per option per constructor call).
			if msg := r.check(*o); msg != "" && o.isNil {
				panic("flight: " + o.call()) // WithScope(nil) says it all
			} else if msg != "" {
				panic("flight: " + o.call() + ": " + msg)
			}
		}
		o.apply(&c)
	}
	for _, o := range opts {
		o := o.(*option) // not nil: the loop above panicked
		if rules[o.id].takes&ctor != 0 {
			continue
		}
		if ctor == forNew {
			panic(fmt.Sprintf(appliesToBatcher, rules[o.id].name))
		}
		panic(fmt.Sprintf(rules[o.id].refused, rules[o.id].name))
	}
	c.validate()
	return c
}

// validate checks the options that need one another and sets the defaults
// that depend on what was given.
func (c *config) validate() {
	r := &c.retain
	if c.given.has(optRefreshAhead) && (r.RefreshAhead <= 0 || r.RefreshAhead >= r.TTL) {
		panic(fmt.Sprintf("flight: WithRefreshAhead(%v) needs WithTTL(t) with 0 < %v < t (WithTTL is %v)",
			r.RefreshAhead, r.RefreshAhead, r.TTL))
	}
	if c.stale > 0 && r.TTL <= 0 {
		panic(fmt.Sprintf("flight: WithStaleIfError(%v) needs WithTTL", c.stale))
	}
	if r.MaxEntries == 0 {
		r.MaxEntries = DefaultMaxEntries
	}
	r.Retainable = retainableErr
	r.Stale = c.stale
	if c.logger == nil {
		c.logger = discard
	} else if c.logger != discard {
		c.logger = slog.New(logroute.Safe(c.logger.Handler()))
	}
	if c.retryable == nil {
		c.retryable = defaultRetryable
	}
}
