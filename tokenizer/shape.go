package tokenizer

import (
	"errors"
	"fmt"
	"io"
	"strings"
	"time"
)

// Token shapes. A class's shape decides what its tokens look like:
//
//	opaque  tok_<class>_<tenant>_<body><check>         (the default; token.go)
//	email   <27 base32 characters>@tok.jeton.invalid   (shape_email.go)
//	digits  as many digits as the value                (shape_digits.go)
//	date    a date in the class's layout               (shape_date.go)
//
// The format-preserving shapes exist for sponsor schemas that validate
// formats. Each is told apart from a real value of its class by a cheap,
// documented check that every token passes and that Tokenize refuses a
// value passing (the reserved e-mail domain; the reserved leading digits, or
// the Luhn residue of a class whose values carry a Luhn check digit; the
// reserved date range). Each carries a check, so a mistyped token is
// refused without a store lookup: every single mistyped character, except
// in a date-only token, whose check (a parity) catches 5 of the 9 wrong
// digits in each place (shape_date.go says why no stronger one fits).
//
// A shaped token does not name its tenant or class: there is no room. Its
// record name is keyed per tenant (recordName), so a reveal looks the token
// up under each of the caller's tenants, and the record's header names its
// class, which opening the record authenticates (RevealShaped). A random
// shaped token comes from a small domain where the format is short, so two
// mints can collide: the record name is the claim, stored with PutNew, and
// a token whose name is taken is minted again (claimShaped). No record is
// ever overwritten by another value's.

// ShapeKind names a token shape.
type ShapeKind string

const (
	// ShapeOpaque is the default: tok_<class>_<tenant>_<body><check>.
	ShapeOpaque ShapeKind = "opaque"
	// ShapeEmail is an address under a reserved domain.
	ShapeEmail ShapeKind = "email"
	// ShapeDigits is a digit string as long as the value.
	ShapeDigits ShapeKind = "digits"
	// ShapeDate is a date or time in the class's layout, in a reserved
	// range.
	ShapeDate ShapeKind = "date"
)

// MinShapedDomain is the fewest tokens a shape may mint for a value: NIST
// SP 800-38G's floor for format-preserving domains (radix^minlen of at least
// one million). A value whose token domain would be smaller is refused.
const MinShapedDomain = 1_000_000

// deterministicMinBits is the smallest token domain, in bits, a
// deterministic class may have: two values sharing a deterministic token
// cannot be told apart, and, unlike a random one, a deterministic token
// cannot be minted again on a collision.
const deterministicMinBits = 96

// Shape is a class's token shape and its parameters. The zero Shape is
// opaque.
type Shape struct {
	Kind ShapeKind
	// Domain is the email shape's reserved domain, under a name that RFC
	// 2606 or RFC 6761 reserves (.invalid, .test, .example, .localhost,
	// example.com, example.net, example.org); DefaultEmailDomain if empty.
	Domain string
	// KeepSuffix is how many trailing digits of a value the digits shape
	// keeps in its token, e.g. 2 for the last two digits of a phone number.
	KeepSuffix int
	// Prefix is the digits shape's reserved leading digits: every token
	// starts with them and no value of the class may.
	Prefix string
	// LuhnValues says that every value of a digits class carries a Luhn
	// check digit (card numbers, IMEIs, many national id numbers). Tokens
	// then fail the Luhn check, by a fixed residue, and values that fail
	// it are refused.
	LuhnValues bool
	// Layout is the date shape's layout, in Go's reference-time notation
	// (e.g. "2006-01-02 15:04"); every value must parse in it.
	Layout string
	// From and To bound the date shape's reserved range: whole days (UTC
	// midnight), both included. No value of the class may fall in it. Zero
	// means DefaultDateFrom and DefaultDateTo.
	From, To time.Time
}

// shaper mints and recognises the tokens of one configured shape.
type shaper interface {
	kind() ShapeKind
	// accept checks a value as sent: it fits the shape, is not itself a
	// token of it, and its token domain is not under MinShapedDomain. The
	// error is a UserError wrapping ErrInvalidValue and never quotes v.
	accept(class, v string) error
	// mint returns a random token for an accepted value, reading r.
	mint(r io.Reader, v string) (string, error)
	// parse reports whether s is a well-formed token of the shape, check
	// character included, and returns its canonical text. It touches no
	// storage.
	parse(s string) (string, bool)
	// domainBits is a lower bound, in bits, of the token domain of every
	// value the shape accepts.
	domainBits() float64
}

// payloadShaper is a shaper whose domain holds a whole token payload, so
// that it can carry a deterministic token.
type payloadShaper interface {
	shaper
	fromPayload(p [tokenPayloadLen]byte) string
}

// Shaped reports whether s is a format-preserving shape.
func (s Shape) Shaped() bool { return s.Kind != "" && s.Kind != ShapeOpaque }

// compile checks the shape's parameters and returns its shaper; nil for
// opaque. Errors name the bad parameter.
func (s Shape) compile() (shaper, error) {
	switch s.Kind {
	case "", ShapeOpaque:
		if s != (Shape{Kind: s.Kind}) {
			return nil, errors.New("the opaque shape takes no parameters")
		}
		return nil, nil
	case ShapeEmail:
		return newEmailShape(s)
	case ShapeDigits:
		return newDigitsShape(s)
	case ShapeDate:
		return newDateShape(s)
	}
	return nil, fmt.Errorf("shape %q must be %s, %s, %s or %s", s.Kind, ShapeOpaque, ShapeEmail, ShapeDigits, ShapeDate)
}

// validateShape checks c's shape against its kind: a deterministic class
// needs a shape that holds a whole payload.
func (c Class) validateShape() (shaper, error) {
	sh, err := c.Shape.compile()
	if err != nil {
		return nil, fmt.Errorf("tokenizer: class %s: shape: %w", c.Name, err)
	}
	if sh == nil || c.Kind != KindDeterministic {
		return sh, nil
	}
	if _, ok := sh.(payloadShaper); !ok || sh.domainBits() < deterministicMinBits {
		return nil, fmt.Errorf("tokenizer: class %s: a deterministic class cannot use the %s shape: its tokens have fewer than 2^%d values, so distinct values would share tokens, and a deterministic token cannot be minted again; use the opaque or email shape", c.Name, sh.kind(), deterministicMinBits)
	}
	return sh, nil
}

// shapeOf returns c's compiled shaper, nil for opaque. Classes the
// Tokenizer holds carry it; others compile it on use.
func (c *Class) shapeOf() shaper {
	if c.shaper != nil || !c.Shape.Shaped() {
		return c.shaper
	}
	sh, err := c.Shape.compile()
	if err != nil {
		return nil
	}
	return sh
}

// shapeRefusal is the reason a value does not fit its class's shape.
func shapeRefusal(class, why string) error {
	return &UserError{fmt.Errorf("%w: %s value %s", ErrInvalidValue, class, why)}
}

// readUniform returns a uniform random integer in [0, n), n > 0, from r,
// by rejection: a draw in the incomplete top range is drawn again.
func readUniform(r io.Reader, n uint64) (uint64, error) {
	limit := ^uint64(0) - ^uint64(0)%n // a multiple of n
	var b [8]byte
	for {
		if _, err := io.ReadFull(r, b[:]); err != nil {
			return 0, fmt.Errorf("tokenizer: reading randomness: %w", err)
		}
		x := uint64(b[0])<<56 | uint64(b[1])<<48 | uint64(b[2])<<40 | uint64(b[3])<<32 |
			uint64(b[4])<<24 | uint64(b[5])<<16 | uint64(b[6])<<8 | uint64(b[7])
		if x < limit {
			return x % n, nil
		}
	}
}

// tokenLuhnSum is the Luhn sum of the digits of every digits- and
// date-shaped token. One value for all such classes means a mistyped digit,
// which always changes the sum, never turns one class's token into
// another's. It is not 0, the sum of values that carry a Luhn check digit.
const tokenLuhnSum = 1

// luhnSum is the Luhn sum, mod 10, of the ASCII digits of s, other
// characters skipped: the rightmost digit counts once, the one before it
// doubled (its digits summed), and so on. A string passes the Luhn check
// when its sum is 0. Any single changed digit changes the sum.
func luhnSum(s string) int {
	sum, double := 0, false
	for i := len(s) - 1; i >= 0; i-- {
		c := s[i]
		if c < '0' || c > '9' {
			continue
		}
		d := int(c - '0')
		if double {
			d *= 2
			if d > 9 {
				d -= 9
			}
		}
		sum += d
		double = !double
	}
	return sum % 10
}

// ValidateShapes checks that no one mistyped character can turn a token of
// one shaped class into a well-formed token of another of classes: then
// every such token is refused without a store lookup, as one of a single
// class is. Digits and date tokens share their Luhn sum (date-only tokens
// its parity), and a changed digit keeps a token's skeleton, so it cannot
// make another class's token; what is left to refuse is separators and
// domains one character apart:
//   - two email domains of one length that differ in one character;
//   - two date layouts of one width whose separators differ in one place;
//   - a date layout with no separator or a single one beside a digits
//     class (the token, or that separator mistyped as a digit, would be a
//     digit string).
//
// Classes sharing one domain or one layout share one token space: a token
// then names its class through its record.
func ValidateShapes(classes []Class) error {
	type seen struct{ class, text string }
	var domains, skeletons []seen
	digits := ""
	for i := range classes {
		c := &classes[i]
		switch sh := c.shapeOf().(type) {
		case *emailShape:
			domains = append(domains, seen{c.Name, sh.domain})
		case *dateShape:
			skeletons = append(skeletons, seen{c.Name, sh.skeleton})
		case *digitsShape:
			digits = c.Name
		}
	}
	for _, group := range []struct {
		what string
		s    []seen
	}{{"email domains", domains}, {"date layouts", skeletons}} {
		for i, a := range group.s {
			for _, b := range group.s[i+1:] {
				if oneApart(a.text, b.text) {
					return fmt.Errorf("tokenizer: classes %s and %s: their %s differ in one character, so a mistyped token of one could pass as the other's; make them differ more, or share one", a.class, b.class, group.what)
				}
			}
		}
	}
	if digits != "" {
		for _, s := range skeletons {
			if strings.Count(s.text, "0") >= len(s.text)-1 {
				return fmt.Errorf("tokenizer: classes %s and %s: a date layout with fewer than two separators beside a digits class lets a token, or one with a mistyped separator, pass as a digits token; give the layout two separators", s.class, digits)
			}
		}
	}
	return nil
}

// oneApart reports whether a and b have one length and differ in exactly
// one byte.
func oneApart(a, b string) bool {
	if len(a) != len(b) {
		return false
	}
	diff := 0
	for i := 0; i < len(a); i++ {
		if a[i] != b[i] {
			diff++
		}
	}
	return diff == 1
}
