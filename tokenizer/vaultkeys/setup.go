package vaultkeys

import (
	"context"
	"errors"
	"fmt"
	"maps"
	"slices"
	"strings"
	"time"

	"github.com/hashicorp/vault/api"
)

// SetupConfig says what Setup prepares.
type SetupConfig struct {
	// Mount is the Transit mount path; "transit" when empty.
	Mount string
	// Key is the KEK's name; "jeton-kek" when empty.
	Key string
	// AppRole makes Setup enable AppRole (if absent) and create the role
	// "jetond" bound to the jeton-jetond policy, and issue a secret_id.
	AppRole bool
	// AppRoleMount is the AppRole auth mount; "approle" when empty.
	AppRoleMount string
	// TokenTTL and TokenMaxTTL bound the role's tokens; 1h and 24h when
	// zero. The Manager renews up to TokenMaxTTL, then logs in again.
	TokenTTL, TokenMaxTTL time.Duration
	// SecretIDTTL bounds the issued secret_id; zero means it never expires.
	SecretIDTTL time.Duration
}

// SetupResult reports what Setup did.
type SetupResult struct {
	Mount, Key string
	// MountCreated and KeyCreated are false when they already existed.
	MountCreated, KeyCreated bool
	// Policies are the policy names written.
	Policies []string
	// RoleID and SecretID are the AppRole credentials for jetond, empty
	// unless SetupConfig.AppRole. SecretID is a credential: hand it to
	// jetond's secret store, never to a log.
	RoleID, SecretID string
	// Audit is what Setup did for the audit anchor.
	Audit *AuditSetupResult
}

// Setup prepares a fresh Vault for jeton with root, a client holding a token
// allowed to manage mounts, auth methods and policies:
//   - it enables the Transit mount if absent;
//   - it creates the KEK as aes256-gcm96 with exportable=false and
//     allow_plaintext_backup=false, or, if the KEK exists, checks it as New
//     does and refuses it on the same grounds;
//   - it creates the audit anchor's Ed25519 signing key and KV v2 mount
//     (cas_required), or checks them (setupAudit);
//   - it writes the policies PolicyJetond, PolicyCustodian and
//     PolicyAuditVerifier (Policies);
//   - with cfg.AppRole, it enables AppRole if absent, (re)writes the role
//     RoleName and issues a new secret_id.
//
// Setup is idempotent apart from issuing a new secret_id at each run.
func Setup(ctx context.Context, root *api.Client, cfg SetupConfig) (*SetupResult, error) {
	if root == nil {
		return nil, errors.New("vaultkeys: setup: nil Vault client")
	}
	res := &SetupResult{Mount: strings.Trim(cfg.Mount, "/"), Key: cfg.Key}
	if res.Mount == "" {
		res.Mount = DefaultMount
	}
	if res.Key == "" {
		res.Key = DefaultKey
	}
	if err := checkNames(res.Mount, res.Key); err != nil {
		return nil, err
	}

	mounts, err := root.Sys().ListMountsWithContext(ctx)
	if err != nil {
		return nil, classify(ctx, "setup: list mounts", err)
	}
	if mi, ok := mounts[res.Mount+"/"]; ok {
		if mi.Type != "transit" {
			return nil, fmt.Errorf("vaultkeys: setup: mount %q exists with type %q, not transit", res.Mount, mi.Type)
		}
	} else {
		err := root.Sys().MountWithContext(ctx, res.Mount, &api.MountInput{Type: "transit", Description: "jeton key-encryption keys"})
		if err != nil {
			return nil, classify(ctx, "setup: enable transit", err)
		}
		res.MountCreated = true
	}

	keyPath := res.Mount + "/keys/" + res.Key
	s, err := root.Logical().ReadWithContext(ctx, keyPath)
	if err != nil {
		return nil, classify(ctx, "setup: read KEK", err)
	}
	if s == nil {
		_, err := root.Logical().WriteWithContext(ctx, keyPath, map[string]any{
			"type":                   KeyTypeAES256GCM96,
			"exportable":             false,
			"allow_plaintext_backup": false,
		})
		if err != nil {
			return nil, classify(ctx, "setup: create KEK", err)
		}
		res.KeyCreated = true
		if s, err = root.Logical().ReadWithContext(ctx, keyPath); err != nil {
			return nil, classify(ctx, "setup: read KEK", err)
		}
	}
	if err := checkKEK(res.Mount, res.Key, s); err != nil {
		return nil, err
	}

	// ---- Audit anchor: signing key and checkpoint store (setup_audit.go).
	if res.Audit, err = setupAudit(ctx, root, res.Mount, res.Key); err != nil {
		return nil, err
	}

	policies := Policies(res.Mount, res.Key)
	for _, name := range slices.Sorted(maps.Keys(policies)) {
		if err := root.Sys().PutPolicyWithContext(ctx, name, policies[name]); err != nil {
			return nil, classify(ctx, "setup: write policy "+name, err)
		}
		res.Policies = append(res.Policies, name)
	}
	if !cfg.AppRole {
		return res, nil
	}

	if err := setupAppRole(ctx, root, cfg, res); err != nil {
		return nil, err
	}
	return res, nil
}

func setupAppRole(ctx context.Context, root *api.Client, cfg SetupConfig, res *SetupResult) error {
	mount := strings.Trim(cfg.AppRoleMount, "/")
	if mount == "" {
		mount = DefaultAppRoleMount
	}
	if !mountPattern.MatchString(mount) {
		return fmt.Errorf("vaultkeys: setup: AppRoleMount %q is not a plain Vault path", mount)
	}
	auths, err := root.Sys().ListAuthWithContext(ctx)
	if err != nil {
		return classify(ctx, "setup: list auth methods", err)
	}
	if am, ok := auths[mount+"/"]; ok {
		if am.Type != "approle" {
			return fmt.Errorf("vaultkeys: setup: auth mount %q exists with type %q, not approle", mount, am.Type)
		}
	} else if err := root.Sys().EnableAuthWithOptionsWithContext(ctx, mount, &api.EnableAuthOptions{Type: "approle"}); err != nil {
		return classify(ctx, "setup: enable approle", err)
	}

	ttl, maxTTL := cfg.TokenTTL, cfg.TokenMaxTTL
	if ttl == 0 {
		ttl = time.Hour
	}
	if maxTTL == 0 {
		maxTTL = 24 * time.Hour
	}
	role := "auth/" + mount + "/role/" + RoleName
	_, err = root.Logical().WriteWithContext(ctx, role, map[string]any{
		"token_policies": []string{PolicyJetond},
		// jeton-jetond already grants renew-self and lookup-self; the
		// default policy would add cubbyhole and more for nothing.
		"token_no_default_policy": true,
		"token_type":              "service", // batch tokens cannot be renewed
		"token_ttl":               int(ttl / time.Second),
		"token_max_ttl":           int(maxTTL / time.Second),
		"secret_id_ttl":           int(cfg.SecretIDTTL / time.Second),
		"bind_secret_id":          true,
	})
	if err != nil {
		return classify(ctx, "setup: write AppRole role", err)
	}
	s, err := root.Logical().ReadWithContext(ctx, role+"/role-id")
	if err != nil {
		return classify(ctx, "setup: read role_id", err)
	}
	if s == nil || s.Data == nil {
		return errors.New("vaultkeys: setup: read role_id: malformed response from Vault")
	}
	roleID, _ := s.Data["role_id"].(string)
	s, err = root.Logical().WriteWithContext(ctx, role+"/secret-id", nil)
	if err != nil {
		return classify(ctx, "setup: issue secret_id", err)
	}
	if s == nil || s.Data == nil {
		return errors.New("vaultkeys: setup: issue secret_id: malformed response from Vault")
	}
	secretID, _ := s.Data["secret_id"].(string)
	if roleID == "" || secretID == "" {
		return errors.New("vaultkeys: setup: malformed AppRole response from Vault")
	}
	res.RoleID, res.SecretID = roleID, secretID
	return nil
}
