package cluster

import (
	"sync"
	"time"

	"github.com/asynkron/protoactor-go/actor"
)

// pidCache remembers where the grains of recently called keys live, so
// that a call for a key resolved before sends its Join at once. An entry
// unused for Config.Idle is dropped: by then the grain it names has
// passivated (it stops after Idle without a call), so the entry could only
// cost a stale send. protoactor's own PidCache drops an entry only when
// the grain was local, or when its member leaves: a member calling keys
// owned by others kept one entry per key ever called, for the life of the
// process.
//
// One timer (time.AfterFunc, no goroutine between sweeps) is armed while
// the cache is non-empty; each sweep drops the entries unused for idle and
// re-arms itself for idle/2. All fields are guarded by mu.
type pidCache struct {
	idle time.Duration

	mu     sync.Mutex
	m      map[pidKey]*pidEntry
	timer  *time.Timer // armed while m is non-empty, nil otherwise
	closed bool        // no timer after close
}

type pidKey struct{ kind, key string }

type pidEntry struct {
	pid  *actor.PID
	used time.Time // the last get or set
}

func newPIDCache(idle time.Duration) *pidCache {
	return &pidCache{idle: idle, m: map[pidKey]*pidEntry{}}
}

func (c *pidCache) get(kind, key string) (*actor.PID, bool) {
	c.mu.Lock()
	defer c.mu.Unlock()
	e, ok := c.m[pidKey{kind, key}]
	if !ok {
		return nil, false
	}
	e.used = time.Now()
	return e.pid, true
}

func (c *pidCache) set(kind, key string, pid *actor.PID) {
	c.mu.Lock()
	defer c.mu.Unlock()
	if c.closed {
		return
	}
	c.m[pidKey{kind, key}] = &pidEntry{pid: pid, used: time.Now()}
	if c.timer == nil {
		c.timer = time.AfterFunc(c.idle/2, c.sweep)
	}
}

// remove drops key's entry if it still names pid.
func (c *pidCache) remove(kind, key string, pid *actor.PID) {
	c.mu.Lock()
	defer c.mu.Unlock()
	k := pidKey{kind, key}
	if e, ok := c.m[k]; ok && e.pid.Equal(pid) {
		delete(c.m, k)
	}
}

// len is the number of entries (tests).
func (c *pidCache) len() int {
	c.mu.Lock()
	defer c.mu.Unlock()
	return len(c.m)
}

func (c *pidCache) sweep() {
	c.mu.Lock()
	defer c.mu.Unlock()
	if c.closed {
		return
	}
	old := time.Now().Add(-c.idle)
	for k, e := range c.m {
		if e.used.Before(old) {
			delete(c.m, k)
		}
	}
	if len(c.m) == 0 {
		c.m = map[pidKey]*pidEntry{} // a map keeps its buckets: let them go
		c.timer = nil
		return
	}
	c.timer.Reset(c.idle / 2)
}

// close drops every entry and stops the timer.
func (c *pidCache) close() {
	c.mu.Lock()
	defer c.mu.Unlock()
	c.closed = true
	if c.timer != nil {
		c.timer.Stop()
		c.timer = nil
	}
	c.m = map[pidKey]*pidEntry{}
}
