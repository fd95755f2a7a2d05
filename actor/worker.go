package actor

import (
	"sync"
	"time"
)

// task is work handed to a [Pool]. *Flight implements it, so handing a flight
// to a worker allocates nothing.
type task interface{ Run() }

// Linger is how long an idle worker may wait for its next task before it
// exits: between one and two Lingers. Long enough that back-to-back flights
// reuse a warm goroutine (its stack already grown), short enough that an idle
// coordinator holds no goroutine a moment after its last flight.
const Linger = 2 * time.Millisecond

// Pool runs tasks on warm worker goroutines and keeps none while idle.
//
// Go hands a task to the most recently parked worker (LIFO keeps the hot
// workers hot and the cold ones at the bottom of the stack) or starts a new
// goroutine when none is parked. A parked worker waits on its own channel
// only; there is no timer per park. Instead one timer per pool, armed while
// workers are parked, fires every Linger and stops the workers that stayed
// parked through the whole interval: the stack's low-water mark since the
// previous tick says how many of the bottom ones were never used. That is
// cheaper than a select on a timer per park, and an idle worker still exits
// within 2×Linger.
//
// The zero value is not usable; call [NewPool]. All methods are safe for
// concurrent use. A task that calls runtime.Goexit ends its worker; the pool
// accounts for that (the worker's deferred exit runs).
type Pool struct {
	linger time.Duration

	mu     sync.Mutex // protects the fields below
	idle   []*worker  // parked workers, most recent last
	low    int        // fewest parked workers since the last reap
	reaper *time.Timer
	armed  bool // reaper is scheduled
	live   int  // workers alive, parked or running
	closed bool
	gone   chan struct{} // closed when closed && live == 0
}

type worker struct {
	tasks chan task // capacity 1: a handoff never blocks the giver; nil task: exit. Set under p.mu.
}

// NewPool returns a pool whose idle workers exit after linger to 2×linger.
func NewPool(linger time.Duration) *Pool {
	p := &Pool{linger: linger, gone: make(chan struct{})}
	p.reaper = time.AfterFunc(time.Hour, p.reap)
	p.reaper.Stop()
	return p
}

// Go runs t on a worker. It reports false, without running t, after Close.
func (p *Pool) Go(t task) bool {
	p.mu.Lock()
	if p.closed {
		p.mu.Unlock()
		return false
	}
	if n := len(p.idle); n > 0 {
		w := p.idle[n-1]
		p.idle[n-1] = nil
		p.idle = p.idle[:n-1]
		if n-1 < p.low {
			p.low = n - 1
		}
		p.mu.Unlock()
		w.tasks <- t
		return true
	}
	p.live++
	p.mu.Unlock()
	w := new(worker) // its channel is made when it first parks
	go w.loop(p, t)
	return true
}

// Close stops parked workers, lets running ones finish their task, and waits
// until every worker goroutine has exited. It is idempotent.
func (p *Pool) Close() {
	p.mu.Lock()
	if !p.closed {
		p.closed = true
		p.reaper.Stop()
		for _, w := range p.idle {
			w.tasks <- nil
		}
		p.idle = nil
		if p.live == 0 {
			close(p.gone)
		}
	}
	p.mu.Unlock()
	<-p.gone
}

func (w *worker) loop(p *Pool, t task) {
	defer p.exit()
	for t != nil {
		t.Run()
		if !p.park(w) {
			return
		}
		t = <-w.tasks
	}
}

// park puts w on the idle stack; false means the pool is closed.
func (p *Pool) park(w *worker) bool {
	p.mu.Lock()
	defer p.mu.Unlock()
	if p.closed {
		return false
	}
	if w.tasks == nil {
		// Made on the first park, not at start: with many flights running at
		// once (a burst of distinct keys) none of those workers has parked
		// yet, and each saves 96 bytes.
		w.tasks = make(chan task, 1)
	}
	p.idle = append(p.idle, w)
	if !p.armed {
		p.armed = true
		p.low = len(p.idle)
		p.reaper.Reset(p.linger)
	}
	return true
}

// reap stops the workers that stayed parked for a whole interval: the low
// bottom ones of the stack.
func (p *Pool) reap() {
	p.mu.Lock()
	defer p.mu.Unlock()
	if p.closed {
		return
	}
	n := min(p.low, len(p.idle))
	for i, w := range p.idle[:n] {
		w.tasks <- nil
		p.idle[i] = nil
	}
	p.idle = append(p.idle[:0], p.idle[n:]...)
	clear(p.idle[len(p.idle):cap(p.idle)][:n])
	p.low = len(p.idle)
	if len(p.idle) > 0 {
		p.reaper.Reset(p.linger)
	} else {
		p.armed = false
	}
}

func (p *Pool) exit() {
	p.mu.Lock()
	p.live--
	if p.closed && p.live == 0 {
		close(p.gone)
	}
	p.mu.Unlock()
}
