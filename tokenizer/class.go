package tokenizer

import (
	"errors"
	"fmt"
	"strings"
	"time"
	"unicode"
	"unicode/utf8"
)

// Kind says how a class mints tokens.
type Kind string

const (
	// KindRandom mints 128 random bits per item: equal values get distinct
	// tokens. It is the default.
	KindRandom Kind = "random"
	// KindDeterministic mints a keyed MAC of the normalised value: equal
	// values get equal tokens within a tenant and class. Such a token is an
	// oracle ("was X tokenized?"), so classes opt in.
	KindDeterministic Kind = "deterministic"
)

// DefaultMaxValueLen bounds a value's length in bytes when a class sets none.
const DefaultMaxValueLen = 4096

// Class is a configured field class.
type Class struct {
	Name string
	Kind Kind
	// Normalize names the steps applied, in order, before a value is
	// tokenized and stored. They decide which values share a deterministic
	// token. See Normalizers.
	Normalize []string
	// Mask names the masking rule. See Maskers.
	Mask string
	// Retention is how long a record lives; zero keeps it until erased.
	Retention time.Duration
	// RetainUntil is an absolute end of retention, such as the end of the
	// event plus six months; zero means none. A record never outlives it,
	// whatever Retention says, and once it has passed the class tokenizes
	// nothing more. See RecordTTL.
	RetainUntil time.Time
	// MaxLen bounds a value's length in bytes; zero means DefaultMaxValueLen.
	MaxLen int
}

// Validate checks the class definition and names the bad field.
func (c Class) Validate() error {
	if err := validateName("class", c.Name); err != nil {
		return err
	}
	switch c.Kind {
	case KindRandom, KindDeterministic:
	default:
		return fmt.Errorf("tokenizer: class %s: kind %q must be %q or %q", c.Name, c.Kind, KindRandom, KindDeterministic)
	}
	for _, n := range c.Normalize {
		if _, ok := normalizers[n]; !ok {
			return fmt.Errorf("tokenizer: class %s: unknown normalize step %q", c.Name, n)
		}
	}
	if _, ok := maskers[c.Mask]; !ok {
		return fmt.Errorf("tokenizer: class %s: unknown mask rule %q", c.Name, c.Mask)
	}
	if c.Retention < 0 {
		return fmt.Errorf("tokenizer: class %s: retention must not be negative", c.Name)
	}
	if c.MaxLen < 0 {
		return fmt.Errorf("tokenizer: class %s: max length must not be negative", c.Name)
	}
	return nil
}

// ErrRetentionEnded means a class's RetainUntil has passed: it may no
// longer store records. It comes wrapped in a UserError.
var ErrRetentionEnded = errors.New("tokenizer: retention of the field class has ended")

// RecordTTL returns the lifetime of a record of c created at now: the
// shorter of Retention and the time left until RetainUntil, zero (keep
// until erased) when neither is set. It returns a UserError wrapping
// ErrRetentionEnded when RetainUntil is not after now. The store rounds a
// lifetime up to whole milliseconds, so less than one left counts as none:
// a record must not outlive RetainUntil. (Being relative, the TTL
// still counts from when the store gets the write, a moment later.)
func (c Class) RecordTTL(now time.Time) (time.Duration, error) {
	ttl := c.Retention
	if !c.RetainUntil.IsZero() {
		left := c.RetainUntil.Sub(now)
		if left < time.Millisecond {
			return 0, &UserError{fmt.Errorf("%w: %s", ErrRetentionEnded, c.Name)}
		}
		if ttl == 0 || left < ttl {
			ttl = left.Truncate(time.Millisecond)
		}
	}
	return ttl, nil
}

// NormalizeValue applies the class's normalisation and checks the result.
// The error is a UserError wrapping ErrInvalidValue and never quotes v.
func (c Class) NormalizeValue(v string) (string, error) {
	max := c.MaxLen
	if max == 0 {
		max = DefaultMaxValueLen
	}
	if len(v) > max || !utf8.ValidString(v) {
		return "", &UserError{fmt.Errorf("%w: %s value is too long or not UTF-8", ErrInvalidValue, c.Name)}
	}
	for _, n := range c.Normalize {
		var ok bool
		if v, ok = normalizers[n](v); !ok {
			return "", &UserError{fmt.Errorf("%w: %s value fails %s", ErrInvalidValue, c.Name, n)}
		}
	}
	if v == "" {
		return "", &UserError{fmt.Errorf("%w: %s value is empty", ErrInvalidValue, c.Name)}
	}
	return v, nil
}

// MaskValue returns the masked form of a stored value.
func (c Class) MaskValue(v string) string { return maskers[c.Mask](v) }

// DefaultClasses returns the classes used when none are configured.
func DefaultClasses() []Class {
	return []Class{
		{Name: "email", Kind: KindDeterministic, Normalize: []string{"trim", "lower", "email"}, Mask: "email", MaxLen: 320},
		{Name: "phone", Kind: KindDeterministic, Normalize: []string{"phone"}, Mask: "phone", MaxLen: 32},
		{Name: "name", Kind: KindRandom, Normalize: []string{"trim", "collapse-space"}, Mask: "initials", MaxLen: 256},
		{Name: "passport", Kind: KindDeterministic, Normalize: []string{"passport"}, Mask: "last3", MaxLen: 32},
		{Name: "birthdate", Kind: KindRandom, Normalize: []string{"trim", "date"}, Mask: "date", MaxLen: 32},
		{Name: "address", Kind: KindRandom, Normalize: []string{"trim", "collapse-space"}, Mask: "all", MaxLen: 1024},
		{Name: "text", Kind: KindRandom, Mask: "all"},
	}
}

// normalizers are the normalisation steps a class may name. Each returns
// false when the value cannot be of the class's shape.
var normalizers = map[string]func(string) (string, bool){
	"trim":  func(v string) (string, bool) { return strings.TrimSpace(v), true },
	"lower": func(v string) (string, bool) { return strings.ToLower(v), true },
	"upper": func(v string) (string, bool) { return strings.ToUpper(v), true },
	// collapse-space turns every run of white space into one space.
	"collapse-space": func(v string) (string, bool) { return strings.Join(strings.Fields(v), " "), true },
	// email requires one '@' with something on both sides and no space.
	"email": func(v string) (string, bool) {
		local, domain, ok := strings.Cut(v, "@")
		return v, ok && local != "" && domain != "" && !strings.ContainsAny(domain, "@") &&
			strings.IndexFunc(v, unicode.IsSpace) < 0
	},
	// phone keeps a leading '+' and the digits, dropping spaces, dots,
	// dashes and parentheses; it requires 4 to 15 digits (E.164).
	"phone": func(v string) (string, bool) {
		v = strings.TrimSpace(v)
		var b strings.Builder
		for i, r := range v {
			switch {
			case r >= '0' && r <= '9':
				b.WriteRune(r)
			case r == '+' && i == 0:
				b.WriteRune(r)
			case r == ' ' || r == '.' || r == '-' || r == '(' || r == ')':
			default:
				return "", false
			}
		}
		n := strings.TrimPrefix(b.String(), "+")
		return b.String(), len(n) >= 4 && len(n) <= 15
	},
	// passport keeps letters and digits, upper-cased.
	"passport": func(v string) (string, bool) {
		var b strings.Builder
		for _, r := range v {
			switch {
			case r >= '0' && r <= '9', r >= 'A' && r <= 'Z':
				b.WriteRune(r)
			case r >= 'a' && r <= 'z':
				b.WriteRune(r - 'a' + 'A')
			case r == ' ' || r == '-':
			default:
				return "", false
			}
		}
		return b.String(), b.Len() >= 5 && b.Len() <= 20
	},
	// date requires an ISO 8601 calendar date, YYYY-MM-DD.
	"date": func(v string) (string, bool) {
		_, err := time.Parse(time.DateOnly, v)
		return v, err == nil
	},
}

// maskers are the masking rules a class may name. They work on stored,
// normalised values and never reveal more than their comment says.
var maskers = map[string]func(string) string{
	// all hides everything.
	"all": func(string) string { return "****" },
	// email keeps the first character of the local part and the domain:
	// a****@example.org.
	"email": func(v string) string {
		local, domain, ok := strings.Cut(v, "@")
		if !ok || local == "" {
			return "****"
		}
		r, _ := utf8.DecodeRuneInString(local)
		return string(r) + "****@" + domain
	},
	// phone keeps a leading "+" and country digits (two) and the last two
	// digits, grouped in pairs: +33 6 ** ** ** 78 for +33612345678.
	"phone": func(v string) string {
		digits := strings.TrimPrefix(v, "+")
		if len(digits) < 6 {
			return "****"
		}
		var b strings.Builder
		if strings.HasPrefix(v, "+") {
			b.WriteString("+" + digits[:2] + " ")
			digits = digits[2:]
		}
		// Show the first digit of the national number, hide the middle in
		// pairs, show the last two.
		head, mid, tail := digits[:1], digits[1:len(digits)-2], digits[len(digits)-2:]
		b.WriteString(head)
		for i := 0; i < len(mid); i += 2 {
			b.WriteString(" *")
			if i+1 < len(mid) {
				b.WriteString("*")
			}
		}
		b.WriteString(" " + tail)
		return b.String()
	},
	// date keeps the year: 1984-**-**.
	"date": func(v string) string {
		if len(v) != len("2006-01-02") {
			return "****"
		}
		return v[:4] + "-**-**"
	},
	// initials keeps the first letter of each word: A. D.
	"initials": func(v string) string {
		var parts []string
		for _, w := range strings.Fields(v) {
			r, _ := utf8.DecodeRuneInString(w)
			parts = append(parts, string(r)+".")
		}
		if len(parts) == 0 {
			return "****"
		}
		return strings.Join(parts, " ")
	},
	// last3 keeps the last three characters: ******789.
	"last3": func(v string) string {
		r := []rune(v)
		if len(r) <= 4 {
			return "****"
		}
		return strings.Repeat("*", len(r)-3) + string(r[len(r)-3:])
	},
}
