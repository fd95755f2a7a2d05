// Package racecheck lets tests of members run under the race detector
// although protoactor-go's cluster has data races of its own.
//
// Under -race, protoactor-go's cluster (v0.0.0-20240822202345-3c0e61ca19c9)
// reports data races of its own. A test binary cannot silence some reports
// and keep others, so tests that run members do it in child processes of
// the test binary, and the parent reads the children's race reports: a
// race is tolerated only when both of its accesses are at one of the
// upstream places listed below, or when both accesses are made by
// protoactor-go's code (then it is logged as unlisted, to be added to the
// list); a race with an access made by this module's code fails the test.
package racecheck

import (
	"os"
	"os/exec"
	"regexp"
	"strings"
	"testing"
)

// upstreamRaces lists, per upstream bug, the places (file:line inside the
// protoactor-go module) whose accesses race. A report is upstream when each
// of its two accesses has its first protoactor-go frame in the same group
// and no frame of this module before it.
var upstreamRaces = []struct {
	why    string
	places []string
}{
	{
		// The gossip actor keeps mutating its state entries after handing
		// them to the remote endpoint writer, which marshals them on its
		// own goroutine.
		why:    "gossip state marshalled while mutated",
		places: []string{"remote/proto_serializer.go:19", "cluster/gossip_state_management.go:43", "cluster/gossip_state_management.go:46", "cluster/gossip_state_management.go:48", "cluster/gossip_state_management.go:49"},
	},
	{
		// disthash.Manager replaces its rendezvous (pm.rdv) on each
		// topology event without synchronisation while Get reads it (Get
		// is what Cluster.Get and Cluster.Request call on any goroutine).
		why:    "disthash Manager.rdv replaced without a lock",
		places: []string{"cluster/identitylookup/disthash/manager.go:75", "cluster/identitylookup/disthash/manager.go:69", "cluster/rendezvous.go:26"},
	},
	{
		// BlockList.Block replaces its set under bl.mu; IsBlocked and
		// BlockedMembers read it without the lock.
		why:    "remote BlockList set read without its lock",
		places: []string{"remote/blocklist.go:37", "remote/blocklist.go:44", "remote/blocklist.go:28", "cluster/member_list.go:198"},
	},
	{
		// The same unlocked readers against this module's unblock
		// (cluster/rejoin.go), which replaces the set under bl.mu exactly
		// as BlockList.Block does: protoactor has no Unblock, and a member
		// dropped without leaving must be let back in. An "ours:" place
		// names a function of this module (any line of it).
		why:    "remote BlockList set read without its lock, written by cluster.unblockMembers",
		places: []string{"ours:github.com/actorflight/flight/cluster.unblockMembers", "remote/blocklist.go:44", "remote/blocklist.go:28", "cluster/member_list.go:198"},
	},
	{
		// UpdateClusterTopology builds a new member set (members.go:18,
		// member.go:76, from Members the provider made, e.g.
		// test_provider.go:113) and stores it in ml.members under
		// ml.mutex; BroadcastEvent (member_list.go:228, reading
		// Member.Address, member.go:30) and Members read it without the
		// mutex.
		why: "MemberList.members read without its mutex",
		places: []string{"cluster/member_list.go:147", "cluster/member_list.go:228", "cluster/members.go:18", "cluster/member.go:76", "cluster/member.go:30", "cluster/clusterproviders/test/test_provider.go:113", "cluster/member_list.go:239",
			"cluster/members.go:19", "cluster/members.go:38"},
	},
	{
		// endpointReader.suspend (called by Remote.Shutdown) writes a plain
		// bool that every stream loop reads.
		why:    "endpointReader.suspended unsynchronised",
		places: []string{"remote/endpoint_reader.go:255", "remote/endpoint_reader.go:75"},
	},
	{
		// endpointManager.stop sets em.connections = nil while its
		// supervisor actor still loads from it.
		why:    "endpointManager.connections set to nil on stop",
		places: []string{"remote/endpoint_manager.go:115", "remote/endpoint_manager.go:248"},
	},
	{
		// endpointManager.stop sets a plain bool that the endpoint
		// readers' goroutines read.
		why:    "endpointManager.stopped unsynchronised",
		places: []string{"remote/endpoint_manager.go:105", "remote/endpoint_manager.go:174"},
	},
	{
		// endpointReader.Receive closes its disconnect channel when its
		// stream ends while endpointManager.stop (Remote.Shutdown) sends
		// on it.
		why:    "endpoint reader disconnect channel closed while stop sends on it",
		places: []string{"remote/endpoint_reader.go:43", "remote/endpoint_manager.go:119"},
	},
	{
		// remote.Start sets grpc's process-global logger on every start;
		// with several members in one process it races with the gRPC
		// servers of the members already running.
		why: "grpclog.SetLoggerV2 per Remote.Start (several members per process)",
		places: []string{"remote/server.go:61", "remote/server.go:81", "remote/server.go:85",
			"google.golang.org/grpc@v1.60.1/internal/grpclog/grpclog.go:34", "google.golang.org/grpc@v1.60.1/internal/grpclog/grpclog.go:37"},
	},
	{
		// The gossip informers of all members in a process share one
		// package-level *rand.Rand (cluster/informer.go:25).
		why:    "shared math/rand.Rand in the gossip informer (several members per process)",
		places: []string{"cluster/informer.go:122"},
	},
}

const protoactorMod = "github.com/asynkron/protoactor-go@v0.0.0-20240822202345-3c0e61ca19c9/"

var (
	accessRE = regexp.MustCompile(`(?mi)^(previous )?(atomic )?(read|write) at [^\n]*by [^\n]*:\n`)
	frameRE  = regexp.MustCompile(`(?m)^  (\S+)\(.*\)\n      (\S+):(\d+)`)
)

// Classify sorts the race reports in out: upstream counts the listed
// upstream races by reason; unlisted counts, by places, the other races
// whose two accesses both happen in protoactor-go or a library (the first
// frame of each access stack that is in protoactor-go or in this module is
// not in this module): upstream's, though not in the list yet, even when
// this module's code is further down the stack (it called a protoactor API
// that races inside); ours lists every race with an access made by this
// module's code.
func Classify(out string) (upstream, unlisted map[string]int, ours []string) {
	upstream, unlisted = map[string]int{}, map[string]int{}
	reports := strings.Split(out, "WARNING: DATA RACE")
	for _, rep := range reports[1:] {
		rep, _, _ = strings.Cut(rep, "==================")
		idx := accessRE.FindAllStringIndex(rep, -1)
		var places []string
		byUs := false
		for i, loc := range idx {
			end := len(rep)
			if i+1 < len(idx) {
				end = idx[i+1][0]
			}
			block, _, _ := strings.Cut(rep[loc[1]:end], "\n\n")
			p := firstPlace(block)
			places = append(places, p)
			byUs = byUs || strings.HasPrefix(p, "ours:")
		}
		key := strings.Join(places, " <-> ")
		why := ""
		if len(places) == 2 {
			for _, g := range upstreamRaces {
				if contains(g.places, places[0]) && contains(g.places, places[1]) {
					why = g.why
					break
				}
			}
		}
		switch {
		case why != "":
			upstream[why]++
		case !byUs && len(places) == 2:
			unlisted[key]++
		default:
			ours = append(ours, key)
		}
	}
	return upstream, unlisted, ours
}

// firstPlace is the first frame of an access's stack that is in this
// module ("ours:" + function) or in protoactor-go (file:line in it), else
// the first frame's file:line.
func firstPlace(stack string) string {
	frames := frameRE.FindAllStringSubmatch(stack, -1)
	for _, f := range frames {
		fn, file, line := f[1], f[2], f[3]
		if strings.HasPrefix(fn, "github.com/actorflight/flight") {
			return "ours:" + fn + " " + file + ":" + line
		}
		if _, rel, ok := strings.Cut(file, protoactorMod); ok {
			return rel + ":" + line
		}
	}
	if len(frames) > 0 { // a library's frame: module path and file, without GOMODCACHE
		file := frames[0][2]
		if _, rel, ok := strings.Cut(file, "/pkg/mod/"); ok {
			file = rel
		}
		return file + ":" + frames[0][3]
	}
	return "?"
}

// contains reports whether the place v is in s; an "ours:function" entry
// of s matches v at any line of that function.
func contains(s []string, v string) bool {
	for _, x := range s {
		if x == v || strings.HasPrefix(x, "ours:") && strings.HasPrefix(v, x+" ") {
			return true
		}
	}
	return false
}

// Check fails t for every race in out that may be this module's (a frame
// of it in an access stack, and not listed as upstream), and logs the
// upstream ones, listed or not.
func Check(t testing.TB, who, out string) {
	t.Helper()
	upstream, unlisted, ours := Classify(out)
	for why, n := range upstream {
		Logf(t, "%s: %d upstream race report(s): %s", who, n, why)
	}
	for places, n := range unlisted {
		Logf(t, "%s: %d race report(s) with no frame of this module, not yet in the upstream list: %s", who, n, places)
	}
	for _, u := range ours {
		t.Errorf("%s: data race not known to be upstream's: %s", who, u)
	}
	if len(ours) > 0 {
		t.Logf("%s output:\n%s", who, out)
	}
}

// Isolated runs the calling test in a child process when the race detector
// is on (see the top of this file), checks the child's races, and reports
// true: the caller must then return. Without -race, or in the child, it
// returns false and the test runs in place.
func Isolated(t *testing.T) bool {
	t.Helper()
	if !Enabled || os.Getenv("FLIGHT_ISOLATED") != "" {
		return false
	}
	cmd := exec.Command(os.Args[0], "-test.run=^"+t.Name()+"$", "-test.v", "-test.count=1")
	cmd.Env = append(os.Environ(), "FLIGHT_ISOLATED=1")
	outb, _ := cmd.CombinedOutput() // a child with races exits non-zero; judged below
	out := string(outb)
	Check(t, "child "+t.Name(), out)
	// The child fails its test for any race; every other failure must be
	// absent. Tests log information with logf ("info: " prefix), so any
	// other message of a test file is a failure (t.Error, t.Fatal,
	// testify), as are goleak's report and a panic.
	var failures []string
	msgRE := regexp.MustCompile(`^    (\w+)\.go:\d+: (.*)$`)
	for _, line := range strings.Split(out, "\n") {
		if m := msgRE.FindStringSubmatch(line); m != nil {
			switch {
			case m[1] == "testing" && strings.Contains(m[2], "race detected during execution of test"):
			case strings.HasPrefix(m[2], "info: "):
				t.Log("child: " + m[2])
			default:
				failures = append(failures, line)
			}
			continue
		}
		if strings.HasPrefix(line, "goleak") || strings.HasPrefix(line, "panic:") {
			failures = append(failures, line)
		}
	}
	if !strings.Contains(out, "=== RUN   "+t.Name()) || !strings.Contains(out, "--- ") {
		failures = append(failures, "the child did not run the test to its end")
	}
	if len(failures) > 0 {
		t.Errorf("child %s failed:\n%s\n\nfull output:\n%s", t.Name(), strings.Join(failures, "\n"), out)
	}
	return true
}

// Logf logs information that is not a failure (see isolated).
func Logf(t testing.TB, format string, args ...any) {
	t.Helper()
	t.Logf("info: "+format, args...)
}
