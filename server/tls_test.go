package server_test

import (
	"crypto/tls"
	"crypto/x509"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/status"

	jetonv1 "github.com/jeton-dev/jeton/proto/jeton/v1"
	"github.com/jeton-dev/jeton/server"
	"github.com/jeton-dev/jeton/server/devpki"
)

// clientTLS is a client configuration with the given certificate files.
func clientTLS(t testing.TB, caFile, cert, key string) *tls.Config {
	t.Helper()
	caPEM, err := os.ReadFile(caFile)
	if err != nil {
		t.Fatal(err)
	}
	pool := x509.NewCertPool()
	pool.AppendCertsFromPEM(caPEM)
	pair, err := tls.LoadX509KeyPair(cert, key)
	if err != nil {
		t.Fatal(err)
	}
	return &tls.Config{RootCAs: pool, Certificates: []tls.Certificate{pair}, NextProtos: []string{"h2"}}
}

// TestTLS12Refused: a client that speaks at most TLS 1.2, with a valid
// certificate, gets no session on either listener; the same client at TLS
// 1.3 does.
func TestTLS12Refused(t *testing.T) {
	e := startEnv(t, envOpts{})
	for _, l := range []struct{ name, addr, cert, key string }{
		{"public", e.srv.PublicAddr().String(), e.bundle.SponsorCert, e.bundle.SponsorKey},
		{"trusted", e.srv.TrustedAddr().String(), e.bundle.TTPCert, e.bundle.TTPKey},
	} {
		t.Run(l.name, func(t *testing.T) {
			for _, v := range []uint16{tls.VersionTLS12, tls.VersionTLS11, tls.VersionTLS10} {
				cfg := clientTLS(t, e.bundle.ServerCA, l.cert, l.key)
				cfg.MinVersion, cfg.MaxVersion = v, v
				c, err := tls.Dial("tcp", l.addr, cfg)
				if err == nil {
					// TLS 1.3 sends the client's certificate after the
					// handshake returns; a refusal shows on first read.
					_, err = c.Read(make([]byte, 1))
					c.Close()
				}
				if err == nil {
					t.Fatalf("a %s client got a session", tls.VersionName(v))
				}
				if !strings.Contains(err.Error(), "protocol version") {
					t.Fatalf("a %s client: %v, want a protocol version alert", tls.VersionName(v), err)
				}
			}
			c, err := tls.Dial("tcp", l.addr, clientTLS(t, e.bundle.ServerCA, l.cert, l.key))
			if err != nil {
				t.Fatalf("TLS 1.3: %v", err)
			}
			defer c.Close()
			if v := c.ConnectionState().Version; v != tls.VersionTLS13 {
				t.Fatalf("negotiated %s, want TLS 1.3", tls.VersionName(v))
			}
		})
	}
}

// TestRevokedCertificateRefused: once a CRL listing a client certificate
// is loaded (as SIGHUP does), the certificate gets no new session, and a
// connection it opened before is refused on its next call; other
// certificates keep working. A CRL the client CA did not sign is refused,
// and the lists in force stay.
func TestRevokedCertificateRefused(t *testing.T) {
	e := startEnv(t, envOpts{crls: true})
	tok := tokenize(t, e.sponsorConn(t), &jetonv1.TokenizeItem{FieldClass: "name", Value: useValue("Revoked Reader")})[0].GetToken()
	leafA, err := e.bundle.TTPAuthority.Issue(devpki.LeafOptions{URI: devpki.TTPID})
	if err != nil {
		t.Fatal(err)
	}
	certA, keyA, err := leafA.Write(e.dir, "reader-a")
	if err != nil {
		t.Fatal(err)
	}
	serialA, err := devpki.Serial(leafA.CertPEM)
	if err != nil {
		t.Fatal(err)
	}
	certB, keyB := e.issue(t, e.bundle.TTPAuthority, devpki.LeafOptions{URI: devpki.TTPID})
	reveal := func(cert, key string) error {
		_, err := jetonv1.NewDetokenizerClient(dial(t, e.srv.TrustedAddr().String(), e.bundle.ServerCA, cert, key)).
			Detokenize(ctx(t), &jetonv1.DetokenizeRequest{Tokens: []string{tok}, Purpose: "support"})
		return err
	}
	open := jetonv1.NewDetokenizerClient(dial(t, e.srv.TrustedAddr().String(), e.bundle.ServerCA, certA, keyA))
	if _, err := open.Detokenize(ctx(t), &jetonv1.DetokenizeRequest{Tokens: []string{tok}, Purpose: "support"}); err != nil {
		t.Fatalf("before revocation: %v", err)
	}

	crl := filepath.Join(e.dir, "ttp.crl")
	if err := e.bundle.TTPAuthority.WriteCRL(crl, 2, serialA); err != nil {
		t.Fatal(err)
	}
	if err := e.truTLS.Reload(); err != nil {
		t.Fatalf("Reload: %v", err)
	}
	if err := reveal(certA, keyA); code(err) != codes.Unavailable {
		t.Fatalf("a new connection with the revoked certificate: %v, want the handshake refused (Unavailable)", err)
	}
	_, err = open.Detokenize(ctx(t), &jetonv1.DetokenizeRequest{Tokens: []string{tok}, Purpose: "support"})
	if st := status.Convert(err); st.Code() != codes.Unauthenticated || st.Message() != "client certificate revoked" {
		t.Fatalf("the connection opened before the revocation: %v, want Unauthenticated", err)
	}
	if err := reveal(certB, keyB); err != nil {
		t.Fatalf("another certificate of the same identity: %v", err)
	}

	// A list signed by another CA is refused; the one in force stays.
	if err := e.bundle.SponsorAuthority.WriteCRL(crl, 3); err != nil {
		t.Fatal(err)
	}
	if err := e.truTLS.Reload(); err == nil || !strings.Contains(err.Error(), "not signed by a certificate of client_ca") {
		t.Fatalf("Reload of a CRL from the wrong CA: %v", err)
	}
	if err := reveal(certA, keyA); code(err) != codes.Unavailable {
		t.Fatalf("after a refused reload: %v, want the certificate still revoked", err)
	}

	// The public listener has its own list.
	serialS, err := devpki.Serial(mustRead(t, e.bundle.SponsorCert))
	if err != nil {
		t.Fatal(err)
	}
	if err := e.bundle.SponsorAuthority.WriteCRL(filepath.Join(e.dir, "sponsor.crl"), 2, serialS); err != nil {
		t.Fatal(err)
	}
	if err := e.pubTLS.Reload(); err != nil {
		t.Fatal(err)
	}
	_, err = jetonv1.NewTokenizerClient(e.sponsorConn(t)).Tokenize(ctx(t), &jetonv1.TokenizeRequest{Items: []*jetonv1.TokenizeItem{{FieldClass: "name", Value: "x"}}})
	if code(err) != codes.Unavailable {
		t.Fatalf("a revoked sponsor certificate: %v, want the handshake refused", err)
	}
}

func mustRead(t testing.TB, path string) []byte {
	t.Helper()
	b, err := os.ReadFile(path)
	if err != nil {
		t.Fatal(err)
	}
	return b
}

// TestIdentityBoundToItsCA: an identity is honoured only with a
// certificate from the CA the policy binds it to. A sponsor-CA
// certificate bearing a TTP-bound name is refused even where the
// handshake accepts it, and so is a certificate from a CA both listeners
// trust; a revealer cannot be bound to the sponsor's CA at all.
func TestIdentityBoundToItsCA(t *testing.T) {
	// The trusted listener is misconfigured to accept the sponsor's CA
	// too: the binding still holds.
	e := startEnv(t, envOpts{tune: func(cfg *server.Config, b *devpki.Bundle) {
		both := filepath.Join(b.Dir, "ttp-and-sponsor-ca.pem")
		if err := os.WriteFile(both, append(mustRead(t, b.TTPCA), mustRead(t, b.SponsorCA)...), 0o644); err != nil {
			t.Fatal(err)
		}
		tru, err := server.LoadTLS(server.TLSFiles{Cert: b.ServerCert, Key: b.ServerKey, ClientCA: both})
		if err != nil {
			t.Fatal(err)
		}
		cfg.Trusted.TLS = tru
	}})
	detok := func(cert, key string) error {
		_, err := jetonv1.NewDetokenizerClient(dial(t, e.srv.TrustedAddr().String(), e.bundle.ServerCA, cert, key)).
			Detokenize(ctx(t), &jetonv1.DetokenizeRequest{Tokens: []string{"x"}, Purpose: "support"})
		return err
	}
	cert, key := e.issue(t, e.bundle.SponsorAuthority, devpki.LeafOptions{URI: devpki.TTPID})
	if err := detok(cert, key); code(err) != codes.PermissionDenied {
		t.Fatalf("a TTP identity with a sponsor-CA certificate on the trusted listener: %v, want PermissionDenied", err)
	}
	if err := detok(e.bundle.TTPCert, e.bundle.TTPKey); err != nil {
		t.Fatalf("the TTP identity with its TTP-CA certificate: %v", err)
	}

	// An identity bound to the TTP CA, tokenizing: a sponsor-CA
	// certificate with its name passes the public handshake and is
	// refused.
	cert, key = e.issue(t, e.bundle.SponsorAuthority, devpki.LeafOptions{URI: "spiffe://jeton.dev/sponsor/ttp-issued"})
	_, err := jetonv1.NewTokenizerClient(dial(t, e.srv.PublicAddr().String(), e.bundle.ServerCA, cert, key)).
		Tokenize(ctx(t), &jetonv1.TokenizeRequest{Items: []*jetonv1.TokenizeItem{{FieldClass: "name", Value: "x"}}})
	if code(err) != codes.PermissionDenied {
		t.Fatalf("a TTP-bound identity with a sponsor-CA certificate: %v, want PermissionDenied", err)
	}
	if !strings.Contains(logSnapshot(), "not from the CA the policy names") {
		t.Fatal("the refusal was not logged")
	}

	for _, tt := range []struct{ name, rule, want string }{
		{"revealer bound to the sponsor CA", `{id: "spiffe://x/r", tenants: [demo], roles: [reader], ca: sponsor}`, "never the sponsor's"},
		{"unknown CA", `{id: "spiffe://x/s", tenants: [demo], roles: [sponsor-app], ca: other}`, `ca "other" must be`},
	} {
		t.Run(tt.name, func(t *testing.T) {
			_, err := server.ParsePolicy([]byte(`
identities:
  - `+tt.rule+`
roles:
  reader: {reveal: {"*": full}, purposes: [support]}
  sponsor-app: {tokenize: [name]}
purposes:
  - {code: support, description: d, classes: ["*"]}
`), []string{"name"})
			if err == nil || !strings.Contains(err.Error(), tt.want) {
				t.Fatalf("got %v, want an error containing %q", err, tt.want)
			}
		})
	}
}

// TestCRLRollbackRefused: a reload never replaces a CRL by an older one
// of the same CA (a restored backup would lift the revocations made
// since): the reload fails and the newer list stays in force. The same
// list again, or a newer one, loads.
func TestCRLRollbackRefused(t *testing.T) {
	e := startEnv(t, envOpts{crls: true})
	tok := tokenize(t, e.sponsorConn(t), &jetonv1.TokenizeItem{FieldClass: "name", Value: useValue("Rollback Reader")})[0].GetToken()
	leaf, err := e.bundle.TTPAuthority.Issue(devpki.LeafOptions{URI: devpki.TTPID})
	if err != nil {
		t.Fatal(err)
	}
	cert, key, err := leaf.Write(e.dir, "reader-r")
	if err != nil {
		t.Fatal(err)
	}
	serial, err := devpki.Serial(leaf.CertPEM)
	if err != nil {
		t.Fatal(err)
	}
	reveal := func() error {
		_, err := jetonv1.NewDetokenizerClient(dial(t, e.srv.TrustedAddr().String(), e.bundle.ServerCA, cert, key)).
			Detokenize(ctx(t), &jetonv1.DetokenizeRequest{Tokens: []string{tok}, Purpose: "support"})
		return err
	}
	crl := filepath.Join(e.dir, "ttp.crl")
	old := mustRead(t, crl) // number 1, revokes nothing
	if err := e.bundle.TTPAuthority.WriteCRL(crl, 5, serial); err != nil {
		t.Fatal(err)
	}
	if err := e.truTLS.Reload(); err != nil {
		t.Fatal(err)
	}
	if err := reveal(); code(err) != codes.Unavailable {
		t.Fatalf("revoked: %v, want the handshake refused", err)
	}
	// The same list again loads.
	if err := e.truTLS.Reload(); err != nil {
		t.Fatalf("reloading the same CRL: %v", err)
	}
	// An older list, signed by the right CA: refused, and the newer stays.
	for _, n := range []int64{4, 1} {
		if n == 1 {
			if err := os.WriteFile(crl, old, 0o600); err != nil {
				t.Fatal(err)
			}
		} else if err := e.bundle.TTPAuthority.WriteCRL(crl, n); err != nil {
			t.Fatal(err)
		}
		if err := e.truTLS.Reload(); err == nil || !strings.Contains(err.Error(), "older than the one in use") {
			t.Fatalf("reload of CRL number %d after number 5: %v, want refused as a rollback", n, err)
		}
		if err := reveal(); code(err) != codes.Unavailable {
			t.Fatalf("after a refused rollback to number %d: %v, want the certificate still revoked", n, err)
		}
	}
	// A newer list that lifts the revocation loads.
	if err := e.bundle.TTPAuthority.WriteCRL(crl, 6); err != nil {
		t.Fatal(err)
	}
	if err := e.truTLS.Reload(); err != nil {
		t.Fatalf("a newer CRL: %v", err)
	}
	if err := reveal(); err != nil {
		t.Fatalf("after a newer CRL without the serial: %v", err)
	}
}
