package singleflight_test

import (
	"errors"
	"runtime"
	"strings"
	"testing"

	"github.com/stretchr/testify/assert"
	xsync "golang.org/x/sync/singleflight"

	"github.com/actorflight/flight/compat/singleflight"
)

// outcome is what a caller of Do can observe.
type outcome struct {
	Val       any
	Err       string // err.Error(), "" for nil
	IsBoom    bool   // errors.Is(err, errBoom)
	Shared    bool
	Returned  bool   // Do returned (no panic, no Goexit)
	Panicked  bool   // Do panicked
	PanicMsg  string // the panic error's message up to its stack
	PanicBoom bool   // errors.Is(panic value, errBoom)
	PanicErr  bool   // the panic value is an error
}

var errBoom = errors.New("boom")

// observe runs do on a fresh goroutine and records how it ended.
func observe(do func() (any, error, bool)) outcome {
	ch := make(chan outcome, 1)
	go func() {
		var o outcome
		defer func() {
			if r := recover(); r != nil {
				o.Panicked = true
				if err, ok := r.(error); ok {
					o.PanicErr = true
					o.PanicBoom = errors.Is(err, errBoom)
					o.PanicMsg, _, _ = strings.Cut(err.Error(), "\n\n")
				}
			}
			ch <- o
		}()
		v, err, shared := do()
		o.Val, o.Shared, o.Returned = v, shared, true
		if err != nil {
			o.Err, o.IsBoom = err.Error(), errors.Is(err, errBoom)
		}
	}()
	return <-ch
}

// TestSameAsXSync runs the same single-caller cases against x/sync and this
// package and compares what the caller observes.
func TestSameAsXSync(t *testing.T) {
	cases := map[string]func() (any, error){
		"value":           func() (any, error) { return 7, nil },
		"error":           func() (any, error) { return nil, errBoom },
		"value and error": func() (any, error) { return "partial", errBoom },
		"typed nil":       func() (any, error) { return (*int)(nil), nil },
		"panic string":    func() (any, error) { panic("bad") },
		"panic error":     func() (any, error) { panic(errBoom) },
		"panic wrapped":   func() (any, error) { panic(errors.Join(errors.New("ctx"), errBoom)) },
		"goexit":          func() (any, error) { runtime.Goexit(); return nil, nil },
		"nil fn":          nil,
	}
	for name, fn := range cases {
		t.Run(name, func(t *testing.T) {
			var x xsync.Group
			var c singleflight.Group
			want := observe(func() (any, error, bool) { return x.Do("k", fn) })
			got := observe(func() (any, error, bool) { return c.Do("k", fn) })
			assert.Equal(t, want, got)
			if name != "goexit" && name != "nil fn" && !strings.HasPrefix(name, "panic") {
				wantR := <-x.DoChan("k", fn)
				gotR := <-c.DoChan("k", fn)
				assert.Equal(t, singleflight.Result(wantR), gotR, "DoChan")
			}
		})
	}
	idle(t)
}
