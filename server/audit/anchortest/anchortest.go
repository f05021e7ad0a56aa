// Package anchortest is the conformance suite every audit.Anchor passes:
// the file anchor of dev mode and the Vault anchor alike.
package anchortest

import (
	"context"
	"crypto/ed25519"
	"errors"
	"testing"

	"github.com/jeton-dev/jeton/server/audit"
)

// Run tests the anchors newAnchor returns. Each call must return an Anchor
// for a replica nothing was stored for yet; calls with the same shared
// key return anchors of the same replica (two writers racing).
func Run(t *testing.T, newAnchor func(t *testing.T, replica string) audit.Anchor) {
	ctx := context.Background()

	t.Run("sign verifies under a listed public key", func(t *testing.T) {
		a := newAnchor(t, "conformance-sign")
		msg := []byte("jeton-audit/conformance-sign\n1\nAAAA\n")
		sig, pub, err := a.Sign(ctx, msg)
		if err != nil {
			t.Fatal(err)
		}
		if !ed25519.Verify(pub, msg, sig) {
			t.Fatal("the signature does not verify under the key Sign returned")
		}
		if ed25519.Verify(pub, append(msg, 'x'), sig) {
			t.Fatal("the signature verifies for another message")
		}
		keys, err := a.PublicKeys(ctx)
		if err != nil {
			t.Fatal(err)
		}
		found := false
		for _, k := range keys {
			found = found || k.Equal(pub)
		}
		if !found {
			t.Fatal("PublicKeys does not list the key that signed")
		}
	})

	t.Run("check-and-set", func(t *testing.T) {
		a := newAnchor(t, "conformance-cas")
		cp, v, err := a.Load(ctx)
		if err != nil || cp != nil || v != 0 {
			t.Fatalf("Load of a new replica = %q, %d, %v; want nothing, 0", cp, v, err)
		}
		if _, err := a.Store(ctx, []byte("one\n"), 7); !errors.Is(err, audit.ErrAnchorConflict) {
			t.Fatalf("Store at a version that does not exist = %v, want ErrAnchorConflict", err)
		}
		v1, err := a.Store(ctx, []byte("one\n"), 0)
		if err != nil {
			t.Fatal(err)
		}
		if _, err := a.Store(ctx, []byte("rival\n"), 0); !errors.Is(err, audit.ErrAnchorConflict) {
			t.Fatalf("a second Store as if none existed = %v, want ErrAnchorConflict", err)
		}
		v2, err := a.Store(ctx, []byte("two\n"), v1)
		if err != nil {
			t.Fatal(err)
		}
		if _, err := a.Store(ctx, []byte("stale\n"), v1); !errors.Is(err, audit.ErrAnchorConflict) {
			t.Fatalf("Store at a stale version = %v, want ErrAnchorConflict", err)
		}
		got, v, err := a.Load(ctx)
		if err != nil || string(got) != "two\n" || v != v2 {
			t.Fatalf("Load = %q, %d, %v; want two, %d", got, v, err, v2)
		}
	})

	t.Run("replicas are apart", func(t *testing.T) {
		a, b := newAnchor(t, "conformance-a"), newAnchor(t, "conformance-b")
		if _, err := a.Store(ctx, []byte("a\n"), 0); err != nil {
			t.Fatal(err)
		}
		if got, v, err := b.Load(ctx); err != nil || got != nil || v != 0 {
			t.Fatalf("replica b sees %q, %d, %v", got, v, err)
		}
	})
}
