// Package fileanchor is the dev-mode audit.Anchor: an Ed25519 key held in
// memory for the life of the process, and checkpoints kept in a file
// outside the audit directory. It protects nothing in production: whoever
// can write its directory can replace the checkpoint. jetond --dev uses it
// so that the verify command it prints works like the real one, with the
// public key only.
package fileanchor

import (
	"bytes"
	"context"
	"crypto/ed25519"
	"crypto/rand"
	"crypto/sha256"
	"encoding/binary"
	"errors"
	"fmt"
	"io"
	"os"
	"path/filepath"
	"sync"

	"github.com/jeton-dev/jeton/server/audit"
)

// PublicKeyName is the file, in the anchor's directory, that holds the
// verifier key (audit.VerifierKey) for jeton audit verify --public-key.
const PublicKeyName = "public-key"

// Anchor keeps one replica's checkpoint in dir/<replica>.checkpoint.
type Anchor struct {
	path string
	priv ed25519.PrivateKey
	pub  ed25519.PublicKey
	mu   sync.Mutex // orders Load and Store within the process
}

// New makes an Anchor in dir (created 0700) with a new key from rand
// (crypto/rand when nil), and writes the public key to dir/public-key.
func New(dir, replica string, rnd io.Reader) (*Anchor, error) {
	if !audit.ValidReplica(replica) {
		return nil, fmt.Errorf("fileanchor: invalid replica id %q", replica)
	}
	if rnd == nil {
		rnd = rand.Reader
	}
	pub, priv, err := ed25519.GenerateKey(rnd)
	if err != nil {
		return nil, fmt.Errorf("fileanchor: %w", err)
	}
	if err := os.MkdirAll(dir, 0o700); err != nil {
		return nil, fmt.Errorf("fileanchor: %w", err)
	}
	vkey, err := audit.VerifierKey(pub)
	if err != nil {
		return nil, err
	}
	if err := os.WriteFile(filepath.Join(dir, PublicKeyName), []byte(vkey+"\n"), 0o644); err != nil {
		return nil, fmt.Errorf("fileanchor: %w", err)
	}
	return &Anchor{path: CheckpointPath(dir, replica), priv: priv, pub: pub}, nil
}

// CheckpointPath is where the checkpoint of replica lives under dir.
func CheckpointPath(dir, replica string) string {
	return filepath.Join(dir, replica+".checkpoint")
}

// Sign implements audit.Anchor.
func (a *Anchor) Sign(_ context.Context, msg []byte) ([]byte, ed25519.PublicKey, error) {
	return ed25519.Sign(a.priv, msg), a.pub, nil
}

// PublicKeys implements audit.Anchor.
func (a *Anchor) PublicKeys(context.Context) ([]ed25519.PublicKey, error) {
	return []ed25519.PublicKey{a.pub}, nil
}

// Load implements audit.Anchor. The version is derived from the file's
// contents, so check-and-set also holds against another process.
func (a *Anchor) Load(context.Context) ([]byte, uint64, error) {
	a.mu.Lock()
	defer a.mu.Unlock()
	return a.read()
}

func (a *Anchor) read() ([]byte, uint64, error) {
	b, err := os.ReadFile(a.path)
	if errors.Is(err, os.ErrNotExist) {
		return nil, 0, nil
	}
	if err != nil {
		return nil, 0, fmt.Errorf("fileanchor: %w", err)
	}
	return b, version(b), nil
}

func version(b []byte) uint64 {
	sum := sha256.Sum256(b)
	return binary.BigEndian.Uint64(sum[:]) | 1
}

// Store implements audit.Anchor: it replaces the file atomically.
func (a *Anchor) Store(_ context.Context, checkpoint []byte, v uint64) (uint64, error) {
	a.mu.Lock()
	defer a.mu.Unlock()
	cur, cv, err := a.read()
	if err != nil {
		return 0, err
	}
	if cv != v || (cur == nil) != (v == 0) {
		return 0, audit.ErrAnchorConflict
	}
	if bytes.Equal(cur, checkpoint) {
		return cv, nil
	}
	// The content is durable before the rename, and the rename before the
	// checkpoint counts as stored: after a power loss the file holds this
	// checkpoint or the one before, never an empty or lost file.
	tmp := a.path + ".tmp"
	if err := writeSynced(tmp, checkpoint); err != nil {
		return 0, fmt.Errorf("fileanchor: %w", err)
	}
	if err := os.Rename(tmp, a.path); err != nil {
		return 0, fmt.Errorf("fileanchor: %w", err)
	}
	if err := syncPath(filepath.Dir(a.path)); err != nil {
		return 0, fmt.Errorf("fileanchor: %w", err)
	}
	return version(checkpoint), nil
}

// syncFile is what Store needs of an open file; openFile is a seam for
// tests that watch the fsyncs.
type syncFile interface {
	Write([]byte) (int, error)
	Sync() error
	Close() error
}

var openFile = func(name string, flag int, perm os.FileMode) (syncFile, error) {
	return os.OpenFile(name, flag, perm)
}

func writeSynced(path string, b []byte) error {
	f, err := openFile(path, os.O_WRONLY|os.O_CREATE|os.O_TRUNC, 0o600)
	if err != nil {
		return err
	}
	_, err = f.Write(b)
	if err == nil {
		err = f.Sync()
	}
	if cerr := f.Close(); err == nil {
		err = cerr
	}
	return err
}

// syncPath fsyncs a directory (os.OpenFile opens one read-only).
func syncPath(path string) error {
	f, err := openFile(path, os.O_RDONLY, 0)
	if err != nil {
		return err
	}
	err = f.Sync()
	if cerr := f.Close(); err == nil {
		err = cerr
	}
	return err
}
