package server_test

import (
	"context"
	"io"
	"math/rand/v2"
	"net/mail"
	"strings"
	"sync"
	"testing"
	"time"

	"google.golang.org/grpc"
	"google.golang.org/grpc/codes"
	"google.golang.org/protobuf/proto"

	jetonv1 "github.com/jeton-dev/jeton/proto/jeton/v1"
	"github.com/jeton-dev/jeton/server"
	"github.com/jeton-dev/jeton/server/audit"
	"github.com/jeton-dev/jeton/server/devpki"
	"github.com/jeton-dev/jeton/tokenizer"
	"github.com/jeton-dev/jeton/tokenizer/localkeys"
	"github.com/jeton-dev/jeton/tokenizer/memstore"
)

// shapedClasses are the built-in classes and one class of each shape.
func shapedClasses() []tokenizer.Class {
	return append(tokenizer.DefaultClasses(),
		tokenizer.Class{Name: "work-email", Normalize: []string{"trim", "fold", "email"}, Mask: "email", MaxLen: 320,
			Shape: tokenizer.Shape{Kind: tokenizer.ShapeEmail}},
		tokenizer.Class{Name: "mobile", Mask: "last3", Shape: tokenizer.Shape{Kind: tokenizer.ShapeDigits, Prefix: "9", KeepSuffix: 2}},
		tokenizer.Class{Name: "arrival", Mask: "all", Shape: tokenizer.Shape{Kind: tokenizer.ShapeDate, Layout: "2006-01-02 15:04"}},
		// home-email shares work-email's domain, so its tokens look alike:
		// only the record tells which class a token is.
		tokenizer.Class{Name: "home-email", Mask: "email", Shape: tokenizer.Shape{Kind: tokenizer.ShapeEmail}},
	)
}

// shapedValues are one fake value of each shaped class.
var shapedValues = []*jetonv1.TokenizeItem{
	{FieldClass: "work-email", Value: "Shaped.Test@Example.org"},
	{FieldClass: "mobile", Value: "0600000042"},
	{FieldClass: "arrival", Value: "2026-07-14 09:30"},
}

// shapedPolicy is testPolicy with a reader and a custodian of two
// tenants, and a reader of work-email only.
var shapedPolicy = strings.Replace(strings.Replace(testPolicy, "identities:\n", `identities:
  - id: spiffe://jeton.dev/ttp/two-tenants
    tenants: [demo, other]
    roles: [reader]
  - id: spiffe://jeton.dev/ttp/two-custodian
    tenants: [demo, other]
    roles: [custodian]
  - id: spiffe://jeton.dev/ttp/work-email-only
    tenants: [demo]
    roles: [work-email-reader]
`, 1), "roles:\n", `roles:
  work-email-reader:
    reveal: {work-email: full}
    purposes: [support]
`, 1)

// conn dials a listener as the given identity, issued by ca.
func (e *env) connAs(t testing.TB, trusted bool, id string) *grpc.ClientConn {
	ca, addr := e.bundle.SponsorAuthority, e.srv.PublicAddr().String()
	if trusted {
		ca, addr = e.bundle.TTPAuthority, e.srv.TrustedAddr().String()
	}
	cert, key := e.issue(t, ca, devpki.LeafOptions{URI: id})
	return dial(t, addr, e.bundle.ServerCA, cert, key)
}

func shapedTokens(t testing.TB, cc *grpc.ClientConn, items ...*jetonv1.TokenizeItem) []string {
	t.Helper()
	var out []string
	for i, r := range tokenize(t, cc, items...) {
		if r.GetToken() == "" {
			t.Fatalf("item %d (%s): %v", i, items[i].FieldClass, r.GetError())
		}
		out = append(out, r.GetToken())
	}
	return out
}

func detokenize(t testing.TB, cc *grpc.ClientConn, req *jetonv1.DetokenizeRequest) []*jetonv1.RevealResult {
	t.Helper()
	res, err := jetonv1.NewDetokenizerClient(cc).Detokenize(ctx(t), req)
	if err != nil {
		t.Fatalf("Detokenize: %v", err)
	}
	return res.GetResults()
}

// TestShapedRoundTrip: over gRPC, each shape's token is in the value's
// format, and Detokenize gives the value back exactly as sent, with its
// class; Mask gives the masked form.
func TestShapedRoundTrip(t *testing.T) {
	e := startEnv(t, envOpts{classes: shapedClasses()})
	items := append(shapedValues, &jetonv1.TokenizeItem{FieldClass: "email", Value: useValue("opaque.test@example.org")})
	toks := shapedTokens(t, e.sponsorConn(t), items...)

	if a, err := mail.ParseAddress(toks[0]); err != nil || a.Address != toks[0] || !strings.HasSuffix(toks[0], "@"+tokenizer.DefaultEmailDomain) {
		t.Errorf("the email token is not an address under %s", tokenizer.DefaultEmailDomain)
	}
	if len(toks[1]) != len(shapedValues[1].Value) || strings.Trim(toks[1], "0123456789") != "" || !strings.HasSuffix(toks[1], "42") {
		t.Errorf("the mobile token is not 10 digits ending in the kept 42")
	}
	if at, err := time.Parse("2006-01-02 15:04", toks[2]); err != nil || at.Year() < 3000 {
		t.Errorf("the arrival token is not a date in the layout and the reserved range")
	}
	if !strings.HasPrefix(toks[3], "tok_email_demo_") {
		t.Errorf("the opaque class's token changed shape")
	}

	res := detokenize(t, e.ttpConn(t), &jetonv1.DetokenizeRequest{Tokens: toks, Purpose: "support"})
	for i, r := range res {
		if r.GetValue() != items[i].Value || r.FieldClass != items[i].FieldClass || r.Masked || r.Token != toks[i] {
			t.Errorf("item %d (%s): round trip gave a different value, class or token (masked=%v)", i, items[i].FieldClass, r.Masked)
		}
	}
	// A token comes back as sent even when a mail system folded its case.
	if r := detokenize(t, e.ttpConn(t), &jetonv1.DetokenizeRequest{Tokens: []string{strings.ToUpper(toks[0])}, Purpose: "support"}); r[0].GetValue() != items[0].Value {
		t.Errorf("an upper-cased email token does not reveal")
	}
	masked, err := jetonv1.NewDetokenizerClient(e.ttpConn(t)).Mask(ctx(t), &jetonv1.MaskRequest{Tokens: toks[:3], Purpose: "support"})
	if err != nil {
		t.Fatal(err)
	}
	for i, want := range []string{"s****@example.org", "*******042", "****"} {
		if r := masked.GetResults()[i]; r.GetValue() != want || !r.Masked {
			t.Errorf("Mask of item %d: %q (masked=%v), want %q", i, r.GetValue(), r.Masked, want)
		}
	}
}

// neverIssued returns well-formed tokens of the shaped classes that no
// record backs: minted by a tokenizer with a store of its own.
func neverIssued(t testing.TB) []string {
	t.Helper()
	km, err := localkeys.New(true)
	if err != nil {
		t.Fatal(err)
	}
	tz, err := tokenizer.New(tokenizer.Config{Classes: shapedClasses(), Keys: km, Store: memstore.New()})
	if err != nil {
		t.Fatal(err)
	}
	var items []tokenizer.Item
	for _, it := range shapedValues {
		items = append(items, tokenizer.Item{Class: it.FieldClass, Value: it.Value})
	}
	res, err := tz.Tokenize(context.Background(), "demo", items, "")
	if err != nil {
		t.Fatal(err)
	}
	out := make([]string, len(res))
	for i, r := range res {
		out[i] = r.Token
	}
	return out
}

// TestShapedRefusalsLookUnknown: a revealer without rights on a shaped
// token's class, a purpose that does not cover it, another tenant's token,
// and a tenant named that is not the caller's all get exactly the answer
// of a well-formed token that was never issued. The audit log tells
// denied from unknown, and a denied token costs no record lookup.
func TestShapedRefusalsLookUnknown(t *testing.T) {
	store := &recordGets{Store: memstore.New()}
	e := startEnv(t, envOpts{classes: shapedClasses(), policy: shapedPolicy, store: store})
	for _, it := range shapedValues {
		useValue(it.Value)
	}
	mine := shapedTokens(t, e.sponsorConn(t), shapedValues...)
	theirs := shapedTokens(t, e.connAs(t, false, "spiffe://jeton.dev/sponsor/other"), shapedValues...)
	unknown := neverIssued(t)
	// A home-email token looks like a work-email one: a reader of
	// work-email only gets it looked up, and the record's class refused.
	home := shapedTokens(t, e.sponsorConn(t), &jetonv1.TokenizeItem{FieldClass: "home-email", Value: useValue("home.test@example.org")})[0]

	reader, emailOnly := e.ttpConn(t), e.connAs(t, true, "spiffe://jeton.dev/ttp/email-only")
	ref := detokenize(t, reader, &jetonv1.DetokenizeRequest{Tokens: unknown, Purpose: "support"})
	cases := []struct {
		name string
		cc   *grpc.ClientConn
		req  *jetonv1.DetokenizeRequest
		want string // audit outcome
	}{
		{"no right on the class", emailOnly, &jetonv1.DetokenizeRequest{Tokens: mine, Purpose: "support"}, audit.OutcomeDenied},
		{"no right on the record's class", e.connAs(t, true, "spiffe://jeton.dev/ttp/work-email-only"), &jetonv1.DetokenizeRequest{Tokens: []string{home}, Purpose: "support"}, audit.OutcomeDenied},
		{"purpose does not cover the class", reader, &jetonv1.DetokenizeRequest{Tokens: mine, Purpose: "vetting", CaseRef: "case-1"}, audit.OutcomeDenied},
		{"another tenant's token", reader, &jetonv1.DetokenizeRequest{Tokens: theirs, Purpose: "support"}, audit.OutcomeNotFound},
		{"a tenant that is not the caller's", reader, &jetonv1.DetokenizeRequest{Tokens: mine, Purpose: "support", Tenant: "other"}, audit.OutcomeDenied},
		{"another tenant named", e.connAs(t, true, "spiffe://jeton.dev/ttp/two-tenants"), &jetonv1.DetokenizeRequest{Tokens: mine, Purpose: "support", Tenant: "other"}, audit.OutcomeNotFound},
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			before := store.count()
			got := detokenize(t, c.cc, c.req)
			if c.want == audit.OutcomeDenied && c.req.Tokens[0] != home && store.count() != before {
				t.Errorf("%d record lookups for tokens the caller may not see", store.count()-before)
			}
			for i, r := range got {
				want := proto.Clone(ref[i]).(*jetonv1.RevealResult)
				want.Token = r.Token
				if !proto.Equal(r, want) || r.GetValue() != "" || r.GetError().GetCode() != int32(codes.NotFound) {
					t.Errorf("item %d (%s): the answer differs from a never-issued token's", i, shapedValues[i].FieldClass)
				}
			}
			recs := e.audit.records()
			for i, it := range recs[len(recs)-1].Items {
				if it.Outcome != c.want {
					t.Errorf("item %d audited %q, want %q", i, it.Outcome, c.want)
				}
			}
		})
	}
}

// TestShapedSponsorGetsNothing: invariant 1 holds for shaped tokens: the
// public listener has no Detokenize, and a sponsor identity is refused on
// the trusted one.
func TestShapedSponsorGetsNothing(t *testing.T) {
	e := startEnv(t, envOpts{classes: shapedClasses()})
	for _, it := range shapedValues {
		useValue(it.Value)
	}
	sc := e.sponsorConn(t)
	toks := shapedTokens(t, sc, shapedValues...)
	req := &jetonv1.DetokenizeRequest{Tokens: toks, Purpose: "support"}
	if res, err := jetonv1.NewDetokenizerClient(sc).Detokenize(ctx(t), req); code(err) != codes.Unimplemented || res != nil {
		t.Errorf("Detokenize on the public listener: %v, want Unimplemented", code(err))
	}
	rogue := e.connAs(t, true, "spiffe://jeton.dev/sponsor/rogue-on-ttp-ca")
	if res, err := jetonv1.NewDetokenizerClient(rogue).Detokenize(ctx(t), req); code(err) != codes.PermissionDenied || res != nil {
		t.Errorf("a sponsor identity on the trusted listener: %v, want PermissionDenied", code(err))
	}
	if res, err := jetonv1.NewDetokenizerClient(rogue).Mask(ctx(t), &jetonv1.MaskRequest{Tokens: toks, Purpose: "support"}); code(err) != codes.PermissionDenied || res != nil {
		t.Errorf("Mask by a sponsor identity: %v, want PermissionDenied", code(err))
	}
}

// recordGets counts the store's lookups of records.
type recordGets struct {
	tokenizer.Store
	mu sync.Mutex
	n  int
}

func (s *recordGets) Get(ctx context.Context, keys []string) ([][]byte, error) {
	s.mu.Lock()
	for _, k := range keys {
		if strings.HasPrefix(k, "jeton:r:") {
			s.n++
		}
	}
	s.mu.Unlock()
	return s.Store.Get(ctx, keys)
}

func (s *recordGets) count() int { s.mu.Lock(); defer s.mu.Unlock(); return s.n }

// TestDetokenizeShapedMistypeTouchesNoStore: a shaped token with one
// character changed is a malformed token, per item, and the call looks up
// no record.
func TestDetokenizeShapedMistypeTouchesNoStore(t *testing.T) {
	store := &recordGets{Store: memstore.New()}
	e := startEnv(t, envOpts{classes: shapedClasses(), store: store})
	for _, it := range shapedValues {
		useValue(it.Value)
	}
	toks := shapedTokens(t, e.sponsorConn(t), shapedValues...)
	var typos []string
	for _, tok := range toks {
		for i := 0; i < len(tok); i++ {
			for _, c := range "0123456789abcxyz-:@. " {
				if byte(c) != tok[i] && !strings.EqualFold(string(c), tok[i:i+1]) {
					typos = append(typos, tok[:i]+string(c)+tok[i+1:])
				}
			}
		}
	}
	before := store.count()
	for lo := 0; lo < len(typos); lo += 500 {
		res := detokenize(t, e.ttpConn(t), &jetonv1.DetokenizeRequest{Tokens: typos[lo:min(lo+500, len(typos))], Purpose: "support"})
		for i, r := range res {
			if r.GetError().GetCode() != int32(codes.InvalidArgument) || r.GetValue() != "" {
				t.Fatalf("mistyped token %d: code %d, want InvalidArgument", lo+i, r.GetError().GetCode())
			}
		}
	}
	if n := store.count() - before; n != 0 {
		t.Fatalf("%d record lookups for %d mistyped tokens; want none", n, len(typos))
	}
	if detokenize(t, e.ttpConn(t), &jetonv1.DetokenizeRequest{Tokens: toks, Purpose: "support"}); store.count() == before {
		t.Fatal("the well-formed tokens looked up no record either; the count sees nothing")
	}
}

// replayReader records what it reads; after again, it hands the recorded
// bytes out once more before reading on, so two calls mint one token.
type replayReader struct {
	mu     sync.Mutex
	inner  io.Reader
	log    []byte
	replay []byte
}

func (r *replayReader) Read(p []byte) (int, error) {
	r.mu.Lock()
	defer r.mu.Unlock()
	n := copy(p, r.replay)
	r.replay = r.replay[n:]
	if n < len(p) {
		m, err := io.ReadFull(r.inner, p[n:])
		if n += m; err != nil {
			return n, err
		}
	}
	r.log = append(r.log, p[:n]...)
	return n, nil
}

func (r *replayReader) again() {
	r.mu.Lock()
	r.replay, r.log = r.log, nil
	r.mu.Unlock()
}

// TestShapedTokenInTwoTenants: tokens are unique within a tenant only. A
// token held by two tenants reveals to each tenant's reader its own value,
// to a reader of both nothing until it names the tenant, and is erased by
// a custodian of both only when the tenant is named.
func TestShapedTokenInTwoTenants(t *testing.T) {
	var seed [32]byte
	rr := &replayReader{inner: rand.NewChaCha8(seed)}
	e := startEnv(t, envOpts{classes: shapedClasses(), policy: shapedPolicy, tune: func(c *server.Config, _ *devpki.Bundle) {
		km, err := localkeys.New(true)
		if err != nil {
			t.Fatal(err)
		}
		if c.Tokenizer, err = tokenizer.New(tokenizer.Config{Classes: shapedClasses(), Keys: km, Store: memstore.New(), Rand: rr}); err != nil {
			t.Fatal(err)
		}
	}})
	demo, other := e.sponsorConn(t), e.connAs(t, false, "spiffe://jeton.dev/sponsor/other")
	shapedTokens(t, demo, &jetonv1.TokenizeItem{FieldClass: "text", Value: useValue("makes the keys")})
	shapedTokens(t, other, &jetonv1.TokenizeItem{FieldClass: "text", Value: useValue("makes the keys")})
	rr.again()
	rr.again()
	a := shapedTokens(t, demo, &jetonv1.TokenizeItem{FieldClass: "mobile", Value: useValue("0600000042")})[0]
	rr.again()
	b := shapedTokens(t, other, &jetonv1.TokenizeItem{FieldClass: "mobile", Value: useValue("0700000042")})[0]
	if a != b {
		t.Fatal("the replayed draw gave two tokens; the test needs one token in two tenants")
	}

	if r := detokenize(t, e.ttpConn(t), &jetonv1.DetokenizeRequest{Tokens: []string{a}, Purpose: "support"})[0]; r.GetValue() != "0600000042" {
		t.Errorf("the demo reader does not get demo's value")
	}
	both := e.connAs(t, true, "spiffe://jeton.dev/ttp/two-tenants")
	r := detokenize(t, both, &jetonv1.DetokenizeRequest{Tokens: []string{a}, Purpose: "support"})[0]
	if r.GetValue() != "" || r.GetError().GetCode() != int32(codes.FailedPrecondition) {
		t.Errorf("a reader of both tenants: code %d, value set %v; want FailedPrecondition and no value", r.GetError().GetCode(), r.GetValue() != "")
	}
	if recs := e.audit.records(); recs[len(recs)-1].Items[0].Outcome != audit.OutcomeAmbiguous {
		t.Errorf("the ambiguous reveal is audited %q", recs[len(recs)-1].Items[0].Outcome)
	}
	for tenant, want := range map[string]string{"demo": "0600000042", "other": "0700000042"} {
		if r := detokenize(t, both, &jetonv1.DetokenizeRequest{Tokens: []string{a}, Purpose: "support", Tenant: tenant})[0]; r.GetValue() != want {
			t.Errorf("tenant %s named: not its value", tenant)
		}
	}

	adm := jetonv1.NewAdminClient(e.connAs(t, true, "spiffe://jeton.dev/ttp/two-custodian"))
	if _, err := adm.EraseTokens(ctx(t), &jetonv1.EraseTokensRequest{Tokens: []string{a}, Reason: "ticket-9"}); code(err) != codes.FailedPrecondition {
		t.Fatalf("erasing a token of two tenants without naming one: %v, want FailedPrecondition", code(err))
	}
	res, err := adm.EraseTokens(ctx(t), &jetonv1.EraseTokensRequest{Tokens: []string{a}, Reason: "ticket-9", Tenant: "other"})
	if err != nil || res.GetErased() != 1 {
		t.Fatalf("EraseTokens naming other = %v, %v; want 1", res, err)
	}
	if r := detokenize(t, both, &jetonv1.DetokenizeRequest{Tokens: []string{a}, Purpose: "support"})[0]; r.GetValue() != "0600000042" {
		t.Errorf("after erasing other's, the token should reveal demo's value alone")
	}
	// Where only one of the custodian's tenants holds it, no name is needed.
	res, err = jetonv1.NewAdminClient(e.connAs(t, true, "spiffe://jeton.dev/ttp/custodian")).EraseTokens(ctx(t), &jetonv1.EraseTokensRequest{Tokens: []string{a}, Reason: "ticket-10"})
	if err != nil || res.GetErased() != 1 {
		t.Fatalf("EraseTokens by demo's custodian = %v, %v; want 1", res, err)
	}
	if r := detokenize(t, e.ttpConn(t), &jetonv1.DetokenizeRequest{Tokens: []string{a}, Purpose: "support"})[0]; r.GetError().GetCode() != int32(codes.NotFound) {
		t.Errorf("an erased shaped token still reveals")
	}
}
