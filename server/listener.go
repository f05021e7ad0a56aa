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
	DefaultMaxConns                = 4096
	DefaultMaxConnsPerSource       = 256
	DefaultMaxHandshaking          = 1024
	DefaultMaxHandshakingPerSource = 16
	DefaultHandshakeTimeout        = 5 * time.Second
	DefaultIdleTimeout             = 5 * time.Minute
)

// ConnLimits bound what clients hold on a listener, in two pools: the
// connections still in their TLS handshake, which anyone who can reach
// the port can open, and the authenticated ones, whose client certificate
// verified. A flood of the first never takes a place of the second.
type ConnLimits struct {
	// Max bounds the listener's authenticated connections;
	// DefaultMaxConns if zero. Past it, a connection whose handshake
	// succeeds is closed. Max plus Handshaking is what the listener can
	// hold in file descriptors: jetond fits both listeners' to
	// RLIMIT_NOFILE, leaving the process descriptors for its other work.
	Max int `yaml:"max"`
	// PerSource bounds the authenticated connections of one source: an
	// IPv4 address, or an IPv6 /64 (one host's usual allocation);
	// DefaultMaxConnsPerSource if zero. Sponsor applications behind one
	// NAT share it: raise it for them.
	PerSource int `yaml:"max_per_source"`
	// Handshaking bounds the connections still handshaking;
	// DefaultMaxHandshaking if zero. When it is full, a new connection
	// takes the place of the oldest handshake of the source that holds
	// the most: a flood that dials again as fast as it is closed still
	// never locks out a client that completes its handshake promptly.
	Handshaking int `yaml:"max_handshaking"`
	// HandshakingPerSource bounds the handshakes of one source; a new
	// connection from a source at the bound takes the place of that
	// source's oldest. DefaultMaxHandshakingPerSource if zero.
	HandshakingPerSource int `yaml:"max_handshaking_per_source"`
	// HandshakeTimeout bounds the TLS handshake and the HTTP/2 preface
	// that follows; DefaultHandshakeTimeout if zero. A connection that has
	// not authenticated by then is closed.
	HandshakeTimeout time.Duration `yaml:"handshake_timeout"`
	// IdleTimeout closes an authenticated connection (with an HTTP/2
	// GOAWAY, which clients follow by reconnecting on their next call)
	// once it has had no call in flight for this long, so that a
	// certificate holder the policy refuses does not keep its place;
	// DefaultIdleTimeout if zero.
	IdleTimeout time.Duration `yaml:"idle_timeout"`
}

// withDefaults returns l with zero fields set to their defaults.
func (l ConnLimits) withDefaults() ConnLimits {
	if l.Max == 0 {
		l.Max = DefaultMaxConns
	}
	if l.PerSource == 0 {
		l.PerSource = min(DefaultMaxConnsPerSource, l.Max)
	}
	if l.Handshaking == 0 {
		l.Handshaking = DefaultMaxHandshaking
	}
	if l.HandshakingPerSource == 0 {
		l.HandshakingPerSource = min(DefaultMaxHandshakingPerSource, l.Handshaking)
	}
	if l.HandshakeTimeout == 0 {
		l.HandshakeTimeout = DefaultHandshakeTimeout
	}
	if l.IdleTimeout == 0 {
		l.IdleTimeout = DefaultIdleTimeout
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
	case l.Handshaking < 0:
		return errors.New("connections.max_handshaking must not be negative")
	case l.HandshakingPerSource < 0:
		return errors.New("connections.max_handshaking_per_source must not be negative")
	case l.Handshaking > 0 && l.HandshakingPerSource > l.Handshaking:
		return errors.New("connections.max_handshaking_per_source must not exceed connections.max_handshaking")
	case l.HandshakeTimeout < 0:
		return errors.New("connections.handshake_timeout must not be negative")
	case l.IdleTimeout < 0:
		return errors.New("connections.idle_timeout must not be negative")
	}
	return nil
}

// Reasons a connection is refused, the reason label of
// jeton_connections_refused_total: on accept, before any TLS byte
// (not_allowed, accept_error), or once its handshake succeeded, when the
// authenticated pool has no room (listener_full, source_full).
const (
	refusedNotAllowed   = "not_allowed"
	refusedListenerFull = "listener_full"
	refusedSourceFull   = "source_full"
	refusedAcceptError  = "accept_error"
)

// Reasons a handshake fails, the reason label of
// jeton_handshakes_failed_total. A handshake cut short to make room for a
// newer connection is counted in jeton_connections_evicted_total instead.
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
//	jeton_connections_handshaking{listener}
//	jeton_connections_refused_total{listener,reason}
//	jeton_connections_evicted_total{listener}
//	jeton_handshakes_failed_total{listener,reason}
//
// The metrics listener's connections are counted under listener="metrics"
// (see Server.GuardHTTP).
type connMetrics struct {
	open        *prometheus.GaugeVec
	handshaking *prometheus.GaugeVec
	refused     *prometheus.CounterVec
	evicted     *prometheus.CounterVec
	failed      *prometheus.CounterVec
}

func newConnMetrics(reg prometheus.Registerer) (*connMetrics, error) {
	m := &connMetrics{
		open: prometheus.NewGaugeVec(prometheus.GaugeOpts{
			Name: "jeton_connections_open",
			Help: "Open connections per listener (public, trusted, metrics), authenticated or not.",
		}, []string{"listener"}),
		handshaking: prometheus.NewGaugeVec(prometheus.GaugeOpts{
			Name: "jeton_connections_handshaking",
			Help: "Connections per listener not yet authenticated (public, trusted: in their TLS handshake; metrics: with no request in progress).",
		}, []string{"listener"}),
		evicted: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "jeton_connections_evicted_total",
			Help: "Connections not yet authenticated that were closed to make room for a newer one, per listener.",
		}, []string{"listener"}),
		refused: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "jeton_connections_refused_total",
			Help: "Connections closed per listener and reason: on accept (not_allowed, accept_error), or once authenticated, with no room left (listener_full, source_full).",
		}, []string{"listener", "reason"}),
		failed: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "jeton_handshakes_failed_total",
			Help: "TLS handshakes that failed, per listener and reason (timeout, closed, evicted, tls_version, no_certificate, bad_certificate, revoked, other).",
		}, []string{"listener", "reason"}),
	}
	for _, c := range []prometheus.Collector{m.open, m.handshaking, m.refused, m.evicted, m.failed} {
		if err := reg.Register(c); err != nil {
			return nil, err
		}
	}
	for _, l := range []string{"public", "trusted"} {
		m.open.WithLabelValues(l)
		m.handshaking.WithLabelValues(l)
		m.evicted.WithLabelValues(l)
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

// guardedListener bounds what clients hold, in two pools (see
// ConnLimits). It closes a connection from outside the allowed networks as
// soon as it is accepted, before any TLS byte, with a reset so that the
// server keeps no TIME_WAIT state for it. Every other connection enters
// the handshaking pool, taking the place of an older handshake if the
// pool or its source's share is full; countingCreds moves it to the
// authenticated pool when its handshake succeeds, or closes it if that
// pool has no room for it. The handshake deadline is gRPC's
// ConnectionTimeout.
//
// Why evict the oldest handshake rather than refuse the newest connection:
// refusing the newest lets whoever holds the slots keep them, and a flood
// that dials again the moment a slot frees always wins the race against a
// client that dials once. Evicting the oldest turns the race the other
// way: a handshake is lost only when, before it completes, Handshaking
// newer connections arrive from sources holding at least as many.
type guardedListener struct {
	net.Listener
	name    string
	allowed []netip.Prefix // empty: any source
	lim     ConnLimits
	m       *connMetrics
	log     *sampledLog

	mu sync.Mutex
	// seq orders connections by arrival.
	seq uint64
	// handshaking holds each source's connections still handshaking,
	// oldest first; shaking counts them all.
	handshaking map[netip.Prefix][]*guardedConn
	shaking     int
	// authed counts the authenticated connections, bySource per source.
	authed   int
	bySource map[netip.Prefix]int
}

func newGuardedListener(l net.Listener, name string, allowed []netip.Prefix, lim ConnLimits, m *connMetrics, log *sampledLog) *guardedListener {
	return &guardedListener{Listener: l, name: name, allowed: allowed, lim: lim, m: m, log: log,
		handshaking: map[netip.Prefix][]*guardedConn{}, bySource: map[netip.Prefix]int{}}
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
		if !ok || len(l.allowed) > 0 && !allowed(src.Addr(), l.allowed) {
			l.refuse(c, refusedNotAllowed)
			continue
		}
		return l.admit(c, src), nil
	}
}

// admit puts c in the handshaking pool, evicting what it must to make room.
func (l *guardedListener) admit(c net.Conn, src netip.Prefix) *guardedConn {
	gc := &guardedConn{Conn: c, l: l, src: src}
	l.mu.Lock()
	victims := l.makeRoomLocked(src)
	l.enterLocked(gc)
	l.mu.Unlock()
	l.m.open.WithLabelValues(l.name).Inc()
	l.m.handshaking.WithLabelValues(l.name).Inc()
	for _, v := range victims {
		v.evict()
	}
	return gc
}

// makeRoomLocked takes out of the handshaking pool, and returns to be
// closed once the lock is released, what a new member from src displaces:
// src's oldest when src holds its share, and the oldest of the most
// crowded source when the pool is full.
func (l *guardedListener) makeRoomLocked(src netip.Prefix) []*guardedConn {
	var victims []*guardedConn
	if len(l.handshaking[src]) >= l.lim.HandshakingPerSource {
		victims = append(victims, l.evictLocked(src))
	}
	if l.shaking >= l.lim.Handshaking {
		victims = append(victims, l.evictLocked(l.crowdedLocked()))
	}
	return victims
}

// enterLocked adds c to the handshaking pool as its newest member.
func (l *guardedListener) enterLocked(c *guardedConn) {
	l.seq++
	c.seq, c.state = l.seq, connHandshaking
	l.handshaking[c.src] = append(l.handshaking[c.src], c)
	l.shaking++
}

// crowdedLocked returns the source whose oldest handshake goes first: of
// the sources holding the most handshakes, the one whose oldest is
// oldest. A client that opens one connection at a time is evicted only
// when every other source holds no more than one either.
func (l *guardedListener) crowdedLocked() netip.Prefix {
	var (
		best netip.Prefix
		most int
		seq  uint64
	)
	for src, conns := range l.handshaking {
		if n := len(conns); n > most || n == most && conns[0].seq < seq {
			best, most, seq = src, n, conns[0].seq
		}
	}
	return best
}

// evictLocked takes the oldest handshake of src out of the pool and
// returns it, to be closed once the lock is released.
func (l *guardedListener) evictLocked(src netip.Prefix) *guardedConn {
	v := l.handshaking[src][0]
	l.dropLocked(v)
	v.state = connGone
	return v
}

// dropLocked removes a handshaking c from the pool.
func (l *guardedListener) dropLocked(c *guardedConn) {
	conns := l.handshaking[c.src]
	for i, x := range conns {
		if x == c {
			conns = append(conns[:i], conns[i+1:]...)
			break
		}
	}
	if len(conns) == 0 {
		delete(l.handshaking, c.src)
	} else {
		l.handshaking[c.src] = conns
	}
	l.shaking--
}

// errEvicted is the handshake of a connection whose place went to a
// newer one.
var errEvicted = errors.New("server: connection evicted by a newer one")

// evictedMeanwhile is what authenticate says of a connection evicted
// while its handshake went on.
const evictedMeanwhile = "evicted"

// authenticate moves c from the handshaking pool to the authenticated
// one, or says why there is no room for it. A connection evicted
// meanwhile stays out.
func (l *guardedListener) authenticate(c *guardedConn) string {
	l.mu.Lock()
	defer l.mu.Unlock()
	if c.state != connHandshaking {
		return evictedMeanwhile
	}
	l.dropLocked(c)
	l.m.handshaking.WithLabelValues(l.name).Dec()
	reason := ""
	switch {
	case l.authed >= l.lim.Max:
		reason = refusedListenerFull
	case l.bySource[c.src] >= l.lim.PerSource:
		reason = refusedSourceFull
	}
	if reason != "" {
		c.state = connGone
		l.m.open.WithLabelValues(l.name).Dec()
		return reason
	}
	c.state = connAuthed
	l.authed++
	l.bySource[c.src]++
	return ""
}

// release gives c's place back when it closes.
func (l *guardedListener) release(c *guardedConn) {
	l.mu.Lock()
	state := c.state
	switch state {
	case connHandshaking:
		l.dropLocked(c)
		l.m.handshaking.WithLabelValues(l.name).Dec()
	case connAuthed:
		l.authed--
		if l.bySource[c.src]--; l.bySource[c.src] <= 0 {
			delete(l.bySource, c.src)
		}
	}
	c.state = connGone
	l.mu.Unlock()
	if state != connGone {
		l.m.open.WithLabelValues(l.name).Dec()
	}
}

func (l *guardedListener) refuse(c net.Conn, reason string) {
	reset(c)
	l.m.refused.WithLabelValues(l.name, reason).Inc()
	msg := "connection refused: " + strings.ReplaceAll(reason, "_", " ")
	if reason == refusedNotAllowed && l.name == "trusted" {
		msg = "connection refused: source outside the trusted allowlist"
	}
	l.log.warn(msg, "listener", l.name, "peer", c.RemoteAddr().String())
}

// reset closes c with a reset (SO_LINGER 0): no TIME_WAIT is kept for it.
func reset(c net.Conn) {
	if tc, ok := c.(*net.TCPConn); ok {
		_ = tc.SetLinger(0)
	}
	c.Close()
}

// The states of a guardedConn, changed under its listener's lock.
const (
	connHandshaking = iota + 1
	connAuthed
	connGone // evicted, refused or closed: it holds no place
)

// guardedConn holds a place in its listener's pools until it closes.
type guardedConn struct {
	net.Conn
	l     *guardedListener
	src   netip.Prefix
	seq   uint64
	state int // guarded by l.mu
	// evicted is set when a newer connection took this one's place.
	evicted atomic.Bool
}

// evict closes a connection taken out of the handshaking pool, and
// counts it.
func (c *guardedConn) evict() {
	c.evicted.Store(true)
	reset(c.Conn)
	l := c.l
	l.m.open.WithLabelValues(l.name).Dec()
	l.m.handshaking.WithLabelValues(l.name).Dec()
	l.m.evicted.WithLabelValues(l.name).Inc()
	l.log.warn("connection evicted: a newer connection took its place before it authenticated", "listener", l.name, "peer", c.RemoteAddr().String())
}

func (c *guardedConn) Close() error {
	err := c.Conn.Close()
	c.l.release(c)
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
	gc, _ := raw.(*guardedConn)
	if err != nil {
		if gc != nil && gc.evicted.Load() {
			return nil, nil, errEvicted // counted as evicted
		}
		reason := handshakeFailure(err)
		c.m.failed.WithLabelValues(c.name, reason).Inc()
		// The error text comes from crypto/tls and x509: names of
		// certificates at most, never a value.
		c.log.warn("TLS handshake failed", "listener", c.name, "reason", reason, "peer", raw.RemoteAddr().String(), "error", err.Error())
		return conn, info, err
	}
	if gc != nil {
		if reason := gc.l.authenticate(gc); reason == evictedMeanwhile {
			conn.Close()
			return nil, nil, errEvicted
		} else if reason != "" {
			// Counted before the close the client sees.
			c.m.refused.WithLabelValues(c.name, reason).Inc()
			conn.Close()
			c.log.warn("connection refused: "+strings.ReplaceAll(reason, "_", " ")+" of authenticated connections", "listener", c.name, "peer", raw.RemoteAddr().String())
			return nil, nil, errors.New("server: no room for another authenticated connection")
		}
	}
	return conn, info, nil
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
