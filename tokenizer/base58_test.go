package tokenizer

import (
	"bytes"
	"math/big"
	"math/rand/v2"
	"testing"
)

// bigBase58 is textbook base58 over math/big, the reference for the
// package's allocation-free encoder.
func bigBase58(b []byte) string {
	n := new(big.Int).SetBytes(b)
	var out []byte
	mod, base := new(big.Int), big.NewInt(58)
	for n.Sign() > 0 {
		n.DivMod(n, base, mod)
		out = append(out, base58Alphabet[mod.Int64()])
	}
	for i := 0; i < len(b) && b[i] == 0; i++ {
		out = append(out, '1')
	}
	for i, j := 0, len(out)-1; i < j; i, j = i+1, j-1 {
		out[i], out[j] = out[j], out[i]
	}
	return string(out)
}

func TestBase58RoundTrip(t *testing.T) {
	r := rand.New(rand.NewPCG(1, 2))
	for n := 0; n < 20000; n++ {
		size := r.IntN(48)
		b := make([]byte, size)
		for i := range b {
			b[i] = byte(r.Uint32())
		}
		// Leading zero runs of every length, including all-zero input.
		if size > 0 && n%3 == 0 {
			for i := range r.IntN(size + 1) {
				b[i] = 0
			}
		}
		if n%7 == 0 {
			for i := range b {
				b[i] = 0xff
			}
		}
		enc := string(appendBase58(nil, b))
		if want := bigBase58(b); enc != want {
			t.Fatalf("appendBase58(%x) = %q, want %q", b, enc, want)
		}
		out := make([]byte, len(b))
		if !decodeBase58(enc, out) || !bytes.Equal(out, b) {
			t.Fatalf("decodeBase58(%q) = %x, want %x", enc, out, b)
		}
		// The decoder insists on the exact length.
		if decodeBase58(enc, make([]byte, len(b)+1)) {
			t.Fatalf("decodeBase58(%q) filled %d bytes", enc, len(b)+1)
		}
		if len(b) > 0 && decodeBase58(enc, make([]byte, len(b)-1)) {
			t.Fatalf("decodeBase58(%q) filled %d bytes", enc, len(b)-1)
		}
	}
}

func TestBase58AppendsToDst(t *testing.T) {
	got := string(appendBase58([]byte("x_"), []byte{0, 0, 1, 0xff}))
	if want := "x_" + bigBase58([]byte{0, 0, 1, 0xff}); got != want {
		t.Fatalf("got %q, want %q", got, want)
	}
	// Inputs larger than the stack buffer.
	big := bytes.Repeat([]byte{0xa5}, 200)
	enc := string(appendBase58(nil, big))
	if enc != bigBase58(big) {
		t.Fatal("long input encodes wrongly")
	}
	out := make([]byte, len(big))
	if !decodeBase58(enc, out) || !bytes.Equal(out, big) {
		t.Fatal("long input does not round-trip")
	}
}

func TestDecodeBase58Rejects(t *testing.T) {
	for _, s := range []string{"0", "O", "I", "l", "_", "2 ", "\x00", "é", "+"} {
		if decodeBase58(s, make([]byte, 1)) {
			t.Errorf("decodeBase58(%q) accepted", s)
		}
	}
}

func TestLuhn58CatchesSubstitutions(t *testing.T) {
	// Every change of one code point changes the check value, in either
	// alphabet and at either parity.
	for _, s := range []string{"tok_email_acme_", "tok_email_acme_2", "tok_email_acme_z2"} {
		base := luhn58([]byte(s))
		for i := 0; i < len(s); i++ {
			alpha := base58Alphabet
			if i <= bytes.LastIndexByte([]byte(s), '_') {
				alpha = prefixAlphabet[:len(prefixAlphabet)-1] // not '_': that moves the split
			}
			for j := 0; j < len(alpha); j++ {
				if alpha[j] == s[i] || s[i] == '_' {
					continue
				}
				b := []byte(s)
				b[i] = alpha[j]
				if luhn58(b) == base {
					t.Errorf("luhn58 misses %q -> %q", s, b)
				}
			}
		}
	}
}
