package tokenizer

import (
	"strings"
	"testing"

	"golang.org/x/text/unicode/norm"
)

// The ASCII fast paths of the normalisation steps must give exactly what
// the library forms give: a deterministic token is minted from the
// result, so any difference would split one value's tokens in two.
func FuzzNormalizeFastPaths(f *testing.F) {
	for _, s := range []string{
		"", " ", "a", "Fake Person 0000001", "FAKE.Person@Example.TEST", "  two  spaces ",
		"tab\there", "line\nbreak", "a\vb\fc\rd", "trailing ", " leading", "a  b", "Ke\u212Avin",
		"Stra\u00dfe", "e\u0301", "\u00e9", "nb\u00a0sp", "nel\u0085x", "\u2003em", "\xff",
	} {
		f.Add(s)
	}
	// Each ASCII white-space character alone, inside and at both ends, so
	// that a fast path missing one of them is caught by its own seed.
	for _, c := range "\t\n\v\f\r " {
		for _, s := range []string{"a" + string(c) + "b", string(c) + "a", "a" + string(c)} {
			f.Add(s)
		}
	}
	f.Fuzz(func(t *testing.T, v string) {
		if got, want := nfc(v), norm.NFC.String(v); got != want {
			t.Errorf("nfc(%q) = %q, the library gives %q", v, got, want)
		}
		if got, want := fold(v), foldUnicode(v); got != want {
			t.Errorf("fold(%q) = %q, the library gives %q", v, got, want)
		}
		if got, want := collapseSpace(v), strings.Join(strings.Fields(v), " "); got != want {
			t.Errorf("collapseSpace(%q) = %q, want %q", v, got, want)
		}
	})
}

// An ASCII value that a step leaves as it is comes back without an
// allocation, so that validating a batch costs no garbage per item.
func TestNormalizeFastPathsDoNotAllocate(t *testing.T) {
	for _, tc := range []struct {
		name string
		step func(string) string
		v    string
	}{
		{"nfc", nfc, "Fake Person 0000001"},
		{"fold", fold, "fake.person.0000001@example.test"},
		{"collapse-space", collapseSpace, "1 Fake Street, 00000 Nowhere"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			if got := tc.step(tc.v); got != tc.v {
				t.Fatalf("changed a value already in normal form: %q", got)
			}
			if n := testing.AllocsPerRun(100, func() { _ = tc.step(tc.v) }); n != 0 {
				t.Errorf("%v allocations per value, want 0", n)
			}
		})
	}
	c := Class{Name: "name", Kind: KindRandom, Normalize: []string{"nfc", "trim", "collapse-space"}, Mask: "all"}
	if n := testing.AllocsPerRun(100, func() { _, _ = c.NormalizeValue("Fake Person 0000001") }); n != 0 {
		t.Errorf("NormalizeValue: %v allocations per value, want 0", n)
	}
}
