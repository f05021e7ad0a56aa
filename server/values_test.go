package server_test

import (
	"slices"
	"strings"
	"testing"

	"google.golang.org/grpc/codes"

	jetonv1 "github.com/jeton-dev/jeton/proto/jeton/v1"
	"github.com/jeton-dev/jeton/server/devpki"
	"github.com/jeton-dev/jeton/tokenizer"
)

// deterministic returns the built-in classes with the named ones made
// deterministic, as a deployment configures them (none is by default),
// and with region as the phone class's default region when not empty.
func deterministic(region string, names ...string) []tokenizer.Class {
	classes := tokenizer.DefaultClasses()
	for i := range classes {
		if slices.Contains(names, classes[i].Name) {
			classes[i].Kind = tokenizer.KindDeterministic
		}
		if classes[i].Name == "phone" {
			classes[i].Region = region
		}
	}
	return classes
}

// allClasses are the names of the built-in classes.
func allClasses() []string {
	var out []string
	for _, c := range tokenizer.DefaultClasses() {
		out = append(out, c.Name)
	}
	return out
}

// asSent are values of every built-in class written as people write them:
// surrounding and repeated spaces, capitals, decomposed accents (NFD),
// national and international phone forms. None is in its normalised form.
var asSent = map[string][]string{
	"email":     {"  Anne.Testperson@Example.ORG ", "E\u0301lodie.Test@example.org", "BOB.TEST@EXAMPLE.NET"},
	"phone":     {"+33 6 12 34 56 78", "06 12 34 56 79", "0033 6 12 34 56 80", "+33 (0)6 12 34 56 81", "+44 20 7946 0123", "06.12.34.56.82"},
	"name":      {"  Anne   Testperson ", "E\u0301lodie Testperson", "BOB example"},
	"passport":  {"xx-000 0001", "Xx0000002"},
	"birthdate": {" 1984-01-02 ", "1990-12-31"},
	"address":   {"1  rue de l'E\u0301glise,\n75000 Paris", " 2 Example Street "},
	"text":      {"  free\ttext, cafe\u0301 \n", "another fake note"},
}

// TestValuesComeBackAsSent: over gRPC, Detokenize returns every value of
// every built-in class byte for byte as it was sent, whether the class is
// random (the default) or configured deterministic; a masked reveal gives
// the class's mask of it.
func TestValuesComeBackAsSent(t *testing.T) {
	for _, cfg := range []struct {
		name    string
		classes []tokenizer.Class
	}{
		{"built-in", deterministic("FR")},
		{"all deterministic", deterministic("FR", allClasses()...)},
	} {
		t.Run(cfg.name, func(t *testing.T) {
			e := startEnv(t, envOpts{classes: cfg.classes})
			var items []*jetonv1.TokenizeItem
			for _, c := range tokenizer.DefaultClasses() {
				vals, ok := asSent[c.Name]
				if !ok {
					t.Fatalf("no value as sent for class %s", c.Name)
				}
				for _, v := range vals {
					items = append(items, &jetonv1.TokenizeItem{FieldClass: c.Name, Value: useValue(v)})
				}
			}
			res := tokenize(t, e.sponsorConn(t), items...)
			toks := make([]string, len(res))
			for i, r := range res {
				if toks[i] = r.GetToken(); toks[i] == "" {
					t.Fatalf("item %d (%s): %v", i, items[i].FieldClass, r.GetError())
				}
			}
			out, err := jetonv1.NewDetokenizerClient(e.ttpConn(t)).Detokenize(ctx(t), &jetonv1.DetokenizeRequest{Tokens: toks, Purpose: "support"})
			if err != nil {
				t.Fatal(err)
			}
			for i, r := range out.Results {
				if r.GetValue() != items[i].Value || r.Masked {
					t.Errorf("item %d (%s): not the value as sent (%d bytes back for %d sent)",
						i, items[i].FieldClass, len(r.GetValue()), len(items[i].Value))
				}
			}
			masked, err := jetonv1.NewDetokenizerClient(e.ttpConn(t)).Mask(ctx(t), &jetonv1.MaskRequest{Tokens: toks, Purpose: "support"})
			if err != nil {
				t.Fatal(err)
			}
			for i, r := range masked.Results {
				c, _ := e.tok.Class(items[i].FieldClass)
				want := c.MaskValue(items[i].Value)
				if !r.Masked || r.GetValue() != want || (c.Mask != "all" && want == "****") {
					t.Errorf("item %d (%s): masked reveal %q, want %q", i, items[i].FieldClass, r.GetValue(), want)
				}
			}
		})
	}
}

// TestEquivalentFormsShareOneToken: with deterministic classes (phone
// region FR), every way of writing one phone number, and the NFC and NFD
// forms of one name or e-mail address, get one token; the record then
// holds the form first sent, byte for byte (a later form never replaces
// it), and every form masks alike.
func TestEquivalentFormsShareOneToken(t *testing.T) {
	e := startEnv(t, envOpts{classes: deterministic("FR", "email", "phone", "name")})
	sc, dc := e.sponsorConn(t), jetonv1.NewDetokenizerClient(e.ttpConn(t))
	groups := []struct {
		class string
		forms []string
	}{
		{"phone", []string{"+33 6 12 34 56 78", "06 12 34 56 78", "0033 6 12 34 56 78", "+33 (0)6 12 34 56 78", "+33612345678"}},
		{"name", []string{"\u00c9lodie Testperson", "E\u0301lodie Testperson"}},
		{"email", []string{"\u00e9lodie.test@example.org", "e\u0301lodie.test@example.org", "E\u0301lodie.Test@Example.org"}},
	}
	for _, g := range groups {
		var first string
		var masks []string
		for i, v := range g.forms {
			res := tokenize(t, sc, &jetonv1.TokenizeItem{FieldClass: g.class, Value: useValue(v)})
			tok := res[0].GetToken()
			if tok == "" {
				t.Fatalf("%s form %d: %v", g.class, i, res[0].GetError())
			}
			if i == 0 {
				first = tok
			} else if tok != first {
				t.Errorf("%s form %d has its own token", g.class, i)
			}
			out, err := dc.Detokenize(ctx(t), &jetonv1.DetokenizeRequest{Tokens: []string{tok}, Purpose: "support"})
			if err != nil {
				t.Fatal(err)
			}
			if got := out.Results[0].GetValue(); got != g.forms[0] {
				t.Errorf("%s form %d: the reveal is not the form first sent", g.class, i)
			}
			m, err := dc.Mask(ctx(t), &jetonv1.MaskRequest{Tokens: []string{tok}, Purpose: "support"})
			if err != nil {
				t.Fatal(err)
			}
			masks = append(masks, m.Results[0].GetValue())
		}
		for i, m := range masks {
			if m != masks[0] || m == "****" {
				t.Errorf("%s form %d masks as %q, form 0 as %q", g.class, i, m, masks[0])
			}
		}
	}
	// The brief's own example: "+33 (0)6 12 34 56 78" is "06 12 34 56 78",
	// and a different number is not.
	res := tokenize(t, sc,
		&jetonv1.TokenizeItem{FieldClass: "phone", Value: "+33 (0)6 12 34 56 78"},
		&jetonv1.TokenizeItem{FieldClass: "phone", Value: "06 12 34 56 78"},
		&jetonv1.TokenizeItem{FieldClass: "phone", Value: "06 12 34 56 77"},
	)
	if res[0].GetToken() == "" || res[0].GetToken() != res[1].GetToken() || res[1].GetToken() == res[2].GetToken() {
		t.Error(`"+33 (0)6 12 34 56 78" and "06 12 34 56 78" do not share exactly one token`)
	}
}

// TestInvalidPhoneIsItemError: an invalid phone number fails its own item
// with InvalidArgument and a message that does not quote it; the rest of
// the batch is tokenized.
func TestInvalidPhoneIsItemError(t *testing.T) {
	e := startEnv(t, envOpts{classes: deterministic("FR", "phone")})
	bad := []string{"06 12 34", "+33 6 12 34 56 78 90 12", "fake-phone-value", "+999 612345678", "06 12 34 56 7", "+33 6 12 34 56 78 @"}
	items := []*jetonv1.TokenizeItem{{FieldClass: "name", Value: useValue("Anne Testperson")}}
	for _, v := range bad {
		items = append(items, &jetonv1.TokenizeItem{FieldClass: "phone", Value: useValue(v)})
	}
	res := tokenize(t, e.sponsorConn(t), items...)
	if res[0].GetToken() == "" {
		t.Fatalf("the valid item failed: %v", res[0].GetError())
	}
	for i, r := range res[1:] {
		ie := r.GetError()
		if r.GetToken() != "" || ie == nil || codes.Code(ie.GetCode()) != codes.InvalidArgument {
			t.Errorf("bad phone %d: token %t, error %v; want an InvalidArgument item error", i, r.GetToken() != "", ie)
			continue
		}
		for _, part := range strings.Fields(bad[i]) {
			if len(part) >= 3 && strings.Contains(ie.GetMessage(), part) {
				t.Errorf("bad phone %d: the error message quotes the value", i)
			}
		}
	}
	// Without a region, a national number cannot be read: also an item
	// error, not a guess.
	e2 := startEnv(t, envOpts{})
	cert, key := e2.issue(t, e2.bundle.SponsorAuthority, devpki.LeafOptions{URI: "spiffe://jeton.dev/sponsor/demo"})
	r := tokenize(t, dial(t, e2.srv.PublicAddr().String(), e2.bundle.ServerCA, cert, key),
		&jetonv1.TokenizeItem{FieldClass: "phone", Value: useValue("06 12 34 56 78")})
	if r[0].GetToken() != "" || codes.Code(r[0].GetError().GetCode()) != codes.InvalidArgument {
		t.Error("a national number was accepted with no region configured")
	}
}
