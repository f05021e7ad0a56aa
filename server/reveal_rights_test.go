package server_test

import (
	"testing"

	"google.golang.org/grpc/codes"
	"google.golang.org/protobuf/proto"

	jetonv1 "github.com/jeton-dev/jeton/proto/jeton/v1"
	"github.com/jeton-dev/jeton/server/audit"
	"github.com/jeton-dev/jeton/server/devpki"
	"github.com/jeton-dev/jeton/tokenizer"
)

// A role that may reveal only some classes (here email, with no "*") gets,
// for a token of another class of its own tenant and under a purpose it
// holds, exactly the answer of a well-formed unknown token: no value, not
// even a masked one, and no class. The audit log says "denied".
func TestUngrantedClassLooksLikeUnknownToken(t *testing.T) {
	e := startEnv(t, envOpts{})
	const emailValue = "granted.class@example.org"
	res := tokenize(t, e.sponsorConn(t),
		&jetonv1.TokenizeItem{FieldClass: "email", Value: useValue(emailValue)},
		&jetonv1.TokenizeItem{FieldClass: "name", Value: useValue("Ungranted Classperson")},
		&jetonv1.TokenizeItem{FieldClass: "phone", Value: useValue("+33 6 00 00 07 77")})
	for i, r := range res {
		if r.GetToken() == "" {
			t.Fatalf("tokenize item %d: %v", i, r.GetError())
		}
	}
	email, name, phone := res[0].GetToken(), res[1].GetToken(), res[2].GetToken()
	// A well-formed email token whose record never existed: the identity
	// may read emails, so this one goes all the way to the store.
	unknown := reissue(t, email)

	cert, key := e.issue(t, e.bundle.TTPAuthority, devpki.LeafOptions{URI: "spiffe://jeton.dev/ttp/email-only"})
	dc := jetonv1.NewDetokenizerClient(dial(t, e.srv.TrustedAddr().String(), e.bundle.ServerCA, cert, key))

	// checkRefusals compares every refused answer, token aside, with the
	// unknown token's answer.
	checkRefusals := func(t *testing.T, ref *jetonv1.RevealResult, refused []*jetonv1.RevealResult) {
		t.Helper()
		if ref.GetError() == nil || ref.GetError().GetCode() != int32(codes.NotFound) || ref.GetValue() != "" ||
			ref.FieldClass != "" || ref.Masked {
			t.Fatalf("the unknown token's answer is not a bare NotFound: code %d, class %q, masked %v, value set %v",
				ref.GetError().GetCode(), ref.FieldClass, ref.Masked, ref.GetValue() != "")
		}
		for i, r := range refused {
			if r.GetValue() != "" {
				t.Errorf("refused token %d: a value came back (masked=%v, class %q)", i, r.Masked, r.FieldClass)
			}
			if r.GetError() == nil {
				t.Errorf("refused token %d: no error", i)
				continue
			}
			if r.GetError().GetCode() != ref.GetError().GetCode() || r.GetError().GetMessage() != ref.GetError().GetMessage() {
				t.Errorf("refused token %d: error %d %q, unknown token's %d %q", i,
					r.GetError().GetCode(), r.GetError().GetMessage(), ref.GetError().GetCode(), ref.GetError().GetMessage())
			}
			if r.FieldClass != "" || r.Masked {
				t.Errorf("refused token %d leaks its class (%q) or masking (%v)", i, r.FieldClass, r.Masked)
			}
			// Nothing else differs either: the whole message, token aside.
			c := proto.Clone(r).(*jetonv1.RevealResult)
			c.Token = ref.Token
			if !proto.Equal(c, ref) {
				t.Errorf("refused token %d: answer differs from the unknown token's", i)
			}
		}
	}
	checkAudit := func(t *testing.T, method string, want ...string) {
		t.Helper()
		recs := e.audit.records()
		if len(recs) == 0 {
			t.Fatal("no audit record")
		}
		rec := recs[len(recs)-1]
		if rec.Method != method || rec.Identity != "spiffe://jeton.dev/ttp/email-only" || rec.Outcome != "ok" || len(rec.Items) != len(want) {
			t.Fatalf("audit record: method %q identity %q outcome %q with %d items; want %s, ok, %d items",
				rec.Method, rec.Identity, rec.Outcome, len(rec.Items), method, len(want))
		}
		for i, w := range want {
			if rec.Items[i].Outcome != w {
				t.Errorf("audit item %d: outcome %q, want %q", i, rec.Items[i].Outcome, w)
			}
		}
	}

	t.Run("Detokenize", func(t *testing.T) {
		out, err := dc.Detokenize(ctx(t), &jetonv1.DetokenizeRequest{Tokens: []string{email, unknown, name, phone}, Purpose: "support"})
		if err != nil {
			t.Fatal(err)
		}
		if len(out.Results) != 4 {
			t.Fatalf("%d results for 4 tokens", len(out.Results))
		}
		// The granted class is revealed in full: the identity works.
		if r := out.Results[0]; r.GetValue() != emailValue || r.Masked || r.FieldClass != "email" {
			t.Fatalf("the granted class: masked=%v class %q, value matches %v", r.Masked, r.FieldClass, r.GetValue() == emailValue)
		}
		checkRefusals(t, out.Results[1], out.Results[2:])
		checkAudit(t, "Detokenize", audit.OutcomeRevealed, audit.OutcomeNotFound, audit.OutcomeDenied, audit.OutcomeDenied)
	})
	t.Run("Mask", func(t *testing.T) {
		out, err := dc.Mask(ctx(t), &jetonv1.MaskRequest{Tokens: []string{email, unknown, name, phone}, Purpose: "support"})
		if err != nil {
			t.Fatal(err)
		}
		if len(out.Results) != 4 {
			t.Fatalf("%d results for 4 tokens", len(out.Results))
		}
		if r := out.Results[0]; !r.Masked || r.GetValue() != "g****@example.org" || r.FieldClass != "email" {
			t.Fatalf("Mask of the granted class: masked=%v class %q, not the masked form", r.Masked, r.FieldClass)
		}
		checkRefusals(t, out.Results[1], out.Results[2:])
		checkAudit(t, "Mask", audit.OutcomeMasked, audit.OutcomeNotFound, audit.OutcomeDenied, audit.OutcomeDenied)
	})
}

// A masked-only identity gets the masked form of every default class, and
// so does a full reader through Mask: never the value itself.
func TestMaskedFormsEveryClass(t *testing.T) {
	e := startEnv(t, envOpts{})
	classes := tokenizer.DefaultClasses()
	items := make([]*jetonv1.TokenizeItem, len(classes))
	full := make([]string, len(classes))
	masked := make([]string, len(classes))
	for i, c := range classes {
		vals, ok := sampleValues[c.Name]
		if !ok {
			t.Fatalf("no sample value for class %s", c.Name)
		}
		items[i] = &jetonv1.TokenizeItem{FieldClass: c.Name, Value: useValue(vals[0])}
		if _, err := c.NormalizeValue(vals[0]); err != nil {
			t.Fatalf("class %s: sample value does not normalise: %v", c.Name, err)
		}
		full[i], masked[i] = vals[0], c.MaskValue(vals[0])
		if masked[i] == full[i] {
			t.Fatalf("class %s: the masked form of the sample equals its value; the test could not tell them apart", c.Name)
		}
	}
	res := tokenize(t, e.sponsorConn(t), items...)
	toks := make([]string, len(res))
	for i, r := range res {
		if toks[i] = r.GetToken(); toks[i] == "" {
			t.Fatalf("tokenize %s: %v", classes[i].Name, r.GetError())
		}
	}
	check := func(t *testing.T, results []*jetonv1.RevealResult) {
		t.Helper()
		if len(results) != len(classes) {
			t.Fatalf("%d results for %d tokens", len(results), len(classes))
		}
		for i, r := range results {
			c := classes[i].Name
			switch {
			case r.GetError() != nil:
				t.Errorf("class %s: error %d %q", c, r.GetError().GetCode(), r.GetError().GetMessage())
			case !r.Masked:
				t.Errorf("class %s: result not marked masked", c)
			case r.GetValue() == full[i]:
				t.Errorf("class %s: the full value came back", c)
			case r.GetValue() != masked[i]:
				t.Errorf("class %s: the value is not the class's masked form", c)
			case r.FieldClass != c:
				t.Errorf("class %s: result names class %q", c, r.FieldClass)
			}
		}
	}
	checkAudit := func(t *testing.T, method string) {
		t.Helper()
		recs := e.audit.records()
		rec := recs[len(recs)-1]
		if rec.Method != method || len(rec.Items) != len(classes) {
			t.Fatalf("audit record: method %q with %d items, want %s with %d", rec.Method, len(rec.Items), method, len(classes))
		}
		for i, it := range rec.Items {
			if it.Outcome != audit.OutcomeMasked {
				t.Errorf("class %s: audited as %q, want %q", classes[i].Name, it.Outcome, audit.OutcomeMasked)
			}
		}
	}

	t.Run("masked-only identity", func(t *testing.T) {
		cert, key := e.issue(t, e.bundle.TTPAuthority, devpki.LeafOptions{URI: "spiffe://jeton.dev/ttp/masked"})
		mc := jetonv1.NewDetokenizerClient(dial(t, e.srv.TrustedAddr().String(), e.bundle.ServerCA, cert, key))
		out, err := mc.Detokenize(ctx(t), &jetonv1.DetokenizeRequest{Tokens: toks, Purpose: "support"})
		if err != nil {
			t.Fatal(err)
		}
		check(t, out.Results)
		checkAudit(t, "Detokenize")
	})
	t.Run("Mask as a full reader", func(t *testing.T) {
		out, err := jetonv1.NewDetokenizerClient(e.ttpConn(t)).Mask(ctx(t), &jetonv1.MaskRequest{Tokens: toks, Purpose: "support"})
		if err != nil {
			t.Fatal(err)
		}
		check(t, out.Results)
		checkAudit(t, "Mask")
	})
}
