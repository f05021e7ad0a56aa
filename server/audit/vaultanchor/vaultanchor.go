// Package vaultanchor is the production audit.Anchor on HashiCorp Vault:
// checkpoints are signed by a Transit Ed25519 key that never leaves Vault
// (exportable=false, allow_plaintext_backup=false), and stored in a KV
// version 2 mount, one path per replica, written with check-and-set so that
// a checkpoint only replaces the version it was computed against. KV keeps
// the older versions, and jetond's policy cannot delete them.
//
// A verifier needs only read access: the Transit key's public keys and the
// KV path (the jeton-audit-verifier policy of jeton vault setup).
//
// The package reads no environment variable; cmd/jetond and cmd/jeton pass
// an *api.Client configured from the standard VAULT_* variables.
package vaultanchor

import (
	"context"
	"crypto/ed25519"
	"encoding/base64"
	"encoding/json"
	"errors"
	"fmt"
	"regexp"
	"sort"
	"strconv"
	"strings"

	"github.com/hashicorp/vault/api"

	"github.com/jeton-dev/jeton/server/audit"
)

// Defaults, as jeton vault setup creates them.
const (
	DefaultTransitMount = "transit"
	DefaultSigningKey   = "jeton-audit-checkpoints"
	DefaultKVMount      = "jeton-audit"
	// PathPrefix is the KV path under which each replica's checkpoint
	// lives: <kv mount>/data/checkpoints/<replica>.
	PathPrefix = "checkpoints"
)

// Config names the Vault objects of the anchor.
type Config struct {
	// TransitMount and SigningKey name the Ed25519 signing key.
	TransitMount, SigningKey string
	// KVMount is the KV v2 mount holding the checkpoints.
	KVMount string
	// Replica is the replica whose checkpoint this anchor keeps.
	Replica string
}

var namePattern = regexp.MustCompile(`^[A-Za-z0-9_.-]+(/[A-Za-z0-9_.-]+)*$`)

func (c *Config) setDefaults() error {
	c.TransitMount, c.KVMount = strings.Trim(c.TransitMount, "/"), strings.Trim(c.KVMount, "/")
	if c.TransitMount == "" {
		c.TransitMount = DefaultTransitMount
	}
	if c.SigningKey == "" {
		c.SigningKey = DefaultSigningKey
	}
	if c.KVMount == "" {
		c.KVMount = DefaultKVMount
	}
	for _, n := range []string{c.TransitMount, c.SigningKey, c.KVMount} {
		if !namePattern.MatchString(n) {
			return fmt.Errorf("vaultanchor: %q is not a plain Vault name", n)
		}
	}
	if !audit.ValidReplica(c.Replica) {
		return fmt.Errorf("vaultanchor: invalid replica id %q", c.Replica)
	}
	return nil
}

// Anchor is an audit.Anchor on Vault.
type Anchor struct {
	c   *api.Client
	cfg Config
}

// New checks the signing key (Ed25519, not exportable, no plaintext
// backup) and returns the anchor of cfg.Replica. The client's token needs
// the jeton-jetond policy to sign and store, or jeton-audit-verifier to
// read only.
func New(ctx context.Context, c *api.Client, cfg Config) (*Anchor, error) {
	if c == nil {
		return nil, errors.New("vaultanchor: nil Vault client")
	}
	if err := cfg.setDefaults(); err != nil {
		return nil, err
	}
	a := &Anchor{c: c, cfg: cfg}
	if _, err := a.keys(ctx); err != nil {
		return nil, err
	}
	return a, nil
}

// keys reads the signing key, checks its flags, and returns its public
// keys by version.
func (a *Anchor) keys(ctx context.Context) (map[int]ed25519.PublicKey, error) {
	name := a.cfg.TransitMount + "/keys/" + a.cfg.SigningKey
	s, err := a.c.Logical().ReadWithContext(ctx, name)
	if err != nil {
		return nil, vaultErr("read the signing key "+name, err)
	}
	if s == nil || s.Data == nil {
		return nil, fmt.Errorf("vaultanchor: signing key %s not found; run `jeton vault setup`", name)
	}
	if typ, _ := s.Data["type"].(string); typ != "ed25519" {
		return nil, fmt.Errorf("vaultanchor: refusing signing key %s: type is %q, want ed25519", name, typ)
	}
	for _, flag := range []string{"exportable", "allow_plaintext_backup", "derived"} {
		v, ok := s.Data[flag].(bool)
		if !ok || v {
			return nil, fmt.Errorf("vaultanchor: refusing signing key %s: %s must be false, so the key never leaves Vault and one key verifies every checkpoint", name, flag)
		}
	}
	raw, _ := s.Data["keys"].(map[string]any)
	out := map[int]ed25519.PublicKey{}
	for v, k := range raw {
		n, err := strconv.Atoi(v)
		m, _ := k.(map[string]any)
		b64, _ := m["public_key"].(string)
		pub, perr := base64.StdEncoding.DecodeString(b64)
		if err != nil || perr != nil || len(pub) != ed25519.PublicKeySize {
			return nil, fmt.Errorf("vaultanchor: signing key %s: version %s has no Ed25519 public key", name, v)
		}
		out[n] = ed25519.PublicKey(pub)
	}
	if len(out) == 0 {
		return nil, fmt.Errorf("vaultanchor: signing key %s has no version", name)
	}
	return out, nil
}

// Sign implements audit.Anchor with transit/sign (pure Ed25519).
func (a *Anchor) Sign(ctx context.Context, msg []byte) ([]byte, ed25519.PublicKey, error) {
	path := a.cfg.TransitMount + "/sign/" + a.cfg.SigningKey
	s, err := a.c.Logical().WriteWithContext(ctx, path, map[string]any{"input": base64.StdEncoding.EncodeToString(msg)})
	if err != nil {
		return nil, nil, vaultErr("sign", err)
	}
	var sigText string
	if s != nil {
		sigText, _ = s.Data["signature"].(string)
	}
	// vault:v<N>:<base64 signature>
	rest, ok := strings.CutPrefix(sigText, "vault:v")
	ver, b64, ok2 := strings.Cut(rest, ":")
	n, err := strconv.Atoi(ver)
	sig, derr := base64.StdEncoding.DecodeString(b64)
	if !ok || !ok2 || err != nil || derr != nil || len(sig) != ed25519.SignatureSize {
		return nil, nil, errors.New("vaultanchor: sign: malformed signature from Vault")
	}
	keys, err := a.keys(ctx)
	if err != nil {
		return nil, nil, err
	}
	pub, ok := keys[n]
	if !ok {
		return nil, nil, fmt.Errorf("vaultanchor: sign: Vault signed with key version %d, which it does not list", n)
	}
	return sig, pub, nil
}

// PublicKeys implements audit.Anchor: every version's key, oldest first.
func (a *Anchor) PublicKeys(ctx context.Context) ([]ed25519.PublicKey, error) {
	keys, err := a.keys(ctx)
	if err != nil {
		return nil, err
	}
	versions := make([]int, 0, len(keys))
	for v := range keys {
		versions = append(versions, v)
	}
	sort.Ints(versions)
	out := make([]ed25519.PublicKey, 0, len(keys))
	for _, v := range versions {
		out = append(out, keys[v])
	}
	return out, nil
}

func (a *Anchor) dataPath() string {
	return a.cfg.KVMount + "/data/" + PathPrefix + "/" + a.cfg.Replica
}

// Load implements audit.Anchor. A deleted or destroyed latest version
// gives no checkpoint and that version's number.
func (a *Anchor) Load(ctx context.Context) ([]byte, uint64, error) {
	s, err := a.c.Logical().ReadWithContext(ctx, a.dataPath())
	if err != nil {
		return nil, 0, vaultErr("read checkpoint", err)
	}
	if s == nil || s.Data == nil {
		return nil, 0, nil
	}
	meta, _ := s.Data["metadata"].(map[string]any)
	version, err := jsonUint(meta["version"])
	if err != nil || version == 0 {
		return nil, 0, errors.New("vaultanchor: read checkpoint: malformed KV v2 answer (is the mount KV version 2?)")
	}
	data, _ := s.Data["data"].(map[string]any)
	cp, _ := data["checkpoint"].(string)
	if cp == "" {
		return nil, version, nil
	}
	return []byte(cp), version, nil
}

// Store implements audit.Anchor with KV v2 check-and-set.
func (a *Anchor) Store(ctx context.Context, checkpoint []byte, version uint64) (uint64, error) {
	s, err := a.c.Logical().WriteWithContext(ctx, a.dataPath(), map[string]any{
		"data":    map[string]any{"checkpoint": string(checkpoint)},
		"options": map[string]any{"cas": version},
	})
	if err != nil {
		var re *api.ResponseError
		if errors.As(err, &re) && re.StatusCode == 400 && strings.Contains(strings.Join(re.Errors, " "), "check-and-set") {
			return 0, audit.ErrAnchorConflict
		}
		return 0, vaultErr("store checkpoint", err)
	}
	if s == nil || s.Data == nil {
		return 0, errors.New("vaultanchor: store checkpoint: empty answer from Vault")
	}
	v, err := jsonUint(s.Data["version"])
	if err != nil || v == 0 {
		return 0, errors.New("vaultanchor: store checkpoint: malformed KV v2 answer")
	}
	return v, nil
}

func jsonUint(v any) (uint64, error) {
	switch n := v.(type) {
	case json.Number:
		return strconv.ParseUint(string(n), 10, 64)
	case float64:
		return uint64(n), nil
	default:
		return 0, errors.New("not a number")
	}
}

// vaultErr says what failed without echoing a request body.
func vaultErr(op string, err error) error {
	var re *api.ResponseError
	if errors.As(err, &re) {
		switch re.StatusCode {
		case 403:
			return fmt.Errorf("vaultanchor: %s: permission denied (HTTP 403): the token lacks the jeton-jetond (or, to read, jeton-audit-verifier) policy", op)
		case 503:
			return fmt.Errorf("vaultanchor: %s: Vault is sealed or has no active node (HTTP 503)", op)
		}
		return fmt.Errorf("vaultanchor: %s: HTTP %d: %s", op, re.StatusCode, strings.Join(re.Errors, "; "))
	}
	return fmt.Errorf("vaultanchor: %s: %w", op, err)
}
