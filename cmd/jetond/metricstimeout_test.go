package main

import (
	"bufio"
	"io"
	"log/slog"
	"net"
	"net/http"
	"testing"
	"time"
)

// TestMetricsListenerTimeouts: the metrics listener closes a connection
// whose request headers do not arrive in time (slowloris), and a
// keep-alive connection left idle, so neither holds a descriptor for long.
// The timeouts are shortened for the test; the production values are
// metricsReadHeaderTimeout and metricsIdleTimeout.
func TestMetricsListenerTimeouts(t *testing.T) {
	defer func(h, r, i time.Duration) {
		metricsReadHeaderTimeout, metricsReadTimeout, metricsIdleTimeout = h, r, i
	}(metricsReadHeaderTimeout, metricsReadTimeout, metricsIdleTimeout)
	// ReadTimeout stays long: each of the two timeouts must do its part
	// (without IdleTimeout, net/http would fall back to ReadTimeout).
	metricsReadHeaderTimeout, metricsIdleTimeout = 200*time.Millisecond, 300*time.Millisecond
	o, err := newObservability()
	if err != nil {
		t.Fatal(err)
	}
	log := slog.New(slog.NewTextHandler(io.Discard, nil))
	m, err := listenMetrics("127.0.0.1:0", o, nil, log)
	if err != nil {
		t.Fatal(err)
	}
	m.serve(log)
	t.Cleanup(func() { m.close() })
	addr := m.lis.Addr().String()

	closedWithin := func(what string, c net.Conn, limit time.Duration) {
		t.Helper()
		start := time.Now()
		c.SetReadDeadline(start.Add(limit))
		_, err := io.Copy(io.Discard, c)
		if ne, ok := err.(net.Error); ok && ne.Timeout() {
			t.Fatalf("%s: still open after %v", what, limit)
		}
	}
	// Headers that never end.
	slow, err := net.Dial("tcp", addr)
	if err != nil {
		t.Fatal(err)
	}
	defer slow.Close()
	if _, err := io.WriteString(slow, "GET /healthz HTTP/1.1\r\nHost: x\r\n"); err != nil {
		t.Fatal(err)
	}
	closedWithin("a request whose headers never end", slow, 3*time.Second)

	// A served request, then nothing.
	idle, err := net.Dial("tcp", addr)
	if err != nil {
		t.Fatal(err)
	}
	defer idle.Close()
	if _, err := io.WriteString(idle, "GET /healthz HTTP/1.1\r\nHost: x\r\n\r\n"); err != nil {
		t.Fatal(err)
	}
	br := bufio.NewReader(idle)
	res, err := http.ReadResponse(br, nil)
	if err != nil || res.StatusCode != http.StatusOK {
		t.Fatalf("/healthz: %v", err)
	}
	io.Copy(io.Discard, res.Body)
	res.Body.Close()
	idle.SetReadDeadline(time.Now().Add(3 * time.Second))
	if _, err := io.Copy(io.Discard, br); err != nil {
		if ne, ok := err.(net.Error); ok && ne.Timeout() {
			t.Fatal("an idle keep-alive connection still open after 3s")
		}
	}
}
