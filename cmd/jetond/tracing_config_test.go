package main

import (
	"context"
	"io"
	"log/slog"
	"net"
	"net/http"
	"net/http/httptest"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"testing"

	vault "github.com/hashicorp/vault/api"
	"go.opentelemetry.io/otel/sdk/trace/tracetest"
	"go.opentelemetry.io/otel/trace"
	coltracepb "go.opentelemetry.io/proto/otlp/collector/trace/v1"
	"google.golang.org/grpc"
	"google.golang.org/protobuf/proto"
)

// collector is an OTLP receiver on loopback, over HTTP or gRPC, that
// remembers the service name and span names it was sent.
type collector struct {
	coltracepb.UnimplementedTraceServiceServer
	mu    sync.Mutex
	got   []string // "service/span"
	addr  string   // host:port
	count int
}

func (c *collector) record(req *coltracepb.ExportTraceServiceRequest) {
	c.mu.Lock()
	defer c.mu.Unlock()
	c.count++
	for _, rs := range req.GetResourceSpans() {
		svc := ""
		for _, kv := range rs.GetResource().GetAttributes() {
			if kv.GetKey() == "service.name" {
				svc = kv.GetValue().GetStringValue()
			}
		}
		for _, ss := range rs.GetScopeSpans() {
			for _, s := range ss.GetSpans() {
				c.got = append(c.got, svc+"/"+s.GetName())
			}
		}
	}
}

func (c *collector) spans() []string {
	c.mu.Lock()
	defer c.mu.Unlock()
	return append([]string(nil), c.got...)
}

func (c *collector) Export(_ context.Context, req *coltracepb.ExportTraceServiceRequest) (*coltracepb.ExportTraceServiceResponse, error) {
	c.record(req)
	return &coltracepb.ExportTraceServiceResponse{}, nil
}

func httpCollector(t testing.TB) *collector {
	t.Helper()
	c := &collector{}
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		b, err := io.ReadAll(r.Body)
		var req coltracepb.ExportTraceServiceRequest
		if err != nil || r.URL.Path != "/v1/traces" || proto.Unmarshal(b, &req) != nil {
			http.Error(w, "bad export", http.StatusBadRequest)
			return
		}
		c.record(&req)
		out, _ := proto.Marshal(&coltracepb.ExportTraceServiceResponse{})
		w.Header().Set("Content-Type", "application/x-protobuf")
		_, _ = w.Write(out)
	}))
	t.Cleanup(srv.Close)
	c.addr = strings.TrimPrefix(srv.URL, "http://")
	return c
}

func grpcCollector(t testing.TB) *collector {
	t.Helper()
	c := &collector{}
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	s := grpc.NewServer()
	coltracepb.RegisterTraceServiceServer(s, c)
	go func() { _ = s.Serve(l) }()
	t.Cleanup(s.Stop)
	c.addr = l.Addr().String()
	return c
}

// exportOne builds tracing from cfg and env, records one RPC span and
// shuts down, which flushes it to wherever the config sends spans.
func exportOne(t testing.TB, cfg TracingConfig, env map[string]string) *tracing {
	t.Helper()
	for k, v := range env {
		t.Setenv(k, v) // the OTLP exporters read their variables themselves
	}
	tr, err := newTracing(context.Background(), cfg, func(k string) string { return env[k] }, nil, slog.New(slog.DiscardHandler))
	if err != nil {
		t.Fatalf("newTracing: %v", err)
	}
	if tr.on() {
		_, span := tr.tp.Tracer("test").Start(context.Background(), "jeton.v1.Tokenizer/Tokenize", trace.WithSpanKind(trace.SpanKindServer))
		span.End()
	}
	if err := tr.shutdown(); err != nil {
		t.Fatalf("shutdown: %v", err)
	}
	return tr
}

// TestTracingExportsOTLP: spans reach the collector the YAML or the OTEL_*
// variables name, over either protocol, and the variables win.
func TestTracingExportsOTLP(t *testing.T) {
	const span = "jeton.v1.Tokenizer/Tokenize"
	dead := "127.0.0.1:1" // nothing listens there
	tests := []struct {
		name    string
		grpc    bool
		cfg     func(addr string) TracingConfig
		env     func(addr string) map[string]string
		service string
	}{
		{name: "yaml http/protobuf URL", cfg: func(a string) TracingConfig {
			return TracingConfig{Endpoint: "http://" + a}
		}, service: "jetond"},
		{name: "yaml http/protobuf host:port insecure", cfg: func(a string) TracingConfig {
			return TracingConfig{Endpoint: a, Protocol: protoHTTP, Insecure: true, ServiceName: "jetond-eu"}
		}, service: "jetond-eu"},
		{name: "yaml grpc", grpc: true, cfg: func(a string) TracingConfig {
			return TracingConfig{Endpoint: a, Protocol: protoGRPC, Insecure: true}
		}, service: "jetond"},
		{name: "environment only", env: func(a string) map[string]string {
			return map[string]string{"OTEL_EXPORTER_OTLP_ENDPOINT": "http://" + a, "OTEL_SERVICE_NAME": "jetond-env"}
		}, service: "jetond-env"},
		{name: "environment over yaml", grpc: true, cfg: func(string) TracingConfig {
			return TracingConfig{Endpoint: "http://" + dead, ServiceName: "from-file"}
		}, env: func(a string) map[string]string {
			return map[string]string{
				"OTEL_EXPORTER_OTLP_TRACES_ENDPOINT": "http://" + a, "OTEL_EXPORTER_OTLP_PROTOCOL": "grpc",
				"OTEL_RESOURCE_ATTRIBUTES": "service.name=from-env",
			}
		}, service: "from-env"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			c := httpCollector(t)
			if tt.grpc {
				c = grpcCollector(t)
			}
			var cfg TracingConfig
			if tt.cfg != nil {
				cfg = tt.cfg(c.addr)
			}
			if err := cfg.validate(); err != nil {
				t.Fatal(err)
			}
			env := map[string]string{}
			if tt.env != nil {
				env = tt.env(c.addr)
			}
			exportOne(t, cfg, env)
			got := c.spans()
			if len(got) != 1 || got[0] != tt.service+"/"+span {
				t.Fatalf("collector got %q, want [%s/%s]", got, tt.service, span)
			}
		})
	}
}

// TestTracingOffByDefault: no endpoint anywhere, or an endpoint switched
// off by the standard variables, means no tracing and no instrumentation.
func TestTracingOffByDefault(t *testing.T) {
	c := httpCollector(t)
	tests := []struct {
		name string
		cfg  TracingConfig
		env  map[string]string
	}{
		{name: "nothing configured"},
		{name: "OTEL_SDK_DISABLED", cfg: TracingConfig{Endpoint: "http://" + c.addr}, env: map[string]string{"OTEL_SDK_DISABLED": "true"}},
		{name: "OTEL_TRACES_EXPORTER none", env: map[string]string{"OTEL_EXPORTER_OTLP_ENDPOINT": "http://" + c.addr, "OTEL_TRACES_EXPORTER": "none"}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			tr := exportOne(t, tt.cfg, tt.env)
			if tr.on() {
				t.Fatal("tracing is on")
			}
			if tr.grpcHandler(true) != nil || tr.grpcHandler(false) != nil {
				t.Error("a gRPC stats handler while tracing is off")
			}
			vcfg := vault.DefaultConfig()
			tr.instrumentVault(vcfg)
			if _, ok := vcfg.HttpClient.Transport.(*http.Transport); !ok {
				t.Errorf("the Vault transport was wrapped: %T", vcfg.HttpClient.Transport)
			}
		})
	}
	if n := len(c.spans()); n != 0 {
		t.Fatalf("collector got %d spans", n)
	}
}

// TestTracingSampler: the ratio applies to new traces started by RPCs; a
// root span of any other kind (a probe's Redis PING) is never recorded; a
// call inside a sampled trace always is.
func TestTracingSampler(t *testing.T) {
	zero := 0.0
	tr, err := newTracing(context.Background(), TracingConfig{SampleRatio: &zero}, func(string) string { return "" }, keptSpans{tracetest.NewInMemoryExporter()}, slog.New(slog.DiscardHandler))
	if err != nil {
		t.Fatal(err)
	}
	defer tr.shutdown()
	tracer := tr.tp.Tracer("test")
	sampled := trace.ContextWithRemoteSpanContext(context.Background(), trace.NewSpanContext(trace.SpanContextConfig{
		TraceID: trace.TraceID{1}, SpanID: trace.SpanID{1}, TraceFlags: trace.FlagsSampled, Remote: true,
	}))
	tests := []struct {
		name string
		ctx  context.Context
		kind trace.SpanKind
		want bool
	}{
		{"new RPC trace at ratio 0", context.Background(), trace.SpanKindServer, false},
		{"RPC in a sampled trace", sampled, trace.SpanKindServer, true},
		{"background Redis call", context.Background(), trace.SpanKindClient, false},
	}
	for _, tt := range tests {
		_, s := tracer.Start(tt.ctx, tt.name, trace.WithSpanKind(tt.kind))
		if got := s.IsRecording(); got != tt.want {
			t.Errorf("%s: recording %v, want %v", tt.name, got, tt.want)
		}
		s.End()
	}
	one := 1.0
	tr1, err := newTracing(context.Background(), TracingConfig{SampleRatio: &one}, func(string) string { return "" }, keptSpans{tracetest.NewInMemoryExporter()}, slog.New(slog.DiscardHandler))
	if err != nil {
		t.Fatal(err)
	}
	defer tr1.shutdown()
	if _, s := tr1.tp.Tracer("test").Start(context.Background(), "rpc", trace.WithSpanKind(trace.SpanKindServer)); !s.IsRecording() {
		t.Error("ratio 1: a new RPC trace is not recorded")
	}
}

// TestTracingConfigErrors: bad settings are refused at start-up, naming
// the field or variable.
func TestTracingConfigErrors(t *testing.T) {
	two := 2.0
	for _, tt := range []struct {
		name string
		cfg  TracingConfig
		want string
	}{
		{"protocol", TracingConfig{Protocol: "zipkin"}, "tracing.protocol"},
		{"ratio", TracingConfig{SampleRatio: &two}, "tracing.sample_ratio"},
		{"cert without key", TracingConfig{TLS: ClientTLS{Cert: "c.pem"}}, "tracing.tls.cert"},
		{"insecure with tls", TracingConfig{Insecure: true, TLS: ClientTLS{CA: "ca.pem"}}, "tracing.insecure"},
	} {
		if err := tt.cfg.validate(); err == nil || !strings.Contains(err.Error(), tt.want) {
			t.Errorf("%s: error %v, want one naming %s", tt.name, err, tt.want)
		}
	}
	for _, tt := range []struct {
		name string
		env  map[string]string
		want string
	}{
		{"exporter", map[string]string{"OTEL_EXPORTER_OTLP_ENDPOINT": "http://127.0.0.1:1", "OTEL_TRACES_EXPORTER": "zipkin"}, "OTEL_TRACES_EXPORTER"},
		{"protocol", map[string]string{"OTEL_EXPORTER_OTLP_ENDPOINT": "http://127.0.0.1:1", "OTEL_EXPORTER_OTLP_PROTOCOL": "http/json"}, "protocol"},
		{"sampler arg", map[string]string{"OTEL_EXPORTER_OTLP_ENDPOINT": "http://127.0.0.1:1", "OTEL_TRACES_SAMPLER_ARG": "most"}, "OTEL_TRACES_SAMPLER_ARG"},
	} {
		t.Run(tt.name, func(t *testing.T) {
			for k, v := range tt.env {
				t.Setenv(k, v)
			}
			_, err := newTracing(context.Background(), TracingConfig{}, func(k string) string { return tt.env[k] }, nil, slog.New(slog.DiscardHandler))
			if err == nil || !strings.Contains(err.Error(), tt.want) {
				t.Errorf("error %v, want one naming %s", err, tt.want)
			}
		})
	}
	// And through the whole config: the block is checked with the rest.
	base, err := os.ReadFile("jetond.example.yaml")
	if err != nil {
		t.Fatal(err)
	}
	const from = "protocol: http/protobuf"
	if !strings.Contains(string(base), from) {
		t.Fatalf("example config lacks %q", from)
	}
	path := filepath.Join(t.TempDir(), "c.yaml")
	writeAtomically(t, path, []byte(strings.Replace(string(base), from, "protocol: thrift", 1)))
	if _, err := LoadConfig(path, func(string) string { return "" }); err == nil || !strings.Contains(err.Error(), "tracing.protocol") {
		t.Errorf("LoadConfig: %v, want an error naming tracing.protocol", err)
	}
}
