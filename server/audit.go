package server

import (
	"context"

	"github.com/jeton-dev/jeton/server/audit"
)

// Auditor durably records every call on the trusted side. Append returns
// only once the record is on stable storage; a reveal is answered only after
// its record is appended, and fails with UNAVAILABLE when Append fails.
type Auditor interface {
	Append(ctx context.Context, rec audit.Record) error
	// TokenHash returns the keyed hash under which a token is logged.
	TokenHash(token string) string
}
