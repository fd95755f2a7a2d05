package mailbox

import (
	"github.com/asynkron/protoactor-go/actor"
)

// throughput is how many messages a shard handles before its draining
// goroutine yields the processor (runtime.Gosched) and goes on — or, when
// that goroutine is a poster, hands the rest over (see Mailbox.drain).
const throughput = 256

// Props returns the protoactor props of a shard actor made by producer, with
// a [Mailbox] (drained on the posting goroutine, see the package comment
// for why). The synchronized dispatcher is named too, for anything in
// protoactor that asks the props for their dispatcher; the Mailbox does not
// use it. Messages go through RootContext.Send as to any actor: posting to
// the Mailbox directly measured no faster.
func Props(producer actor.Producer) *actor.Props {
	return actor.PropsFromProducer(producer,
		actor.WithDispatcher(actor.NewSynchronizedDispatcher(throughput)),
		actor.WithMailbox(func() actor.Mailbox { return newMailbox() }),
	)
}
