package client

import (
	"context"
	"errors"
	"fmt"
	"strings"
	"time"

	"google.golang.org/genproto/googleapis/rpc/errdetails"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/status"
)

// Sentinels for the conditions callers branch on. errors.Is matches them
// against both *Error (the call failed) and *ItemError (one item failed).
var (
	// ErrNotFound: the token is unknown, or the caller may not reveal it;
	// jeton does not say which.
	ErrNotFound = errors.New("client: not found")
	// ErrInvalidArgument: the input is bad, e.g. an unknown field class or
	// an empty purpose. Retrying the same input fails again.
	ErrInvalidArgument = errors.New("client: invalid argument")
	// ErrPermissionDenied: the caller's identity may not do this, e.g. use
	// this purpose or tokenize this class.
	ErrPermissionDenied = errors.New("client: permission denied")
	// ErrUnavailable: the server or one of its backends cannot be reached,
	// TLS handshakes that fail included. Retrying later may work.
	ErrUnavailable = errors.New("client: unavailable")
	// ErrResourceExhausted: a budget or rate limit was reached. When
	// waiting helps, RetryAfter says how long.
	ErrResourceExhausted = errors.New("client: resource exhausted")
	// ErrUnauthenticated: the server did not accept the caller's identity.
	ErrUnauthenticated = errors.New("client: unauthenticated")
	// ErrFailedPrecondition: the call needs more from the caller first,
	// e.g. a format-preserving token held by several of the caller's
	// tenants needs the tenant named (WithTenant, InTenant).
	ErrFailedPrecondition = errors.New("client: failed precondition")
	// ErrCertificateNotAccepted: the server refused the client certificate
	// in the TLS handshake: issued by a CA the listener does not trust
	// (e.g. a sponsor certificate on the trusted listener), expired, or
	// absent. It is never retried; errors.Is(err, ErrUnauthenticated)
	// holds too.
	ErrCertificateNotAccepted = errors.New("client: " + msgCertNotAccepted)
)

var sentinels = map[codes.Code]error{
	codes.NotFound:           ErrNotFound,
	codes.InvalidArgument:    ErrInvalidArgument,
	codes.PermissionDenied:   ErrPermissionDenied,
	codes.Unavailable:        ErrUnavailable,
	codes.ResourceExhausted:  ErrResourceExhausted,
	codes.Unauthenticated:    ErrUnauthenticated,
	codes.FailedPrecondition: ErrFailedPrecondition,
	// Context errors too, so errors.Is(err, context.DeadlineExceeded) holds
	// for a call that ran out of time, wherever the deadline struck.
	codes.DeadlineExceeded: context.DeadlineExceeded,
	codes.Canceled:         context.Canceled,
}

func codeIs(code codes.Code, target error) bool {
	s, ok := sentinels[code]
	return ok && s == target
}

// Error is a failed call: the whole request was rejected or could not be
// served. Message comes from the server or the gRPC transport.
type Error struct {
	Code    codes.Code
	Message string
	// status is the server's, details included; nil for errors built
	// here.
	status *status.Status
}

// Error returns the code and the server's message.
func (e *Error) Error() string {
	return fmt.Sprintf("client: %s: %s", e.Code, e.Message)
}

// Is reports whether target is the sentinel for e.Code.
func (e *Error) Is(target error) bool {
	if target == ErrCertificateNotAccepted {
		return e.Code == codes.Unauthenticated && strings.HasPrefix(e.Message, msgCertNotAccepted)
	}
	return codeIs(e.Code, target)
}

// GRPCStatus lets status.Code and status.FromError see through an *Error,
// with the server's error details.
func (e *Error) GRPCStatus() *status.Status {
	if e.status != nil {
		return e.status
	}
	return status.New(e.Code, e.Message)
}

// RetryAfter returns how long the server asked the caller to wait before
// sending the same call again (google.rpc.RetryInfo), and whether it
// asked. jeton asks when a call went over a rate limit; a call refused
// for a batch size or a distinct budget has no delay, since waiting alone
// does not help. Pace on it: the client's own retries (WithRetry) do.
// err may be an *Error, or any error carrying a gRPC status.
func RetryAfter(err error) (time.Duration, bool) {
	st, ok := status.FromError(err)
	if !ok || st.Code() == codes.OK {
		return 0, false
	}
	for _, d := range st.Details() {
		if ri, ok := d.(*errdetails.RetryInfo); ok && ri.GetRetryDelay().IsValid() {
			if d := ri.GetRetryDelay().AsDuration(); d >= 0 {
				return d, true
			}
		}
	}
	return 0, false
}

// MaxBatch returns the most items per call the server admits for this
// identity, when err is a refusal for a call larger than that
// (RESOURCE_EXHAUSTED with a google.rpc.QuotaFailure violation whose
// quota_id is "max_batch"). Send smaller calls: the Revealer's Detokenize
// and Mask do so by themselves.
func MaxBatch(err error) (int, bool) {
	st, ok := status.FromError(err)
	if !ok || st.Code() != codes.ResourceExhausted {
		return 0, false
	}
	for _, d := range st.Details() {
		if q, ok := d.(*errdetails.QuotaFailure); ok {
			for _, v := range q.GetViolations() {
				if v.GetQuotaId() == "max_batch" && v.GetQuotaValue() > 0 {
					return int(v.GetQuotaValue()), true
				}
			}
		}
	}
	return 0, false
}

// codeOf returns the gRPC code of err.
func codeOf(err error) codes.Code { return status.Code(err) }

// ItemError is the failure of one item in a batch; the other items may have
// succeeded. Index is the item's position in the slice the caller passed,
// chunking notwithstanding. Message comes from the server.
type ItemError struct {
	Index   int
	Code    codes.Code
	Message string
}

// Error returns the item's index, code and the server's message.
func (e *ItemError) Error() string {
	return fmt.Sprintf("client: item %d: %s: %s", e.Index, e.Code, e.Message)
}

// Is reports whether target is the sentinel for e.Code.
func (e *ItemError) Is(target error) bool { return codeIs(e.Code, target) }

// callError turns an error from a gRPC call into an *Error.
func callError(err error) error {
	if err == nil {
		return nil
	}
	// A context error that struck before the call reached gRPC has no
	// status; give it the code gRPC would have used.
	st := status.Convert(err)
	if st.Code() == codes.Unknown {
		switch {
		case errors.Is(err, context.DeadlineExceeded):
			st = status.New(codes.DeadlineExceeded, err.Error())
		case errors.Is(err, context.Canceled):
			st = status.New(codes.Canceled, err.Error())
		}
	}
	return &Error{Code: st.Code(), Message: st.Message(), status: st}
}

// partial is what a call that failed part way returns beside its error:
// the results of the chunks already done, or nil when there are none, so
// that a caller can tell "nothing came back" by res == nil.
func partial[T any](done []T) []T {
	if len(done) == 0 {
		return nil
	}
	return done
}
