package testenv_test

import (
	"context"
	"fmt"
	"testing"
	"time"

	vaultapi "github.com/hashicorp/vault/api"
	"github.com/redis/go-redis/v9"

	"github.com/jeton-dev/jeton/integration/testenv"
)

func TestSentinelPromotesAReplica(t *testing.T) {
	rep := testenv.StartRedisReplicated(t, 2)
	s := testenv.StartSentinels(t, rep.Master, 2, 3)
	ctx := context.Background()
	if got, err := s.MasterAddr(ctx); err != nil || got != rep.Master.Addr {
		t.Fatalf("sentinels name master %q, %v; want %s", got, err, rep.Master.Addr)
	}
	c := redis.NewFailoverClient(&redis.FailoverOptions{MasterName: s.MasterName, SentinelAddrs: s.Addrs})
	defer c.Close()
	if err := c.Set(ctx, "k", "before", 0).Err(); err != nil {
		t.Fatal(err)
	}
	testenv.WaitReplicas(t, rep.Master, 2)

	rep.Master.Kill()
	deadline := time.Now().Add(time.Minute)
	var now string
	for {
		got, err := s.MasterAddr(ctx)
		if err == nil && got != rep.Master.Addr {
			now = got
			break
		}
		if time.Now().After(deadline) {
			t.Fatalf("no replica promoted within a minute of the master's kill (last %q, %v)", got, err)
		}
		time.Sleep(100 * time.Millisecond)
	}
	promoted := false
	for _, r := range rep.Replicas {
		promoted = promoted || (r.Addr == now && r.Role(ctx) == "master")
	}
	if !promoted {
		t.Fatalf("sentinels name %s, not a replica that took over", now)
	}
	if got, err := c.Get(ctx, "k").Result(); err != nil || got != "before" {
		t.Fatalf("GET through the failover client after the failover = %q, %v", got, err)
	}
}

func TestClusterReplicaTakesOver(t *testing.T) {
	cl := testenv.StartRedisCluster(t, testenv.WithClusterReplicas(1), testenv.WithNodeTimeout(2*time.Second))
	if len(cl.Nodes) != 6 {
		t.Fatalf("%d nodes; want 3 masters and 3 replicas", len(cl.Nodes))
	}
	ctx := context.Background()
	c := cl.Client(t)
	for i := range 100 {
		if err := c.Set(ctx, fmt.Sprintf("k%d", i), "v", 0).Err(); err != nil {
			t.Fatal(err)
		}
	}
	victim := cl.MasterFor(t, "k1")
	victim.Kill()
	cl.WaitHealthy(t)
	if now := cl.MasterFor(t, "k1"); now == victim {
		t.Fatal("the killed master still serves its slots")
	}
	// The client learns the new layout from its failed calls; a bounded
	// wait, then every key must be there.
	deadline := time.Now().Add(30 * time.Second)
	for i := 0; i < 100; {
		got, err := c.Get(ctx, fmt.Sprintf("k%d", i)).Result()
		switch {
		case err == nil && got == "v":
			i++
		case err == nil || time.Now().After(deadline):
			t.Fatalf("GET k%d after the failover = %q, %v", i, got, err)
		default:
			c.ReloadState(ctx) // as redisstore does after a failed call
			time.Sleep(100 * time.Millisecond)
		}
	}
}

func TestVaultRaftLeaderLoss(t *testing.T) {
	vc := testenv.StartVaultCluster(t, 3)
	active := vc.Active()
	if active == nil || len(vc.Standbys()) != 2 {
		t.Fatalf("active %v, %d standbys; want one active and two standbys", active != nil, len(vc.Standbys()))
	}
	c := active.Client(t)
	if err := c.Sys().Mount("transit", &vaultapi.MountInput{Type: "transit"}); err != nil {
		t.Fatal(err)
	}
	active.Kill()
	next := vc.WaitActive(t, active)
	if _, err := next.Client(t).Logical().Write("transit/keys/after-failover", nil); err != nil {
		t.Fatalf("create a Transit key on the new active node: %v", err)
	}
	// The killed node comes back from its own raft data and unseals.
	active.Restart()
	if h, err := active.Client(t).Sys().Health(); err != nil || h.Sealed {
		t.Fatalf("the restarted node: health %+v, %v; want unsealed", h, err)
	}
}
