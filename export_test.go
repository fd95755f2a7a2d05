package flight

import "github.com/actorflight/flight/internal/shared"

// LogRoutes returns how many handlers protoactor's log lines are routed to.
func LogRoutes() int { return shared.LogRoutes() }
