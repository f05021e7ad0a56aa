package tokenizer

import (
	"errors"
	"fmt"
	"slices"
	"strconv"
	"strings"
	"time"
	"unicode"
	"unicode/utf8"

	"github.com/nyaruka/phonenumbers"
	"golang.org/x/text/cases"
	"golang.org/x/text/unicode/norm"
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
	// Normalize names the steps that give a value's normalised form, in
	// order. The normalised form is what a deterministic token is computed
	// from, so the steps decide which values share one, and what masks
	// are applied to. It is never stored: a record keeps the value exactly
	// as sent. See the steps below DefaultClasses.
	Normalize []string
	// Region is the default region of the "phone" step, an ISO 3166-1
	// alpha-2 code such as "FR": a number written without its country code
	// is read as a number of that region. Empty accepts only numbers in
	// international form (+33 ..., or tel:+33-...).
	Region string
	// Mask names the masking rule. See Maskers.
	Mask string
	// Retention is how long a record lives; zero keeps it until erased.
	Retention time.Duration
	// RetainUntil is an absolute end of retention, such as the end of the
	// event plus six months; zero means none. A record never outlives it,
	// whatever Retention says, and once it has passed the class tokenizes
	// nothing more. See RecordTTL.
	RetainUntil time.Time
	// MaxLen bounds a value's length in bytes, as sent; zero means
	// DefaultMaxValueLen.
	MaxLen int
	// Shape is what the class's tokens look like: opaque (the zero Shape)
	// or format-preserving. See shape.go.
	Shape Shape

	// shaper is Shape compiled, set by New.
	shaper shaper
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
	if c.Region != "" {
		if !slices.Contains(c.Normalize, "phone") {
			return fmt.Errorf("tokenizer: class %s: region %q is only used by the phone normalize step, which the class lacks", c.Name, c.Region)
		}
		if !phonenumbers.GetSupportedRegions()[c.Region] {
			return fmt.Errorf("tokenizer: class %s: region %q is not a supported ISO 3166-1 alpha-2 region code (upper case, e.g. FR)", c.Name, c.Region)
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
	if _, err := c.validateShape(); err != nil {
		return err
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

// NormalizeValue checks a value as sent (length, UTF-8, that it fits the
// class's token shape and is not itself one of its tokens, the class's
// normalisation) and returns its normalised form: the input of the class's
// deterministic token and of its mask. The value itself, not this form, is what a record
// stores and a reveal returns. The error is a UserError wrapping
// ErrInvalidValue and never quotes v.
func (c Class) NormalizeValue(v string) (string, error) {
	max := c.MaxLen
	if max == 0 {
		max = DefaultMaxValueLen
	}
	if len(v) > max || !utf8.ValidString(v) {
		return "", &UserError{fmt.Errorf("%w: %s value is too long or not UTF-8", ErrInvalidValue, c.Name)}
	}
	if sh := c.shapeOf(); sh != nil {
		if err := sh.accept(c.Name, v); err != nil {
			return "", err
		}
	}
	for _, n := range c.Normalize {
		var ok bool
		if v, ok = normalizers[n](c.Region, v); !ok {
			return "", &UserError{fmt.Errorf("%w: %s value fails %s", ErrInvalidValue, c.Name, n)}
		}
	}
	if v == "" {
		return "", &UserError{fmt.Errorf("%w: %s value is empty", ErrInvalidValue, c.Name)}
	}
	return v, nil
}

// MaskValue returns the masked form of a stored value: the class's mask
// rule applied to the value's normalised form, so that every way of
// writing one value masks alike ("06 12 34 56 78" and "+33612345678" both
// give "+33 6 ** ** ** 78") and no formatting detail of the original shows
// through. A stored value that no longer normalises (the class's steps
// changed since it was sealed) masks to "****".
func (c Class) MaskValue(v string) string {
	n, err := c.NormalizeValue(v)
	if err != nil {
		return "****"
	}
	return maskers[c.Mask](n)
}

// DefaultClasses returns the classes used when none are configured. Every
// one is random: a deterministic token answers "was this value
// tokenized?" to whoever may tokenize, so a class becomes deterministic
// only by configuration (and the policy must then budget it).
func DefaultClasses() []Class {
	return []Class{
		{Name: "email", Kind: KindRandom, Normalize: []string{"trim", "fold", "email"}, Mask: "email", MaxLen: 320},
		{Name: "phone", Kind: KindRandom, Normalize: []string{"phone"}, Mask: "phone", MaxLen: 64},
		{Name: "name", Kind: KindRandom, Normalize: []string{"nfc", "trim", "collapse-space"}, Mask: "initials", MaxLen: 256},
		{Name: "passport", Kind: KindRandom, Normalize: []string{"passport"}, Mask: "last3", MaxLen: 32},
		{Name: "birthdate", Kind: KindRandom, Normalize: []string{"trim", "date"}, Mask: "date", MaxLen: 32},
		{Name: "address", Kind: KindRandom, Normalize: []string{"nfc", "trim", "collapse-space"}, Mask: "all", MaxLen: 1024},
		{Name: "text", Kind: KindRandom, Normalize: []string{"nfc"}, Mask: "all"},
	}
}

// normalizers are the normalisation steps a class may name. Each returns
// false when the value cannot be of the class's shape; region is the
// class's Region (only the phone step reads it, and passing it rather than
// the class keeps the class off the heap on the per-item path). Unicode
// and phone numbers are the libraries' work (golang.org/x/text, and
// github.com/nyaruka/phonenumbers, a port of Google's libphonenumber);
// what is written here only trims, checks shapes or keeps ASCII
// characters, and skips a library pass where ASCII input makes it the
// identity (see nfc, fold, collapseSpace).
var normalizers = map[string]func(region, v string) (string, bool){
	// nfc is Unicode Normalization Form C: "e" followed by a combining
	// acute accent (NFD) becomes one "é".
	"nfc": func(_, v string) (string, bool) { return nfc(v), true },
	// fold is Unicode default case folding for caseless matching
	// (NFD, fold, then NFC): "Élodie" and "élodie" match, and so do
	// "STRASSE", "Straße" and "strasse".
	"fold": func(_, v string) (string, bool) { return fold(v), true },
	"trim": func(_, v string) (string, bool) { return strings.TrimSpace(v), true },
	// lower and upper are Unicode simple case mappings; prefer fold for
	// matching.
	"lower": func(_, v string) (string, bool) { return strings.ToLower(v), true },
	"upper": func(_, v string) (string, bool) { return strings.ToUpper(v), true },
	// collapse-space turns every run of white space into one space.
	"collapse-space": func(_, v string) (string, bool) { return collapseSpace(v), true },
	// email requires one '@' with something on both sides and no space.
	"email": func(_, v string) (string, bool) {
		local, domain, ok := strings.Cut(v, "@")
		return v, ok && local != "" && domain != "" && !strings.ContainsAny(domain, "@") &&
			strings.IndexFunc(v, unicode.IsSpace) < 0
	},
	// phone parses a number as libphonenumber does, in the class's
	// region when it has no country code, requires it to be a valid
	// number of its country, and gives its E.164 form (+33612345678),
	// with ";ext=" and the extension when there is one. "06 12 34 56 78"
	// (region FR), "+33 6 12 34 56 78", "0033 6 12 34 56 78" and
	// "+33 (0)6 12 34 56 78" are all +33612345678.
	"phone": func(region, v string) (string, bool) {
		if region == "" {
			region = "ZZ" // libphonenumber's unknown region: international form only
		}
		n, err := phonenumbers.Parse(v, region)
		if err != nil || !phonenumbers.IsValidNumber(n) {
			return "", false
		}
		out := phonenumbers.Format(n, phonenumbers.E164)
		if ext := n.GetExtension(); ext != "" {
			out += ";ext=" + ext
		}
		return out, true
	},
	// passport keeps letters and digits, upper-cased, dropping spaces and
	// dashes; it accepts ASCII only (machine-readable zone characters).
	"passport": func(_, v string) (string, bool) {
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
	"date": func(_, v string) (string, bool) {
		_, err := time.Parse(time.DateOnly, v)
		return v, err == nil
	},
}

// The fast paths below are exact, not approximations: ASCII text is
// already in every Unicode normalisation form, and Unicode default case
// folding maps no ASCII character but A-Z, each to its lower case. A
// fuzz test (FuzzNormalizeFastPaths) holds each to its library form.

// nfc returns v in Normalization Form C; ASCII comes back as is.
func nfc(v string) string {
	if isASCII(v) {
		return v
	}
	return norm.NFC.String(v)
}

// fold returns v case-folded, in Normalization Form C. ASCII needs no
// decomposition or recomposition, and only A-Z fold: strings.ToLower does
// exactly that for ASCII, and returns v itself when it has no upper case.
func fold(v string) string {
	if isASCII(v) {
		return strings.ToLower(v)
	}
	return foldUnicode(v)
}

func foldUnicode(v string) string {
	return norm.NFC.String(cases.Fold().String(norm.NFD.String(v)))
}

// collapseSpace turns every run of white space into one space and drops it
// at both ends; ASCII that is already so comes back as is, with no
// allocation.
func collapseSpace(v string) string {
	if collapsedASCII(v) {
		return v
	}
	return strings.Join(strings.Fields(v), " ")
}

// collapsedASCII reports whether v is ASCII and its only white space
// (unicode.IsSpace, which in ASCII is \t \n \v \f \r and space) is single
// spaces between other characters.
func collapsedASCII(v string) bool {
	prevSpace := true // a space at the start is not collapsed
	for i := 0; i < len(v); i++ {
		switch b := v[i]; {
		case b >= utf8.RuneSelf, b == '\t', b == '\n', b == '\v', b == '\f', b == '\r':
			return false
		case b == ' ':
			if prevSpace {
				return false
			}
			prevSpace = true
		default:
			prevSpace = false
		}
	}
	return !prevSpace || v == ""
}

func isASCII(v string) bool {
	for i := 0; i < len(v); i++ {
		if v[i] >= utf8.RuneSelf {
			return false
		}
	}
	return true
}

// maskers are the masking rules a class may name. They work on normalised
// values (see MaskValue) and never reveal more than their comment says.
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
	// phone keeps the country code, the first digit of the national
	// number and its last two digits, and hides the rest in pairs:
	// +33 6 ** ** ** 78 for +33612345678. An extension is hidden.
	"phone": func(v string) string {
		v, _, _ = strings.Cut(v, ";")
		n, err := phonenumbers.Parse(v, "ZZ")
		if err != nil {
			return "****"
		}
		digits := phonenumbers.GetNationalSignificantNumber(n)
		if len(digits) < 4 {
			return "****"
		}
		var b strings.Builder
		b.WriteString("+" + strconv.Itoa(int(n.GetCountryCode())) + " ")
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
