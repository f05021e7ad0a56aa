package server_test

import (
	"net/netip"
	"strings"
	"testing"
	"time"

	"google.golang.org/grpc/codes"
	healthpb "google.golang.org/grpc/health/grpc_health_v1"

	jetonv1 "github.com/jeton-dev/jeton/proto/jeton/v1"
	"github.com/jeton-dev/jeton/server/devpki"
)

// A sponsor can reach nothing but Tokenize: Detokenizer and Admin do not
// exist on the public listener.
func TestPublicListenerHasNoRevealOrAdmin(t *testing.T) {
	e := startEnv(t, envOpts{})
	sc := e.sponsorConn(t)
	tok := tokenize(t, sc, &jetonv1.TokenizeItem{FieldClass: "email", Value: useValue("public.only@example.org")})[0].GetToken()

	_, err := jetonv1.NewDetokenizerClient(sc).Detokenize(ctx(t), &jetonv1.DetokenizeRequest{Tokens: []string{tok}, Purpose: "support"})
	if code(err) != codes.Unimplemented {
		t.Errorf("Detokenize on public listener: got %v, want Unimplemented", code(err))
	}
	_, err = jetonv1.NewDetokenizerClient(sc).Mask(ctx(t), &jetonv1.MaskRequest{Tokens: []string{tok}, Purpose: "support"})
	if code(err) != codes.Unimplemented {
		t.Errorf("Mask on public listener: got %v, want Unimplemented", code(err))
	}
	_, err = jetonv1.NewAdminClient(sc).Stats(ctx(t), &jetonv1.StatsRequest{})
	if code(err) != codes.Unimplemented {
		t.Errorf("Admin on public listener: got %v, want Unimplemented", code(err))
	}
	_, err = jetonv1.NewAdminClient(sc).EraseTokens(ctx(t), &jetonv1.EraseTokensRequest{Tokens: []string{tok}})
	if code(err) != codes.Unimplemented {
		t.Errorf("Admin.EraseTokens on public listener: got %v, want Unimplemented", code(err))
	}
	// Health is open on both listeners.
	if _, err := healthpb.NewHealthClient(sc).Check(ctx(t), &healthpb.HealthCheckRequest{}); err != nil {
		t.Errorf("health on public listener: %v", err)
	}
}

// The sponsor certificate is refused on the trusted listener by its CA, and
// a sponsor identity that somehow holds a TTP-CA certificate is refused by
// the policy.
func TestSponsorRefusedOnTrustedListener(t *testing.T) {
	e := startEnv(t, envOpts{})
	tok := tokenize(t, e.sponsorConn(t), &jetonv1.TokenizeItem{FieldClass: "email", Value: useValue("trusted.only@example.org")})[0].GetToken()
	req := &jetonv1.DetokenizeRequest{Tokens: []string{tok}, Purpose: "support"}

	wrongCA := dial(t, e.srv.TrustedAddr().String(), e.bundle.ServerCA, e.bundle.SponsorCert, e.bundle.SponsorKey)
	if _, err := jetonv1.NewDetokenizerClient(wrongCA).Detokenize(ctx(t), req); code(err) != codes.Unavailable {
		t.Errorf("sponsor cert on trusted listener: got %v, want a failed handshake (Unavailable)", code(err))
	}

	cert, key := e.issue(t, e.bundle.TTPAuthority, devpki.LeafOptions{URI: "spiffe://jeton.dev/sponsor/rogue-on-ttp-ca"})
	rogue := dial(t, e.srv.TrustedAddr().String(), e.bundle.ServerCA, cert, key)
	if _, err := jetonv1.NewDetokenizerClient(rogue).Detokenize(ctx(t), req); code(err) != codes.PermissionDenied {
		t.Errorf("sponsor identity on trusted listener: got %v, want PermissionDenied", code(err))
	}
	if _, err := jetonv1.NewAdminClient(rogue).Stats(ctx(t), &jetonv1.StatsRequest{}); code(err) != codes.PermissionDenied {
		t.Errorf("sponsor identity on Admin: got %v, want PermissionDenied", code(err))
	}
	// An identity the policy does not know is refused too.
	cert, key = e.issue(t, e.bundle.TTPAuthority, devpki.LeafOptions{URI: "spiffe://jeton.dev/ttp/stranger"})
	stranger := dial(t, e.srv.TrustedAddr().String(), e.bundle.ServerCA, cert, key)
	if _, err := jetonv1.NewDetokenizerClient(stranger).Detokenize(ctx(t), req); code(err) != codes.PermissionDenied {
		t.Errorf("unknown identity: got %v, want PermissionDenied", code(err))
	}
	// And a TTP identity cannot use the public listener, even with a
	// sponsor-CA certificate.
	cert, key = e.issue(t, e.bundle.SponsorAuthority, devpki.LeafOptions{URI: "spiffe://jeton.dev/ttp/demo"})
	ttpOnPublic := dial(t, e.srv.PublicAddr().String(), e.bundle.ServerCA, cert, key)
	if _, err := jetonv1.NewTokenizerClient(ttpOnPublic).Tokenize(ctx(t), &jetonv1.TokenizeRequest{Items: []*jetonv1.TokenizeItem{{FieldClass: "text", Value: "x"}}}); code(err) != codes.PermissionDenied {
		t.Errorf("TTP identity on public listener: got %v, want PermissionDenied", code(err))
	}
}

func TestBadClientCertificatesRefused(t *testing.T) {
	e := startEnv(t, envOpts{})
	selfCA, err := devpki.NewCA("self-signed", time.Hour)
	if err != nil {
		t.Fatal(err)
	}
	selfCert, selfKey := e.issue(t, selfCA, devpki.LeafOptions{URI: "spiffe://jeton.dev/ttp/demo"})
	expCert, expKey := e.issue(t, e.bundle.TTPAuthority, devpki.LeafOptions{URI: "spiffe://jeton.dev/ttp/demo",
		NotBefore: time.Now().Add(-48 * time.Hour), NotAfter: time.Now().Add(-24 * time.Hour)})
	futCert, futKey := e.issue(t, e.bundle.TTPAuthority, devpki.LeafOptions{URI: "spiffe://jeton.dev/ttp/demo",
		NotBefore: time.Now().Add(24 * time.Hour), NotAfter: time.Now().Add(48 * time.Hour)})
	sponsorExp, sponsorExpKey := e.issue(t, e.bundle.SponsorAuthority, devpki.LeafOptions{URI: "spiffe://jeton.dev/sponsor/demo",
		NotBefore: time.Now().Add(-48 * time.Hour), NotAfter: time.Now().Add(-24 * time.Hour)})

	tests := []struct {
		name, addr, cert, key string
	}{
		{"trusted: no client certificate", e.srv.TrustedAddr().String(), "", ""},
		{"trusted: self-signed CA", e.srv.TrustedAddr().String(), selfCert, selfKey},
		{"trusted: wrong CA (sponsor)", e.srv.TrustedAddr().String(), e.bundle.SponsorCert, e.bundle.SponsorKey},
		{"trusted: expired", e.srv.TrustedAddr().String(), expCert, expKey},
		{"trusted: not yet valid", e.srv.TrustedAddr().String(), futCert, futKey},
		{"public: no client certificate", e.srv.PublicAddr().String(), "", ""},
		{"public: wrong CA (TTP)", e.srv.PublicAddr().String(), e.bundle.TTPCert, e.bundle.TTPKey},
		{"public: self-signed CA", e.srv.PublicAddr().String(), selfCert, selfKey},
		{"public: expired", e.srv.PublicAddr().String(), sponsorExp, sponsorExpKey},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			cc := dial(t, tt.addr, e.bundle.ServerCA, tt.cert, tt.key)
			_, err := jetonv1.NewDetokenizerClient(cc).Detokenize(ctx(t), &jetonv1.DetokenizeRequest{Tokens: []string{"tok_email_demo_x"}, Purpose: "support"})
			if code(err) != codes.Unavailable {
				t.Errorf("Detokenize: got %v, want the handshake to fail (Unavailable)", code(err))
			}
			_, err = jetonv1.NewTokenizerClient(cc).Tokenize(ctx(t), &jetonv1.TokenizeRequest{Items: []*jetonv1.TokenizeItem{{FieldClass: "text", Value: "x"}}})
			if code(err) != codes.Unavailable {
				t.Errorf("Tokenize: got %v, want the handshake to fail (Unavailable)", code(err))
			}
			if _, err := healthpb.NewHealthClient(cc).Check(ctx(t), &healthpb.HealthCheckRequest{}); code(err) != codes.Unavailable {
				t.Errorf("health: got %v, want the handshake to fail (Unavailable)", code(err))
			}
		})
	}
}

func TestTrustedAllowlist(t *testing.T) {
	e := startEnv(t, envOpts{trustedAllowed: []netip.Prefix{netip.MustParsePrefix("10.0.0.0/8"), netip.MustParsePrefix("::1/128")}})
	tc := e.ttpConn(t)
	_, err := jetonv1.NewDetokenizerClient(tc).Detokenize(ctx(t), &jetonv1.DetokenizeRequest{Tokens: []string{"tok_email_demo_x"}, Purpose: "support"})
	if code(err) != codes.Unavailable {
		t.Errorf("Detokenize from 127.0.0.1 outside the allowlist: got %v, want Unavailable (connection dropped)", code(err))
	}
	if _, err := healthpb.NewHealthClient(tc).Check(ctx(t), &healthpb.HealthCheckRequest{}); code(err) != codes.Unavailable {
		t.Errorf("health from outside the allowlist: got %v, want Unavailable", code(err))
	}
	if !strings.Contains(logSnapshot(), "outside the trusted allowlist") {
		t.Error("the dropped connection was not logged")
	}
}

func TestPurposeRules(t *testing.T) {
	e := startEnv(t, envOpts{})
	res := tokenize(t, e.sponsorConn(t),
		&jetonv1.TokenizeItem{FieldClass: "name", Value: useValue("Purpose Person")},
		&jetonv1.TokenizeItem{FieldClass: "email", Value: useValue("purpose.person@example.org")})
	name, email := res[0].GetToken(), res[1].GetToken()
	dc := jetonv1.NewDetokenizerClient(e.ttpConn(t))
	tests := []struct {
		name    string
		req     *jetonv1.DetokenizeRequest
		want    codes.Code
		wantVal []bool // per token, when the call succeeds
	}{
		{"missing purpose", &jetonv1.DetokenizeRequest{Tokens: []string{name}}, codes.InvalidArgument, nil},
		{"unknown purpose", &jetonv1.DetokenizeRequest{Tokens: []string{name}, Purpose: "curiosity"}, codes.PermissionDenied, nil},
		{"purpose not granted", &jetonv1.DetokenizeRequest{Tokens: []string{name}, Purpose: "unused"}, codes.PermissionDenied, nil},
		{"case reference required", &jetonv1.DetokenizeRequest{Tokens: []string{name}, Purpose: "vetting"}, codes.InvalidArgument, nil},
		{"purpose covers only some classes", &jetonv1.DetokenizeRequest{Tokens: []string{name, email}, Purpose: "vetting", CaseRef: "CASE-1"}, codes.OK, []bool{true, false}},
		{"allowed", &jetonv1.DetokenizeRequest{Tokens: []string{name, email}, Purpose: "support"}, codes.OK, []bool{true, true}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			before := len(e.audit.records())
			out, err := dc.Detokenize(ctx(t), tt.req)
			if code(err) != tt.want {
				t.Fatalf("got %v, want %v", code(err), tt.want)
			}
			if err != nil {
				if out != nil {
					t.Fatal("a refused call returned results")
				}
				// Every refusal is audited, the validator's before the
				// handler included.
				recs := e.audit.records()
				if len(recs) != before+1 || recs[len(recs)-1].Outcome != "failed" {
					t.Error("the refused call was not audited as failed")
				}
				return
			}
			for i, r := range out.Results {
				if got := r.GetValue() != ""; got != tt.wantVal[i] {
					t.Errorf("token %d: revealed=%v, want %v", i, got, tt.wantVal[i])
				}
				if !tt.wantVal[i] && (r.GetError().GetCode() != int32(codes.NotFound)) {
					t.Errorf("token %d: refusal code %d, want NotFound", i, r.GetError().GetCode())
				}
			}
			if len(e.audit.records()) != before+1 {
				t.Error("the reveal was not audited exactly once")
			}
		})
	}
}

// Unknown tokens, tokens of another tenant, classes the caller may not see
// and a purpose that doesn't cover the class all get one answer.
func TestRefusalsLookLikeUnknownTokens(t *testing.T) {
	e := startEnv(t, envOpts{})
	mine := tokenize(t, e.sponsorConn(t), &jetonv1.TokenizeItem{FieldClass: "email", Value: useValue("same.answer@example.org")})[0].GetToken()
	cert, key := e.issue(t, e.bundle.SponsorAuthority, devpki.LeafOptions{URI: "spiffe://jeton.dev/sponsor/other"})
	theirs := tokenize(t, dial(t, e.srv.PublicAddr().String(), e.bundle.ServerCA, cert, key),
		&jetonv1.TokenizeItem{FieldClass: "email", Value: useValue("other.tenant@example.org")})[0].GetToken()
	// A well-formed token for a record that never existed.
	unknown := reissue(t, mine)

	out, err := jetonv1.NewDetokenizerClient(e.ttpConn(t)).Detokenize(ctx(t), &jetonv1.DetokenizeRequest{
		Tokens: []string{unknown, theirs}, Purpose: "support"})
	if err != nil {
		t.Fatal(err)
	}
	vetting, err := jetonv1.NewDetokenizerClient(e.ttpConn(t)).Detokenize(ctx(t), &jetonv1.DetokenizeRequest{
		Tokens: []string{mine}, Purpose: "vetting", CaseRef: "CASE-2"})
	if err != nil {
		t.Fatal(err)
	}
	answers := append(out.Results, vetting.Results...)
	for i, r := range answers {
		if r.GetValue() != "" || r.GetError() == nil {
			t.Fatalf("answer %d revealed something", i)
		}
		if r.GetError().GetCode() != answers[0].GetError().GetCode() || r.GetError().GetMessage() != answers[0].GetError().GetMessage() {
			t.Errorf("answer %d differs from the unknown token's: %d %q vs %d %q", i,
				r.GetError().GetCode(), r.GetError().GetMessage(), answers[0].GetError().GetCode(), answers[0].GetError().GetMessage())
		}
		if r.FieldClass != "" || r.Masked {
			t.Errorf("answer %d leaks class or masking", i)
		}
	}
}

func TestMaskedOnly(t *testing.T) {
	e := startEnv(t, envOpts{})
	tok := tokenize(t, e.sponsorConn(t), &jetonv1.TokenizeItem{FieldClass: "email", Value: useValue("masked.person@example.org")})[0].GetToken()
	cert, key := e.issue(t, e.bundle.TTPAuthority, devpki.LeafOptions{URI: "spiffe://jeton.dev/ttp/masked"})
	mc := jetonv1.NewDetokenizerClient(dial(t, e.srv.TrustedAddr().String(), e.bundle.ServerCA, cert, key))
	out, err := mc.Detokenize(ctx(t), &jetonv1.DetokenizeRequest{Tokens: []string{tok}, Purpose: "support"})
	if err != nil {
		t.Fatal(err)
	}
	if r := out.Results[0]; !r.Masked || r.GetValue() != "m****@example.org" {
		t.Errorf("masked-only identity got masked=%v and a value that is not the masked form", r.Masked)
	}
	// Mask never returns a full value, even to a full reader.
	full := jetonv1.NewDetokenizerClient(e.ttpConn(t))
	m, err := full.Mask(ctx(t), &jetonv1.MaskRequest{Tokens: []string{tok}, Purpose: "support"})
	if err != nil {
		t.Fatal(err)
	}
	if r := m.Results[0]; !r.Masked || r.GetValue() != "m****@example.org" {
		t.Errorf("Mask returned masked=%v and not the masked form", r.Masked)
	}
}

func TestChangedCharacterRejected(t *testing.T) {
	e := startEnv(t, envOpts{})
	tok := tokenize(t, e.sponsorConn(t), &jetonv1.TokenizeItem{FieldClass: "name", Value: useValue("Typo Person")})[0].GetToken()
	b := []byte(tok)
	i := len(b) - 5
	if b[i] == 'A' {
		b[i] = 'B'
	} else {
		b[i] = 'A'
	}
	out, err := jetonv1.NewDetokenizerClient(e.ttpConn(t)).Detokenize(ctx(t), &jetonv1.DetokenizeRequest{Tokens: []string{string(b)}, Purpose: "support"})
	if err != nil {
		t.Fatal(err)
	}
	if r := out.Results[0]; r.GetError().GetCode() != int32(codes.InvalidArgument) || r.GetValue() != "" {
		t.Errorf("a mistyped token got code %d, want InvalidArgument", r.GetError().GetCode())
	}
	if recs := e.audit.records(); recs[len(recs)-1].Items[0].Outcome != "invalid" {
		t.Error("the mistyped token was not audited as invalid")
	}
}

func TestAuditSinkDownRevealsNothing(t *testing.T) {
	e := startEnv(t, envOpts{})
	tok := tokenize(t, e.sponsorConn(t), &jetonv1.TokenizeItem{FieldClass: "name", Value: useValue("Audit Person")})[0].GetToken()
	dc := jetonv1.NewDetokenizerClient(e.ttpConn(t))
	e.audit.setFail(true)
	out, err := dc.Detokenize(ctx(t), &jetonv1.DetokenizeRequest{Tokens: []string{tok}, Purpose: "support"})
	if code(err) != codes.Unavailable || out != nil {
		t.Fatalf("with the audit sink down: got %v and results=%v, want Unavailable and nothing", code(err), out != nil)
	}
	e.audit.setFail(false)
	out, err = dc.Detokenize(ctx(t), &jetonv1.DetokenizeRequest{Tokens: []string{tok}, Purpose: "support"})
	if err != nil || out.Results[0].GetValue() != "Audit Person" {
		t.Fatalf("after the sink recovered: %v", err)
	}
}
