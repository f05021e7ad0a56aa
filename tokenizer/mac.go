package tokenizer

import (
	"crypto/hmac"
	"crypto/sha256"
	"hash"
	"sync"
)

// macKey is an HMAC-SHA256 key with a pool of keyed states. Reset on a
// used state restores the keyed pads without hashing the key again, which
// keeps the per-item cost of record names and keys to two compressions.
type macKey struct {
	pool sync.Pool
}

func newMACKey(key []byte) *macKey {
	k := append([]byte(nil), key...)
	return &macKey{pool: sync.Pool{New: func() any { return hmac.New(sha256.New, k) }}}
}

func (m *macKey) get() hash.Hash { h := m.pool.Get().(hash.Hash); h.Reset(); return h }

func (m *macKey) put(h hash.Hash) { m.pool.Put(h) }

// expand32 is HKDF-Expand(SHA-256, key, info, 32), which for one output
// block is HMAC(key, info || 0x01).
func (m *macKey) expand32(dst []byte, info ...string) []byte {
	h := m.get()
	var stack [128]byte
	buf := stack[:0]
	for _, s := range info {
		buf = append(buf, s...)
	}
	h.Write(append(buf, 1))
	dst = h.Sum(dst)
	m.put(h)
	return dst
}
