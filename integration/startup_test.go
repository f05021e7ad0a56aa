package integration_test

import (
	"strings"
	"testing"
	"time"

	"github.com/jeton-dev/jeton/integration/testenv"
	"github.com/jeton-dev/jeton/tokenizer/vaultkeys"
)

// TestStartupRefusals: jetond refuses to start, exiting non-zero with a
// message that says why, when the KEK is exportable, when it allows a
// plaintext backup, and when Redis cannot be reached. A control deployment
// that differs only in those points starts.
func TestStartupRefusals(t *testing.T) {
	r := testenv.StartRedis(t)
	v := startVaultEnv(t, false)

	// keyToken creates a Transit key with the given flags and returns a
	// token holding jeton's jetond policy for that key.
	keyToken := func(t *testing.T, key string, flags map[string]any) string {
		t.Helper()
		flags["type"] = vaultkeys.KeyTypeAES256GCM96
		if _, err := v.Root.Logical().Write("transit/keys/"+key, flags); err != nil {
			t.Fatalf("create Transit key %s: %v", key, err)
		}
		name := "jeton-jetond-" + key
		if err := v.Root.Sys().PutPolicy(name, vaultkeys.Policies("transit", key)[vaultkeys.PolicyJetond]); err != nil {
			t.Fatal(err)
		}
		return v.token(t, name)
	}

	t.Run("control-starts", func(t *testing.T) {
		h := startJetond(t, jetondOpts{RedisAddrs: []string{r.Addr}, Vault: v, Token: v.token(t, vaultkeys.PolicyJetond)})
		its := items(t, 0, 7)
		tokenize(t, h, "acme", its)
		detokenizeAll(t, h, its)
		h.Stop(t)
	})

	tests := []struct {
		name string
		opts func(t *testing.T) jetondOpts
		want []string
	}{
		{
			name: "exportable-kek",
			opts: func(t *testing.T) jetondOpts {
				tok := keyToken(t, "jeton-exportable", map[string]any{"exportable": true})
				return jetondOpts{RedisAddrs: []string{r.Addr}, Vault: v, Token: tok, VaultKey: "jeton-exportable"}
			},
			want: []string{"jetond: vault, refusing to start", `refusing KEK "jeton-exportable"`, "exportable is true"},
		},
		{
			name: "plaintext-backup-kek",
			opts: func(t *testing.T) jetondOpts {
				tok := keyToken(t, "jeton-backup", map[string]any{"allow_plaintext_backup": true})
				return jetondOpts{RedisAddrs: []string{r.Addr}, Vault: v, Token: tok, VaultKey: "jeton-backup"}
			},
			want: []string{"jetond: vault, refusing to start", `refusing KEK "jeton-backup"`, "allow_plaintext_backup is true"},
		},
		{
			name: "unreachable-redis",
			opts: func(t *testing.T) jetondOpts {
				closed := freeAddr(t) // nothing listens there any more
				return jetondOpts{RedisAddrs: []string{closed}, Vault: v, Token: v.token(t, vaultkeys.PolicyJetond)}
			},
			want: []string{"jetond: redis at", "is unreachable, refusing to start"},
		},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			h := newJetond(t, tc.opts(t))
			start := time.Now()
			h.start(t)
			code := h.waitExit(t, exitTimeout)
			if code == 0 {
				t.Fatal("jetond exited 0; want a refusal")
			}
			out := h.Log()
			for _, w := range tc.want {
				if !strings.Contains(out, w) {
					t.Errorf("jetond's output lacks %q:\n%s", w, tail(out, 10))
				}
			}
			t.Logf("refused with exit code %d after %s", code, time.Since(start).Round(time.Millisecond))
		})
	}
}
