package integration_test

import (
	"context"
	"fmt"
	"os"
	"path/filepath"
	"regexp"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/jeton-dev/jeton/client"
	"github.com/jeton-dev/jeton/integration/testenv"
	"github.com/jeton-dev/jeton/tokenizer/vaultkeys"
)

// TestVaultCredentialsRevoked takes every Vault credential away from a
// running jetond that uses AppRole: its secret_id is destroyed and its
// tokens are revoked, so logging in again cannot succeed. Calls that need
// Vault (revealing a token of a tenant whose key this process never
// unwrapped, tokenizing for a new tenant) then fail with UNAVAILABLE and no
// result, and jetond stays up. A custodian then issues a new secret_id and
// replaces jetond's secret_id file; the same calls work again in the same
// process, without a restart. jetond's output never holds a secret_id or a
// Vault token.
func TestVaultCredentialsRevoked(t *testing.T) {
	r := testenv.StartRedis(t)
	v := startVaultEnv(t, true)
	// A raw audit log records every token and secret_id Vault hands out or
	// receives, jetond's included, for the leak check at the end.
	auditPath := filepath.Join(t.TempDir(), "vault-audit.log")
	if _, err := v.Root.Logical().Write("sys/audit/raw", map[string]any{
		"type":    "file",
		"options": map[string]any{"file_path": auditPath, "log_raw": "true"},
	}); err != nil {
		t.Fatalf("enable Vault audit log: %v", err)
	}
	h := startJetond(t, jetondOpts{RedisAddrs: []string{r.Addr}, Vault: v, Tenants: []string{"acme", "cold", "fresh"}})
	secretFile := filepath.Join(h.dir, "secret-id")
	noteValues(t, v.Setup.SecretID, v.RootToken)
	ctx := context.Background()
	role := "auth/approle/role/" + vaultkeys.RoleName

	warm := items(t, 0, 7)
	tokenize(t, h, "acme", warm)
	cold := items(t, 100, 7)
	tokenize(t, h, "cold", cold)
	h.Restart(t) // empties the key cache: "cold" now needs an unwrap
	detokenizeAll(t, h, warm)
	pid := h.Pid()

	// Take the credentials away: the secret_id first, so that nothing can
	// log in again between the two steps, then every live token.
	if _, err := v.Root.Logical().Write(role+"/secret-id/destroy", map[string]any{"secret_id": v.Setup.SecretID}); err != nil {
		t.Fatalf("destroy jetond's secret_id: %v", err)
	}
	if s, err := v.Root.Logical().List(role + "/secret-id"); err != nil || s != nil && s.Data["keys"] != nil {
		t.Fatalf("jetond's role still has secret_ids after the destroy (err %v)", err)
	}
	revoked := jetondTokens(t, v)
	if len(revoked) == 0 {
		t.Fatal("no AppRole token of jetond in Vault")
	}
	for _, acc := range revoked {
		if err := v.Root.Auth().Token().RevokeAccessor(acc); err != nil {
			t.Fatalf("revoke jetond's token: %v", err)
		}
	}
	if n := len(jetondTokens(t, v)); n != 0 {
		t.Fatalf("%d tokens of jetond still live after the revocation", n)
	}
	brokenAt := time.Now()

	// Cached keys keep serving: Vault is not on the per-item path.
	more := items(t, 200, 7)
	tokenize(t, h, "acme", more)
	detokenizeAll(t, h, append(slices.Clone(warm), more...))

	// Calls that need Vault fail closed, every time (the first one's new
	// log-in is refused, the later ones do not resend that secret_id), and
	// jetond stays up.
	fresh := items(t, 300, 3)
	for range 3 {
		res, err := h.TTP(t).Detokenize(ctx, []string{warm[0].Token, cold[0].Token, cold[1].Token}, purpose, caseRef)
		wantUnavailable(t, "Detokenize needing an unwrap, credentials revoked", res, err)
		tres, err := h.Sponsor(t, "fresh").Tokenize(ctx, []client.Item{{Class: fresh[0].Class, Value: fresh[0].Value}})
		wantUnavailable(t, "Tokenize for a new tenant, credentials revoked", tres, err)
	}
	if h.exited() || h.Pid() != pid {
		t.Fatalf("jetond did not stay up without Vault credentials (%v)", h.exitError())
	}
	// One refused log-in, then none while the secret_id is unchanged:
	// Vault locks the role out after 5 failures (user lockout, on by
	// default), and then refuses even a valid secret_id for 15 minutes.
	if n := strings.Count(h.Log(), "AppRole log-in refused"); n != 1 {
		t.Errorf("jetond logged %d refused AppRole log-ins, want exactly 1", n)
	}
	t.Logf("credentials revoked: Vault calls UNAVAILABLE for %s, cached tenant still served", time.Since(brokenAt).Round(time.Millisecond))

	// A custodian issues a new secret_id and replaces the file atomically.
	s, err := v.Root.Logical().Write(role+"/secret-id", nil)
	if err != nil || s == nil {
		t.Fatalf("issue a new secret_id: %v", err)
	}
	newSecret, _ := s.Data["secret_id"].(string)
	if newSecret == "" || newSecret == v.Setup.SecretID {
		t.Fatal("Vault issued no new secret_id")
	}
	noteValues(t, newSecret)
	tmp := secretFile + ".new"
	writeFile(t, tmp, newSecret)
	if err := os.Rename(tmp, secretFile); err != nil {
		t.Fatal(err)
	}
	repairedAt := time.Now()

	eventually(t, "Detokenize after a new secret_id", func() error { return tryDetokenize(t, h, cold) })
	recovered := time.Since(repairedAt)
	eventually(t, "Tokenize for a new tenant after a new secret_id", func() error { return tryTokenize(t, h, "fresh", fresh) })
	detokenizeAll(t, h, append(append(slices.Clone(warm), cold...), fresh...))
	t.Logf("recovered %s after the new secret_id was written, without a restart", recovered.Round(time.Millisecond))

	if h.exited() || h.Pid() != pid {
		t.Fatal("jetond was restarted")
	}
	if s, err := v.Root.Logical().Read("sys/locked-users"); err != nil || s == nil || fmt.Sprint(s.Data["total"]) != "0" {
		t.Errorf("Vault locked out a user (err %v): jetond's failed log-ins tripped Vault's user lockout", err)
	}
	now := jetondTokens(t, v)
	if len(now) == 0 || slices.ContainsFunc(now, func(a string) bool { return slices.Contains(revoked, a) }) {
		t.Fatalf("jetond's tokens after recovery: %d, overlapping the revoked ones; want a new log-in", len(now))
	}

	// No credential in jetond's output: not the secret_ids (old and new,
	// also in the harness's leak check), nor any token or secret_id that
	// went through Vault, nor anything shaped like a Vault token.
	log := h.Log()
	audit, err := os.ReadFile(auditPath)
	if err != nil {
		t.Fatalf("read Vault audit log: %v", err)
	}
	creds := map[string]bool{v.Setup.SecretID: true, newSecret: true, v.RootToken: true}
	for _, m := range regexp.MustCompile(`"(?:client_token|secret_id)":"([^"]+)"`).FindAllStringSubmatch(string(audit), -1) {
		creds[m[1]] = true
	}
	if !strings.Contains(string(audit), `"path":"auth/approle/login"`) || len(creds) < 5 {
		t.Fatalf("the Vault audit log holds %d credentials and no AppRole log-in; it cannot back the leak check", len(creds))
	}
	for c := range creds {
		if strings.Contains(log, c) {
			t.Errorf("jetond's output holds a Vault credential (%d characters)", len(c))
		}
	}
	if regexp.MustCompile(`\bhv[sbr]\.[A-Za-z0-9_-]{20,}`).MatchString(log) {
		t.Error("jetond's output holds something shaped like a Vault token")
	}
	t.Logf("credential leak check: %d Vault credentials, none in %d bytes of jetond output", len(creds), len(log))
}
