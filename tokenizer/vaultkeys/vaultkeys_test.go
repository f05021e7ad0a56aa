package vaultkeys_test

import (
	"bytes"
	"context"
	"crypto/rand"
	"encoding/base64"
	"errors"
	"log/slog"
	"os"
	"path/filepath"
	"regexp"
	"slices"
	"strconv"
	"strings"
	"sync"
	"testing"
	"time"

	vaultapi "github.com/hashicorp/vault/api"

	"github.com/jeton-dev/jeton/integration/testenv"
	"github.com/jeton-dev/jeton/tokenizer"
	"github.com/jeton-dev/jeton/tokenizer/vaultkeys"
)

// callTimeout bounds every Vault call a test makes, so a hang fails the test
// instead of the whole run.
const callTimeout = 20 * time.Second

func ctxT(t testing.TB) context.Context {
	t.Helper()
	ctx, cancel := context.WithTimeout(t.Context(), callTimeout)
	t.Cleanup(cancel)
	return ctx
}

// clientFor returns a client for v carrying token, as cmd/jetond would
// build one (api.DefaultConfig), but aimed at the test's server.
func clientFor(t testing.TB, v *testenv.Vault, token string) *vaultapi.Client {
	t.Helper()
	cfg := vaultapi.DefaultConfig()
	cfg.Address = v.Addr
	c, err := vaultapi.NewClient(cfg)
	if err != nil {
		t.Fatalf("vault client: %v", err)
	}
	c.ClearNamespace()
	c.SetToken(token)
	return c
}

// tokenWith creates a renewable token carrying exactly the given policies,
// without "default", so a test proves the policy alone is enough.
func tokenWith(t testing.TB, root *vaultapi.Client, ttl string, policies ...string) string {
	t.Helper()
	s, err := root.Auth().Token().CreateWithContext(ctxT(t), &vaultapi.TokenCreateRequest{
		Policies:        policies,
		NoDefaultPolicy: true,
		TTL:             ttl,
		Renewable:       new(true),
	})
	if err != nil {
		t.Fatalf("create token with %v: %v", policies, err)
	}
	return s.Auth.ClientToken
}

// setupVault starts a real Vault and runs Setup on it.
func setupVault(t testing.TB, cfg vaultkeys.SetupConfig) (*testenv.Vault, *vaultapi.Client, *vaultkeys.SetupResult) {
	t.Helper()
	v := testenv.StartVault(t)
	root := v.Client(t)
	res, err := vaultkeys.Setup(ctxT(t), root, cfg)
	if err != nil {
		t.Fatalf("Setup: %v", err)
	}
	return v, root, res
}

func newManager(t testing.TB, c *vaultapi.Client, cfg vaultkeys.Config) *vaultkeys.Manager {
	t.Helper()
	m, err := vaultkeys.New(ctxT(t), c, cfg)
	if err != nil {
		t.Fatalf("New: %v", err)
	}
	t.Cleanup(m.Close)
	return m
}

// jetondManager runs a Manager with a token limited to jeton-jetond: tests
// never run the Manager as root.
func jetondManager(t testing.TB, v *testenv.Vault, root *vaultapi.Client) (*vaultkeys.Manager, *vaultapi.Client) {
	t.Helper()
	c := clientFor(t, v, tokenWith(t, root, "1h", vaultkeys.PolicyJetond))
	return newManager(t, c, vaultkeys.Config{}), c
}

func wrappedVersion(t testing.TB, wrapped []byte) int {
	t.Helper()
	m := regexp.MustCompile(`^vault:v(\d+):[A-Za-z0-9+/]+=*$`).FindSubmatch(wrapped)
	if m == nil {
		t.Fatalf("wrapped key is not a Transit ciphertext (%d bytes)", len(wrapped))
	}
	n, _ := strconv.Atoi(string(m[1]))
	return n
}

// testAD stands for the associated data the tokenizer binds a key to.
var testAD = []byte("jeton/v1/key\x00root\x00acme\x00\x00\x00\x00\x00")

// newWrapped makes a fresh fake key, as the tokenizer makes its keys, and
// has m wrap it under kek bound to testAD.
func newWrapped(t testing.TB, ctx context.Context, m *vaultkeys.Manager, kek string) (key, wrapped []byte) {
	t.Helper()
	key = make([]byte, 32)
	if _, err := rand.Read(key); err != nil {
		t.Fatal(err)
	}
	wrapped, err := m.Wrap(ctx, kek, key, testAD)
	if err != nil {
		t.Fatalf("Wrap(%q): %v", kek, err)
	}
	return key, wrapped
}

func TestSetupRoundTrip(t *testing.T) {
	v, root, res := setupVault(t, vaultkeys.SetupConfig{})
	if !res.MountCreated || !res.KeyCreated {
		t.Errorf("first Setup: MountCreated=%t KeyCreated=%t, want both true", res.MountCreated, res.KeyCreated)
	}
	if want := []string{vaultkeys.PolicyAuditVerifier, vaultkeys.PolicyCustodian, vaultkeys.PolicyJetond}; !slices.Equal(res.Policies, want) {
		t.Errorf("Setup wrote policies %v, want %v", res.Policies, want)
	}
	kek, err := root.Logical().ReadWithContext(ctxT(t), "transit/keys/jeton-kek")
	if err != nil || kek == nil {
		t.Fatalf("read KEK: %v", err)
	}
	for field, want := range map[string]any{"type": "aes256-gcm96", "exportable": false, "allow_plaintext_backup": false} {
		if got := kek.Data[field]; got != want {
			t.Errorf("KEK %s = %v, want %v", field, got, want)
		}
	}
	again, err := vaultkeys.Setup(ctxT(t), root, vaultkeys.SetupConfig{})
	if err != nil {
		t.Fatalf("second Setup: %v", err)
	}
	if again.MountCreated || again.KeyCreated {
		t.Errorf("second Setup: MountCreated=%t KeyCreated=%t, want both false", again.MountCreated, again.KeyCreated)
	}

	m, _ := jetondManager(t, v, root)
	ctx := ctxT(t)
	key, wrapped := newWrapped(t, ctx, m, "")
	if v := wrappedVersion(t, wrapped); v != 1 {
		t.Errorf("wrapped under KEK version %d, want 1", v)
	}
	if bytes.Contains(wrapped, key) {
		t.Error("the wrapped key holds the key")
	}
	if again, err := m.Wrap(ctx, "", key, testAD); err != nil || bytes.Equal(wrapped, again) {
		t.Errorf("two wraps of one key are equal (%v)", err)
	}
	got, err := m.Unwrap(ctx, "", wrapped, testAD)
	if err != nil {
		t.Fatalf("Unwrap: %v", err)
	}
	if !bytes.Equal(got, key) {
		t.Error("Unwrap did not return the data key")
	}
	if err := m.Check(ctx); err != nil {
		t.Errorf("Check: %v", err)
	}
}

func TestUnwrapRejectsGarbage(t *testing.T) {
	v, root, _ := setupVault(t, vaultkeys.SetupConfig{})
	m, _ := jetondManager(t, v, root)
	ctx := ctxT(t)
	_, wrapped := newWrapped(t, ctx, m, "")
	// Change one base64 character of the body: still well-formed, but the
	// GCM tag no longer matches.
	tampered := bytes.Clone(wrapped)
	i := len("vault:v1:") + 4
	if tampered[i] == 'A' {
		tampered[i] = 'B'
	} else {
		tampered[i] = 'A'
	}
	for _, tc := range []struct {
		name    string
		wrapped []byte
	}{
		{"empty", nil},
		{"no prefix", []byte("not-a-wrapped-key")},
		{"bad version", []byte("vault:vX:AAAA")},
		{"tampered", tampered},
	} {
		t.Run(tc.name, func(t *testing.T) {
			_, err := m.Unwrap(ctx, "", tc.wrapped, testAD)
			if !errors.Is(err, tokenizer.ErrKeyMismatch) {
				t.Fatalf("Unwrap = %v, want ErrKeyMismatch", err)
			}
			if errors.Is(err, tokenizer.ErrUnavailable) || errors.Is(err, tokenizer.ErrKeyDestroyed) {
				t.Errorf("Unwrap error %q wraps ErrUnavailable or ErrKeyDestroyed; an edited key is neither", err)
			}
			if len(tc.wrapped) > 0 && strings.Contains(err.Error(), string(tc.wrapped)) {
				t.Error("error quotes the wrapped key")
			}
			if !strings.HasPrefix(err.Error(), "vaultkeys: ") {
				t.Errorf("error %q lacks the vaultkeys prefix", err)
			}
		})
	}
}

func TestRotateAndMinDecryptionVersion(t *testing.T) {
	v, root, _ := setupVault(t, vaultkeys.SetupConfig{})
	m, _ := jetondManager(t, v, root)
	custodian := clientFor(t, v, tokenWith(t, root, "1h", vaultkeys.PolicyCustodian))
	ctx := ctxT(t)

	key, w1 := newWrapped(t, ctx, m, "")
	if _, err := custodian.Logical().WriteWithContext(ctx, "transit/keys/jeton-kek/rotate", nil); err != nil {
		t.Fatalf("custodian rotate: %v", err)
	}
	// A rewrap is an unwrap and a wrap: the new wrap uses the newest
	// version.
	w2, err := m.Wrap(ctx, "", key, testAD)
	if err != nil {
		t.Fatalf("Wrap after rotate: %v", err)
	}
	if v1, v2 := wrappedVersion(t, w1), wrappedVersion(t, w2); v2 <= v1 {
		t.Fatalf("Wrap after rotate gave KEK version %d, want above %d", v2, v1)
	}

	// The custodian retires KEK version 1.
	if _, err := custodian.Logical().WriteWithContext(ctx, "transit/keys/jeton-kek/config",
		map[string]any{"min_decryption_version": 2}); err != nil {
		t.Fatalf("custodian set min_decryption_version: %v", err)
	}
	if got, err := m.Unwrap(ctx, "", w2, testAD); err != nil || !bytes.Equal(got, key) {
		t.Fatalf("after min_decryption_version=2, Unwrap(v2) = same key %t, err %v", bytes.Equal(got, key), err)
	}
	_, err = m.Unwrap(ctx, "", w1, testAD)
	if !errors.Is(err, tokenizer.ErrKeyDestroyed) {
		t.Errorf("Unwrap(v1 wrapped key) after min_decryption_version=2: err %v, want ErrKeyDestroyed", err)
	}
	if errors.Is(err, tokenizer.ErrUnavailable) {
		t.Errorf("Unwrap(v1 wrapped key): %v wraps ErrUnavailable; a retired version is not an outage", err)
	}
}

// A wrapped key is bound to its associated data by real Vault: other
// associated data, or none, fails as ErrKeyMismatch. And Vault 1.21 has
// the two gaps jeton works around, checked here so that an upgrade that
// changes them is noticed: transit/datakey ignores associated_data, and
// transit/rewrap ignores it too, so it cannot rewrap a bound key.
func TestAssociatedDataIsBound(t *testing.T) {
	v, root, _ := setupVault(t, vaultkeys.SetupConfig{})
	m, _ := jetondManager(t, v, root)
	ctx := ctxT(t)
	key, wrapped := newWrapped(t, ctx, m, "")
	for name, ad := range map[string][]byte{
		"none":            nil,
		"another tenant":  []byte("jeton/v1/key\x00root\x00beta\x00\x00\x00\x00\x00"),
		"one byte longer": append(bytes.Clone(testAD), 0),
	} {
		got, err := m.Unwrap(ctx, "", wrapped, ad)
		if !errors.Is(err, tokenizer.ErrKeyMismatch) || errors.Is(err, tokenizer.ErrUnavailable) || got != nil {
			t.Errorf("Unwrap with associated data %s: %v, want ErrKeyMismatch only", name, err)
		}
	}
	if got, err := m.Unwrap(ctx, "", wrapped, testAD); err != nil || !bytes.Equal(got, key) {
		t.Fatalf("Unwrap with its own associated data: same key %t, %v", bytes.Equal(got, key), err)
	}
	// Keys wrapped before binding (no associated data) still open.
	unbound, err := m.Wrap(ctx, "", key, nil)
	if err != nil {
		t.Fatal(err)
	}
	if got, err := m.Unwrap(ctx, "", unbound, nil); err != nil || !bytes.Equal(got, key) {
		t.Fatalf("Unwrap of an unbound key: same key %t, %v", bytes.Equal(got, key), err)
	}

	b64 := base64.StdEncoding.EncodeToString
	// transit/datakey takes associated_data and ignores it.
	s, err := root.Logical().WriteWithContext(ctx, "transit/datakey/plaintext/jeton-kek",
		map[string]any{"associated_data": b64(testAD)})
	if err != nil {
		t.Fatal(err)
	}
	if _, err := root.Logical().WriteWithContext(ctx, "transit/decrypt/jeton-kek",
		map[string]any{"ciphertext": s.Data["ciphertext"]}); err != nil {
		t.Errorf("a datakey ciphertext did not open without its associated_data (%v): "+
			"Vault may now bind it; vaultkeys could use transit/datakey again", err)
	}
	// transit/rewrap cannot rewrap a bound key, associated_data or not.
	for _, data := range []map[string]any{
		{"ciphertext": string(wrapped)},
		{"ciphertext": string(wrapped), "associated_data": b64(testAD)},
		{"batch_input": []map[string]any{{"ciphertext": string(wrapped), "associated_data": b64(testAD)}}},
	} {
		s, err := root.Logical().WriteWithContext(ctx, "transit/rewrap/jeton-kek", data)
		if err == nil {
			if r, ok := s.Data["batch_results"].([]any); ok && len(r) == 1 {
				if item, _ := r[0].(map[string]any); item["error"] != nil && item["error"] != "" {
					continue
				}
			}
			t.Errorf("transit/rewrap rewrapped a bound key (%v): Vault may now honour associated_data", data)
		}
	}
}

// requireDenied asserts Vault answers 403. A 400 (say, "key is not
// exportable") would mean the policy let the request through.
func requireDenied(t *testing.T, err error) {
	t.Helper()
	var re *vaultapi.ResponseError
	if !errors.As(err, &re) || re.StatusCode != 403 {
		t.Errorf("got %v, want HTTP 403 permission denied", err)
	}
}

func TestPolicyLeastPrivilege(t *testing.T) {
	v, root, _ := setupVault(t, vaultkeys.SetupConfig{})
	ctx := ctxT(t)
	// Something worth stealing elsewhere in Vault, and a second Transit key.
	if err := root.Sys().MountWithContext(ctx, "secret", &vaultapi.MountInput{Type: "kv"}); err != nil {
		t.Fatalf("mount kv: %v", err)
	}
	if _, err := root.Logical().WriteWithContext(ctx, "secret/other", map[string]any{"v": "fake-secret"}); err != nil {
		t.Fatalf("write kv: %v", err)
	}
	if _, err := root.Logical().WriteWithContext(ctx, "transit/keys/other", nil); err != nil {
		t.Fatalf("create other key: %v", err)
	}
	jetond := clientFor(t, v, tokenWith(t, root, "1h", vaultkeys.PolicyJetond))
	custodian := clientFor(t, v, tokenWith(t, root, "1h", vaultkeys.PolicyCustodian))

	read := func(c *vaultapi.Client, path string) func() error {
		return func() error { _, err := c.Logical().ReadWithContext(ctx, path); return err }
	}
	write := func(c *vaultapi.Client, path string, data map[string]any) func() error {
		return func() error { _, err := c.Logical().WriteWithContext(ctx, path, data); return err }
	}
	del := func(c *vaultapi.Client, path string) func() error {
		return func() error { _, err := c.Logical().DeleteWithContext(ctx, path); return err }
	}
	const ct = "vault:v1:AAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAA"
	const pt = "AAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAA="
	// A generation KEK, created the way jetond creates them.
	jm := newManager(t, jetond, vaultkeys.Config{})
	_, wrapped := newWrapped(t, ctx, jm, "acme-g1")
	const gk = "transit/keys/jeton-kek-acme-g1"
	for _, tc := range []struct {
		name string
		call func() error
	}{
		{"jetond export", read(jetond, "transit/export/encryption-key/jeton-kek")},
		{"jetond backup", read(jetond, "transit/backup/jeton-kek")},
		{"jetond read other mount", read(jetond, "secret/other")},
		{"jetond read sys/mounts", read(jetond, "sys/mounts")},
		{"jetond rotate", write(jetond, "transit/keys/jeton-kek/rotate", nil)},
		{"jetond config", write(jetond, "transit/keys/jeton-kek/config", map[string]any{"deletion_allowed": true})},
		{"jetond delete", del(jetond, "transit/keys/jeton-kek")},
		{"jetond datakey on other key", write(jetond, "transit/datakey/plaintext/other", nil)},
		{"jetond decrypt with other key", write(jetond, "transit/decrypt/other", map[string]any{"ciphertext": ct})},
		{"jetond encrypt with other key", write(jetond, "transit/encrypt/other", map[string]any{"plaintext": pt})},
		{"jetond create key", write(jetond, "transit/keys/mine", nil)},
		// Paths that ignore associated_data are not granted at all.
		{"jetond datakey", write(jetond, "transit/datakey/plaintext/jeton-kek", nil)},
		{"jetond datakey generation key", write(jetond, "transit/datakey/plaintext/jeton-kek-acme-g1", nil)},
		{"jetond rewrap", write(jetond, "transit/rewrap/jeton-kek", map[string]any{"ciphertext": ct})},
		{"jetond rewrap generation key", write(jetond, "transit/rewrap/jeton-kek-acme-g1", map[string]any{"ciphertext": string(wrapped)})},
		// encrypt and decrypt take only the value and its associated data.
		{"jetond encrypt batch", write(jetond, "transit/encrypt/jeton-kek", map[string]any{"batch_input": []map[string]any{{"plaintext": pt}}})},
		{"jetond encrypt old key version", write(jetond, "transit/encrypt/jeton-kek", map[string]any{"plaintext": pt, "key_version": 1})},
		{"jetond decrypt batch", write(jetond, "transit/decrypt/jeton-kek-acme-g1", map[string]any{"batch_input": []map[string]any{{"ciphertext": string(wrapped)}}})},
		// Encrypting to a generation key that does not exist would create
		// it (Transit's upsert), skipping jetond's checks: "create" is not
		// granted on encrypt.
		{"jetond encrypt creates a generation key", write(jetond, "transit/encrypt/jeton-kek-acme-g9", map[string]any{"plaintext": pt})},
		{"custodian datakey", write(custodian, "transit/datakey/plaintext/jeton-kek", nil)},
		{"custodian decrypt", write(custodian, "transit/decrypt/jeton-kek", map[string]any{"ciphertext": ct})},
		{"custodian encrypt", write(custodian, "transit/encrypt/jeton-kek", map[string]any{"plaintext": pt})},
		{"custodian export", read(custodian, "transit/export/encryption-key/jeton-kek")},
		{"custodian backup", read(custodian, "transit/backup/jeton-kek")},
		{"custodian sets exportable", write(custodian, "transit/keys/jeton-kek/config", map[string]any{"exportable": true})},
		{"custodian sets plaintext backup", write(custodian, "transit/keys/jeton-kek/config", map[string]any{"allow_plaintext_backup": true})},
		{"custodian read other mount", read(custodian, "secret/other")},

		// jetond's "<kek>-*" namespace of generation KEKs: nothing outside
		// it, and nothing inside it that lets key material out.
		{"jetond config other key", write(jetond, "transit/keys/other/config", map[string]any{"deletion_allowed": true})},
		{"jetond delete other key", del(jetond, "transit/keys/other")},
		{"jetond read other key", read(jetond, "transit/keys/other")},
		{"jetond create key sharing the KEK's prefix", write(jetond, "transit/keys/jeton-kekx", map[string]any{"type": "aes256-gcm96"})},
		{"jetond encrypt with key sharing the KEK's prefix", write(jetond, "transit/encrypt/jeton-kekx", map[string]any{"plaintext": pt})},
		{"jetond create exportable generation key", write(jetond, gk+"x", map[string]any{"type": "aes256-gcm96", "exportable": true})},
		{"jetond create plaintext-backup generation key", write(jetond, gk+"x", map[string]any{"type": "aes256-gcm96", "allow_plaintext_backup": true})},
		{"jetond create derived generation key", write(jetond, gk+"x", map[string]any{"type": "aes256-gcm96", "derived": true})},
		{"jetond create rsa generation key", write(jetond, gk+"x", map[string]any{"type": "rsa-2048"})},
		{"jetond sets exportable on generation key", write(jetond, gk+"/config", map[string]any{"exportable": true})},
		{"jetond sets plaintext backup on generation key", write(jetond, gk+"/config", map[string]any{"allow_plaintext_backup": true})},
		{"jetond sets min_decryption_version on generation key", write(jetond, gk+"/config", map[string]any{"min_decryption_version": 1})},
		{"jetond trims generation key", write(jetond, gk+"/trim", map[string]any{"min_available_version": 1})},
		{"jetond imports into generation key", write(jetond, gk+"x/import", map[string]any{"ciphertext": ct, "type": "aes256-gcm96"})},
		{"jetond export generation key", read(jetond, "transit/export/encryption-key/jeton-kek-acme-g1")},
		{"jetond backup generation key", read(jetond, "transit/backup/jeton-kek-acme-g1")},
		{"custodian datakey generation key", write(custodian, "transit/datakey/plaintext/jeton-kek-acme-g1", nil)},
		{"custodian decrypt generation key", write(custodian, "transit/decrypt/jeton-kek-acme-g1", map[string]any{"ciphertext": string(wrapped)})},
		{"custodian encrypt generation key", write(custodian, "transit/encrypt/jeton-kek-acme-g1", map[string]any{"plaintext": pt})},
		{"custodian export generation key", read(custodian, "transit/export/encryption-key/jeton-kek-acme-g1")},
		{"custodian backup generation key", read(custodian, "transit/backup/jeton-kek-acme-g1")},
		{"custodian sets exportable on generation key", write(custodian, gk+"/config", map[string]any{"exportable": true})},
		{"custodian imports into generation key", write(custodian, gk+"x/import", map[string]any{"ciphertext": ct, "type": "aes256-gcm96"})},
	} {
		t.Run(tc.name, func(t *testing.T) { requireDenied(t, tc.call()) })
	}

	// The denials above are not just broken tokens: each may do its job.
	if _, err := jm.Wrap(ctx, "", []byte("0123456789abcdef0123456789abcdef"), testAD); err != nil {
		t.Errorf("jetond token cannot wrap a key: %v", err)
	}
	if got, err := jm.KEKs(ctx, "acme-"); err != nil || !slices.Equal(got, []string{"acme-g1"}) {
		t.Errorf("jetond token cannot list generation keys: %q, %v", got, err)
	}
	if s, err := custodian.Logical().ListWithContext(ctx, "transit/keys"); err != nil || s == nil {
		t.Errorf("custodian cannot list keys: %v", err)
	}
	if err := write(custodian, "transit/keys/jeton-kek/config", map[string]any{"deletion_allowed": false})(); err != nil {
		t.Errorf("custodian cannot configure the KEK: %v", err)
	}
	if err := write(custodian, gk+"/rotate", nil)(); err != nil {
		t.Errorf("custodian cannot rotate a generation KEK: %v", err)
	}
	if err := write(custodian, gk+"/config", map[string]any{"min_decryption_version": 1})(); err != nil {
		t.Errorf("custodian cannot configure a generation KEK: %v", err)
	}
	gen, err := root.Logical().ReadWithContext(ctx, gk)
	if err != nil || gen.Data["exportable"] != false || gen.Data["allow_plaintext_backup"] != false || gen.Data["type"] != "aes256-gcm96" {
		t.Errorf("generation KEK flags: %v, %v", gen, err)
	}
	kek, err := root.Logical().ReadWithContext(ctx, "transit/keys/jeton-kek")
	if err != nil || kek.Data["exportable"] != false || kek.Data["allow_plaintext_backup"] != false {
		t.Errorf("KEK flags changed under the denied requests: %v, %v", kek, err)
	}
}

func TestNewRefusesUnsafeKEK(t *testing.T) {
	v, root, _ := setupVault(t, vaultkeys.SetupConfig{})
	for _, tc := range []struct {
		name   string
		create map[string]any // nil: the key is not created
		want   string
	}{
		{"exportable", map[string]any{"exportable": true}, "exportable is true"},
		{"plaintext backup", map[string]any{"allow_plaintext_backup": true}, "allow_plaintext_backup is true"},
		{"wrong type", map[string]any{"type": "chacha20-poly1305"}, `type is "chacha20-poly1305"`},
		{"derived", map[string]any{"derived": true}, "derived is true"},
		{"missing", nil, "jeton vault setup"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			ctx := ctxT(t)
			key := "kek-" + strings.ReplaceAll(tc.name, " ", "-")
			if tc.create != nil {
				if _, err := root.Logical().WriteWithContext(ctx, "transit/keys/"+key, tc.create); err != nil {
					t.Fatalf("create %s: %v", key, err)
				}
			}
			// Give jetond's policy for that key to a token of its own, so
			// the refusal comes from the flags, not from a 403.
			policy := "jetond-" + key
			if err := root.Sys().PutPolicyWithContext(ctx, policy,
				vaultkeys.Policies("transit", key)[vaultkeys.PolicyJetond]); err != nil {
				t.Fatalf("put policy: %v", err)
			}
			c := clientFor(t, v, tokenWith(t, root, "1h", policy))
			m, err := vaultkeys.New(ctx, c, vaultkeys.Config{Key: key})
			if err == nil {
				m.Close()
				t.Fatal("New accepted the KEK")
			}
			if !strings.Contains(err.Error(), tc.want) || !strings.Contains(err.Error(), key) {
				t.Errorf("New error %q does not say %q about %s", err, tc.want, key)
			}
			if errors.Is(err, tokenizer.ErrUnavailable) {
				t.Errorf("New error %q wraps ErrUnavailable; an unsafe KEK is not an outage", err)
			}
			if tc.create != nil {
				// Setup verifies an existing key the same way.
				if _, err := vaultkeys.Setup(ctx, root, vaultkeys.SetupConfig{Key: key}); err == nil || !strings.Contains(err.Error(), tc.want) {
					t.Errorf("Setup on the existing key: %v, want an error saying %q", err, tc.want)
				}
			}
		})
	}
}

// callAll makes every kind of call the Manager serves.
func callAll(ctx context.Context, m *vaultkeys.Manager, wrapped []byte) map[string]error {
	_, errWrap := m.Wrap(ctx, "", make([]byte, 32), testAD)
	_, errGenWrap := m.Wrap(ctx, "acme-g7", make([]byte, 32), testAD)
	_, errUnwrap := m.Unwrap(ctx, "", wrapped, testAD)
	_, errKEKs := m.KEKs(ctx, "acme-")
	return map[string]error{"Wrap": errWrap, "Wrap generation": errGenWrap, "Unwrap": errUnwrap, "KEKs": errKEKs, "Check": m.Check(ctx)}
}

func TestFaultsSealAndStop(t *testing.T) {
	v, root, _ := setupVault(t, vaultkeys.SetupConfig{})
	m, _ := jetondManager(t, v, root)
	key, wrapped := newWrapped(t, ctxT(t), m, "")
	wantUnavailable := func(t *testing.T, fault string) {
		t.Helper()
		for name, err := range callAll(ctxT(t), m, wrapped) {
			if !errors.Is(err, tokenizer.ErrUnavailable) {
				t.Errorf("%s with Vault %s: err %v, want ErrUnavailable", name, fault, err)
			}
		}
		// A caller's short deadline is honoured: the client's own retries
		// on 503 or a refused connection do not outlast it.
		ctx, cancel := context.WithTimeout(t.Context(), 300*time.Millisecond)
		defer cancel()
		_, err := m.Unwrap(ctx, "", wrapped, testAD)
		if !errors.Is(err, tokenizer.ErrUnavailable) {
			t.Errorf("Unwrap with Vault %s and a short deadline: err %v, want ErrUnavailable", fault, err)
		}
		if errors.Is(err, context.DeadlineExceeded) && !errors.Is(ctx.Err(), context.DeadlineExceeded) {
			t.Errorf("Unwrap reports DeadlineExceeded though its context did not expire")
		}
	}
	wantWorking := func(t *testing.T, after string) {
		t.Helper()
		for name, err := range callAll(ctxT(t), m, wrapped) {
			if err != nil {
				t.Errorf("%s after %s: %v", name, after, err)
			}
		}
		if got, err := m.Unwrap(ctxT(t), "", wrapped, testAD); err != nil || !bytes.Equal(got, key) {
			t.Errorf("Unwrap after %s: same key %t, err %v", after, bytes.Equal(got, key), err)
		}
	}

	v.Seal()
	wantUnavailable(t, "sealed")
	v.Unseal()
	wantWorking(t, "unseal")

	v.Stop()
	wantUnavailable(t, "stopped")
	v.Start()
	wantWorking(t, "restart")
}

// syncBuffer collects log output from the Manager's goroutines.
type syncBuffer struct {
	mu sync.Mutex
	b  bytes.Buffer
}

func (s *syncBuffer) Write(p []byte) (int, error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.b.Write(p)
}

func (s *syncBuffer) String() string {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.b.String()
}

func revoke(t testing.TB, root *vaultapi.Client, token string) {
	t.Helper()
	if err := root.Auth().Token().RevokeTreeWithContext(ctxT(t), token); err != nil {
		t.Fatalf("revoke token: %v", err)
	}
}

// With AppRole, a revoked token is replaced inside the call that finds it
// revoked: that call succeeds, it does not fail first.
func TestAppRoleRevokedTokenLogsInAgain(t *testing.T) {
	v, root, res := setupVault(t, vaultkeys.SetupConfig{AppRole: true})
	if res.RoleID == "" || res.SecretID == "" {
		t.Fatal("Setup with AppRole returned no role_id or secret_id")
	}
	secretFile := filepath.Join(t.TempDir(), "secret-id")
	if err := os.WriteFile(secretFile, []byte(res.SecretID+"\n"), 0o600); err != nil {
		t.Fatal(err)
	}
	for _, tc := range []struct {
		name string
		auth vaultkeys.AppRole
	}{
		{"secret_id", vaultkeys.AppRole{RoleID: res.RoleID, SecretID: res.SecretID}},
		{"secret_id file", vaultkeys.AppRole{RoleID: res.RoleID, SecretIDFile: secretFile}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			var logs syncBuffer
			c := clientFor(t, v, "")
			m := newManager(t, c, vaultkeys.Config{AppRole: &tc.auth, Logger: slog.New(slog.NewTextHandler(&logs, nil))})
			ctx := ctxT(t)
			key, wrapped := newWrapped(t, ctx, m, "")
			first := c.Token()
			self, err := c.Auth().Token().LookupSelfWithContext(ctx)
			if err != nil {
				t.Fatalf("lookup-self with the AppRole token: %v", err)
			}
			if pols, _ := self.TokenPolicies(); !slices.Equal(pols, []string{vaultkeys.PolicyJetond}) {
				t.Errorf("AppRole token policies %v, want only %s", pols, vaultkeys.PolicyJetond)
			}

			revoke(t, root, first)
			got, err := m.Unwrap(ctx, "", wrapped, testAD)
			if err != nil {
				t.Fatalf("Unwrap after the token was revoked: %v", err)
			}
			if !bytes.Equal(got, key) {
				t.Error("Unwrap after re-login returned another key")
			}
			if c.Token() == first {
				t.Error("the Manager still uses the revoked token")
			}
			out := logs.String()
			for what, secret := range map[string]string{"secret_id": res.SecretID, "old token": first, "new token": c.Token()} {
				if strings.Contains(out, secret) {
					t.Errorf("logs contain the %s", what)
				}
			}
			if !strings.Contains(out, "logging in again") {
				t.Errorf("logs do not record the re-login:\n%s", out)
			}
		})
	}
}

// A static token cannot be replaced: once revoked, calls fail closed.
func TestStaticRevokedTokenIsUnavailable(t *testing.T) {
	v, root, _ := setupVault(t, vaultkeys.SetupConfig{})
	m, c := jetondManager(t, v, root)
	_, wrapped := newWrapped(t, ctxT(t), m, "")
	revoke(t, root, c.Token())
	if _, err := m.Unwrap(ctxT(t), "", wrapped, testAD); !errors.Is(err, tokenizer.ErrUnavailable) {
		t.Errorf("Unwrap with a revoked static token: %v, want ErrUnavailable", err)
	}
}

// The renewal loop logs in again when the token reaches its max TTL, with
// no call needing to hit a 403 first.
func TestAppRoleMaxTTLLogsInAgain(t *testing.T) {
	v, _, res := setupVault(t, vaultkeys.SetupConfig{AppRole: true, TokenTTL: 2 * time.Second, TokenMaxTTL: 4 * time.Second})
	c := clientFor(t, v, "")
	m := newManager(t, c, vaultkeys.Config{AppRole: &vaultkeys.AppRole{RoleID: res.RoleID, SecretID: res.SecretID}})
	first := c.Token()
	deadline := time.Now().Add(30 * time.Second)
	for c.Token() == first {
		if time.Now().After(deadline) {
			t.Fatal("the Manager did not log in again after its token's max TTL")
		}
		time.Sleep(100 * time.Millisecond)
	}
	if err := m.Check(ctxT(t)); err != nil {
		t.Errorf("Check after the background re-login: %v", err)
	}
}

// A renewable static token is kept alive past its TTL.
func TestStaticTokenIsRenewed(t *testing.T) {
	v, root, _ := setupVault(t, vaultkeys.SetupConfig{})
	c := clientFor(t, v, tokenWith(t, root, "3s", vaultkeys.PolicyJetond))
	m := newManager(t, c, vaultkeys.Config{})
	time.Sleep(7 * time.Second) // well past the 3s TTL
	if err := m.Check(ctxT(t)); err != nil {
		t.Errorf("Check after the token's original TTL: %v (was it renewed?)", err)
	}
}

func TestNewValidatesConfig(t *testing.T) {
	c, err := vaultapi.NewClient(&vaultapi.Config{Address: "http://127.0.0.1:1"})
	if err != nil {
		t.Fatal(err)
	}
	c.ClearToken()
	for _, tc := range []struct {
		name string
		cfg  vaultkeys.Config
		want string
	}{
		{"no token", vaultkeys.Config{}, "no token"},
		{"glob key", vaultkeys.Config{Key: "*"}, "Key"},
		{"glob mount", vaultkeys.Config{Mount: "trans+it"}, "Mount"},
		{"no role id", vaultkeys.Config{AppRole: &vaultkeys.AppRole{SecretID: "fake"}}, "AppRole.RoleID"},
		{"two secret ids", vaultkeys.Config{AppRole: &vaultkeys.AppRole{RoleID: "r", SecretID: "fake", SecretIDFile: "/x"}}, "exactly one"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			_, err := vaultkeys.New(t.Context(), c, tc.cfg)
			if err == nil || !strings.Contains(err.Error(), tc.want) {
				t.Errorf("New: %v, want an error naming %q", err, tc.want)
			}
		})
	}
}

// A Vault that cannot be reached at start-up is an outage, not a bad config.
func TestNewUnreachable(t *testing.T) {
	c, err := vaultapi.NewClient(&vaultapi.Config{Address: "http://127.0.0.1:1", MaxRetries: 0})
	if err != nil {
		t.Fatal(err)
	}
	c.SetToken("fake-token")
	if _, err := vaultkeys.New(ctxT(t), c, vaultkeys.Config{}); !errors.Is(err, tokenizer.ErrUnavailable) {
		t.Errorf("New against a closed port: %v, want ErrUnavailable", err)
	}
}

var policyPath = regexp.MustCompile(`(?m)^path "([^"]+)" \{\s*capabilities = \[([^\]]*)\]`)

func policyGrants(hcl string) map[string]string {
	out := map[string]string{}
	for _, m := range policyPath.FindAllStringSubmatch(hcl, -1) {
		out[m[1]] = strings.ReplaceAll(m[2], `"`, "")
	}
	return out
}

// The rendered policies grant exactly what DESIGN section 5 allows.
func TestPolicies(t *testing.T) {
	p := vaultkeys.Policies("kms/transit", "kek1")
	for _, tc := range []struct {
		name string
		want map[string]string
	}{
		{vaultkeys.PolicyJetond, map[string]string{
			"kms/transit/encrypt/kek1":   "update",
			"kms/transit/decrypt/kek1":   "update",
			"kms/transit/keys/kek1":      "read",
			"kms/transit/keys/kek1-*":    "create, read, update, delete",
			"kms/transit/encrypt/kek1-*": "update",
			"kms/transit/decrypt/kek1-*": "update",
			"kms/transit/keys":           "list",
			"auth/token/renew-self":      "update",
			"auth/token/lookup-self":     "read",
			// Audit anchor: sign checkpoints, store them with check-and-set.
			"kms/transit/sign/jeton-audit-checkpoints": "update",
			"kms/transit/keys/jeton-audit-checkpoints": "read",
			"jeton-audit/data/checkpoints/*":           "create, read, update",
		}},
		{vaultkeys.PolicyAuditVerifier, map[string]string{
			"kms/transit/keys/jeton-audit-checkpoints": "read",
			"jeton-audit/data/checkpoints/*":           "read",
			"jeton-audit/metadata/checkpoints/*":       "read, list",
		}},
		{vaultkeys.PolicyCustodian, map[string]string{
			"kms/transit/keys/kek1":        "create, read, update, delete",
			"kms/transit/keys/kek1/rotate": "update",
			"kms/transit/keys/kek1/config": "update",
			"kms/transit/keys/kek1/trim":   "update",
			"kms/transit/keys/kek1-*":      "read, update, delete",
			"kms/transit/keys":             "list",
		}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			hcl := p[tc.name]
			got := policyGrants(hcl)
			if len(got) != strings.Count(hcl, "\npath ") {
				t.Fatalf("could not parse every path of %s:\n%s", tc.name, hcl)
			}
			if len(got) != len(tc.want) {
				t.Errorf("%s grants %d paths, want %d: %v", tc.name, len(got), len(tc.want), got)
			}
			for path, caps := range tc.want {
				if got[path] != caps {
					t.Errorf("%s: path %q capabilities %q, want %q", tc.name, path, got[path], caps)
				}
			}
		})
	}
	if c := p[vaultkeys.PolicyCustodian]; strings.Count(c, `"exportable"             = []`) != 3 {
		t.Error("custodian policy does not deny the exportable parameter on the key, config and generation-key paths")
	}
}

func TestPoliciesPanicsOnGlobs(t *testing.T) {
	for _, tc := range []struct{ mount, key string }{{"transit", "*"}, {"transit", "a+b"}, {"*", "k"}, {"transit", `k"`}} {
		func() {
			defer func() {
				if recover() == nil {
					t.Errorf("Policies(%q, %q) did not panic", tc.mount, tc.key)
				}
			}()
			vaultkeys.Policies(tc.mount, tc.key)
		}()
	}
}
