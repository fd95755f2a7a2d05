package flight

import (
	"context"
	"fmt"
	"log/slog"
	"strings"
	"testing"
	"time"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"
	"go.opentelemetry.io/otel/attribute"
	metricnoop "go.opentelemetry.io/otel/metric/noop"
	tracenoop "go.opentelemetry.io/otel/trace/noop"

	"github.com/actorflight/flight/internal/hooks"
	"github.com/actorflight/flight/internal/shared"
)

// validOptions holds one valid instance of every option, by the name of the
// function that makes it.
func validOptions() map[string]Option {
	return map[string]Option{
		"WithTimeout":              WithTimeout(time.Second),
		"WithMaxWaiters":           WithMaxWaiters(1),
		"WithMaxInFlight":          WithMaxInFlight(1),
		"WithShards":               WithShards(2),
		"WithActorSystem":          WithActorSystem(shared.System()),
		"WithLogger":               WithLogger(slog.New(slog.DiscardHandler)),
		"WithMeterProvider":        WithMeterProvider(metricnoop.NewMeterProvider()),
		"WithMetricAttributes":     WithMetricAttributes(attribute.String("k", "v")),
		"WithTracerProvider":       WithTracerProvider(tracenoop.NewTracerProvider()),
		"WithTTL":                  WithTTL(time.Minute),
		"WithErrorTTL":             WithErrorTTL(time.Minute),
		"WithRefreshAhead":         WithRefreshAhead(time.Second),
		"WithMaxEntries":           WithMaxEntries(10),
		"WithStaleIfError":         WithStaleIfError(time.Minute),
		"WithBreaker":              WithBreaker(1, time.Second),
		"WithRetry":                WithRetry(2, nil),
		"WithRetryIf":              WithRetryIf(func(error) bool { return true }),
		"WithScope":                WithScope(func(context.Context) any { return 1 }),
		"WithMaxBatch":             WithMaxBatch(10),
		"WithMaxWait":              WithMaxWait(time.Millisecond),
		"WithMaxConcurrentBatches": WithMaxConcurrentBatches(1),
		"hooks.ForgetOverlaps":     hooks.ForgetOverlaps().(Option),
		"hooks.PrivateCtx":         hooks.PrivateCtx().(Option),
		"hooks.PanicErrors":        hooks.PanicErrors(newPanicError).(Option),
	}
}

// Every option has its rule, named after the function that makes it, and
// every rule has an option.
func TestRulesNameEveryOption(t *testing.T) {
	seen := map[optionID]bool{}
	for name, o := range validOptions() {
		id := o.(*option).id
		assert.Equal(t, name, rules[id].name)
		assert.NotZero(t, rules[id].takes, name)
		if rules[id].takes&forBatcher == 0 {
			assert.NotEmpty(t, rules[id].refused, "%s: NewBatcher's message", name)
		}
		seen[id] = true
	}
	assert.Len(t, seen, int(numOptions), "an option without a rule, or a rule without an option")
}

// construct calls ctor with opts and returns what it panicked with ("" when
// it did not panic).
func construct(ctor constructor, opts ...Option) (panicked string) {
	defer func() {
		if r := recover(); r != nil {
			panicked = fmt.Sprint(r)
		}
	}()
	if ctor == forNew {
		_ = New[string, int](opts...).Close()
	} else {
		_ = NewBatcher(func(context.Context, []string) (map[string]int, error) { return nil, nil }, opts...).Close()
	}
	return ""
}

// An option given to a constructor that does not take it panics there,
// naming it, whatever its value; one the constructor takes does not.
func TestOptionsRefusedByTheOtherConstructor(t *testing.T) {
	for name, o := range validOptions() {
		needs := []Option{o}
		switch name {
		case "WithRefreshAhead", "WithStaleIfError":
			needs = append(needs, WithTTL(time.Minute))
		}
		for _, ctor := range []constructor{forNew, forBatcher} {
			msg := construct(ctor, needs...)
			if rules[o.(*option).id].takes&ctor != 0 {
				assert.Empty(t, msg, "%s refused by the constructor that takes it", name)
				continue
			}
			assert.True(t, strings.HasPrefix(msg, "flight: "), "%s: %q", name, msg)
			assert.Contains(t, msg, name)
		}
	}
}

// An argument out of range panics in the constructor with a message that
// spells the option's call; so does one overridden by a later valid one.
func TestOptionMessagesNameTheCall(t *testing.T) {
	for want, opts := range map[string][]Option{
		"flight: WithTimeout(-1ns): negative duration":                                  {WithTimeout(-1)},
		"flight: WithMaxWaiters(-1): negative bound":                                    {WithMaxWaiters(-1)},
		"flight: WithMaxInFlight(-2): negative bound":                                   {WithMaxInFlight(-2)},
		"flight: WithShards(0): out of range [1, 65536]":                                {WithShards(0)},
		"flight: WithShards(65537): out of range [1, 65536]":                            {WithShards(1<<16 + 1)},
		"flight: WithActorSystem(nil)":                                                  {WithActorSystem(nil)},
		"flight: WithMeterProvider(nil)":                                                {WithMeterProvider(nil)},
		"flight: WithTracerProvider(nil)":                                               {WithTracerProvider(nil)},
		"flight: WithTTL(-1s): negative duration":                                       {WithTTL(-time.Second)},
		"flight: WithErrorTTL(-1ns): negative duration":                                 {WithErrorTTL(-1)},
		"flight: WithMaxEntries(0): need at least 1":                                    {WithMaxEntries(0)},
		"flight: WithStaleIfError(0s): need a positive duration":                        {WithTTL(time.Second), WithStaleIfError(0)},
		"flight: WithBreaker(1, 0s): need failures >= 1 and cooldown > 0":               {WithBreaker(1, 0)},
		"flight: WithRetry(0, …): attempts must be at least 1":                          {WithRetry(0, nil)},
		"flight: WithRetryIf(nil)":                                                      {WithRetryIf(nil)},
		"flight: WithScope(nil)":                                                        {WithScope(nil)},
		"flight: WithTTL(-1ns): negative duration, overridden":                          {WithTTL(-1), WithTTL(time.Second)},
		"flight: WithRefreshAhead(2s) needs WithTTL(t) with 0 < 2s < t (WithTTL is 1s)": {WithTTL(time.Second), WithRefreshAhead(2 * time.Second)},
		"flight: WithStaleIfError(1s) needs WithTTL":                                    {WithStaleIfError(time.Second)},
	} {
		want, _, _ = strings.Cut(want, ", overridden")
		assert.Equal(t, want, construct(forNew, opts...))
	}
	for want, opts := range map[string][]Option{
		"flight: WithMaxBatch(0): a batch holds at least one key":    {WithMaxBatch(0)},
		"flight: WithMaxWait(-1ns): negative duration":               {WithMaxWait(-1)},
		"flight: WithMaxConcurrentBatches(-1): negative bound":       {WithMaxConcurrentBatches(-1)},
		"flight: WithMaxBatch(0): a batch holds at least one key, ≠": {WithMaxWaiters(1), WithMaxBatch(0)},
	} {
		want, _, _ = strings.Cut(want, ", ≠")
		assert.Equal(t, want, construct(forBatcher, opts...))
	}
	require.Equal(t, "flight: WithMaxWaiters applies to New, not to NewBatcher", construct(forBatcher, WithMaxWaiters(0)))
	require.Equal(t, "flight: NewBatcher: WithRetry does not apply to a Batcher", construct(forBatcher, WithRetry(1, nil)))
	require.Equal(t, "flight: WithMaxWait applies to NewBatcher, not to New", construct(forNew, WithMaxWait(0)))
}
