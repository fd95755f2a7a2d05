package cluster_test

import (
	"context"
	"net"
	"os"
	"regexp"
	"strings"
	"testing"

	"github.com/asynkron/protoactor-go/cluster/clusterproviders/test"
	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"

	"github.com/actorflight/flight"
	fcluster "github.com/actorflight/flight/cluster"
	"github.com/actorflight/flight/cluster/internal/racecheck"
)

// Every error the lifecycle methods return matches an exported sentinel
// with errors.Is, and every sentinel is in the README's error table.
func TestLifecycleErrorsMatchSentinels(t *testing.T) {
	if racecheck.Isolated(t) {
		return
	}
	fn := func(ctx context.Context, key string) (string, error) { return key, nil }

	_, err := fcluster.NewNode(fcluster.Config{Provider: test.NewTestProvider(test.NewInMemAgent())})
	require.ErrorIs(t, err, fcluster.ErrConfig, "no Name")
	_, err = fcluster.NewNode(fcluster.Config{Name: "x"})
	require.ErrorIs(t, err, fcluster.ErrConfig, "no Provider")

	node, err := fcluster.NewNode(fcluster.Config{Name: "lifecycle-" + t.Name(), Provider: test.NewTestProvider(test.NewInMemAgent())})
	require.NoError(t, err)
	_, err = fcluster.Register(node, "v", fn, nil)
	require.NoError(t, err)
	require.NoError(t, node.Start())
	_, err = fcluster.Register(node, "late", fn, nil)
	require.ErrorIs(t, err, fcluster.ErrStarted, "Register after Start")
	_, err = fcluster.Register(node, "v", fn, nil)
	require.ErrorIs(t, err, fcluster.ErrStarted, "Register after Start, a name already registered")
	require.NoError(t, node.Start(), "a second Start does nothing")
	require.NoError(t, node.Close())
	_, err = fcluster.Register(node, "after-close", fn, nil)
	require.ErrorIs(t, err, flight.ErrClosed, "Register after Close")
	require.ErrorIs(t, node.Start(), flight.ErrClosed, "Start after Close")

	// A port another listener holds: Start fails with ErrStart.
	busy, err := fcluster.NewNode(fcluster.Config{Name: "busy-" + t.Name(), Provider: test.NewTestProvider(test.NewInMemAgent()), Port: heldPort(t)})
	require.NoError(t, err)
	err = busy.Start()
	require.ErrorIs(t, err, fcluster.ErrStart, "Start on a port in use")
	require.NoError(t, busy.Close())
}

// Every exported sentinel of the package is named in README.md's error
// table.
func TestReadmeErrorTableListsEverySentinel(t *testing.T) {
	readme, err := os.ReadFile("README.md")
	require.NoError(t, err)
	src, err := os.ReadFile("errors.go")
	require.NoError(t, err)
	names := regexp.MustCompile(`(?m)^\s+(Err\w+)\s+=\s+errors\.New`).FindAllStringSubmatch(string(src), -1)
	require.NotEmpty(t, names)
	table := string(readme)
	i := strings.Index(table, "\n## Errors\n")
	require.GreaterOrEqual(t, i, 0, "README.md has an Errors section")
	table = table[i+1:]
	if j := strings.Index(table[1:], "\n## "); j >= 0 {
		table = table[:j+1]
	}
	for _, n := range names {
		assert.True(t, strings.Contains(table, "`cluster."+n[1]+"`"), "README's error table lacks %s", n[1])
	}
}

// heldPort returns a port that a listener holds until the test ends.
func heldPort(t *testing.T) int {
	l, err := net.Listen("tcp", "127.0.0.1:0")
	require.NoError(t, err)
	t.Cleanup(func() { _ = l.Close() })
	return l.Addr().(*net.TCPAddr).Port
}
