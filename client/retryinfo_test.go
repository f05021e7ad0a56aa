package client_test

import (
	"context"
	"errors"
	"sync"
	"testing"
	"time"

	"google.golang.org/genproto/googleapis/rpc/errdetails"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/status"
	"google.golang.org/protobuf/types/known/durationpb"

	"github.com/jeton-dev/jeton/client"
)

// rateRefusal is what jeton answers a call over its rate: RESOURCE_EXHAUSTED
// with google.rpc.RetryInfo.
func rateRefusal(t testing.TB, d time.Duration) error {
	t.Helper()
	st, err := status.New(codes.ResourceExhausted, "reveal rate limit reached").WithDetails(&errdetails.RetryInfo{RetryDelay: durationpb.New(d)})
	if err != nil {
		t.Fatal(err)
	}
	return st.Err()
}

// arrivals records when each call reached the stub.
type arrivals struct {
	mu sync.Mutex
	at []time.Time
}

func (a *arrivals) record() {
	a.mu.Lock()
	a.at = append(a.at, time.Now())
	a.mu.Unlock()
}

func (a *arrivals) gaps() []time.Duration {
	a.mu.Lock()
	defer a.mu.Unlock()
	var out []time.Duration
	for i := 1; i < len(a.at); i++ {
		out = append(out, a.at[i].Sub(a.at[i-1]))
	}
	return out
}

// TestRetryHonoursRetryInfo: a call refused for its rate is retried after
// the server's delay, never sooner; a refusal without a delay, or one whose
// delay outlasts the deadline, is returned at once, and RetryAfter reads
// the delay from it.
func TestRetryHonoursRetryInfo(t *testing.T) {
	const delay = 150 * time.Millisecond
	t.Run("paced by the delay", func(t *testing.T) {
		p := newTestPKI(t)
		s := newStub()
		var a arrivals
		s.before = func(_ context.Context, _ string, n int) error {
			a.record()
			if n <= 2 {
				return rateRefusal(t, delay)
			}
			return nil
		}
		// The backoff of UNAVAILABLE is tiny: only RetryInfo can make the
		// client wait as long as the server asked.
		c := newClient(t, startStub(t, s, p), p, client.WithRetry(3, time.Millisecond))
		if _, err := c.TokenizeValue(context.Background(), "email", "anne@example.org"); err != nil {
			t.Fatalf("TokenizeValue: %v", err)
		}
		gaps := a.gaps()
		if len(gaps) != 2 {
			t.Fatalf("server saw %d calls, want 3", len(gaps)+1)
		}
		for i, g := range gaps {
			if g < delay {
				t.Fatalf("retry %d came %v after the refusal, before the server's delay of %v", i+1, g, delay)
			}
		}
	})
	t.Run("the delay outlasts the deadline", func(t *testing.T) {
		p := newTestPKI(t)
		s := newStub()
		s.before = failTimes(100, rateRefusal(t, time.Hour))
		c := newClient(t, startStub(t, s, p), p, client.WithRetry(3, time.Millisecond), client.WithTimeout(5*time.Second))
		_, err := c.TokenizeValue(context.Background(), "email", "anne@example.org")
		if !errors.Is(err, client.ErrResourceExhausted) {
			t.Fatalf("err = %v, want ErrResourceExhausted at once", err)
		}
		if d, ok := client.RetryAfter(err); !ok || d != time.Hour {
			t.Fatalf("RetryAfter = %v, %v; want 1h, true", d, ok)
		}
		if n := len(s.recorded("Tokenize")); n != 1 {
			t.Fatalf("server saw %d calls, want 1: a wait past the deadline is pointless", n)
		}
	})
	t.Run("no delay, no retry", func(t *testing.T) {
		p := newTestPKI(t)
		s := newStub()
		s.before = failTimes(100, status.Error(codes.ResourceExhausted, "reveal budget of distinct records exhausted for this window"))
		c := newClient(t, startStub(t, s, p), p, client.WithRetry(3, time.Millisecond))
		_, err := c.TokenizeValue(context.Background(), "email", "anne@example.org")
		if _, ok := client.RetryAfter(err); ok || !errors.Is(err, client.ErrResourceExhausted) {
			t.Fatalf("err = %v; want ErrResourceExhausted without a delay", err)
		}
		if n := len(s.recorded("Tokenize")); n != 1 {
			t.Fatalf("server saw %d calls, want 1", n)
		}
	})
	t.Run("without WithRetry the delay is still readable", func(t *testing.T) {
		p := newTestPKI(t)
		s := newStub()
		s.before = failTimes(100, rateRefusal(t, delay))
		c := newClient(t, startStub(t, s, p), p)
		_, err := c.TokenizeValue(context.Background(), "email", "anne@example.org")
		if d, ok := client.RetryAfter(err); !ok || d != delay {
			t.Fatalf("RetryAfter = %v, %v; want %v, true", d, ok, delay)
		}
		var ce *client.Error
		if !errors.As(err, &ce) || ce.Code != codes.ResourceExhausted {
			t.Fatalf("err = %v, want a *client.Error", err)
		}
	})
}

func TestRetryAfter(t *testing.T) {
	tests := []struct {
		name string
		err  error
		want time.Duration
		ok   bool
	}{
		{"nil", nil, 0, false},
		{"plain error", errors.New("x"), 0, false},
		{"no details", status.Error(codes.ResourceExhausted, "x"), 0, false},
		{"retry info", rateRefusal(t, 2*time.Second), 2 * time.Second, true},
		{"other details only", func() error {
			st, _ := status.New(codes.ResourceExhausted, "x").WithDetails(&errdetails.QuotaFailure{})
			return st.Err()
		}(), 0, false},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			if d, ok := client.RetryAfter(tt.err); d != tt.want || ok != tt.ok {
				t.Fatalf("RetryAfter = %v, %v; want %v, %v", d, ok, tt.want, tt.ok)
			}
		})
	}
}
