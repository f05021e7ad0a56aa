package integration_test

import (
	"context"
	"errors"
	"fmt"
	"net/http"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/jeton-dev/jeton/client"
	"github.com/jeton-dev/jeton/integration/testenv"
	"github.com/jeton-dev/jeton/tokenizer/vaultkeys"
)

// TestVaultHALeaderLoss: Vault HA on raft, three nodes, jetond pointed at a
// standby (which forwards to the active node, as a load balancer in front
// of the cluster would reach one). The active node is killed (SIGKILL)
// while Tokenize and Detokenize run on tenants whose keys jetond holds;
// the second standby is paused (SIGSTOP) at the same time, so that no
// quorum is left and the cluster has no leader for as long as the test
// needs, rather than for however long a fast election takes.
//
// While there is no leader: calls on cached keys keep working (not one
// fails); operations that need Vault (a new tenant's first key, a new
// generation, a rewrap, a reveal needing an unwrap) fail with UNAVAILABLE
// and no value, within their deadline. Readiness stays up (degraded:
// vault), since the replica serves its loaded tenants, and the audit
// checkpoints due meanwhile fail (jeton_audit_anchor_failing) without
// failing the reveals they cover. Once the paused node is back, a leader
// is elected and all of them work, in the same jetond process, and a
// checkpoint covers every record written during the outage.
func TestVaultHALeaderLoss(t *testing.T) {
	vc := testenv.StartVaultCluster(t, 3)
	active := vc.Active()
	if active == nil {
		t.Fatal("no active Vault node")
	}
	root := active.Client(t)
	ctx := context.Background()
	setup, err := vaultkeys.Setup(ctx, root, vaultkeys.SetupConfig{})
	if err != nil {
		t.Fatalf("vaultkeys.Setup: %v", err)
	}
	v := &vaultEnv{Vault: active, Root: root, Setup: setup}
	standbys := vc.Standbys()
	if len(standbys) != 2 {
		t.Fatalf("%d standbys; want 2", len(standbys))
	}
	via, paused := standbys[0], standbys[1]
	r := testenv.StartRedis(t)
	h := startJetond(t, jetondOpts{RedisAddrs: []string{r.Addr}, Vault: v, VaultAddr: via.Addr,
		Token: v.token(t, vaultkeys.PolicyJetond), Tenants: []string{"acme", "cold", "new"},
		CheckpointEvery: 300 * time.Millisecond, HealthInterval: 200 * time.Millisecond})

	warm := items(t, 0, 70)
	tokenize(t, h, "acme", warm)
	cold := items(t, 100, 7)
	tokenize(t, h, "cold", cold)
	h.Restart(t) // empties the key cache: cold needs an unwrap from now on
	detokenizeAll(t, h, warm)
	pid := h.Pid()
	custodian := h.newClient(t, h.TrustedAddr, h.pki.CustodianCert, h.pki.CustodianKey)

	// Load on cached keys, from before the kill until after the recovery.
	var (
		mu        sync.Mutex
		loadCalls int
		loadErr   error
	)
	loadCtx, stopLoad := context.WithCancel(ctx)
	var wg sync.WaitGroup
	wg.Go(func() {
		for n := 10_000; loadCtx.Err() == nil; n += 10 {
			its := items(t, n, 10)
			err := tryTokenize(t, h, "acme", its)
			if err == nil {
				err = tryDetokenize(t, h, append(its, warm[n%len(warm)]))
			}
			mu.Lock()
			loadCalls++
			if err != nil && loadErr == nil {
				loadErr = err
			}
			mu.Unlock()
		}
	})
	t.Cleanup(func() { stopLoad(); wg.Wait() })

	time.Sleep(500 * time.Millisecond)
	active.Kill()
	paused.Pause()
	defer paused.Resume()
	killedAt := time.Now()

	// needVault are the operations that cannot work without a leader.
	// The audit checkpoints anchored in Vault are checked apart, below.
	needVault := []struct {
		name string
		do   func(ctx context.Context) error
	}{
		{"Tokenize for a new tenant", func(ctx context.Context) error {
			fresh := items(t, 500, 2)
			_, err := h.Sponsor(t, "new").Tokenize(ctx, []client.Item{{Class: fresh[0].Class, Value: fresh[0].Value}})
			return err
		}},
		{"Detokenize needing an unwrap", func(ctx context.Context) error {
			res, err := h.TTP(t).Detokenize(ctx, []string{cold[0].Token}, purpose, caseRef)
			if err != nil && res != nil {
				t.Fatal("results came back with a failed reveal")
			}
			if err == nil && res[0].Value != cold[0].Value {
				return errors.New("the reveal did not give the value back")
			}
			return err
		}},
		{"RotateGeneration", func(ctx context.Context) error {
			_, err := custodian.RotateGeneration(ctx, "acme")
			return err
		}},
		{"Rewrap", func(ctx context.Context) error {
			_, _, err := custodian.Rewrap(ctx, nil)
			return err
		}},
	}
	for _, op := range needVault {
		callCtx, cancel := context.WithTimeout(ctx, 30*time.Second)
		start := time.Now()
		err := op.do(callCtx)
		cancel()
		if !errors.Is(err, client.ErrUnavailable) {
			t.Errorf("%s with no Vault leader: %v after %s; want UNAVAILABLE", op.name, err, time.Since(start).Round(time.Millisecond))
			continue
		}
		t.Logf("%s with no Vault leader: UNAVAILABLE after %s", op.name, time.Since(start).Round(time.Millisecond))
	}
	eventually(t, "a checkpoint failing with no Vault leader", func() error {
		if metric(t, h, "jeton_audit_anchor_failing") != 1 {
			return errors.New("jeton_audit_anchor_failing is not 1")
		}
		return nil
	})
	// Readiness with no leader: up, and saying Vault is down. Asked a few
	// times over several probe intervals, so a probe that took the replica
	// out would be seen.
	body := waitReadiness(t, h, http.StatusOK)
	if !strings.Contains(body, "degraded: vault") {
		t.Errorf("/readyz with no Vault leader: %q; want it to say Vault is down", body)
	}
	for range 5 {
		time.Sleep(200 * time.Millisecond)
		if code, body := readiness(h); code != http.StatusOK {
			t.Errorf("/readyz with no Vault leader: %d %q; want 200 (loaded tenants are served)", code, body)
		}
	}

	paused.Resume()
	vc.WaitActive(t, active)
	t.Logf("a new active Vault node %s after the kill", time.Since(killedAt).Round(time.Millisecond))
	for _, op := range needVault {
		eventually(t, op.name+" once a standby took over", func() error { return op.do(ctx) })
	}
	detokenizeAll(t, h, cold)
	t.Logf("everything that needs Vault works again %s after the kill", time.Since(killedAt).Round(time.Millisecond))

	stopLoad()
	wg.Wait()
	eventually(t, "a checkpoint covering the outage's records", func() error {
		head, anchored := metric(t, h, "jeton_audit_head_seq"), metric(t, h, "jeton_audit_anchored_seq")
		if f := metric(t, h, "jeton_audit_anchor_failing"); f != 0 || anchored < head {
			return fmt.Errorf("anchored %v of %v, failing %v", anchored, head, f)
		}
		return nil
	})
	// /readyz has a line per listener (per-listener readiness, trusted2).
	if body := waitReadiness(t, h, http.StatusOK); body != "public: ready\ntrusted: ready" {
		t.Errorf("/readyz after the leader loss: %q; want ready", body)
	}
	mu.Lock()
	defer mu.Unlock()
	if loadErr != nil {
		t.Fatalf("a call on cached keys failed while Vault lost its leader: %v", loadErr)
	}
	t.Logf("%d calls on cached keys across the leader loss, none failed", loadCalls)
	if h.Pid() != pid {
		t.Fatal("jetond was restarted")
	}
}
