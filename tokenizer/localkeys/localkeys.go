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
	"strings"
	"sync"

	"github.com/jeton-dev/jeton/tokenizer"
)

// Wrapped keys are "lk" || version (uint32) || nonce || AES-GCM(key). The
// GCM associated data is "lk" 0x00 || kek || 0x00 || the caller's
// associated data, so a wrapped key opens only under the KEK and the
// associated data it was wrapped with, as Vault Transit's encrypt and
// decrypt with associated_data do: unit tests see a moved key fail.
const magic = "lk"

// Manager is an ephemeral in-process KeyManager. It holds the main KEK ""
// and one KEK per name the tokenizer asks for.
type Manager struct {
	rand io.Reader

	mu   sync.RWMutex
	keks map[string][]cipher.AEAD // version v of a KEK is at index v-1
}

// Option configures a Manager.
type Option func(*Manager)

// WithRand sets the randomness source (crypto/rand by default).
func WithRand(r io.Reader) Option { return func(m *Manager) { m.rand = r } }

// New returns a Manager with a fresh main KEK. devMode must be true: this
// key manager keeps no key anywhere durable and protects nothing at rest.
func New(devMode bool, opts ...Option) (*Manager, error) {
	if !devMode {
		return nil, fmt.Errorf("localkeys: %w", tokenizer.ErrDevOnly)
	}
	m := &Manager{rand: rand.Reader, keks: map[string][]cipher.AEAD{}}
	for _, o := range opts {
		o(m)
	}
	aead, err := m.newVersion()
	if err != nil {
		return nil, err
	}
	m.keks[""] = []cipher.AEAD{aead}
	return m, nil
}

var _ tokenizer.KeyManager = (*Manager)(nil)

func (m *Manager) newVersion() (cipher.AEAD, error) {
	k := make([]byte, 32)
	if _, err := io.ReadFull(m.rand, k); err != nil {
		return nil, fmt.Errorf("localkeys: %w", err)
	}
	block, err := aes.NewCipher(k)
	if err != nil {
		return nil, fmt.Errorf("localkeys: %w", err)
	}
	aead, err := cipher.NewGCM(block)
	if err != nil {
		return nil, fmt.Errorf("localkeys: %w", err)
	}
	return aead, nil
}

// Rotate adds a new version to every KEK, as custodians rotating all of
// them would; new wraps use it.
func (m *Manager) Rotate() error {
	m.mu.Lock()
	defer m.mu.Unlock()
	for name, versions := range m.keks {
		aead, err := m.newVersion()
		if err != nil {
			return err
		}
		m.keks[name] = append(versions, aead)
	}
	return nil
}

// Wrap implements tokenizer.KeyManager.
func (m *Manager) Wrap(ctx context.Context, kek string, key, ad []byte) ([]byte, error) {
	if err := ctx.Err(); err != nil {
		return nil, err
	}
	if err := checkName(kek); err != nil {
		return nil, err
	}
	if err := m.ensure(kek); err != nil {
		return nil, err
	}
	return m.wrap(kek, key, ad)
}

// checkName refuses a KEK name the tokenizer never asks for.
func checkName(kek string) error {
	if _, _, ok := tokenizer.ParseGenerationKEK(kek); kek != "" && !ok {
		return fmt.Errorf("localkeys: %q is not a generation KEK name", kek)
	}
	return nil
}

// ensure creates the KEK named kek if it does not exist.
func (m *Manager) ensure(kek string) error {
	m.mu.Lock()
	defer m.mu.Unlock()
	if _, ok := m.keks[kek]; ok {
		return nil
	}
	aead, err := m.newVersion()
	if err != nil {
		return err
	}
	m.keks[kek] = []cipher.AEAD{aead}
	return nil
}

func gcmAD(kek string, ad []byte) []byte {
	out := append([]byte(magic+"\x00"), kek...)
	return append(append(out, 0), ad...)
}

func errDestroyed(kek string) error {
	return fmt.Errorf("localkeys: KEK %q does not exist: %w", kek, tokenizer.ErrKeyDestroyed)
}

func (m *Manager) wrap(kek string, key, ad []byte) ([]byte, error) {
	m.mu.RLock()
	versions := m.keks[kek]
	m.mu.RUnlock()
	if len(versions) == 0 {
		return nil, errDestroyed(kek)
	}
	v := len(versions)
	aead := versions[v-1]
	out := binary.BigEndian.AppendUint32([]byte(magic), uint32(v))
	nonce := make([]byte, aead.NonceSize())
	if _, err := io.ReadFull(m.rand, nonce); err != nil {
		return nil, fmt.Errorf("localkeys: %w", err)
	}
	out = append(out, nonce...)
	return aead.Seal(out, nonce, key, gcmAD(kek, ad)), nil
}

var errWrapped = fmt.Errorf("localkeys: %w", tokenizer.ErrKeyMismatch)

// Unwrap implements tokenizer.KeyManager.
func (m *Manager) Unwrap(ctx context.Context, kek string, wrapped, ad []byte) ([]byte, error) {
	if err := ctx.Err(); err != nil {
		return nil, err
	}
	if len(wrapped) < len(magic)+4+12+16 || string(wrapped[:len(magic)]) != magic {
		return nil, errWrapped
	}
	v := int(binary.BigEndian.Uint32(wrapped[len(magic):]))
	m.mu.RLock()
	versions, ok := m.keks[kek]
	m.mu.RUnlock()
	if !ok {
		return nil, errDestroyed(kek)
	}
	if v < 1 || v > len(versions) {
		return nil, errWrapped
	}
	aead := versions[v-1]
	rest := wrapped[len(magic)+4:]
	key, err := aead.Open(nil, rest[:aead.NonceSize()], rest[aead.NonceSize():], gcmAD(kek, ad))
	if err != nil {
		return nil, errWrapped
	}
	return key, nil
}

// KEKs implements tokenizer.KeyManager.
func (m *Manager) KEKs(ctx context.Context, prefix string) ([]string, error) {
	if err := ctx.Err(); err != nil {
		return nil, err
	}
	m.mu.RLock()
	defer m.mu.RUnlock()
	var out []string
	for name := range m.keks {
		if name != "" && strings.HasPrefix(name, prefix) {
			out = append(out, name)
		}
	}
	return out, nil
}

// DestroyKEK implements tokenizer.KeyManager.
func (m *Manager) DestroyKEK(ctx context.Context, kek string) error {
	if err := ctx.Err(); err != nil {
		return err
	}
	if kek == "" {
		return errors.New("localkeys: refusing to destroy the main KEK")
	}
	m.mu.Lock()
	delete(m.keks, kek)
	m.mu.Unlock()
	return nil
}
