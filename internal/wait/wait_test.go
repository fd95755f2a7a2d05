package wait_test

import (
	"fmt"
	"sync"
	"testing"
	"time"

	"github.com/stretchr/testify/assert"

	"github.com/actorflight/flight/internal/wait"
)

// fataler records the failure Done reports instead of ending the test.
type fataler struct{ failed string }

func (*fataler) Helper() {}
func (f *fataler) Fatalf(format string, args ...any) {
	f.failed = fmt.Sprintf(format, args...)
}

func TestDone(t *testing.T) {
	var wg sync.WaitGroup
	wg.Add(1)
	go wg.Done()
	var f fataler
	wait.Done(&f, &wg, wait.Hang, "the goroutine")
	assert.Empty(t, f.failed)

	// A counter that never reaches zero is a hang, reported with what.
	var stuck sync.WaitGroup
	stuck.Add(1)
	wait.Done(&f, &stuck, time.Millisecond, "the stuck one")
	assert.Equal(t, "timed out after 1ms waiting for the stuck one", f.failed)
	stuck.Done() // lets Done's goroutine end
}
