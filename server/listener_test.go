package server

import (
	"bytes"
	"log/slog"
	"net"
	"net/netip"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	"golang.org/x/time/rate"
)

// pipeConn is one end of a pipe; the other end is closed with the test.
func pipeConn(t *testing.T) net.Conn {
	t.Helper()
	a, b := net.Pipe()
	t.Cleanup(func() { a.Close(); b.Close() })
	return a
}

// TestHandshakeEviction pins which handshake makes room for a new
// connection: the source's own oldest when the source holds its share;
// when the pool is full, the oldest of the source holding the most, so
// that a client with one handshake in flight is never the one to go
// while another source holds more; and never an authenticated
// connection, whose pool has caps of its own.
func TestHandshakeEviction(t *testing.T) {
	m, err := newConnMetrics(prometheus.NewRegistry())
	if err != nil {
		t.Fatal(err)
	}
	l := newGuardedListener(nil, "public", nil,
		ConnLimits{Max: 2, PerSource: 1, Handshaking: 4, HandshakingPerSource: 3}, m, newSampledLog(slog.New(slog.DiscardHandler)))
	flood, other, client := netip.MustParsePrefix("192.0.2.1/32"), netip.MustParsePrefix("192.0.2.2/32"), netip.MustParsePrefix("192.0.2.3/32")
	admit := func(src netip.Prefix) *guardedConn { return l.admit(pipeConn(t), src) }

	c := admit(client)
	a1, a2, a3 := admit(flood), admit(flood), admit(flood)
	a4 := admit(flood) // over the source's share: its own oldest goes
	if !a1.evicted.Load() || a2.evicted.Load() || a3.evicted.Load() || a4.evicted.Load() || c.evicted.Load() {
		t.Fatal("a source over its share did not lose its own oldest handshake")
	}
	// The pool is full. The client's handshake is the oldest, but the
	// flood's source holds the most: its oldest goes.
	b := admit(other)
	if !a2.evicted.Load() || c.evicted.Load() || b.evicted.Load() {
		t.Fatal("a full pool did not evict the oldest handshake of the source holding the most")
	}
	if got := l.authenticate(c); got != "" {
		t.Fatalf("authenticate = %q, want room", got)
	}
	// The client is authenticated: no flood of handshakes can touch it.
	for range 10 {
		admit(flood)
		admit(other)
	}
	if c.evicted.Load() || l.shaking != 4 || l.authed != 1 {
		t.Fatalf("after the flood: client evicted %v, %d handshaking, %d authenticated", c.evicted.Load(), l.shaking, l.authed)
	}
	// The authenticated pool: one per source, two in all.
	var shaking []*guardedConn
	for _, src := range l.handshaking {
		shaking = append(shaking, src...)
	}
	if got := l.authenticate(admit(client)); got != refusedSourceFull {
		t.Fatalf("a second authenticated connection of one source: %q, want %q", got, refusedSourceFull)
	}
	if got := l.authenticate(admit(other)); got != "" {
		t.Fatalf("authenticate = %q, want room", got)
	}
	if got := l.authenticate(admit(netip.MustParsePrefix("192.0.2.4/32"))); got != refusedListenerFull {
		t.Fatalf("a third authenticated connection: %q, want %q", got, refusedListenerFull)
	}
	// An evicted handshake that completes anyway gets no place.
	var gone *guardedConn
	for _, c := range shaking {
		if c.evicted.Load() {
			gone = c
		}
	}
	if gone == nil {
		t.Fatal("three new connections into a full pool evicted none")
	}
	if got := l.authenticate(gone); got != evictedMeanwhile {
		t.Fatalf("an evicted connection authenticated: %q", got)
	}
	c.Close()
	if l.authed != 1 || l.bySource[client] != 0 {
		t.Fatalf("closing an authenticated connection: %d authenticated, %d of its source", l.authed, l.bySource[client])
	}
}

// TestSampledLogBounded: a burst of warnings becomes at most the burst
// plus one line a second, and the next line that goes out says how many
// were dropped.
func TestSampledLogBounded(t *testing.T) {
	var buf bytes.Buffer
	s := newSampledLog(slog.New(slog.NewTextHandler(&buf, nil)))
	const n = 1000
	start := time.Now()
	for range n {
		s.warn("connection refused: listener full")
	}
	elapsed := time.Since(start)
	lines := strings.Count(buf.String(), "\n")
	// At most the burst, and one more per second that went by (an upper
	// bound that grows with a slow machine, never a deadline).
	if limit := s.lim.Burst() + int(elapsed.Seconds()*float64(s.lim.Limit())) + 1; lines < 1 || lines > limit {
		t.Fatalf("%d warnings gave %d lines; want between 1 and %d", n, lines, limit)
	}
	s.lim = rate.NewLimiter(rate.Inf, 1)
	buf.Reset()
	s.warn("connection refused: listener full")
	if want := "suppressed_since_last=" + strconv.Itoa(n-lines); !strings.Contains(buf.String(), want) {
		t.Fatalf("the next line %q does not say %s", buf.String(), want)
	}
}
