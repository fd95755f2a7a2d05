package cluster

import (
	"log/slog"
	"reflect"
	"sync"
	"time"
	"unsafe"

	"github.com/asynkron/gofun/set"
	pcluster "github.com/asynkron/protoactor-go/cluster"
	"github.com/asynkron/protoactor-go/remote"
)

// A member that misses its health checks (frozen by SIGSTOP, a long GC
// stall or a VM pause, or cut off by the network) is dropped by the others'
// providers; and when it resumes, its own checks that were in flight time
// out, so it may drop them as well. protoactor-go then blocks every
// member that left, for good (cluster/member_list.go:196, "we will never
// allow a member that failed a health check to join back in"): when the
// member answers its health checks again, the providers list it, but the
// member list filters it out, and the cluster stays split — each part
// owning every key, each key running once per part.
//
// rejoiner undoes that block for members that did not leave gracefully:
// when a topology change drops a member, it logs a WARN and takes the
// member's ID out of protoactor remote's block list, so that the next
// provider refresh that finds the member alive lets it back in (and the
// other side does the same). Members that left gracefully (their "left"
// gossip key) stay blocked, as protoactor wants: they are shutting down.
// A member that died is not listed by the provider any more, so unblocking
// it changes nothing; a restarted process has a new ID.
//
// The gossip blocks a member too, without a topology event, when its
// heartbeat is older than HeartbeatExpiration (20 s): a member frozen
// longer than that is blocked again while it is out. So while dropped
// members are out, a timer (time.AfterFunc every rejoinCheck, no goroutine
// between checks) unblocks them again, for rejoinWindow after their drop;
// a member that has not answered by then is taken for dead.
//
// All fields are guarded by mu; its methods run inside protoactor's event
// publishing (the member list's topology update, the gossip actor) or on
// the timer, and call nothing of protoactor's but the block list.
type rejoiner struct {
	self   string                   // this member's ID
	log    *slog.Logger             // Config.Logger
	blocks func() *remote.BlockList // protoactor remote's, once the member started

	mu      sync.Mutex
	left    map[string]bool    // IDs that gossiped that they left gracefully
	dropped map[string]dropped // IDs dropped without leaving gracefully and not back yet
	timer   *time.Timer        // armed while dropped is non-empty
	closed  bool               // no timer after close
}

// dropped is a member dropped without leaving.
type dropped struct {
	addr string
	at   time.Time
}

// rejoinCheck is how often dropped members are unblocked again while they
// are out; rejoinWindow how long after its drop a member may come back.
const (
	rejoinCheck  = time.Second
	rejoinWindow = 5 * time.Minute
)

func newRejoiner(self string, log *slog.Logger, blocks func() *remote.BlockList) *rejoiner {
	return &rejoiner{self: self, log: log, blocks: blocks, left: map[string]bool{}, dropped: map[string]dropped{}}
}

// check unblocks again the dropped members that are blocked (the gossip's
// heartbeat expiry), forgets those dropped longer than rejoinWindow ago,
// and re-arms the timer while some are left.
func (r *rejoiner) check() {
	r.mu.Lock()
	defer r.mu.Unlock()
	if r.closed {
		return
	}
	var again []string
	for id, d := range r.dropped {
		if r.left[id] || time.Since(d.at) > rejoinWindow {
			delete(r.dropped, id)
			continue
		}
		again = append(again, id)
	}
	if len(again) > 0 {
		if err := unblockMembers(r.blocks(), again...); err != nil {
			r.log.Error("flight: cluster: cannot let dropped members back in; the cluster stays split until they restart", slog.Any("error", err))
		}
	}
	if len(r.dropped) == 0 {
		r.timer = nil
		return
	}
	r.timer.Reset(rejoinCheck)
}

// close stops the timer.
func (r *rejoiner) close() {
	r.mu.Lock()
	defer r.mu.Unlock()
	r.closed = true
	if r.timer != nil {
		r.timer.Stop()
		r.timer = nil
	}
}

// gossip records the members that announce a graceful leave.
func (r *rejoiner) gossip(u *pcluster.GossipUpdate) {
	if u.Key != pcluster.GracefullyLeftKey {
		return
	}
	r.mu.Lock()
	r.left[u.MemberID] = true
	r.mu.Unlock()
}

// topology handles a membership change: members dropped without leaving
// gracefully are unblocked (and logged), members that come back are
// logged. It runs inside MemberList.UpdateClusterTopology, under the
// member list's mutex, after protoactor blocked the members that left and
// before the next update reads the block list.
func (r *rejoiner) topology(t *pcluster.ClusterTopology) {
	r.mu.Lock()
	defer r.mu.Unlock()
	var unblock []string
	for _, m := range t.Left {
		if m.Id == r.self || r.left[m.Id] {
			continue
		}
		r.dropped[m.Id] = dropped{addr: m.Address(), at: time.Now()}
		unblock = append(unblock, m.Id)
		r.log.Warn("flight: cluster: a member was dropped without leaving (its health checks failed: dead, frozen or cut off); it is let back in if it answers again",
			slog.String("member", m.Address()), slog.String("id", m.Id), slog.Int("members", len(t.Members)))
	}
	if len(t.Left) > 0 && len(t.Members) == 1 && len(unblock) > 0 {
		r.log.Warn("flight: cluster: this member lost every other member at once: it was frozen or cut off, or they all died; it owns every key until they answer again",
			slog.Int("lost", len(t.Left)))
	}
	for _, m := range t.Joined {
		if d, ok := r.dropped[m.Id]; ok {
			delete(r.dropped, m.Id)
			r.log.Warn("flight: cluster: a dropped member rejoined", slog.String("member", d.addr), slog.String("id", m.Id), slog.Duration("out", time.Since(d.at)))
		}
	}
	if len(r.dropped) > 0 && r.timer == nil && !r.closed {
		r.timer = time.AfterFunc(rejoinCheck, r.check)
	}
	if len(unblock) > 0 {
		if err := unblockMembers(r.blocks(), unblock...); err != nil {
			r.log.Error("flight: cluster: cannot let dropped members back in; the cluster stays split until they restart", slog.Any("error", err))
		}
	}
}

// unblockMembers removes ids from protoactor remote's block list, which has
// no method for it: under the list's own mutex it reads the list's
// immutable set and, if any of ids is in it, replaces it, as
// BlockList.Block does (remote/blocklist.go:32 in protoactor-go
// v0.0.0-20240822202345-3c0e61ca19c9). It checks the fields' names and
// types first and changes nothing when they differ (a protoactor upgrade),
// returning an error.
//
// Readers: the member list reads the set under its own mutex, which the
// caller (a topology event) holds too; IsBlocked and BlockedMembers read
// it without a lock, as they do against Block.
func unblockMembers(bl *remote.BlockList, ids ...string) error {
	v := reflect.ValueOf(bl).Elem()
	muF, setF := v.FieldByName("mu"), v.FieldByName("blockedMembers")
	if !muF.IsValid() || !setF.IsValid() ||
		muF.Type() != reflect.TypeFor[*sync.RWMutex]() || setF.Type() != reflect.TypeFor[*set.ImmutableSet[string]]() {
		return errBlockList
	}
	mu := *(**sync.RWMutex)(unsafe.Pointer(muF.UnsafeAddr()))
	members := (**set.ImmutableSet[string])(unsafe.Pointer(setF.UnsafeAddr()))
	mu.Lock()
	defer mu.Unlock()
	s, changed := *members, false
	for _, id := range ids {
		if s.Contains(id) {
			s, changed = s.Remove(id), true
		}
	}
	if changed {
		*members = s
	}
	return nil
}

// errBlockList is unblockMembers' error for a BlockList it does not know.
var errBlockList = &blockListError{}

type blockListError struct{}

func (*blockListError) Error() string {
	return "flight: cluster: protoactor remote's BlockList is not the one this package knows (mu *sync.RWMutex, blockedMembers *set.ImmutableSet[string])"
}
