package mailbox

import (
	"github.com/asynkron/protoactor-go/actor"
)

// Throughput is how many messages a shard handles before its draining
// goroutine yields the processor (runtime.Gosched) and goes on.
const Throughput = 256

// Props returns the protoactor props of a shard actor made by producer: an
// unbounded mailbox on the synchronized dispatcher (see the package comment
// for why).
//
// The mailbox is protoactor's Unbounded one (a mutex-guarded ring). Its
// lock-free sibling measured no faster here with a few posting goroutines per
// shard, and the ring keeps no per-message node allocation.
func Props(producer actor.Producer) *actor.Props {
	return actor.PropsFromProducer(producer,
		actor.WithDispatcher(actor.NewSynchronizedDispatcher(Throughput)),
		actor.WithMailbox(actor.Unbounded()),
	)
}
