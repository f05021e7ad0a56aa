package client_test

import (
	"context"
	"strconv"
	"testing"

	"google.golang.org/genproto/googleapis/rpc/errdetails"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/status"

	"github.com/jeton-dev/jeton/client"
	jetonv1 "github.com/jeton-dev/jeton/proto/jeton/v1"
)

// TestRevealSplitsOnMaxBatch: a reveal refused because the identity's
// max_batch is smaller than the call (QuotaFailure, quota_id max_batch,
// quota_value N) is sent again in calls of at most N tokens, and every
// result comes back in order; MaxBatch reads N from the refusal.
func TestRevealSplitsOnMaxBatch(t *testing.T) {
	const maxBatch = 3
	p := newTestPKI(t)
	s := newStub()
	refusal := func() error {
		st, err := status.New(codes.ResourceExhausted, "reveal budget: too many items in one call for this identity; at most 3").
			WithDetails(&errdetails.QuotaFailure{Violations: []*errdetails.QuotaFailure_Violation{{Subject: "max_batch", QuotaId: "max_batch", QuotaValue: maxBatch}}})
		if err != nil {
			t.Fatal(err)
		}
		return st.Err()
	}
	s.before = func(_ context.Context, method string, n int) error {
		calls := s.recorded("Detokenize")
		if len(calls) > 0 && len(calls[len(calls)-1].req.(*jetonv1.DetokenizeRequest).GetTokens()) > maxBatch {
			return refusal()
		}
		return nil
	}
	files := p.clients["app"]
	r, err := client.NewRevealer(startStub(t, s, p), client.WithTLSFiles(p.caFile, files[0], files[1]))
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { r.Close() })
	toks := make([]string, 8)
	for i := range toks {
		toks[i] = "tk-" + strconv.Itoa(i)
	}
	res, err := r.Detokenize(context.Background(), toks, "vetting", "")
	if err != nil {
		t.Fatalf("Detokenize of 8 tokens under max_batch 3: %v", err)
	}
	if len(res) != len(toks) {
		t.Fatalf("%d results for %d tokens", len(res), len(toks))
	}
	for i, x := range res {
		if x.Token != toks[i] {
			t.Fatalf("result %d is for %q, want %q", i, x.Token, toks[i])
		}
	}
	var sizes []int
	for _, c := range s.recorded("Detokenize") {
		sizes = append(sizes, len(c.req.(*jetonv1.DetokenizeRequest).GetTokens()))
	}
	if want := []int{8, 3, 3, 2}; !equalInts(sizes, want) {
		t.Fatalf("calls of %v tokens, want %v (one refused, then calls of max_batch)", sizes, want)
	}
	if n, ok := client.MaxBatch(refusal()); !ok || n != maxBatch {
		t.Fatalf("MaxBatch = %d, %v", n, ok)
	}
	if _, ok := client.MaxBatch(status.Error(codes.ResourceExhausted, "rate")); ok {
		t.Fatal("MaxBatch of a refusal without the quota")
	}
}

func equalInts(a, b []int) bool {
	if len(a) != len(b) {
		return false
	}
	for i := range a {
		if a[i] != b[i] {
			return false
		}
	}
	return true
}
