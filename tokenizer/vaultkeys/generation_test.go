package vaultkeys_test

import (
	"bytes"
	"errors"
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

	key, wrapped, err := m.NewDataKey(ctx, "acme-g1")
	if err != nil {
		t.Fatalf("NewDataKey(acme-g1): %v", err)
	}
	s, err := root.Logical().ReadWithContext(ctx, "transit/keys/jeton-kek-acme-g1")
	if err != nil || s == nil {
		t.Fatalf("generation KEK not in Vault: %v", err)
	}
	for field, want := range map[string]any{"type": "aes256-gcm96", "exportable": false, "allow_plaintext_backup": false, "derived": false} {
		if got := s.Data[field]; got != want {
			t.Errorf("generation KEK %s = %v, want %v", field, got, want)
		}
	}
	if got, err := m.Unwrap(ctx, "acme-g1", wrapped); err != nil || !bytes.Equal(got, key) {
		t.Fatalf("Unwrap(acme-g1) = same key %t, %v", bytes.Equal(got, key), err)
	}
	// Only its own KEK opens it.
	if _, err := m.Unwrap(ctx, "", wrapped); err == nil {
		t.Error("the main KEK unwrapped a generation's data key")
	}
	// A second data key reuses the KEK.
	if _, _, err := m.NewDataKey(ctx, "acme-g1"); err != nil {
		t.Fatalf("second NewDataKey(acme-g1): %v", err)
	}

	for _, bad := range []string{"Acme-g1", "acme/g1", "*", "../x", "acme-g1 ", "-acme"} {
		if _, _, err := m.NewDataKey(ctx, bad); err == nil || errors.Is(err, tokenizer.ErrUnavailable) {
			t.Errorf("NewDataKey(%q) = %v, want a refusal", bad, err)
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
	for name, call := range map[string]func() error{
		"Unwrap": func() error { _, err := m.Unwrap(ctx, "acme-g1", wrapped); return err },
		"Rewrap": func() error { _, err := m.Rewrap(ctx, "acme-g1", wrapped); return err },
	} {
		err := call()
		if !errors.Is(err, tokenizer.ErrKeyDestroyed) || errors.Is(err, tokenizer.ErrUnavailable) {
			t.Errorf("%s after DestroyKEK: %v, want ErrKeyDestroyed and not ErrUnavailable", name, err)
		}
	}
	// The main KEK is untouched.
	if _, _, err := m.NewDataKey(ctx, ""); err != nil {
		t.Errorf("main KEK after destroying a generation KEK: %v", err)
	}
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
		_, _, err := m.NewDataKey(ctx, tc.kek)
		if err == nil {
			t.Errorf("NewDataKey(%s) used an unsafe KEK", tc.kek)
		} else if errors.Is(err, tokenizer.ErrUnavailable) {
			t.Errorf("NewDataKey(%s): %v wraps ErrUnavailable; an unsafe KEK is not an outage", tc.kek, err)
		}
	}
}
