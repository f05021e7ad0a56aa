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
	"os"
	"strings"
	"testing"
)

// loadEnvelopeVectorsV3 reads the v3 known answers: several, since the
// padding and the sealed flags are what v3 adds.
func loadEnvelopeVectorsV3(tb testing.TB) []envelopeFixture {
	tb.Helper()
	b, err := os.ReadFile("testdata/envelope_v3.json")
	if err != nil {
		tb.Fatal(err)
	}
	var vs []envelopeVector
	if err := json.Unmarshal(b, &vs); err != nil {
		tb.Fatal(err)
	}
	mustHex := func(s string) []byte {
		b, err := hex.DecodeString(s)
		if err != nil {
			tb.Fatal(err)
		}
		return b
	}
	out := make([]envelopeFixture, len(vs))
	for i, v := range vs {
		f := envelopeFixture{v: v, dek: mustHex(v.DEK), nonce: mustHex(v.Nonce), sealed: mustHex(v.Sealed)}
		if f.tok, err = ParseToken(v.Token); err != nil {
			tb.Fatal(err)
		}
		if f.tok.Tenant != v.Tenant || f.tok.Class != v.Class {
			tb.Fatalf("vector %d's token does not name its tenant and class", i)
		}
		out[i] = f
	}
	if len(out) == 0 {
		tb.Fatal("no v3 vectors")
	}
	return out
}

// refBodyV3 pads a v3 body from the format comment in envelope.go: flags,
// value, 0x80, zeros, to the first of 32, 64, 128, ... that holds it.
func refBodyV3(flags Flags, value string) []byte {
	body := append(append([]byte{byte(flags)}, value...), 0x80)
	size := 32
	for size < len(body) {
		size *= 2
	}
	return append(body, make([]byte, size-len(body))...)
}

// refSealV3 builds a v3 envelope around a given body using the standard
// library directly, independently of sealRecordMAC.
func refSealV3(dek []byte, gen uint32, nonce []byte, tenant, class, tokText string, body []byte) []byte {
	key, err := hkdf.Expand(sha256.New, dek, "jeton/v1/record\x00"+tokText, 32)
	if err != nil {
		panic(err)
	}
	block, _ := aes.NewCipher(key)
	gcm, _ := cipher.NewGCM(block)
	header := []byte{0x03, 0, 0, 0, 0, byte(len(class))}
	binary.BigEndian.PutUint32(header[1:], gen)
	header = append(header, class...)
	ad := append([]byte("jeton/v1/record"), header...)
	for _, f := range []string{tenant, class, tokText} {
		ad = append(ad, byte(len(f)>>8), byte(len(f)))
		ad = append(ad, f...)
	}
	out := append(append([]byte{}, header...), nonce...)
	return gcm.Seal(out, nonce, body, ad)
}

func TestEnvelopeV3KnownAnswers(t *testing.T) {
	for _, f := range loadEnvelopeVectorsV3(t) {
		t.Run(f.v.Class+"/"+hex.EncodeToString([]byte{byte(f.v.Flags)}), func(t *testing.T) {
			got, err := sealRecordMAC(newMACKey(f.dek), f.nonce, f.v.Generation, f.v.Flags, f.tok, f.v.Token, f.v.Value)
			if err != nil {
				t.Fatal(err)
			}
			if !bytes.Equal(got, f.sealed) {
				t.Fatalf("sealRecordMAC = %x\nwant           %x", got, f.sealed)
			}
			ref := refSealV3(f.dek, f.v.Generation, f.nonce, f.v.Tenant, f.v.Class, f.v.Token, refBodyV3(f.v.Flags, f.v.Value))
			if !bytes.Equal(ref, f.sealed) {
				t.Fatalf("reference construction = %x\nvector says            %x", ref, f.sealed)
			}
			v, flags, err := openRecord(f.dek, f.tok, f.v.Token, f.sealed)
			if err != nil || v != f.v.Value || flags != f.v.Flags {
				t.Fatalf("openRecord = %q, %b, %v", v, flags, err)
			}
			class, gen, err := envelopeClassOf(f.sealed)
			if err != nil || class != f.v.Class || gen != f.v.Generation {
				t.Fatalf("envelopeClassOf = %q, %d, %v", class, gen, err)
			}
			// The clear part is version, generation and class, nothing else:
			// no flags, no length.
			hs := 6 + len(f.v.Class)
			want := append([]byte{3, 0, 0, 0, 0, byte(len(f.v.Class))}, f.v.Class...)
			binary.BigEndian.PutUint32(want[1:], f.v.Generation)
			if !bytes.Equal(f.sealed[:hs], want) {
				t.Fatalf("clear header %x, want %x", f.sealed[:hs], want)
			}
			if got, want := len(f.sealed), hs+nonceSize+paddedSize(len(f.v.Value))+tagSize; got != want {
				t.Fatalf("sealed length %d, want %d", got, want)
			}
		})
	}
}

// TestPaddedSize pins the buckets: 32 bytes, then powers of two, each
// holding the flags byte, the value and the marker.
func TestPaddedSize(t *testing.T) {
	tests := []struct{ n, want int }{
		{0, 32}, {1, 32}, {30, 32}, {31, 64}, {62, 64}, {63, 128}, {126, 128}, {127, 256},
		{254, 256}, {255, 512}, {4094, 4096}, {4095, 8192}, {DefaultMaxValueLen, 8192},
	}
	for _, tc := range tests {
		if got := paddedSize(tc.n); got != tc.want {
			t.Errorf("paddedSize(%d) = %d, want %d", tc.n, got, tc.want)
		}
	}
}

// TestV3SizeShowsOnlyTheBucket seals every value length from 0 to 1,100
// bytes, as a canary and not: a record's length takes exactly one value
// per bucket, the same for canaries, and every record opens to its value
// and flags.
func TestV3SizeShowsOnlyTheBucket(t *testing.T) {
	f := loadEnvelopeVectorsV3(t)[0]
	dek := newMACKey(f.dek)
	lengths := map[int]map[int]bool{} // bucket -> record lengths seen
	for n := 0; n <= 1100; n++ {
		v := strings.Repeat("é", n/2) + strings.Repeat("x", n%2)
		for _, flags := range []Flags{0, FlagCanary, FlagCanary | FlagCanarySuspend} {
			b, err := sealRecordMAC(dek, f.nonce, 9, flags, f.tok, f.v.Token, v)
			if err != nil {
				t.Fatal(err)
			}
			bucket := paddedSize(len(v))
			if lengths[bucket] == nil {
				lengths[bucket] = map[int]bool{}
			}
			lengths[bucket][len(b)] = true
			got, gotFlags, err := openRecord(f.dek, f.tok, f.v.Token, b)
			if err != nil || got != v || gotFlags != flags {
				t.Fatalf("length %d flags %b: opened to length %d, flags %b, %v", n, flags, len(got), gotFlags, err)
			}
		}
	}
	if len(lengths) != 7 { // 32 to 2048
		t.Fatalf("%d buckets for lengths 0 to 1100, want 7", len(lengths))
	}
	for bucket, ls := range lengths {
		if len(ls) != 1 {
			t.Errorf("bucket %d: %d distinct record lengths, want 1", bucket, len(ls))
		}
	}
}

// TestOpenRecordV3Rejects: edits of the header, the body and the padding
// never open, and the flags cannot be changed without the key.
func TestOpenRecordV3Rejects(t *testing.T) {
	f := loadEnvelopeVectorsV3(t)[0]
	hs := 6 + len(f.v.Class)
	seal := func(body []byte) []byte {
		return refSealV3(f.dek, f.v.Generation, f.nonce, f.v.Tenant, f.v.Class, f.v.Token, body)
	}
	good := refBodyV3(f.v.Flags, f.v.Value)
	noMarker := bytes.Clone(good)
	noMarker[1+len(f.v.Value)] = 0
	junkAfter := bytes.Clone(good)
	junkAfter[len(junkAfter)-1] = 1
	bigger := append(bytes.Clone(good), make([]byte, len(good))...) // next bucket, same value
	short := good[:len(good)-1]
	phone := f.tok
	phone.Class = "phone"
	withClass := func(class string) []byte {
		b := append([]byte{}, f.sealed[:5]...)
		b = append(b, byte(len(class)))
		b = append(b, class...)
		return append(b, f.sealed[hs:]...)
	}
	tests := []struct {
		name string
		tok  Token
		blob []byte
	}{
		{"padding without its marker", f.tok, seal(noMarker)},
		{"padding not all zeros", f.tok, seal(junkAfter)},
		{"padded to a bucket too large", f.tok, seal(bigger)},
		{"body not a bucket size", f.tok, seal(short)},
		{"empty body", f.tok, seal(nil)},
		{"header class swapped", f.tok, withClass("phone")},
		{"header and AD class swapped", phone, withClass("phone")},
		{"header class empty", f.tok, withClass("")},
		{"header class not a name", f.tok, withClass("EMAIL")},
		{"version 2 header byte", f.tok, append([]byte{2}, f.sealed[1:]...)},
		{"version 4", f.tok, append([]byte{4}, f.sealed[1:]...)},
		{"header only", f.tok, f.sealed[:hs]},
		{"no body", f.tok, f.sealed[:hs+nonceSize+tagSize]},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			if v, flags, err := openRecord(f.dek, tc.tok, f.v.Token, tc.blob); err == nil || v != "" || flags != 0 {
				t.Fatalf("openRecord = %q, %b, %v; want an error and nothing else", v, flags, err)
			}
		})
	}
	if v, _, err := openRecord(f.dek, f.tok, f.v.Token, seal(good)); err != nil || v != f.v.Value {
		t.Fatalf("the reference body does not open: %v", err)
	}
	requireTamperRefused(t, f)
}

// A canary and an ordinary record of one value differ only in bytes that
// are ciphertext: the clear header and the length are equal.
func TestV3CanaryLooksOrdinary(t *testing.T) {
	f := loadEnvelopeVectorsV3(t)[0]
	dek := newMACKey(f.dek)
	plain, err := sealRecordMAC(dek, f.nonce, 7, 0, f.tok, f.v.Token, f.v.Value)
	if err != nil {
		t.Fatal(err)
	}
	canary, err := sealRecordMAC(dek, f.nonce, 7, FlagCanary|FlagCanarySuspend, f.tok, f.v.Token, f.v.Value)
	if err != nil {
		t.Fatal(err)
	}
	ct := 6 + len(f.v.Class) + nonceSize // the nonce is equal here only because the test fixes it
	if len(plain) != len(canary) || !bytes.Equal(plain[:ct], canary[:ct]) {
		t.Fatalf("a canary's clear part differs:\n%x\n%x", plain[:ct], canary[:ct])
	}
	if bytes.Equal(plain, canary) {
		t.Fatal("the flags are not sealed at all")
	}
}

func TestSealRecordMACRefusesBadClass(t *testing.T) {
	f := loadEnvelopeVectorsV3(t)[0]
	bad := f.tok
	bad.Class = ""
	if _, err := sealRecordMAC(newMACKey(f.dek), f.nonce, 1, 0, bad, f.v.Token, "x"); err == nil {
		t.Fatal("sealRecordMAC sealed a record with an empty class")
	}
}

// Values ending in the marker's byte or in zeros, or filling a bucket to
// the last byte, come back whole: the marker is found from the end.
func TestV3PaddingEdgeValues(t *testing.T) {
	f := loadEnvelopeVectorsV3(t)[0]
	dek := newMACKey(f.dek)
	for _, v := range []string{"", "\x00", "x\x00\x00", "\u0100", "\u0100\u0100", "\x80", strings.Repeat("z", 30), strings.Repeat("\x00", 62)} {
		b, err := sealRecordMAC(dek, f.nonce, 1, FlagCanary, f.tok, f.v.Token, v)
		if err != nil {
			t.Fatal(err)
		}
		got, flags, err := openRecord(f.dek, f.tok, f.v.Token, b)
		if err != nil || got != v || flags != FlagCanary {
			t.Errorf("value %x: opened to %x, %b, %v", v, got, flags, err)
		}
	}
}

// TestSmallestV3Record pins the length of the smallest record the service
// writes, an empty value of a one-letter class: 67 bytes. The end-to-end
// benchmark stores records of this length as the floor of Redis memory per
// value (integration/bench, smallestRecord); change both together.
func TestSmallestV3Record(t *testing.T) {
	f := loadEnvelopeVectorsV3(t)[0]
	tok := f.tok
	tok.Class = "x"
	b, err := sealRecordMAC(newMACKey(f.dek), f.nonce, 1, 0, tok, f.v.Token, "")
	if err != nil {
		t.Fatal(err)
	}
	if len(b) != 67 {
		t.Fatalf("the smallest v3 record is %d bytes, want 67", len(b))
	}
}
