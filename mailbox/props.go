package mailbox

import (
	"github.com/asynkron/protoactor-go/actor"
)

// throughput is how many messages a shard handles before its draining
// goroutine yields the processor (runtime.Gosched) and goes on — or, when
// that goroutine is a poster, hands the rest over (see Mailbox.drain).
const throughput = 256

// Props returns the protoactor props of an actor made by producer, with a
// new [Mailbox] of its own (drained on the posting goroutine), reached
// through RootContext.Send. The
// synchronized dispatcher is named too, for anything in protoactor that
// asks the props for their dispatcher; the Mailbox does not use it.
func Props(producer actor.Producer) *actor.Props {
	return PropsWith(producer, New(nil))
}

// PropsWith is Props with the mailbox mb, to which the actor's own hot
// messages are posted directly ([Mailbox.Post]; see the Mailbox type):
// shards use it. The props must be spawned once, since they name one
// mailbox.
func PropsWith(producer actor.Producer, mb *Mailbox) *actor.Props {
	return actor.PropsFromProducer(producer,
		actor.WithDispatcher(actor.NewSynchronizedDispatcher(throughput)),
		actor.WithMailbox(func() actor.Mailbox { return mb }),
	)
}
