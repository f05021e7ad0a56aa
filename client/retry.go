package client

import (
	"context"
	"math/rand/v2"
	"time"

	"github.com/grpc-ecosystem/go-grpc-middleware/v2/interceptors/retry"
	"google.golang.org/grpc"
	"google.golang.org/grpc/codes"
)

// retryInterceptor retries a call up to retries times after the first
// attempt:
//
//   - UNAVAILABLE after backoff, then twice as long, and so on, with
//     jitter;
//   - RESOURCE_EXHAUSTED only when the server said how long to wait
//     (google.rpc.RetryInfo, as jeton sends with a rate refusal), after
//     that delay and a little more, and only when the call's deadline
//     leaves time for it. Without a delay it is not retried: a budget
//     or batch refusal does not go away by waiting.
//
// Every other code fails at once. Pacing on the server's delay keeps a
// retrying client within its rate; jeton never suspends an identity for
// rate refusals, only for exhausting a distinct budget.
//
// The go-grpc-middleware retry interceptor runs the loop. Its backoff
// function does not see the error, so each call gets its own state: the
// retriable check, which does, leaves the delay for the backoff.
func retryInterceptor(retries uint, backoff time.Duration) grpc.UnaryClientInterceptor {
	loop := retry.UnaryClientInterceptor(retry.WithMax(retries + 1))
	return func(ctx context.Context, method string, req, reply any, cc *grpc.ClientConn, invoker grpc.UnaryInvoker, opts ...grpc.CallOption) error {
		st := &retryState{ctx: ctx, exp: retry.BackoffExponentialWithJitter(backoff, 0.2)}
		opts = append(opts, retry.WithRetriable(st.retriable), retry.WithBackoff(st.backoff))
		return loop(ctx, method, req, reply, cc, invoker, opts...)
	}
}

// retryState is one call's: the delay the server asked for last.
type retryState struct {
	ctx   context.Context
	exp   retry.BackoffFunc
	delay time.Duration
}

func (s *retryState) retriable(err error) bool {
	s.delay = 0
	switch codeOf(err) {
	case codes.Unavailable:
		return true
	case codes.ResourceExhausted:
		d, ok := RetryAfter(err)
		if !ok {
			return false
		}
		s.delay = paced(d)
		// Waiting past the deadline would only turn a clear refusal into
		// DEADLINE_EXCEEDED: give the caller the refusal and its delay.
		if dl, ok := s.ctx.Deadline(); ok && time.Until(dl) < s.delay {
			return false
		}
		return true
	}
	return false
}

func (s *retryState) backoff(ctx context.Context, attempt uint) time.Duration {
	if s.delay > 0 {
		return s.delay
	}
	return s.exp(ctx, attempt)
}

// paced adds up to 10% to the server's delay, never less: replicas and
// clients that were refused together do not all come back at once, and
// none comes back before the bucket holds enough.
func paced(d time.Duration) time.Duration {
	return d + time.Duration(rand.Int64N(int64(d)/10+1))
}
