package integration_test

import (
	"context"
	"errors"
	"sync"
	"testing"
	"time"

	"github.com/jeton-dev/jeton/client"
	"github.com/jeton-dev/jeton/integration/testenv"
)

// Redis failover under load. Replication is asynchronous, so the worst
// case for an acknowledged token is a replica that lags when its master
// dies. The tests make that case happen rather than hope for it (on
// loopback a replica is otherwise never more than a moment behind): the
// failing master's replicas are paused (SIGSTOP) and the master drops its
// links to them, so for a second what it takes reaches no replica; then
// the master is killed (SIGKILL), the replicas resume, and one of them is
// promoted. With redis.min_replica_acks, the writes of that second were
// never acknowledged (the calls failed UNAVAILABLE), so no acknowledged
// token may be lost. Without it, what only the dead master held is gone:
// the test reports how much, it does not assert it.

// lagThenKill pauses replicas, cuts master's links to them, lets the load
// run for three seconds, kills master and resumes the replicas. The lag is
// several replica-ack timeouts (500 ms) long, so that with
// min_replica_acks a write that WAIT did not confirm would have been
// acknowledged, and lost, before the kill if jetond ignored WAIT's answer.
func lagThenKill(t *testing.T, master *testenv.Redis, replicas ...*testenv.Redis) {
	for _, r := range replicas {
		r.Pause()
	}
	master.DropReplicas(t)
	time.Sleep(3 * time.Second)
	master.Kill()
	for _, r := range replicas {
		r.Resume()
	}
}

// failoverLoad is the outcome of a load run across a failover.
type failoverLoad struct {
	acked    []item // every item of every acknowledged call
	calls    int
	failures map[string]int // failed calls by client error
	// gap is from the kill to the first call that succeeded after it.
	gap time.Duration
}

// loadAcrossFailover runs batched Tokenize calls from two goroutines
// against h while fault runs, then until recovered reports the backend
// healthy again and at least two more calls succeeded. fault returns when
// the kill happened. Every failed call must be UNAVAILABLE: no other code,
// no partial result.
func loadAcrossFailover(t *testing.T, h *jetond, fault func(), recovered func()) *failoverLoad {
	t.Helper()
	const batch, workers = 100, 2
	var (
		mu        sync.Mutex
		out       = &failoverLoad{failures: map[string]int{}}
		killedAt  time.Time
		afterKill int
		next      = 1_000_000
		bad       error
	)
	ctx, stop := context.WithCancel(context.Background())
	var wg sync.WaitGroup
	// Registered after jetond started: the load stops before jetond does,
	// however the test ends.
	t.Cleanup(func() { stop(); wg.Wait() })
	for range workers {
		wg.Go(func() {
			for ctx.Err() == nil {
				mu.Lock()
				its := items(t, next, batch)
				next += batch
				mu.Unlock()
				err := tryTokenize(t, h, "acme", its)
				mu.Lock()
				out.calls++
				switch {
				case err == nil:
					out.acked = append(out.acked, its...)
					if !killedAt.IsZero() {
						if afterKill == 0 {
							out.gap = time.Since(killedAt)
						}
						afterKill++
					}
				case errors.Is(err, client.ErrUnavailable):
					out.failures["UNAVAILABLE"]++
				default:
					out.failures[err.Error()]++
					bad = err
				}
				mu.Unlock()
				if err != nil {
					time.Sleep(20 * time.Millisecond) // a client backing off
				}
			}
		})
	}
	waitCalls := func(n int, what string) {
		deadline := time.Now().Add(2 * recoverLimit)
		for {
			mu.Lock()
			got := afterKill
			if killedAt.IsZero() {
				got = len(out.acked) / batch
			}
			mu.Unlock()
			if got >= n {
				return
			}
			if time.Now().After(deadline) {
				stop()
				wg.Wait()
				t.Fatalf("%s: %d calls succeeded, want %d, within %s; failures %v", what, got, n, 2*recoverLimit, out.failures)
			}
			time.Sleep(50 * time.Millisecond)
		}
	}
	waitCalls(4, "load before the fault")
	fault()
	mu.Lock()
	killedAt = time.Now()
	mu.Unlock()
	recovered()
	waitCalls(2, "load after the failover")
	stop()
	wg.Wait()
	if bad != nil {
		t.Fatalf("a call failed with something other than UNAVAILABLE: %v (all failures %v)", bad, out.failures)
	}
	return out
}

// lost reveals every acknowledged item through h and returns how many did
// not come back with their value. A wrong value fails the test at once.
func lost(t *testing.T, h *jetond, acked []item) int {
	t.Helper()
	n := 0
	for lo := 0; lo < len(acked); lo += 1000 {
		part := acked[lo:min(lo+1000, len(acked))]
		toks := make([]string, len(part))
		for i, it := range part {
			toks[i] = it.Token
		}
		var res []client.RevealResult
		eventually(t, "Detokenize after the failover", func() error {
			var err error
			res, err = h.TTP(t).Detokenize(context.Background(), toks, purpose, caseRef)
			return err
		})
		for i, r := range res {
			switch {
			case r.Err == nil && r.Value == part[i].Value:
			case errors.Is(r.Err, client.ErrNotFound):
				n++
			default:
				t.Fatalf("acknowledged item %d: err %v, value matches %t", lo+i, r.Err, r.Value == part[i].Value)
			}
		}
	}
	return n
}

// checkFailover reveals every acknowledged token and checks the run: the
// same jetond process throughout, calls that failed (else the fault did
// not bite), and with min_replica_acks no acknowledged token lost. It logs
// the run in the form RELIABILITY.md quotes.
func checkFailover(t *testing.T, h *jetond, pid, acks int, l *failoverLoad) {
	t.Helper()
	n := lost(t, h, l.acked)
	t.Logf("min_replica_acks %d: %d calls, %d tokens acknowledged, %d of them not found after the failover; failed calls %v; "+
		"first success %s after the kill; jetond restarted: %t",
		acks, l.calls, len(l.acked), n, l.failures, l.gap.Round(time.Millisecond), pid != h.Pid())
	if h.Pid() != pid {
		t.Fatal("jetond was restarted")
	}
	if l.failures["UNAVAILABLE"] == 0 {
		t.Error("no call failed across the failover; the fault did not bite")
	}
	if acks > 0 && n > 0 {
		t.Fatalf("%d acknowledged tokens lost across the failover with min_replica_acks %d", n, acks)
	}
}

// TestRedisClusterFailoverUnderLoad: a Redis Cluster of 3 masters and 3
// replicas; a master is killed during batched Tokenize load after its
// replica fell behind. Calls fail UNAVAILABLE during the gap and work
// again without restarting jetond once the replica is promoted.
func TestRedisClusterFailoverUnderLoad(t *testing.T) {
	v := startVaultEnv(t, false)
	for _, tc := range []struct {
		name string
		acks int
	}{{"with-min-replica-acks", 1}, {"without-min-replica-acks", 0}} {
		t.Run(tc.name, func(t *testing.T) {
			cl := testenv.StartRedisCluster(t, testenv.WithClusterReplicas(1), testenv.WithNodeTimeout(2*time.Second))
			h := startJetond(t, jetondOpts{RedisAddrs: cl.Addrs, Vault: v, Token: v.token(t, "jeton-jetond"),
				MinReplicaAcks: tc.acks, ReplicaAckTimeout: 500 * time.Millisecond})
			pid := h.Pid()
			master, replica := cl.Nodes[0], cl.Nodes[3] // StartRedisCluster pairs them so
			l := loadAcrossFailover(t, h, func() { lagThenKill(t, master, replica) }, func() {
				cl.WaitHealthy(t)
				// The promoted replica has no replica of its own until the
				// old master comes back as one; with min_replica_acks its
				// slots take no write before that.
				master.Start()
				testenv.WaitReplicas(t, replica, 1)
			})
			checkFailover(t, h, pid, tc.acks, l)
		})
	}
}

// TestRedisSentinelFailoverUnderLoad is the same scenario on one master
// with two replicas watched by three Sentinels, jetond reaching Redis
// through the Sentinels (redis.master_name). Both replicas lag when the
// master dies, so a missing acknowledgement cannot hide behind the other;
// the Sentinels then make the other replica follow the promoted one.
func TestRedisSentinelFailoverUnderLoad(t *testing.T) {
	v := startVaultEnv(t, false)
	for _, tc := range []struct {
		name string
		acks int
	}{{"with-min-replica-acks", 1}, {"without-min-replica-acks", 0}} {
		t.Run(tc.name, func(t *testing.T) {
			rep := testenv.StartRedisReplicated(t, 2)
			s := testenv.StartSentinels(t, rep.Master, 2, 3)
			h := startJetond(t, jetondOpts{RedisAddrs: s.Addrs, MasterName: s.MasterName, Vault: v, Token: v.token(t, "jeton-jetond"),
				MinReplicaAcks: tc.acks, ReplicaAckTimeout: 500 * time.Millisecond})
			pid := h.Pid()
			l := loadAcrossFailover(t, h, func() { lagThenKill(t, rep.Master, rep.Replicas...) }, func() {
				eventually(t, "a replica promoted by the Sentinels", func() error {
					addr, err := s.MasterAddr(context.Background())
					if err == nil && addr == rep.Master.Addr {
						err = errors.New("the Sentinels still name the killed master")
					}
					return err
				})
			})
			checkFailover(t, h, pid, tc.acks, l)
		})
	}
}
