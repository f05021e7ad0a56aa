package integration_test

import (
	"context"
	"errors"
	"fmt"
	"math/rand/v2"
	"os"
	"sync"
	"testing"
	"time"

	"github.com/jeton-dev/jeton/client"
	"github.com/jeton-dev/jeton/integration/testenv"
)

// soakGrace is how long after a fault is repaired its errors still count
// as expected: clients and jetond notice a repair by retrying.
const soakGrace = 15 * time.Second

// TestSoak is `make soak`, not part of `make test`: JETON_SOAK_DURATION
// (e.g. 10m) of mixed load over three jetond replicas on a Redis Cluster of
// three masters and three replicas (redis.min_replica_acks 1) and a Vault,
// with one fault injected per minute, in turn: a Redis master killed, a
// jetond replica killed and restarted, Vault restarted, a Redis replica
// paused for ten seconds.
//
// It asserts: no wrong or partial value ever; no error outside a fault's
// window (from the fault until it is repaired plus soakGrace) and none but
// UNAVAILABLE inside one; every acknowledged token sampled reveals at the
// end; on the replicas never restarted, a flat goroutine count and RSS
// growth under 10% from the end of warm-up (the first fifth) to the end.
func TestSoak(t *testing.T) {
	dur, err := time.ParseDuration(os.Getenv("JETON_SOAK_DURATION"))
	if err != nil || dur <= 0 {
		t.Skip("the soak runs with `make soak` (JETON_SOAK_DURATION=10m)")
	}
	cl := testenv.StartRedisCluster(t, testenv.WithClusterReplicas(1), testenv.WithNodeTimeout(2*time.Second))
	v := startVaultEnv(t, false)
	d := startDeployment(t, 3, jetondOpts{RedisAddrs: cl.Addrs, Vault: v, Token: v.token(t, "jeton-jetond"),
		MinReplicaAcks: 1, ReplicaAckTimeout: 500 * time.Millisecond, RedisTimeout: 2 * time.Second, HealthInterval: time.Second})
	// The clients retry UNAVAILABLE as a careful application does.
	sponsor := d.soakClient(t, d.publicAddrs(), d.Replicas[0].sponsor["acme"])
	ttp := d.soakClient(t, d.trustedAddrs(), [2]string{d.pki.TTPCert, d.pki.TTPKey})
	ctx := context.Background()
	warm := items(t, 0, 500)
	if err := tryTokenizeWith(sponsor, "acme", warm); err != nil {
		t.Fatal(err)
	}

	var (
		mu         sync.Mutex
		faultUntil time.Time // errors before this are expected
		inFault    bool
		calls      int
		expected   = map[string]int{}
		unexpected []string
		sample     []item // every 10th acknowledged batch
		tokens     int
	)
	note := func(what string, err error) {
		mu.Lock()
		defer mu.Unlock()
		calls++
		if err == nil {
			return
		}
		window := inFault || time.Now().Before(faultUntil)
		if window && errors.Is(err, client.ErrUnavailable) {
			expected[what]++
			return
		}
		if len(unexpected) < 20 {
			unexpected = append(unexpected, fmt.Sprintf("%s at %s (in a fault window: %t): %v", what, time.Now().Format(time.TimeOnly), window, err))
		}
	}
	loadCtx, stopLoad := context.WithCancel(ctx)
	var wg sync.WaitGroup
	// Registered after the deployment: the load stops before jetond does.
	t.Cleanup(func() { stopLoad(); wg.Wait() })
	for w := range 2 {
		wg.Go(func() {
			for n := 10_000_000 * (w + 1); loadCtx.Err() == nil; n += 100 {
				its := items(t, n, 100)
				err := tryTokenizeWith(sponsor, "acme", its)
				note("Tokenize", err)
				if err == nil {
					mu.Lock()
					tokens += len(its)
					if n/100%10 == 0 {
						sample = append(sample, its...)
					}
					mu.Unlock()
				}
				time.Sleep(20 * time.Millisecond)
			}
		})
	}
	wg.Go(func() {
		for loadCtx.Err() == nil {
			off := rand.IntN(len(warm) - 50)
			err := tryDetokenizeWith(ttp, warm[off:off+50])
			note("Detokenize", err) // a wrong value (errPartial) is never expected
			time.Sleep(20 * time.Millisecond)
		}
	})

	// Resources of the replicas that are never restarted, sampled every
	// 10 s. A single sample catches the garbage collector anywhere in its
	// cycle, so windows of a minute are compared by their means.
	steady := d.Replicas[:2]
	gauges := []string{"go_goroutines", "process_resident_memory_bytes", "go_memstats_heap_inuse_bytes"}
	type sampleAt struct {
		at     time.Duration
		values [][]float64 // by replica, by gauge
	}
	var samples []sampleAt
	start := time.Now()
	var lastSample time.Time
	tick := func() {
		if time.Since(lastSample) < 10*time.Second {
			return
		}
		lastSample = time.Now()
		s := sampleAt{at: time.Since(start)}
		for _, h := range steady {
			var vs []float64
			for _, g := range gauges {
				vs = append(vs, metric(t, h, g))
			}
			s.values = append(s.values, vs)
		}
		samples = append(samples, s)
	}
	// mean is gauge g of replica r averaged over the samples in [from, to).
	mean := func(r, g int, from, to time.Duration) float64 {
		sum, n := 0.0, 0
		for _, s := range samples {
			if s.at >= from && s.at < to {
				sum += s.values[r][g]
				n++
			}
		}
		if n == 0 {
			t.Fatalf("no sample between %s and %s", from, to)
		}
		return sum / float64(n)
	}

	faults := []struct {
		name string
		do   func()
	}{
		{"kill a Redis master", func() {
			victim := cl.MasterFor(t, fmt.Sprintf("soak-%d", time.Now().UnixNano()))
			victim.Kill()
			cl.WaitHealthy(t)
			victim.Start() // back as a replica of the promoted one
			cl.WaitHealthy(t)
			for _, n := range cl.Nodes {
				if n.Role(ctx) == "master" {
					testenv.WaitReplicas(t, n, 1)
				}
			}
		}},
		{"kill and restart a jetond replica", func() {
			h := d.Replicas[2]
			h.kill()
			time.Sleep(2 * time.Second)
			h.start(t)
			h.waitReady(t)
		}},
		{"restart Vault", func() {
			v.Stop()
			time.Sleep(5 * time.Second)
			v.Start()
		}},
		{"pause a Redis replica for 10 s", func() {
			for _, n := range cl.Nodes {
				if n.Role(ctx) == "slave" {
					n.Pause()
					time.Sleep(10 * time.Second)
					n.Resume()
					return
				}
			}
		}},
	}
	warmUp := dur / 5
	for i := 0; time.Since(start) < dur; i++ {
		next := start.Add(time.Duration(i+1) * time.Minute)
		for time.Now().Before(next) && time.Since(start) < dur {
			tick()
			time.Sleep(time.Second)
		}
		if time.Since(start) >= dur {
			break
		}
		f := faults[i%len(faults)]
		mu.Lock()
		inFault = true
		mu.Unlock()
		began := time.Now()
		f.do()
		mu.Lock()
		inFault, faultUntil = false, time.Now().Add(soakGrace)
		mu.Unlock()
		t.Logf("fault %d at %s: %s, repaired in %s", i+1, began.Sub(start).Round(time.Second), f.name, time.Since(began).Round(time.Millisecond))
	}
	// A quiet end, so the last fault's errors and goroutines settle.
	for until := time.Now().Add(soakGrace); time.Now().Before(until); time.Sleep(time.Second) {
		tick()
	}
	finish := time.Since(start)
	stopLoad()
	wg.Wait()

	mu.Lock()
	defer mu.Unlock()
	t.Logf("soak %s: %d calls, %d tokens acknowledged, expected errors in fault windows %v", dur, calls, tokens, expected)
	for _, u := range unexpected {
		t.Errorf("unexpected: %s", u)
	}
	// The minute after warm-up against the last minute.
	for r := range steady {
		base := func(g int) float64 { return mean(r, g, warmUp, warmUp+time.Minute) }
		end := func(g int) float64 { return mean(r, g, finish-time.Minute, finish+time.Second) }
		const mib = 1 << 20
		t.Logf("replica %d, means of a minute after warm-up and of the last minute: goroutines %.1f and %.1f; "+
			"RSS %.1f MiB and %.1f MiB (%+.1f%%); heap in use %.1f MiB and %.1f MiB",
			r, base(0), end(0), base(1)/mib, end(1)/mib, 100*(end(1)/base(1)-1), base(2)/mib, end(2)/mib)
		if end(0) > base(0)*1.2+10 {
			t.Errorf("replica %d: goroutines grew from %.1f to %.1f", r, base(0), end(0))
		}
		if end(1) > base(1)*1.10 {
			t.Errorf("replica %d: RSS grew %.1f%% after warm-up; want under 10%%", r, 100*(end(1)/base(1)-1))
		}
	}
	n := lost(t, d.Replicas[0], sample)
	t.Logf("%d sampled acknowledged tokens, %d not found at the end", len(sample), n)
	if n > 0 {
		t.Errorf("%d acknowledged tokens lost during the soak", n)
	}
}

// soakClient is a round_robin client that retries UNAVAILABLE.
func (d *deployment) soakClient(t testing.TB, addrs []string, cert [2]string) *client.Client {
	t.Helper()
	return d.roundRobin(t, addrs, cert[0], cert[1], client.WithRetry(3, 200*time.Millisecond))
}
