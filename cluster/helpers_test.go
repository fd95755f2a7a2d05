package cluster_test

import (
	"testing"
	"time"

	"github.com/asynkron/protoactor-go/cluster/clusterproviders/test"

	"github.com/actorflight/flight/internal/wait"

	fcluster "github.com/actorflight/flight/cluster"
)

// hang bounds a call's context where a test must not wait forever on a
// cluster operation that can take seconds on a loaded machine (an
// activation, a retry after an owner was lost); it is never slept.
const hang = 20 * time.Second

// members makes n nodes of one in-process cluster on the in-memory test
// provider; setup registers the loaders on each before it starts. They are
// started concurrently (each Start waits protoactor's fixed second) and
// closed concurrently at the end of the test.
func members(t testing.TB, n int, setup func(i int, node *fcluster.Node)) []*fcluster.Node {
	t.Helper()
	return membersWith(t, n, func(i int, cfg *fcluster.Config) {}, setup)
}

// membersWith is members with each node's Config adjusted by config first.
func membersWith(t testing.TB, n int, config func(i int, cfg *fcluster.Config), setup func(i int, node *fcluster.Node)) []*fcluster.Node {
	t.Helper()
	agent := test.NewInMemAgent()
	nodes := make([]*fcluster.Node, n)
	for i := range nodes {
		cfg := fcluster.Config{
			Name:     "test-" + t.Name(),
			Provider: test.NewTestProvider(agent),
		}
		config(i, &cfg)
		node, err := fcluster.NewNode(cfg)
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
		if err := wait.Recv(t, errs); err != nil {
			t.Fatal(err)
		}
	}
	t.Cleanup(func() { closeAll(t, nodes) })
	for _, node := range nodes {
		wait.Until(t, "every member sees the others", func() bool { return len(node.Members()) == n })
	}
	return nodes
}

func closeAll(t testing.TB, nodes []*fcluster.Node) {
	done := make(chan error, len(nodes))
	for _, node := range nodes {
		go func() { done <- node.Close() }()
	}
	for range nodes {
		if err := wait.Recv(t, done); err != nil {
			t.Error(err)
		}
	}
}
