package cluster

import (
	"strconv"

	"github.com/asynkron/protoactor-go/actor"
)

// FillRegistry adds and removes n process IDs in the node's protoactor
// process registry, as n short-lived actors would. The registry is 32,768
// Go maps (1024 buckets of concurrent-map's 32 shards) and a Go map keeps
// its first group of slots once it has held an entry: after enough actors
// have lived, every map holds one, about 9 MiB in all, and it never grows
// beyond that unless one map holds more than 8 live actors at once. The
// memory test fills it first, so that what it measures per cycle is the
// rest. Tests only.
func FillRegistry(n *Node, count int) {
	reg := n.system.ProcessRegistry
	for i := range count {
		pid, _ := reg.Add(nopProcess{}, "$fill-"+strconv.Itoa(i))
		reg.Remove(pid)
	}
}

// nopProcess is a Process that drops everything.
type nopProcess struct{}

func (nopProcess) SendUserMessage(*actor.PID, any)   {}
func (nopProcess) SendSystemMessage(*actor.PID, any) {}
func (nopProcess) Stop(*actor.PID)                   {}
