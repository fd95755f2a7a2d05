package racecheck

import "testing"

const report = `==================
WARNING: DATA RACE
Write at 0x00c000296690 by goroutine 149:
  %s
      %s
  runtime.goexit()
      /usr/local/go/src/runtime/asm_amd64.s:1700 +0x1

Previous read at 0x00c000296690 by goroutine 434:
  %s
      %s
  runtime.goexit()
      /usr/local/go/src/runtime/asm_amd64.s:1700 +0x1

Goroutine 149 (running) created at:
  github.com/actorflight/flight/cluster.(*Node).Start()
      /work/main/cluster/node.go:1 +0x1
==================
`

func rep(f1, l1, f2, l2 string) string {
	r := report
	for _, v := range []string{f1, l1, f2, l2} {
		i := indexOf(r, "%s")
		r = r[:i] + v + r[i+2:]
	}
	return r
}

func indexOf(s, sub string) int {
	for i := 0; i+len(sub) <= len(s); i++ {
		if s[i:i+len(sub)] == sub {
			return i
		}
	}
	return -1
}

const mod = "/root/go/pkg/mod/" + protoactorMod

func TestClassify(t *testing.T) {
	listed := rep("github.com/asynkron/protoactor-go/remote.(*BlockList).Block()", mod+"remote/blocklist.go:37 +0x1",
		"github.com/asynkron/protoactor-go/remote.(*BlockList).IsBlocked()", mod+"remote/blocklist.go:44 +0x1")
	unlisted := rep("github.com/asynkron/protoactor-go/remote.(*X).A()", mod+"remote/x.go:1 +0x1",
		"github.com/asynkron/protoactor-go/remote.(*X).B()", mod+"remote/x.go:2 +0x1")
	ours := rep("github.com/actorflight/flight/cluster.(*grain).join()", "/work/main/cluster/grain.go:70 +0x1",
		"github.com/asynkron/protoactor-go/remote.(*X).B()", mod+"remote/x.go:2 +0x1")
	up, un, o := Classify("noise\n" + listed + unlisted + ours + "tail\n")
	if len(up) != 1 || up["remote BlockList set read without its lock"] != 1 {
		t.Errorf("upstream: %v", up)
	}
	if len(un) != 1 || un["remote/x.go:1 <-> remote/x.go:2"] != 1 {
		t.Errorf("unlisted: %v", un)
	}
	if len(o) != 1 || o[0] != "ours:github.com/actorflight/flight/cluster.(*grain).join /work/main/cluster/grain.go:70 <-> remote/x.go:2" {
		t.Errorf("ours: %q", o)
	}
}

// The unlocked BlockList readers against this module's unblock are listed
// (any line of cluster.unblockMembers); another function of this module
// against the same readers is not.
func TestClassifyUnblock(t *testing.T) {
	unblock := rep("github.com/actorflight/flight/cluster.unblockMembers()", "/work/main/cluster/rejoin.go:120 +0x1",
		"github.com/asynkron/protoactor-go/remote.(*BlockList).IsBlocked()", mod+"remote/blocklist.go:44 +0x1")
	other := rep("github.com/actorflight/flight/cluster.unblockMembersX()", "/work/main/cluster/rejoin.go:120 +0x1",
		"github.com/asynkron/protoactor-go/remote.(*BlockList).IsBlocked()", mod+"remote/blocklist.go:44 +0x1")
	up, _, o := Classify(unblock + other)
	if up["remote BlockList set read without its lock, written by cluster.unblockMembers"] != 1 {
		t.Errorf("upstream: %v", up)
	}
	if len(o) != 1 {
		t.Errorf("ours: %q", o)
	}
}
