package vaultkeys_test

import (
	"bytes"
	"errors"
	"slices"
	"testing"

	"github.com/jeton-dev/jeton/tokenizer"
	"github.com/jeton-dev/jeton/tokenizer/vaultkeys"
)

// A generation KEK is created on first use with safe flags, wraps only
// its own data keys, and once destroyed is gone from Vault: what it
// wrapped reads as destroyed, not as an outage.
func TestGenerationKEKLifecycle(t *testing.T) {
	v, root, _ := setupVault(t, vaultkeys.SetupConfig{})
	m, _ := jetondManager(t, v, root)
	ctx := ctxT(t)

	key, wrapped := newWrapped(t, ctx, m, "acme-g1")
	s, err := root.Logical().ReadWithContext(ctx, "transit/keys/jeton-kek-acme-g1")
	if err != nil || s == nil {
		t.Fatalf("generation KEK not in Vault: %v", err)
	}
	for field, want := range map[string]any{"type": "aes256-gcm96", "exportable": false, "allow_plaintext_backup": false, "derived": false} {
		if got := s.Data[field]; got != want {
			t.Errorf("generation KEK %s = %v, want %v", field, got, want)
		}
	}
	if got, err := m.Unwrap(ctx, "acme-g1", wrapped, testAD); err != nil || !bytes.Equal(got, key) {
		t.Fatalf("Unwrap(acme-g1) = same key %t, %v", bytes.Equal(got, key), err)
	}
	// Only its own KEK opens it: not the main KEK, not another
	// generation's.
	newWrapped(t, ctx, m, "acme-g2")
	for _, other := range []string{"", "acme-g2"} {
		if _, err := m.Unwrap(ctx, other, wrapped, testAD); !errors.Is(err, tokenizer.ErrKeyMismatch) {
			t.Errorf("Unwrap under %q of a key of acme-g1: %v, want ErrKeyMismatch", other, err)
		}
	}
	// A second wrap reuses the KEK.
	newWrapped(t, ctx, m, "acme-g1")
	// The tenant "acme-g1" has KEKs whose names start like acme's.
	newWrapped(t, ctx, m, "acme-g1-g1")
	got, err := m.KEKs(ctx, "acme-g")
	slices.Sort(got)
	if err != nil || !slices.Equal(got, []string{"acme-g1", "acme-g1-g1", "acme-g2"}) {
		t.Errorf("KEKs(acme-g) = %q, %v", got, err)
	}

	for _, bad := range []string{"Acme-g1", "acme/g1", "*", "../x", "acme-g1 ", "-acme", "acme", "acme-g0", "acme-g01"} {
		if _, err := m.Wrap(ctx, bad, key, testAD); err == nil || errors.Is(err, tokenizer.ErrUnavailable) {
			t.Errorf("Wrap(%q) = %v, want a refusal", bad, err)
		}
	}
	if err := m.DestroyKEK(ctx, ""); err == nil {
		t.Fatal("DestroyKEK accepted the main KEK")
	}

	for range 2 { // idempotent
		if err := m.DestroyKEK(ctx, "acme-g1"); err != nil {
			t.Fatalf("DestroyKEK(acme-g1): %v", err)
		}
	}
	if s, err := root.Logical().ReadWithContext(ctx, "transit/keys/jeton-kek-acme-g1"); err != nil || s != nil {
		t.Fatalf("generation KEK still in Vault after DestroyKEK: %v, %v", s, err)
	}
	if _, err := m.Unwrap(ctx, "acme-g1", wrapped, testAD); !errors.Is(err, tokenizer.ErrKeyDestroyed) || errors.Is(err, tokenizer.ErrUnavailable) {
		t.Errorf("Unwrap after DestroyKEK: %v, want ErrKeyDestroyed and not ErrUnavailable", err)
	}
	if got, err := m.KEKs(ctx, "acme-g"); err != nil || slices.Contains(got, "acme-g1") {
		t.Errorf("KEKs after DestroyKEK = %q, %v", got, err)
	}
	// The main KEK is untouched.
	newWrapped(t, ctx, m, "")
}

// A key squatting in the generation namespace with unsafe flags (made by
// someone with more rights than jetond) is refused, not used.
func TestGenerationKEKRefusesUnsafeKey(t *testing.T) {
	v, root, _ := setupVault(t, vaultkeys.SetupConfig{})
	m, _ := jetondManager(t, v, root)
	ctx := ctxT(t)
	for _, tc := range []struct {
		kek  string
		data map[string]any
	}{
		{"acme-g1", map[string]any{"type": "aes256-gcm96", "exportable": true}},
		{"acme-g2", map[string]any{"type": "aes256-gcm96", "allow_plaintext_backup": true}},
		{"acme-g3", map[string]any{"type": "chacha20-poly1305"}},
	} {
		if _, err := root.Logical().WriteWithContext(ctx, "transit/keys/jeton-kek-"+tc.kek, tc.data); err != nil {
			t.Fatal(err)
		}
		_, err := m.Wrap(ctx, tc.kek, make([]byte, 32), testAD)
		if err == nil {
			t.Errorf("Wrap(%s) used an unsafe KEK", tc.kek)
		} else if errors.Is(err, tokenizer.ErrUnavailable) {
			t.Errorf("Wrap(%s): %v wraps ErrUnavailable; an unsafe KEK is not an outage", tc.kek, err)
		}
	}
}
