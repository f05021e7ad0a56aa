package tokenizer_test

import (
	"encoding/hex"
	"encoding/json"
	"errors"
	"math/big"
	"os"
	"strings"
	"testing"

	"github.com/jeton-dev/jeton/tokenizer"
)

// The reference encoder below is written from the format description in
// token.go, independently of the package's code, so the known-answer vectors
// are not merely the code checking itself. testdata/tokens.json was also
// cross-checked once with a separate Python implementation.
const (
	refBase58 = "123456789ABCDEFGHJKLMNPQRSTUVWXYZabcdefghijkmnopqrstuvwxyz"
	refPrefix = "abcdefghijklmnopqrstuvwxyz0123456789-_"
)

// refBase58Encode is textbook base58 over math/big.
func refBase58Encode(b []byte) string {
	n := new(big.Int).SetBytes(b)
	var out []byte
	mod, base := new(big.Int), big.NewInt(58)
	for n.Sign() > 0 {
		n.DivMod(n, base, mod)
		out = append(out, refBase58[mod.Int64()])
	}
	for i := 0; i < len(b) && b[i] == 0; i++ {
		out = append(out, '1')
	}
	for i, j := 0, len(out)-1; i < j; i, j = i+1, j-1 {
		out[i], out[j] = out[j], out[i]
	}
	return string(out)
}

// refCheck is the Luhn mod 58 check character of s: characters up to the
// last '_' are numbered by refPrefix, the rest by refBase58. Characters in
// neither alphabet count as 0, as the documented algorithm says.
func refCheck(s string) byte {
	split := strings.LastIndexByte(s, '_') + 1
	factor, sum := 2, 0
	for i := len(s) - 1; i >= 0; i-- {
		alpha := refBase58
		if i < split {
			alpha = refPrefix
		}
		cp := max(strings.IndexByte(alpha, s[i]), 0)
		a := factor * cp
		sum += a/58 + a%58
		factor = 3 - factor
	}
	return refBase58[(58-sum%58)%58]
}

// withCheck appends the correct check character to s, so that malformed
// inputs get past the checksum and exercise the later checks.
func withCheck(s string) string { return s + string(refCheck(s)) }

func refToken(class, tenant string, version byte, payload []byte) string {
	raw := append([]byte{version}, payload...)
	return withCheck("tok_" + class + "_" + tenant + "_" + refBase58Encode(raw))
}

type tokenVector struct {
	Name    string `json:"name"`
	Class   string `json:"class"`
	Tenant  string `json:"tenant"`
	Payload string `json:"payload"`
	Token   string `json:"token"`
}

func loadTokenVectors(tb testing.TB) []tokenVector {
	tb.Helper()
	b, err := os.ReadFile("testdata/tokens.json")
	if err != nil {
		tb.Fatal(err)
	}
	var vs []tokenVector
	if err := json.Unmarshal(b, &vs); err != nil {
		tb.Fatal(err)
	}
	if len(vs) < 5 {
		tb.Fatalf("only %d token vectors", len(vs))
	}
	return vs
}

func vectorToken(tb testing.TB, v tokenVector) tokenizer.Token {
	tb.Helper()
	p, err := hex.DecodeString(v.Payload)
	if err != nil || len(p) != 16 {
		tb.Fatalf("%s: bad payload hex", v.Name)
	}
	tok := tokenizer.Token{Class: v.Class, Tenant: v.Tenant, Version: 1}
	copy(tok.Payload[:], p)
	return tok
}

func TestTokenKnownAnswers(t *testing.T) {
	for _, v := range loadTokenVectors(t) {
		t.Run(v.Name, func(t *testing.T) {
			tok := vectorToken(t, v)
			if got := tok.String(); got != v.Token {
				t.Errorf("String() = %q, want %q", got, v.Token)
			}
			if ref := refToken(v.Class, v.Tenant, 1, tok.Payload[:]); ref != v.Token {
				t.Errorf("reference encoder gives %q, vector says %q", ref, v.Token)
			}
			got, err := tokenizer.ParseToken(v.Token)
			if err != nil {
				t.Fatalf("ParseToken: %v", err)
			}
			if got != tok {
				t.Errorf("ParseToken = %+v, want %+v", got, tok)
			}
			if len(v.Token) > tokenizer.MaxTokenLen {
				t.Errorf("len %d exceeds MaxTokenLen %d", len(v.Token), tokenizer.MaxTokenLen)
			}
		})
	}
}

// sampleTokens returns valid tokens of varied shapes: short and long names,
// payloads with leading zeros and all ones.
func sampleTokens(tb testing.TB) []string {
	tb.Helper()
	var out []string
	for _, v := range loadTokenVectors(tb) {
		out = append(out, v.Token)
	}
	return out
}

// substitutes are the characters tried at every position: both alphabets,
// the separator, and look-alikes and bytes in neither.
func substitutes() []byte {
	set := map[byte]bool{}
	for _, s := range []string{refBase58, refPrefix, "_0OIl +/=.:\x00\x7f\xff\xc3"} {
		for i := 0; i < len(s); i++ {
			set[s[i]] = true
		}
	}
	out := make([]byte, 0, len(set))
	for c := range set {
		out = append(out, c)
	}
	return out
}

func TestParseTokenRejectsEverySubstitution(t *testing.T) {
	subs := substitutes()
	tried := 0
	for _, s := range sampleTokens(t) {
		for i := 0; i < len(s); i++ {
			for _, c := range subs {
				if c == s[i] {
					continue
				}
				b := []byte(s)
				b[i] = c
				tried++
				if _, err := tokenizer.ParseToken(string(b)); err == nil {
					t.Errorf("ParseToken accepted %q (position %d of %q changed to %q)", b, i, s, c)
				} else if !errors.Is(err, tokenizer.ErrInvalidToken) {
					t.Errorf("ParseToken error %v is not ErrInvalidToken", err)
				}
			}
		}
	}
	if tried < 10000 {
		t.Fatalf("only %d substitutions tried", tried)
	}
}

// Luhn mod 58 misses a transposition of adjacent code points 0 and 57 ('1'
// and 'z' in the body), as Luhn mod 10 misses 09/90; a transposition across
// the last '_' or with the check character changes which alphabet numbers a
// character and is caught only with probability 57/58. This test measures
// the miss rate over many random tokens and holds it under 1%.
func TestParseTokenTranspositions(t *testing.T) {
	var payload [16]byte
	state := uint64(0x9e3779b97f4a7c15)
	next := func() byte {
		state ^= state << 13
		state ^= state >> 7
		state ^= state << 17
		return byte(state)
	}
	tried, accepted := 0, 0
	tenants := []string{"acme", "t0", "demo-tenant", "x"}
	classes := []string{"email", "name", "a-1", "passport"}
	for n := 0; n < 2000; n++ {
		for i := range payload {
			payload[i] = next()
		}
		if n%10 == 0 {
			// Force the one pair Luhn mod 58 cannot see into some tokens.
			payload[15] = 0
		}
		tok := tokenizer.Token{Class: classes[n%len(classes)], Tenant: tenants[n%len(tenants)], Version: 1, Payload: payload}
		s := tok.String()
		for i := 0; i+1 < len(s); i++ {
			if s[i] == s[i+1] {
				continue
			}
			b := []byte(s)
			b[i], b[i+1] = b[i+1], b[i]
			tried++
			got, err := tokenizer.ParseToken(string(b))
			if err != nil {
				continue
			}
			accepted++
			if got == tok {
				t.Fatalf("transposed %q parsed to the original token", b)
			}
			if got.String() != string(b) {
				t.Fatalf("accepted transposition %q does not round-trip", b)
			}
			bodyStart := strings.LastIndexByte(s, '_') + 1
			inBody := i >= bodyStart && i+1 < len(s)-1
			pair := string(s[i : i+2])
			if inBody && pair != "1z" && pair != "z1" {
				t.Errorf("body transposition of %q at %d in %q accepted; Luhn mod 58 should catch it", pair, i, s)
			}
		}
	}
	rate := float64(accepted) / float64(tried)
	t.Logf("adjacent transpositions: %d of %d accepted (%.3f%%)", accepted, tried, 100*rate)
	if rate > 0.01 {
		t.Errorf("transposition miss rate %.3f%% exceeds 1%%", 100*rate)
	}
}

func TestParseTokenMalformed(t *testing.T) {
	good := loadTokenVectors(t)[0].Token // tok_email_acme_...
	body := good[len("tok_email_acme_") : len(good)-1]
	payload := make([]byte, 16)
	long := strings.Repeat("a", tokenizer.MaxNameLen+1)
	maxName := strings.Repeat("b", tokenizer.MaxNameLen)
	tests := []struct {
		name string
		in   string
	}{
		{"empty", ""},
		{"prefix only", "tok_"},
		{"prefix and class", "tok_email_"},
		{"prefix class tenant", "tok_email_acme_"},
		{"missing tenant", withCheck("tok_email_" + body)},
		{"missing class and tenant", withCheck("tok_" + body)},
		{"wrong prefix", withCheck("tek_email_acme_" + body)},
		{"upper-case prefix", withCheck("TOK_email_acme_" + body)},
		{"no prefix", withCheck("email_acme_" + body)},
		{"upper-case class", withCheck("tok_Email_acme_" + body)},
		{"upper-case tenant", withCheck("tok_email_ACME_" + body)},
		{"class starts with digit", withCheck("tok_1email_acme_" + body)},
		{"tenant starts with dash", withCheck("tok_email_-acme_" + body)},
		{"empty class", withCheck("tok__acme_" + body)},
		{"empty tenant", withCheck("tok_email__" + body)},
		{"class too long", refToken(long, "acme", 1, payload)},
		{"tenant too long", refToken("email", long, 1, payload)},
		{"both names too long", refToken(long, long, 1, payload)},
		{"names at max, body too long", withCheck("tok_" + maxName + "_" + maxName + "_" + body + "22")},
		{"extra underscore in tenant", refToken("email", "ac_me", 1, payload)},
		{"extra underscore before body", withCheck("tok_email_acme__" + body)},
		{"underscore in body", withCheck("tok_email_acme_" + body[:5] + "_" + body[5:])},
		{"trailing underscore", good + "_"},
		{"non-base58 0", withCheck("tok_email_acme_" + "0" + body[1:])},
		{"non-base58 O", withCheck("tok_email_acme_" + "O" + body[1:])},
		{"non-base58 I", withCheck("tok_email_acme_" + "I" + body[1:])},
		{"non-base58 l", withCheck("tok_email_acme_" + "l" + body[1:])},
		{"non-base58 check char", good[:len(good)-1] + "0"},
		{"body with plus", withCheck("tok_email_acme_" + body[:3] + "+" + body[4:])},
		{"wrong check char", good[:len(good)-1] + string(refBase58[(strings.IndexByte(refBase58, good[len(good)-1])+1)%58])},
		{"version 0", refToken("email", "acme", 0, payload)},
		{"version 2", refToken("email", "acme", 2, payload)},
		{"version 0xff", refToken("email", "acme", 0xff, payload)},
		{"payload one byte short", refToken("email", "acme", 1, payload[:15])},
		{"payload one byte long", refToken("email", "acme", 1, append(payload[:16:16], 0))},
		{"leading 1 in body", withCheck("tok_email_acme_1" + body)},
		{"body too long", withCheck("tok_email_acme_" + body + "z")},
		{"body too short", withCheck("tok_email_acme_" + body[:len(body)-1])},
		{"body one char", withCheck("tok_email_acme_2")},
		{"body empty", withCheck("tok_email_acme_")},
		{"over MaxTokenLen", withCheck("tok_email_acme_" + strings.Repeat("z", tokenizer.MaxTokenLen))},
		{"unicode in class", withCheck("tok_émail_acme_" + body)},
		{"unicode in body", withCheck("tok_email_acme_" + body[:4] + "é" + body[6:])},
		{"fullwidth digits", withCheck("tok_email_acme_" + "２" + body[3:])},
		{"NUL in tenant", withCheck("tok_email_ac\x00me_" + body)},
		{"NUL in body", withCheck("tok_email_acme_" + body[:4] + "\x00" + body[5:])},
		{"NUL at end", good + "\x00"},
		{"leading space", " " + good},
		{"trailing space", good + " "},
		{"trailing newline", good + "\n"},
		{"doubled", good + good},
		{"truncated", good[:len(good)-1]},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			got, err := tokenizer.ParseToken(tc.in)
			if err == nil {
				t.Fatalf("ParseToken(%q) = %+v, want error", tc.in, got)
			}
			if !errors.Is(err, tokenizer.ErrInvalidToken) {
				t.Errorf("error %v is not ErrInvalidToken", err)
			}
			if tc.in != "" && strings.Contains(err.Error(), tc.in) {
				t.Errorf("error quotes its input")
			}
			if got != (tokenizer.Token{}) {
				t.Errorf("failed parse returned non-zero token %+v", got)
			}
		})
	}
}

// TestParseTokenBoundaries pins the accepted edges: the longest names with
// the longest body still parse, and MaxTokenLen leaves room for them.
func TestParseTokenBoundaries(t *testing.T) {
	maxName := "z" + strings.Repeat("9", tokenizer.MaxNameLen-1)
	ff := [16]byte{}
	for i := range ff {
		ff[i] = 0xff
	}
	tok := tokenizer.Token{Class: maxName, Tenant: maxName, Version: 1, Payload: ff}
	s := tok.String()
	if len(s) > tokenizer.MaxTokenLen {
		t.Fatalf("longest token is %d bytes, MaxTokenLen is %d", len(s), tokenizer.MaxTokenLen)
	}
	got, err := tokenizer.ParseToken(s)
	if err != nil || got != tok {
		t.Fatalf("ParseToken(longest) = %+v, %v", got, err)
	}
	for _, name := range []string{"a", "a-", "a0", maxName} {
		if !tokenizer.ValidName(name) {
			t.Errorf("ValidName(%q) = false", name)
		}
	}
	for _, name := range []string{"", "0a", "-a", "A", "a_b", "a b", "a.b", "é", maxName + "9"} {
		if tokenizer.ValidName(name) {
			t.Errorf("ValidName(%q) = true", name)
		}
	}
}

// TestTokenRoundTripRandom checks many random payloads, with leading zero
// runs of every length, against the reference encoder.
func TestTokenRoundTripRandom(t *testing.T) {
	state := uint64(1)
	for n := 0; n < 5000; n++ {
		var p [16]byte
		for i := range p {
			state = state*6364136223846793005 + 1442695040888963407
			p[i] = byte(state >> 56)
		}
		for i := 0; i < n%17; i++ {
			p[i] = 0
		}
		tok := tokenizer.Token{Class: "email", Tenant: "acme", Version: 1, Payload: p}
		s := tok.String()
		if ref := refToken("email", "acme", 1, p[:]); s != ref {
			t.Fatalf("String() = %q, reference %q", s, ref)
		}
		got, err := tokenizer.ParseToken(s)
		if err != nil || got != tok {
			t.Fatalf("ParseToken(%q) = %+v, %v", s, got, err)
		}
	}
}

func FuzzParseToken(f *testing.F) {
	for _, s := range sampleTokens(f) {
		f.Add(s)
	}
	f.Add("")
	f.Add("tok_")
	f.Add("tok_a_b_1111111111111111111111")
	f.Fuzz(func(t *testing.T, s string) {
		tok, err := tokenizer.ParseToken(s)
		if err != nil {
			if !errors.Is(err, tokenizer.ErrInvalidToken) {
				t.Fatalf("error %v is not ErrInvalidToken", err)
			}
			return
		}
		if got := tok.String(); got != s {
			t.Fatalf("ParseToken(%q).String() = %q", s, got)
		}
		if tok.Version != 1 || !tokenizer.ValidName(tok.Class) || !tokenizer.ValidName(tok.Tenant) {
			t.Fatalf("ParseToken(%q) accepted %+v", s, tok)
		}
		if s[len(s)-1] != refCheck(s[:len(s)-1]) {
			t.Fatalf("ParseToken(%q) accepted a wrong check character", s)
		}
	})
}

func BenchmarkParseToken(b *testing.B) {
	s := loadTokenVectors(b)[1].Token
	b.ReportAllocs()
	for b.Loop() {
		if _, err := tokenizer.ParseToken(s); err != nil {
			b.Fatal(err)
		}
	}
}
