package server

import (
	"context"
	"errors"

	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/status"

	"github.com/jeton-dev/jeton/server/budget"
	"github.com/jeton-dev/jeton/tokenizer"
)

// Messages shown to callers. They are fixed strings: nothing a caller sent,
// and no internal detail, ever reaches them.
const (
	msgNotFound    = "token not found or not permitted"
	msgUnavailable = "a backend is unavailable; retry later"
	msgInternal    = "internal error"
	msgBadToken    = "malformed token"
	msgBudget      = "reveal budget exceeded"
	msgSuspended   = "identity suspended"
)

// denied is a policy refusal of a whole call, shown to the caller as is.
type denied string

func (d denied) Error() string { return string(d) }

// invalid is a bad request, shown to the caller as is.
type invalid string

func (e invalid) Error() string { return string(e) }

// toStatus is the one place errors become gRPC statuses, for whole calls
// and for items inside a batch alike.
func toStatus(err error) *status.Status {
	var d denied
	var inv invalid
	switch {
	case err == nil:
		return status.New(codes.OK, "")
	case errors.Is(err, context.Canceled):
		return status.New(codes.Canceled, "call canceled")
	case errors.Is(err, context.DeadlineExceeded):
		return status.New(codes.DeadlineExceeded, "deadline exceeded")
	case errors.Is(err, tokenizer.ErrUnavailable), errors.Is(err, budget.ErrUnavailable):
		return status.New(codes.Unavailable, msgUnavailable)
	case errors.Is(err, budget.ErrSuspended):
		return status.New(codes.PermissionDenied, msgSuspended)
	case errors.Is(err, budget.ErrExceeded):
		return status.New(codes.ResourceExhausted, msgBudget)
	case errors.Is(err, tokenizer.ErrNotFound), errors.Is(err, tokenizer.ErrKeyDestroyed):
		return status.New(codes.NotFound, msgNotFound)
	case errors.Is(err, tokenizer.ErrInvalidToken):
		return status.New(codes.InvalidArgument, msgBadToken)
	case errors.As(err, &d):
		return status.New(codes.PermissionDenied, d.Error())
	case errors.As(err, &inv):
		return status.New(codes.InvalidArgument, inv.Error())
	case tokenizer.IsUserError(err):
		// UserError messages are written never to quote the input.
		return status.New(codes.InvalidArgument, err.Error())
	default:
		return status.New(codes.Internal, msgInternal)
	}
}

// rpcError returns err as a gRPC error for a whole call.
func rpcError(err error) error { return toStatus(err).Err() }
