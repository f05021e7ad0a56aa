package main

import (
	"net/http"
	"os"
	"strings"
	"testing"

	"github.com/jeton-dev/jeton/client"
)

// TestMetricsScrape runs jetond --dev, makes tokenize, detokenize and mask
// calls, and scrapes /metrics on the metrics listener: every named series
// is there with the counts the calls imply, and no label value anywhere in
// the scrape is, or contains, a value or a token the test used.
func TestMetricsScrape(t *testing.T) {
	dir := t.TempDir()
	metricsAddr, public, trusted := freeAddr(t), freeAddr(t), freeAddr(t)
	p := startJetond(t, os.Environ(), metricsAddr, "--dev", "--dev-dir", dir,
		"--public-addr", public, "--trusted-addr", trusted, "--metrics-addr", metricsAddr)
	ca, sponsorCert, sponsorKey := dir+"/ca.pem", dir+"/sponsor.pem", dir+"/sponsor-key.pem"
	ttpCert, ttpKey := dir+"/ttp.pem", dir+"/ttp-key.pem"
	for _, f := range []string{ca, sponsorCert, sponsorKey, ttpCert, ttpKey} {
		if _, err := os.Stat(f); err != nil {
			t.Fatalf("dev bundle file: %v", err)
		}
	}
	sponsor := newClient(t, public, ca, sponsorCert, sponsorKey)
	ttp := newClient(t, trusted, ca, ttpCert, ttpKey)
	ctx := testCtx(t)

	values := []string{
		"metrics.person.one@example.test", "metrics.person.two@example.test", "metrics.person.three@example.test",
		"+33 6 00 00 00 01", "+33 6 00 00 00 02",
	}
	items := []client.Item{
		{Class: "email", Value: values[0]}, {Class: "email", Value: values[1]}, {Class: "email", Value: values[2]},
		{Class: "phone", Value: values[3]}, {Class: "phone", Value: values[4]},
	}
	res, err := sponsor.Tokenize(ctx, items)
	if err != nil {
		t.Fatal(err)
	}
	var tokens []string
	for i, r := range res {
		if r.Err != nil {
			t.Fatalf("item %d: %v", i, r.Err)
		}
		tokens = append(tokens, r.Token)
	}
	// Three emails revealed in full, two phones masked.
	if _, err := ttp.Detokenize(ctx, tokens[:3], "support", ""); err != nil {
		t.Fatal(err)
	}
	if _, err := ttp.Mask(ctx, tokens[3:], "support", ""); err != nil {
		t.Fatal(err)
	}

	x := scrape(t, p)
	tests := []struct {
		name    string
		labels  map[string]string
		want    float64 // exact, or at least when atLeast
		atLeast bool
	}{
		{"jeton_items_tokenized_total", map[string]string{"class": "email"}, 3, false},
		{"jeton_items_tokenized_total", map[string]string{"class": "phone"}, 2, false},
		{"jeton_items_tokenized_total", map[string]string{"class": "name"}, 0, false},
		{"jeton_items_revealed_total", map[string]string{"class": "email", "mode": "full"}, 3, false},
		{"jeton_items_revealed_total", map[string]string{"class": "email", "mode": "masked"}, 0, false},
		{"jeton_items_revealed_total", map[string]string{"class": "phone", "mode": "masked"}, 2, false},
		{"jeton_items_revealed_total", map[string]string{"class": "phone", "mode": "full"}, 0, false},
		{"jeton_audit_append_seconds", nil, 2, false},
		{"jeton_backend_errors_total", map[string]string{"backend": "redis"}, 0, false},
		{"jeton_backend_errors_total", map[string]string{"backend": "vault"}, 0, false},
		{"jeton_backend_errors_total", map[string]string{"backend": "audit"}, 0, false},
		{"jeton_dek_cache_total", map[string]string{"result": "miss"}, 1, true},
		{"jeton_dek_cache_total", map[string]string{"result": "hit"}, 1, true},
		{"grpc_server_handled_total", map[string]string{"grpc_method": "Tokenize", "grpc_code": "OK"}, 1, false},
		{"grpc_server_handled_total", map[string]string{"grpc_method": "Detokenize", "grpc_code": "OK"}, 1, false},
		{"grpc_server_handled_total", map[string]string{"grpc_method": "Mask", "grpc_code": "OK"}, 1, false},
		{"grpc_server_handling_seconds", map[string]string{"grpc_method": "Tokenize"}, 1, false},
	}
	for _, tt := range tests {
		got := x.value(tt.name, tt.labels)
		if tt.atLeast && got < tt.want || !tt.atLeast && got != tt.want {
			t.Errorf("%s%v = %v, want %v (at least: %t)", tt.name, tt.labels, got, tt.want, tt.atLeast)
		}
	}

	// No personal value and no token in any label value. Tokens are also
	// checked by their random tail, in case a label held a fragment.
	needles := append([]string(nil), values...)
	for _, tok := range tokens {
		needles = append(needles, tok, tok[strings.LastIndex(tok, "_")+1:])
	}
	labels := x.labelValues()
	if len(labels) == 0 {
		t.Fatal("the scrape has no labels: the check below checks nothing")
	}
	for _, l := range labels {
		for _, n := range needles {
			if strings.Contains(l, n) {
				t.Errorf("a label value contains a test value or token (%d bytes)", len(n))
			}
		}
	}

	for _, path := range []string{"/healthz", "/readyz"} {
		if code, body, err := p.get(path); err != nil || code != http.StatusOK {
			t.Errorf("GET %s: %d %q %v, want 200", path, code, body, err)
		}
	}
}
