package server

import (
	"context"
	"errors"
	"fmt"
	"strconv"
	"time"

	"google.golang.org/genproto/googleapis/rpc/errdetails"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/status"
	"google.golang.org/protobuf/protoadapt"
	"google.golang.org/protobuf/types/known/durationpb"

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
	msgBudget      = "budget exceeded"
	msgSuspended   = "identity suspended; a custodian must reinstate it"
	// msgKeyReused answers a call that reuses an idempotency key with
	// other items. INVALID_ARGUMENT, not FAILED_PRECONDITION: the request
	// itself is wrong (its key belongs to another call), retrying it never
	// succeeds, and what fixes it is a new request (a new key), not a change
	// of the server's state that the caller could wait for. The Go client
	// reports it as ErrInvalidArgument, "retrying the same input fails
	// again", which is what the caller must know.
	msgKeyReused = "idempotency key already used for a call with other items (values, classes, subjects or their order); send new items under a new idempotency key"
	msgAmbiguous = "format-preserving token matches records in several of the caller's tenants; name the tenant"
	msgShapeFull = "no free token left in the class's token shape for a value of this length; retry, or use a wider shape"
)

// refusal is a call a budget refused, for the operation op (opReveal or
// opTokenize). err is budget.ErrSuspended or a *budget.ExceededError.
type refusal struct {
	op       string
	maxBatch int
	err      error
}

func (r refusal) Error() string { return r.err.Error() }
func (r refusal) Unwrap() error { return r.err }

// status tells the caller what happened and what to do: a suspended
// identity, including on the call that suspended it, is PERMISSION_DENIED
// and says so; a rate refusal carries google.rpc.RetryInfo with the delay
// after which the same call fits; a batch or distinct refusal carries
// google.rpc.QuotaFailure naming the limit, and no delay, since waiting
// alone does not help (a smaller batch does, or the window sliding).
func (r refusal) status() *status.Status {
	var ex *budget.ExceededError
	if !errors.As(r.err, &ex) || ex.Suspended {
		return status.New(codes.PermissionDenied, msgSuspended)
	}
	what := "reveal"
	if r.op == opTokenize {
		what = "deterministic tokenization"
	}
	var (
		st     *status.Status
		detail protoadapt.MessageV1
	)
	switch ex.Limit {
	case budget.LimitRate:
		if ex.RetryAfter <= 0 {
			st = status.New(codes.ResourceExhausted, what+" rate limit: this call is larger than the burst and is never admitted; send smaller calls")
			detail = quota(ex.Limit, "the call costs more than the burst")
			break
		}
		d := ex.RetryAfter.Round(time.Millisecond)
		st = status.New(codes.ResourceExhausted, fmt.Sprintf("%s rate limit reached; retry after %v", what, d))
		detail = &errdetails.RetryInfo{RetryDelay: durationpb.New(d)}
	case budget.LimitMaxBatch:
		st = status.New(codes.ResourceExhausted, what+" budget: too many items in one call for this identity; at most "+strconv.Itoa(r.maxBatch))
		// The bound as a number, for a client to split its call by.
		q := quota(ex.Limit, "at most "+strconv.Itoa(r.maxBatch)+" items per call")
		q.Violations[0].QuotaId, q.Violations[0].QuotaValue = string(ex.Limit), int64(r.maxBatch)
		detail = q
	default:
		unit := "records"
		if r.op == opTokenize {
			unit = "values of deterministic classes"
		}
		st = status.New(codes.ResourceExhausted, what+" budget of distinct "+unit+" exhausted for this window")
		detail = quota(ex.Limit, "distinct "+unit+" per window")
	}
	if withDetail, err := st.WithDetails(detail); err == nil {
		st = withDetail
	}
	return st
}

func quota(l budget.Limit, desc string) *errdetails.QuotaFailure {
	return &errdetails.QuotaFailure{Violations: []*errdetails.QuotaFailure_Violation{{Subject: string(l), Description: desc}}}
}

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
	var ref refusal
	switch {
	case err == nil:
		return status.New(codes.OK, "")
	case errors.As(err, &ref):
		return ref.status()
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
	case errors.Is(err, tokenizer.ErrAmbiguous):
		return status.New(codes.FailedPrecondition, msgAmbiguous)
	case errors.Is(err, tokenizer.ErrShapeExhausted):
		return status.New(codes.ResourceExhausted, msgShapeFull)
	case errors.Is(err, tokenizer.ErrInvalidToken):
		return status.New(codes.InvalidArgument, msgBadToken)
	case errors.Is(err, tokenizer.ErrIdempotencyKeyReused):
		return status.New(codes.InvalidArgument, msgKeyReused)
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
