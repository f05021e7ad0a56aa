package server_test

import (
	"context"
	"crypto/tls"
	"net"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	"google.golang.org/grpc"
	"google.golang.org/grpc/credentials"

	jetonv1 "github.com/jeton-dev/jeton/proto/jeton/v1"
	"github.com/jeton-dev/jeton/server"
	"github.com/jeton-dev/jeton/server/devpki"
)

// series reads one series of reg: a counter's or a gauge's value, -1 when
// absent.
func series(t testing.TB, reg *prometheus.Registry, name string, labels map[string]string) float64 {
	t.Helper()
	mfs, err := reg.Gather()
	if err != nil {
		t.Fatal(err)
	}
	for _, mf := range mfs {
		if mf.GetName() != name {
			continue
		}
	next:
		for _, m := range mf.GetMetric() {
			for _, lp := range m.GetLabel() {
				if v, ok := labels[lp.GetName()]; ok && v != lp.GetValue() {
					continue next
				}
			}
			if m.Counter != nil {
				return m.GetCounter().GetValue()
			}
			return m.GetGauge().GetValue()
		}
	}
	return -1
}

// eventually polls cond; the limit is for a broken run, not a timing
// claim.
func eventually(t testing.TB, what string, cond func() bool) {
	t.Helper()
	for deadline := time.Now().Add(30 * time.Second); !cond(); time.Sleep(5 * time.Millisecond) {
		if time.Now().After(deadline) {
			t.Fatalf("never: %s", what)
		}
	}
}

// idleFrom opens a TCP connection from the loopback address src that
// never sends a byte.
func idleFrom(t testing.TB, src, addr string) net.Conn {
	t.Helper()
	d := net.Dialer{LocalAddr: &net.TCPAddr{IP: net.ParseIP(src)}}
	c, err := d.Dial("tcp", addr)
	if err != nil {
		return nil // refused so fast the dial saw the reset
	}
	t.Cleanup(func() { c.Close() })
	return c
}

// dialFrom is dial with the client's source address chosen.
func dialFrom(t testing.TB, src, addr, caFile, cert, key string) *grpc.ClientConn {
	t.Helper()
	cfg := clientTLS(t, caFile, cert, key)
	cfg.MinVersion = tls.VersionTLS13
	d := net.Dialer{LocalAddr: &net.TCPAddr{IP: net.ParseIP(src)}}
	cc, err := grpc.NewClient(addr, grpc.WithTransportCredentials(credentials.NewTLS(cfg)),
		grpc.WithContextDialer(func(ctx context.Context, a string) (net.Conn, error) { return d.DialContext(ctx, "tcp", a) }))
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { cc.Close() })
	return cc
}

// TestConnectionLimits: idle connections that never authenticate hold a
// slot of their source and of the listener for the handshake timeout at
// most; past either cap a connection is closed on accept, and counted;
// authenticated connections and the other listener are served meanwhile.
func TestConnectionLimits(t *testing.T) {
	reg := prometheus.NewRegistry()
	// Long enough for the flood to be in place before the first slot
	// times out, on a loaded machine too.
	const handshake = 4 * time.Second
	e := startEnv(t, envOpts{registry: reg, tune: func(cfg *server.Config, _ *devpki.Bundle) {
		cfg.Public.Conns = server.ConnLimits{Max: 20, PerSource: 5, HandshakeTimeout: handshake}
	}})
	pub := e.srv.PublicAddr().String()
	metric := func(name string, kv ...string) float64 {
		labels := map[string]string{"listener": "public"}
		for i := 0; i+1 < len(kv); i += 2 {
			labels[kv[i]] = kv[i+1]
		}
		return series(t, reg, name, labels)
	}
	tokenizeFrom := func(src string) error {
		cc := dialFrom(t, src, pub, e.bundle.ServerCA, e.bundle.SponsorCert, e.bundle.SponsorKey)
		_, err := jetonv1.NewTokenizerClient(cc).Tokenize(ctx(t), &jetonv1.TokenizeRequest{Items: []*jetonv1.TokenizeItem{{FieldClass: "name", Value: useValue("Flood Testperson")}}})
		return err
	}
	// An authenticated connection made before the flood.
	before := e.sponsorConn(t)
	tokenize(t, before, &jetonv1.TokenizeItem{FieldClass: "name", Value: useValue("Early Testperson")})

	// The flood, in one quick burst: 8 from one source (5 fit its cap),
	// 5 from each of three more (14 fit the listener's cap of 20, the
	// authenticated connection included), 1 from a fifth.
	for range 8 {
		idleFrom(t, "127.0.0.2", pub)
	}
	for _, src := range []string{"127.0.0.3", "127.0.0.4", "127.0.0.5"} {
		for range 5 {
			idleFrom(t, src, pub)
		}
	}
	idleFrom(t, "127.0.0.6", pub)
	eventually(t, "the caps held", func() bool {
		return metric("jeton_connections_refused_total", "reason", "source_full") == 3 &&
			metric("jeton_connections_refused_total", "reason", "listener_full") == 2 &&
			metric("jeton_connections_open") == 20
	})
	// What the flood cannot touch: an authenticated connection, the
	// trusted listener.
	tokenize(t, before, &jetonv1.TokenizeItem{FieldClass: "name", Value: useValue("Steady Testperson")})
	if _, err := jetonv1.NewDetokenizerClient(e.ttpConn(t)).Detokenize(ctx(t), &jetonv1.DetokenizeRequest{Tokens: []string{"x"}, Purpose: "support"}); err != nil {
		t.Fatalf("the trusted listener during a flood of the public one: %v", err)
	}

	// The handshake timeout frees every idle slot: 19 idle, beside the
	// authenticated connection.
	eventually(t, "idle connections closed at the handshake timeout", func() bool {
		return metric("jeton_handshakes_failed_total", "reason", "timeout") == 19 && metric("jeton_connections_open") == 1
	})
	if err := tokenizeFrom("127.0.0.2"); err != nil {
		t.Fatalf("after the handshake timeout, from the source that flooded: %v", err)
	}
	if n := strings.Count(logSnapshot(), "connection refused: "); n > 200 {
		t.Fatalf("%d refusal log lines: not bounded", n)
	}
}

// TestHandshakeFailuresCounted: each way a handshake fails is counted
// under its reason.
func TestHandshakeFailuresCounted(t *testing.T) {
	reg := prometheus.NewRegistry()
	e := startEnv(t, envOpts{registry: reg, crls: true})
	tru := e.srv.TrustedAddr().String()
	failed := func(reason string) float64 {
		return series(t, reg, "jeton_handshakes_failed_total", map[string]string{"listener": "trusted", "reason": reason})
	}
	handshake := func(cfg *tls.Config) {
		c, err := tls.Dial("tcp", tru, cfg)
		if err == nil {
			c.Read(make([]byte, 1))
			c.Close()
		}
	}
	ttp := func() *tls.Config { return clientTLS(t, e.bundle.ServerCA, e.bundle.TTPCert, e.bundle.TTPKey) }

	old := ttp()
	old.MaxVersion = tls.VersionTLS12
	handshake(old)
	eventually(t, "tls_version", func() bool { return failed("tls_version") == 1 })

	none := ttp()
	none.Certificates = nil
	handshake(none)
	eventually(t, "no_certificate", func() bool { return failed("no_certificate") == 1 })

	// A Go client sends no certificate the server's CA list does not
	// name; this one insists.
	wrong := clientTLS(t, e.bundle.ServerCA, e.bundle.SponsorCert, e.bundle.SponsorKey)
	pair := wrong.Certificates[0]
	wrong.GetClientCertificate = func(*tls.CertificateRequestInfo) (*tls.Certificate, error) { return &pair, nil }
	handshake(wrong)
	eventually(t, "bad_certificate", func() bool { return failed("bad_certificate") == 1 })

	leaf, err := e.bundle.TTPAuthority.Issue(devpki.LeafOptions{URI: devpki.TTPID})
	if err != nil {
		t.Fatal(err)
	}
	cert, key, err := leaf.Write(e.dir, "revoked")
	if err != nil {
		t.Fatal(err)
	}
	serial, _ := devpki.Serial(leaf.CertPEM)
	if err := e.bundle.TTPAuthority.WriteCRL(filepath.Join(e.dir, "ttp.crl"), 2, serial); err != nil {
		t.Fatal(err)
	}
	if err := e.truTLS.Reload(); err != nil {
		t.Fatal(err)
	}
	handshake(clientTLS(t, e.bundle.ServerCA, cert, key))
	eventually(t, "revoked", func() bool { return failed("revoked") == 1 })

	c, err := net.Dial("tcp", tru)
	if err != nil {
		t.Fatal(err)
	}
	c.Write([]byte{0x16, 0x03, 0x01}) // the start of a ClientHello, then gone
	c.Close()
	eventually(t, "closed", func() bool { return failed("closed") == 1 })
	if n := failed("other"); n != 0 {
		t.Fatalf("%v handshakes failed for an unnamed reason", n)
	}
	if !strings.Contains(logSnapshot(), `"msg":"TLS handshake failed"`) {
		t.Fatal("failed handshakes are not logged")
	}
}
