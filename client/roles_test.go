package client_test

import (
	"context"
	"crypto/tls"
	"errors"
	"reflect"
	"slices"
	"strings"
	"sync/atomic"
	"testing"
	"time"

	"go.opentelemetry.io/contrib/instrumentation/google.golang.org/grpc/otelgrpc"
	sdktrace "go.opentelemetry.io/otel/sdk/trace"
	"go.opentelemetry.io/otel/sdk/trace/tracetest"
	"google.golang.org/grpc"
	"google.golang.org/grpc/resolver"
	"google.golang.org/grpc/resolver/manual"

	"github.com/jeton-dev/jeton/client"
	"github.com/jeton-dev/jeton/tokenizer"
)

// Each role type has only its own calls.
func TestRoleTypesHaveOnlyTheirCalls(t *testing.T) {
	reveal := []string{"Detokenize", "DetokenizeValue", "Mask", "DetokenizeStruct", "DetokenizeStructs"}
	admin := []string{"EraseTokens", "EraseSubject", "PurgeTenant", "RotateGeneration", "DestroyGeneration", "Rewrap", "Stats", "ReinstateIdentity", "MintCanary"}
	tokenize := []string{"Tokenize", "TokenizeKeyed", "TokenizeValue", "TokenizeStruct", "TokenizeStructs"}
	tests := []struct {
		typ           reflect.Type
		want, notWant []string
	}{
		{reflect.TypeFor[*client.Sponsor](), tokenize, slices.Concat(reveal, admin)},
		{reflect.TypeFor[*client.Revealer](), reveal, slices.Concat(tokenize, admin)},
		{reflect.TypeFor[*client.Custodian](), admin, slices.Concat(tokenize, reveal)},
	}
	for _, tt := range tests {
		for _, m := range tt.want {
			if _, ok := tt.typ.MethodByName(m); !ok {
				t.Errorf("%v lacks %s", tt.typ, m)
			}
		}
		for _, m := range tt.notWant {
			if _, ok := tt.typ.MethodByName(m); ok {
				t.Errorf("%v has %s", tt.typ, m)
			}
		}
		for _, m := range []string{"Ping", "Close"} {
			if _, ok := tt.typ.MethodByName(m); !ok {
				t.Errorf("%v lacks %s", tt.typ, m)
			}
		}
	}
}

func TestClassConstantsMatchTheDefaults(t *testing.T) {
	var want []string
	for _, c := range tokenizer.DefaultClasses() {
		want = append(want, c.Name)
	}
	got := []string{client.ClassEmail, client.ClassPhone, client.ClassName, client.ClassPassport, client.ClassBirthdate, client.ClassAddress, client.ClassText}
	slices.Sort(want)
	slices.Sort(got)
	if !slices.Equal(got, want) {
		t.Errorf("class constants %v, server defaults %v", got, want)
	}
}

// The case: a sponsor certificate on the trusted listener. The
// call fails at once with "certificate not accepted", not a retried
// UNAVAILABLE ("broken pipe").
func TestCertificateNotAccepted(t *testing.T) {
	env, stop := startExampleServer()
	defer stop()
	var attempts atomic.Int64
	c, err := client.NewRevealer(env.trustedAddr, client.WithTLSFiles(env.caFile, env.sponsorCert, env.sponsorKey),
		client.WithRetry(3, time.Millisecond), countCalls(&attempts))
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close()
	_, err = c.Detokenize(context.Background(), []string{"tok_email_demo_x"}, "vetting", "case-1")
	if !errors.Is(err, client.ErrCertificateNotAccepted) || !errors.Is(err, client.ErrUnauthenticated) || errors.Is(err, client.ErrUnavailable) {
		t.Fatalf("err = %v, want ErrCertificateNotAccepted (and ErrUnauthenticated, not ErrUnavailable)", err)
	}
	if !strings.Contains(err.Error(), "certificate not accepted") {
		t.Errorf("message %q does not say the certificate was not accepted", err)
	}
	if n := attempts.Load(); n != 1 {
		t.Errorf("%d attempts, want 1: a refused certificate is not retried", n)
	}

	// The right certificate on the same listener works, and the check does
	// not get in its way.
	ok, err := client.NewRevealer(env.trustedAddr, client.WithTLSFiles(env.caFile, env.ttpCert, env.ttpKey))
	if err != nil {
		t.Fatal(err)
	}
	defer ok.Close()
	res, err := ok.Detokenize(context.Background(), []string{"tok_email_demo_x"}, "vetting", "case-1")
	if err != nil || len(res) != 1 {
		t.Fatalf("TTP certificate: %v", err)
	}
}

// When a chunk fails, the results of the chunks before it come back with
// the error: they were stored (or revealed) and must not be thrown away.
func TestFailedChunkKeepsEarlierResults(t *testing.T) {
	p := newTestPKI(t)
	s := newStub()
	s.before = func(_ context.Context, _ string, n int) error {
		if n == 3 || n == 7 { // the third chunk of each call
			return errUnavailable
		}
		return nil
	}
	c := newClient(t, startStub(t, s, p), p, client.WithBatchSize(2))
	items := make([]client.Item, 5)
	for i := range items {
		items[i] = client.Item{Class: "email", Value: "guest" + string(rune('a'+i)) + "@example.org"}
	}
	got, err := c.Tokenize(context.Background(), items)
	if !errors.Is(err, client.ErrUnavailable) || len(got) != 4 {
		t.Fatalf("Tokenize = %d results, %v; want the 4 of the first two chunks and ErrUnavailable", len(got), err)
	}
	tokens := make([]string, 0, 5)
	for i, r := range got {
		if v, ok := s.lookup(r.Token); !ok || v.value != items[i].Value {
			t.Errorf("result %d does not hold the token of item %d", i, i)
		}
		tokens = append(tokens, r.Token)
	}
	tokens = append(tokens, "tk-9")
	// Calls 4, 5, 6 and 7 are the reveal's chunks and the failure.
	s.before = func(_ context.Context, _ string, n int) error {
		if n == 6 {
			return errUnavailable
		}
		return nil
	}
	revealed, err := c.Detokenize(context.Background(), tokens, "vetting", "")
	if !errors.Is(err, client.ErrUnavailable) || len(revealed) != 4 || revealed[3].Value != items[3].Value {
		t.Fatalf("Detokenize = %d results, %v; want the 4 of the first two chunks and ErrUnavailable", len(revealed), err)
	}
}

// A target resolving to several replicas spreads calls over all of them.
func TestRoundRobinAcrossReplicas(t *testing.T) {
	p := newTestPKI(t)
	a, b := newStub(), newStub()
	r := manual.NewBuilderWithScheme("jetontest")
	r.InitialState(resolver.State{Addresses: []resolver.Address{{Addr: startStub(t, a, p)}, {Addr: startStub(t, b, p)}}})
	files := p.clients["app"]
	cert, err := tls.LoadX509KeyPair(files[0], files[1])
	if err != nil {
		t.Fatal(err)
	}
	cfg := &tls.Config{RootCAs: p.pool, Certificates: []tls.Certificate{cert}, ServerName: "127.0.0.1"}
	c, err := client.NewSponsor("jetontest:///jeton", client.WithTLSConfig(cfg), client.WithDialOptions(grpc.WithResolvers(r)))
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close()
	call := func() {
		t.Helper()
		if _, err := c.TokenizeValue(context.Background(), "email", "anne@example.org"); err != nil {
			t.Fatal(err)
		}
	}
	// The balancer picks among the replicas it is connected to, and the
	// second connection may come up a little after the first: call until
	// both have served (bounded), then check that calls alternate.
	for i := 0; len(a.recorded("Tokenize")) == 0 || len(b.recorded("Tokenize")) == 0; i++ {
		if i == 1000 {
			t.Fatalf("after %d calls the replicas served %d and %d; want both used", i,
				len(a.recorded("Tokenize")), len(b.recorded("Tokenize")))
		}
		call()
		time.Sleep(5 * time.Millisecond)
	}
	na, nb := len(a.recorded("Tokenize")), len(b.recorded("Tokenize"))
	for range 20 {
		call()
	}
	da, db := len(a.recorded("Tokenize"))-na, len(b.recorded("Tokenize"))-nb
	if da != 10 || db != 10 {
		t.Errorf("with both replicas connected, 20 calls went %d and %d; want round robin, 10 each", da, db)
	}
}

func TestOpenTelemetry(t *testing.T) {
	p := newTestPKI(t)
	s := newStub()
	rec := tracetest.NewSpanRecorder()
	tp := sdktrace.NewTracerProvider(sdktrace.WithSpanProcessor(rec))
	defer tp.Shutdown(context.Background())
	c := newClient(t, startStub(t, s, p), p, client.WithOpenTelemetry(otelgrpc.WithTracerProvider(tp)))
	if _, err := c.TokenizeValue(context.Background(), "email", "anne@example.org"); err != nil {
		t.Fatal(err)
	}
	spans := rec.Ended()
	if len(spans) != 1 || spans[0].Name() != "jeton.v1.Tokenizer/Tokenize" {
		t.Fatalf("spans = %v, want one for Tokenize", spans)
	}
	for _, a := range spans[0].Attributes() {
		if strings.Contains(a.Value.String(), "anne") {
			t.Errorf("span attribute %s holds the value", a.Key)
		}
	}
	for _, e := range spans[0].Events() {
		for _, a := range e.Attributes {
			if strings.Contains(a.Value.String(), "anne") {
				t.Errorf("span event attribute %s holds the value", a.Key)
			}
		}
	}
}
