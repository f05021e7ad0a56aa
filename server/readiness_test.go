package server_test

import (
	"context"
	"errors"
	"slices"
	"sync/atomic"
	"testing"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	healthpb "google.golang.org/grpc/health/grpc_health_v1"

	"github.com/jeton-dev/jeton/server"
)

// switchable is a readiness probe a test turns off and on.
type switchable struct{ down atomic.Bool }

func (s *switchable) probe(context.Context) error {
	if s.down.Load() {
		return errors.New("down for the test")
	}
	return nil
}

// TestVaultDownKeepsReadiness: a dependency the replica can serve without
// (Vault, while tenants' keys are loaded) shows as degraded and as its own
// metric, and leaves readiness and health up; once nothing is loaded it
// takes readiness down; a dependency nothing is served without (Redis)
// always does.
func TestVaultDownKeepsReadiness(t *testing.T) {
	var vault, redis switchable
	var loaded atomic.Bool
	loaded.Store(true)
	reg := prometheus.NewRegistry()
	e := startEnv(t, envOpts{registry: reg, checkInterval: 10 * time.Millisecond, checks: []server.Check{
		{Name: server.BackendRedis, Probe: redis.probe},
		{Name: server.BackendVault, Probe: vault.probe, ServesWithout: loaded.Load},
	}})
	hc := healthpb.NewHealthClient(e.ttpConn(t))
	public := healthpb.NewHealthClient(e.sponsorConn(t))
	health := func(h healthpb.HealthClient) healthpb.HealthCheckResponse_ServingStatus {
		r, err := h.Check(ctx(t), &healthpb.HealthCheckRequest{})
		if err != nil {
			t.Fatal(err)
		}
		return r.GetStatus()
	}
	vaultUp := func() float64 {
		mfs, err := reg.Gather()
		if err != nil {
			t.Fatal(err)
		}
		for _, mf := range mfs {
			if mf.GetName() != "jeton_dependency_up" {
				continue
			}
			for _, m := range mf.GetMetric() {
				if m.GetLabel()[0].GetValue() == "vault" {
					return m.GetGauge().GetValue()
				}
			}
		}
		return -1
	}
	// waitFor polls for a state the prober reaches within a few intervals.
	waitFor := func(what string, cond func() bool) {
		t.Helper()
		for deadline := time.Now().Add(30 * time.Second); !cond(); time.Sleep(5 * time.Millisecond) {
			if time.Now().After(deadline) {
				t.Fatalf("never reached: %s", what)
			}
		}
	}
	waitFor("vault up in the metric", func() bool { return vaultUp() == 1 })

	vault.down.Store(true)
	waitFor("vault degraded", func() bool { return slices.Equal(e.srv.Degraded(), []string{"vault"}) })
	if ok, why := e.srv.Ready(); !ok {
		t.Fatalf("Vault down with tenants loaded: not ready (%v); want ready", why)
	}
	if vaultUp() != 0 {
		t.Fatal("jeton_dependency_up{dependency=vault} is not 0 with Vault down")
	}
	if health(hc) != healthpb.HealthCheckResponse_SERVING || health(public) != healthpb.HealthCheckResponse_SERVING {
		t.Fatal("Vault down with tenants loaded took health down")
	}

	// Nothing loaded: nothing can be served without Vault.
	loaded.Store(false)
	waitFor("not ready with nothing loaded", func() bool { ok, _ := e.srv.Ready(); return !ok })
	if _, why := e.srv.Ready(); !slices.Equal(why, []string{"vault"}) {
		t.Fatalf("not ready because %v, want vault", why)
	}
	waitFor("health NOT_SERVING", func() bool { return health(hc) == healthpb.HealthCheckResponse_NOT_SERVING })

	loaded.Store(true)
	vault.down.Store(false)
	waitFor("ready again", func() bool { ok, _ := e.srv.Ready(); return ok && len(e.srv.Degraded()) == 0 })

	// Redis down: not ready, whatever is loaded.
	redis.down.Store(true)
	waitFor("not ready with Redis down", func() bool { ok, _ := e.srv.Ready(); return !ok })
	waitFor("public health NOT_SERVING", func() bool { return health(public) == healthpb.HealthCheckResponse_NOT_SERVING })
	redis.down.Store(false)
	waitFor("ready after Redis", func() bool { ok, _ := e.srv.Ready(); return ok })
}
