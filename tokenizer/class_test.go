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
		{"phone", "+33612345678", "+33612345678"},
		{"phone", "+33 6 12 34 56 78", "+33612345678"},
		{"phone", " +33 (0)6.12-34-56-78 ", "+330612345678"},
		{"phone", "06.12.34.56.78", "0612345678"},
		{"phone", "1234", "1234"},
		{"phone", "+1234", "+1234"},
		{"phone", "123", bad},
		{"phone", "+123", bad},
		{"phone", "+", bad},
		{"phone", "123456789012345", "123456789012345"},
		{"phone", "1234567890123456", bad},
		{"phone", "+33+612345678", bad},
		{"phone", "33+612345678", bad},
		{"phone", "0612x45678", bad},
		{"phone", "0612345678 ext 9", bad},
		{"phone", "０６１２３４５６７８", bad}, // full-width digits
		{"phone", "06/12/34/56/78", bad},
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
		{"phone", "+33 6 12 34 56 78", "+33612345678"},
		{"name", "  Anne   Dupont ", "Anne Dupont"},
		{"passport", "x1234567", "X1234567"},
		{"birthdate", " 1984-05-06 ", "1984-05-06"},
		{"address", " 1  Fake   Street\n00000 Nowhere ", "1 Fake Street 00000 Nowhere"},
		{"text", "  kept   as is \n", "  kept   as is \n"},
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
		"phone":     {"+33 6 FAKE 99", "fake-phone-0000", "+1234567890123456789"},
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
		{"email", "no-at-sign", "****"},
		{"email", "@example.org", "****"},
		{"phone", "+33612345678", "+33 6 ** ** ** 78"},
		{"phone", "+4412345", "+44 1 ** 45"},
		{"phone", "+44123456", "+44 1 ** * 56"},
		{"phone", "0612345678", "0 ** ** ** * 78"},
		{"phone", "123456", "1 ** * 56"},
		{"phone", "+12345", "****"},
		{"phone", "12345", "****"},
		{"name", "Anne Dupont", "A. D."},
		{"name", "Anne Marie Dupont", "A. M. D."},
		{"name", "Élise", "É."},
		{"name", "", "****"},
		{"passport", "X1234567", "*****567"},
		{"passport", "AB123", "**123"},
		{"passport", "ABCD", "****"},
		{"birthdate", "1984-05-06", "1984-**-**"},
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
	want := map[string]tokenizer.Kind{
		"email": tokenizer.KindDeterministic, "phone": tokenizer.KindDeterministic,
		"passport": tokenizer.KindDeterministic, "name": tokenizer.KindRandom,
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
