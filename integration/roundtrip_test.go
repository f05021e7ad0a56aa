package integration_test

import (
	"context"
	"fmt"
	"os"
	"os/exec"
	"strings"
	"testing"

	"github.com/redis/go-redis/v9"

	"github.com/jeton-dev/jeton/integration/testenv"
)

// batchSizes are the round-trip batch sizes issue 3 names.
var batchSizes = []int{1, 1000, 10000}

// TestRoundTripSingleNode: the full server (both listeners, mutual TLS)
// on a real single-node Redis and a real Vault tokenizes and detokenizes
// batches of 1, 1,000 and 10,000 mixed-class items, and after a clean
// restart every earlier token still detokenizes.
func TestRoundTripSingleNode(t *testing.T) {
	r := testenv.StartRedis(t)
	v := startVaultEnv(t, false)
	h := startJetond(t, jetondOpts{RedisAddrs: []string{r.Addr}, Vault: v, Token: v.token(t, "jeton-jetond")})
	all := roundTrips(t, h)

	t.Run("records", func(t *testing.T) {
		// One record per item: the values are distinct, so even the
		// deterministic classes share none.
		if n := countRecords(t, r.Client(t)); n != len(all) {
			t.Fatalf("Redis holds %d jeton:r:* records, want %d", n, len(all))
		}
	})
	t.Run("after-restart", func(t *testing.T) {
		pid := h.Pid()
		h.Restart(t)
		if h.Pid() == pid {
			t.Fatal("Restart left the same process running")
		}
		detokenizeAll(t, h, all)
	})
	t.Run("cli", func(t *testing.T) {
		// The jeton CLI, as a TTP operator runs it, against the same server.
		picks := []item{all[0], all[500], all[len(all)-1]}
		args := []string{"detokenize", "--purpose", purpose, "--case-ref", caseRef}
		for _, it := range picks {
			args = append(args, it.Token)
		}
		cmd := exec.Command(jetonBin, args...)
		cmd.Env = append(envWithout(os.Environ(), "JETON_"),
			"JETON_ADDR="+h.TrustedAddr, "JETON_CACERT="+h.pki.ServerCA,
			"JETON_CERT="+h.pki.TTPCert, "JETON_KEY="+h.pki.TTPKey)
		var stderr strings.Builder
		cmd.Stderr = &stderr
		out, err := cmd.Output()
		if err != nil {
			t.Fatalf("jeton detokenize: %v; stderr: %s", err, stderr.String())
		}
		lines := strings.Split(strings.TrimSuffix(string(out), "\n"), "\n")
		if len(lines) != len(picks) {
			t.Fatalf("jeton detokenize printed %d lines for %d tokens", len(lines), len(picks))
		}
		for i, it := range picks {
			if lines[i] != it.Value {
				t.Errorf("jeton detokenize line %d is not the token's value", i)
			}
		}
	})
}

// TestRoundTripCluster is TestRoundTripSingleNode on a 3-master Redis
// Cluster, and checks that the records landed on every master.
func TestRoundTripCluster(t *testing.T) {
	c := testenv.StartRedisCluster(t)
	v := startVaultEnv(t, false)
	h := startJetond(t, jetondOpts{RedisAddrs: c.Addrs, Vault: v, Token: v.token(t, "jeton-jetond")})
	all := roundTrips(t, h)

	t.Run("spread-over-masters", func(t *testing.T) {
		total := 0
		for _, addr := range c.Addrs {
			node := redis.NewClient(&redis.Options{Addr: addr})
			t.Cleanup(func() { _ = node.Close() })
			n := countRecords(t, node)
			t.Logf("master %s holds %d records", addr, n)
			if n == 0 {
				t.Errorf("master %s holds no jeton:r:* record", addr)
			}
			total += n
		}
		if total != len(all) {
			t.Fatalf("the masters hold %d jeton:r:* records in all, want %d", total, len(all))
		}
	})
	t.Run("after-restart", func(t *testing.T) {
		h.Restart(t)
		detokenizeAll(t, h, all)
	})
}

// roundTrips runs one subtest per batch size and returns every tokenized
// item.
func roundTrips(t *testing.T, h *jetond) []item {
	var all []item
	next := 0
	for _, n := range batchSizes {
		batch := items(t, next, n)
		next += n
		ok := t.Run(fmt.Sprintf("batch-%d", n), func(t *testing.T) {
			tokenize(t, h, "acme", batch)
			detokenizeAll(t, h, batch)
		})
		if !ok {
			t.FailNow()
		}
		all = append(all, batch...)
	}
	return all
}

// countRecords counts the keys of one Redis node that hold records.
func countRecords(t testing.TB, c *redis.Client) int {
	t.Helper()
	ctx := context.Background()
	n := 0
	iter := c.Scan(ctx, 0, "jeton:r:*", 1000).Iterator()
	for iter.Next(ctx) {
		n++
	}
	if err := iter.Err(); err != nil {
		t.Fatalf("SCAN %s: %v", c.Options().Addr, err)
	}
	return n
}
