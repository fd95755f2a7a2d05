package cluster

import (
	"testing"
	"testing/synctest"
	"time"

	"github.com/asynkron/protoactor-go/actor"
	"github.com/stretchr/testify/assert"
)

// An entry unused for idle is dropped by the sweep timer; one in use stays;
// the timer stops once the cache is empty; remove drops only the PID named.
func TestPIDCacheExpires(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		c := newPIDCache(time.Second)
		a, b := actor.NewPID("h:1", "a"), actor.NewPID("h:1", "b")
		c.set("k", "a", a)
		c.set("k", "b", b)
		for range 4 { // keep b in use
			time.Sleep(400 * time.Millisecond)
			_, ok := c.get("k", "b")
			assert.True(t, ok)
		}
		synctest.Wait()
		_, ok := c.get("k", "a")
		assert.False(t, ok, "a unused for more than idle")
		assert.Equal(t, 1, c.len())
		c.remove("k", "b", a)
		assert.Equal(t, 1, c.len(), "remove of another PID")
		time.Sleep(2 * time.Second)
		synctest.Wait()
		assert.Equal(t, 0, c.len())
		c.mu.Lock()
		assert.Nil(t, c.timer, "no timer while empty")
		c.mu.Unlock()
		c.set("k", "a", a)
		c.close()
		assert.Equal(t, 0, c.len())
	})
}
