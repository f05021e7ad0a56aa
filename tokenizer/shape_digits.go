package tokenizer

import (
	"fmt"
	"io"
	"math"
)

// Digit-shaped tokens have as many digits as the value:
//
//	<prefix><random digits><check digit><kept suffix>
//
// prefix is the class's reserved leading digits (none if it sets none);
// the random digits are uniform, as many as the length leaves; the check
// digit makes the token's Luhn sum tokenLuhnSum (1); the kept suffix is the
// value's last KeepSuffix digits, when the class keeps them.
//
// A token is told from a real value in one of two ways, at least one of
// which the class must set:
//   - prefix: no value of the class starts with it (Tokenize refuses one
//     that does), and every token does.
//   - luhn_values: every value of the class carries a Luhn check digit, a
//     Luhn sum of 0 (Tokenize refuses one that fails it), and no token
//     does.
//
// A single mistyped digit changes the Luhn sum, so the token fails its
// check, and that of every other digits or date class, whose tokens share
// the sum; it is refused without a store lookup.
//
// The domain of a value's token is 10^(random digits). Below MinShapedDomain
// (six random digits) the value is refused: the class's fixed parts and the
// check digit leave too few for the length. It carries as many random bits
// as the length allows, log2(10) per random digit: 96 bits from 29 random
// digits on, fewer (never under 19.9) for shorter values.
type digitsShape struct {
	prefix     string
	keep       int
	luhnValues bool
}

// minRandomDigits is the fewest random digits a digits token may have:
// 10^6 = MinShapedDomain.
const minRandomDigits = 6

// maxDigitsLen bounds the length of a digits value.
const maxDigitsLen = 64

func newDigitsShape(s Shape) (shaper, error) {
	if s.Domain != "" || s.Layout != "" || !s.From.IsZero() || !s.To.IsZero() {
		return nil, fmt.Errorf("the digits shape takes only keep_suffix, prefix and luhn_values")
	}
	if s.KeepSuffix < 0 || s.KeepSuffix > maxDigitsLen {
		return nil, fmt.Errorf("keep_suffix %d must be 0 to %d", s.KeepSuffix, maxDigitsLen)
	}
	for i := 0; i < len(s.Prefix); i++ {
		if s.Prefix[i] < '0' || s.Prefix[i] > '9' {
			return nil, fmt.Errorf("prefix must be digits only")
		}
	}
	if len(s.Prefix) > 16 {
		return nil, fmt.Errorf("prefix must be at most 16 digits")
	}
	if s.Prefix == "" && !s.LuhnValues {
		return nil, fmt.Errorf("the digits shape needs a prefix (leading digits no value of the class has) or luhn_values (every value of the class carries a Luhn check digit), so a token can be told from a real value")
	}
	return &digitsShape{prefix: s.Prefix, keep: s.KeepSuffix, luhnValues: s.LuhnValues}, nil
}

func (d *digitsShape) kind() ShapeKind { return ShapeDigits }

// fixed is the number of digits of a token that are not random.
func (d *digitsShape) fixed() int { return len(d.prefix) + 1 + d.keep }

// minLen is the shortest value the shape accepts.
func (d *digitsShape) minLen() int { return d.fixed() + minRandomDigits }

func (d *digitsShape) domainBits() float64 { return minRandomDigits * math.Log2(10) }

func (d *digitsShape) accept(class, v string) error {
	if len(v) > maxDigitsLen || !allDigits(v) {
		return shapeRefusal(class, fmt.Sprintf("must be 1 to %d digits (0-9) for its digits-shaped tokens", maxDigitsLen))
	}
	if len(v) < d.minLen() {
		return shapeRefusal(class, fmt.Sprintf("is too short for its digits-shaped tokens: at least %d digits give the floor of 10^%d tokens", d.minLen(), minRandomDigits))
	}
	if d.prefix != "" && v[:len(d.prefix)] == d.prefix {
		return shapeRefusal(class, "starts with the reserved prefix of its tokens")
	}
	if d.luhnValues && luhnSum(v) != 0 {
		return shapeRefusal(class, "fails the Luhn check every value of its class carries")
	}
	return nil
}

func (d *digitsShape) mint(r io.Reader, v string) (string, error) {
	n := len(v) - d.fixed()
	b := make([]byte, 0, len(v))
	b = append(b, d.prefix...)
	digits, err := randomDigits(r, n)
	if err != nil {
		return "", err
	}
	b = append(b, digits...)
	at := len(b)
	b = append(b, '0')
	b = append(b, v[len(v)-d.keep:]...)
	// The check digit sits at a fixed place, so the Luhn sum moves through
	// every residue as it goes from 0 to 9: exactly one digit fits.
	for c := byte('0'); c <= '9'; c++ {
		b[at] = c
		if luhnSum(string(b)) == tokenLuhnSum {
			return string(b), nil
		}
	}
	return "", fmt.Errorf("tokenizer: no Luhn check digit fits") // unreachable
}

func (d *digitsShape) parse(s string) (string, bool) {
	if len(s) < d.minLen() || len(s) > maxDigitsLen || !allDigits(s) {
		return "", false
	}
	if s[:len(d.prefix)] != d.prefix || luhnSum(s) != tokenLuhnSum {
		return "", false
	}
	return s, true
}

func allDigits(s string) bool {
	if s == "" {
		return false
	}
	for i := 0; i < len(s); i++ {
		if s[i] < '0' || s[i] > '9' {
			return false
		}
	}
	return true
}

// randomDigits returns n uniform decimal digits read from r: each byte
// under 250 gives one digit; the others are drawn again.
func randomDigits(r io.Reader, n int) ([]byte, error) {
	out := make([]byte, 0, n)
	buf := make([]byte, n+n/16+2)
	for len(out) < n {
		want := n - len(out)
		chunk := buf[:want+want/16+2]
		if _, err := io.ReadFull(r, chunk); err != nil {
			return nil, fmt.Errorf("tokenizer: reading randomness: %w", err)
		}
		for _, c := range chunk {
			if c < 250 && len(out) < n {
				out = append(out, '0'+c%10)
			}
		}
	}
	return out, nil
}

// canaryValue is a plausible fake value for a canary: random digits, as
// many as the shape's shortest value or 10, outside the reserved prefix
// and, for a luhn_values class, passing the Luhn check.
func (d *digitsShape) canaryValue(r io.Reader) (string, error) {
	b, err := randomDigits(r, max(10, d.minLen()))
	if err != nil {
		return "", err
	}
	if d.prefix != "" && string(b[:len(d.prefix)]) == d.prefix {
		b[0] = '0' + (b[0]-'0'+1)%10
	}
	if d.luhnValues {
		for c := byte('0'); c <= '9'; c++ {
			if b[len(b)-1] = c; luhnSum(string(b)) == 0 {
				break
			}
		}
	}
	return string(b), nil
}
