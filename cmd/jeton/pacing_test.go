package main

import (
	"context"
	"io"
	"log/slog"
	"net/netip"
	"strings"
	"testing"
	"time"

	"github.com/prometheus/client_golang/prometheus"

	"github.com/jeton-dev/jeton/server"
	"github.com/jeton-dev/jeton/server/devpki"
	"github.com/jeton-dev/jeton/tokenizer"
	"github.com/jeton-dev/jeton/tokenizer/localkeys"
	"github.com/jeton-dev/jeton/tokenizer/memstore"
)

// pacingPolicy lets the sponsor tokenize 5 deterministic values at once,
// 10 a second, and the reader look up 5 tokens at once, 10 a second.
const pacingPolicy = `
identities:
  - {id: "spiffe://jeton.dev/sponsor/demo", tenants: [demo], roles: [sponsor]}
  - {id: "spiffe://jeton.dev/ttp/demo", tenants: [demo], roles: [reader]}
roles:
  sponsor:
    tokenize: ["*"]
    budget: {rate: 10, burst: 5, distinct: 1000}
  reader:
    reveal: {"*": full}
    purposes: [support]
    budget: {rate: 10, burst: 5, distinct: 1000}
purposes:
  - {code: support, description: answering a data subject's request, classes: ["*"]}
`

// TestCommandsPacedByRetryInfo: tokenize and detokenize run back to back
// past their identity's rate, and every run succeeds: each refusal's
// RetryInfo delay is waited out by the client before it tries again.
func TestCommandsPacedByRetryInfo(t *testing.T) {
	b, err := devpki.Generate(t.TempDir())
	if err != nil {
		t.Fatal(err)
	}
	km, err := localkeys.New(true)
	if err != nil {
		t.Fatal(err)
	}
	classes := append(tokenizer.DefaultClasses(), tokenizer.Class{Name: "member-id", Kind: tokenizer.KindDeterministic, Mask: "last3", MaxLen: 32})
	tz, err := tokenizer.New(tokenizer.Config{Classes: classes, Keys: km, Store: memstore.New()})
	if err != nil {
		t.Fatal(err)
	}
	var names []string
	for _, c := range tz.Classes() {
		names = append(names, c.Name)
	}
	pol, err := server.ParsePolicy([]byte(pacingPolicy), names)
	if err != nil {
		t.Fatal(err)
	}
	pub, err := server.LoadTLS(server.TLSFiles{Cert: b.ServerCert, Key: b.ServerKey, ClientCA: b.SponsorCA})
	if err != nil {
		t.Fatal(err)
	}
	tru, err := server.LoadTLS(server.TLSFiles{Cert: b.ServerCert, Key: b.ServerKey, ClientCA: b.TTPCA})
	if err != nil {
		t.Fatal(err)
	}
	reg := prometheus.NewRegistry()
	srv, err := server.New(server.Config{
		Tokenizer: tz, Policy: pol, Audit: nopAudit{}, Registry: reg,
		Logger:  slog.New(slog.NewTextHandler(io.Discard, nil)),
		Public:  server.Listener{Addr: "127.0.0.1:0", TLS: pub},
		Trusted: server.Listener{Addr: "127.0.0.1:0", TLS: tru, Allowed: []netip.Prefix{netip.MustParsePrefix("127.0.0.0/8")}},
	})
	if err != nil {
		t.Fatal(err)
	}
	srv.Start()
	t.Cleanup(func() {
		ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
		defer cancel()
		srv.Stop(ctx)
	})
	sponsor := environFor(srv.PublicAddr().String(), tlsFiles{b.ServerCA, b.SponsorCert, b.SponsorKey})
	reader := environFor(srv.TrustedAddr().String(), tlsFiles{b.ServerCA, b.TTPCert, b.TTPKey})

	var tokens []string
	for run := range 3 {
		values := []string{"M-" + string(rune('A'+run)) + "1", "M-" + string(rune('A'+run)) + "2", "M-" + string(rune('A'+run)) + "3", "M-" + string(rune('A'+run)) + "4"}
		got := jeton(t, sponsor, "", append([]string{"tokenize", "--class", "member-id"}, values...)...)
		if got.code != exitOK {
			t.Fatalf("tokenize run %d: exit %d, stderr %q; want the refusal waited out", run, got.code, got.stderr)
		}
		tokens = append(tokens, strings.Fields(got.stdout)...)
	}
	for run := range 3 {
		got := jeton(t, reader, "", append([]string{"detokenize", "--purpose", "support"}, tokens[run*4:run*4+4]...)...)
		if got.code != exitOK || len(strings.Fields(got.stdout)) != 4 {
			t.Fatalf("detokenize run %d: exit %d, stderr %q; want the refusal waited out", run, got.code, got.stderr)
		}
	}
	// The runs went past the rate: refusals happened, and were waited out.
	refused := map[string]float64{}
	mfs, err := reg.Gather()
	if err != nil {
		t.Fatal(err)
	}
	for _, mf := range mfs {
		if mf.GetName() != "jeton_budget_refusals_total" {
			continue
		}
		for _, m := range mf.GetMetric() {
			for _, l := range m.GetLabel() {
				if l.GetName() == "op" {
					refused[l.GetValue()] += m.GetCounter().GetValue()
				}
			}
		}
	}
	if refused["tokenize"] < 1 || refused["reveal"] < 1 {
		t.Fatalf("rate refusals: %v; want some for tokenize and reveal, or the test paced nothing", refused)
	}
}
