package cluster_test

import (
	"context"
	"fmt"
	"os"
	"regexp"
	"strconv"
	"strings"
	"testing"

	"github.com/asynkron/protoactor-go/cluster/clusterproviders/test"
	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"
	"go.yaml.in/yaml/v3"

	fcluster "github.com/actorflight/flight/cluster"
	"github.com/actorflight/flight/cluster/internal/racecheck"
	"github.com/actorflight/flight/internal/wait"
)

var goBlock = regexp.MustCompile("(?s)```go\n(.*?)```")

// Every Go block of README.md is in example_test.go, verbatim, where
// TestReadmeSnippets runs it.
func TestReadmeSnippetsAreHere(t *testing.T) {
	readme, err := os.ReadFile("README.md")
	require.NoError(t, err)
	src, err := os.ReadFile("example_test.go")
	require.NoError(t, err)
	blocks := goBlock.FindAllStringSubmatch(string(readme), -1)
	require.NotEmpty(t, blocks)
	for _, b := range blocks {
		assert.Contains(t, string(src), b[1], "a README block that example_test.go does not hold")
	}
}

// The README's member, call and stop: two members on 127.0.0.1 with the
// automanaged provider find each other, and a call from each gets the
// value of one execution.
func TestReadmeSnippets(t *testing.T) {
	if racecheck.Isolated(t) {
		return
	}
	ports := freePorts(t, 2)
	members := []string{"127.0.0.1:" + ports[0], "127.0.0.1:" + ports[1]}
	var nodes []*fcluster.Node
	var users []*fcluster.Loader[User]
	t.Cleanup(func() {
		for _, n := range nodes {
			require.NoError(t, stop(n))
		}
	})
	type started struct {
		node  *fcluster.Node
		users *fcluster.Loader[User]
		err   error
	}
	out := make(chan started, 2)
	for _, p := range ports {
		port, err := strconv.Atoi(p)
		require.NoError(t, err)
		go func() {
			node, u, err := startMember("127.0.0.1", port, members)
			out <- started{node, u, err}
		}()
	}
	for range ports {
		s := wait.Recv(t, out)
		require.NoError(t, s.err)
		nodes, users = append(nodes, s.node), append(users, s.users)
	}
	for _, n := range nodes {
		wait.Until(t, "the members see each other", func() bool { return len(n.Members()) == 2 })
	}
	for _, u := range users {
		ctx, cancel := context.WithTimeout(context.Background(), hang)
		msg, err := greet(ctx, u, "42")
		cancel()
		require.NoError(t, err)
		assert.True(t, strings.HasPrefix(msg, "hello user 42 (shared: "), msg)
	}
}

// The README's Kubernetes Config starts a member that advertises POD_IP.
// The test changes only the port, to stay out of the way of anything on
// the machine.
func TestReadmeKubernetesConfig(t *testing.T) {
	if racecheck.Isolated(t) {
		return
	}
	t.Setenv("POD_IP", "127.0.0.1")
	cfg := kubernetesConfig(test.NewTestProvider(test.NewInMemAgent()))
	assert.Equal(t, "0.0.0.0", cfg.Host)
	cfg.Port = 0
	node, err := fcluster.NewNode(cfg)
	require.NoError(t, err)
	require.NoError(t, node.Start())
	assert.True(t, strings.HasPrefix(node.Address(), "127.0.0.1:"), node.Address())
	require.NoError(t, stop(node))

	t.Setenv("POD_IP", "")
	node, err = fcluster.NewNode(kubernetesConfig(test.NewTestProvider(test.NewInMemAgent())))
	require.NoError(t, err)
	require.ErrorIs(t, node.Start(), fcluster.ErrUnroutable, "no POD_IP: 0.0.0.0 would be advertised")
	require.NoError(t, node.Close())
}

var yamlBlock = regexp.MustCompile("(?s)```yaml\n(.*?)```")

// The README's Kubernetes manifest parses, and agrees with
// kubernetesConfig: the container port is Config.Port and POD_IP comes
// from the pod's IP; the service account can read and label pods.
func TestReadmeKubernetesManifest(t *testing.T) {
	readme, err := os.ReadFile("README.md")
	require.NoError(t, err)
	blocks := yamlBlock.FindAllStringSubmatch(string(readme), -1)
	require.Len(t, blocks, 1)
	dec := yaml.NewDecoder(strings.NewReader(blocks[0][1]))
	kinds := map[string]map[string]any{}
	for {
		var doc map[string]any
		if err := dec.Decode(&doc); err != nil {
			break
		}
		kinds[doc["kind"].(string)] = doc
	}
	require.Contains(t, kinds, "ServiceAccount")
	require.Contains(t, kinds, "RoleBinding")
	verbs := fmt.Sprint(kinds["Role"]["rules"])
	for _, v := range []string{"get", "list", "watch", "patch"} {
		assert.Contains(t, verbs, v)
	}
	spec := kinds["Deployment"]["spec"].(map[string]any)["template"].(map[string]any)["spec"].(map[string]any)
	assert.Equal(t, "users", spec["serviceAccountName"])
	c := spec["containers"].([]any)[0].(map[string]any)
	cfg := kubernetesConfig(nil)
	assert.Equal(t, cfg.Port, c["ports"].([]any)[0].(map[string]any)["containerPort"])
	env := c["env"].([]any)[0].(map[string]any)
	assert.Equal(t, "POD_IP", env["name"])
	assert.Equal(t, "status.podIP", fmt.Sprint(env["valueFrom"].(map[string]any)["fieldRef"].(map[string]any)["fieldPath"]))
}
