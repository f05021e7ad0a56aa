package redisstore_test

import (
	"context"
	"testing"
	"time"

	"github.com/jeton-dev/jeton/integration/testenv"
	"github.com/jeton-dev/jeton/tokenizer/redisstore"
)

// TestClusterFailoverRecovers: after a master dies and its replica takes
// over, the Store works again once the cluster has healed, without waiting
// for go-redis's own periodic reload of the layout (a minute): a failed
// call makes it reload. Only writes are made here (no Ping, which reloads
// the layout by itself).
func TestClusterFailoverRecovers(t *testing.T) {
	cl := testenv.StartRedisCluster(t, testenv.WithClusterReplicas(1), testenv.WithNodeTimeout(2*time.Second))
	s := newStore(t, redisstore.Config{Addrs: cl.Addrs})
	ctx := context.Background()
	entries := recordEntries(t, 100)
	if err := s.Put(ctx, entries); err != nil {
		t.Fatal(err)
	}
	cl.Nodes[0].Kill()
	cl.WaitHealthy(t)
	start := time.Now()
	for {
		err := s.Put(ctx, entries)
		if err == nil {
			break
		}
		if time.Since(start) > 30*time.Second {
			t.Fatalf("Put still fails %s after the cluster healed: %v", time.Since(start).Round(time.Second), err)
		}
		time.Sleep(100 * time.Millisecond)
	}
	t.Logf("Put works again %s after the cluster healed", time.Since(start).Round(time.Millisecond))
	got, err := s.Get(ctx, keysOf(entries))
	if err != nil {
		t.Fatal(err)
	}
	for i, v := range got {
		if v == nil {
			t.Fatalf("entry %d missing after the failover", i)
		}
	}
}
