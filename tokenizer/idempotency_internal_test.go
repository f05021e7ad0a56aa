package tokenizer

import (
	"bytes"
	"crypto/aes"
	"encoding/binary"
	"testing"
)

// drawTokens is AES-256-CTR from a zero counter: payload i is the AES
// encryption under the seed of i as a 128-bit big-endian number.
func TestDrawTokens(t *testing.T) {
	seed := bytes.Repeat([]byte{0x5a}, seedSize)
	got, err := drawTokens(seed, 300)
	if err != nil {
		t.Fatal(err)
	}
	b, _ := aes.NewCipher(seed)
	seen := map[[tokenPayloadLen]byte]bool{}
	for i := range 300 {
		var ctr, want [16]byte
		binary.BigEndian.PutUint64(ctr[8:], uint64(i))
		b.Encrypt(want[:], ctr[:])
		p := [tokenPayloadLen]byte(got[i*tokenPayloadLen:])
		if p != want {
			t.Fatalf("payload %d is not AES(seed, %d)", i, i)
		}
		if seen[p] {
			t.Fatalf("payload %d repeats", i)
		}
		seen[p] = true
	}
	other, _ := drawTokens(bytes.Repeat([]byte{0x5b}, seedSize), 1)
	if bytes.Equal(other, got[:tokenPayloadLen]) {
		t.Fatal("two seeds draw the same first token")
	}
}
