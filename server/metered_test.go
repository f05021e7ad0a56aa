package server_test

import (
	"context"
	"errors"
	"testing"

	"github.com/prometheus/client_golang/prometheus"

	"github.com/jeton-dev/jeton/server"
	"github.com/jeton-dev/jeton/tokenizer"
	"github.com/jeton-dev/jeton/tokenizer/localkeys"
	"github.com/jeton-dev/jeton/tokenizer/memstore"
)

type downStore struct{ tokenizer.Store }

func (downStore) Get(context.Context, []string) ([][]byte, error) { return nil, errors.New("down") }

type retiredKeys struct{ tokenizer.KeyManager }

func (retiredKeys) Unwrap(_ context.Context, _ string, wrapped, _ []byte) ([]byte, error) {
	if string(wrapped) == "edited" {
		return nil, tokenizer.ErrKeyMismatch
	}
	return nil, tokenizer.ErrKeyDestroyed
}

func (retiredKeys) Wrap(context.Context, string, []byte, []byte) ([]byte, error) {
	return nil, errors.New("down")
}

// Backend failures on the request path are counted per backend; an
// abandoned call and a retired key are not failures.
func TestMeteredBackends(t *testing.T) {
	reg := prometheus.NewRegistry()
	m, err := server.NewMetrics(reg)
	if err != nil {
		t.Fatal(err)
	}
	count := func(backend string) float64 {
		mfs, err := reg.Gather()
		if err != nil {
			t.Fatal(err)
		}
		for _, mf := range mfs {
			if mf.GetName() != "jeton_backend_errors_total" {
				continue
			}
			for _, mm := range mf.GetMetric() {
				for _, l := range mm.GetLabel() {
					if l.GetName() == "backend" && l.GetValue() == backend {
						return mm.GetCounter().GetValue()
					}
				}
			}
		}
		return -1
	}
	store := m.MeterStore(downStore{memstore.New()})
	ctx := context.Background()
	if _, err := store.Get(ctx, []string{"k"}); err == nil {
		t.Fatal("the failing store did not fail")
	}
	if got := count(server.BackendRedis); got != 1 {
		t.Fatalf("redis errors = %v, want 1", got)
	}
	canceled, cancel := context.WithCancel(ctx)
	cancel()
	_, _ = store.Get(canceled, []string{"k"})
	if got := count(server.BackendRedis); got != 1 {
		t.Fatalf("an abandoned call counted: %v", got)
	}
	lk, err := localkeys.New(true)
	if err != nil {
		t.Fatal(err)
	}
	keys := m.MeterKeys(retiredKeys{lk})
	if _, err := keys.Unwrap(ctx, "", []byte("x"), nil); !errors.Is(err, tokenizer.ErrKeyDestroyed) {
		t.Fatal(err)
	}
	if _, err := keys.Unwrap(ctx, "", []byte("edited"), nil); !errors.Is(err, tokenizer.ErrKeyMismatch) {
		t.Fatal(err)
	}
	if _, err := keys.Wrap(ctx, "", make([]byte, 32), nil); err == nil {
		t.Fatal("the failing key manager did not fail")
	}
	if got := count(server.BackendVault); got != 1 {
		t.Fatalf("vault errors = %v, want 1 (the failed wrap, not the retired or edited key)", got)
	}
}
