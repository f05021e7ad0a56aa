package tokenizer

import (
	"crypto/hmac"
	"crypto/sha256"
	"encoding/binary"
	"hash"
	"sync"
)

// macKey is an HMAC-SHA256 key with a pool of keyed states. Reset on a
// used state restores the keyed pads without hashing the key again, which
// keeps the per-item cost of record names and keys to two compressions.
type macKey struct {
	pool sync.Pool
}

// macState is a keyed state with the scratch space one MAC needs, pooled
// together: input and output passed through the hash.Hash interface
// escape to the heap, so buffers on the caller's stack would be
// allocated anew on every call.
type macState struct {
	h   hash.Hash
	buf []byte
	sum [sha256.Size]byte
}

func newMACKey(key []byte) *macKey {
	k := append([]byte(nil), key...)
	return &macKey{pool: sync.Pool{New: func() any {
		return &macState{h: hmac.New(sha256.New, k), buf: make([]byte, 0, 256)}
	}}}
}

// mac appends HMAC(key, the concatenation of parts) to dst, through one
// write of one buffer, and allocates nothing but what dst needs.
func (m *macKey) mac(dst []byte, parts ...string) []byte {
	s := m.pool.Get().(*macState)
	s.h.Reset()
	b := s.buf[:0]
	for _, p := range parts {
		b = append(b, p...)
	}
	s.h.Write(b)
	if cap(b) <= 4096 {
		s.buf = b[:0] // keep a grown buffer, within reason
	}
	dst = append(dst, s.h.Sum(s.sum[:0])...)
	m.pool.Put(s)
	return dst
}

// macWriter is a keyed state being fed; see macKey.stream.
type macWriter struct{ s *macState }

// write adds fields to the MAC, each prefixed with its length (32 bits,
// big endian), so that no two lists of fields feed the same bytes; one
// write of the state's buffer.
func (w macWriter) write(fields ...string) {
	b := w.s.buf[:0]
	for _, f := range fields {
		b = binary.BigEndian.AppendUint32(b, uint32(len(f)))
		b = append(b, f...)
	}
	w.s.h.Write(b)
	if cap(b) <= 4096 {
		w.s.buf = b[:0]
	}
}

// writeRaw adds bytes to the MAC as they are.
func (w macWriter) writeRaw(b []byte) { w.s.h.Write(b) }

// stream appends to dst the MAC of what fill writes, with a pooled state.
func (m *macKey) stream(dst []byte, fill func(macWriter)) []byte {
	s := m.pool.Get().(*macState)
	s.h.Reset()
	fill(macWriter{s})
	dst = append(dst, s.h.Sum(s.sum[:0])...)
	m.pool.Put(s)
	return dst
}

// expand32 is HKDF-Expand(SHA-256, key, info, 32), which for one output
// block is HMAC(key, info || 0x01).
func (m *macKey) expand32(dst []byte, info ...string) []byte {
	var parts [4]string
	if len(info) < len(parts) {
		n := copy(parts[:], info)
		parts[n] = "\x01"
		return m.mac(dst, parts[:n+1]...)
	}
	return m.mac(dst, append(info, "\x01")...)
}
