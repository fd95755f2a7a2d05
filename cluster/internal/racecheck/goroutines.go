package racecheck

import "go.uber.org/goleak"

// UpstreamGoroutines are goroutines of protoactor-go (v0.0.0-20240822202345-
// 3c0e61ca19c9) that outlive a member's graceful shutdown. They are the
// only ones ignored; any goroutine of this module left behind fails the run.
var UpstreamGoroutines = []goleak.Option{
	// cluster/clusterproviders/test/test_provider.go:126: ranges over a
	// time.Ticker's channel; Shutdown stops the ticker, which never closes
	// the channel, so the goroutine blocks forever.
	goleak.IgnoreTopFunction("github.com/asynkron/protoactor-go/cluster/clusterproviders/test.(*Provider).startTtlReport.func1"),
	// actor/throttler.go:27 and :62, started by cluster/gossiper.go:290 and
	// cluster/gossip_actor.go:36: log throttles that wait out a 60 s window
	// on a ticker whatever happens to the member.
	goleak.IgnoreTopFunction("github.com/asynkron/protoactor-go/cluster.(*Gossiper).StartGossiping.NewThrottle.func3.1"),
	goleak.IgnoreTopFunction("github.com/asynkron/protoactor-go/cluster.NewGossipActor.NewThrottleWithLogger.func2.1"),
	// actor/throttler.go:27 started by actor/deadletter.go:25: the dead
	// letter log throttle, a 1 s window.
	goleak.IgnoreTopFunction("github.com/asynkron/protoactor-go/actor.NewDeadLetter.NewThrottle.func4.1"),
}
