package logroute

import (
	"context"
	"log/slog"
	"testing"
)

// boom panics in every method.
type boom struct{}

func (boom) Enabled(context.Context, slog.Level) bool  { panic("enabled") }
func (boom) Handle(context.Context, slog.Record) error { panic("handle") }
func (boom) WithAttrs([]slog.Attr) slog.Handler        { panic("attrs") }
func (boom) WithGroup(string) slog.Handler             { panic("group") }

// counting records how many records reach it.
type counting struct{ n *int }

func (c counting) Enabled(context.Context, slog.Level) bool  { return true }
func (c counting) Handle(context.Context, slog.Record) error { *c.n++; return nil }
func (c counting) WithAttrs([]slog.Attr) slog.Handler        { return c }
func (c counting) WithGroup(string) slog.Handler             { return c }

func TestSafe(t *testing.T) {
	h := Safe(boom{})
	if h.Enabled(context.Background(), slog.LevelError) {
		t.Error("a panicking Enabled reports true")
	}
	if err := h.Handle(context.Background(), slog.Record{}); err == nil {
		t.Error("a panicking Handle returns no error")
	}
	if got := h.WithAttrs([]slog.Attr{slog.Int("a", 1)}); got != h {
		t.Errorf("a panicking WithAttrs returns %v, want the handler itself", got)
	}
	if got := h.WithGroup("g"); got != h {
		t.Errorf("a panicking WithGroup returns %v, want the handler itself", got)
	}
	slog.New(h).Error("dropped") // must not panic

	if Safe(h) != h {
		t.Error("Safe of a Safe handler wraps it again")
	}
	if _, ok := Inner(h).(boom); !ok {
		t.Errorf("Inner = %T, want the wrapped handler", Inner(h))
	}
	var b slog.Handler = boom{}
	if _, ok := Inner(b).(boom); !ok {
		t.Error("Inner of an unwrapped handler is not the handler")
	}

	n := 0
	l := slog.New(Safe(counting{&n})).With("k", "v").WithGroup("g")
	l.Info("one")
	if n != 1 {
		t.Errorf("a working handler got %d records through Safe, want 1", n)
	}
}
