package tokenizer

import (
	"encoding/binary"
	"fmt"
	"io"
)

// sealRecord seals a version 1 envelope, as jeton wrote before the class
// moved into the header. The service seals only v2 (sealRecordMAC); tests
// keep this to check the v1 known answer, that v1 records still open, and
// how Stats counts them.
func sealRecord(rand io.Reader, dek []byte, gen uint32, flags Flags, tok Token, tokText, value string) ([]byte, error) {
	var nonce [nonceSize]byte
	if _, err := io.ReadFull(rand, nonce[:]); err != nil {
		return nil, fmt.Errorf("tokenizer: reading nonce: %w", err)
	}
	return sealRecordV1MAC(newMACKey(dek), nonce[:], gen, flags, tok, tokText, value)
}

func sealRecordV1MAC(dek *macKey, nonce []byte, gen uint32, flags Flags, tok Token, tokText, value string) ([]byte, error) {
	aead, err := recordAEAD(dek, tokText)
	if err != nil {
		return nil, err
	}
	out := make([]byte, envelopeHeader+nonceSize, envelopeOverhead+len(value))
	out[0] = envelopeVersion1
	out[1] = byte(flags)
	binary.BigEndian.PutUint32(out[2:6], gen)
	copy(out[envelopeHeader:], nonce)
	ad := recordAD(out[:envelopeHeader], tok, tokText)
	return aead.Seal(out, out[envelopeHeader:envelopeHeader+nonceSize], []byte(value), ad), nil
}
