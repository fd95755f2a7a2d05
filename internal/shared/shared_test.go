package shared_test

import (
	"bytes"
	"log/slog"
	"strings"
	"testing"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"

	"github.com/actorflight/flight/internal/shared"
)

// A routed handler gets the shared system's lines with
// component=protoactor; one handler routed twice counts once; unrouting is
// idempotent and ends the route.
func TestRouteLogs(t *testing.T) {
	var buf bytes.Buffer
	h := slog.NewTextHandler(&buf, nil)
	before := shared.LogRoutes()
	undo1 := shared.RouteLogs(h)
	undo2 := shared.RouteLogs(h)
	assert.Equal(t, before+1, shared.LogRoutes(), "the same handler routed twice")

	shared.System().Logger().Error("dead letter")
	require.Equal(t, 1, strings.Count(buf.String(), "dead letter"), buf.String())
	assert.Contains(t, buf.String(), "component=protoactor")

	undo1()
	undo1()
	assert.Equal(t, before+1, shared.LogRoutes(), "one route of the handler is left")
	undo2()
	assert.Equal(t, before, shared.LogRoutes())
	buf.Reset()
	shared.System().Logger().Error("dead letter")
	assert.Empty(t, buf.String())
}

func TestDefaultShards(t *testing.T) {
	assert.GreaterOrEqual(t, shared.DefaultShards(), 4)
}
