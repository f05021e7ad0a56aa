// Package localkeys is an in-process tokenizer.KeyManager with an
// ephemeral KEK, for dev mode and unit tests only. The KEK lives in process
// memory and dies with it, so every record is lost on restart. New refuses
// to build one unless the caller states that dev mode is on.
package localkeys

import (
	"context"
	"crypto/aes"
	"crypto/cipher"
	"crypto/rand"
	"encoding/binary"
	"errors"
	"fmt"
	"io"
	"sync"

	"github.com/jeton-dev/jeton/tokenizer"
)

// Wrapped keys are "lk" || version (uint32) || nonce || AES-GCM(key), so a
// rewrap after Rotate moves a key to the newest KEK version.
const magic = "lk"

// Manager is an ephemeral in-process KeyManager.
type Manager struct {
	rand io.Reader

	mu   sync.RWMutex
	keks []cipher.AEAD // version v is keks[v-1]
}

// Option configures a Manager.
type Option func(*Manager)

// WithRand sets the randomness source (crypto/rand by default).
func WithRand(r io.Reader) Option { return func(m *Manager) { m.rand = r } }

// New returns a Manager with a fresh KEK. devMode must be true: this key
// manager keeps no key anywhere durable and protects nothing at rest.
func New(devMode bool, opts ...Option) (*Manager, error) {
	if !devMode {
		return nil, fmt.Errorf("localkeys: %w", tokenizer.ErrDevOnly)
	}
	m := &Manager{rand: rand.Reader}
	for _, o := range opts {
		o(m)
	}
	if err := m.Rotate(); err != nil {
		return nil, err
	}
	return m, nil
}

var _ tokenizer.KeyManager = (*Manager)(nil)

// Rotate adds a new KEK version; new wraps use it.
func (m *Manager) Rotate() error {
	k := make([]byte, 32)
	if _, err := io.ReadFull(m.rand, k); err != nil {
		return fmt.Errorf("localkeys: %w", err)
	}
	block, err := aes.NewCipher(k)
	if err != nil {
		return fmt.Errorf("localkeys: %w", err)
	}
	aead, err := cipher.NewGCM(block)
	if err != nil {
		return fmt.Errorf("localkeys: %w", err)
	}
	m.mu.Lock()
	m.keks = append(m.keks, aead)
	m.mu.Unlock()
	return nil
}

// NewDataKey implements tokenizer.KeyManager.
func (m *Manager) NewDataKey(ctx context.Context) ([]byte, []byte, error) {
	if err := ctx.Err(); err != nil {
		return nil, nil, err
	}
	key := make([]byte, 32)
	if _, err := io.ReadFull(m.rand, key); err != nil {
		return nil, nil, fmt.Errorf("localkeys: %w", err)
	}
	wrapped, err := m.wrap(key)
	if err != nil {
		return nil, nil, err
	}
	return key, wrapped, nil
}

func (m *Manager) wrap(key []byte) ([]byte, error) {
	m.mu.RLock()
	v := len(m.keks)
	aead := m.keks[v-1]
	m.mu.RUnlock()
	out := binary.BigEndian.AppendUint32([]byte(magic), uint32(v))
	nonce := make([]byte, aead.NonceSize())
	if _, err := io.ReadFull(m.rand, nonce); err != nil {
		return nil, fmt.Errorf("localkeys: %w", err)
	}
	out = append(out, nonce...)
	return aead.Seal(out, nonce, key, []byte(magic)), nil
}

var errWrapped = errors.New("localkeys: wrapped key does not open")

// Unwrap implements tokenizer.KeyManager.
func (m *Manager) Unwrap(ctx context.Context, wrapped []byte) ([]byte, error) {
	if err := ctx.Err(); err != nil {
		return nil, err
	}
	if len(wrapped) < len(magic)+4+12+16 || string(wrapped[:len(magic)]) != magic {
		return nil, errWrapped
	}
	v := int(binary.BigEndian.Uint32(wrapped[len(magic):]))
	m.mu.RLock()
	defer m.mu.RUnlock()
	if v < 1 || v > len(m.keks) {
		return nil, errWrapped
	}
	aead := m.keks[v-1]
	rest := wrapped[len(magic)+4:]
	key, err := aead.Open(nil, rest[:aead.NonceSize()], rest[aead.NonceSize():], []byte(magic))
	if err != nil {
		return nil, errWrapped
	}
	return key, nil
}

// Rewrap implements tokenizer.KeyManager.
func (m *Manager) Rewrap(ctx context.Context, wrapped []byte) ([]byte, error) {
	key, err := m.Unwrap(ctx, wrapped)
	if err != nil {
		return nil, err
	}
	return m.wrap(key)
}
