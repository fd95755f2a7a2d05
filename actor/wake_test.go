package actor

import (
	"testing"

	"github.com/stretchr/testify/assert"
)

// A signal given before the caller looks costs no token; one given to a
// parked caller sends exactly one; the channel is empty after each call.
func TestSignalsSendTokensOnlyToParkedCallers(t *testing.T) {
	for round := range 200 {
		w := &Waiter[string, int]{Wake: make(chan struct{}, 2)}
		w.Signal() // the join, handled before the caller looked
		assert.False(t, w.Park(1))
		assert.Empty(t, w.Wake, "a token for a caller that never parked")
		parked := make(chan bool)
		go func() {
			p := w.Park(2)
			parked <- p
			if p {
				<-w.Wake
			}
			close(parked)
		}()
		if round%2 == 0 {
			<-parked // parked (or not) before the signal
			w.Signal()
		} else {
			w.Signal() // racing with Park
			<-parked
		}
		<-parked // closed once the caller has its signal
		assert.True(t, w.Signalled(2))
		assert.Empty(t, w.Wake, "round %d: tokens left on a finished call", round)
	}
}
