package actor

import (
	"sync"
	"time"
)

// Task is work handed to a [Pool]. *Flight implements it, so handing a flight
// to a worker allocates nothing.
type Task interface{ Run() }

// Linger is how long an idle worker waits for its next task before it exits.
// Long enough that back-to-back flights reuse a warm goroutine (its stack
// already grown), short enough that an idle coordinator holds no goroutine a
// moment after its last flight (DESIGN.md §2 rule 7).
const Linger = 2 * time.Millisecond

// Pool runs tasks on warm worker goroutines and keeps none while idle.
//
// Go hands a task to the most recently parked worker (LIFO keeps the hot
// workers hot and lets the cold ones time out) or starts a new goroutine when
// none is parked; a worker that has waited [Linger] without a task exits. A
// worker handoff costs about one goroutine wake-up (≈ 0.2–0.5 µs); a fresh
// goroutine costs its start plus stack growth on first use.
//
// The zero value is not usable; call [NewPool]. All methods are safe for
// concurrent use. A task that calls runtime.Goexit ends its worker; the pool
// accounts for that (the worker's deferred exit runs).
type Pool struct {
	linger time.Duration

	mu     sync.Mutex // protects the fields below
	idle   []*worker  // parked workers, most recent last
	live   int        // workers alive, parked or running
	closed bool
	gone   chan struct{} // closed when closed && live == 0
}

type worker struct {
	tasks chan Task // capacity 1: a handoff never blocks the giver
	timer *time.Timer
	slot  int // index in p.idle while parked, else -1; protected by p.mu
}

// NewPool returns a pool whose idle workers exit after linger.
func NewPool(linger time.Duration) *Pool {
	return &Pool{linger: linger, gone: make(chan struct{})}
}

// Go runs t on a worker. It reports false, without running t, after Close.
func (p *Pool) Go(t Task) bool {
	p.mu.Lock()
	if p.closed {
		p.mu.Unlock()
		return false
	}
	if n := len(p.idle); n > 0 {
		w := p.idle[n-1]
		p.idle[n-1] = nil
		p.idle = p.idle[:n-1]
		w.slot = -1
		p.mu.Unlock()
		w.tasks <- t
		return true
	}
	p.live++
	p.mu.Unlock()
	w := &worker{tasks: make(chan Task, 1), slot: -1}
	go w.loop(p, t)
	return true
}

// Live returns the number of worker goroutines alive now.
func (p *Pool) Live() int {
	p.mu.Lock()
	defer p.mu.Unlock()
	return p.live
}

// Close stops parked workers, lets running ones finish their task, and waits
// until every worker goroutine has exited. It is idempotent.
func (p *Pool) Close() {
	p.mu.Lock()
	if !p.closed {
		p.closed = true
		for _, w := range p.idle {
			w.slot = -1
			w.tasks <- nil // nil tells a parked worker to exit
		}
		p.idle = nil
		if p.live == 0 {
			close(p.gone)
		}
	}
	p.mu.Unlock()
	<-p.gone
}

func (w *worker) loop(p *Pool, t Task) {
	defer p.exit()
	for t != nil {
		t.Run()
		t = w.park(p)
	}
}

// park puts w on the idle list and waits for its next task; nil means exit.
func (w *worker) park(p *Pool) Task {
	p.mu.Lock()
	if p.closed {
		p.mu.Unlock()
		return nil
	}
	w.slot = len(p.idle)
	p.idle = append(p.idle, w)
	p.mu.Unlock()

	if w.timer == nil {
		w.timer = time.NewTimer(p.linger)
	} else {
		w.timer.Reset(p.linger)
	}
	select {
	case t := <-w.tasks:
		w.timer.Stop()
		return t
	case <-w.timer.C:
	}
	// Timed out: leave the idle list, unless a giver took us off it first, in
	// which case its task is already on the way.
	// Removal is O(1): the last parked worker moves into our slot. That bends
	// LIFO order a little, which only matters for which worker times out next.
	p.mu.Lock()
	if i := w.slot; i >= 0 {
		last := len(p.idle) - 1
		if i != last {
			p.idle[i] = p.idle[last]
			p.idle[i].slot = i
		}
		p.idle[last] = nil
		p.idle = p.idle[:last]
		w.slot = -1
		p.mu.Unlock()
		return nil
	}
	p.mu.Unlock()
	return <-w.tasks
}

func (p *Pool) exit() {
	p.mu.Lock()
	p.live--
	if p.closed && p.live == 0 {
		close(p.gone)
	}
	p.mu.Unlock()
}
