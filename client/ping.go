package client

import (
	"context"

	"google.golang.org/grpc/codes"
	healthpb "google.golang.org/grpc/health/grpc_health_v1"
)

// Ping asks the server's grpc.health.v1 service whether it is serving. It
// returns ErrUnavailable when the server is down or reports NOT_SERVING
// (a backend it depends on is down), and is cheap enough for readiness
// checks.
func (c *core) Ping(ctx context.Context) error {
	res, err := healthpb.NewHealthClient(c.conn).Check(ctx, &healthpb.HealthCheckRequest{})
	if err != nil {
		return callError(err)
	}
	if res.GetStatus() != healthpb.HealthCheckResponse_SERVING {
		return &Error{Code: codes.Unavailable, Message: "server is not serving"}
	}
	return nil
}
