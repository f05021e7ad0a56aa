package server_test

import (
	"context"
	"testing"
	"time"

	"google.golang.org/grpc/codes"

	jetonv1 "github.com/jeton-dev/jeton/proto/jeton/v1"
	"github.com/jeton-dev/jeton/server/devpki"
)

// TestRefusalFloodIsAggregated: a flood of reveals refused before the
// policy (no purpose) does not write one audit record each. Past a small
// burst they are counted, and the count is written as one aggregate
// record; every refusal is accounted for. The flood of one identity does
// not stop another identity's refusal from being audited on its own.
func TestRefusalFloodIsAggregated(t *testing.T) {
	e := startEnv(t, envOpts{})
	dc := jetonv1.NewDetokenizerClient(e.ttpConn(t))
	const flood = 300
	for i := range flood {
		if _, err := dc.Detokenize(ctx(t), &jetonv1.DetokenizeRequest{Tokens: []string{"x"}}); code(err) != codes.InvalidArgument {
			t.Fatalf("call %d: %v, want InvalidArgument", i, code(err))
		}
	}
	if n := len(e.audit.records()); n > 20 {
		t.Fatalf("%d refused calls wrote %d audit records one by one, want a bounded few", flood, n)
	}
	// Another identity's refusal is still written at once.
	cert, key := e.issue(t, e.bundle.TTPAuthority, devpki.LeafOptions{URI: "spiffe://jeton.dev/ttp/stranger"})
	stranger := jetonv1.NewDetokenizerClient(dial(t, e.srv.TrustedAddr().String(), e.bundle.ServerCA, cert, key))
	before := len(e.audit.records())
	if _, err := stranger.Detokenize(ctx(t), &jetonv1.DetokenizeRequest{Tokens: []string{"x"}, Purpose: "support"}); code(err) != codes.PermissionDenied {
		t.Fatalf("stranger: %v", err)
	}
	if recs := e.audit.records(); len(recs) != before+1 || recs[len(recs)-1].Identity != "spiffe://jeton.dev/ttp/stranger" {
		t.Fatal("another identity's refusal was not audited at once during the flood")
	}
	// Stop writes the last aggregates.
	sctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
	defer cancel()
	e.srv.Stop(sctx)
	single, counted, aggregates := 0, 0, 0
	for _, r := range e.audit.records() {
		if r.Identity != devpki.TTPID || r.Method != "Detokenize" {
			continue
		}
		if r.Outcome != "failed" || r.Detail != codes.InvalidArgument.String() {
			t.Fatalf("record %+v", r)
		}
		if r.Count == 0 {
			single++
			continue
		}
		aggregates++
		counted += r.Count
		if r.Since.IsZero() || r.Since.After(r.Time) {
			t.Fatalf("aggregate record without a sound since: %+v", r)
		}
	}
	if single+counted != flood || aggregates != 1 {
		t.Fatalf("%d written one by one, %d counted in %d aggregates; want %d in all, one aggregate", single, counted, aggregates, flood)
	}
}
