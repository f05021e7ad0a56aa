package server_test

import (
	"strings"
	"testing"

	"google.golang.org/grpc/codes"

	jetonv1 "github.com/jeton-dev/jeton/proto/jeton/v1"
	"github.com/jeton-dev/jeton/server"
	"github.com/jeton-dev/jeton/server/devpki"
)

// A certificate cannot borrow a URI identity through its CN: URI
// identities come only from a URI SAN.
func TestURIIdentityNotTakenFromCN(t *testing.T) {
	e := startEnv(t, envOpts{})
	cert, key := e.issue(t, e.bundle.TTPAuthority, devpki.LeafOptions{CommonName: "spiffe://jeton.dev/ttp/demo"})
	cc := dial(t, e.srv.TrustedAddr().String(), e.bundle.ServerCA, cert, key)
	_, err := jetonv1.NewDetokenizerClient(cc).Detokenize(ctx(t), &jetonv1.DetokenizeRequest{Tokens: []string{"tok_x"}, Purpose: "support"})
	if c := code(err); c != codes.Unauthenticated && c != codes.PermissionDenied {
		t.Fatalf("a URI identity in a CN: got %v, want it refused", c)
	}
}

// An identity that reveals cannot also administer, so a custodian can
// never lift the suspension its own reading caused or act while
// suspended.
func TestPolicyRefusesRevealAndAdminTogether(t *testing.T) {
	pol := `
identities:
  - {id: "spiffe://x/both", tenants: [demo], roles: [reader, custodian]}
roles:
  reader: {reveal: {"*": full}, purposes: [support]}
  custodian: {admin: true}
purposes:
  - {code: support, description: d, classes: ["*"]}
`
	_, err := server.ParsePolicy([]byte(pol), []string{"name"})
	if err == nil || !strings.Contains(err.Error(), "both reveal and administer") {
		t.Fatalf("got %v, want the combination refused", err)
	}
}

// Reinstating takes a reason, an identity the policy knows, and a
// custodian who administers every tenant that identity reads.
func TestReinstateIsScoped(t *testing.T) {
	e := startEnv(t, envOpts{})
	cert, key := e.issue(t, e.bundle.TTPAuthority, devpki.LeafOptions{URI: "spiffe://jeton.dev/ttp/custodian"})
	ac := jetonv1.NewAdminClient(dial(t, e.srv.TrustedAddr().String(), e.bundle.ServerCA, cert, key))
	tests := []struct {
		name string
		req  *jetonv1.ReinstateIdentityRequest
		want codes.Code
	}{
		{"no reason", &jetonv1.ReinstateIdentityRequest{Identity: "spiffe://jeton.dev/ttp/demo"}, codes.InvalidArgument},
		{"unknown identity", &jetonv1.ReinstateIdentityRequest{Identity: "spiffe://jeton.dev/ttp/nobody", Reason: "r"}, codes.InvalidArgument},
		{"other tenant's reader", &jetonv1.ReinstateIdentityRequest{Identity: "spiffe://jeton.dev/sponsor/other", Reason: "r"}, codes.PermissionDenied},
		{"own tenant's reader", &jetonv1.ReinstateIdentityRequest{Identity: "spiffe://jeton.dev/ttp/demo", Reason: "INC-2"}, codes.OK},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			if _, err := ac.ReinstateIdentity(ctx(t), tt.req); code(err) != tt.want {
				t.Fatalf("got %v, want %v", code(err), tt.want)
			}
		})
	}
}

// Identities that may reveal without a distinct budget are named, so
// operators see every unbounded extraction path at start-up and reload.
func TestUnboundedRevealersAreNamed(t *testing.T) {
	pol, err := server.ParsePolicy([]byte(`
identities:
  - {id: "spiffe://x/free", tenants: [demo], roles: [free]}
  - {id: "spiffe://x/bound", tenants: [demo], roles: [bound]}
  - {id: "spiffe://x/sponsor", tenants: [demo], roles: [sponsor]}
roles:
  free: {reveal: {"*": full}, purposes: [support]}
  bound: {reveal: {"*": full}, purposes: [support], budget: {distinct: 10}}
  sponsor: {tokenize: ["*"]}
purposes:
  - {code: support, description: d, classes: ["*"]}
`), []string{"name"})
	if err != nil {
		t.Fatal(err)
	}
	if got := pol.Unbounded(); len(got) != 1 || got[0] != "spiffe://x/free" {
		t.Fatalf("Unbounded() = %v, want only the free reader", got)
	}
}
