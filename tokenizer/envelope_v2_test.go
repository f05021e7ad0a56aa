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
	"fmt"
	"io"
	"os"
	"testing"
)

// sealRecordV2 seals a version 2 envelope, as jeton wrote before flags
// moved into the sealed body and values were padded. The service seals
// only v3 (sealRecordMAC); tests keep this to check the v2 known answer
// and that v2 records still open, canary flags included.
func sealRecordV2(rand io.Reader, dek []byte, gen uint32, flags Flags, tok Token, tokText, value string) ([]byte, error) {
	var nonce [nonceSize]byte
	if _, err := io.ReadFull(rand, nonce[:]); err != nil {
		return nil, fmt.Errorf("tokenizer: reading nonce: %w", err)
	}
	return sealRecordV2MAC(newMACKey(dek), nonce[:], gen, flags, tok, tokText, value)
}

func sealRecordV2MAC(dek *macKey, nonce []byte, gen uint32, flags Flags, tok Token, tokText, value string) ([]byte, error) {
	if !ValidName(tok.Class) {
		return nil, errors.New("tokenizer: sealing a record with an invalid class name")
	}
	aead, err := recordAEAD(dek, tokText)
	if err != nil {
		return nil, err
	}
	hs := envelopeHeader + 1 + len(tok.Class)
	out := make([]byte, hs+nonceSize, hs+nonceSize+len(value)+tagSize)
	out[0] = envelopeVersion2
	out[1] = byte(flags)
	binary.BigEndian.PutUint32(out[2:6], gen)
	out[envelopeHeader] = byte(len(tok.Class))
	copy(out[envelopeHeader+1:], tok.Class)
	copy(out[hs:], nonce)
	ad := recordAD(out[:hs], tok, tokText)
	return aead.Seal(out, out[hs:hs+nonceSize], []byte(value), ad), nil
}

func loadEnvelopeVectorV2(tb testing.TB) envelopeFixture {
	tb.Helper()
	b, err := os.ReadFile("testdata/envelope_v2.json")
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

// refSealV2 builds a v2 envelope from the format comment in envelope.go
// using the standard library directly, independently of sealRecordV2MAC.
func refSealV2(dek []byte, gen uint32, flags Flags, nonce []byte, tenant, class, tokText, value string) []byte {
	key, err := hkdf.Expand(sha256.New, dek, "jeton/v1/record\x00"+tokText, 32)
	if err != nil {
		panic(err)
	}
	block, _ := aes.NewCipher(key)
	gcm, _ := cipher.NewGCM(block)
	header := []byte{0x02, byte(flags), 0, 0, 0, 0, byte(len(class))}
	binary.BigEndian.PutUint32(header[2:], gen)
	header = append(header, class...)
	ad := append([]byte("jeton/v1/record"), header...)
	for _, f := range []string{tenant, class, tokText} {
		ad = append(ad, byte(len(f)>>8), byte(len(f)))
		ad = append(ad, f...)
	}
	out := append(append([]byte{}, header...), nonce...)
	return gcm.Seal(out, nonce, []byte(value), ad)
}

func TestEnvelopeV2KnownAnswer(t *testing.T) {
	f := loadEnvelopeVectorV2(t)
	got, err := sealRecordV2(bytes.NewReader(f.nonce), f.dek, f.v.Generation, f.v.Flags, f.tok, f.v.Token, f.v.Value)
	if err != nil {
		t.Fatal(err)
	}
	if !bytes.Equal(got, f.sealed) {
		t.Fatalf("sealRecordV2 = %x\nwant          %x", got, f.sealed)
	}
	if ref := refSealV2(f.dek, f.v.Generation, f.v.Flags, f.nonce, f.v.Tenant, f.v.Class, f.v.Token, f.v.Value); !bytes.Equal(ref, f.sealed) {
		t.Fatalf("reference construction = %x\nvector says            %x", ref, f.sealed)
	}
	// The flags come back from the authenticated clear header.
	v, flags, err := openRecord(f.dek, f.tok, f.v.Token, f.sealed)
	if err != nil || v != f.v.Value || flags != f.v.Flags {
		t.Fatalf("openRecord = %q, %b, %v", v, flags, err)
	}
	class, gen, err := envelopeClassOf(f.sealed)
	if err != nil || class != f.v.Class || gen != f.v.Generation {
		t.Fatalf("envelopeClassOf = %q, %d, %v", class, gen, err)
	}
	if want := envelopeOverhead + 1 + len(f.v.Class) + len(f.v.Value); len(f.sealed) != want {
		t.Fatalf("sealed length %d, want %d", len(f.sealed), want)
	}
	// The class is in the clear, right after the generation.
	if !bytes.Equal(f.sealed[6:7+len(f.v.Class)], append([]byte{byte(len(f.v.Class))}, f.v.Class...)) {
		t.Fatalf("header %x does not carry the class", f.sealed[:7+len(f.v.Class)])
	}
}

// The v1 vector still opens and names no class.
func TestEnvelopeV1StillOpens(t *testing.T) {
	f := loadEnvelopeVector(t)
	if v, _, err := openRecordMAC(newMACKey(f.dek), f.tok, f.v.Token, f.sealed); err != nil || v != f.v.Value {
		t.Fatalf("openRecordMAC(v1) = %q, %v", v, err)
	}
	class, gen, err := envelopeClassOf(f.sealed)
	if err != nil || class != "" || gen != f.v.Generation {
		t.Fatalf("envelopeClassOf(v1) = %q, %d, %v; want no class", class, gen, err)
	}
}

func TestOpenRecordV2Rejects(t *testing.T) {
	f := loadEnvelopeVectorV2(t)
	n := len(f.v.Class)
	hs := envelopeHeader + 1 + n
	withClass := func(class string) []byte {
		b := append([]byte{}, f.sealed[:envelopeHeader]...)
		b = append(b, byte(len(class)))
		b = append(b, class...)
		return append(b, f.sealed[hs:]...)
	}
	phone := f.tok
	phone.Class = "phone"
	tests := []struct {
		name    string
		tok     Token
		tokText string
		blob    []byte
	}{
		// The header names another class of the same length: refused
		// before the AD is checked.
		{"header class swapped", f.tok, f.v.Token, withClass("phone")},
		// The header and the token struct agree on the other class, the
		// token text does not: only the AD catches it.
		{"header and AD class swapped", phone, f.v.Token, withClass("phone")},
		{"header class longer", f.tok, f.v.Token, withClass("emails")},
		{"header class shorter", f.tok, f.v.Token, withClass("emai")},
		{"header class empty", f.tok, f.v.Token, withClass("")},
		{"header class not a name", f.tok, f.v.Token, withClass("EMAIL")},
		{"header class length past the end", f.tok, f.v.Token, append(append([]byte{}, f.sealed[:envelopeHeader]...), 0xff)},
		{"version 1 header on a v2 body", f.tok, f.v.Token, append([]byte{1}, f.sealed[1:]...)},
		{"version 3", f.tok, f.v.Token, append([]byte{3}, f.sealed[1:]...)},
		{"header only", f.tok, f.v.Token, f.sealed[:hs]},
		{"no tag", f.tok, f.v.Token, f.sealed[:hs+nonceSize]},
		{"one byte short of overhead", f.tok, f.v.Token, f.sealed[:hs+nonceSize+tagSize-1]},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			if v, _, err := openRecord(f.dek, tc.tok, tc.tokText, tc.blob); err == nil || v != "" {
				t.Fatalf("openRecord = %q, %v; want an error and no value", v, err)
			}
		})
	}
	// The class check is the header's: restoring it opens again.
	if v, _, err := openRecord(f.dek, f.tok, f.v.Token, withClass(f.v.Class)); err != nil || v != f.v.Value {
		t.Fatalf("rebuilt genuine blob: %q, %v", v, err)
	}
	requireTamperRefused(t, f)
}

func TestParseEnvelopeHeaderV2(t *testing.T) {
	f := loadEnvelopeVectorV2(t)
	h, err := parseEnvelopeHeader(f.sealed)
	if err != nil {
		t.Fatal(err)
	}
	if h.version != 2 || h.legacyFlags != f.v.Flags || h.gen != f.v.Generation || h.class != f.v.Class || h.size != 7+len(f.v.Class) {
		t.Fatalf("parseEnvelopeHeader = %+v", h)
	}
	// A longest class name fits.
	long := f.tok
	long.Class = string(bytes.Repeat([]byte{'a'}, MaxNameLen))
	b, err := sealRecordV2(bytes.NewReader(f.nonce), f.dek, 7, 0, long, f.v.Token, "")
	if err != nil {
		t.Fatal(err)
	}
	if c, g, err := envelopeClassOf(b); err != nil || c != long.Class || g != 7 {
		t.Fatalf("envelopeClassOf(longest class) = %q, %d, %v", c, g, err)
	}
	if v, _, err := openRecord(f.dek, long, f.v.Token, b); err != nil || v != "" {
		t.Fatalf("openRecord(longest class) = %q, %v", v, err)
	}
}
