package server_test

import (
	"context"
	"crypto/tls"
	"net"
	"path/filepath"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	"google.golang.org/grpc"
	"google.golang.org/grpc/codes"
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
// place in the handshaking pool for the handshake timeout at most, and
// lose it sooner to newer connections when their source or the pool is
// full; authenticated connections have a pool of their own, with caps per
// source and per listener, that no handshake flood touches; the trusted
// listener is served meanwhile. Everything is counted.
func TestConnectionLimits(t *testing.T) {
	reg := prometheus.NewRegistry()
	// Long enough for the flood to be in place before the first slot
	// times out, on a loaded machine too.
	const handshake = 4 * time.Second
	e := startEnv(t, envOpts{registry: reg, tune: func(cfg *server.Config, _ *devpki.Bundle) {
		cfg.Public.Conns = server.ConnLimits{Max: 3, PerSource: 2, Handshaking: 12, HandshakingPerSource: 5, HandshakeTimeout: handshake}
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
		defer cc.Close()
		_, err := jetonv1.NewTokenizerClient(cc).Tokenize(ctx(t), &jetonv1.TokenizeRequest{Items: []*jetonv1.TokenizeItem{{FieldClass: "name", Value: useValue("Flood Testperson")}}})
		return err
	}
	// An authenticated connection made before the flood.
	before := dialFrom(t, "127.0.0.1", pub, e.bundle.ServerCA, e.bundle.SponsorCert, e.bundle.SponsorKey)
	tokenize(t, before, &jetonv1.TokenizeItem{FieldClass: "name", Value: useValue("Early Testperson")})

	// The flood, in one quick burst: 8 from one source (3 more than its
	// share: it loses its own oldest), 5 from each of two more (3 more
	// than the pool holds: the most crowded sources lose their oldest).
	for range 8 {
		idleFrom(t, "127.0.0.2", pub)
	}
	for _, src := range []string{"127.0.0.3", "127.0.0.4"} {
		for range 5 {
			idleFrom(t, src, pub)
		}
	}
	eventually(t, "the handshaking pool held", func() bool {
		return metric("jeton_connections_evicted_total") == 6 &&
			metric("jeton_connections_handshaking") == 12 && metric("jeton_connections_open") == 13
	})
	// What the flood cannot touch: an authenticated connection, the
	// trusted listener, and room for new authenticated connections.
	tokenize(t, before, &jetonv1.TokenizeItem{FieldClass: "name", Value: useValue("Steady Testperson")})
	if _, err := jetonv1.NewDetokenizerClient(e.ttpConn(t)).Detokenize(ctx(t), &jetonv1.DetokenizeRequest{Tokens: []string{"x"}, Purpose: "support"}); err != nil {
		t.Fatalf("the trusted listener during a flood of the public one: %v", err)
	}
	second := dialFrom(t, "127.0.0.1", pub, e.bundle.ServerCA, e.bundle.SponsorCert, e.bundle.SponsorKey)
	tokenize(t, second, &jetonv1.TokenizeItem{FieldClass: "name", Value: useValue("Second Testperson")})
	// The authenticated pool's caps: two per source, three in all.
	if err := tokenizeFrom("127.0.0.1"); code(err) != codes.Unavailable {
		t.Fatalf("a third authenticated connection from one source: %v, want UNAVAILABLE", err)
	}
	third := dialFrom(t, "127.0.0.6", pub, e.bundle.ServerCA, e.bundle.SponsorCert, e.bundle.SponsorKey)
	tokenize(t, third, &jetonv1.TokenizeItem{FieldClass: "name", Value: useValue("Third Testperson")})
	if err := tokenizeFrom("127.0.0.7"); code(err) != codes.Unavailable {
		t.Fatalf("a fourth authenticated connection: %v, want UNAVAILABLE", err)
	}
	// Counted by the server once it has closed the connection, which the
	// client may see first.
	eventually(t, "refusals of authenticated connections counted", func() bool {
		return metric("jeton_connections_refused_total", "reason", "source_full") >= 1 &&
			metric("jeton_connections_refused_total", "reason", "listener_full") >= 1
	})

	// The handshake timeout frees every idle place (each new client
	// above took the place of one of them).
	eventually(t, "idle connections closed at the handshake timeout", func() bool {
		return metric("jeton_handshakes_failed_total", "reason", "timeout") > 0 &&
			metric("jeton_connections_handshaking") == 0 && metric("jeton_connections_open") == 3
	})
	second.Close()
	if err := tokenizeFrom("127.0.0.2"); err != nil {
		t.Fatalf("after the handshake timeout, from the source that flooded: %v", err)
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

// flood keeps connections open on a listener from loopback sources, each
// sending nothing and dialled again as soon as the server closes it: the
// reconnecting flood that a cap alone cannot hold off. It stops at stop,
// or after limit dials in all.
type flood struct {
	dials atomic.Int64
	limit int64
	done  chan struct{}
	wg    sync.WaitGroup
}

func startFlood(t testing.TB, addr string, sources []string, perSource int, limit int64) *flood {
	t.Helper()
	f := &flood{limit: limit, done: make(chan struct{})}
	for _, src := range sources {
		d := net.Dialer{LocalAddr: &net.TCPAddr{IP: net.ParseIP(src)}, Timeout: 5 * time.Second}
		for range perSource {
			f.wg.Add(1)
			go func() {
				defer f.wg.Done()
				buf := make([]byte, 1)
				for !f.stopped() && f.dials.Add(1) <= f.limit {
					c, err := d.Dial("tcp", addr)
					if err != nil {
						continue // refused so fast the dial saw the reset
					}
					for !f.stopped() {
						c.SetReadDeadline(time.Now().Add(100 * time.Millisecond))
						if _, err := c.Read(buf); err != nil {
							if ne, ok := err.(net.Error); ok && ne.Timeout() {
								continue
							}
							break // closed by the server: dial again at once
						}
					}
					c.Close()
				}
			}()
		}
	}
	t.Cleanup(f.stop)
	return f
}

func (f *flood) stopped() bool {
	select {
	case <-f.done:
		return true
	default:
		return false
	}
}

func (f *flood) stop() {
	select {
	case <-f.done:
	default:
		close(f.done)
	}
	f.wg.Wait()
}

// TestReconnectingFloodLeavesRoom: six sources keep more connections open
// than the listener lets them handshake at once, sending nothing, and dial
// again the moment one is closed.
// A client from another source still connects and calls within a few
// attempts, while the flood goes on: a connection still handshaking holds
// its place only until newer ones need it, oldest first, and never
// against a connection that has authenticated.
func TestReconnectingFloodLeavesRoom(t *testing.T) {
	reg := prometheus.NewRegistry()
	e := startEnv(t, envOpts{registry: reg, tune: func(cfg *server.Config, _ *devpki.Bundle) {
		cfg.Public.Conns = server.ConnLimits{Max: 20, PerSource: 5, Handshaking: 8, HandshakingPerSource: 2, HandshakeTimeout: 2 * time.Second}
	}})
	pub := e.srv.PublicAddr().String()
	metric := func(name string, kv ...string) float64 {
		labels := map[string]string{"listener": "public"}
		for i := 0; i+1 < len(kv); i += 2 {
			labels[kv[i]] = kv[i+1]
		}
		return series(t, reg, name, labels)
	}
	before := e.sponsorConn(t)
	tokenize(t, before, &jetonv1.TokenizeItem{FieldClass: "name", Value: useValue("Early Testperson")})

	f := startFlood(t, pub, []string{"127.0.0.2", "127.0.0.3", "127.0.0.4", "127.0.0.5", "127.0.0.6", "127.0.0.7"}, 4, 100000)
	// Each source dials more than its share of handshakes, and together
	// more than the pool holds: it is full, and the flood's connections
	// take each other's places, again and again.
	eventually(t, "the flood fills the handshaking pool", func() bool {
		return metric("jeton_connections_handshaking") == 8 && metric("jeton_connections_evicted_total") > 0
	})

	const attempts = 10
	var err error
	for i := range attempts {
		cc := dialFrom(t, "127.0.0.1", pub, e.bundle.ServerCA, e.bundle.SponsorCert, e.bundle.SponsorKey)
		c, cancel := context.WithTimeout(context.Background(), 10*time.Second)
		_, err = jetonv1.NewTokenizerClient(cc).Tokenize(c, &jetonv1.TokenizeRequest{Items: []*jetonv1.TokenizeItem{{FieldClass: "name", Value: useValue("Flood Testperson")}}})
		cancel()
		cc.Close()
		if err == nil {
			t.Logf("connected at attempt %d; the flood had dialled %d times", i+1, f.dials.Load())
			break
		}
		time.Sleep(100 * time.Millisecond)
	}
	if err != nil {
		t.Fatalf("a new client failed %d attempts during the flood: %v", attempts, err)
	}
	if f.stopped() || f.dials.Load() >= f.limit {
		t.Fatal("the flood had ended before the client got in: the test proves nothing")
	}
	// The connection made before the flood was never touched.
	tokenize(t, before, &jetonv1.TokenizeItem{FieldClass: "name", Value: useValue("Steady Testperson")})
}

// TestIdleConnectionsClosed: a connection with no call in flight for the
// idle timeout gives its place back, whoever holds it: a certificate the
// policy refuses holds no place for long, and a client that is served
// simply connects again on its next call.
func TestIdleConnectionsClosed(t *testing.T) {
	reg := prometheus.NewRegistry()
	e := startEnv(t, envOpts{registry: reg, tune: func(cfg *server.Config, _ *devpki.Bundle) {
		cfg.Public.Conns = server.ConnLimits{IdleTimeout: 300 * time.Millisecond}
	}})
	pub := e.srv.PublicAddr().String()
	open := func() float64 {
		return series(t, reg, "jeton_connections_open", map[string]string{"listener": "public"})
	}

	cert, key := e.issue(t, e.bundle.SponsorAuthority, devpki.LeafOptions{URI: "spiffe://jeton.dev/sponsor/unknown"})
	stranger := dial(t, pub, e.bundle.ServerCA, cert, key)
	_, err := jetonv1.NewTokenizerClient(stranger).Tokenize(ctx(t), &jetonv1.TokenizeRequest{Items: []*jetonv1.TokenizeItem{{FieldClass: "name", Value: useValue("Idle Testperson")}}})
	if code(err) != codes.PermissionDenied {
		t.Fatalf("an identity the policy does not know: %v, want PERMISSION_DENIED", err)
	}
	if open() != 1 {
		t.Fatalf("%v open connections after the refused call, want 1", open())
	}
	eventually(t, "the refused identity's idle connection closed", func() bool { return open() == 0 })

	sponsor := e.sponsorConn(t)
	tokenize(t, sponsor, &jetonv1.TokenizeItem{FieldClass: "name", Value: useValue("Idle Testperson")})
	eventually(t, "an idle client's connection closed", func() bool { return open() == 0 })
	tokenize(t, sponsor, &jetonv1.TokenizeItem{FieldClass: "name", Value: useValue("Idle Testperson")})
}
