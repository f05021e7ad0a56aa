package client_test

import (
	"context"
	"testing"

	"google.golang.org/grpc"

	"github.com/jeton-dev/jeton/client"
	jetonv1 "github.com/jeton-dev/jeton/proto/jeton/v1"
)

// TestTenantIsSent: WithTenant and InTenant put the tenant on every
// Detokenize, Mask and EraseTokens request, and InTenant leaves the client
// it came from unlimited.
func TestTenantIsSent(t *testing.T) {
	s := newStub()
	p := newTestPKI(t)
	a := &adminStub{fail: map[string]bool{}, calls: map[string]int{}}
	addr, stop, err := s.serve(p.serverTLS(), s.tokenizer, s.detokenizer, func(r grpc.ServiceRegistrar) { jetonv1.RegisterAdminServer(r, a) })
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(stop)
	plain := newClient(t, addr, p)
	limited := newClient(t, addr, p, client.WithTenant("acme"))
	ctx := context.Background()
	toks := []string{"tk-1"}

	steps := []struct {
		name, method, want string
		call               func() error
	}{
		{"plain Detokenize", "Detokenize", "", func() error { _, err := plain.Detokenize(ctx, toks, "vetting", ""); return err }},
		{"WithTenant Detokenize", "Detokenize", "acme", func() error { _, err := limited.Detokenize(ctx, toks, "vetting", ""); return err }},
		{"WithTenant Mask", "Mask", "acme", func() error { _, err := limited.Mask(ctx, toks, "vetting", ""); return err }},
		{"WithTenant EraseTokens", "EraseTokens", "acme", func() error { _, err := limited.EraseTokens(ctx, toks, "ticket-1"); return err }},
		{"InTenant Detokenize", "Detokenize", "other", func() error {
			_, err := plain.Revealer.InTenant("other").Detokenize(ctx, toks, "vetting", "")
			return err
		}},
		{"InTenant EraseTokens", "EraseTokens", "other", func() error {
			_, err := plain.Custodian.InTenant("other").EraseTokens(ctx, toks, "ticket-1")
			return err
		}},
		{"plain after InTenant", "Detokenize", "", func() error { _, err := plain.Detokenize(ctx, toks, "vetting", ""); return err }},
		{"plain EraseTokens after InTenant", "EraseTokens", "", func() error { _, err := plain.EraseTokens(ctx, toks, "ticket-1"); return err }},
	}
	for _, st := range steps {
		if err := st.call(); err != nil {
			t.Fatalf("%s: %v", st.name, err)
		}
		calls := s.recorded(st.method)
		got := calls[len(calls)-1].req.(interface{ GetTenant() string }).GetTenant()
		if got != st.want {
			t.Errorf("%s sent tenant %q, want %q", st.name, got, st.want)
		}
	}
}
