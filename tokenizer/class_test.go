package tokenizer_test

import (
	"errors"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/jeton-dev/jeton/tokenizer"
)

func defaultClass(tb testing.TB, name string) tokenizer.Class {
	tb.Helper()
	for _, c := range tokenizer.DefaultClasses() {
		if c.Name == name {
			return c
		}
	}
	tb.Fatalf("no default class %q", name)
	return tokenizer.Class{}
}

func TestNormalizeSteps(t *testing.T) {
	const bad = "\x00error" // marks a want that is an error
	tests := []struct {
		step, in, want string
	}{
		{"nfc", "E\u0301lodie", "\u00c9lodie"},
		{"nfc", "\u00c9lodie", "\u00c9lodie"},
		{"nfc", "Anne", "Anne"},
		{"fold", "Anne@Example.ORG", "anne@example.org"},
		{"fold", "E\u0301LODIE", "\u00e9lodie"}, // folded and composed
		{"fold", "\u00c9lodie", "\u00e9lodie"},
		{"fold", "STRASSE", "strasse"},
		{"fold", "Stra\u00dfe", "strasse"}, // ß folds to ss; lower would keep it
		{"trim", "  x y \t\n", "x y"},
		{"trim", "\u00a0x\u2003", "x"},
		{"trim", " \t ", bad}, // empty after normalisation
		{"lower", "AbC-É", "abc-é"},
		{"upper", "abc-é", "ABC-É"},
		{"collapse-space", "  a \t b\n\n c  ", "a b c"},
		{"collapse-space", "a\u2003b", "a b"},
		{"collapse-space", " \n ", bad},
		{"email", "anne@example.org", "anne@example.org"},
		{"email", "Anne@Example.org", "Anne@Example.org"}, // the step checks shape only
		{"email", "a@b", "a@b"},
		{"email", "no-at-sign.example.org", bad},
		{"email", "@example.org", bad},
		{"email", "anne@", bad},
		{"email", "anne@@example.org", bad},
		{"email", "a@b@example.org", bad},
		{"email", "an ne@example.org", bad},
		{"email", "anne@exa\tmple.org", bad},
		{"email", " anne@example.org", bad},
		{"email", "anne@example.org\u2003", bad},
		// The phone step's class has region FR here.
		{"phone", "+33612345678", "+33612345678"},
		{"phone", "+33 6 12 34 56 78", "+33612345678"},
		{"phone", "06 12 34 56 78", "+33612345678"},
		{"phone", "0033 6 12 34 56 78", "+33612345678"},
		{"phone", "+33 (0)6 12 34 56 78", "+33612345678"},
		{"phone", " +33 (0)6.12-34-56-78 ", "+33612345678"},
		{"phone", "06.12.34.56.78", "+33612345678"},
		{"phone", "tel:+33-6-12-34-56-78", "+33612345678"},
		{"phone", "+44 20 7946 0123", "+442079460123"}, // another country's number keeps its code
		{"phone", "+1 202-555-0123", "+12025550123"},
		{"phone", "06 12 34 56 78 ext. 12", "+33612345678;ext=12"},
		{"phone", "1234", bad},
		{"phone", "+1234", bad},
		{"phone", "123", bad},
		{"phone", "+", bad},
		{"phone", "06 12 34 56", bad},      // too short for France
		{"phone", "06 12 34 56 78 9", bad}, // too long
		{"phone", "+44 7700 900123", bad},  // a drama number: libphonenumber knows it is not valid
		{"phone", "+999 612345678", bad},   // no such country code
		{"phone", "fake-phone", bad},       // not a number at all
		{"phone", "0612345678901234567890", bad},
		{"passport", "X1234567", "X1234567"},
		{"passport", "x123 45-67", "X1234567"},
		{"passport", "ab123", "AB123"},
		{"passport", "AB12", bad},
		{"passport", "AB 1-2", bad}, // 4 characters once separators go
		{"passport", strings.Repeat("A", 20), strings.Repeat("A", 20)},
		{"passport", strings.Repeat("A", 21), bad},
		{"passport", "X12345_7", bad},
		{"passport", "É1234567", bad},
		{"passport", "X1234567\n", bad},
		{"date", "1984-05-06", "1984-05-06"},
		{"date", "2000-02-29", "2000-02-29"},
		{"date", "1984-5-6", bad},
		{"date", "1984-02-30", bad},
		{"date", "1900-02-29", bad},
		{"date", "06/05/1984", bad},
		{"date", "1984-05-06T00:00:00Z", bad},
		{"date", " 1984-05-06", bad},
		{"date", "84-05-06", bad},
	}
	for _, tc := range tests {
		t.Run(tc.step+"/"+tc.in, func(t *testing.T) {
			c := tokenizer.Class{Name: "c", Kind: tokenizer.KindRandom, Normalize: []string{tc.step}, Mask: "all"}
			if tc.step == "phone" {
				c.Region = "FR"
			}
			if err := c.Validate(); err != nil {
				t.Fatal(err)
			}
			got, err := c.NormalizeValue(tc.in)
			if tc.want == bad {
				if err == nil {
					t.Fatalf("NormalizeValue(%q) = %q, want error", tc.in, got)
				}
				checkValueError(t, err, tc.in)
				return
			}
			if err != nil || got != tc.want {
				t.Fatalf("NormalizeValue(%q) = %q, %v; want %q", tc.in, got, err, tc.want)
			}
		})
	}
}

// Without a region, the phone step takes only numbers that say their
// country.
func TestPhoneWithoutRegion(t *testing.T) {
	c := defaultClass(t, "phone")
	if c.Region != "" {
		t.Fatalf("the built-in phone class has region %q", c.Region)
	}
	if got, err := c.NormalizeValue("+33 6 12 34 56 78"); err != nil || got != "+33612345678" {
		t.Fatalf("international form: %q, %v", got, err)
	}
	for _, v := range []string{"06 12 34 56 78", "0033 6 12 34 56 78"} {
		if _, err := c.NormalizeValue(v); err == nil {
			t.Errorf("a national number was read without a region")
		} else {
			checkValueError(t, err, v)
		}
	}
	// The region decides how a national number reads.
	c.Region = "GB"
	if got, err := c.NormalizeValue("020 7946 0123"); err != nil || got != "+442079460123" {
		t.Fatalf("GB national form: %q, %v", got, err)
	}
}

// TestEquivalentValuesShareNormalForm: every way of writing one value that
// the built-in classes treat as the same gives one normalised form, the
// input of a deterministic token.
func TestEquivalentValuesShareNormalForm(t *testing.T) {
	phone := defaultClass(t, "phone")
	phone.Region = "FR"
	groups := []struct {
		class tokenizer.Class
		same  []string
		other string // a different value: another form
	}{
		{phone, []string{"+33 6 12 34 56 78", "06 12 34 56 78", "0033 6 12 34 56 78", "+33 (0)6 12 34 56 78", "+33612345678"}, "06 12 34 56 79"},
		{defaultClass(t, "name"), []string{"\u00c9lodie Testperson", "E\u0301lodie Testperson", " E\u0301lodie   Testperson "}, "Elodie Testperson"},
		{defaultClass(t, "email"), []string{"\u00e9lodie.test@example.org", "e\u0301lodie.test@example.org", "E\u0301LODIE.Test@Example.ORG", "\u00c9lodie.test@example.org "}, "elodie.test@example.org"},
		{defaultClass(t, "address"), []string{"1 rue de l'\u00c9glise", "1  rue de l'E\u0301glise"}, "1 rue de l'Eglise"},
		{defaultClass(t, "text"), []string{"caf\u00e9", "cafe\u0301"}, "cafe"},
		{defaultClass(t, "passport"), []string{"x1234567", "X12-345 67"}, "X1234568"},
	}
	for _, g := range groups {
		want, err := g.class.NormalizeValue(g.same[0])
		if err != nil {
			t.Fatalf("%s: %v", g.class.Name, err)
		}
		for i, v := range g.same[1:] {
			if got, err := g.class.NormalizeValue(v); err != nil || got != want {
				t.Errorf("%s: form %d normalises differently (%v)", g.class.Name, i+1, err)
			}
		}
		if got, _ := g.class.NormalizeValue(g.other); got == want {
			t.Errorf("%s: a different value shares the normalised form", g.class.Name)
		}
	}
}

// checkValueError asserts that err is a UserError wrapping ErrInvalidValue
// and that its text does not quote the value.
func checkValueError(tb testing.TB, err error, value string) {
	tb.Helper()
	if !errors.Is(err, tokenizer.ErrInvalidValue) {
		tb.Errorf("error %v is not ErrInvalidValue", err)
	}
	if !tokenizer.IsUserError(err) {
		tb.Errorf("error %v is not a UserError", err)
	}
	if v := strings.TrimSpace(value); len(v) >= 3 && strings.Contains(err.Error(), v) {
		tb.Errorf("error text quotes the value")
	}
}

func TestDefaultClassesNormalize(t *testing.T) {
	tests := []struct {
		class, in, want string
	}{
		{"email", "  Anne@Example.ORG \n", "anne@example.org"},
		{"email", "anne@example.org", "anne@example.org"},
		{"email", "E\u0301lise@Example.org", "\u00e9lise@example.org"},
		{"phone", "+33 6 12 34 56 78", "+33612345678"},
		{"name", "  Anne   Dupont ", "Anne Dupont"},
		{"name", "E\u0301lise Dupont", "\u00c9lise Dupont"}, // composed, case kept
		{"passport", "x1234567", "X1234567"},
		{"birthdate", " 1984-05-06 ", "1984-05-06"},
		{"address", " 1  Fake   Street\n00000 Nowhere ", "1 Fake Street 00000 Nowhere"},
		{"text", "  kept   as is \n", "  kept   as is \n"},
		{"text", "cafe\u0301", "caf\u00e9"},
	}
	for _, tc := range tests {
		t.Run(tc.class, func(t *testing.T) {
			got, err := defaultClass(t, tc.class).NormalizeValue(tc.in)
			if err != nil || got != tc.want {
				t.Fatalf("NormalizeValue(%q) = %q, %v; want %q", tc.in, got, err, tc.want)
			}
		})
	}
}

func TestNormalizeValueLimits(t *testing.T) {
	email := defaultClass(t, "email")
	local := strings.Repeat("a", 320-len("@example.org"))
	if _, err := email.NormalizeValue(local + "@example.org"); err != nil {
		t.Errorf("320-byte email refused: %v", err)
	}
	if _, err := email.NormalizeValue("b" + local + "@example.org"); err == nil {
		t.Error("321-byte email accepted")
	}
	text := defaultClass(t, "text")
	if _, err := text.NormalizeValue(strings.Repeat("x", tokenizer.DefaultMaxValueLen)); err != nil {
		t.Errorf("DefaultMaxValueLen text refused: %v", err)
	}
	long := strings.Repeat("y", tokenizer.DefaultMaxValueLen+1)
	_, err := text.NormalizeValue(long)
	if err == nil {
		t.Fatal("over-long text accepted")
	}
	checkValueError(t, err, long)
	// The bound applies before normalisation: trimming cannot sneak a
	// long value in.
	if _, err := email.NormalizeValue(strings.Repeat(" ", 400) + "a@b"); err == nil {
		t.Error("length checked after trimming")
	}
	for _, v := range []string{"fake\xffvalue", "\xc3"} {
		_, err := text.NormalizeValue(v)
		if err == nil {
			t.Errorf("invalid UTF-8 %q accepted", v)
			continue
		}
		checkValueError(t, err, v)
	}
	if _, err := text.NormalizeValue(""); err == nil {
		t.Error("empty text accepted")
	}
}

func TestNormalizeValueErrorsNeverQuoteValue(t *testing.T) {
	bad := map[string][]string{
		"email":     {"not-an-email-fake-value", "fake person@example.org", "fake@exa@mple.org", strings.Repeat("fakefake", 50) + "@example.org"},
		"phone":     {"+33 6 FAKE 99", "fake-phone-0000", "+1234567890123456789", "06 12 34 56 78", "+33 6 99 99"},
		"name":      {"  \t  ", "fake\xffname-value"},
		"passport":  {"FAKE_PASSPORT", "FAK", "FAKE#0000"},
		"birthdate": {"1984-13-45", "fake-date-value", "01/02/1999"},
		"address":   {strings.Repeat("1 Fake Street ", 100)},
		"text":      {"", "fake\xfe\xfftext"},
	}
	for class, values := range bad {
		c := defaultClass(t, class)
		for _, v := range values {
			got, err := c.NormalizeValue(v)
			if err == nil {
				t.Errorf("%s: NormalizeValue accepted a bad value, got %q", class, got)
				continue
			}
			checkValueError(t, err, v)
			if !strings.HasPrefix(err.Error(), "tokenizer: ") {
				t.Errorf("%s: error %q lacks the package prefix", class, err)
			}
		}
	}
}

func TestMaskValue(t *testing.T) {
	tests := []struct {
		class, in, want string
	}{
		{"email", "anne@example.org", "a****@example.org"},
		{"email", "élise@example.org", "é****@example.org"},
		{"email", "a@b", "a****@b"},
		// Masks apply to the normalised form: the value as sent may have
		// spaces, capitals or decomposed accents.
		{"email", "  Anne@Example.ORG ", "a****@example.org"},
		{"email", "E\u0301lise@example.org", "\u00e9****@example.org"},
		{"email", "no-at-sign", "****"},
		{"email", "@example.org", "****"},
		{"phone", "+33612345678", "+33 6 ** ** ** 78"},
		{"phone", "+33 6 12 34 56 78", "+33 6 ** ** ** 78"},
		{"phone", "+33 (0)6 12 34 56 78", "+33 6 ** ** ** 78"},
		{"phone", "tel:+33-6-12-34-56-78", "+33 6 ** ** ** 78"},
		{"phone", "+1 202 555 0123", "+1 2 ** ** ** * 23"},
		{"phone", "+44 20 7946 0123", "+44 2 ** ** ** * 23"},
		{"phone", "+33 6 12 34 56 78 ext. 99", "+33 6 ** ** ** 78"}, // the extension is hidden
		{"phone", "06 12 34 56 78", "****"},                         // no region: not a number
		{"phone", "+12345", "****"},
		{"phone", "12345", "****"},
		{"name", "Anne Dupont", "A. D."},
		{"name", "Anne Marie Dupont", "A. M. D."},
		{"name", "Élise", "É."},
		{"name", "E\u0301lise", "\u00c9."}, // not a bare "E."
		{"name", "  anne   DUPONT ", "a. D."},
		{"name", "", "****"},
		{"passport", "X1234567", "*****567"},
		{"passport", "x12-345 67", "*****567"},
		{"passport", "AB123", "**123"},
		{"passport", "ABCD", "****"},
		{"birthdate", "1984-05-06", "1984-**-**"},
		{"birthdate", " 1984-05-06 ", "1984-**-**"},
		{"birthdate", "1984", "****"},
		{"address", "1 Fake Street 00000 Nowhere", "****"},
		{"text", "anything at all", "****"},
		{"text", "", "****"},
	}
	for _, tc := range tests {
		t.Run(tc.class+"/"+tc.in, func(t *testing.T) {
			if got := defaultClass(t, tc.class).MaskValue(tc.in); got != tc.want {
				t.Fatalf("MaskValue(%q) = %q, want %q", tc.in, got, tc.want)
			}
		})
	}
	// With a region, a national number masks like its international form.
	phone := defaultClass(t, "phone")
	phone.Region = "FR"
	for _, v := range []string{"06 12 34 56 78", "0033 6 12 34 56 78", "+33 (0)6 12 34 56 78"} {
		if got := phone.MaskValue(v); got != "+33 6 ** ** ** 78" {
			t.Errorf("MaskValue(%q) = %q with region FR", v, got)
		}
	}
}

// TestMaskHidesMiddle checks, over many normalised values, that each mask
// shows no more than its rule allows.
func TestMaskHidesMiddle(t *testing.T) {
	for i := range 500 {
		num := 100000000 + i*7919
		phone := "+336" + strconv.Itoa(num)[1:]
		m := defaultClass(t, "phone").MaskValue(phone)
		digits := strings.Map(func(r rune) rune {
			if r >= '0' && r <= '9' {
				return r
			}
			return -1
		}, m)
		// Two country digits, the first national digit and the last two.
		if len(digits) != 5 || digits != phone[1:4]+phone[len(phone)-2:] {
			t.Fatalf("phone mask %q of a 11-digit number shows %q", m, digits)
		}
		pp := "P" + strconv.Itoa(num)
		if m := defaultClass(t, "passport").MaskValue(pp); strings.Trim(m, "*") != pp[len(pp)-3:] || len(m) != len(pp) {
			t.Fatalf("passport mask %q", m)
		}
	}
}

func TestClassValidate(t *testing.T) {
	for _, c := range tokenizer.DefaultClasses() {
		if err := c.Validate(); err != nil {
			t.Errorf("default class %s: %v", c.Name, err)
		}
	}
	ok := tokenizer.Class{Name: "fake-class", Kind: tokenizer.KindRandom, Mask: "all"}
	tests := []struct {
		name   string
		edit   func(*tokenizer.Class)
		substr []string // the error must name these
	}{
		{"bad name", func(c *tokenizer.Class) { c.Name = "Bad_Name" }, []string{"class name", "Bad_Name"}},
		{"empty name", func(c *tokenizer.Class) { c.Name = "" }, []string{"class name"}},
		{"long name", func(c *tokenizer.Class) { c.Name = strings.Repeat("n", 33) }, []string{"class name"}},
		{"empty kind", func(c *tokenizer.Class) { c.Kind = "" }, []string{"kind"}},
		{"bad kind", func(c *tokenizer.Class) { c.Kind = "sequential" }, []string{"kind", "sequential"}},
		{"bad step", func(c *tokenizer.Class) { c.Normalize = []string{"trim", "soundex"} }, []string{"normalize", "soundex"}},
		{"empty mask", func(c *tokenizer.Class) { c.Mask = "" }, []string{"mask"}},
		{"bad mask", func(c *tokenizer.Class) { c.Mask = "first3" }, []string{"mask", "first3"}},
		{"negative retention", func(c *tokenizer.Class) { c.Retention = -time.Second }, []string{"retention"}},
		{"negative max length", func(c *tokenizer.Class) { c.MaxLen = -1 }, []string{"max length"}},
		{"region without phone step", func(c *tokenizer.Class) { c.Region = "FR" }, []string{"region", "FR", "phone"}},
		{"unknown region", func(c *tokenizer.Class) { c.Normalize = []string{"phone"}; c.Region = "XX" }, []string{"region", "XX"}},
		{"lower-case region", func(c *tokenizer.Class) { c.Normalize = []string{"phone"}; c.Region = "fr" }, []string{"region", "fr"}},
	}
	if err := ok.Validate(); err != nil {
		t.Fatalf("base class invalid: %v", err)
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			c := ok
			tc.edit(&c)
			err := c.Validate()
			if err == nil {
				t.Fatal("Validate accepted it")
			}
			for _, s := range tc.substr {
				if !strings.Contains(err.Error(), s) {
					t.Errorf("error %q does not name %q", err, s)
				}
			}
			if !strings.HasPrefix(err.Error(), "tokenizer: ") {
				t.Errorf("error %q lacks the package prefix", err)
			}
		})
	}
}

func TestDefaultClassesShape(t *testing.T) {
	// Every built-in class is random: a deterministic token is an oracle,
	// so only configuration makes a class deterministic.
	want := map[string]tokenizer.Kind{
		"email": tokenizer.KindRandom, "phone": tokenizer.KindRandom,
		"passport": tokenizer.KindRandom, "name": tokenizer.KindRandom,
		"birthdate": tokenizer.KindRandom, "address": tokenizer.KindRandom, "text": tokenizer.KindRandom,
	}
	got := tokenizer.DefaultClasses()
	if len(got) != len(want) {
		t.Fatalf("%d default classes, want %d", len(got), len(want))
	}
	for _, c := range got {
		if k, ok := want[c.Name]; !ok || k != c.Kind {
			t.Errorf("class %s has kind %q, want %q", c.Name, c.Kind, k)
		}
	}
	// Callers may change the returned slice without changing the defaults.
	got[0].Normalize[0] = "upper"
	if tokenizer.DefaultClasses()[0].Normalize[0] == "upper" {
		t.Error("DefaultClasses shares state between calls")
	}
}
