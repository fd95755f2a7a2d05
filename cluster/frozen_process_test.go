package cluster_test

import (
	"fmt"
	"os"
	"strconv"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"

	"github.com/actorflight/flight/cluster/internal/racecheck"
)

// rejoinBound is how long after SIGCONT every member must list the same
// four members again: the resumed member's provider and the others' poll
// each other every 300 ms here (one HTTP timeout of 2 s at most for a poll
// started before the freeze), and the membership change is then gossiped;
// on a loaded 2-core machine under -race this has taken up to a few
// seconds.
const rejoinBound = 15 * time.Second

// members asks c for its Members().
func (c *child) members(t testing.TB) []string {
	c.send(t, "LIST")
	ev := c.expect(t, "LIST", nil)
	list := strings.TrimSpace(strings.TrimPrefix(ev, "LIST"))
	if list == "" {
		return nil
	}
	return strings.Split(list, ",")
}

// A member frozen (SIGSTOP) for 5 s and resumed rejoins: the others drop
// it while it is frozen (their health checks of it fail) and it drops
// them (its own checks, in flight when it froze, time out when it
// resumes); protoactor blocks a member that left for good, which used to
// split the cluster forever. After SIGCONT every member lists the same
// four members within rejoinBound, and a key called on all four runs once.
func TestFrozenMemberRejoins(t *testing.T) {
	if testing.Short() {
		t.Skip("starts four member processes and freezes one for 5 s")
	}
	const n = 4
	children := startChildren(t, n)
	all := children[0].members(t)
	require.Len(t, all, n)
	frozen := children[n-1]

	stopped := time.Now()
	require.NoError(t, frozen.cmd.Process.Signal(syscall.SIGSTOP))
	others := children[:n-1]
	for _, c := range others {
		c.send(t, fmt.Sprintf("MEMBERS %d", n-1))
	}
	for _, c := range others {
		c.expect(t, "MEMBERS", nil)
	}
	dropped := time.Since(stopped)
	// The freeze lasts 5 s of wall time (the scenario is a duration: a GC
	// stall or a VM pause), whatever it took the others to drop it;
	// FLIGHT_FREEZE sets another duration.
	freeze := 5 * time.Second
	if s := os.Getenv("FLIGHT_FREEZE"); s != "" {
		var err error
		freeze, err = time.ParseDuration(s)
		require.NoError(t, err, "FLIGHT_FREEZE")
	}
	<-time.After(time.Until(stopped.Add(freeze)))
	require.NoError(t, frozen.cmd.Process.Signal(syscall.SIGCONT))
	resumed := time.Now()

	agree := func() ([][]string, bool) {
		views := make([][]string, n)
		ok := true
		for i, c := range children {
			views[i] = c.members(t)
			ok = ok && strings.Join(views[i], ",") == strings.Join(all, ",")
		}
		return views, ok
	}
	var views [][]string
	for {
		var ok bool
		views, ok = agree()
		if ok || time.Since(resumed) > rejoinBound {
			break
		}
		time.Sleep(100 * time.Millisecond)
	}
	racecheck.Logf(t, "views %v after SIGCONT: %v", time.Since(resumed).Round(time.Millisecond), views)
	for i, v := range views {
		require.Equal(t, all, v, "member %d's view %v after SIGCONT", i, time.Since(resumed).Round(time.Millisecond))
	}
	rejoined := time.Since(resumed)

	// One execution per key again: 5 keys, 5 callers on each member.
	before := 0
	for _, c := range children {
		c.send(t, "EXECS")
		b, _ := strconv.Atoi(strings.Fields(c.expect(t, "EXECS", nil))[1])
		before += b
	}
	keys := []string{"f1", "f2", "f3", "f4", "f5"}
	for _, key := range keys {
		for _, c := range children {
			c.send(t, "CALL "+key+" 5")
			c.send(t, "WAIT "+key+" 5")
		}
		owner := -1
		for _, c := range children {
			c.expect(t, "WAITING "+key, func(ev string) {
				if strings.HasPrefix(ev, "EXEC "+key+" ") {
					owner = c.i
				}
			})
		}
		if owner < 0 {
			owner = awaitExec(t, children, key)
		}
		// Every member's call has reached the owner's flight.
		children[owner].send(t, fmt.Sprintf("OWNED %s %d", key, n))
		children[owner].expect(t, "OWNED "+key, nil)
		for _, c := range children {
			c.send(t, "RELEASE "+key)
		}
		var first string
		for _, c := range children {
			for range 5 {
				ev := c.expect(t, "RESULT "+key, nil)
				r := parseResult(t, c.i, ev)
				require.True(t, r.ok, ev)
				if first == "" {
					first = r.text
				}
				assert.Equal(t, first, r.text, "every caller of %s, on every member, gets one value", key)
			}
		}
	}
	after := 0
	for _, c := range children {
		c.send(t, "EXECS")
		a, _ := strconv.Atoi(strings.Fields(c.expect(t, "EXECS", nil))[1])
		after += a
	}
	assert.Equal(t, len(keys), after-before, "one execution per key across the four members")
	racecheck.Logf(t, "frozen %v: dropped from the others' views %v after SIGSTOP; all four agree %v after SIGCONT; %d keys ran once each",
		freeze, dropped.Round(time.Millisecond), rejoined.Round(time.Millisecond), len(keys))

	for _, c := range children {
		c.send(t, "QUIT")
	}
	for _, c := range children {
		c.expect(t, "CLOSED", nil)
		<-c.exited
		racecheck.Check(t, fmt.Sprintf("member process %d", c.i), c.stderr.String())
	}
}

// closeBound is how long Close may take with a frozen peer: leaveWait (2 s,
// the others see this member go), then the remote's graceful stop, which
// waits up to drainWait (2 s) for the other members to close their
// connections to this one (a frozen member never does) before closing
// them, plus a second of slack for a loaded 2-core machine under -race.
const closeBound = 5 * time.Second

// Close with a frozen peer is bounded: member 0 closes while member 2 is
// frozen (SIGSTOP); its gRPC server's graceful stop waits for the frozen
// member's inbound connection, which never closes, so the stop closes it
// after drainWait. Close returns nil within closeBound, well before
// Config.CloseTimeout.
func TestCloseWithFrozenMember(t *testing.T) {
	if testing.Short() {
		t.Skip("starts three member processes")
	}
	children := startChildren(t, 3)
	frozen := children[2]
	require.NoError(t, frozen.cmd.Process.Signal(syscall.SIGSTOP))
	t0 := time.Now()
	children[0].send(t, "QUIT")
	ev := children[0].expect(t, "CLOSED", nil)
	took := time.Since(t0)
	f := strings.Fields(ev)
	require.GreaterOrEqual(t, len(f), 3, ev)
	racecheck.Logf(t, "Close with a frozen peer: %s ms inside the member, %v seen from the test", f[1], took.Round(time.Millisecond))
	assert.Equal(t, "<nil>", strings.Join(f[2:], " "), "Close's error")
	assert.Less(t, took, closeBound)
	require.NoError(t, frozen.cmd.Process.Signal(syscall.SIGCONT))
	for _, c := range children[1:] {
		c.send(t, "QUIT")
	}
	for _, c := range children {
		if c != children[0] {
			c.expect(t, "CLOSED", nil)
		}
		<-c.exited
		racecheck.Check(t, fmt.Sprintf("member process %d", c.i), c.stderr.String())
	}
}
