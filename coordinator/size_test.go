package coordinator

import (
	"context"
	"testing"
	"unsafe"

	fa "github.com/actorflight/flight/actor"
)

// TestCallSize and TestOwnerSize keep the two objects that every key in
// flight holds (a Do caller's call, the key's owner with its first flight)
// within the 256-byte size class, for a string key and a word-sized value
// (bench's BenchmarkInFlight): the next class is 288 bytes. A field added to
// either must come with one taken out, or a note here of the cost.
func TestCallSize(t *testing.T) {
	if n := unsafe.Sizeof(call[string, int, int]{}); n > 256 {
		t.Errorf("a call is %d bytes, want at most 256", n)
	}
}

func TestOwnerSize(t *testing.T) {
	if n := unsafe.Sizeof(fa.Owner[string, int]{}); n > 256 {
		t.Errorf("an owner is %d bytes, want at most 256", n)
	}
}

// TestNoWakeChannelUnlessParked: a Do that never has to park (its own post
// handles its join, and fn runs on its goroutine) makes no wake channel,
// 96 bytes that every key in flight held (BenchmarkInFlight). (A caller
// that parks makes one before it says so: the shard's token would
// otherwise go to a nil channel and hang it, as every stampede test would
// show.)
func TestNoWakeChannelUnlessParked(t *testing.T) {
	c := newTest(t, 0)
	fn := func(context.Context) (string, error) { return "v", nil }
	if _, _, err := c.Do(context.Background(), "a", fn); err != nil {
		t.Fatal(err)
	}
	if cl := c.getCall(); cl.w.Wake != nil {
		t.Error("a call that never parked has a wake channel")
	}
}
