package cluster_test

import (
	"runtime"
	"testing"
	"time"

	"github.com/asynkron/protoactor-go/cluster/clusterproviders/test"

	fcluster "github.com/actorflight/flight/cluster"
)

// hang bounds every wait on something that must happen; it is never slept.
const hang = 20 * time.Second

// eventually polls cond (a yield and a short pause between polls) and fails
// the test after hang.
func eventually(t testing.TB, what string, cond func() bool) {
	t.Helper()
	deadline := time.Now().Add(hang)
	for !cond() {
		if time.Now().After(deadline) {
			t.Fatalf("timed out waiting for %s", what)
		}
		runtime.Gosched()
		time.Sleep(time.Millisecond)
	}
}

// recv receives one value from ch or fails the test after hang.
func recv[T any](t testing.TB, ch <-chan T) T {
	t.Helper()
	select {
	case v := <-ch:
		return v
	case <-time.After(hang):
		t.Fatalf("timed out waiting on a channel")
		panic("unreachable")
	}
}

// members makes n nodes of one in-process cluster on the in-memory test
// provider; setup registers the loaders on each before it starts. They are
// started concurrently (each Start waits protoactor's fixed second) and
// closed concurrently at the end of the test.
func members(t testing.TB, n int, setup func(i int, node *fcluster.Node)) []*fcluster.Node {
	t.Helper()
	agent := test.NewInMemAgent()
	nodes := make([]*fcluster.Node, n)
	for i := range nodes {
		node, err := fcluster.NewNode(fcluster.Config{
			Name:     "test-" + t.Name(),
			Provider: test.NewTestProvider(agent),
		})
		if err != nil {
			t.Fatal(err)
		}
		setup(i, node)
		nodes[i] = node
	}
	errs := make(chan error, n)
	for _, node := range nodes {
		go func() { errs <- node.Start() }()
	}
	for range nodes {
		if err := recv(t, errs); err != nil {
			t.Fatal(err)
		}
	}
	t.Cleanup(func() { closeAll(t, nodes) })
	return nodes
}

func closeAll(t testing.TB, nodes []*fcluster.Node) {
	done := make(chan error, len(nodes))
	for _, node := range nodes {
		go func() { done <- node.Close() }()
	}
	for range nodes {
		if err := recv(t, done); err != nil {
			t.Error(err)
		}
	}
}
