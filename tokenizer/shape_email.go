package tokenizer

import (
	"fmt"
	"io"
	"strings"
)

// Email-shaped tokens, version 1:
//
//	<body><check>@<domain>
//
// body is 26 characters of RFC 4648 base32 in lower case (a-z, 2-7) of 130
// bits: a 2-bit version (00 for version 1, so the first character is one of
// a-h) then the 128-bit payload, random or, for a deterministic class, the
// keyed MAC of the value. check is a Luhn mod 32 character over body, so any
// single changed character of the local part is caught; domain is the
// class's reserved domain, which no deliverable address has, so a token is
// told from a real address by its domain alone. Tokens are read without
// regard to case, as mail systems often fold addresses to lower case.
const (
	// DefaultEmailDomain is the email shape's domain when a class names
	// none: under .invalid, which RFC 6761 reserves and no resolver serves.
	DefaultEmailDomain = "tok.jeton.invalid"
	emailAlphabet      = "abcdefghijklmnopqrstuvwxyz234567"
	emailBodyLen       = 26 // 130 bits
	emailLocalLen      = emailBodyLen + 1
)

var emailIndex = func() (idx [256]int8) {
	for i := range idx {
		idx[i] = -1
	}
	for i := 0; i < len(emailAlphabet); i++ {
		idx[emailAlphabet[i]] = int8(i)
	}
	return idx
}()

// reservedDomains are the names RFC 2606 and RFC 6761 set aside: no real
// mailbox lives under them.
var reservedDomains = []string{"invalid", "test", "example", "localhost", "example.com", "example.net", "example.org"}

type emailShape struct {
	domain string
}

func newEmailShape(s Shape) (shaper, error) {
	if s.KeepSuffix != 0 || s.Prefix != "" || s.LuhnValues || s.Layout != "" || !s.From.IsZero() || !s.To.IsZero() {
		return nil, fmt.Errorf("the email shape takes only a domain")
	}
	d := s.Domain
	if d == "" {
		d = DefaultEmailDomain
	}
	if !validDomain(d) {
		return nil, fmt.Errorf("email domain %q must be a lower-case domain name (letters, digits, '-' and dots)", d)
	}
	reserved := false
	for _, r := range reservedDomains {
		if d == r || strings.HasSuffix(d, "."+r) {
			reserved = true
		}
	}
	if !reserved {
		return nil, fmt.Errorf("email domain %q must be under a name reserved by RFC 2606 or RFC 6761 (.invalid, .test, .example, .localhost, example.com, example.net, example.org), so no real address can be under it", d)
	}
	return &emailShape{domain: d}, nil
}

// validDomain reports whether d is a lower-case DNS name: dot-separated
// labels of 1-63 letters, digits and '-', neither starting nor ending with
// '-', 253 characters at most.
func validDomain(d string) bool {
	if d == "" || len(d) > 253 {
		return false
	}
	for label := range strings.SplitSeq(d, ".") {
		if label == "" || len(label) > 63 || label[0] == '-' || label[len(label)-1] == '-' {
			return false
		}
		for i := 0; i < len(label); i++ {
			c := label[i]
			if !(c >= 'a' && c <= 'z' || c >= '0' && c <= '9' || c == '-') {
				return false
			}
		}
	}
	return true
}

func (e *emailShape) kind() ShapeKind     { return ShapeEmail }
func (e *emailShape) domainBits() float64 { return 8 * tokenPayloadLen }

// accept refuses an address under the token domain: it would read as a
// token.
func (e *emailShape) accept(class, v string) error {
	if at := strings.LastIndexByte(v, '@'); at >= 0 {
		d := strings.ToLower(strings.TrimRight(v[at+1:], ". \t"))
		if d == e.domain || strings.HasSuffix(d, "."+e.domain) {
			return shapeRefusal(class, "is under the reserved domain of its tokens")
		}
	}
	return nil
}

func (e *emailShape) mint(r io.Reader, _ string) (string, error) {
	var p [tokenPayloadLen]byte
	if _, err := io.ReadFull(r, p[:]); err != nil {
		return "", fmt.Errorf("tokenizer: reading randomness: %w", err)
	}
	return e.fromPayload(p), nil
}

func (e *emailShape) fromPayload(p [tokenPayloadLen]byte) string {
	b := make([]byte, 0, emailLocalLen+1+len(e.domain))
	// 2 version bits (0) then the 128 payload bits, 5 bits a character,
	// most significant first.
	var acc uint32
	bits := 2
	for _, c := range p {
		acc = acc<<8 | uint32(c)
		bits += 8
		for bits >= 5 {
			bits -= 5
			b = append(b, emailAlphabet[acc>>bits&31])
		}
	}
	b = append(b, emailAlphabet[luhn32(b)])
	b = append(b, '@')
	b = append(b, e.domain...)
	return string(b)
}

func (e *emailShape) parse(s string) (string, bool) {
	if len(s) != emailLocalLen+1+len(e.domain) || s[emailLocalLen] != '@' {
		return "", false
	}
	s = strings.ToLower(s)
	if s[emailLocalLen+1:] != e.domain {
		return "", false
	}
	local := s[:emailLocalLen]
	for i := 0; i < len(local); i++ {
		if emailIndex[local[i]] < 0 {
			return "", false
		}
	}
	if emailIndex[local[0]] >= 8 { // version bits other than 00
		return "", false
	}
	if int(emailIndex[local[emailBodyLen]]) != luhn32([]byte(local[:emailBodyLen])) {
		return "", false
	}
	return s, true
}

// luhn32 is the Luhn mod 32 check value of base32 characters: appended to
// them, it makes their Luhn sum zero. 32 is even, so doubling is a
// permutation of the code points and every single substitution changes it.
func luhn32(s []byte) int {
	const n = 32
	factor, sum := 2, 0
	for i := len(s) - 1; i >= 0; i-- {
		addend := factor * int(emailIndex[s[i]])
		sum += addend/n + addend%n
		factor = 3 - factor
	}
	return (n - sum%n) % n
}
