package main

import (
	"context"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"net"
	"net/http"
	"strings"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/collectors"
	"github.com/prometheus/client_golang/prometheus/promhttp"

	"github.com/jeton-dev/jeton/server"
)

// Default addresses of the metrics listener. Both are loopback: metrics
// and readiness name backends and show traffic, so exposing them beyond
// the host is an explicit choice.
const (
	defaultMetricsAddr    = "127.0.0.1:9090"
	defaultDevMetricsAddr = "127.0.0.1:9464"
)

// The metrics listener's bounds. It serves plain HTTP to probes and
// scrapers (the Helm chart binds it to every interface): at most
// metricsConns.Max requests in progress and Handshaking connections
// waiting for one, new or idle, the oldest of the most crowded source
// giving its place to a newer one, so that a flood of idle connections
// never locks out a prober. The timeouts bound how long a connection
// waits. fitConnections keeps metricsDescriptors aside for it.
var metricsConns = server.ConnLimits{Max: metricsMax, PerSource: 8, Handshaking: metricsWaiting, HandshakingPerSource: 8}

const (
	metricsMax         = 16
	metricsWaiting     = 32
	metricsDescriptors = metricsMax + metricsWaiting
)

// Variables only so that a test can shorten them.
var (
	// A request's headers must arrive within this, and the whole request
	// (a GET, no body) within metricsReadTimeout.
	metricsReadHeaderTimeout = 5 * time.Second
	metricsReadTimeout       = 10 * time.Second
	// An idle keep-alive connection is closed after this.
	metricsIdleTimeout = 30 * time.Second
)

// observability is what the wiring shares between the tokenizer, the
// server and the metrics listener.
type observability struct {
	reg     *prometheus.Registry
	metrics *server.Metrics
}

func newObservability() (*observability, error) {
	reg := prometheus.NewRegistry()
	if err := reg.Register(collectors.NewGoCollector()); err != nil {
		return nil, err
	}
	if err := reg.Register(collectors.NewProcessCollector(collectors.ProcessCollectorOpts{})); err != nil {
		return nil, err
	}
	m, err := server.NewMetrics(reg)
	if err != nil {
		return nil, err
	}
	return &observability{reg: reg, metrics: m}, nil
}

// metricsListener serves /metrics, /healthz and /readyz over plain HTTP on
// its own listener, apart from the mTLS gRPC listeners.
type metricsListener struct {
	lis  net.Listener
	mux  *http.ServeMux
	http *http.Server
}

// listenMetrics binds addr now, so that a taken port fails start-up rather
// than going unnoticed; serving starts with serve.
func listenMetrics(addr string, o *observability, srv *server.Server, log *slog.Logger) (*metricsListener, error) {
	lis, err := net.Listen("tcp", addr)
	if err != nil {
		return nil, fmt.Errorf("metrics listener: %w", err)
	}
	mux := http.NewServeMux()
	mux.Handle("GET /metrics", promhttp.HandlerFor(o.reg, promhttp.HandlerOpts{Registry: o.reg}))
	// Liveness: the process answers. It deliberately ignores the
	// dependencies: restarting jetond does not bring Redis back.
	mux.HandleFunc("GET /healthz", func(w http.ResponseWriter, _ *http.Request) {
		fmt.Fprintln(w, "ok")
	})
	// Readiness, as a whole and per listener. In Kubernetes a pod has one
	// readiness for all its Services: /readyz (both listeners) takes a
	// replica whose audit log fails out of both, so new connections of
	// either kind go to the other replicas; /readyz/public keeps it in
	// every Service as long as it can tokenize (see the README).
	mux.HandleFunc("GET /readyz", func(w http.ResponseWriter, _ *http.Request) {
		readyz(w, srv, server.ListenerPublic, server.ListenerTrusted)
	})
	for _, l := range []string{server.ListenerPublic, server.ListenerTrusted} {
		mux.HandleFunc("GET /readyz/"+l, func(w http.ResponseWriter, _ *http.Request) { readyz(w, srv, l) })
	}
	hs := &http.Server{
		Handler:           mux,
		ReadHeaderTimeout: metricsReadHeaderTimeout,
		ReadTimeout:       metricsReadTimeout,
		IdleTimeout:       metricsIdleTimeout,
		// No WriteTimeout: a CPU profile (metrics.pprof) streams for as
		// long as it was asked to run.
		ErrorLog: slog.NewLogLogger(log.Handler(), slog.LevelWarn),
	}
	if srv != nil {
		lis, hs.ConnState = srv.GuardHTTP(lis, "metrics", metricsConns)
	}
	m := &metricsListener{lis: lis, mux: mux, http: hs}
	log.Info("metrics listening", "addr", lis.Addr().String())
	return m, nil
}

// readyz answers 200 when every one of listeners is ready, 503 otherwise;
// the body says, per listener, "ready", "ready (degraded: vault down)" or
// "not ready: audit". Check names only, never an error text: the metrics
// listener is not authenticated.
func readyz(w http.ResponseWriter, srv *server.Server, listeners ...string) {
	w.Header().Set("Content-Type", "text/plain; charset=utf-8")
	var b strings.Builder
	all := true
	for _, l := range listeners {
		if len(listeners) > 1 {
			b.WriteString(l + ": ")
		}
		ok, reasons := srv.ListenerReady(l)
		switch d := srv.Degraded(); {
		case !ok:
			all = false
			fmt.Fprintf(&b, "not ready: %s\n", strings.Join(reasons, ", "))
		case len(d) > 0:
			// Still ready: what the replica holds is served without them.
			fmt.Fprintf(&b, "ready (degraded: %s down)\n", strings.Join(d, ", "))
		default:
			b.WriteString("ready\n")
		}
	}
	if !all {
		w.WriteHeader(http.StatusServiceUnavailable)
	}
	io.WriteString(w, b.String())
}

func (m *metricsListener) serve(log *slog.Logger) {
	go func() {
		if err := m.http.Serve(m.lis); err != nil && !errors.Is(err, http.ErrServerClosed) {
			log.Error("metrics listener failed", "error", err)
		}
	}()
}

func (m *metricsListener) close() error {
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
	defer cancel()
	return m.http.Shutdown(ctx)
}
