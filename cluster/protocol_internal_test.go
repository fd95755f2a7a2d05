package cluster

import (
	"context"
	"errors"
	"testing"

	"github.com/asynkron/protoactor-go/cluster/clusterproviders/test"
	"github.com/stretchr/testify/require"

	"github.com/actorflight/flight/cluster/internal/racecheck"
	"github.com/actorflight/flight/cluster/internal/wire"
)

// A Join that reaches a grain of another loader than the one it names
// (the grain kind "flight.<name>" shared by something else) is answered
// with CODE_NO_LOADER, which callers see as ErrNoLoader; the loader does
// not run.
func TestJoinForAnotherLoaderGetsErrNoLoader(t *testing.T) {
	if racecheck.Isolated(t) {
		return
	}
	node, err := NewNode(Config{Name: "noloader", Provider: test.NewTestProvider(test.NewInMemAgent())})
	require.NoError(t, err)
	defer func() { require.NoError(t, node.Close()) }()
	l, err := Register(node, "v", func(ctx context.Context, key string) (string, error) { return key, nil }, nil)
	require.NoError(t, err)
	require.NoError(t, node.Start())

	// The grain kind of "v", with another loader's name.
	other := &entry{name: "w", kind: l.entry.kind, fingerprint: l.entry.fingerprint}
	r, err := node.send(context.Background(), other, "k")
	require.NoError(t, err)
	require.Equal(t, wire.Code_CODE_NO_LOADER, r.Code)
	require.True(t, errors.Is(replyErr(r), ErrNoLoader))
	require.Zero(t, l.Stats().Owner.Flights)
}
