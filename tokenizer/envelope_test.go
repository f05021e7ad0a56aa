package tokenizer

import (
	"bytes"
	"crypto/aes"
	"crypto/cipher"
	"crypto/hkdf"
	"crypto/sha256"
	"encoding/binary"
	"encoding/hex"
	"encoding/json"
	"errors"
	"os"
	"strings"
	"testing"
)

type envelopeVector struct {
	DEK        string `json:"dek"`
	Token      string `json:"token"`
	Tenant     string `json:"tenant"`
	Class      string `json:"class"`
	Generation uint32 `json:"generation"`
	Flags      Flags  `json:"flags"`
	Nonce      string `json:"nonce"`
	Value      string `json:"value"`
	Sealed     string `json:"sealed"`
}

type envelopeFixture struct {
	v      envelopeVector
	dek    []byte
	nonce  []byte
	tok    Token
	sealed []byte
}

func loadEnvelopeVector(tb testing.TB) envelopeFixture {
	tb.Helper()
	b, err := os.ReadFile("testdata/envelope_v1.json")
	if err != nil {
		tb.Fatal(err)
	}
	var f envelopeFixture
	if err := json.Unmarshal(b, &f.v); err != nil {
		tb.Fatal(err)
	}
	mustHex := func(s string) []byte {
		b, err := hex.DecodeString(s)
		if err != nil {
			tb.Fatal(err)
		}
		return b
	}
	f.dek, f.nonce, f.sealed = mustHex(f.v.DEK), mustHex(f.v.Nonce), mustHex(f.v.Sealed)
	if f.tok, err = ParseToken(f.v.Token); err != nil {
		tb.Fatal(err)
	}
	if f.tok.Tenant != f.v.Tenant || f.tok.Class != f.v.Class {
		tb.Fatal("vector's token does not name its tenant and class")
	}
	return f
}

// refSeal builds a v1 envelope from the format comment in envelope.go using
// the standard library directly, independently of sealRecord.
func refSeal(dek []byte, gen uint32, flags Flags, nonce []byte, tenant, class, tokText, value string) []byte {
	key, err := hkdf.Expand(sha256.New, dek, "jeton/v1/record\x00"+tokText, 32)
	if err != nil {
		panic(err)
	}
	block, _ := aes.NewCipher(key)
	gcm, _ := cipher.NewGCM(block)
	header := []byte{0x01, byte(flags), 0, 0, 0, 0}
	binary.BigEndian.PutUint32(header[2:], gen)
	ad := append([]byte("jeton/v1/record"), header...)
	for _, f := range []string{tenant, class, tokText} {
		ad = append(ad, byte(len(f)>>8), byte(len(f)))
		ad = append(ad, f...)
	}
	out := append(append([]byte{}, header...), nonce...)
	return gcm.Seal(out, nonce, []byte(value), ad)
}

func TestEnvelopeKnownAnswer(t *testing.T) {
	f := loadEnvelopeVector(t)
	got, err := sealRecord(bytes.NewReader(f.nonce), f.dek, f.v.Generation, f.v.Flags, f.tok, f.v.Token, f.v.Value)
	if err != nil {
		t.Fatal(err)
	}
	if !bytes.Equal(got, f.sealed) {
		t.Fatalf("sealRecord = %x\nwant        %x", got, f.sealed)
	}
	if ref := refSeal(f.dek, f.v.Generation, f.v.Flags, f.nonce, f.v.Tenant, f.v.Class, f.v.Token, f.v.Value); !bytes.Equal(ref, f.sealed) {
		t.Fatalf("reference construction = %x\nvector says            %x", ref, f.sealed)
	}
	v, flags, err := openRecord(f.dek, f.tok, f.v.Token, f.sealed)
	if err != nil || v != f.v.Value || flags != f.v.Flags {
		t.Fatalf("openRecord = %q, %b, %v", v, flags, err)
	}
	h, err := parseEnvelopeHeader(f.sealed)
	if err != nil || h.legacyFlags != f.v.Flags || h.gen != f.v.Generation {
		t.Fatalf("parseEnvelopeHeader = %+v, %v", h, err)
	}
	if len(f.sealed) != envelopeOverhead+len(f.v.Value) {
		t.Fatalf("sealed length %d, want %d", len(f.sealed), envelopeOverhead+len(f.v.Value))
	}
}

func TestSealRecordNonceFailure(t *testing.T) {
	f := loadEnvelopeVector(t)
	if _, err := sealRecord(bytes.NewReader(f.nonce[:5]), f.dek, 1, 0, f.tok, f.v.Token, "x"); err == nil {
		t.Fatal("sealRecord succeeded with a short nonce source")
	}
}

func TestOpenRecordRejects(t *testing.T) {
	f := loadEnvelopeVector(t)
	other := func(class, tenant string) (Token, string) {
		tok := f.tok
		tok.Class, tok.Tenant = class, tenant
		return tok, tok.String()
	}
	otherPayload := f.tok
	otherPayload.Payload[15] ^= 1
	tests := []struct {
		name    string
		dek     []byte
		tok     Token
		tokText string
		blob    []byte
	}{
		{"different token", f.dek, otherPayload, otherPayload.String(), f.sealed},
		{"same token struct, other text", f.dek, f.tok, otherPayload.String(), f.sealed},
		{"same text, other tenant in AD", f.dek, Token{Class: f.tok.Class, Tenant: "other", Version: 1, Payload: f.tok.Payload}, f.v.Token, f.sealed},
		{"same text, other class in AD", f.dek, Token{Class: "phone", Tenant: f.tok.Tenant, Version: 1, Payload: f.tok.Payload}, f.v.Token, f.sealed},
		{"different DEK", bytes.Repeat([]byte{0x42}, 32), f.tok, f.v.Token, f.sealed},
		{"short DEK", f.dek[:16], f.tok, f.v.Token, f.sealed},
		{"empty blob", f.dek, f.tok, f.v.Token, nil},
		{"header only", f.dek, f.tok, f.v.Token, f.sealed[:envelopeHeader]},
		{"no tag", f.dek, f.tok, f.v.Token, f.sealed[:envelopeHeader+nonceSize]},
		{"one byte short of overhead", f.dek, f.tok, f.v.Token, f.sealed[:envelopeOverhead-1]},
		{"truncated by one", f.dek, f.tok, f.v.Token, f.sealed[:len(f.sealed)-1]},
		{"extended by one", f.dek, f.tok, f.v.Token, append(bytes.Clone(f.sealed), 0)},
		{"version 0", f.dek, f.tok, f.v.Token, append([]byte{0}, f.sealed[1:]...)},
		{"version 2", f.dek, f.tok, f.v.Token, append([]byte{2}, f.sealed[1:]...)},
	}
	for _, class := range []string{"phone", "name"} {
		tok, text := other(class, f.tok.Tenant)
		tests = append(tests, struct {
			name    string
			dek     []byte
			tok     Token
			tokText string
			blob    []byte
		}{"other class " + class, f.dek, tok, text, f.sealed})
	}
	tok, text := other(f.tok.Class, "other-tenant")
	tests = append(tests, struct {
		name    string
		dek     []byte
		tok     Token
		tokText string
		blob    []byte
	}{"other tenant", f.dek, tok, text, f.sealed})
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			v, _, err := openRecord(tc.dek, tc.tok, tc.tokText, tc.blob)
			if err == nil {
				t.Fatalf("openRecord opened: %q", v)
			}
			if v != "" {
				t.Fatal("openRecord returned a value with an error")
			}
		})
	}
	requireTamperRefused(t, f)
}

// requireTamperRefused checks that a sealed record opens under no single
// bit flip (header, nonce, ciphertext or tag) and no truncation.
func requireTamperRefused(tb testing.TB, f envelopeFixture) {
	tb.Helper()
	for i := range f.sealed {
		for bit := range 8 {
			b := bytes.Clone(f.sealed)
			b[i] ^= 1 << bit
			if v, _, err := openRecord(f.dek, f.tok, f.v.Token, b); err == nil {
				tb.Fatalf("opened with bit %d of byte %d flipped: %q", bit, i, v)
			}
		}
	}
	for n := range len(f.sealed) {
		if _, _, err := openRecord(f.dek, f.tok, f.v.Token, f.sealed[:n]); err == nil {
			tb.Fatalf("opened truncated to %d bytes", n)
		}
	}
}

func TestOpenRecordErrorIsOpaque(t *testing.T) {
	f := loadEnvelopeVector(t)
	b := bytes.Clone(f.sealed)
	b[len(b)-1] ^= 1
	_, _, err := openRecord(f.dek, f.tok, f.v.Token, b)
	if !errors.Is(err, errEnvelope) {
		t.Fatalf("error %v is not errEnvelope", err)
	}
	for _, s := range []string{f.v.Value, f.v.Token, f.v.DEK} {
		if bytes.Contains([]byte(err.Error()), []byte(s)) {
			t.Fatal("error text leaks a secret")
		}
	}
}

func TestSealSmallRoundTrip(t *testing.T) {
	key := bytes.Repeat([]byte{7}, 32)
	nonce := bytes.Repeat([]byte{9}, nonceSize)
	blob, err := sealSmall(bytes.NewReader(nonce), key, "name-a", []byte("tok_x"))
	if err != nil {
		t.Fatal(err)
	}
	if pt, err := openSmall(key, "name-a", blob); err != nil || string(pt) != "tok_x" {
		t.Fatalf("openSmall = %q, %v", pt, err)
	}
	if _, err := openSmall(key, "name-b", blob); err == nil {
		t.Fatal("openSmall ignored its associated data")
	}
	if _, err := openSmall(bytes.Repeat([]byte{8}, 32), "name-a", blob); err == nil {
		t.Fatal("openSmall opened under another key")
	}
	for i := range blob {
		b := bytes.Clone(blob)
		b[i] ^= 0x80
		if _, err := openSmall(key, "name-a", b); err == nil {
			t.Fatalf("openSmall opened with byte %d changed", i)
		}
	}
	for n := range len(blob) {
		if _, err := openSmall(key, "name-a", blob[:n]); err == nil {
			t.Fatalf("openSmall opened truncated to %d", n)
		}
	}
}

func FuzzOpenEnvelope(f *testing.F) {
	fx := loadEnvelopeVector(f)
	f.Add(fx.sealed)
	f.Add(fx.sealed[:envelopeOverhead])
	f.Add([]byte{})
	other, err := sealRecord(bytes.NewReader(fx.nonce), fx.dek, 2, 0, fx.tok, fx.v.Token, "")
	if err != nil {
		f.Fatal(err)
	}
	f.Add(other)
	// Version 2 seeds: the same token under the v2 format, with its value
	// and empty, and with the header's class edited.
	v2, err := sealRecordV2(bytes.NewReader(fx.nonce), fx.dek, fx.v.Generation, fx.v.Flags, fx.tok, fx.v.Token, fx.v.Value)
	if err != nil {
		f.Fatal(err)
	}
	v2empty, err := sealRecordV2(bytes.NewReader(fx.nonce), fx.dek, 3, 0, fx.tok, fx.v.Token, "")
	if err != nil {
		f.Fatal(err)
	}
	f.Add(v2)
	f.Add(v2empty)
	f.Add(v2[:envelopeHeader+1+len(fx.tok.Class)])
	f.Add(v2[:envelopeHeader+1])
	swapped := bytes.Clone(v2)
	copy(swapped[envelopeHeader+1:], "phone")
	f.Add(swapped)
	// Version 3 seeds: a canary, an empty value, a value that fills its
	// bucket, one that spills into the next, and the header alone.
	genuine := map[string]string{string(fx.sealed): fx.v.Value, string(other): "", string(v2): fx.v.Value, string(v2empty): ""}
	dek := newMACKey(fx.dek)
	for _, v := range []string{fx.v.Value, "", strings.Repeat("x", 30), strings.Repeat("y", 31)} {
		for _, flags := range []Flags{0, FlagCanary | FlagCanarySuspend} {
			b, err := sealRecordMAC(dek, fx.nonce, 5, flags, fx.tok, fx.v.Token, v)
			if err != nil {
				f.Fatal(err)
			}
			f.Add(b)
			genuine[string(b)] = v
		}
	}
	v3, _ := sealRecordMAC(dek, fx.nonce, 5, 0, fx.tok, fx.v.Token, fx.v.Value)
	f.Add(v3[:v3HeaderFixed+len(fx.tok.Class)+nonceSize])
	f.Fuzz(func(t *testing.T, blob []byte) {
		_, _, _ = envelopeClassOf(blob)
		v, _, err := openRecord(fx.dek, fx.tok, fx.v.Token, blob)
		want, ok := genuine[string(blob)]
		switch {
		case err == nil && !ok:
			t.Fatalf("a blob that was never sealed opened: %x", blob)
		case err == nil && v != want:
			t.Fatalf("opened to %q, want %q", v, want)
		case err != nil && ok:
			t.Fatalf("genuine blob does not open: %v", err)
		}
		// The same blob under any other token never opens.
		tok := fx.tok
		tok.Payload[0] ^= 1
		if _, _, err := openRecord(fx.dek, tok, tok.String(), blob); err == nil {
			t.Fatalf("blob opened under another token")
		}
		_, _ = openSmall(fx.dek, "x", blob)
	})
}
