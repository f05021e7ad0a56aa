package audit

import (
	"context"
	"crypto/ed25519"
	"errors"
)

// ErrAnchorConflict is returned by Anchor.Store when the stored checkpoint
// is no longer at the version the caller read (check-and-set failed).
var ErrAnchorConflict = errors.New("audit: anchor: check-and-set conflict")

// An Anchor signs checkpoints of one replica's chain and keeps the latest
// outside the audit directory, so that whoever can write the directory can
// neither roll the log back nor forge a checkpoint. One Anchor serves one
// replica. The production Anchor is Vault (Transit signing key, KV v2 with
// check-and-set); dev mode uses an in-process key and a file.
type Anchor interface {
	// Sign signs msg with Ed25519 (pure, no prehash) and returns the
	// signature and the public key it verifies under.
	Sign(ctx context.Context, msg []byte) (sig []byte, pub ed25519.PublicKey, err error)
	// PublicKeys returns every public key that may have signed a
	// checkpoint still to be checked (all versions of a rotated key).
	PublicKeys(ctx context.Context) ([]ed25519.PublicKey, error)
	// Load returns the stored signed checkpoint and its version. With
	// nothing ever stored it returns nil and version 0. A checkpoint that
	// was stored and then deleted returns nil and a non-zero version.
	Load(ctx context.Context) (checkpoint []byte, version uint64, err error)
	// Store replaces the stored checkpoint if it is still at version (0:
	// none was ever stored) and returns the new version. Otherwise it
	// returns ErrAnchorConflict and stores nothing.
	Store(ctx context.Context, checkpoint []byte, version uint64) (uint64, error)
}
