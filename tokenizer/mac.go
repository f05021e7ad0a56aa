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
	pool sync.Pool // of *macState
}

// macState is a pooled keyed state with memory to feed it from and sum it
// into: a buffer on the caller's stack passed to the hash's Write or Sum
// would move to the heap, once per item.
type macState struct {
	hash.Hash
	buf [128]byte
	sum [sha256.Size]byte
}

func newMACKey(key []byte) *macKey {
	k := append([]byte(nil), key...)
	return &macKey{pool: sync.Pool{New: func() any { return &macState{Hash: hmac.New(sha256.New, k)} }}}
}

func (m *macKey) get() hash.Hash { return m.state() }

func (m *macKey) put(h hash.Hash) { m.pool.Put(h) }

func (m *macKey) state() *macState {
	st := m.pool.Get().(*macState)
	st.Reset()
	return st
}

// expand32 is HKDF-Expand(SHA-256, key, info, 32), which for one output
// block is HMAC(key, info || 0x01). It appends the key to dst.
func (m *macKey) expand32(dst []byte, info ...string) []byte {
	st := m.state()
	buf := st.buf[:0]
	for _, s := range info {
		buf = append(buf, s...)
	}
	st.Write(append(buf, 1))
	dst = append(dst, st.Sum(st.sum[:0])...)
	clear(st.sum[:])
	m.put(st)
	return dst
}
