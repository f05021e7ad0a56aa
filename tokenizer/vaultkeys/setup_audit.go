package vaultkeys

import (
	"context"
	"errors"
	"fmt"
	"strings"
	"time"

	"github.com/hashicorp/vault/api"
)

// AuditSetupResult reports what Setup did for the audit anchor.
type AuditSetupResult struct {
	SigningKey, KVMount string
	// KeyCreated and MountCreated are false when they already existed.
	KeyCreated, MountCreated bool
}

// AuditKVMaxVersions is how many versions of each replica's checkpoint
// the audit KV mount keeps (Setup sets it on the mount, every run). The
// older versions are the anchor's recent history, read only to jetond: a
// Vault administrator who rolls a checkpoint back leaves the newer one
// there for a while. Bounded, because jetond writes a version at every
// checkpoint (every few seconds while reveals happen) and Vault's storage
// must not grow with them; 1000 versions of a few hundred bytes each.
// Setup also sets delete_version_after to 0 (never): a mount that expired
// versions would lose the latest checkpoint of a quiet replica, which
// jetond would then refuse to start without.
const AuditKVMaxVersions = 1000

// kvUpgradeWait bounds how long Setup waits for a new KV v2 mount to
// finish its initial upgrade before its config can be written.
const kvUpgradeWait = 30 * time.Second

// setupAudit creates the audit anchor's objects: the Ed25519 signing key
// (exportable=false, allow_plaintext_backup=false) on the KEK's Transit
// mount, and the KV v2 mount with cas_required=true, so every write of a
// checkpoint must name the version it replaces, a bounded history
// (AuditKVMaxVersions) and no expiry. Existing objects are
// checked and refused on the same grounds.
func setupAudit(ctx context.Context, root *api.Client, mount, kek string) (*AuditSetupResult, error) {
	res := &AuditSetupResult{SigningKey: DefaultAuditSigningKey, KVMount: DefaultAuditKVMount}
	if strings.HasPrefix(res.SigningKey, kek+"-") {
		return nil, fmt.Errorf("vaultkeys: setup: the audit signing key %q is inside the %q namespace jetond may delete keys in; choose another KEK name", res.SigningKey, kek+"-*")
	}
	keyPath := mount + "/keys/" + res.SigningKey
	s, err := root.Logical().ReadWithContext(ctx, keyPath)
	if err != nil {
		return nil, classify(ctx, "setup: read audit signing key", err)
	}
	if s == nil {
		_, err := root.Logical().WriteWithContext(ctx, keyPath, map[string]any{
			"type": "ed25519", "exportable": false, "allow_plaintext_backup": false,
		})
		if err != nil {
			return nil, classify(ctx, "setup: create audit signing key", err)
		}
		res.KeyCreated = true
		if s, err = root.Logical().ReadWithContext(ctx, keyPath); err != nil {
			return nil, classify(ctx, "setup: read audit signing key", err)
		}
	}
	if s == nil || s.Data == nil {
		return nil, errors.New("vaultkeys: setup: audit signing key: malformed response from Vault")
	}
	if typ, _ := s.Data["type"].(string); typ != "ed25519" {
		return nil, fmt.Errorf("vaultkeys: setup: audit signing key %q exists with type %q, not ed25519", res.SigningKey, typ)
	}
	for _, flag := range []string{"exportable", "allow_plaintext_backup", "derived"} {
		if v, ok := s.Data[flag].(bool); !ok || v {
			return nil, fmt.Errorf("vaultkeys: setup: refusing audit signing key %q: %s is not false", res.SigningKey, flag)
		}
	}

	mounts, err := root.Sys().ListMountsWithContext(ctx)
	if err != nil {
		return nil, classify(ctx, "setup: list mounts", err)
	}
	if mi, ok := mounts[res.KVMount+"/"]; ok {
		if mi.Type != "kv" || mi.Options["version"] != "2" {
			return nil, fmt.Errorf("vaultkeys: setup: mount %q exists as %s version %q, not kv version 2", res.KVMount, mi.Type, mi.Options["version"])
		}
	} else {
		err := root.Sys().MountWithContext(ctx, res.KVMount, &api.MountInput{
			Type: "kv", Options: map[string]string{"version": "2"}, Description: "jeton audit checkpoints",
		})
		if err != nil {
			return nil, classify(ctx, "setup: enable kv v2 for audit checkpoints", err)
		}
		res.MountCreated = true
	}
	// A new KV v2 mount answers "upgrading" for a moment.
	wctx, cancel := context.WithTimeout(ctx, kvUpgradeWait)
	defer cancel()
	for {
		_, err = root.Logical().WriteWithContext(wctx, res.KVMount+"/config", map[string]any{
			"cas_required": true, "max_versions": AuditKVMaxVersions, "delete_version_after": "0s",
		})
		if err == nil {
			return res, nil
		}
		select {
		case <-wctx.Done():
			return nil, classify(ctx, "setup: set cas_required on the audit checkpoints mount", err)
		case <-time.After(100 * time.Millisecond):
		}
	}
}
