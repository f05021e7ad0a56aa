package vaultanchor_test

import (
	"bytes"
	"context"
	"crypto/ed25519"
	"encoding/json"
	"strconv"
	"strings"
	"testing"
	"time"

	vaultapi "github.com/hashicorp/vault/api"

	"github.com/jeton-dev/jeton/integration/testenv"
	"github.com/jeton-dev/jeton/server/audit"
	"github.com/jeton-dev/jeton/server/audit/anchortest"
	"github.com/jeton-dev/jeton/server/audit/vaultanchor"
	"github.com/jeton-dev/jeton/tokenizer/vaultkeys"
)

// vaultEnv is a real Vault prepared by jeton vault setup, and tokens with
// only jetond's and only the verifier's policy.
type vaultEnv struct {
	v                *testenv.Vault
	root             *vaultapi.Client
	jetond, verifier *vaultapi.Client
}

func startVault(t *testing.T) *vaultEnv {
	t.Helper()
	v := testenv.StartVault(t)
	root := v.Client(t)
	ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
	defer cancel()
	res, err := vaultkeys.Setup(ctx, root, vaultkeys.SetupConfig{})
	if err != nil {
		t.Fatal(err)
	}
	if !res.Audit.KeyCreated || !res.Audit.MountCreated {
		t.Fatalf("Setup did not create the audit anchor: %+v", res.Audit)
	}
	// Setup is idempotent: a second run checks what exists.
	if _, err := vaultkeys.Setup(ctx, root, vaultkeys.SetupConfig{}); err != nil {
		t.Fatalf("second Setup: %v", err)
	}
	return &vaultEnv{v: v, root: root,
		jetond: tokenClient(t, v, root, vaultkeys.PolicyJetond), verifier: tokenClient(t, v, root, vaultkeys.PolicyAuditVerifier)}
}

func tokenClient(t *testing.T, v *testenv.Vault, root *vaultapi.Client, policy string) *vaultapi.Client {
	t.Helper()
	s, err := root.Auth().Token().Create(&vaultapi.TokenCreateRequest{Policies: []string{policy}, NoDefaultPolicy: true, TTL: "1h"})
	if err != nil {
		t.Fatal(err)
	}
	cfg := vaultapi.DefaultConfig()
	cfg.Address, cfg.MaxRetries = v.Addr, 0
	c, err := vaultapi.NewClient(cfg)
	if err != nil {
		t.Fatal(err)
	}
	c.ClearNamespace()
	c.SetToken(s.Auth.ClientToken)
	return c
}

func newAnchor(t *testing.T, c *vaultapi.Client, replica string) *vaultanchor.Anchor {
	t.Helper()
	a, err := vaultanchor.New(context.Background(), c, vaultanchor.Config{Replica: replica})
	if err != nil {
		t.Fatal(err)
	}
	return a
}

func TestVaultAnchor(t *testing.T) {
	e := startVault(t)
	if vaultanchor.DefaultSigningKey != vaultkeys.DefaultAuditSigningKey || vaultanchor.DefaultKVMount != vaultkeys.DefaultAuditKVMount {
		t.Fatal("vaultanchor's defaults differ from what jeton vault setup creates")
	}

	t.Run("conformance, jetond policy", func(t *testing.T) {
		anchortest.Run(t, func(t *testing.T, replica string) audit.Anchor { return newAnchor(t, e.jetond, replica) })
	})

	ctx := context.Background()
	a := newAnchor(t, e.jetond, "policy-check")
	msg := []byte("checkpoint body\n")
	sig, pub, err := a.Sign(ctx, msg)
	if err != nil {
		t.Fatal(err)
	}
	v1, err := a.Store(ctx, []byte("cp-1\n"), 0)
	if err != nil {
		t.Fatal(err)
	}

	t.Run("verifier reads keys and checkpoints, and cannot sign or write", func(t *testing.T) {
		va := newAnchor(t, e.verifier, "policy-check")
		keys, err := va.PublicKeys(ctx)
		if err != nil {
			t.Fatal(err)
		}
		if len(keys) != 1 || !keys[0].Equal(pub) || !ed25519.Verify(keys[0], msg, sig) {
			t.Fatal("the verifier's public key does not check jetond's signature")
		}
		if cp, v, err := va.Load(ctx); err != nil || string(cp) != "cp-1\n" || v != v1 {
			t.Fatalf("verifier Load = %q, %d, %v", cp, v, err)
		}
		if _, _, err := va.Sign(ctx, msg); err == nil || !strings.Contains(err.Error(), "403") {
			t.Fatalf("verifier Sign = %v, want permission denied", err)
		}
		if _, err := va.Store(ctx, []byte("forged\n"), v1); err == nil {
			t.Fatal("verifier Store succeeded")
		}
	})

	t.Run("jetond cannot rewrite history", func(t *testing.T) {
		l := e.jetond.Logical()
		path := vaultanchor.DefaultKVMount + "/data/checkpoints/policy-check"
		if _, err := l.Delete(path); err == nil {
			t.Error("jetond deleted its checkpoint")
		}
		if _, err := l.Write(vaultanchor.DefaultKVMount+"/destroy/checkpoints/policy-check", map[string]any{"versions": []int{1}}); err == nil {
			t.Error("jetond destroyed a checkpoint version")
		}
		if _, err := l.Write(vaultanchor.DefaultKVMount+"/metadata/checkpoints/policy-check", map[string]any{"max_versions": 1}); err == nil {
			t.Error("jetond changed the checkpoint's metadata")
		}
		if _, err := l.Write(path, map[string]any{"data": map[string]any{"checkpoint": "no cas\n"}}); err == nil {
			t.Error("a write without check-and-set succeeded (cas_required is off)")
		}
		if _, err := l.Write(vaultkeys.DefaultMount+"/keys/"+vaultanchor.DefaultSigningKey+"/config", map[string]any{"exportable": true}); err == nil {
			t.Error("jetond made the signing key exportable")
		}
		if cp, _, _ := a.Load(ctx); !bytes.Equal(cp, []byte("cp-1\n")) {
			t.Fatalf("checkpoint is now %q", cp)
		}
	})

	t.Run("deleted checkpoint reads as a version without data", func(t *testing.T) {
		if _, err := e.root.Logical().Delete(vaultanchor.DefaultKVMount + "/data/checkpoints/policy-check"); err != nil {
			t.Fatal(err)
		}
		cp, v, err := a.Load(ctx)
		if err != nil || cp != nil || v != v1 {
			t.Fatalf("Load after delete = %q, %d, %v; want nothing at version %d", cp, v, err, v1)
		}
	})

	t.Run("setup bounds the checkpoint history and never expires it", func(t *testing.T) {
		cfgPath := vaultanchor.DefaultKVMount + "/config"
		check := func(when string) {
			t.Helper()
			s, err := e.root.Logical().Read(cfgPath)
			if err != nil || s == nil {
				t.Fatalf("read %s: %v", cfgPath, err)
			}
			mv, _ := s.Data["max_versions"].(json.Number)
			if mv.String() != strconv.Itoa(vaultkeys.AuditKVMaxVersions) || s.Data["cas_required"] != true || s.Data["delete_version_after"] != "0s" {
				t.Fatalf("%s: the audit KV mount's config is %v; want max_versions %d, cas_required, delete_version_after 0s",
					when, s.Data, vaultkeys.AuditKVMaxVersions)
			}
		}
		check("after setup")
		// Loosened by hand (unbounded history, expiry, no check-and-set):
		// setup, run again, restores the bounds.
		if _, err := e.root.Logical().Write(cfgPath, map[string]any{"max_versions": 0, "delete_version_after": "1h", "cas_required": false}); err != nil {
			t.Fatal(err)
		}
		if _, err := vaultkeys.Setup(ctx, e.root, vaultkeys.SetupConfig{}); err != nil {
			t.Fatal(err)
		}
		check("after setup over a loosened mount")
	})

	t.Run("refuses an exportable signing key", func(t *testing.T) {
		if _, err := e.root.Logical().Write(vaultkeys.DefaultMount+"/keys/bad-signing", map[string]any{"type": "ed25519", "exportable": true}); err != nil {
			t.Fatal(err)
		}
		if _, err := vaultanchor.New(ctx, e.root, vaultanchor.Config{SigningKey: "bad-signing", Replica: "x"}); err == nil || !strings.Contains(err.Error(), "exportable") {
			t.Fatalf("New with an exportable key = %v", err)
		}
	})
}
