package main

import (
	"fmt"
	"log/slog"
	"net"
	"net/http/pprof"
)

// validate refuses the profiler on a metrics listener that is not bound to
// loopback.
func (m MetricsConfig) validate() error {
	if !m.Pprof {
		return nil
	}
	addr := m.Addr
	if addr == "" {
		addr = defaultMetricsAddr
	}
	if !loopbackAddr(addr) {
		return fmt.Errorf("metrics.pprof needs metrics.addr on loopback (127.0.0.0/8, ::1 or localhost); %q is not", addr)
	}
	return nil
}

// loopbackAddr reports whether host:port names a loopback host: an IP in
// 127.0.0.0/8 or ::1, or "localhost". An empty host (":9090") listens on
// every interface, so it is not loopback.
func loopbackAddr(addr string) bool {
	host, _, err := net.SplitHostPort(addr)
	if err != nil {
		return false
	}
	if host == "localhost" {
		return true
	}
	ip := net.ParseIP(host)
	return ip != nil && ip.IsLoopback()
}

// enablePprof serves net/http/pprof under /debug/pprof/. It checks the
// address the listener actually bound, not only the configured one, so a
// name that resolved elsewhere cannot expose the profiler.
//
// Profiles hold stack traces, function names, sizes and the command line;
// never the contents of memory, so no value or token. They are still
// internals, and a CPU profile costs CPU for as long as it runs: hence
// opt-in and loopback only.
//
// Importing net/http/pprof also registers these handlers on
// http.DefaultServeMux; jetond never serves that mux.
func (m *metricsListener) enablePprof(log *slog.Logger) error {
	tcp, ok := m.lis.Addr().(*net.TCPAddr)
	if !ok || !tcp.IP.IsLoopback() {
		return fmt.Errorf("metrics.pprof: the metrics listener is bound to %s, not loopback; refusing to serve the profiler", m.lis.Addr())
	}
	m.mux.HandleFunc("GET /debug/pprof/", pprof.Index)
	m.mux.HandleFunc("GET /debug/pprof/cmdline", pprof.Cmdline)
	m.mux.HandleFunc("GET /debug/pprof/profile", pprof.Profile)
	m.mux.HandleFunc("GET /debug/pprof/symbol", pprof.Symbol)
	m.mux.HandleFunc("POST /debug/pprof/symbol", pprof.Symbol)
	m.mux.HandleFunc("GET /debug/pprof/trace", pprof.Trace)
	log.Warn("pprof profiler enabled on the metrics listener", "addr", m.lis.Addr().String(), "path", "/debug/pprof/")
	return nil
}
