package main

import (
	"context"
	"io"
	"strings"
	"testing"
	"time"

	"go.opentelemetry.io/contrib/instrumentation/google.golang.org/grpc/otelgrpc"
	"go.opentelemetry.io/otel/propagation"
	sdktrace "go.opentelemetry.io/otel/sdk/trace"
	"go.opentelemetry.io/otel/sdk/trace/tracetest"
	"go.opentelemetry.io/otel/trace"
	"google.golang.org/grpc"
	"google.golang.org/grpc/status"

	"github.com/jeton-dev/jeton/client"
)

// keptSpans is an in-memory exporter whose spans survive the tracer
// provider's shutdown (tracetest's forgets them), so a test can read what
// jetond flushed while stopping.
type keptSpans struct{ *tracetest.InMemoryExporter }

func (keptSpans) Shutdown(context.Context) error { return nil }

// Instrumentation scopes of the three kinds of span.
const (
	scopeGRPC  = "go.opentelemetry.io/contrib/instrumentation/google.golang.org/grpc/otelgrpc"
	scopeRedis = "github.com/redis/go-redis/extra/redisotel"
	scopeHTTP  = "go.opentelemetry.io/contrib/instrumentation/net/http/otelhttp"
)

// TestTracingSpansCarryNoValue runs jetond in this process, wired from a
// production config on a real Redis and a real Vault, with spans going to
// an in-memory exporter. Real Tokenize and Detokenize calls, good and bad,
// must leave spans for the RPCs and for the Redis and Vault calls made
// while serving them, and no span name, attribute, event, status or link
// may hold a test value, a token, a Redis key or the Vault token.
func TestTracingSpansCarryNoValue(t *testing.T) {
	e := newProdEnv(t)
	// The Vault client reads the standard variables itself.
	t.Setenv("VAULT_ADDR", e.vault.Addr)
	t.Setenv("VAULT_TOKEN", e.token)
	env := map[string]string{"VAULT_ADDR": e.vault.Addr, "VAULT_TOKEN": e.token}
	exp := tracetest.NewInMemoryExporter()
	ctx := testCtx(t)

	a, err := wireConfigSpans(ctx, e.cfgPath, func(k string) string { return env[k] }, io.Discard, keptSpans{exp})
	if err != nil {
		t.Fatalf("wiring jetond: %v", err)
	}
	a.srv.Start()
	running := true
	stop := func() {
		if running {
			running = false
			shutdown(a, 20*time.Second)
			a.close()
		}
	}
	t.Cleanup(stop)

	// The callers trace too, and send their trace context: the trusted
	// listener continues it, the public one starts its own.
	callerSpans := tracetest.NewInMemoryExporter()
	callerTP := sdktrace.NewTracerProvider(sdktrace.WithSyncer(callerSpans))
	t.Cleanup(func() { _ = callerTP.Shutdown(context.Background()) })
	traced := client.WithDialOptions(grpc.WithStatsHandler(otelgrpc.NewClientHandler(
		otelgrpc.WithTracerProvider(callerTP), otelgrpc.WithPropagators(propagation.TraceContext{}))))
	sponsor, ttp := e.sponsor(t, traced), e.ttp(t, traced)

	values := []client.Item{
		{Class: "email", Value: "trace-probe-q7x@example.test"},
		{Class: "name", Value: "Tracey Probewright"},
		{Class: "text", Value: "fake-note-tracing-zx81"},
	}
	res, err := sponsor.Tokenize(ctx, values)
	if err != nil {
		t.Fatalf("Tokenize: %v", err)
	}
	secrets := []string{e.token}
	var tokens []string
	for i, r := range res {
		if r.Err != nil {
			t.Fatalf("item %d: %v", i, r.Err)
		}
		tokens = append(tokens, r.Token)
		secrets = append(secrets, values[i].Value, r.Token, r.Token[strings.LastIndexByte(r.Token, '_')+1:])
	}
	revealed, err := ttp.Detokenize(ctx, tokens, "support", "case-trace-1")
	if err != nil {
		t.Fatalf("Detokenize: %v", err)
	}
	for i, r := range revealed {
		if r.Err != nil || r.Value != values[i].Value {
			t.Fatalf("reveal %d: wrong value or error %v", i, r.Err)
		}
	}
	// Bad inputs: an over-long value, a token that parses but does not
	// exist (another tenant's payload), garbage.
	long := "overlong-fake-" + strings.Repeat("w", 400) + "@example.test"
	absent := strings.Replace(tokens[0], "_demo_", "_demx_", 1)
	garbage := "tok_email_demo_notarealtokenGarbage42"
	secrets = append(secrets, long, absent, garbage)
	if _, err := sponsor.Tokenize(ctx, []client.Item{{Class: "email", Value: long}}); err != nil {
		t.Logf("over-long Tokenize refused: %v", status.Code(err))
	}
	if _, err := ttp.Detokenize(ctx, []string{absent, garbage}, "support", "case-trace-2"); err != nil {
		t.Logf("bad Detokenize refused: %v", status.Code(err))
	}
	// Redis keys are derived from tokens: none may be named in a span.
	keys, err := e.redis.Client(t).Keys(ctx, "*").Result()
	if err != nil || len(keys) == 0 {
		t.Fatalf("listing Redis keys: %d keys, %v", len(keys), err)
	}
	secrets = append(secrets, keys...)

	stop() // flushes the spans
	spans := exp.GetSpans()

	// Every span, whatever made it, is free of every secret.
	for _, s := range spans {
		for _, text := range spanTexts(s) {
			for _, x := range secrets {
				if x != "" && strings.Contains(text, x) {
					t.Errorf("span %q (%s) holds a value, token, key or credential", s.Name, s.InstrumentationScope.Name)
				}
			}
		}
	}

	tok := rpcSpan(t, spans, "jeton.v1.Tokenizer/Tokenize")
	detok := rpcSpan(t, spans, "jeton.v1.Detokenizer/Detokenize")
	for _, rpc := range []tracetest.SpanStub{tok, detok} {
		if n := countChildren(spans, rpc, scopeRedis); n == 0 {
			t.Errorf("%s: no Redis span in its trace", rpc.Name)
		}
	}
	if countScope(spans, scopeHTTP) == 0 {
		t.Error("no Vault span at all")
	}
	for _, s := range spans {
		if s.InstrumentationScope.Name == scopeGRPC && strings.HasPrefix(s.Name, "grpc.health") {
			t.Errorf("health check traced: %s", s.Name)
		}
		// Background work (readiness probes every 100ms here) starts no
		// trace: a backend span always has an RPC above it.
		if s.InstrumentationScope.Name != scopeGRPC && !s.Parent.IsValid() {
			t.Errorf("root span %q from %s: background calls must not start traces", s.Name, s.InstrumentationScope.Name)
		}
	}

	// Trace context: the trusted listener joins the caller's trace, the
	// public one starts a new trace linked to the sponsor's span.
	caller := map[string]trace.SpanContext{} // the first call of each
	for _, s := range callerSpans.GetSpans() {
		if _, ok := caller[s.Name]; !ok {
			caller[s.Name] = s.SpanContext
		}
	}
	if c := caller["jeton.v1.Detokenizer/Detokenize"]; detok.Parent.SpanID() != c.SpanID() || detok.SpanContext.TraceID() != c.TraceID() {
		t.Error("trusted listener: Detokenize span is not the caller's child")
	}
	c := caller["jeton.v1.Tokenizer/Tokenize"]
	if !c.IsValid() {
		t.Fatal("the sponsor's client made no span")
	}
	if tok.SpanContext.TraceID() == c.TraceID() || tok.Parent.IsValid() {
		t.Error("public listener: Tokenize joined the sponsor's trace")
	}
	if len(tok.Links) != 1 || tok.Links[0].SpanContext.SpanID() != c.SpanID() {
		t.Error("public listener: Tokenize span is not linked to the sponsor's span")
	}
}

// spanTexts returns every string a span carries: name, status, attribute
// keys and values of the span, its events, links and resource.
func spanTexts(s tracetest.SpanStub) []string {
	out := []string{s.Name, s.Status.Description}
	for _, kv := range s.Attributes {
		out = append(out, string(kv.Key), kv.Value.String())
	}
	for _, ev := range s.Events {
		out = append(out, ev.Name)
		for _, kv := range ev.Attributes {
			out = append(out, string(kv.Key), kv.Value.String())
		}
	}
	for _, l := range s.Links {
		for _, kv := range l.Attributes {
			out = append(out, string(kv.Key), kv.Value.String())
		}
	}
	if s.Resource != nil {
		for _, kv := range s.Resource.Attributes() {
			out = append(out, string(kv.Key), kv.Value.String())
		}
	}
	return out
}

func rpcSpan(t testing.TB, spans tracetest.SpanStubs, name string) tracetest.SpanStub {
	t.Helper()
	for _, s := range spans {
		if s.Name == name && s.InstrumentationScope.Name == scopeGRPC && s.SpanKind == trace.SpanKindServer {
			return s
		}
	}
	var names []string
	for _, s := range spans {
		names = append(names, s.Name)
	}
	t.Fatalf("no server span %s among %d spans: %s", name, len(spans), strings.Join(names, ", "))
	return tracetest.SpanStub{}
}

// countChildren counts the spans of scope in rpc's trace below it.
func countChildren(spans tracetest.SpanStubs, rpc tracetest.SpanStub, scope string) int {
	n := 0
	for _, s := range spans {
		if s.InstrumentationScope.Name == scope && s.SpanContext.TraceID() == rpc.SpanContext.TraceID() {
			n++
		}
	}
	return n
}

func countScope(spans tracetest.SpanStubs, scope string) int {
	n := 0
	for _, s := range spans {
		if s.InstrumentationScope.Name == scope {
			n++
		}
	}
	return n
}
