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

	jetonv1 "github.com/jeton-dev/jeton/proto/jeton/v1"
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

// TestAuditDownLeavesPublicServing: the audit log is the trusted
// listener's dependency alone. While it fails, the trusted listener's
// health is NOT_SERVING and reveals fail closed, and the public listener
// stays SERVING and tokenizes: a full audit disk must not stop Tokenize,
// which writes no audit record. Redis takes both down.
func TestAuditDownLeavesPublicServing(t *testing.T) {
	var auditCheck, redis switchable
	reg := prometheus.NewRegistry()
	e := startEnv(t, envOpts{registry: reg, checkInterval: 10 * time.Millisecond, checks: []server.Check{
		{Name: server.BackendRedis, Probe: redis.probe},
		{Name: server.BackendAudit, Probe: auditCheck.probe, Listener: server.ListenerTrusted},
	}})
	trusted := healthpb.NewHealthClient(e.ttpConn(t))
	public := healthpb.NewHealthClient(e.sponsorConn(t))
	health := func(h healthpb.HealthClient, service string) healthpb.HealthCheckResponse_ServingStatus {
		r, err := h.Check(ctx(t), &healthpb.HealthCheckRequest{Service: service})
		if err != nil {
			t.Fatal(err)
		}
		return r.GetStatus()
	}
	ready := func(l string) float64 {
		return series(t, reg, "jeton_listener_ready", map[string]string{"listener": l})
	}
	eventually(t, "both listeners ready", func() bool { return ready("public") == 1 && ready("trusted") == 1 })

	auditCheck.down.Store(true)
	eventually(t, "the trusted listener NOT_SERVING", func() bool {
		return health(trusted, "") == healthpb.HealthCheckResponse_NOT_SERVING
	})
	if st := health(trusted, "jeton.v1.Detokenizer"); st != healthpb.HealthCheckResponse_NOT_SERVING {
		t.Fatalf("Detokenizer health with the audit log down: %v", st)
	}
	if st, st2 := health(public, ""), health(public, "jeton.v1.Tokenizer"); st != healthpb.HealthCheckResponse_SERVING || st2 != healthpb.HealthCheckResponse_SERVING {
		t.Fatalf("public health with the audit log down: %v, Tokenizer %v; want SERVING", st, st2)
	}
	if ok, why := e.srv.ListenerReady(server.ListenerPublic); !ok {
		t.Fatalf("public listener not ready with the audit log down: %v", why)
	}
	if ok, why := e.srv.ListenerReady(server.ListenerTrusted); ok || !slices.Equal(why, []string{"audit"}) {
		t.Fatalf("trusted listener ready=%v (%v) with the audit log down; want not ready because of audit", ok, why)
	}
	if ok, why := e.srv.Ready(); ok || !slices.Equal(why, []string{"audit"}) {
		t.Fatalf("Ready() = %v %v; want not ready, naming audit", ok, why)
	}
	if ready("public") != 1 || ready("trusted") != 0 {
		t.Fatalf("jeton_listener_ready public=%v trusted=%v; want 1 and 0", ready("public"), ready("trusted"))
	}
	tokenize(t, e.sponsorConn(t), &jetonv1.TokenizeItem{FieldClass: "name", Value: useValue("Audit Down Testperson")})

	// Redis is both listeners' dependency.
	redis.down.Store(true)
	eventually(t, "public NOT_SERVING with Redis down", func() bool {
		return health(public, "") == healthpb.HealthCheckResponse_NOT_SERVING
	})
	if ok, why := e.srv.ListenerReady(server.ListenerTrusted); ok || !slices.Equal(why, []string{"redis", "audit"}) {
		t.Fatalf("trusted listener ready=%v (%v); want not ready because of redis and audit", ok, why)
	}
	redis.down.Store(false)
	auditCheck.down.Store(false)
	eventually(t, "both SERVING again", func() bool {
		return health(public, "") == healthpb.HealthCheckResponse_SERVING && health(trusted, "") == healthpb.HealthCheckResponse_SERVING
	})
}
