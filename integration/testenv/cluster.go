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

// Cluster is a Redis Cluster of three masters without replicas, owned by one
// test.
type Cluster struct {
	// Addrs are the masters' host:port addresses on 127.0.0.1.
	Addrs []string

	nodes []*Redis
}

// StartRedisCluster starts three cluster-enabled redis-servers (AOF with
// appendfsync always, as StartRedis), gives each a third of the 16384 slots,
// joins them and waits until every node reports cluster_state:ok.
func StartRedisCluster(t testing.TB) *Cluster {
	t.Helper()
	c := &Cluster{}
	var busPorts []int
	for range clusterSize {
		// The cluster bus port defaults to port+10000, which may be taken or
		// above 65535, so it gets its own free port.
		busPort := freePort(t)
		n := StartRedis(t, withArgs(
			"--cluster-enabled", "yes",
			"--cluster-config-file", "nodes.conf",
			"--cluster-port", strconv.Itoa(busPort),
			"--cluster-node-timeout", "5000",
			"--cluster-announce-ip", "127.0.0.1",
		))
		busPorts = append(busPorts, busPort)
		c.nodes = append(c.nodes, n)
		c.Addrs = append(c.Addrs, n.Addr)
	}

	ctx, cancel := context.WithTimeout(context.Background(), clusterFormTimeout)
	defer cancel()
	clients := make([]*redis.Client, len(c.nodes))
	for i, n := range c.nodes {
		clients[i] = n.Client(t)
	}
	const slots = 16384
	for i, cl := range clients {
		first, last := i*slots/clusterSize, (i+1)*slots/clusterSize-1
		if err := cl.ClusterAddSlotsRange(ctx, first, last).Err(); err != nil {
			t.Fatalf("testenv: CLUSTER ADDSLOTSRANGE %d %d on %s: %v", first, last, c.Addrs[i], err)
		}
	}
	for i := 1; i < len(c.nodes); i++ {
		host, port := splitHostPort(t, c.Addrs[i])
		// The bus port must be named: MEET otherwise assumes port+10000.
		if err := clients[0].Do(ctx, "cluster", "meet", host, port, busPorts[i]).Err(); err != nil {
			t.Fatalf("testenv: CLUSTER MEET %s from %s: %v", c.Addrs[i], c.Addrs[0], err)
		}
	}
	for i, n := range c.nodes {
		n.p.waitFor(t, "cluster_state:ok", clusterFormTimeout, func() error {
			return clusterReady(ctx, clients[i])
		})
	}
	return c
}

// clusterReady reports why a node does not yet see the whole, healthy
// cluster; nil once it does.
func clusterReady(ctx context.Context, c *redis.Client) error {
	info, err := c.ClusterInfo(ctx).Result()
	if err != nil {
		return err
	}
	want := map[string]string{
		"cluster_state":          "ok",
		"cluster_slots_assigned": "16384",
		"cluster_known_nodes":    strconv.Itoa(clusterSize),
		"cluster_size":           strconv.Itoa(clusterSize),
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
