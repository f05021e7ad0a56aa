package main

import (
	"errors"
	"net/http"
	"os"
	"path/filepath"
	"strings"
	"testing"

	healthpb "google.golang.org/grpc/health/grpc_health_v1"

	"github.com/jeton-dev/jeton/client"
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
	if code, body, _ := p.get("/readyz"); code != 200 || body != "public: ready\ntrusted: ready\n" {
		t.Fatalf("/readyz after Vault returned: %d %q", code, body)
	}
}

// TestAuditFailureKeepsPublicReady replaces jetond's live audit file, as
// an editor or logrotate's create mode would: reveals fail closed and the
// trusted listener goes not ready, while the public listener stays ready
// and tokenizes, since Tokenize writes no audit record. /readyz, strict,
// answers 503 naming the trusted listener and the audit log;
// /readyz/public answers 200 and /readyz/trusted 503.
func TestAuditFailureKeepsPublicReady(t *testing.T) {
	dir := t.TempDir()
	public, trusted, metrics := freeAddr(t), freeAddr(t), freeAddr(t)
	p := startJetond(t, os.Environ(), metrics, "--dev", "--dev-dir", dir,
		"--public-addr", public, "--trusted-addr", trusted, "--metrics-addr", metrics)
	ca := filepath.Join(dir, "ca.pem")
	sponsor := newClient(t, public, ca, filepath.Join(dir, "sponsor.pem"), filepath.Join(dir, "sponsor-key.pem"))
	ttp := newClient(t, trusted, ca, filepath.Join(dir, "ttp.pem"), filepath.Join(dir, "ttp-key.pem"))
	ctx := testCtx(t)
	tok, err := sponsor.TokenizeValue(ctx, "name", "Readiness Testperson")
	if err != nil {
		t.Fatal(err)
	}
	if _, err := ttp.DetokenizeValue(ctx, tok, "support", ""); err != nil {
		t.Fatal(err)
	}
	if code, body, _ := p.get("/readyz"); code != 200 || body != "public: ready\ntrusted: ready\n" {
		t.Fatalf("/readyz before: %d %q", code, body)
	}

	files, err := auditFiles(filepath.Join(dir, "audit"))
	if err != nil || len(files) == 0 {
		t.Fatalf("audit files: %v %v", files, err)
	}
	live := files[len(files)-1]
	b, err := os.ReadFile(live)
	if err != nil {
		t.Fatal(err)
	}
	writeAtomically(t, live, b) // same content, another inode
	if _, err := ttp.DetokenizeValue(ctx, tok, "support", ""); !errors.Is(err, client.ErrUnavailable) {
		t.Fatalf("Detokenize after the audit file was replaced: %v, want UNAVAILABLE", err)
	}
	p.waitFor(flipLimit, "/readyz/trusted 503", func() bool {
		code, _, err := p.get("/readyz/trusted")
		return err == nil && code == http.StatusServiceUnavailable
	})
	for _, c := range []struct {
		path string
		code int
		body string
	}{
		{"/readyz", 503, "public: ready\ntrusted: not ready: audit\n"},
		{"/readyz/public", 200, "ready\n"},
		{"/readyz/trusted", 503, "not ready: audit\n"},
	} {
		if code, body, err := p.get(c.path); err != nil || code != c.code || body != c.body {
			t.Errorf("%s with the audit file replaced: %d %q %v; want %d %q", c.path, code, body, err, c.code, c.body)
		}
	}
	if st := healthStatus(healthConn(t, public, ca, filepath.Join(dir, "sponsor.pem"), filepath.Join(dir, "sponsor-key.pem"))); st != healthpb.HealthCheckResponse_SERVING {
		t.Errorf("public health with the audit file replaced: %v, want SERVING", st)
	}
	if st := healthStatus(healthConn(t, trusted, ca, filepath.Join(dir, "ttp.pem"), filepath.Join(dir, "ttp-key.pem"))); st != healthpb.HealthCheckResponse_NOT_SERVING {
		t.Errorf("trusted health with the audit file replaced: %v, want NOT_SERVING", st)
	}
	if _, err := sponsor.TokenizeValue(ctx, "name", "Readiness Testperson Two"); err != nil {
		t.Fatalf("Tokenize with the audit file replaced: %v", err)
	}
	x := scrape(t, p)
	if x.value("jeton_listener_ready", map[string]string{"listener": "public"}) != 1 || x.value("jeton_listener_ready", map[string]string{"listener": "trusted"}) != 0 {
		t.Error("jeton_listener_ready does not show the public listener ready and the trusted one not")
	}
}
