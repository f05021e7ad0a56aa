package main

import (
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"strings"
	"syscall"
	"testing"

	"github.com/jeton-dev/jeton/client"
	"github.com/jeton-dev/jeton/server/devpki"
)

// TestSIGHUPLoadsRevocations: jetond reads the trusted listener's CRL at
// start-up and again on SIGHUP; a client certificate the new list revokes
// is refused, on a new connection and on the one it already had, while
// another certificate of the same identity keeps working.
func TestSIGHUPLoadsRevocations(t *testing.T) {
	e := newProdEnv(t)
	crl := filepath.Join(e.dir, "ttp.crl")
	if err := e.pki.TTPAuthority.WriteCRL(crl, 1); err != nil {
		t.Fatal(err)
	}
	cfg, err := os.ReadFile(e.cfgPath)
	if err != nil {
		t.Fatal(err)
	}
	old := fmt.Sprintf("client_ca: %q}", e.pki.TTPCA)
	if !strings.Contains(string(cfg), old) {
		t.Fatal("the trusted listener's TLS line is not where the test expects it")
	}
	cfg = []byte(strings.Replace(string(cfg), old, fmt.Sprintf("client_ca: %q, crls: [%q]}", e.pki.TTPCA, crl), 1))
	if err := os.WriteFile(e.cfgPath, cfg, 0o600); err != nil {
		t.Fatal(err)
	}
	p := e.start(t)
	ctx := testCtx(t)
	tok, err := e.sponsor(t).TokenizeValue(ctx, "name", "Revoked Testperson")
	if err != nil {
		t.Fatal(err)
	}
	// Two certificates for the TTP identity; the first will be revoked.
	leaf, err := e.pki.TTPAuthority.Issue(devpki.LeafOptions{URI: devpki.TTPID})
	if err != nil {
		t.Fatal(err)
	}
	certA, keyA, err := leaf.Write(e.dir, "ttp-a")
	if err != nil {
		t.Fatal(err)
	}
	serial, err := devpki.Serial(leaf.CertPEM)
	if err != nil {
		t.Fatal(err)
	}
	open := newClient(t, e.trusted, e.pki.ServerCA, certA, keyA)
	if _, err := open.DetokenizeValue(ctx, tok, "support", ""); err != nil {
		t.Fatalf("before the revocation: %v", err)
	}

	if err := e.pki.TTPAuthority.WriteCRL(crl, 2, serial); err != nil {
		t.Fatal(err)
	}
	if err := p.cmd.Process.Signal(syscall.SIGHUP); err != nil {
		t.Fatal(err)
	}
	p.waitFor(flipLimit, "the revoked certificate refused on its open connection", func() bool {
		_, err := open.DetokenizeValue(ctx, tok, "support", "")
		return err != nil && strings.Contains(err.Error(), "revoked")
	})
	fresh := newClient(t, e.trusted, e.pki.ServerCA, certA, keyA)
	if _, err := fresh.DetokenizeValue(ctx, tok, "support", ""); !errors.Is(err, client.ErrCertificateNotAccepted) {
		t.Fatalf("a new connection with the revoked certificate: %v, want the handshake refused (certificate not accepted)", err)
	}
	if v, err := e.ttp(t).DetokenizeValue(ctx, tok, "support", ""); err != nil || v != "Revoked Testperson" {
		t.Fatalf("another certificate of the identity after the revocation: %v", err)
	}
}
