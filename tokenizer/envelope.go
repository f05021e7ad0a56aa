package tokenizer

import (
	"crypto/aes"
	"crypto/cipher"
	"encoding/binary"
	"errors"
	"fmt"
	"io"
	"sync"
)

// Record envelope, version 3, the one the service writes:
//
//	[0]         version 0x03
//	[1:5]       key generation, big-endian
//	[5]         n, the length of the field class name (1 to MaxNameLen)
//	[6:6+n]     field class name, ASCII
//	[6+n:18+n]  nonce
//	[18+n:]     AES-256-GCM ciphertext and tag of the padded body:
//
//	body = flags (1 byte) || value || 0x80 || 0x00 ... 0x00
//
// The body is padded (ISO/IEC 7816-4: one 0x80, then zeros) to the
// smallest size bucket that holds it: 32 bytes, then 64, 128, 256 and
// every further power of two (see paddedSize). The store, Redis, so learns
// a record's bucket, never its value's exact length, and nothing tells a
// canary from any other record: its flags are sealed inside the body.
//
// Version 2, still opened, kept the flags in the clear and did not pad:
//
//	[0]         version 0x02
//	[1]         flags (FlagCanary, ...)
//	[2:6]       key generation, big-endian
//	[6]         n, the length of the field class name
//	[7:7+n]     field class name, ASCII
//	[7+n:19+n]  nonce
//	[19+n:]     AES-256-GCM ciphertext and tag of the value
//
// Version 1, still opened, is version 2 without the class:
//
//	[0]     version 0x01
//	[1]     flags
//	[2:6]   key generation, big-endian
//	[6:18]  nonce
//	[18:]   AES-256-GCM ciphertext and tag of the value
//
// The record key is HKDF-Expand(SHA-256, DEK, "jeton/v1/record\x00"||token):
// every token has its own key, so a store holding the wrapped DEKs but no
// tokens cannot open any record. The associated data binds the whole
// envelope header (from v2 on: the class name included), tenant, class and
// token, so a record copied or swapped under another token, or whose
// header was edited, fails to open. A v2 or v3 record opens only for a
// token of the class its header names.
//
// The generation and the class stay in the clear. The generation must:
// a replica reads it to pick the DEK, and a destroyed generation's records
// are found by it without any key. The class may: it is configuration, not
// personal data, the same for every record of the class and already
// written in the policy; the key name says nothing of it. In exchange
// Stats can count records per class, and erasure and retention reports can
// say which kinds of data were held, without decrypting anything (Stats
// holds no token, so it could not open a record anyway) or keeping a
// second, clear index that could drift from the records. So Redis learns
// of each record its class, generation and size bucket, and no more.
const (
	envelopeVersion1 = 0x01
	envelopeVersion2 = 0x02
	envelopeVersion3 = 0x03
	envelopeHeader   = 6 // of v1; a v2 header is envelopeHeader+1+len(class)
	nonceSize        = 12
	tagSize          = 16
	envelopeOverhead = envelopeHeader + nonceSize + tagSize // of v1
	// v3HeaderFixed is a v3 header without its class name.
	v3HeaderFixed = 6
	// minBucket is the smallest padded body; buckets double from it.
	minBucket = 32
	// padMarker ends a v3 body's value; only zeros follow it.
	padMarker = 0x80
)

// Flags are per-record markers, authenticated with the record, and from
// version 3 on sealed with it.
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
	// legacyFlags are the clear flags of a v1 or v2 record; a v3 record
	// keeps its flags in the sealed body, and opening it returns them.
	legacyFlags Flags
	gen         uint32
	// class is the field class of a v2 or v3 record; "" for v1. Only
	// parseEnvelopeHeader sets it: scanEnvelopeHeader leaves it in the
	// blob, at blob[classAt:size].
	class   string
	classAt int
	// size is the header's length; the nonce follows it.
	size int
}

// parseEnvelopeHeader reads a stored envelope's header without opening it.
// It fails for an unknown version, a class that is not a valid name, or a
// blob too short to hold the header, a nonce and a tag (for v3, and a
// smallest padded body).
func parseEnvelopeHeader(blob []byte) (envelopeHdr, error) {
	h, err := scanEnvelopeHeader(blob)
	if err != nil {
		return envelopeHdr{}, err
	}
	h.class = string(blob[h.classAt:h.size])
	return h, nil
}

// scanEnvelopeHeader is parseEnvelopeHeader, with the same checks, but
// leaves the class name in blob instead of copying it out: what opening a
// record needs, once per record.
func scanEnvelopeHeader(blob []byte) (envelopeHdr, error) {
	if len(blob) < 1 {
		return envelopeHdr{}, errEnvelope
	}
	var h envelopeHdr
	switch h.version = blob[0]; h.version {
	case envelopeVersion1, envelopeVersion2:
		if len(blob) < envelopeOverhead {
			return envelopeHdr{}, errEnvelope
		}
		h.legacyFlags, h.gen, h.size = Flags(blob[1]), binary.BigEndian.Uint32(blob[2:6]), envelopeHeader
		h.classAt = h.size
		if h.version == envelopeVersion2 {
			if h.classAt, h.size = scanClass(blob, envelopeHeader); h.size == 0 || len(blob) < h.size+nonceSize+tagSize {
				return envelopeHdr{}, errEnvelope
			}
		}
	case envelopeVersion3:
		if len(blob) < v3HeaderFixed+nonceSize+minBucket+tagSize {
			return envelopeHdr{}, errEnvelope
		}
		h.gen = binary.BigEndian.Uint32(blob[1:5])
		if h.classAt, h.size = scanClass(blob, v3HeaderFixed-1); h.size == 0 || len(blob) < h.size+nonceSize+minBucket+tagSize {
			return envelopeHdr{}, errEnvelope
		}
	default:
		return envelopeHdr{}, errEnvelope
	}
	return h, nil
}

// scanClass finds the length-prefixed class name at blob[at]: it is
// blob[start:end], and end is the header size it ends. end is 0 when it is
// not a valid name.
func scanClass(blob []byte, at int) (start, end int) {
	n := int(blob[at])
	start, end = at+1, at+1+n
	// ValidName keeps no reference to its argument, so the conversion
	// copies nothing to the heap.
	if n == 0 || len(blob) < end || !ValidName(string(blob[start:end])) {
		return 0, 0
	}
	return start, end
}

// envelopeClassOf returns the generation and the field class a stored
// envelope's header names without opening it, and "" as the class of a v1
// envelope, which names none.
func envelopeClassOf(blob []byte) (class string, gen uint32, err error) {
	h, err := parseEnvelopeHeader(blob)
	return h.class, h.gen, err
}

// paddedSize is the size bucket of a v3 body holding a value of n bytes:
// the smallest of 32, 64, 128, ... that holds the flags byte, the value and
// the 0x80 marker.
func paddedSize(n int) int {
	size := minBucket
	for size < n+2 {
		size *= 2
	}
	return size
}

// sealRecordMAC encrypts value for token as a v3 envelope, with the DEK's
// keyed state and the nonce given. The class in the header is tok.Class;
// flags are sealed in the padded body. The nonce must be random: a
// deterministic token's record is sealed again under the same key each
// time its value is tokenized, so a counter or a fixed nonce would repeat.
func sealRecordMAC(dek *macKey, nonce []byte, gen uint32, flags Flags, tok Token, tokText, value string) ([]byte, error) {
	if !ValidName(tok.Class) {
		return nil, errors.New("tokenizer: sealing a record with an invalid class name")
	}
	sc := getScratch()
	defer putScratch(sc)
	aead, err := sc.recordAEAD(dek, tokText)
	if err != nil {
		return nil, err
	}
	hs := v3HeaderFixed + len(tok.Class)
	body := paddedSize(len(value))
	out := make([]byte, hs+nonceSize+body, hs+nonceSize+body+tagSize)
	out[0] = envelopeVersion3
	binary.BigEndian.PutUint32(out[1:5], gen)
	out[5] = byte(len(tok.Class))
	copy(out[v3HeaderFixed:], tok.Class)
	copy(out[hs:], nonce)
	pt := out[hs+nonceSize:]
	pt[0] = byte(flags)
	copy(pt[1:], value)
	pt[1+len(value)] = padMarker // the rest is already zero
	sc.ad = appendRecordAD(sc.ad[:0], out[:hs], tok, tokText)
	return aead.Seal(out[:hs+nonceSize], out[hs:hs+nonceSize], pt, sc.ad), nil
}

// openRecord decrypts a record of any version sealed for the same token.
func openRecord(dek []byte, tok Token, tokText string, blob []byte) (string, Flags, error) {
	return openRecordMAC(newMACKey(dek), tok, tokText, blob)
}

// openRecordMAC decrypts a record of any version sealed for the same token
// and returns its value and flags: from the sealed body of a v3 record,
// from the authenticated clear header of an older one.
//
// Its working memory (the associated data, the plaintext) comes from a pool
// and the plaintext is cleared before it goes back: per record, only the
// AES-GCM instance of the record's own key and the returned value are
// allocated.
func openRecordMAC(dek *macKey, tok Token, tokText string, blob []byte) (string, Flags, error) {
	h, err := scanEnvelopeHeader(blob)
	if err != nil {
		return "", 0, err
	}
	// The AD would refuse it too; refusing first costs no key derivation.
	if h.version != envelopeVersion1 && string(blob[h.classAt:h.size]) != tok.Class {
		return "", 0, errEnvelope
	}
	sc := getScratch()
	defer putScratch(sc)
	aead, err := sc.recordAEAD(dek, tokText)
	if err != nil {
		return "", 0, err
	}
	sc.ad = appendRecordAD(sc.ad[:0], blob[:h.size], tok, tokText)
	nonce := blob[h.size : h.size+nonceSize]
	pt, err := aead.Open(sc.pt[:0], nonce, blob[h.size+nonceSize:], sc.ad)
	sc.pt = pt[:0] // keep a grown buffer, cleared by putScratch
	if err != nil {
		return "", 0, errEnvelope
	}
	if h.version != envelopeVersion3 {
		return string(pt), h.legacyFlags, nil
	}
	// Authenticated, so only a sealer bug could get the padding wrong;
	// still, never return a value that is not exactly what was sealed.
	end := len(pt) - 1
	for end > 0 && pt[end] == 0 {
		end--
	}
	if end < 1 || pt[end] != padMarker || len(pt) != paddedSize(end-1) {
		return "", 0, errEnvelope
	}
	return string(pt[1:end]), Flags(pt[0]), nil
}

func recordAEAD(dek *macKey, tokText string) (cipher.AEAD, error) {
	sc := getScratch()
	defer putScratch(sc)
	return sc.recordAEAD(dek, tokText)
}

// recordAEAD derives a record's key into sc; the AES key schedule copies
// it, so sc may be reused as soon as this returns.
func (sc *scratch) recordAEAD(dek *macKey, tokText string) (cipher.AEAD, error) {
	sc.key = dek.expand32(sc.key[:0], "jeton/v1/record\x00", tokText)
	return newGCM(sc.key)
}

// scratch is the working memory of sealing or opening one record, pooled
// because every item of a batch needs it: the record key (which the AES
// key schedule copies), the associated data and the plaintext.
type scratch struct {
	key, ad, pt []byte
}

var scratchPool = sync.Pool{New: func() any { return new(scratch) }}

func getScratch() *scratch { return scratchPool.Get().(*scratch) }

// putScratch clears what sc held, a record key and possibly a value, and
// pools it.
func putScratch(sc *scratch) {
	clear(sc.key[:cap(sc.key)])
	clear(sc.pt[:cap(sc.pt)])
	// A huge value's buffer is not worth keeping.
	if cap(sc.pt) > 64<<10 {
		sc.pt = nil
	}
	scratchPool.Put(sc)
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
	return appendRecordAD(make([]byte, 0, 21+len(header)+len(tok.Tenant)+len(tok.Class)+len(tokText)), header, tok, tokText)
}

// appendRecordAD appends recordAD(header, tok, tokText) to ad.
func appendRecordAD(ad []byte, header []byte, tok Token, tokText string) []byte {
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
