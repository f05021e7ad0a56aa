package main

import (
	"strings"
	"testing"

	healthpb "google.golang.org/grpc/health/grpc_health_v1"
)

// TestVaultOutageKeepsLoadedTenantsReady stops the real Vault under a
// running jetond that has served a tenant: readiness stays up, /readyz
// and jeton_dependency_up say Vault is down, and the tenant is still
// tokenized and revealed; when Vault returns, the metric follows.
func TestVaultOutageKeepsLoadedTenantsReady(t *testing.T) {
	e := newProdEnv(t)
	p := e.start(t)
	sponsor, ttp := e.sponsor(t), e.ttp(t)
	ctx := testCtx(t)
	if _, err := sponsor.TokenizeValue(ctx, "name", "Vault Outage Testperson"); err != nil {
		t.Fatal(err)
	}

	e.vault.Stop()
	p.waitFor(flipLimit, "jeton_dependency_up{vault} = 0", func() bool {
		return scrape(t, p).value("jeton_dependency_up", map[string]string{"dependency": "vault"}) == 0
	})
	code, body, err := p.get("/readyz")
	if err != nil || code != 200 || !strings.Contains(body, "degraded: vault down") {
		t.Fatalf("/readyz with Vault down and a tenant loaded: %d %q %v; want 200 naming vault as degraded", code, body, err)
	}
	tok, err := sponsor.TokenizeValue(ctx, "name", "Vault Outage Testperson Two")
	if err != nil {
		t.Fatalf("Tokenize of a loaded tenant with Vault down: %v", err)
	}
	if v, err := ttp.DetokenizeValue(ctx, tok, "support", ""); err != nil || v != "Vault Outage Testperson Two" {
		t.Fatalf("Detokenize of a loaded tenant with Vault down: %v", err)
	}
	if st := healthStatus(healthConn(t, e.trusted, e.pki.ServerCA, e.pki.TTPCert, e.pki.TTPKey)); st != healthpb.HealthCheckResponse_SERVING {
		t.Fatalf("health with Vault down and a tenant loaded: %v, want SERVING", st)
	}

	e.vault.Start()
	p.waitFor(flipLimit, "jeton_dependency_up{vault} = 1", func() bool {
		return scrape(t, p).value("jeton_dependency_up", map[string]string{"dependency": "vault"}) == 1
	})
	if code, body, _ := p.get("/readyz"); code != 200 || body != "ready\n" {
		t.Fatalf("/readyz after Vault returned: %d %q", code, body)
	}
}
