package main

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"net/http"
	neturl "net/url"
	"strconv"
	"strings"
	"time"

	vault "github.com/hashicorp/vault/api"
	"github.com/redis/go-redis/extra/redisotel/v9"
	"github.com/redis/go-redis/v9"
	"go.opentelemetry.io/contrib/instrumentation/google.golang.org/grpc/otelgrpc"
	"go.opentelemetry.io/contrib/instrumentation/google.golang.org/grpc/otelgrpc/filters"
	"go.opentelemetry.io/contrib/instrumentation/net/http/otelhttp"
	"go.opentelemetry.io/otel"
	"go.opentelemetry.io/otel/exporters/otlp/otlptrace/otlptracegrpc"
	"go.opentelemetry.io/otel/exporters/otlp/otlptrace/otlptracehttp"
	"go.opentelemetry.io/otel/propagation"
	"go.opentelemetry.io/otel/sdk/resource"
	sdktrace "go.opentelemetry.io/otel/sdk/trace"
	semconv "go.opentelemetry.io/otel/semconv/v1.43.0"
	"go.opentelemetry.io/otel/trace"
	"google.golang.org/grpc/credentials"
	"google.golang.org/grpc/stats"
)

// TracingConfig turns on OpenTelemetry tracing, exported by OTLP. Tracing
// is off unless Endpoint is set here or the standard
// OTEL_EXPORTER_OTLP_ENDPOINT or OTEL_EXPORTER_OTLP_TRACES_ENDPOINT is;
// OTEL_SDK_DISABLED=true or OTEL_TRACES_EXPORTER=none turn it off again.
// The standard OTEL_* variables override these fields, as JETON_* ones
// override the rest of the file.
//
// Spans are made for each RPC (not health checks), each Redis command or
// pipeline and each Vault request. None carries a value, a token or a Redis
// key: Redis spans name the command only, Vault spans the HTTP method and
// path (mount and key names, no data), RPC spans the method and status.
type TracingConfig struct {
	// Endpoint is the collector: host:port, or a URL such as
	// https://collector:4318 (for http/protobuf, a URL without a path gets
	// /v1/traces, as OTEL_EXPORTER_OTLP_ENDPOINT does).
	Endpoint string `yaml:"endpoint"`
	// Protocol is http/protobuf (the default, as in the OTLP
	// specification) or grpc.
	Protocol string `yaml:"protocol"`
	// Insecure sends spans without TLS: only to a collector on the same
	// host or pod.
	Insecure bool `yaml:"insecure"`
	// TLS verifies the collector with CA (the system roots when empty) and
	// presents Cert and Key when set.
	TLS ClientTLS `yaml:"tls"`
	// SampleRatio is the fraction of new traces recorded, from 0 to 1; 1
	// when absent. OTEL_TRACES_SAMPLER_ARG overrides it. A call that
	// arrives on the trusted listener inside a sampled trace is recorded
	// whatever the ratio.
	SampleRatio *float64 `yaml:"sample_ratio"`
	// ServiceName is the service.name resource attribute; jetond when
	// empty. OTEL_SERVICE_NAME and OTEL_RESOURCE_ATTRIBUTES apply.
	ServiceName string `yaml:"service_name"`
}

// Tracing protocols.
const (
	protoHTTP = "http/protobuf"
	protoGRPC = "grpc"
)

func (c TracingConfig) validate() error {
	switch c.Protocol {
	case "", protoHTTP, protoGRPC:
	default:
		return fmt.Errorf("tracing.protocol %q must be http/protobuf or grpc", c.Protocol)
	}
	if r := c.SampleRatio; r != nil && (*r < 0 || *r > 1) {
		return fmt.Errorf("tracing.sample_ratio %v must be between 0 and 1", *r)
	}
	if (c.TLS.Cert == "") != (c.TLS.Key == "") {
		return errors.New("tracing.tls.cert and tracing.tls.key go together")
	}
	if c.Insecure && (c.TLS.CA != "" || c.TLS.Cert != "") {
		return errors.New("tracing.insecure and tracing.tls exclude each other")
	}
	return nil
}

// tracing is jetond's tracer provider and what it instruments. A nil or
// off tracing instruments nothing, so tracing costs nothing when unused.
type tracing struct {
	tp *sdktrace.TracerProvider
}

// newTracing builds tracing from the config and the OTEL_* environment.
// spans, when not nil, replaces the OTLP exporter (tests pass an in-memory
// one) and turns tracing on.
func newTracing(ctx context.Context, cfg TracingConfig, getenv func(string) string, spans sdktrace.SpanExporter, log *slog.Logger) (*tracing, error) {
	if spans == nil {
		if !tracingOn(cfg, getenv) {
			return &tracing{}, nil
		}
		var err error
		if spans, err = newOTLPExporter(ctx, cfg, getenv); err != nil {
			return nil, fmt.Errorf("tracing: %w", err)
		}
	}
	ratio := 1.0
	if cfg.SampleRatio != nil {
		ratio = *cfg.SampleRatio
	}
	if v := getenv("OTEL_TRACES_SAMPLER_ARG"); v != "" {
		r, err := strconv.ParseFloat(v, 64)
		if err != nil || r < 0 || r > 1 {
			return nil, fmt.Errorf("tracing: OTEL_TRACES_SAMPLER_ARG %q must be a ratio between 0 and 1", v)
		}
		ratio = r
	}
	name := cfg.ServiceName
	if name == "" {
		name = "jetond"
	}
	// Later options win: the environment overrides the file.
	res, err := resource.New(ctx,
		resource.WithAttributes(semconv.ServiceName(name)),
		resource.WithFromEnv(),
		resource.WithTelemetrySDK(),
	)
	if err != nil {
		return nil, fmt.Errorf("tracing: resource: %w", err)
	}
	// Export errors go to jetond's log; they carry no span content.
	otel.SetErrorHandler(otel.ErrorHandlerFunc(func(err error) {
		log.Warn("tracing: export failed", "error", err)
	}))
	return &tracing{tp: sdktrace.NewTracerProvider(
		sdktrace.WithBatcher(spans),
		sdktrace.WithResource(res),
		sdktrace.WithSampler(sdktrace.ParentBased(rpcRoots{sdktrace.TraceIDRatioBased(ratio)})),
	)}, nil
}

// tracingOn reports whether the config or the environment asks for traces.
func tracingOn(cfg TracingConfig, getenv func(string) string) bool {
	if strings.EqualFold(getenv("OTEL_SDK_DISABLED"), "true") || strings.EqualFold(getenv("OTEL_TRACES_EXPORTER"), "none") {
		return false
	}
	return cfg.Endpoint != "" || envEndpoint(getenv) != ""
}

func envEndpoint(getenv func(string) string) string {
	if v := getenv("OTEL_EXPORTER_OTLP_TRACES_ENDPOINT"); v != "" {
		return v
	}
	return getenv("OTEL_EXPORTER_OTLP_ENDPOINT")
}

// newOTLPExporter builds the exporter. The OTLP exporters read the
// OTEL_EXPORTER_OTLP_* variables themselves; the file's fields are given
// only where no variable sets the same thing, so the environment wins.
func newOTLPExporter(ctx context.Context, cfg TracingConfig, getenv func(string) string) (sdktrace.SpanExporter, error) {
	if v := getenv("OTEL_TRACES_EXPORTER"); v != "" && v != "otlp" {
		return nil, fmt.Errorf("OTEL_TRACES_EXPORTER %q: jetond exports by otlp only", v)
	}
	protocol := cfg.Protocol
	for _, name := range []string{"OTEL_EXPORTER_OTLP_PROTOCOL", "OTEL_EXPORTER_OTLP_TRACES_PROTOCOL"} {
		if v := getenv(name); v != "" {
			protocol = v
		}
	}
	tlsCfg, err := cfg.TLS.config()
	if err != nil {
		return nil, fmt.Errorf("tracing.tls: %w", err)
	}
	if tlsCfg == nil && cfg.TLS.Cert != "" {
		return nil, errors.New("tracing.tls.cert needs tracing.tls.ca")
	}
	fromFile := envEndpoint(getenv) == "" && cfg.Endpoint != ""
	url := strings.Contains(cfg.Endpoint, "://")
	switch protocol {
	case "", protoHTTP:
		var opts []otlptracehttp.Option
		if fromFile && url {
			opts = append(opts, otlptracehttp.WithEndpointURL(httpTracesURL(cfg.Endpoint)))
		} else if fromFile {
			opts = append(opts, otlptracehttp.WithEndpoint(cfg.Endpoint))
		}
		if cfg.Insecure {
			opts = append(opts, otlptracehttp.WithInsecure())
		}
		if tlsCfg != nil {
			opts = append(opts, otlptracehttp.WithTLSClientConfig(tlsCfg))
		}
		return otlptracehttp.New(ctx, opts...)
	case protoGRPC:
		var opts []otlptracegrpc.Option
		if fromFile && url {
			opts = append(opts, otlptracegrpc.WithEndpointURL(cfg.Endpoint))
		} else if fromFile {
			opts = append(opts, otlptracegrpc.WithEndpoint(cfg.Endpoint))
		}
		if cfg.Insecure {
			opts = append(opts, otlptracegrpc.WithInsecure())
		}
		if tlsCfg != nil {
			opts = append(opts, otlptracegrpc.WithTLSCredentials(credentials.NewTLS(tlsCfg)))
		}
		return otlptracegrpc.New(ctx, opts...)
	default:
		return nil, fmt.Errorf("OTLP protocol %q: want http/protobuf or grpc", protocol)
	}
}

// httpTracesURL gives a base URL the traces path, as the exporter does for
// OTEL_EXPORTER_OTLP_ENDPOINT; a URL with a path is used as it is.
func httpTracesURL(endpoint string) string {
	u, err := neturl.Parse(endpoint)
	if err != nil || (u.Path != "" && u.Path != "/") {
		return endpoint
	}
	u.Path = "/v1/traces"
	return u.String()
}

// rpcRoots starts traces at RPCs only. A root span of any other kind (the
// readiness probe's Redis PING every few seconds, a key refresh's Vault
// read) is dropped, so background work does not flood the collector; the
// same calls made while serving an RPC are its children and are recorded.
type rpcRoots struct{ sdktrace.Sampler }

func (s rpcRoots) ShouldSample(p sdktrace.SamplingParameters) sdktrace.SamplingResult {
	if p.Kind != trace.SpanKindServer {
		return sdktrace.SamplingResult{Decision: sdktrace.Drop, Tracestate: trace.SpanContextFromContext(p.ParentContext).TraceState()}
	}
	return s.Sampler.ShouldSample(p)
}

func (s rpcRoots) Description() string { return "RPCRoots{" + s.Sampler.Description() + "}" }

func (t *tracing) on() bool { return t != nil && t.tp != nil }

// grpcHandler is the stats handler that traces one listener's RPCs; nil
// when tracing is off. On the public listener a sponsor's trace context is
// not trusted: each call starts a new trace, linked to the sponsor's span,
// so a sponsor can neither force sampling nor join the TTP's traces. On
// the trusted listener a call continues its caller's trace.
func (t *tracing) grpcHandler(public bool) stats.Handler {
	if !t.on() {
		return nil
	}
	opts := []otelgrpc.Option{
		otelgrpc.WithTracerProvider(t.tp),
		otelgrpc.WithPropagators(propagation.TraceContext{}),
		// Probes would drown the calls in noise.
		otelgrpc.WithFilter(filters.Not(filters.HealthCheck())),
	}
	if public {
		opts = append(opts, otelgrpc.WithPublicEndpoint())
	}
	return otelgrpc.NewServerHandler(opts...)
}

// instrumentRedis traces every command and pipeline by command name only:
// redisotel records the full command line, keys and arguments (sealed
// records, and key names derived from tokens), unless told not to.
func (t *tracing) instrumentRedis(rc redis.UniversalClient) error {
	if !t.on() {
		return nil
	}
	return redisotel.InstrumentTracing(rc,
		redisotel.WithTracerProvider(t.tp),
		redisotel.WithDBStatement(false),
		redisotel.WithCallerEnabled(false),
	)
}

// instrumentVault traces every request of the Vault client built on cfg.
// Call it after vault.NewClient(cfg), which needs the plain transport.
// otelhttp records the method, URL path and status, never a body or a
// header, so neither the data keys in transit nor the Vault token appear.
func (t *tracing) instrumentVault(cfg *vault.Config) {
	if !t.on() || cfg.HttpClient == nil {
		return
	}
	cfg.HttpClient.Transport = otelhttp.NewTransport(cfg.HttpClient.Transport,
		otelhttp.WithTracerProvider(t.tp),
		otelhttp.WithSpanNameFormatter(func(_ string, r *http.Request) string { return "vault " + r.Method }),
	)
}

// shutdown flushes the spans still buffered and stops the exporter.
func (t *tracing) shutdown() error {
	if !t.on() {
		return nil
	}
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
	defer cancel()
	return t.tp.Shutdown(ctx)
}
