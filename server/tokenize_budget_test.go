package server_test

import (
	"fmt"
	"testing"

	"google.golang.org/grpc/codes"

	jetonv1 "github.com/jeton-dev/jeton/proto/jeton/v1"
	"github.com/jeton-dev/jeton/server/devpki"
)

// Deterministic classes are an oracle, so a sponsor's budget bounds how
// many deterministic items it may tokenize; random items are not limited.
func TestDeterministicTokenizeIsRateLimited(t *testing.T) {
	e := startEnv(t, envOpts{classes: deterministic("", "email")})
	cert, key := e.issue(t, e.bundle.SponsorAuthority, devpki.LeafOptions{URI: "spiffe://jeton.dev/sponsor/limited"})
	tc := jetonv1.NewTokenizerClient(dial(t, e.srv.PublicAddr().String(), e.bundle.ServerCA, cert, key))
	batch := func(class string, n, from int) *jetonv1.TokenizeRequest {
		req := &jetonv1.TokenizeRequest{}
		for i := 0; i < n; i++ {
			v := useValue(fmt.Sprintf("guess.%d@example.org", from+i))
			if class == "name" {
				v = useValue(fmt.Sprintf("Guess Person %d", from+i))
			}
			req.Items = append(req.Items, &jetonv1.TokenizeItem{FieldClass: class, Value: v})
		}
		return req
	}
	if _, err := tc.Tokenize(ctx(t), batch("email", 21, 0)); code(err) != codes.ResourceExhausted {
		t.Fatalf("a deterministic batch over max_batch: got %v, want ResourceExhausted", code(err))
	}
	if _, err := tc.Tokenize(ctx(t), batch("email", 20, 0)); err != nil {
		t.Fatalf("the burst: %v", err)
	}
	if _, err := tc.Tokenize(ctx(t), batch("email", 5, 100)); code(err) != codes.ResourceExhausted {
		t.Fatalf("past the burst: got %v, want ResourceExhausted", code(err))
	}
	// Random items are no oracle: they still go through.
	if res, err := tc.Tokenize(ctx(t), batch("name", 20, 0)); err != nil || res.Results[19].GetToken() == "" {
		t.Fatalf("random items were limited: %v", err)
	}
}
