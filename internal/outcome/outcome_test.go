package outcome

import (
	"runtime"
	"strings"
	"sync"
	"testing"

	"go.uber.org/goleak"
)

func TestMain(m *testing.M) { goleak.VerifyTestMain(m) }

type task struct {
	call  func()
	how   How
	value any
	stack []byte
	ended int
}

func (t *task) Call() { t.call() }
func (t *task) Ended(how How, value any, stack []byte) {
	t.how, t.value, t.stack = how, value, stack
	t.ended++
}

func TestRun(t *testing.T) {
	ret := &task{call: func() {}}
	Run(ret)
	if ret.ended != 1 || ret.how != Returned || ret.value != nil {
		t.Fatalf("a return: %+v", ret)
	}
	p := &task{call: func() { panic("boom") }}
	Run(p)
	if p.ended != 1 || p.how != Panicked || p.value != "boom" || !strings.Contains(string(p.stack), "outcome_test.go") {
		t.Fatalf("a panic: how %v, value %v, stack %q", p.how, p.value, p.stack)
	}
	// A panic with a nil value is a panic too (a *runtime.PanicNilError).
	pn := &task{call: func() { panic(nil) }}
	Run(pn)
	if pn.how != Panicked {
		t.Fatalf("panic(nil): how %v", pn.how)
	}
	x := &task{call: runtime.Goexit}
	var wg sync.WaitGroup
	wg.Go(func() { Run(x); t.Error("Run returned after a Goexit") })
	wg.Wait()
	if x.ended != 1 || x.how != Exited {
		t.Fatalf("a Goexit: %+v", x)
	}
}
