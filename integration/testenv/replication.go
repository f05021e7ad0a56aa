package testenv

import (
	"context"
	"fmt"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/redis/go-redis/v9"
)

// replicationTimeout bounds the wait for replicas to sync and for a
// failover (Sentinel or Cluster) to promote one. It is a limit, not a
// timing claim.
const replicationTimeout = 60 * time.Second

// WithReplicaOf starts the server as a replica of the master at addr
// (host:port).
func WithReplicaOf(addr string) RedisOption {
	return func(c *redisConfig) {
		host, port, _ := strings.Cut(addr, ":")
		c.extraArgs = append(c.extraArgs, "--replicaof", host, port)
	}
}

// Replicated is a master with replicas, each its own redis-server with AOF
// and appendfsync always, as StartRedis.
type Replicated struct {
	Master   *Redis
	Replicas []*Redis
}

// StartRedisReplicated starts a master and n replicas of it and waits until
// the master sees every replica online.
func StartRedisReplicated(t testing.TB, n int) *Replicated {
	t.Helper()
	r := &Replicated{Master: StartRedis(t, withArgs("--repl-diskless-sync-delay", "0"))}
	for range n {
		r.Replicas = append(r.Replicas, StartRedis(t, WithReplicaOf(r.Master.Addr)))
	}
	WaitReplicas(t, r.Master, n)
	return r
}

// WaitReplicas waits until master reports at least n connected replicas
// in state online.
func WaitReplicas(t testing.TB, master *Redis, n int) {
	t.Helper()
	c := redis.NewClient(&redis.Options{Addr: master.Addr, MaxRetries: -1})
	defer c.Close()
	master.p.waitFor(t, fmt.Sprintf("%d online replicas", n), replicationTimeout, func() error {
		info, err := c.Info(context.Background(), "replication").Result()
		if err != nil {
			return err
		}
		if got := strings.Count(info, "state=online"); got < n {
			return fmt.Errorf("%d replicas online", got)
		}
		return nil
	})
}

// Role returns the server's replication role, "master" or "slave", or ""
// when it does not answer.
func (r *Redis) Role(ctx context.Context) string {
	c := redis.NewClient(&redis.Options{Addr: r.Addr, MaxRetries: -1, DialTimeout: time.Second, ReadTimeout: time.Second})
	defer c.Close()
	role, err := c.Do(ctx, "role").Slice()
	if err != nil || len(role) == 0 {
		return ""
	}
	s, _ := role[0].(string)
	return s
}

// Sentinels is a group of Redis Sentinels watching one master.
type Sentinels struct {
	// Addrs are the sentinels' host:port addresses.
	Addrs []string
	// MasterName is the name the master is monitored under.
	MasterName string

	procs []*proc
}

// StartSentinels starts n sentinels (redis-server --sentinel) monitoring
// master under the name "jeton", with a quorum of n/2+1, and waits until
// each knows the master's replicas and the other sentinels. A master that
// stops answering for a second is failed over.
func StartSentinels(t testing.TB, master *Redis, replicas, n int) *Sentinels {
	t.Helper()
	bin := redisServerBin(t)
	s := &Sentinels{MasterName: "jeton"}
	host, port := splitHostPort(t, master.Addr)
	for range n {
		p := freePort(t)
		dir := t.TempDir()
		conf := fmt.Sprintf(`port %d
bind 127.0.0.1
protected-mode no
daemonize no
dir %s
sentinel announce-ip 127.0.0.1
sentinel monitor %s %s %s %d
sentinel down-after-milliseconds %s 1000
sentinel failover-timeout %s 10000
sentinel parallel-syncs %s 2
`, p, strconv.Quote(dir), s.MasterName, host, port, n/2+1, s.MasterName, s.MasterName, s.MasterName)
		// Sentinel rewrites its configuration file to record what it learns,
		// so the file must be its own and writable.
		path := filepath.Join(dir, "sentinel.conf")
		if err := os.WriteFile(path, []byte(conf), 0o600); err != nil {
			t.Fatalf("testenv: write sentinel config: %v", err)
		}
		pr := newProc(t, "redis-sentinel-"+strconv.Itoa(p), bin, []string{path, "--sentinel"})
		pr.start(t)
		s.procs = append(s.procs, pr)
		s.Addrs = append(s.Addrs, hostPort(p))
	}
	for i, addr := range s.Addrs {
		c := redis.NewSentinelClient(&redis.Options{Addr: addr, MaxRetries: -1})
		s.procs[i].waitFor(t, "a sentinel that knows the replicas and its peers", replicationTimeout, func() error {
			ctx := context.Background()
			m, err := c.Master(ctx, s.MasterName).Result()
			if err != nil {
				return err
			}
			if m["num-slaves"] != strconv.Itoa(replicas) || m["num-other-sentinels"] != strconv.Itoa(n-1) {
				return fmt.Errorf("sentinel sees %s replicas and %s other sentinels", m["num-slaves"], m["num-other-sentinels"])
			}
			return nil
		})
		_ = c.Close()
	}
	return s
}

// MasterAddr asks the first sentinel that answers for the current master.
func (s *Sentinels) MasterAddr(ctx context.Context) (string, error) {
	var last error
	for _, addr := range s.Addrs {
		c := redis.NewSentinelClient(&redis.Options{Addr: addr, MaxRetries: -1, DialTimeout: time.Second, ReadTimeout: time.Second})
		hp, err := c.GetMasterAddrByName(ctx, s.MasterName).Result()
		_ = c.Close()
		if err == nil && len(hp) == 2 {
			return hp[0] + ":" + hp[1], nil
		}
		last = err
	}
	return "", fmt.Errorf("testenv: no sentinel names a master: %v", last)
}

// DropReplicas closes the master's connections to its replicas (CLIENT
// KILL TYPE replica). With the replicas paused they cannot reconnect, so
// what the master takes from then on reaches no replica: the worst case of
// asynchronous replication, made on purpose.
func (r *Redis) DropReplicas(t testing.TB) {
	t.Helper()
	c := redis.NewClient(&redis.Options{Addr: r.Addr, MaxRetries: -1})
	defer c.Close()
	if err := c.ClientKillByFilter(context.Background(), "TYPE", "replica").Err(); err != nil {
		t.Fatalf("testenv: CLIENT KILL TYPE replica on %s: %v", r.Addr, err)
	}
}
