package server_test

import (
	"context"
	"fmt"
	"io"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/redis/go-redis/v9"
	"google.golang.org/grpc"
	"google.golang.org/grpc/codes"
	"google.golang.org/protobuf/proto"

	"github.com/jeton-dev/jeton/integration/testenv"
	jetonv1 "github.com/jeton-dev/jeton/proto/jeton/v1"
	"github.com/jeton-dev/jeton/server"
	"github.com/jeton-dev/jeton/server/devpki"
	"github.com/jeton-dev/jeton/tokenizer"
	"github.com/jeton-dev/jeton/tokenizer/memstore"
	"github.com/jeton-dev/jeton/tokenizer/redisstore"
)

// custodianConn connects to the trusted listener as the custodian of demo,
// acme and acme-2.
func (e *env) custodianConn(t testing.TB) *grpc.ClientConn {
	t.Helper()
	cert, key := e.issue(t, e.bundle.TTPAuthority, devpki.LeafOptions{URI: "spiffe://jeton.dev/ttp/custodian"})
	return dial(t, e.srv.TrustedAddr().String(), e.bundle.ServerCA, cert, key)
}

// secondConn connects as a second custodian of demo, acme and acme-2.
func (e *env) secondConn(t testing.TB) *grpc.ClientConn {
	t.Helper()
	cert, key := e.issue(t, e.bundle.TTPAuthority, devpki.LeafOptions{URI: "spiffe://jeton.dev/ttp/custodian-2"})
	return dial(t, e.srv.TrustedAddr().String(), e.bundle.ServerCA, cert, key)
}

// approveAll has the second custodian approve every pending request it
// may, and returns the responses.
func (e *env) approveAll(t testing.TB) []*jetonv1.ApprovePendingRequestResponse {
	t.Helper()
	second := jetonv1.NewAdminClient(e.secondConn(t))
	list, err := second.ListPendingRequests(ctx(t), &jetonv1.ListPendingRequestsRequest{})
	if err != nil {
		t.Fatalf("ListPendingRequests: %v", err)
	}
	var out []*jetonv1.ApprovePendingRequestResponse
	for _, r := range list.GetRequests() {
		res, err := second.ApprovePendingRequest(ctx(t), &jetonv1.ApprovePendingRequestRequest{Id: r.GetId(), Reason: "second pair of eyes"})
		if err != nil {
			t.Fatalf("ApprovePendingRequest: %v", err)
		}
		out = append(out, res)
	}
	return out
}

// tokenizeIn tokenizes straight through the tokenizer, for tenants no
// sponsor identity of the test policy writes to.
func (e *env) tokenizeIn(t testing.TB, tenant string, items ...tokenizer.Item) []string {
	t.Helper()
	for _, it := range items {
		useValue(it.Value)
	}
	res, err := e.tok.Tokenize(context.Background(), tenant, items, "")
	if err != nil {
		t.Fatalf("Tokenize: %v", err)
	}
	out := make([]string, len(res))
	for i, r := range res {
		if r.Err != nil {
			t.Fatalf("Tokenize item %d: %v", i, r.Err)
		}
		out[i] = r.Token
	}
	return out
}

// opens reports, per token, whether the tokenizer still opens it, whatever
// the tenant.
func (e *env) opens(t testing.TB, texts ...string) []bool {
	t.Helper()
	toks := make([]tokenizer.Token, len(texts))
	for i, s := range texts {
		var err error
		if toks[i], err = tokenizer.ParseToken(s); err != nil {
			t.Fatal(err)
		}
	}
	res, err := e.tok.Reveal(context.Background(), toks)
	if err != nil {
		t.Fatalf("Reveal: %v", err)
	}
	out := make([]bool, len(res))
	for i, r := range res {
		out[i] = r.Err == nil
	}
	return out
}

func wantOpens(t testing.TB, e *env, want bool, what string, texts ...string) {
	t.Helper()
	for i, ok := range e.opens(t, texts...) {
		if ok != want {
			t.Errorf("%s: token %d opens = %v; want %v", what, i, ok, want)
		}
	}
}

// methodsSince returns the Method and Outcome of the audit records written
// after the first n.
func methodsSince(a *memAudit, n int) []string {
	var out []string
	for _, r := range a.records()[n:] {
		out = append(out, r.Method+":"+r.Outcome)
	}
	return out
}

// adminCalls are every Admin call this package serves besides
// ReinstateIdentity and MintCanary, each on tenant with a valid request.
func adminCalls(tenant string) []struct {
	name string
	call func(ctx context.Context, c jetonv1.AdminClient) error
} {
	return []struct {
		name string
		call func(ctx context.Context, c jetonv1.AdminClient) error
	}{
		{"EraseTokens", func(ctx context.Context, c jetonv1.AdminClient) error {
			_, err := c.EraseTokens(ctx, &jetonv1.EraseTokensRequest{Reason: "ticket-1"})
			return err
		}},
		{"EraseSubject", func(ctx context.Context, c jetonv1.AdminClient) error {
			_, err := c.EraseSubject(ctx, &jetonv1.EraseSubjectRequest{Tenant: tenant, SubjectId: "guest-0001", Reason: "ticket-1"})
			return err
		}},
		{"PurgeTenant", func(ctx context.Context, c jetonv1.AdminClient) error {
			_, err := c.PurgeTenant(ctx, &jetonv1.PurgeTenantRequest{Tenant: tenant, Confirm: tenant, Reason: "ticket-1"})
			return err
		}},
		{"RotateGeneration", func(ctx context.Context, c jetonv1.AdminClient) error {
			_, err := c.RotateGeneration(ctx, &jetonv1.RotateGenerationRequest{Tenant: tenant})
			return err
		}},
		{"DestroyGeneration", func(ctx context.Context, c jetonv1.AdminClient) error {
			_, err := c.DestroyGeneration(ctx, &jetonv1.DestroyGenerationRequest{Tenant: tenant, Generation: 1,
				Confirm: server.DestroyConfirmation(tenant, 1), Reason: "ticket-1"})
			return err
		}},
		{"Rewrap", func(ctx context.Context, c jetonv1.AdminClient) error {
			st, err := c.Rewrap(ctx, &jetonv1.RewrapRequest{})
			if err != nil {
				return err
			}
			for {
				if _, err := st.Recv(); err != nil {
					if err == io.EOF {
						return nil
					}
					return err
				}
			}
		}},
		{"Stats", func(ctx context.Context, c jetonv1.AdminClient) error {
			_, err := c.Stats(ctx, &jetonv1.StatsRequest{})
			return err
		}},
	}
}

// Only custodians administer, and only their own tenants; every refusal is
// audited.
func TestAdminAccess(t *testing.T) {
	e := startEnv(t, envOpts{})
	reader := jetonv1.NewAdminClient(e.ttpConn(t))
	custodian := jetonv1.NewAdminClient(e.custodianConn(t))
	for _, c := range adminCalls("demo") {
		t.Run("reader/"+c.name, func(t *testing.T) {
			n := len(e.audit.records())
			if err := c.call(ctx(t), reader); code(err) != codes.PermissionDenied {
				t.Errorf("reader: %v; want PermissionDenied", err)
			}
			if got := methodsSince(e.audit, n); !slices.Equal(got, []string{c.name + ":failed"}) {
				t.Errorf("audit records %q; want one failed %s", got, c.name)
			}
		})
	}
	// Tenant "other" exists in the policy but the custodian is not bound
	// to it. EraseTokens, Rewrap and Stats take no tenant.
	for _, c := range adminCalls("other") {
		if c.name == "EraseTokens" || c.name == "Rewrap" || c.name == "Stats" {
			continue
		}
		t.Run("other-tenant/"+c.name, func(t *testing.T) {
			if err := c.call(ctx(t), custodian); code(err) != codes.PermissionDenied {
				t.Errorf("custodian on another tenant: %v; want PermissionDenied", err)
			}
		})
	}

	// A token of a tenant the custodian does not administer is not erased.
	other := e.tokenizeIn(t, "other", tokenizer.Item{Class: "name", Value: "Other Tenant Person"})
	mine := e.tokenizeIn(t, "demo", tokenizer.Item{Class: "name", Value: "Demo Tenant Person"})
	res, err := custodian.EraseTokens(ctx(t), &jetonv1.EraseTokensRequest{Tokens: append(other, mine...), Reason: "ticket-2"})
	if err != nil || res.GetErased() != 1 {
		t.Fatalf("EraseTokens = %v, %v; want 1 erased", res, err)
	}
	wantOpens(t, e, true, "other tenant's token", other...)
	wantOpens(t, e, false, "own tenant's token", mine...)
}

// Every call is audited, a change with an intent before it; with the audit
// sink down every call fails UNAVAILABLE and changes nothing.
func TestAdminAudit(t *testing.T) {
	e := startEnv(t, envOpts{keyRefresh: time.Millisecond})
	custodian := jetonv1.NewAdminClient(e.custodianConn(t))
	// Two generations, so that destroying generation 1 can succeed.
	toks := e.tokenizeIn(t, "acme", tokenizer.Item{Class: "name", Value: "Audit Testperson", Subject: "guest-0001"})
	if _, err := e.tok.RotateGeneration(context.Background(), "acme"); err != nil {
		t.Fatal(err)
	}
	time.Sleep(5 * time.Millisecond) // twice KeyRefresh: generation 1 may be destroyed

	e.audit.setFail(true)
	for _, c := range adminCalls("acme") {
		if err := c.call(ctx(t), custodian); code(err) != codes.Unavailable {
			t.Errorf("%s with the audit sink down: %v; want Unavailable", c.name, err)
		}
	}
	e.audit.setFail(false)
	wantOpens(t, e, true, "token after every call failed", toks...)
	if gens, err := e.tok.Generations(context.Background(), "acme"); err != nil || len(gens) != 2 || gens[0].Destroyed {
		t.Errorf("generations after every call failed: %+v, %v; want 2, none destroyed", gens, err)
	}

	for _, c := range adminCalls("acme") {
		n := len(e.audit.records())
		if err := c.call(ctx(t), custodian); err != nil {
			t.Errorf("%s: %v", c.name, err)
			continue
		}
		want := []string{c.name + ":intent", c.name + ":ok"}
		switch c.name {
		case "Stats":
			want = []string{"Stats:ok"}
		case "PurgeTenant", "DestroyGeneration":
			// Dual control: requested, then approved and carried out.
			if res := e.approveAll(t); len(res) != 1 || !res[0].GetDone() {
				t.Errorf("%s: approvals %v; want one, carried out", c.name, res)
			}
			want = []string{c.name + ":requested", "ListPendingRequests:ok", "ApprovePendingRequest:approved", c.name + ":intent", c.name + ":ok"}
		}
		got := methodsSince(e.audit, n)
		if !slices.Equal(got, want) {
			t.Errorf("%s audit records %q; want %q", c.name, got, want)
		}
		for _, r := range e.audit.records()[n:] {
			if !strings.HasPrefix(r.Identity, "spiffe://jeton.dev/ttp/custodian") || r.Peer == "" {
				t.Errorf("%s audit record names identity %q, peer %q", c.name, r.Identity, r.Peer)
			}
		}
	}
	wantOpens(t, e, false, "token of the purged tenant", toks...)

	// The reason is kept, and the token only as its keyed hash.
	n := len(e.audit.records())
	mine := e.tokenizeIn(t, "demo", tokenizer.Item{Class: "name", Value: "Hashed Testperson"})
	if _, err := custodian.EraseTokens(ctx(t), &jetonv1.EraseTokensRequest{Tokens: mine, Reason: "ticket-3"}); err != nil {
		t.Fatal(err)
	}
	for _, r := range e.audit.records()[n:] {
		if r.CaseRef != "ticket-3" || len(r.Items) != 1 || r.Items[0].TokenHash == "" || strings.Contains(fmt.Sprint(r), mine[0]) {
			t.Errorf("EraseTokens audit record %+v; want the reason and the token's hash, not the token", r)
		}
	}
}

// Destructive calls need a reason, well-formed arguments and their exact
// confirmation; a refused call erases nothing.
func TestAdminArguments(t *testing.T) {
	e := startEnv(t, envOpts{})
	custodian := jetonv1.NewAdminClient(e.custodianConn(t))
	toks := e.tokenizeIn(t, "demo", tokenizer.Item{Class: "name", Value: "Argument Testperson", Subject: "guest-0001"})
	tests := []struct {
		name string
		call func() error
	}{
		{"erase tokens without reason", func() error {
			_, err := custodian.EraseTokens(ctx(t), &jetonv1.EraseTokensRequest{Tokens: toks})
			return err
		}},
		{"erase tokens with a malformed one", func() error {
			_, err := custodian.EraseTokens(ctx(t), &jetonv1.EraseTokensRequest{Tokens: append([]string{"tok_not-a-token"}, toks...), Reason: "r"})
			return err
		}},
		{"erase subject without subject", func() error {
			_, err := custodian.EraseSubject(ctx(t), &jetonv1.EraseSubjectRequest{Tenant: "demo", Reason: "r"})
			return err
		}},
		{"erase subject with a bad tenant name", func() error {
			_, err := custodian.EraseSubject(ctx(t), &jetonv1.EraseSubjectRequest{Tenant: "Demo!", SubjectId: "guest-0001", Reason: "r"})
			return err
		}},
		{"purge with a wrong confirmation", func() error {
			_, err := custodian.PurgeTenant(ctx(t), &jetonv1.PurgeTenantRequest{Tenant: "demo", Confirm: "dem", Reason: "r"})
			return err
		}},
		{"purge without reason", func() error {
			_, err := custodian.PurgeTenant(ctx(t), &jetonv1.PurgeTenantRequest{Tenant: "demo", Confirm: "demo"})
			return err
		}},
		{"destroy with a wrong confirmation", func() error {
			_, err := custodian.DestroyGeneration(ctx(t), &jetonv1.DestroyGenerationRequest{Tenant: "demo", Generation: 1, Confirm: "destroy demo generation 2", Reason: "r"})
			return err
		}},
		{"destroy the current generation", func() error {
			_, err := custodian.DestroyGeneration(ctx(t), &jetonv1.DestroyGenerationRequest{Tenant: "demo", Generation: 1, Confirm: server.DestroyConfirmation("demo", 1), Reason: "r"})
			return err
		}},
		{"destroy a generation that does not exist", func() error {
			_, err := custodian.DestroyGeneration(ctx(t), &jetonv1.DestroyGenerationRequest{Tenant: "demo", Generation: 7, Confirm: server.DestroyConfirmation("demo", 7), Reason: "r"})
			return err
		}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			if err := tt.call(); code(err) != codes.InvalidArgument {
				t.Errorf("got %v; want InvalidArgument", err)
			}
			wantOpens(t, e, true, "token after a refused call", toks...)
		})
	}
}

// After erasure by token and by subject, Detokenize answers those tokens
// exactly as it answers unknown ones, and other subjects' tokens still
// reveal.
func TestEraseThenDetokenize(t *testing.T) {
	e := startEnv(t, envOpts{})
	sc := e.sponsorConn(t)
	items := []*jetonv1.TokenizeItem{
		{FieldClass: "name", Value: useValue("Anne Erasable"), SubjectId: "guest-0001"},
		{FieldClass: "email", Value: useValue("anne.erasable@example.org"), SubjectId: "guest-0001"},
		{FieldClass: "name", Value: useValue("Bob Erasable"), SubjectId: "guest-0002"},
		{FieldClass: "email", Value: useValue("bob.erasable@example.org"), SubjectId: "guest-0002"},
		{FieldClass: "name", Value: useValue("Carol Keeper"), SubjectId: "guest-0003"},
		{FieldClass: "passport", Value: useValue("XX0000003")},
	}
	var toks []string
	for _, r := range tokenize(t, sc, items...) {
		toks = append(toks, r.GetToken())
	}
	admin := jetonv1.NewAdminClient(e.custodianConn(t))
	if res, err := admin.EraseTokens(ctx(t), &jetonv1.EraseTokensRequest{Tokens: []string{toks[0]}, Reason: "ticket-4"}); err != nil || res.GetErased() != 1 {
		t.Fatalf("EraseTokens = %v, %v; want 1", res, err)
	}
	if res, err := admin.EraseSubject(ctx(t), &jetonv1.EraseSubjectRequest{Tenant: "demo", SubjectId: "guest-0002", Reason: "ticket-5"}); err != nil || res.GetErased() != 2 {
		t.Fatalf("EraseSubject = %v, %v; want 2", res, err)
	}
	unknown := reissue(t, toks[4])
	out, err := jetonv1.NewDetokenizerClient(e.ttpConn(t)).Detokenize(ctx(t), &jetonv1.DetokenizeRequest{
		Tokens: append(slices.Clone(toks), unknown), Purpose: "support"})
	if err != nil {
		t.Fatal(err)
	}
	want := out.Results[len(toks)].GetError()
	if want == nil {
		t.Fatal("an unknown token revealed something")
	}
	for i, r := range out.Results[:len(toks)] {
		erased := i <= 3 && i != 1
		switch {
		case erased && !proto.Equal(r.GetError(), want):
			t.Errorf("erased token %d: %v; want exactly the unknown token's answer %v", i, r.GetError(), want)
		case !erased && r.GetError() != nil:
			t.Errorf("token %d of a subject not erased: %v", i, r.GetError())
		}
	}
	// Erasing again finds nothing.
	if res, err := admin.EraseSubject(ctx(t), &jetonv1.EraseSubjectRequest{Tenant: "demo", SubjectId: "guest-0002", Reason: "ticket-5"}); err != nil || res.GetErased() != 0 {
		t.Errorf("second EraseSubject = %v, %v; want 0", res, err)
	}
}

// PurgeTenant removes every key of the tenant and nothing of the others,
// including a tenant whose name extends it, on memstore and on a real
// Redis.
func TestPurgeTenantAdmin(t *testing.T) {
	stores := []struct {
		name string
		// open returns the store and a lister of the keys jeton:*:<tenant>:*
		// as the backend itself sees them.
		open func(t *testing.T) (tokenizer.Store, func(tenant string) []string)
	}{
		{"memstore", func(t *testing.T) (tokenizer.Store, func(string) []string) {
			s := memstore.New()
			return s, func(tenant string) []string {
				var out []string
				_ = s.Scan(context.Background(), "jeton:", func(ks []string) error {
					for _, k := range ks {
						if parts := strings.SplitN(k, ":", 4); len(parts) == 4 && parts[2] == tenant {
							out = append(out, k)
						}
					}
					return nil
				})
				return out
			}
		}},
		{"redis", func(t *testing.T) (tokenizer.Store, func(string) []string) {
			r := testenv.StartRedis(t)
			c, err := redisstore.NewClient(redisstore.Config{Addrs: []string{r.Addr}})
			if err != nil {
				t.Fatal(err)
			}
			t.Cleanup(func() { _ = c.Close() })
			raw := redis.NewClient(&redis.Options{Addr: r.Addr})
			t.Cleanup(func() { _ = raw.Close() })
			return redisstore.New(c), func(tenant string) []string {
				var out []string
				it := raw.Scan(context.Background(), 0, "jeton:*:"+tenant+":*", 1000).Iterator()
				for it.Next(context.Background()) {
					out = append(out, it.Val())
				}
				if err := it.Err(); err != nil {
					t.Fatalf("SCAN: %v", err)
				}
				return out
			}
		}},
	}
	for _, st := range stores {
		t.Run(st.name, func(t *testing.T) {
			store, keys := st.open(t)
			e := startEnv(t, envOpts{store: store})
			admin := jetonv1.NewAdminClient(e.custodianConn(t))
			set := func(tenant string) []string {
				var toks []string
				for i := range 3 {
					toks = append(toks, e.tokenizeIn(t, tenant,
						tokenizer.Item{Class: "name", Value: fmt.Sprintf("Purge Testperson %d", i), Subject: fmt.Sprintf("guest-%04d", i)},
						tokenizer.Item{Class: "email", Value: fmt.Sprintf("purge.%d@example.org", i)})...)
				}
				return toks
			}
			acme, acme2, demo := set("acme"), set("acme-2"), set("demo")
			if len(keys("acme")) == 0 || len(keys("acme-2")) == 0 {
				t.Fatal("the set-up stored no keys")
			}
			before := len(keys("acme-2"))

			res, err := admin.PurgeTenant(ctx(t), &jetonv1.PurgeTenantRequest{Tenant: "acme", Confirm: "acme", Reason: "ticket-6"})
			if err != nil || res.GetDone() {
				t.Fatalf("PurgeTenant = %v, %v; want a pending request", res, err)
			}
			wantOpens(t, e, true, "tenant to purge, before the approval", acme...)
			if ap := e.approveAll(t); len(ap) != 1 || !ap[0].GetDone() || ap[0].GetErased() != int64(len(acme)) {
				t.Fatalf("approving the purge = %v; want %d erased", ap, len(acme))
			}
			if left := keys("acme"); len(left) != 0 {
				t.Errorf("%d keys of the purged tenant are left: %q", len(left), left)
			}
			if after := len(keys("acme-2")); after != before {
				t.Errorf("tenant acme-2 had %d keys and has %d after purging acme", before, after)
			}
			wantOpens(t, e, false, "purged tenant", acme...)
			wantOpens(t, e, true, "tenant acme-2", acme2...)
			wantOpens(t, e, true, "tenant demo", demo...)
		})
	}
}

// DestroyGeneration crypto-shreds an old generation only: its tokens answer
// as unknown, the current generation's still reveal.
func TestDestroyGenerationAdmin(t *testing.T) {
	e := startEnv(t, envOpts{keyRefresh: time.Millisecond})
	sc := e.sponsorConn(t)
	admin := jetonv1.NewAdminClient(e.custodianConn(t))
	gen1 := tokenize(t, sc, &jetonv1.TokenizeItem{FieldClass: "name", Value: useValue("Generation One")})[0].GetToken()
	rot, err := admin.RotateGeneration(ctx(t), &jetonv1.RotateGenerationRequest{Tenant: "demo"})
	if err != nil || rot.GetGeneration() != 2 {
		t.Fatalf("RotateGeneration = %v, %v; want generation 2", rot, err)
	}
	time.Sleep(5 * time.Millisecond) // twice KeyRefresh: no replica writes generation 1 any more
	gen2 := tokenize(t, sc, &jetonv1.TokenizeItem{FieldClass: "name", Value: useValue("Generation Two")})[0].GetToken()

	if _, err := admin.DestroyGeneration(ctx(t), &jetonv1.DestroyGenerationRequest{
		Tenant: "demo", Generation: 2, Confirm: server.DestroyConfirmation("demo", 2), Reason: "r"}); code(err) != codes.InvalidArgument {
		t.Errorf("destroying the current generation: %v; want InvalidArgument", err)
	}
	if _, err := admin.DestroyGeneration(ctx(t), &jetonv1.DestroyGenerationRequest{
		Tenant: "demo", Generation: 1, Confirm: "destroy demo generation 1 ", Reason: "r"}); code(err) != codes.InvalidArgument {
		t.Errorf("near-miss confirmation: %v; want InvalidArgument", err)
	}
	wantOpens(t, e, true, "generation 1 before its destruction", gen1)
	if _, err := admin.DestroyGeneration(ctx(t), &jetonv1.DestroyGenerationRequest{
		Tenant: "demo", Generation: 1, Confirm: "destroy demo generation 1", Reason: "end of retention"}); err != nil {
		t.Fatalf("DestroyGeneration: %v", err)
	}
	wantOpens(t, e, true, "generation 1 before the second custodian approves", gen1)
	if ap := e.approveAll(t); len(ap) != 1 || !ap[0].GetDone() {
		t.Fatalf("approving the destroy = %v", ap)
	}
	out, err := jetonv1.NewDetokenizerClient(e.ttpConn(t)).Detokenize(ctx(t), &jetonv1.DetokenizeRequest{Tokens: []string{gen1, gen2}, Purpose: "support"})
	if err != nil {
		t.Fatal(err)
	}
	if code := out.Results[0].GetError().GetCode(); code != int32(codes.NotFound) {
		t.Errorf("token of the destroyed generation: code %v; want NotFound", code)
	}
	if out.Results[1].GetError() != nil {
		t.Errorf("token of the current generation: %v", out.Results[1].GetError())
	}
}

// Rewrap streams its progress: done grows and ends at total.
func TestRewrapAdmin(t *testing.T) {
	e := startEnv(t, envOpts{})
	e.tokenizeIn(t, "demo", tokenizer.Item{Class: "name", Value: "Rewrap Testperson"})
	e.tokenizeIn(t, "acme", tokenizer.Item{Class: "name", Value: "Rewrap Testperson"})
	st, err := jetonv1.NewAdminClient(e.custodianConn(t)).Rewrap(ctx(t), &jetonv1.RewrapRequest{})
	if err != nil {
		t.Fatal(err)
	}
	var got []*jetonv1.RewrapResponse
	for {
		m, err := st.Recv()
		if err == io.EOF {
			break
		}
		if err != nil {
			t.Fatalf("Recv: %v", err)
		}
		got = append(got, m)
	}
	// Per tenant with keys (demo and acme; the policy's other tenants have
	// none) a root key and one generation, and the service's own root key
	// if it has one.
	if len(got) < 2*2 || int64(len(got)) != got[len(got)-1].GetTotal() {
		t.Fatalf("got %d progress messages (%v); want one per key, at least 4", len(got), got)
	}
	wantTotal := int64(len(got))
	for i, m := range got {
		if m.GetDone() != int64(i+1) || m.GetTotal() != wantTotal {
			t.Errorf("message %d: %d/%d; want %d/%d", i, m.GetDone(), m.GetTotal(), i+1, wantTotal)
		}
	}
	wantOpens(t, e, true, "token after rewrap", e.tokenizeIn(t, "demo", tokenizer.Item{Class: "text", Value: "after rewrap"})...)
}

// Stats counts per tenant and generation, only for the custodian's
// tenants, and carries no value and no token.
func TestStatsAdmin(t *testing.T) {
	e := startEnv(t, envOpts{})
	values := []string{"Stats Testperson", "stats.test@example.org", "Stats Other"}
	var toks []string
	toks = append(toks, e.tokenizeIn(t, "demo",
		tokenizer.Item{Class: "name", Value: values[0]},
		tokenizer.Item{Class: "email", Value: values[1]})...)
	if _, err := e.tok.RotateGeneration(context.Background(), "demo"); err != nil {
		t.Fatal(err)
	}
	toks = append(toks, e.tokenizeIn(t, "demo", tokenizer.Item{Class: "name", Value: values[0]})...)
	toks = append(toks, e.tokenizeIn(t, "acme", tokenizer.Item{Class: "name", Value: values[2]})...)
	toks = append(toks, e.tokenizeIn(t, "other", tokenizer.Item{Class: "name", Value: values[2]})...)

	res, err := jetonv1.NewAdminClient(e.custodianConn(t)).Stats(ctx(t), &jetonv1.StatsRequest{})
	if err != nil {
		t.Fatal(err)
	}
	var got []string
	for _, ts := range res.GetTenants() {
		line := ts.GetTenant() + ":"
		for _, g := range ts.GetGenerations() {
			line += fmt.Sprintf(" g%d=%d", g.GetGeneration(), g.GetRecords())
			if g.GetCurrent() {
				line += "*"
			}
		}
		got = append(got, line)
	}
	want := []string{"acme: g1=1*", "acme-2:", "demo: g1=2 g2=1*"}
	if !slices.Equal(got, want) {
		t.Errorf("Stats = %q; want %q", got, want)
	}
	b, err := proto.Marshal(res)
	if err != nil {
		t.Fatal(err)
	}
	for _, s := range append(values, toks...) {
		if strings.Contains(string(b), s) {
			t.Errorf("the Stats response holds a value or token (%d bytes)", len(s))
		}
	}
	rec := e.audit.records()
	if last := rec[len(rec)-1]; last.Method != "Stats" || last.Outcome != "ok" {
		t.Errorf("last audit record %s:%s; want Stats:ok", last.Method, last.Outcome)
	}
}
