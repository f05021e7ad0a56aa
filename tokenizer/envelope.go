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

// Record envelope, version 2, the one the service writes:
//
//	[0]         version 0x02
//	[1]         flags (FlagCanary, ...)
//	[2:6]       key generation, big-endian
//	[6]         n, the length of the field class name (1 to MaxNameLen)
//	[7:7+n]     field class name, ASCII
//	[7+n:19+n]  nonce
//	[19+n:]     AES-256-GCM ciphertext and tag
//
// Version 1, still opened, has no class:
//
//	[0]     version 0x01
//	[1]     flags
//	[2:6]   key generation, big-endian
//	[6:18]  nonce
//	[18:]   AES-256-GCM ciphertext and tag
//
// The record key is HKDF-Expand(SHA-256, DEK, "jeton/v1/record\x00"||token):
// every token has its own key, so a store holding the wrapped DEKs but no
// tokens cannot open any record. The associated data binds the whole
// envelope header (of v2: the class name included), tenant, class and
// token, so a record copied or swapped under another token, or whose
// header was edited, fails to open. A v2 record opens only for a token of
// the class its header names.
//
// The header is in the clear, so the store, Redis, learns each record's
// field class: "email", "name", never a value, token or subject. That is
// acceptable because a class is configuration, not personal data: the
// same for every record of the class, and already written in the policy.
// The key name says nothing of it, and the class is no secret among
// operators. In exchange Stats can count records per class, and erasure
// and retention reports can say which kinds of data were held, without
// decrypting anything or keeping a second, clear index that could drift
// from the records.
const (
	envelopeVersion1 = 0x01
	envelopeVersion2 = 0x02
	envelopeHeader   = 6 // of v1; a v2 header is envelopeHeader+1+len(class)
	nonceSize        = 12
	tagSize          = 16
	envelopeOverhead = envelopeHeader + nonceSize + tagSize // of v1
)

// Flags are per-record markers, authenticated with the record.
type Flags byte

const (
	// FlagCanary marks a canary record: revealing it raises an alert.
	FlagCanary Flags = 1 << iota
)

var errEnvelope = errors.New("tokenizer: envelope does not open")

// envelopeHdr is a stored envelope's clear header, parsed but not
// authenticated: only opening the record proves it.
type envelopeHdr struct {
	version byte
	flags   Flags
	gen     uint32
	// class is the field class of a v2 record; "" for v1.
	class string
	// size is the header's length; the nonce follows it.
	size int
}

// parseEnvelopeHeader reads a stored envelope's header without opening it.
// It fails for an unknown version, a class that is not a valid name, or a
// blob too short to hold the header, a nonce and a tag.
func parseEnvelopeHeader(blob []byte) (envelopeHdr, error) {
	if len(blob) < envelopeOverhead {
		return envelopeHdr{}, errEnvelope
	}
	h := envelopeHdr{version: blob[0], flags: Flags(blob[1]), gen: binary.BigEndian.Uint32(blob[2:6]), size: envelopeHeader}
	switch h.version {
	case envelopeVersion1:
	case envelopeVersion2:
		n := int(blob[envelopeHeader])
		h.size = envelopeHeader + 1 + n
		if n == 0 || len(blob) < h.size+nonceSize+tagSize {
			return envelopeHdr{}, errEnvelope
		}
		h.class = string(blob[envelopeHeader+1 : h.size])
		if !ValidName(h.class) {
			return envelopeHdr{}, errEnvelope
		}
	default:
		return envelopeHdr{}, errEnvelope
	}
	return h, nil
}

// envelopeHeaderOf returns a stored envelope's flags and generation
// without opening it.
func envelopeHeaderOf(blob []byte) (flags Flags, gen uint32, err error) {
	h, err := parseEnvelopeHeader(blob)
	return h.flags, h.gen, err
}

// envelopeClassOf returns the field class a stored envelope's header
// names without opening it, and "" for a v1 envelope, which names none.
func envelopeClassOf(blob []byte) (class string, gen uint32, err error) {
	h, err := parseEnvelopeHeader(blob)
	return h.class, h.gen, err
}

// sealRecordV2 encrypts value for token under dek as a v2 envelope. The
// nonce is random and the key unique to the token, so a nonce never
// repeats under a key in practice.
func sealRecordV2(rand io.Reader, dek []byte, gen uint32, flags Flags, tok Token, tokText, value string) ([]byte, error) {
	var nonce [nonceSize]byte
	if _, err := io.ReadFull(rand, nonce[:]); err != nil {
		return nil, fmt.Errorf("tokenizer: reading nonce: %w", err)
	}
	return sealRecordMAC(newMACKey(dek), nonce[:], gen, flags, tok, tokText, value)
}

// sealRecordMAC seals a v2 envelope with the DEK's keyed state and the
// nonce given. The class in the header is tok.Class.
func sealRecordMAC(dek *macKey, nonce []byte, gen uint32, flags Flags, tok Token, tokText, value string) ([]byte, error) {
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

// openRecord decrypts a record of either version sealed for the same token.
func openRecord(dek []byte, tok Token, tokText string, blob []byte) (string, error) {
	return openRecordMAC(newMACKey(dek), tok, tokText, blob)
}

func openRecordMAC(dek *macKey, tok Token, tokText string, blob []byte) (string, error) {
	h, err := parseEnvelopeHeader(blob)
	if err != nil {
		return "", err
	}
	// The AD would refuse it too; refusing first costs no key derivation.
	if h.version == envelopeVersion2 && h.class != tok.Class {
		return "", errEnvelope
	}
	aead, err := recordAEAD(dek, tokText)
	if err != nil {
		return "", err
	}
	ad := recordAD(blob[:h.size], tok, tokText)
	nonce := blob[h.size : h.size+nonceSize]
	pt, err := aead.Open(nil, nonce, blob[h.size+nonceSize:], ad)
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
// variable field length-prefixed so no two tuples share an encoding (the
// header delimits itself: its version, and in v2 its class length, give
// its size).
func recordAD(header []byte, tok Token, tokText string) []byte {
	ad := make([]byte, 0, 21+len(header)+len(tok.Tenant)+len(tok.Class)+len(tokText))
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
