package server

import (
	"context"
	"crypto/tls"
	"crypto/x509"
	"errors"
	"io"
	"log/slog"
	"net"
	"net/netip"
	"os"
	"strings"
	"sync"
	"sync/atomic"
	"syscall"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	"golang.org/x/time/rate"
	"google.golang.org/grpc/credentials"
)

// Defaults of ConnLimits.
const (
	DefaultMaxConns          = 4096
	DefaultMaxConnsPerSource = 256
	DefaultHandshakeTimeout  = 5 * time.Second
)

// ConnLimits bound what clients hold on a listener, before they have
// authenticated and after.
type ConnLimits struct {
	// Max bounds the listener's open connections; DefaultMaxConns if
	// zero. With both listeners' Max, it must leave the process file
	// descriptors for its other work (jetond fits it to RLIMIT_NOFILE).
	Max int `yaml:"max"`
	// PerSource bounds the open connections of one source: an IPv4
	// address, or an IPv6 /64 (one host's usual allocation);
	// DefaultMaxConnsPerSource if zero. Sponsor applications behind one
	// NAT share it: raise it for them.
	PerSource int `yaml:"max_per_source"`
	// HandshakeTimeout bounds the TLS handshake and the HTTP/2 preface
	// that follows; DefaultHandshakeTimeout if zero. A connection that has
	// not authenticated by then is closed.
	HandshakeTimeout time.Duration `yaml:"handshake_timeout"`
}

// withDefaults returns l with zero fields set to their defaults.
func (l ConnLimits) withDefaults() ConnLimits {
	if l.Max == 0 {
		l.Max = DefaultMaxConns
	}
	if l.PerSource == 0 {
		l.PerSource = min(DefaultMaxConnsPerSource, l.Max)
	}
	if l.HandshakeTimeout == 0 {
		l.HandshakeTimeout = DefaultHandshakeTimeout
	}
	return l
}

// Validate checks l; its errors name the bad field.
func (l ConnLimits) Validate() error {
	switch {
	case l.Max < 0:
		return errors.New("connections.max must not be negative")
	case l.PerSource < 0:
		return errors.New("connections.max_per_source must not be negative")
	case l.Max > 0 && l.PerSource > l.Max:
		return errors.New("connections.max_per_source must not exceed connections.max")
	case l.HandshakeTimeout < 0:
		return errors.New("connections.handshake_timeout must not be negative")
	}
	return nil
}

// Reasons a connection is refused before its handshake, the reason label
// of jeton_connections_refused_total.
const (
	refusedNotAllowed   = "not_allowed"
	refusedListenerFull = "listener_full"
	refusedSourceFull   = "source_full"
	refusedAcceptError  = "accept_error"
)

// Reasons a handshake fails, the reason label of
// jeton_handshakes_failed_total.
const (
	failedTimeout        = "timeout"
	failedClosed         = "closed"
	failedTLSVersion     = "tls_version"
	failedNoCertificate  = "no_certificate"
	failedBadCertificate = "bad_certificate"
	failedRevoked        = "revoked"
	failedOther          = "other"
)

// connMetrics are the listeners' series:
//
//	jeton_connections_open{listener}
//	jeton_connections_refused_total{listener,reason}
//	jeton_handshakes_failed_total{listener,reason}
type connMetrics struct {
	open    *prometheus.GaugeVec
	refused *prometheus.CounterVec
	failed  *prometheus.CounterVec
}

func newConnMetrics(reg prometheus.Registerer) (*connMetrics, error) {
	m := &connMetrics{
		open: prometheus.NewGaugeVec(prometheus.GaugeOpts{
			Name: "jeton_connections_open",
			Help: "Open connections per listener (public, trusted), authenticated or not.",
		}, []string{"listener"}),
		refused: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "jeton_connections_refused_total",
			Help: "Connections closed before any TLS byte, per listener and reason (not_allowed, listener_full, source_full, accept_error).",
		}, []string{"listener", "reason"}),
		failed: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "jeton_handshakes_failed_total",
			Help: "TLS handshakes that failed, per listener and reason (timeout, closed, tls_version, no_certificate, bad_certificate, revoked, other).",
		}, []string{"listener", "reason"}),
	}
	for _, c := range []prometheus.Collector{m.open, m.refused, m.failed} {
		if err := reg.Register(c); err != nil {
			return nil, err
		}
	}
	for _, l := range []string{"public", "trusted"} {
		m.open.WithLabelValues(l)
		for _, r := range []string{refusedNotAllowed, refusedListenerFull, refusedSourceFull, refusedAcceptError} {
			m.refused.WithLabelValues(l, r)
		}
		for _, r := range []string{failedTimeout, failedClosed, failedTLSVersion, failedNoCertificate, failedBadCertificate, failedRevoked, failedOther} {
			m.failed.WithLabelValues(l, r)
		}
	}
	return m, nil
}

// sampledLog logs at a bounded rate: a flood of refusals must not become a
// flood of log lines. What it drops it counts, and says so in the next
// line it writes.
type sampledLog struct {
	log        *slog.Logger
	lim        *rate.Limiter
	suppressed atomic.Int64
}

func newSampledLog(l *slog.Logger) *sampledLog {
	return &sampledLog{log: l, lim: rate.NewLimiter(1, 10)}
}

func (s *sampledLog) warn(msg string, args ...any) {
	if !s.lim.Allow() {
		s.suppressed.Add(1)
		return
	}
	if n := s.suppressed.Swap(0); n > 0 {
		args = append(args, "suppressed_since_last", n)
	}
	s.log.Warn(msg, args...)
}

// guardedListener bounds what clients hold before they authenticate. It
// closes a connection from outside the allowed networks, or over the
// listener's or its source's cap, as soon as it is accepted, before any
// TLS byte, with a reset so that the server keeps no TIME_WAIT state for
// it. The handshake deadline is gRPC's ConnectionTimeout.
type guardedListener struct {
	net.Listener
	name      string
	allowed   []netip.Prefix // empty: any source
	max       int
	perSource int
	m         *connMetrics
	log       *sampledLog

	mu       sync.Mutex
	open     int
	bySource map[netip.Prefix]int
}

func newGuardedListener(l net.Listener, name string, allowed []netip.Prefix, lim ConnLimits, m *connMetrics, log *sampledLog) *guardedListener {
	return &guardedListener{Listener: l, name: name, allowed: allowed, max: lim.Max, perSource: lim.PerSource,
		m: m, log: log, bySource: map[netip.Prefix]int{}}
}

func (l *guardedListener) Accept() (net.Conn, error) {
	for {
		c, err := l.Listener.Accept()
		if errors.Is(err, net.ErrClosed) {
			return nil, err // stopping
		}
		if err != nil {
			// Out of descriptors, say: gRPC backs off and tries again.
			l.m.refused.WithLabelValues(l.name, refusedAcceptError).Inc()
			l.log.warn("accepting a connection failed", "listener", l.name, "error", err.Error())
			return nil, err
		}
		src, ok := source(c.RemoteAddr())
		reason := ""
		switch {
		case !ok:
			reason = refusedNotAllowed
		case len(l.allowed) > 0 && !allowed(src.Addr(), l.allowed):
			reason = refusedNotAllowed
		default:
			reason = l.take(src)
		}
		if reason != "" {
			l.refuse(c, reason)
			continue
		}
		l.m.open.WithLabelValues(l.name).Inc()
		return &guardedConn{Conn: c, release: func() { l.release(src) }}, nil
	}
}

// take reserves a slot for a connection from src, or says why not.
func (l *guardedListener) take(src netip.Prefix) string {
	l.mu.Lock()
	defer l.mu.Unlock()
	switch {
	case l.open >= l.max:
		return refusedListenerFull
	case l.bySource[src] >= l.perSource:
		return refusedSourceFull
	}
	l.open++
	l.bySource[src]++
	return ""
}

func (l *guardedListener) release(src netip.Prefix) {
	l.mu.Lock()
	l.open--
	if l.bySource[src]--; l.bySource[src] <= 0 {
		delete(l.bySource, src)
	}
	l.mu.Unlock()
	l.m.open.WithLabelValues(l.name).Dec()
}

func (l *guardedListener) refuse(c net.Conn, reason string) {
	if tc, ok := c.(*net.TCPConn); ok {
		_ = tc.SetLinger(0)
	}
	c.Close()
	l.m.refused.WithLabelValues(l.name, reason).Inc()
	msg := "connection refused: " + strings.ReplaceAll(reason, "_", " ")
	if reason == refusedNotAllowed && l.name == "trusted" {
		msg = "connection refused: source outside the trusted allowlist"
	}
	l.log.warn(msg, "listener", l.name, "peer", c.RemoteAddr().String())
}

// guardedConn gives its slot back when closed, once.
type guardedConn struct {
	net.Conn
	once    sync.Once
	release func()
}

func (c *guardedConn) Close() error {
	err := c.Conn.Close()
	c.once.Do(c.release)
	return err
}

// source is the key a connection's source is counted under: its IPv4
// address, or the /64 of its IPv6 address.
func source(a net.Addr) (netip.Prefix, bool) {
	ap, err := netip.ParseAddrPort(a.String())
	if err != nil {
		return netip.Prefix{}, false
	}
	ip := ap.Addr().Unmap()
	if ip.Is4() {
		return netip.PrefixFrom(ip, 32), true
	}
	p, err := ip.Prefix(64)
	return p, err == nil
}

func allowed(ip netip.Addr, prefixes []netip.Prefix) bool {
	for _, p := range prefixes {
		if p.Contains(ip) {
			return true
		}
	}
	return false
}

// countingCreds counts and logs, at a bounded rate, the handshakes that
// fail, by reason.
type countingCreds struct {
	credentials.TransportCredentials
	name string
	m    *connMetrics
	log  *sampledLog
}

func (c countingCreds) ServerHandshake(raw net.Conn) (net.Conn, credentials.AuthInfo, error) {
	conn, info, err := c.TransportCredentials.ServerHandshake(raw)
	if err != nil {
		reason := handshakeFailure(err)
		c.m.failed.WithLabelValues(c.name, reason).Inc()
		// The error text comes from crypto/tls and x509: names of
		// certificates at most, never a value.
		c.log.warn("TLS handshake failed", "listener", c.name, "reason", reason, "peer", raw.RemoteAddr().String(), "error", err.Error())
	}
	return conn, info, err
}

func (c countingCreds) Clone() credentials.TransportCredentials {
	return countingCreds{TransportCredentials: c.TransportCredentials.Clone(), name: c.name, m: c.m, log: c.log}
}

// handshakeFailure names why a handshake failed.
func handshakeFailure(err error) string {
	var (
		ne      net.Error
		verify  *tls.CertificateVerificationError
		unknown x509.UnknownAuthorityError
		invalid x509.CertificateInvalidError
	)
	msg := err.Error()
	switch {
	case errors.Is(err, ErrRevoked):
		return failedRevoked
	case errors.Is(err, os.ErrDeadlineExceeded), errors.Is(err, context.DeadlineExceeded),
		errors.As(err, &ne) && ne.Timeout():
		return failedTimeout
	case errors.Is(err, io.EOF), errors.Is(err, io.ErrUnexpectedEOF), errors.Is(err, syscall.ECONNRESET),
		errors.Is(err, net.ErrClosed), errors.Is(err, syscall.EPIPE):
		return failedClosed
	// crypto/tls returns these as plain errors; the texts are pinned by
	// TestHandshakeFailuresCounted.
	case strings.Contains(msg, "unsupported versions"), strings.Contains(msg, "protocol version"):
		return failedTLSVersion
	case strings.Contains(msg, "didn't provide a certificate"):
		return failedNoCertificate
	case errors.As(err, &verify), errors.As(err, &unknown), errors.As(err, &invalid),
		strings.Contains(msg, "bad certificate"), strings.Contains(msg, "certificate"):
		return failedBadCertificate
	}
	return failedOther
}
