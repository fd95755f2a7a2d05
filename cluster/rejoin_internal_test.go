package cluster

import (
	"bytes"
	"log/slog"
	"strings"
	"testing"
	"testing/synctest"
	"time"

	pcluster "github.com/asynkron/protoactor-go/cluster"
	"github.com/asynkron/protoactor-go/remote"
	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"
)

// A member dropped without leaving is logged at WARN and taken out of
// protoactor's block list (so that it can rejoin); one that gossiped a
// graceful leave stays blocked; a dropped member coming back is logged.
func TestRejoinerUnblocksDroppedMembers(t *testing.T) {
	bl := remote.NewBlockList()
	var out bytes.Buffer
	log := slog.New(slog.NewTextHandler(&out, &slog.HandlerOptions{Level: slog.LevelWarn}))
	r := newRejoiner("self", log, func() *remote.BlockList { return bl })
	frozen := &pcluster.Member{Id: "frozen", Host: "127.0.0.1", Port: 1}
	gone := &pcluster.Member{Id: "gone", Host: "127.0.0.1", Port: 2}
	self := &pcluster.Member{Id: "self", Host: "127.0.0.1", Port: 3}

	r.gossip(&pcluster.GossipUpdate{MemberID: "gone", Key: pcluster.GracefullyLeftKey})
	bl.Block("frozen", "gone") // what MemberList.UpdateClusterTopology does to members that left
	r.topology(&pcluster.ClusterTopology{Members: []*pcluster.Member{self}, Left: []*pcluster.Member{frozen, gone}})
	assert.False(t, bl.IsBlocked("frozen"), "dropped without leaving: unblocked")
	assert.True(t, bl.IsBlocked("gone"), "left gracefully: still blocked")
	assert.Equal(t, 1, bl.Len())
	logs := out.String()
	assert.Contains(t, logs, "level=WARN")
	assert.Contains(t, logs, "was dropped without leaving")
	assert.Contains(t, logs, "id=frozen")
	assert.NotContains(t, logs, "id=gone")
	assert.Contains(t, logs, "lost every other member")

	out.Reset()
	r.topology(&pcluster.ClusterTopology{Members: []*pcluster.Member{self, frozen}, Joined: []*pcluster.Member{frozen}})
	assert.Contains(t, out.String(), "a dropped member rejoined")
	assert.Equal(t, 1, strings.Count(out.String(), "\n"))
}

// unblockMembers refuses a BlockList it does not know instead of writing
// into it; the real one is known.
func TestUnblockMembersKnowsTheBlockList(t *testing.T) {
	bl := remote.NewBlockList()
	bl.Block("a", "b")
	require.NoError(t, unblockMembers(bl, "a"))
	assert.False(t, bl.IsBlocked("a"))
	assert.True(t, bl.IsBlocked("b"))
}

// A dropped member blocked again while it is out (the gossip's heartbeat
// expiry, which publishes no topology event) is unblocked again by the
// check timer, until rejoinWindow after its drop; then the timer stops.
func TestRejoinerUnblocksAgainWhileOut(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		bl := remote.NewBlockList()
		r := newRejoiner("self", slog.New(slog.DiscardHandler), func() *remote.BlockList { return bl })
		frozen := &pcluster.Member{Id: "frozen", Host: "127.0.0.1", Port: 1}
		bl.Block("frozen")
		r.topology(&pcluster.ClusterTopology{Left: []*pcluster.Member{frozen}})
		require.False(t, bl.IsBlocked("frozen"))
		bl.Block("frozen") // the heartbeat expiry
		time.Sleep(rejoinCheck + time.Millisecond)
		synctest.Wait()
		assert.False(t, blocked(bl, "frozen"), "unblocked again")
		time.Sleep(rejoinWindow + 2*rejoinCheck)
		synctest.Wait()
		bl.Block("frozen")
		time.Sleep(2 * rejoinCheck)
		synctest.Wait()
		assert.True(t, blocked(bl, "frozen"), "past the window: taken for dead")
		r.mu.Lock()
		assert.Nil(t, r.timer, "no timer once nobody is out")
		r.mu.Unlock()
		r.close()
	})
}

// blocked reads bl's set after taking its lock once (Len), which orders
// the read after the set's last write (BlockList.IsBlocked takes no lock).
func blocked(bl *remote.BlockList, id string) bool {
	return bl.Len() >= 0 && bl.BlockedMembers().Contains(id)
}
