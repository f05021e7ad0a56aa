package tokenizer

import (
	"bytes"
	"fmt"
	"strings"
)

// Token format, version 1:
//
//	tok_<class>_<tenant>_<body><check>
//
// body is base58(version byte 0x01 || 16 payload bytes). For a random token
// the payload comes from crypto/rand; for a deterministic one it is a MAC
// under a tenant key that never leaves the service. The class and tenant are
// named in clear so that routing and authorisation need no storage access.
//
// check is a Luhn mod 58 character over everything before it. It catches
// every single-character substitution and most adjacent transpositions, so a
// mistyped or forged token is rejected before it reaches storage.
const (
	tokenPrefix     = "tok_"
	tokenVersion1   = 0x01
	tokenPayloadLen = 16
	// MaxNameLen bounds class and tenant names.
	MaxNameLen = 32
	// MaxTokenLen bounds the length of any well-formed token.
	MaxTokenLen = len(tokenPrefix) + 2*MaxNameLen + 2 + 25 + 1
)

// Token is a parsed token.
type Token struct {
	Class   string
	Tenant  string
	Version byte
	Payload [tokenPayloadLen]byte
	// Shaped is the canonical text of a format-preserving token (see
	// Shape), whose tenant and class come from its record, not its text;
	// empty for an opaque token, whose text String computes.
	Shaped string
}

// String returns the token's text form, check character included.
func (t Token) String() string {
	if t.Shaped != "" {
		return t.Shaped
	}
	b := make([]byte, 0, 64)
	b = append(b, tokenPrefix...)
	b = append(b, t.Class...)
	b = append(b, '_')
	b = append(b, t.Tenant...)
	b = append(b, '_')
	var raw [1 + tokenPayloadLen]byte
	raw[0] = t.Version
	copy(raw[1:], t.Payload[:])
	b = appendBase58(b, raw[:])
	b = append(b, base58Alphabet[luhn58(b)])
	return string(b)
}

// ParseToken parses s and checks its shape and check character. It touches
// no storage, so garbage costs nothing to reject. The error is
// ErrInvalidToken and never quotes s.
func ParseToken(s string) (Token, error) {
	var t Token
	if len(s) > MaxTokenLen || len(s) < len(tokenPrefix)+6 || !strings.HasPrefix(s, tokenPrefix) {
		return t, ErrInvalidToken
	}
	rest := s[len(tokenPrefix):]
	class, rest, ok := strings.Cut(rest, "_")
	if !ok || !ValidName(class) {
		return t, ErrInvalidToken
	}
	tenant, body, ok := strings.Cut(rest, "_")
	if !ok || !ValidName(tenant) || len(body) < 2 {
		return t, ErrInvalidToken
	}
	check := base58Index[body[len(body)-1]]
	if check < 0 || int(check) != luhn58([]byte(s[:len(s)-1])) {
		return t, ErrInvalidToken
	}
	var raw [1 + tokenPayloadLen]byte
	if !decodeBase58(body[:len(body)-1], raw[:]) || raw[0] != tokenVersion1 {
		return t, ErrInvalidToken
	}
	t.Class, t.Tenant, t.Version = class, tenant, raw[0]
	copy(t.Payload[:], raw[1:])
	return t, nil
}

// ValidName reports whether s can name a class or a tenant: 1 to 32
// characters from a-z, 0-9 and '-', starting with a letter.
func ValidName(s string) bool {
	if len(s) == 0 || len(s) > MaxNameLen || s[0] < 'a' || s[0] > 'z' {
		return false
	}
	for i := 0; i < len(s); i++ {
		c := s[i]
		if !(c >= 'a' && c <= 'z' || c >= '0' && c <= '9' || c == '-') {
			return false
		}
	}
	return true
}

func validateName(kind, s string) error {
	if !ValidName(s) {
		return fmt.Errorf("tokenizer: %s name %q must be 1-%d characters of a-z, 0-9 and '-', starting with a letter", kind, s, MaxNameLen)
	}
	return nil
}

// prefixAlphabet numbers the characters allowed before the body. It has
// fewer than 58 entries, so each maps to a distinct Luhn code point.
const prefixAlphabet = "abcdefghijklmnopqrstuvwxyz0123456789-_"

var prefixIndex = func() (idx [256]int8) {
	for i := range idx {
		idx[i] = -1
	}
	for i := 0; i < len(prefixAlphabet); i++ {
		idx[prefixAlphabet[i]] = int8(i)
	}
	return idx
}()

// luhn58 computes the Luhn mod 58 check value of s. Characters up to and
// including the last '_' use prefixAlphabet, the rest base58. Mod 58 is
// even, so the doubling step is a permutation and any single substitution
// changes the result. Characters outside both alphabets count as 0; the
// parser rejects them anyway.
func luhn58(s []byte) int {
	const n = 58
	split := bytes.LastIndexByte(s, '_') + 1
	factor, sum := 2, 0
	for i := len(s) - 1; i >= 0; i-- {
		var cp int
		if i < split {
			cp = int(prefixIndex[s[i]])
		} else {
			cp = int(base58Index[s[i]])
		}
		if cp < 0 {
			cp = 0
		}
		// factor*cp < 2n, so its digits in base n sum to it, less n-1
		// when it has two.
		addend := factor * cp
		if addend >= n {
			addend -= n - 1
		}
		sum += addend
		factor = 3 - factor
	}
	return (n - sum%n) % n
}
