package integration_test

import (
	"errors"
	"slices"
	"testing"

	vaultapi "github.com/hashicorp/vault/api"

	"github.com/jeton-dev/jeton/integration/testenv"
	"github.com/jeton-dev/jeton/tokenizer/vaultkeys"
)

// TestJetondTokenLeastPrivilege takes the very token a running jetond
// uses (it round-trips values with it) and shows that it cannot export a
// key, back one up, reach another key's data keys, read another mount or
// manage Vault. Each refused request is also made with the root token
// where that can succeed, so a refusal means the policy, not a bad path.
func TestJetondTokenLeastPrivilege(t *testing.T) {
	r := testenv.StartRedis(t)
	v := startVaultEnv(t, false)
	token := v.token(t, vaultkeys.PolicyJetond)
	h := startJetond(t, jetondOpts{RedisAddrs: []string{r.Addr}, Vault: v, Token: token})
	its := items(t, 0, 7)
	tokenize(t, h, "acme", its)
	detokenizeAll(t, h, its)

	root := v.Root
	jc := v.client(t, token)

	self, err := jc.Auth().Token().LookupSelf()
	if err != nil {
		t.Fatalf("lookup-self with jetond's token: %v", err)
	}
	pols, _ := self.TokenPolicies()
	if !slices.Equal(pols, []string{vaultkeys.PolicyJetond}) {
		t.Fatalf("jetond's token has policies %v, want only %s", pols, vaultkeys.PolicyJetond)
	}

	// Another key, exportable, and a KV mount with a secret.
	const other = "probe-exportable"
	mustWrite(t, root, "transit/keys/"+other, map[string]any{"exportable": true, "allow_plaintext_backup": true})
	if err := root.Sys().Mount("secret", &vaultapi.MountInput{Type: "kv", Options: map[string]string{"version": "1"}}); err != nil {
		t.Fatal(err)
	}
	mustWrite(t, root, "secret/probe", map[string]any{"note": "not for jetond"})

	type op struct {
		name string
		do   func(c *vaultapi.Client) error
		// rootWorks: the request succeeds with the root token.
		rootWorks bool
	}
	read := func(path string) func(*vaultapi.Client) error {
		return func(c *vaultapi.Client) error { _, err := c.Logical().Read(path); return err }
	}
	write := func(path string, data map[string]any) func(*vaultapi.Client) error {
		return func(c *vaultapi.Client) error { _, err := c.Logical().Write(path, data); return err }
	}
	list := func(path string) func(*vaultapi.Client) error {
		return func(c *vaultapi.Client) error { _, err := c.Logical().List(path); return err }
	}
	ops := []op{
		{"export the KEK", read("transit/export/encryption-key/" + vaultkeys.DefaultKey), false},
		{"back up the KEK", read("transit/backup/" + vaultkeys.DefaultKey), false},
		{"export another key", read("transit/export/encryption-key/" + other), true},
		{"back up another key", read("transit/backup/" + other), true},
		{"data key of another key", write("transit/datakey/plaintext/"+other, nil), true},
		// datakey and rewrap ignore associated_data: not granted at all.
		{"data key of the KEK", write("transit/datakey/plaintext/"+vaultkeys.DefaultKey, nil), true},
		{"encrypt with another key", write("transit/encrypt/"+other, map[string]any{"plaintext": "AAAA"}), true},
		{"read another key", read("transit/keys/" + other), true},
		{"rotate the KEK", write("transit/keys/"+vaultkeys.DefaultKey+"/rotate", nil), false},
		{"reconfigure the KEK", write("transit/keys/"+vaultkeys.DefaultKey+"/config", map[string]any{"min_decryption_version": 1}), false},
		{"read sys/mounts", read("sys/mounts"), true},
		{"read another mount", read("secret/probe"), true},
		{"read its policy", read("sys/policy/" + vaultkeys.PolicyJetond), true},
		{"create a token", write("auth/token/create", map[string]any{"policies": []string{"root"}}), false},
		// jetond may create per-generation KEKs ("jeton-kek-*"), but
		// never one that could leave Vault, nor export or back one up.
		{"create an exportable generation KEK", write("transit/keys/"+vaultkeys.DefaultKey+"-probe-g1",
			map[string]any{"type": "aes256-gcm96", "exportable": true}), false},
		{"create a generation KEK allowing plaintext backup", write("transit/keys/"+vaultkeys.DefaultKey+"-probe-g2",
			map[string]any{"type": "aes256-gcm96", "allow_plaintext_backup": true}), false},
		{"export a generation KEK", read("transit/export/encryption-key/" + vaultkeys.DefaultKey + "-acme-g1"), false},
		{"back up a generation KEK", read("transit/backup/" + vaultkeys.DefaultKey + "-acme-g1"), false},
	}
	for _, o := range ops {
		if err := o.do(jc); !isForbidden(err) {
			t.Errorf("%s with jetond's token: err = %v, want 403 permission denied", o.name, err)
		}
		if o.rootWorks {
			if err := o.do(root); err != nil {
				t.Errorf("control: %s with the root token failed: %v", o.name, err)
			}
		}
	}

	// And what the policy does grant still works for that token: wrapping
	// with associated data, and listing key names (a purge finds every
	// generation key of its tenant that way; names hold no key material).
	if _, err := jc.Logical().Write("transit/encrypt/"+vaultkeys.DefaultKey,
		map[string]any{"plaintext": "AAAA", "associated_data": "AAAA"}); err != nil {
		t.Errorf("encrypt under the KEK with jetond's token: %v", err)
	}
	if err := list("transit/keys")(jc); err != nil {
		t.Errorf("list Transit keys with jetond's token: %v", err)
	}
}

func isForbidden(err error) bool {
	var re *vaultapi.ResponseError
	return errors.As(err, &re) && re.StatusCode == 403
}

func mustWrite(t testing.TB, c *vaultapi.Client, path string, data map[string]any) {
	t.Helper()
	if _, err := c.Logical().Write(path, data); err != nil {
		t.Fatalf("write %s: %v", path, err)
	}
}
