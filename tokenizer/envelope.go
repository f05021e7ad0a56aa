package tokenizer

import (
	"crypto/aes"
	"crypto/cipher"
	"crypto/sha256"
	"encoding/binary"
	"errors"
	"fmt"
	"io"
)

// Record envelope, version 1:
//
//	[0]     version 0x01
//	[1]     flags (FlagCanary, ...)
//	[2:6]   key generation, big-endian
//	[6:18]  nonce
//	[18:]   AES-256-GCM ciphertext and tag
//
// The record key is HKDF-Expand(SHA-256, DEK, "jeton/v1/record\x00"||token):
// every token has its own key, so a store holding the wrapped DEKs but no
// tokens cannot open any record. The associated data binds the envelope
// header, tenant, class and token, so a record copied or swapped under
// another token fails to open.
const (
	envelopeVersion1 = 0x01
	envelopeHeader   = 6
	nonceSize        = 12
	envelopeOverhead = envelopeHeader + nonceSize + 16
)

// Flags are per-record markers, authenticated with the record.
type Flags byte

const (
	// FlagCanary marks a canary record: revealing it raises an alert.
	FlagCanary Flags = 1 << iota
)

var errEnvelope = errors.New("tokenizer: envelope does not open")

// envelopeHeaderOf returns a stored envelope's version, flags and
// generation without opening it.
func envelopeHeaderOf(blob []byte) (flags Flags, gen uint32, err error) {
	if len(blob) < envelopeOverhead || blob[0] != envelopeVersion1 {
		return 0, 0, errEnvelope
	}
	return Flags(blob[1]), binary.BigEndian.Uint32(blob[2:6]), nil
}

// sealRecord encrypts value for token under dek. The nonce is random and the
// key unique to the token, so a nonce never repeats under a key in practice.
func sealRecord(rand io.Reader, dek []byte, gen uint32, flags Flags, tok Token, tokText, value string) ([]byte, error) {
	var nonce [nonceSize]byte
	if _, err := io.ReadFull(rand, nonce[:]); err != nil {
		return nil, fmt.Errorf("tokenizer: reading nonce: %w", err)
	}
	return sealRecordMAC(newMACKey(dek), nonce[:], gen, flags, tok, tokText, value)
}

// sealRecordMAC is sealRecord with the DEK's keyed state and the nonce given.
func sealRecordMAC(dek *macKey, nonce []byte, gen uint32, flags Flags, tok Token, tokText, value string) ([]byte, error) {
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

// openRecord decrypts a record sealed by sealRecord for the same token.
func openRecord(dek []byte, tok Token, tokText string, blob []byte) (string, error) {
	return openRecordMAC(newMACKey(dek), tok, tokText, blob)
}

func openRecordMAC(dek *macKey, tok Token, tokText string, blob []byte) (string, error) {
	if _, _, err := envelopeHeaderOf(blob); err != nil {
		return "", err
	}
	aead, err := recordAEAD(dek, tokText)
	if err != nil {
		return "", err
	}
	ad := recordAD(blob[:envelopeHeader], tok, tokText)
	nonce := blob[envelopeHeader : envelopeHeader+nonceSize]
	pt, err := aead.Open(nil, nonce, blob[envelopeHeader+nonceSize:], ad)
	if err != nil {
		return "", errEnvelope
	}
	return string(pt), nil
}

func recordAEAD(dek *macKey, tokText string) (cipher.AEAD, error) {
	var buf [sha256.Size]byte
	return newGCM(dek.expand32(buf[:0], "jeton/v1/record\x00", tokText))
}

func newGCM(key []byte) (cipher.AEAD, error) {
	block, err := aes.NewCipher(key)
	if err != nil {
		return nil, fmt.Errorf("tokenizer: %w", err)
	}
	return cipher.NewGCM(block)
}

// recordAD is "jeton/v1/record" || header || tenant || class || token, each
// variable field length-prefixed so no two tuples share an encoding.
func recordAD(header []byte, tok Token, tokText string) []byte {
	ad := make([]byte, 0, 32+len(tok.Tenant)+len(tok.Class)+len(tokText))
	ad = append(ad, "jeton/v1/record"...)
	ad = append(ad, header...)
	for _, f := range []string{tok.Tenant, tok.Class, tokText} {
		ad = binary.BigEndian.AppendUint16(ad, uint16(len(f)))
		ad = append(ad, f...)
	}
	return ad
}

// sealSmall and openSmall protect the service's own small blobs (idempotency
// entries) with a key derived from a tenant root key; ad names the blob.
func sealSmall(rand io.Reader, key []byte, ad string, pt []byte) ([]byte, error) {
	aead, err := newGCM(key)
	if err != nil {
		return nil, err
	}
	out := make([]byte, 1+nonceSize, 1+nonceSize+len(pt)+16)
	out[0] = envelopeVersion1
	if _, err := io.ReadFull(rand, out[1:]); err != nil {
		return nil, fmt.Errorf("tokenizer: reading nonce: %w", err)
	}
	return aead.Seal(out, out[1:], pt, []byte(ad)), nil
}

func openSmall(key []byte, ad string, blob []byte) ([]byte, error) {
	if len(blob) < 1+nonceSize+16 || blob[0] != envelopeVersion1 {
		return nil, errEnvelope
	}
	aead, err := newGCM(key)
	if err != nil {
		return nil, err
	}
	pt, err := aead.Open(nil, blob[1:1+nonceSize], blob[1+nonceSize:], []byte(ad))
	if err != nil {
		return nil, errEnvelope
	}
	return pt, nil
}
