package flight

import "github.com/actorflight/flight/coordinator"

// LogRoutes returns how many handlers protoactor's log lines are routed to.
func LogRoutes() int { return coordinator.SystemLogs().Len() }
