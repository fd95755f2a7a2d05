package actor

import (
	"testing"

	"github.com/stretchr/testify/assert"
)

func TestLimit(t *testing.T) {
	var nilLimit *Limit
	assert.True(t, nilLimit.tryAcquire())
	nilLimit.release()
	l := NewLimit(2)
	assert.True(t, l.tryAcquire())
	assert.True(t, l.tryAcquire())
	assert.False(t, l.tryAcquire())
	assert.Equal(t, int64(2), l.n.Load())
	l.release()
	assert.True(t, l.tryAcquire())
	assert.Nil(t, NewLimit(0))
}
