package testenv

import (
	"context"
	"fmt"
	"net"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/redis/go-redis/v9"
)

// clusterSize is the number of masters; three is the smallest cluster
// Redis itself accepts from `redis-cli --cluster create`.
const clusterSize = 3

// clusterFormTimeout bounds the wait for every node to report
// cluster_state:ok.
const clusterFormTimeout = 30 * time.Second

// Cluster is a Redis Cluster of three masters, with or without replicas,
// owned by one test.
type Cluster struct {
	// Addrs are the masters' host:port addresses on 127.0.0.1, as started.
	Addrs []string
	// Nodes are every node: the three masters as started, then their
	// replicas. After a failover a node's role may differ.
	Nodes []*Redis

	nodes []*Redis
}

type clusterConfig struct {
	replicas    int
	nodeTimeout time.Duration
}

// ClusterOption configures StartRedisCluster.
type ClusterOption func(*clusterConfig)

// WithClusterReplicas gives each master n replicas. A replica takes over
// when its master has not answered for the node timeout.
func WithClusterReplicas(n int) ClusterOption {
	return func(c *clusterConfig) { c.replicas = n }
}

// WithNodeTimeout sets cluster-node-timeout (default 5s): how long a node
// may not answer before the cluster holds it failed.
func WithNodeTimeout(d time.Duration) ClusterOption {
	return func(c *clusterConfig) { c.nodeTimeout = d }
}

// StartRedisCluster starts three cluster-enabled redis-servers (AOF with
// appendfsync always, as StartRedis), gives each a third of the 16384 slots,
// joins them and waits until every node reports cluster_state:ok. With
// WithClusterReplicas, each master's replicas are joined too, and the wait
// lasts until every replica has synced.
func StartRedisCluster(t testing.TB, opts ...ClusterOption) *Cluster {
	t.Helper()
	cfg := clusterConfig{nodeTimeout: 5 * time.Second}
	for _, o := range opts {
		o(&cfg)
	}
	c := &Cluster{}
	var busPorts []int
	total := clusterSize * (1 + cfg.replicas)
	for range total {
		// The cluster bus port defaults to port+10000, which may be taken or
		// above 65535, so it gets its own free port.
		busPort := freePort(t)
		n := StartRedis(t, withArgs(
			"--cluster-enabled", "yes",
			"--cluster-config-file", "nodes.conf",
			"--cluster-port", strconv.Itoa(busPort),
			"--cluster-node-timeout", strconv.FormatInt(cfg.nodeTimeout.Milliseconds(), 10),
			"--cluster-announce-ip", "127.0.0.1",
			// A replica takes over however long it was cut off from its
			// master: the tests kill masters on purpose.
			"--cluster-replica-validity-factor", "0",
			// Replicas sync at once rather than after the default 5 s wait
			// for more replicas to share one transfer.
			"--repl-diskless-sync-delay", "0",
		))
		busPorts = append(busPorts, busPort)
		c.nodes = append(c.nodes, n)
	}
	c.Nodes = c.nodes
	for _, n := range c.nodes[:clusterSize] {
		c.Addrs = append(c.Addrs, n.Addr)
	}

	ctx, cancel := context.WithTimeout(context.Background(), clusterFormTimeout+replicationTimeout)
	defer cancel()
	clients := make([]*redis.Client, len(c.nodes))
	for i, n := range c.nodes {
		clients[i] = n.Client(t)
	}
	const slots = 16384
	for i, cl := range clients[:clusterSize] {
		first, last := i*slots/clusterSize, (i+1)*slots/clusterSize-1
		if err := cl.ClusterAddSlotsRange(ctx, first, last).Err(); err != nil {
			t.Fatalf("testenv: CLUSTER ADDSLOTSRANGE %d %d on %s: %v", first, last, c.nodes[i].Addr, err)
		}
	}
	for i := 1; i < len(c.nodes); i++ {
		host, port := splitHostPort(t, c.nodes[i].Addr)
		// The bus port must be named: MEET otherwise assumes port+10000.
		if err := clients[0].Do(ctx, "cluster", "meet", host, port, busPorts[i]).Err(); err != nil {
			t.Fatalf("testenv: CLUSTER MEET %s from %s: %v", c.nodes[i].Addr, c.nodes[0].Addr, err)
		}
	}
	for i := clusterSize; i < len(c.nodes); i++ {
		master := clients[(i-clusterSize)%clusterSize]
		id, err := master.ClusterMyID(ctx).Result()
		if err != nil {
			t.Fatalf("testenv: CLUSTER MYID on %s: %v", c.nodes[(i-clusterSize)%clusterSize].Addr, err)
		}
		// The replica must know the master's id before it can follow it.
		c.nodes[i].p.waitFor(t, "CLUSTER REPLICATE", clusterFormTimeout, func() error {
			return clients[i].ClusterReplicate(ctx, id).Err()
		})
	}
	for i, n := range c.nodes {
		n.p.waitFor(t, "cluster_state:ok", clusterFormTimeout, func() error {
			return clusterReady(ctx, clients[i], len(c.nodes))
		})
	}
	for _, n := range c.nodes[:clusterSize] {
		WaitReplicas(t, n, cfg.replicas)
	}
	return c
}

// WaitHealthy waits until every running node reports cluster_state:ok and
// serves every slot from a running master: after a master was killed, that
// means one of its replicas took over and every node knows it.
func (c *Cluster) WaitHealthy(t testing.TB) {
	t.Helper()
	dead := map[string]bool{}
	for _, n := range c.nodes {
		dead[n.Addr] = n.p.exited()
	}
	for _, n := range c.nodes {
		if dead[n.Addr] {
			continue
		}
		cl := redis.NewClient(&redis.Options{Addr: n.Addr, MaxRetries: -1, DialTimeout: time.Second, ReadTimeout: time.Second})
		n.p.waitFor(t, "cluster_state:ok with every slot on a running master", replicationTimeout, func() error {
			ctx := context.Background()
			if err := clusterReady(ctx, cl, 0); err != nil {
				return err
			}
			shards, err := cl.ClusterShards(ctx).Result()
			if err != nil {
				return err
			}
			for _, sh := range shards {
				if len(sh.Slots) == 0 {
					continue
				}
				if m := shardMaster(sh); m == "" || dead[m] {
					return fmt.Errorf("slots %d-%d have no running master", sh.Slots[0].Start, sh.Slots[0].End)
				}
			}
			return nil
		})
		_ = cl.Close()
	}
}

// shardMaster is the host:port of the shard's healthy master, or "".
func shardMaster(sh redis.ClusterShard) string {
	for _, n := range sh.Nodes {
		if n.Role == "master" && n.Health == "online" {
			return net.JoinHostPort(n.IP, strconv.FormatInt(n.Port, 10))
		}
	}
	return ""
}

// MasterFor returns the node that serves key now, as the first running
// node sees it.
func (c *Cluster) MasterFor(t testing.TB, key string) *Redis {
	t.Helper()
	ctx := context.Background()
	for _, n := range c.nodes {
		if n.p.exited() {
			continue
		}
		cl := redis.NewClient(&redis.Options{Addr: n.Addr, MaxRetries: -1})
		slot, err := cl.ClusterKeySlot(ctx, key).Result()
		if err != nil {
			_ = cl.Close()
			continue
		}
		shards, err := cl.ClusterShards(ctx).Result()
		_ = cl.Close()
		if err != nil {
			continue
		}
		for _, sh := range shards {
			for _, r := range sh.Slots {
				if r.Start <= slot && slot <= r.End {
					for _, m := range c.nodes {
						if m.Addr == shardMaster(sh) {
							return m
						}
					}
				}
			}
		}
	}
	t.Fatalf("testenv: no running node says who serves %s", key)
	return nil
}

// clusterReady reports why a node does not yet see the whole, healthy
// cluster of known nodes (0: any number); nil once it does.
func clusterReady(ctx context.Context, c *redis.Client, known int) error {
	info, err := c.ClusterInfo(ctx).Result()
	if err != nil {
		return err
	}
	want := map[string]string{
		"cluster_state":          "ok",
		"cluster_slots_assigned": "16384",
		"cluster_size":           strconv.Itoa(clusterSize),
	}
	if known > 0 {
		want["cluster_known_nodes"] = strconv.Itoa(known)
	}
	for line := range strings.Lines(info) {
		k, v, _ := strings.Cut(strings.TrimSpace(line), ":")
		if w, ok := want[k]; ok {
			if v != w {
				return fmt.Errorf("%s:%s, want %s", k, v, w)
			}
			delete(want, k)
		}
	}
	if len(want) > 0 {
		return fmt.Errorf("CLUSTER INFO lacks %v", want)
	}
	return nil
}

func splitHostPort(t testing.TB, addr string) (host, port string) {
	t.Helper()
	host, port, err := net.SplitHostPort(addr)
	if err != nil {
		t.Fatalf("testenv: bad address %q: %v", addr, err)
	}
	return host, port
}

// Client returns a go-redis cluster client seeded with every master, closed
// when t ends.
func (c *Cluster) Client(t testing.TB) *redis.ClusterClient {
	t.Helper()
	cl := redis.NewClusterClient(&redis.ClusterOptions{Addrs: c.Addrs})
	t.Cleanup(func() { _ = cl.Close() })
	return cl
}
