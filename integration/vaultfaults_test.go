package integration_test

import (
	"context"
	"slices"
	"strings"
	"testing"

	"github.com/jeton-dev/jeton/client"
	"github.com/jeton-dev/jeton/integration/testenv"
	"github.com/jeton-dev/jeton/tokenizer/vaultkeys"
)

// TestVaultFaults runs jetond with AppRole against a real Vault that is
// stopped, sealed, and whose token for jetond is revoked.
//
// Data keys are cached in memory, so Vault is never on the per-item path:
// a tenant whose keys jetond already holds keeps working while Vault is
// away, by design. Each fault is therefore tested with calls that do need
// Vault: revealing a token of a tenant this jetond process has not yet
// unwrapped (tokenized before a restart), and tokenizing for a brand-new
// tenant (a new data key). Those calls fail with UNAVAILABLE and no value,
// even when the batch also holds a token whose key is cached; once Vault is
// back they work without restarting jetond.
func TestVaultFaults(t *testing.T) {
	faults := []string{"stopped", "sealed", "revoked"}
	tenants := []string{"acme"}
	for _, f := range faults {
		tenants = append(tenants, f, "new-"+f)
	}
	r := testenv.StartRedis(t)
	v := startVaultEnv(t, true)
	h := startJetond(t, jetondOpts{RedisAddrs: []string{r.Addr}, Vault: v, Tenants: tenants})
	ctx := context.Background()

	warm := items(t, 0, 14)
	tokenize(t, h, "acme", warm)
	cold := map[string][]item{}
	for i, f := range faults {
		cold[f] = items(t, 100*(i+1), 7)
		tokenize(t, h, f, cold[f])
	}
	h.Restart(t) // empties the key cache
	detokenizeAll(t, h, warm)
	pid := h.Pid()

	// fault runs one fault: break Vault, check calls, repair it, check
	// that calls work again in the same jetond process.
	fault := func(t *testing.T, name string, breakVault, repair func()) {
		base := 1000 * (slices.Index(faults, name) + 1)
		breakVault()

		// Cached keys keep serving.
		more := items(t, base, 7)
		tokenize(t, h, "acme", more)
		detokenizeAll(t, h, append(slices.Clone(warm), more...))

		// A batch mixing a cached tenant's token with one needing an
		// unwrap fails as a whole.
		toks := []string{warm[0].Token, cold[name][0].Token, cold[name][1].Token}
		res, err := h.TTP(t).Detokenize(ctx, toks, purpose, caseRef)
		wantUnavailable(t, "Detokenize needing an unwrap", res, err)
		fresh := items(t, base+100, 3)
		in := []client.Item{{Class: fresh[0].Class, Value: fresh[0].Value}}
		tres, err := h.Sponsor(t, "new-"+name).Tokenize(ctx, in)
		wantUnavailable(t, "Tokenize for a new tenant", tres, err)

		repair()
		eventually(t, "Detokenize after recovery", func() error { return tryDetokenize(t, h, cold[name]) })
		eventually(t, "Tokenize for a new tenant after recovery", func() error { return tryTokenize(t, h, "new-"+name, fresh) })
		detokenizeAll(t, h, fresh)
		if h.Pid() != pid {
			t.Fatal("jetond was restarted")
		}
	}

	t.Run("stopped", func(t *testing.T) {
		fault(t, "stopped", v.Stop, v.Start)
	})
	t.Run("sealed", func(t *testing.T) {
		fault(t, "sealed", v.Seal, v.Unseal)
	})
	t.Run("revoked", func(t *testing.T) {
		// Documented (vaultkeys.Config.AppRole): a call denied because the
		// token was revoked logs in again and retries once inside the
		// call, so it succeeds at the first attempt.
		revoked := jetondTokens(t, v)
		if len(revoked) == 0 {
			t.Fatal("no AppRole token of jetond in Vault")
		}
		for _, acc := range revoked {
			if err := v.Root.Auth().Token().RevokeAccessor(acc); err != nil {
				t.Fatalf("revoke jetond's token: %v", err)
			}
			if _, err := v.Root.Auth().Token().LookupAccessor(acc); err == nil {
				t.Fatal("a revoked token is still known to Vault")
			}
		}
		detokenizeAll(t, h, append(slices.Clone(warm), cold["revoked"]...))
		fresh := items(t, 5000, 3)
		tokenize(t, h, "new-revoked", fresh)
		detokenizeAll(t, h, fresh)

		now := jetondTokens(t, v)
		if len(now) == 0 || slices.ContainsFunc(now, func(a string) bool { return slices.Contains(revoked, a) }) {
			t.Fatalf("jetond's tokens after the revocation: %d, overlapping the revoked ones; want a new log-in", len(now))
		}
		if !strings.Contains(h.Log(), "token denied, logging in again") {
			t.Error("jetond did not log its new log-in")
		}
		if h.Pid() != pid {
			t.Fatal("jetond was restarted")
		}
	})
}

// jetondTokens returns the accessors of the live tokens issued to the
// AppRole role of jetond.
func jetondTokens(t testing.TB, v *vaultEnv) []string {
	t.Helper()
	s, err := v.Root.Logical().List("auth/token/accessors")
	if err != nil || s == nil {
		t.Fatalf("list token accessors: %v", err)
	}
	keys, _ := s.Data["keys"].([]any)
	var out []string
	for _, k := range keys {
		acc, _ := k.(string)
		info, err := v.Root.Auth().Token().LookupAccessor(acc)
		if err != nil || info == nil {
			continue
		}
		meta, _ := info.Data["meta"].(map[string]any)
		if meta["role_name"] == vaultkeys.RoleName {
			out = append(out, acc)
		}
	}
	return out
}
