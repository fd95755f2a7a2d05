package actor

import (
	"testing"

	"github.com/stretchr/testify/assert"
)

func TestLimit(t *testing.T) {
	var nilLimit *Limit
	assert.True(t, nilLimit.TryAcquire())
	nilLimit.Release()
	l := NewLimit(2)
	assert.True(t, l.TryAcquire())
	assert.True(t, l.TryAcquire())
	assert.False(t, l.TryAcquire())
	assert.Equal(t, int64(2), l.n.Load())
	l.Release()
	assert.True(t, l.TryAcquire())
	assert.Nil(t, NewLimit(0))
}
