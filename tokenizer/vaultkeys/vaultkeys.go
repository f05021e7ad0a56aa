// Package vaultkeys is a tokenizer.KeyManager on HashiCorp Vault's Transit
// secrets engine. The KEKs are Transit keys that never leave Vault. jetond
// makes its data keys itself and has Vault wrap them with
// <mount>/encrypt/<key> and unwrap them with <mount>/decrypt/<key>, each
// time with associated_data that binds the wrapped key to its tenant,
// generation and purpose (tokenizer/keyid.go). transit/datakey is not used:
// in Vault 1.21 it silently ignores associated_data. Nor is
// transit/rewrap: it ignores associated_data too, so it could neither
// rewrap a bound key nor bind an unbound one; a rewrap is a decrypt then an
// encrypt.
//
// The KEK must be of type "aes256-gcm96" or, on Vault Enterprise, "managed_key"
// (a Transit managed key whose material lives in an HSM or cloud KMS through
// Vault's managed keys); both support associated_data. It must have
// exportable=false and allow_plaintext_backup=false; New refuses to start
// otherwise. Setup prepares a fresh Vault; Policies gives the
// least-privilege policies.
//
// # Per-generation KEKs and crypto-shredding
//
// The main KEK wraps the tenants' root keys and jeton's own. Each tenant
// data-key generation has a Transit key of its own, TransitKeyName(Key,
// tokenizer.GenerationKEK(tenant, n)) = "<Key>-<tenant>-g<n>", which jetond
// creates on first use (aes256-gcm96, exportable=false,
// allow_plaintext_backup=false, checked like the main KEK) and deletes when
// the generation is destroyed or its tenant purged (deletion_allowed=true,
// then DELETE). A Redis backup still holds that generation's wrapped DEK,
// but nothing can unwrap it any more. The jeton-jetond policy reaches only
// keys named "<Key>-*"; custodians must not give other keys names in that
// namespace.
//
// The shredding is as strong as Vault's own backup retention. A Vault
// snapshot (raft snapshot, storage backup, DR replica) taken before the
// destroy still holds the generation's key; restoring it together with an
// old Redis backup brings the records back. Custodians must rotate Vault
// snapshots out within the retention window they promise, and can only
// certify a generation unrecoverable once every snapshot older than its
// destroy is gone.
//
// The package reads no environment variable. cmd/jetond builds the
// *api.Client with api.DefaultConfig, which honours VAULT_ADDR, VAULT_TOKEN,
// VAULT_CACERT, VAULT_CLIENT_CERT, VAULT_CLIENT_KEY, VAULT_NAMESPACE and the
// other VAULT_* variables.
package vaultkeys

import (
	"context"
	"encoding/base64"
	"errors"
	"fmt"
	"log/slog"
	"strconv"
	"strings"
	"sync"
	"time"

	"github.com/hashicorp/vault/api"
	"github.com/hashicorp/vault/api/auth/approle"

	"github.com/jeton-dev/jeton/tokenizer"
)

// Accepted KEK types.
const (
	// KeyTypeAES256GCM96 is Transit's standard software key.
	KeyTypeAES256GCM96 = "aes256-gcm96"
	// KeyTypeManaged is a Vault Enterprise managed key: the key material
	// lives in an HSM (or cloud KMS) that Vault drives through PKCS#11 or
	// the provider's API, and Vault only holds a reference to it.
	KeyTypeManaged = "managed_key"
)

// Config says which KEK to use and how to authenticate. The zero value uses
// the KEK "jeton-kek" on the mount "transit" with the client's token.
type Config struct {
	// Mount is the Transit mount path; "transit" when empty.
	Mount string
	// Key is the KEK's name; "jeton-kek" when empty.
	Key string
	// AppRole, when set, makes the Manager log in with AppRole and log in
	// again whenever its token can no longer be used: in the background when
	// the token reaches its max TTL, and inside the call when Vault answers
	// 403 (token revoked), which then retries once and normally succeeds
	// rather than failing first. When nil the client's
	// own token is used (and renewed if it is renewable): fine for
	// development, but such a token cannot be replaced once it expires.
	AppRole *AppRole
	// Logger receives lifecycle events (log-ins, renewal ends), never a
	// secret. nil means slog.Default().
	Logger *slog.Logger
}

// AppRole holds AppRole credentials. Exactly one of SecretID and
// SecretIDFile must be set.
type AppRole struct {
	// MountPath is the AppRole auth mount; "approle" when empty.
	MountPath string
	// RoleID is the role's role_id.
	RoleID string
	// SecretID is the secret_id itself.
	SecretID string
	// SecretIDFile is a file holding the secret_id. It is read at every
	// log-in, so the secret_id can be replaced without a restart.
	SecretIDFile string
}

// Manager is a tokenizer.KeyManager backed by a Vault Transit key. It is safe
// for concurrent use. It keeps no "Vault is down" state: every call goes to
// Vault, so it recovers as soon as Vault does.
type Manager struct {
	client *api.Client
	mount  string
	key    string
	log    *slog.Logger

	// AppRole only. loginClient sends log-in requests without the current,
	// possibly revoked, token.
	// ensured holds the per-generation KEK names already created and
	// checked by this Manager, so Wrap reads their flags once.
	ensured sync.Map

	auth         *approle.AppRoleAuth
	loginClient  *api.Client
	secretID     string // AppRole.SecretID, or
	secretIDFile string // AppRole.SecretIDFile

	loginMu sync.Mutex
	secret  *api.Secret // the latest log-in's auth secret; guarded by loginMu
	// refused is the fingerprint of the secret_id Vault last refused, at
	// refusedAt; guarded by loginMu.
	refused   [32]byte
	refusedAt time.Time
	loggedIn  chan struct{} // tells the renewal loop that a call logged in again

	ctx       context.Context // cancelled by Close; parent of background work
	cancel    context.CancelFunc
	done      chan struct{}
	closeOnce sync.Once
}

var _ tokenizer.KeyManager = (*Manager)(nil)

// New checks the KEK and returns a Manager that uses it.
//
// New takes over client: with AppRole it sets the client's token at every
// log-in, so the client must not be shared with code that needs another
// token. Without AppRole, the client must already carry a token.
//
// New refuses a KEK that is missing, exportable, allows plaintext backup,
// is derived, or is of a type other than aes256-gcm96 and managed_key. When
// Vault is unreachable or sealed the error wraps tokenizer.ErrUnavailable.
// Call Close to stop the token renewal.
func New(ctx context.Context, client *api.Client, cfg Config) (*Manager, error) {
	if client == nil {
		return nil, errors.New("vaultkeys: nil Vault client")
	}
	m := &Manager{
		client:   client,
		mount:    strings.Trim(cfg.Mount, "/"),
		key:      cfg.Key,
		log:      cfg.Logger,
		loggedIn: make(chan struct{}, 1),
		done:     make(chan struct{}),
	}
	if m.mount == "" {
		m.mount = DefaultMount
	}
	if m.key == "" {
		m.key = DefaultKey
	}
	if m.log == nil {
		m.log = slog.Default()
	}
	m.log = m.log.With("component", "vaultkeys", "mount", m.mount, "key", m.key)
	if err := checkNames(m.mount, m.key); err != nil {
		return nil, err
	}
	if ar := cfg.AppRole; ar != nil {
		auth, err := newAppRoleAuth(ar)
		if err != nil {
			return nil, err
		}
		m.auth, m.secretID, m.secretIDFile = auth, ar.SecretID, ar.SecretIDFile
		// A login path needs no token, and Vault may reject the request if
		// it carries a revoked one.
		m.loginClient = client.WithRequestCallbacks(func(r *api.Request) { r.ClientToken = "" })
		if _, err := m.login(ctx); err != nil {
			return nil, err
		}
	} else if client.Token() == "" {
		return nil, errors.New("vaultkeys: the Vault client has no token; set VAULT_TOKEN or configure AppRole")
	}
	if err := m.checkKey(ctx); err != nil {
		return nil, err
	}
	watch, err := m.initialSecret(ctx)
	if err != nil {
		return nil, err
	}
	m.ctx, m.cancel = context.WithCancel(context.Background())
	go m.renewLoop(watch)
	return m, nil
}

func newAppRoleAuth(ar *AppRole) (*approle.AppRoleAuth, error) {
	if ar.RoleID == "" {
		return nil, errors.New("vaultkeys: AppRole.RoleID is empty")
	}
	if (ar.SecretID == "") == (ar.SecretIDFile == "") {
		return nil, errors.New("vaultkeys: set exactly one of AppRole.SecretID and AppRole.SecretIDFile")
	}
	mountPath := strings.Trim(ar.MountPath, "/")
	if mountPath == "" {
		mountPath = DefaultAppRoleMount
	}
	auth, err := approle.NewAppRoleAuth(ar.RoleID,
		&approle.SecretID{FromString: ar.SecretID, FromFile: ar.SecretIDFile},
		approle.WithMountPath(mountPath))
	if err != nil {
		// The library's messages name fields, never values.
		return nil, fmt.Errorf("vaultkeys: AppRole: %w", err)
	}
	return auth, nil
}

// Close stops the background token renewal. The Manager must not be used
// afterwards. It does not revoke the token, which simply expires.
func (m *Manager) Close() {
	m.closeOnce.Do(func() {
		m.cancel()
		<-m.done
	})
}

// TransitKeyName is the Transit key that holds the tokenizer's KEK named
// kek, for the main KEK named key: key itself for the main KEK "", and
// "<key>-<kek>" for a generation's KEK. GenerationKeyGlob is the policy
// path glob that covers every such generation key and nothing else jeton
// creates. Both are used by the Manager and by Policies, so the policy
// always reaches exactly the keys the Manager names.
func TransitKeyName(key, kek string) string {
	if kek == "" {
		return key
	}
	return key + "-" + kek
}

// GenerationKeyGlob is the Vault policy glob of the generation keys of
// the main KEK key; see TransitKeyName.
func GenerationKeyGlob(key string) string { return TransitKeyName(key, "*") }

// keyName maps the tokenizer's KEK name to a Transit key name, refusing
// any name the tokenizer never asks for.
func (m *Manager) keyName(kek string) (string, error) {
	if kek == "" {
		return m.key, nil
	}
	if _, _, ok := tokenizer.ParseGenerationKEK(kek); !ok {
		return "", fmt.Errorf("vaultkeys: %q is not a generation KEK name (<tenant>-g<n>)", kek)
	}
	return TransitKeyName(m.key, kek), nil
}

// Wrap implements tokenizer.KeyManager with <mount>/encrypt/<key> and
// associated_data. The wrapped key is Vault's ciphertext string,
// "vault:v<N>:<base64>", as bytes. A generation's KEK that does not exist
// yet is created first.
func (m *Manager) Wrap(ctx context.Context, kek string, key, ad []byte) ([]byte, error) {
	name, err := m.keyName(kek)
	if err != nil {
		return nil, err
	}
	if kek != "" {
		if err := m.ensure(ctx, name); err != nil {
			return nil, err
		}
	}
	data := map[string]any{"plaintext": base64.StdEncoding.EncodeToString(key)}
	if ad != nil {
		data["associated_data"] = base64.StdEncoding.EncodeToString(ad)
	}
	s, err := m.call(ctx, "wrap", func(ctx context.Context) (*api.Secret, error) {
		return m.client.Logical().WriteWithContext(ctx, m.mount+"/encrypt/"+name, data)
	})
	if err != nil {
		return nil, err
	}
	return ciphertextField(s, "wrap")
}

// ensure creates the per-generation KEK name unless it exists, and checks
// its flags as New checks the main KEK's. Replicas racing to create one
// key are fine: Transit answers a create of an existing key with success.
func (m *Manager) ensure(ctx context.Context, name string) error {
	if _, ok := m.ensured.Load(name); ok {
		return nil
	}
	path := m.mount + "/keys/" + name
	read := func() (*api.Secret, error) {
		return m.call(ctx, "read generation KEK", func(ctx context.Context) (*api.Secret, error) {
			return m.client.Logical().ReadWithContext(ctx, path)
		})
	}
	s, err := read()
	if err != nil {
		return err
	}
	if s == nil {
		// exportable and allow_plaintext_backup are left to Transit's
		// defaults (false): the jeton-jetond policy does not even let
		// jetond send them.
		_, err := m.call(ctx, "create generation KEK", func(ctx context.Context) (*api.Secret, error) {
			return m.client.Logical().WriteWithContext(ctx, path, map[string]any{"type": KeyTypeAES256GCM96})
		})
		if err != nil {
			return err
		}
		m.log.Info("created generation KEK", "generation_key", name)
		if s, err = read(); err != nil {
			return err
		}
	}
	if err := checkKEK(m.mount, name, s); err != nil {
		return err
	}
	m.ensured.Store(name, struct{}{})
	return nil
}

// Unwrap implements tokenizer.KeyManager with <mount>/decrypt/<key> and
// associated_data. A key wrapped under a KEK that was deleted, or under a
// version below the KEK's min_decryption_version (or trimmed away), can
// never be unwrapped again: the error wraps tokenizer.ErrKeyDestroyed. One
// that Vault refuses to open under this KEK and associated data (wrapped
// for another identity, or edited) wraps tokenizer.ErrKeyMismatch.
func (m *Manager) Unwrap(ctx context.Context, kek string, wrapped, ad []byte) ([]byte, error) {
	name, err := m.keyName(kek)
	if err != nil {
		return nil, err
	}
	if err := checkWrapped(wrapped); err != nil {
		return nil, err
	}
	data := map[string]any{"ciphertext": string(wrapped)}
	if ad != nil {
		data["associated_data"] = base64.StdEncoding.EncodeToString(ad)
	}
	s, err := m.call(ctx, "unwrap", func(ctx context.Context) (*api.Secret, error) {
		return m.client.Logical().WriteWithContext(ctx, m.mount+"/decrypt/"+name, data)
	})
	if err != nil {
		return nil, err
	}
	return plaintextField(s, "unwrap")
}

// KEKs implements tokenizer.KeyManager: it lists the Transit keys of the
// mount and keeps the generation keys of the main KEK whose tokenizer
// name starts with prefix.
func (m *Manager) KEKs(ctx context.Context, prefix string) ([]string, error) {
	s, err := m.call(ctx, "list KEKs", func(ctx context.Context) (*api.Secret, error) {
		return m.client.Logical().ListWithContext(ctx, m.mount+"/keys")
	})
	if err != nil {
		return nil, err
	}
	if s == nil || s.Data == nil {
		return nil, nil // no key at all
	}
	raw, ok := s.Data["keys"].([]any)
	if !ok {
		return nil, errors.New("vaultkeys: list KEKs: malformed response from Vault: no keys")
	}
	var out []string
	for _, k := range raw {
		name, _ := k.(string)
		kek, ok := strings.CutPrefix(name, TransitKeyName(m.key, ""))
		if !ok {
			continue
		}
		if kek, ok = strings.CutPrefix(kek, "-"); !ok || !strings.HasPrefix(kek, prefix) {
			continue
		}
		if _, _, ok := tokenizer.ParseGenerationKEK(kek); ok {
			out = append(out, kek)
		}
	}
	return out, nil
}

// DestroyKEK implements tokenizer.KeyManager: it sets deletion_allowed on
// the generation's Transit key, then deletes the key with every version.
// See the package documentation for what Vault snapshots still hold.
func (m *Manager) DestroyKEK(ctx context.Context, kek string) error {
	if kek == "" {
		return errors.New("vaultkeys: refusing to destroy the main KEK")
	}
	name, err := m.keyName(kek)
	if err != nil {
		return err
	}
	m.ensured.Delete(name)
	path := m.mount + "/keys/" + name
	s, err := m.call(ctx, "read generation KEK", func(ctx context.Context) (*api.Secret, error) {
		return m.client.Logical().ReadWithContext(ctx, path)
	})
	if err != nil {
		return err
	}
	if s == nil {
		return nil // already gone
	}
	if _, err := m.call(ctx, "allow deleting generation KEK", func(ctx context.Context) (*api.Secret, error) {
		return m.client.Logical().WriteWithContext(ctx, path+"/config", map[string]any{"deletion_allowed": true})
	}); err != nil {
		return err
	}
	if _, err := m.call(ctx, "delete generation KEK", func(ctx context.Context) (*api.Secret, error) {
		return m.client.Logical().DeleteWithContext(ctx, path)
	}); err != nil {
		return err
	}
	m.log.Info("destroyed generation KEK", "generation_key", name)
	return nil
}

// Check is a readiness probe: it reads the KEK's configuration with
// jetond's token, so it fails when Vault is unreachable or sealed, when the
// token no longer works, and when the KEK has since been made exportable or
// deleted. Every failure wraps tokenizer.ErrUnavailable.
func (m *Manager) Check(ctx context.Context) error {
	if err := m.checkKey(ctx); err != nil {
		if errors.Is(err, tokenizer.ErrUnavailable) {
			return err
		}
		return fmt.Errorf("%w: %w", tokenizer.ErrUnavailable, err)
	}
	return nil
}

// checkKey reads the KEK and refuses one that could leave Vault.
func (m *Manager) checkKey(ctx context.Context) error {
	s, err := m.call(ctx, "read KEK", func(ctx context.Context) (*api.Secret, error) {
		return m.client.Logical().ReadWithContext(ctx, m.mount+"/keys/"+m.key)
	})
	if err != nil {
		return err
	}
	return checkKEK(m.mount, m.key, s)
}

// checkKEK validates a <mount>/keys/<key> response.
func checkKEK(mount, key string, s *api.Secret) error {
	if s == nil || s.Data == nil {
		return fmt.Errorf("vaultkeys: KEK %q not found on Transit mount %q; run `jeton vault setup` "+
			"(or have a custodian create it with type=aes256-gcm96, exportable=false, allow_plaintext_backup=false)", key, mount)
	}
	for _, flag := range []string{"exportable", "allow_plaintext_backup"} {
		v, ok := s.Data[flag].(bool)
		if !ok {
			return fmt.Errorf("vaultkeys: KEK %q: Vault's key configuration has no boolean %q", key, flag)
		}
		if v {
			return fmt.Errorf("vaultkeys: refusing KEK %q: %s is true, so its key material can leave Vault; "+
				"this cannot be undone, create a new KEK with %s=false", key, flag, flag)
		}
	}
	if derived, _ := s.Data["derived"].(bool); derived {
		return fmt.Errorf("vaultkeys: refusing KEK %q: derived is true, and jeton sends no derivation context", key)
	}
	typ, _ := s.Data["type"].(string)
	if typ != KeyTypeAES256GCM96 && typ != KeyTypeManaged {
		return fmt.Errorf("vaultkeys: refusing KEK %q: type is %q, want %q or %q (Vault Enterprise managed key)",
			key, typ, KeyTypeAES256GCM96, KeyTypeManaged)
	}
	return nil
}

// call runs one request. With AppRole, a permission-denied answer (the token
// was revoked or expired) leads to one new log-in and one retry.
func (m *Manager) call(ctx context.Context, op string, do func(context.Context) (*api.Secret, error)) (*api.Secret, error) {
	token := m.client.Token()
	s, err := do(ctx)
	if err != nil && m.auth != nil && isDenied(err) && ctx.Err() == nil {
		if lerr := m.relogin(ctx, token); lerr != nil {
			if !errors.Is(lerr, tokenizer.ErrUnavailable) {
				lerr = fmt.Errorf("%w: %w", tokenizer.ErrUnavailable, lerr)
			}
			return nil, fmt.Errorf("vaultkeys: %s: permission denied, then logging in again failed: %w", op, lerr)
		}
		s, err = do(ctx)
	}
	if err != nil {
		return nil, classify(ctx, op, err)
	}
	return s, nil
}

func isDenied(err error) bool {
	var re *api.ResponseError
	return errors.As(err, &re) && re.StatusCode == 403
}

// classify turns a Vault client error into a vaultkeys error. Vault being
// down, sealed, overloaded, slow or refusing the token all wrap
// tokenizer.ErrUnavailable: the caller fails closed and retries later.
func classify(ctx context.Context, op string, err error) error {
	if cerr := ctx.Err(); cerr != nil {
		// Both: ErrUnavailable for callers that fail closed, the context
		// error so the server can map it to Canceled or DeadlineExceeded.
		return fmt.Errorf("vaultkeys: %s: %w: %w", op, tokenizer.ErrUnavailable, cerr)
	}
	var re *api.ResponseError
	if !errors.As(err, &re) {
		// No answer from Vault: connection refused, reset, TLS, timeout.
		// The text names the URL and the network error, never the body.
		return fmt.Errorf("vaultkeys: %s: %w: %v", op, tokenizer.ErrUnavailable, err)
	}
	switch code := re.StatusCode; {
	case code == 503:
		return fmt.Errorf("vaultkeys: %s: %w: Vault is sealed or has no active node (HTTP 503)", op, tokenizer.ErrUnavailable)
	case code == 403:
		return fmt.Errorf("vaultkeys: %s: %w: permission denied (HTTP 403): the token was revoked, expired, "+
			"or lacks the %s policy", op, tokenizer.ErrUnavailable, PolicyJetond)
	case code == 412 || code == 429 || code >= 500:
		return fmt.Errorf("vaultkeys: %s: %w: HTTP %d: %s", op, tokenizer.ErrUnavailable, code, strings.Join(re.Errors, "; "))
	case code == 400 && op == "unwrap":
		// Transit's messages for a refused ciphertext never quote it, but a
		// summary is all the caller needs.
		if vaultSays(re, "too old") {
			return fmt.Errorf("vaultkeys: %s: %w: the wrapped key's KEK version is below the KEK's min_decryption_version",
				op, tokenizer.ErrKeyDestroyed)
		}
		if vaultSays(re, "key not found") {
			// Transit's "encryption key not found": the KEK was deleted,
			// which is how a generation is destroyed.
			return fmt.Errorf("vaultkeys: %s: %w: the KEK does not exist", op, tokenizer.ErrKeyDestroyed)
		}
		// "cipher: message authentication failed" (another KEK, other
		// associated data, an edited ciphertext), "invalid ciphertext",
		// a version the KEK never had: not this identity's key.
		return fmt.Errorf("vaultkeys: %s: %w: Vault rejected the wrapped key (HTTP 400): %s", op, tokenizer.ErrKeyMismatch, summarize(re))
	default:
		return fmt.Errorf("vaultkeys: %s: Vault refused the request (HTTP %d): %s", op, code, summarize(re))
	}
}

func vaultSays(re *api.ResponseError, s string) bool {
	for _, e := range re.Errors {
		if strings.Contains(e, s) {
			return true
		}
	}
	return false
}

// summarize keeps Vault's error text short and free of anything echoed back.
func summarize(re *api.ResponseError) string {
	switch {
	case vaultSays(re, "encryption key not found"), vaultSays(re, "key not found"):
		return "the KEK does not exist"
	case vaultSays(re, "invalid ciphertext"), vaultSays(re, "message authentication failed"):
		return "invalid ciphertext"
	case re.RawError || len(re.Errors) == 0:
		return "no error message"
	}
	msg := strings.Join(re.Errors, "; ")
	if len(msg) > 200 {
		msg = msg[:200] + "..."
	}
	return msg
}

// checkWrapped rejects what cannot be a Transit ciphertext before it is sent,
// without quoting it.
func checkWrapped(wrapped []byte) error {
	if _, err := wrappedVersion(string(wrapped)); err != nil {
		return err
	}
	return nil
}

var errMalformedWrapped = fmt.Errorf("vaultkeys: wrapped key is not a Vault Transit ciphertext: %w", tokenizer.ErrKeyMismatch)

// wrappedVersion parses "vault:v<N>:<base64>" and returns N.
func wrappedVersion(s string) (int, error) {
	rest, ok := strings.CutPrefix(s, "vault:v")
	if !ok {
		return 0, errMalformedWrapped
	}
	ver, body, ok := strings.Cut(rest, ":")
	if !ok || body == "" {
		return 0, errMalformedWrapped
	}
	n, err := strconv.Atoi(ver)
	if err != nil || n < 1 {
		return 0, errMalformedWrapped
	}
	if _, err := base64.StdEncoding.DecodeString(body); err != nil {
		return 0, errMalformedWrapped
	}
	return n, nil
}

func plaintextField(s *api.Secret, op string) ([]byte, error) {
	if s == nil || s.Data == nil {
		return nil, fmt.Errorf("vaultkeys: %s: malformed response from Vault: no data", op)
	}
	b64, ok := s.Data["plaintext"].(string)
	if !ok {
		return nil, fmt.Errorf("vaultkeys: %s: malformed response from Vault: no plaintext", op)
	}
	key, err := base64.StdEncoding.DecodeString(b64)
	if err != nil || len(key) != 32 {
		clear(key)
		return nil, fmt.Errorf("vaultkeys: %s: malformed response from Vault: plaintext is not a base64 256-bit key", op)
	}
	return key, nil
}

func ciphertextField(s *api.Secret, op string) ([]byte, error) {
	if s == nil || s.Data == nil {
		return nil, fmt.Errorf("vaultkeys: %s: malformed response from Vault: no data", op)
	}
	ct, ok := s.Data["ciphertext"].(string)
	if !ok {
		return nil, fmt.Errorf("vaultkeys: %s: malformed response from Vault: no ciphertext", op)
	}
	if _, err := wrappedVersion(ct); err != nil {
		return nil, fmt.Errorf("vaultkeys: %s: malformed response from Vault: %w", op, err)
	}
	return []byte(ct), nil
}
