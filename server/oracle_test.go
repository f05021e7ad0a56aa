package server_test

import (
	"fmt"
	"strings"
	"testing"

	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/status"

	jetonv1 "github.com/jeton-dev/jeton/proto/jeton/v1"
	"github.com/jeton-dev/jeton/server"
	"github.com/jeton-dev/jeton/server/devpki"
	"github.com/jeton-dev/jeton/tokenizer"
)

// memberID is a deterministic class configured on purpose: every built-in
// class is random, and a deployment opts in per class.
var memberID = tokenizer.Class{Name: "member-id", Kind: tokenizer.KindDeterministic, Normalize: []string{"trim", "upper"}, Mask: "last3", MaxLen: 32}

func classesWithMemberID() []tokenizer.Class {
	return append(tokenizer.DefaultClasses(), memberID)
}

// oraclePolicy gives the sponsor the budget under test (BUDGET).
const oraclePolicy = `
identities:
  - {id: "spiffe://jeton.dev/sponsor/demo", tenants: [demo], roles: [sponsor-app]}
  - {id: "spiffe://jeton.dev/ttp/demo", tenants: [demo], roles: [reader]}
  - {id: "spiffe://jeton.dev/ttp/custodian", tenants: [demo], roles: [custodian]}
roles:
  sponsor-app:
    tokenize: ["*"]
    budget: BUDGET
  reader:
    reveal: {"*": full}
    purposes: [support]
    budget: {distinct: 100}
  custodian:
    admin: true
purposes:
  - {code: support, description: answering a data subject's request, classes: ["*"]}
`

// TestPolicyRefusesUnbudgetedOracle: a role that may tokenize a
// deterministic class needs a distinct budget; the server refuses to start
// on a policy without one, naming the role, and a reload is refused the
// same way, keeping the policy in force.
func TestPolicyRefusesUnbudgetedOracle(t *testing.T) {
	names := []string{"name", "member-id"}
	for _, tt := range []struct{ name, role, wantErr string }{
		{"no budget", `{tokenize: ["*"]}`, "roles.sponsor-app may tokenize the deterministic class member-id"},
		{"a budget without distinct", `{tokenize: [member-id], budget: {max_batch: 10, rate: 1, burst: 10}}`, "roles.sponsor-app may tokenize the deterministic class member-id"},
		{"random classes only", `{tokenize: [name]}`, ""},
		{"distinct set", `{tokenize: ["*"], budget: {distinct: 10}}`, ""},
	} {
		t.Run(tt.name, func(t *testing.T) {
			pol, err := server.ParsePolicy([]byte(`
identities:
  - {id: "spiffe://x/sponsor", tenants: [demo], roles: [sponsor-app]}
roles:
  sponsor-app: `+tt.role+`
`), names)
			if err != nil {
				t.Fatal(err)
			}
			err = pol.CheckOracles([]tokenizer.Class{{Name: "name", Kind: tokenizer.KindRandom}, memberID})
			if tt.wantErr == "" && err != nil || tt.wantErr != "" && (err == nil || !strings.Contains(err.Error(), tt.wantErr)) {
				t.Fatalf("CheckOracles = %v, want %q", err, tt.wantErr)
			}
		})
	}

	// server.New and SetPolicy apply it.
	e := startGuardEnv(t, guardOpts{policy: oraclePolicy, budget: "{distinct: 10}", classes: classesWithMemberID()})
	bad, err := server.ParsePolicy([]byte(strings.Replace(oraclePolicy, "BUDGET", "{rate: 5, burst: 10}", 1)), []string{"name", "email", "phone", "passport", "birthdate", "address", "text", "member-id"})
	if err != nil {
		t.Fatal(err)
	}
	if err := e.replicas[0].srv.SetPolicy(bad); err == nil || !strings.Contains(err.Error(), "roles.sponsor-app") {
		t.Fatalf("SetPolicy = %v, want the unbudgeted sponsor role refused", err)
	}
	if p, _ := e.replicas[0].srv.Policy().Principal(devpki.SponsorID); p.Budget.Distinct != 10 {
		t.Fatal("a refused policy replaced the one in force")
	}
}

// TestDeterministicSweepAcrossReplicas: a sponsor holding one member-id
// token sweeps 10,000 guesses of the class, alternating between two
// replicas on one real Redis. It gets tokens for no more values than its
// distinct budget, the refusal that exhausts it suspends it (on both
// replicas, for random classes too) and says so, and alerts are raised.
func TestDeterministicSweepAcrossReplicas(t *testing.T) {
	e := startGuardEnv(t, guardOpts{
		policy: oraclePolicy, classes: classesWithMemberID(), replicas: 2, redis: true,
		budget: "{max_batch: 500, rate: 100000, burst: 100000, distinct: 1000, window: 24h, suspend_after: 1}",
	})
	sponsors := []jetonv1.TokenizerClient{
		jetonv1.NewTokenizerClient(e.conn(t, 0, devpki.SponsorID)),
		jetonv1.NewTokenizerClient(e.conn(t, 1, devpki.SponsorID)),
	}
	guess := func(i int) string { return useValue(fmt.Sprintf("FAKE-%08d", i)) }
	batch := func(from, n int) *jetonv1.TokenizeRequest {
		req := &jetonv1.TokenizeRequest{}
		for i := from; i < from+n; i++ {
			req.Items = append(req.Items, &jetonv1.TokenizeItem{FieldClass: "member-id", Value: guess(i)})
		}
		return req
	}
	// The token the sponsor wants to invert.
	held, err := sponsors[0].Tokenize(ctx(t), batch(7777, 1))
	if err != nil {
		t.Fatal(err)
	}
	target := held.GetResults()[0].GetToken()

	tokens, refusedAt := 0, -1
	for call := range 20 {
		res, err := sponsors[call%2].Tokenize(ctx(t), batch(call*500, 500))
		if err == nil {
			if refusedAt >= 0 {
				t.Fatalf("call %d admitted after the budget refused call %d", call, refusedAt)
			}
			for _, r := range res.GetResults() {
				if r.GetToken() == target {
					t.Fatal("the sweep found the held value")
				}
				if r.GetToken() != "" {
					tokens++
				}
			}
			continue
		}
		st := status.Convert(err)
		if st.Code() != codes.PermissionDenied || st.Message() != "identity suspended; a custodian must reinstate it" {
			t.Fatalf("call %d: got %v %q, want the call that suspends to say so", call, st.Code(), st.Message())
		}
		if strings.Contains(st.Message(), "reveal") {
			t.Fatalf("a tokenize refusal talks of reveals: %q", st.Message())
		}
		if refusedAt < 0 {
			refusedAt = call
		}
	}
	// 1 held + 500 + 500 > 1,000: the second batch of the sweep is refused.
	if refusedAt != 1 || tokens != 500 {
		t.Fatalf("the sweep got %d tokens and was cut off at call %d; want 500 tokens, cut off at call 1 (distinct 1,000)", tokens, refusedAt)
	}
	// Suspended on both replicas, random classes included.
	for i, sc := range sponsors {
		_, err := sc.Tokenize(ctx(t), &jetonv1.TokenizeRequest{Items: []*jetonv1.TokenizeItem{{FieldClass: "name", Value: useValue("Random Testperson")}}})
		if status.Code(err) != codes.PermissionDenied {
			t.Fatalf("replica %d after the sweep: got %v, want the suspended sponsor refused", i, err)
		}
	}
	if got := e.logs.alerts(t, server.AlertBudgetExceeded); len(got) != 1 || got[0]["identity"] != devpki.SponsorID || got[0]["limit"] != "distinct" || got[0]["method"] != "Tokenize" {
		t.Fatalf("budget alerts = %v, want one naming the sponsor, distinct, Tokenize", got)
	}
	if got := e.logs.alerts(t, server.AlertIdentitySuspended); len(got) != 1 || got[0]["identity"] != devpki.SponsorID {
		t.Fatalf("suspension alerts = %v, want one naming the sponsor", got)
	}
	if n := e.counter(t, "jeton_budget_refusals_total", "op", "tokenize"); n != 1 {
		t.Fatalf("jeton_budget_refusals_total{op=tokenize} = %v, want 1", n)
	}
	if n := e.counter(t, "jeton_suspensions_total"); n != 1 {
		t.Fatalf("jeton_suspensions_total = %v, want 1", n)
	}

	// A custodian reinstates it: values already tokenized in the window
	// are free again; 500 new ones are still over the budget.
	cust := jetonv1.NewAdminClient(e.conn(t, 1, devpki.CustodianID))
	if _, err := cust.ReinstateIdentity(ctx(t), &jetonv1.ReinstateIdentityRequest{Identity: devpki.SponsorID, Reason: "INC-7 reviewed"}); err != nil {
		t.Fatalf("ReinstateIdentity: %v", err)
	}
	if _, err := sponsors[1].Tokenize(ctx(t), batch(0, 500)); err != nil {
		t.Fatalf("re-tokenizing values of the window after reinstatement: %v", err)
	}
	_, err = sponsors[0].Tokenize(ctx(t), batch(9000, 500))
	if st := status.Convert(err); st.Code() != codes.PermissionDenied {
		t.Fatalf("500 new values after reinstatement: got %v, want refused and suspended again (suspend_after 1)", err)
	}
}

// TestDeterministicRefusalsNameTokenize: a sponsor refused for its rate is
// told to wait (RetryInfo), one over its batch size is told the size, and
// no tokenize refusal speaks of reveals.
func TestDeterministicRefusalsNameTokenize(t *testing.T) {
	e := startGuardEnv(t, guardOpts{
		policy: oraclePolicy, classes: classesWithMemberID(),
		budget: "{max_batch: 10, rate: 1, burst: 10, distinct: 100, window: 24h, suspend_after: 3}",
	})
	tc := jetonv1.NewTokenizerClient(e.conn(t, 0, devpki.SponsorID))
	batch := func(from, n int) *jetonv1.TokenizeRequest {
		req := &jetonv1.TokenizeRequest{}
		for i := from; i < from+n; i++ {
			req.Items = append(req.Items, &jetonv1.TokenizeItem{FieldClass: "member-id", Value: useValue(fmt.Sprintf("FAKE-R%04d", i))})
		}
		return req
	}
	_, err := tc.Tokenize(ctx(t), batch(0, 11))
	if st := status.Convert(err); st.Code() != codes.ResourceExhausted || st.Message() != "deterministic tokenization budget: too many items in one call for this identity; at most 10" {
		t.Fatalf("11 items: got %v %q", st.Code(), st.Message())
	}
	if _, ok := retryDelay(err); ok {
		t.Fatal("a batch refusal carries a retry delay: waiting never fixes it")
	}
	if _, err := tc.Tokenize(ctx(t), batch(0, 10)); err != nil {
		t.Fatal(err)
	}
	_, err = tc.Tokenize(ctx(t), batch(10, 3))
	if st := status.Convert(err); st.Code() != codes.ResourceExhausted || st.Message() != "deterministic tokenization rate limit reached; retry after 3s" {
		t.Fatalf("past the rate: got %v %q", st.Code(), st.Message())
	}
	if d, ok := retryDelay(err); !ok || d.Seconds() != 3 {
		t.Fatalf("RetryInfo = %v, %v; want 3s (3 items at 1/s)", d, ok)
	}
	// Rate refusals never suspend, however many.
	for range 10 {
		if _, err := tc.Tokenize(ctx(t), batch(10, 3)); status.Code(err) != codes.ResourceExhausted {
			t.Fatalf("a repeated rate refusal: %v", err)
		}
	}
	if n := e.counter(t, "jeton_suspensions_total"); n != 0 {
		t.Fatalf("rate refusals suspended the sponsor")
	}
}
