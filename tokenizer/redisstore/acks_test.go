package redisstore_test

import (
	"context"
	"errors"
	"strings"
	"testing"
	"time"

	"github.com/redis/go-redis/v9"

	"github.com/jeton-dev/jeton/integration/testenv"
	"github.com/jeton-dev/jeton/tokenizer"
	"github.com/jeton-dev/jeton/tokenizer/redisstore"
)

func TestReplicaAcksConfig(t *testing.T) {
	tests := []struct {
		name string
		cfg  redisstore.Config
		want string // substring of the error; "" for none
	}{
		{"off", redisstore.Config{Addrs: []string{"127.0.0.1:1"}}, ""},
		{"on", redisstore.Config{Addrs: []string{"127.0.0.1:1"}, MinReplicaAcks: 1, ReplicaAckTimeout: time.Second}, ""},
		{"negative", redisstore.Config{Addrs: []string{"127.0.0.1:1"}, MinReplicaAcks: -1}, "MinReplicaAcks"},
		{"no timeout", redisstore.Config{Addrs: []string{"127.0.0.1:1"}, MinReplicaAcks: 1}, "ReplicaAckTimeout must be positive"},
		{"timeout past the default read timeout", redisstore.Config{Addrs: []string{"127.0.0.1:1"}, MinReplicaAcks: 1, ReplicaAckTimeout: 3 * time.Second}, "shorter than the read timeout"},
		{"timeout past the read timeout", redisstore.Config{Addrs: []string{"127.0.0.1:1"}, MinReplicaAcks: 2, ReplicaAckTimeout: time.Second, ReadTimeout: time.Second}, "shorter than the read timeout"},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			c, err := redisstore.NewClient(tc.cfg)
			if c != nil {
				defer c.Close()
			}
			if tc.want == "" && err != nil || tc.want != "" && (err == nil || !strings.Contains(err.Error(), tc.want)) {
				t.Fatalf("NewClient = %v; want an error holding %q", err, tc.want)
			}
		})
	}
}

// writes are every write of the Store, each with fresh keys under prefix.
func writes(prefix string) []struct {
	name string
	do   func(ctx context.Context, s *redisstore.Store) error
} {
	e := func(k string) []tokenizer.Entry { return []tokenizer.Entry{{Key: prefix + k, Value: []byte("v")}} }
	return []struct {
		name string
		do   func(ctx context.Context, s *redisstore.Store) error
	}{
		{"Put", func(ctx context.Context, s *redisstore.Store) error { return s.Put(ctx, e("put")) }},
		{"PutNew", func(ctx context.Context, s *redisstore.Store) error { _, err := s.PutNew(ctx, e("new")); return err }},
		{"PutExisting", func(ctx context.Context, s *redisstore.Store) error {
			_, err := s.PutExisting(ctx, e("put"))
			return err
		}},
		{"AddToSet", func(ctx context.Context, s *redisstore.Store) error {
			return s.AddToSet(ctx, prefix+"set", []string{"a", "b"}, 0)
		}},
		{"Delete", func(ctx context.Context, s *redisstore.Store) error {
			_, err := s.Delete(ctx, []string{prefix + "new"})
			return err
		}},
		{"Swap", func(ctx context.Context, s *redisstore.Store) error {
			_, err := s.Swap(ctx, []byte("v"), tokenizer.Entry{Key: prefix + "put", Value: []byte("w")})
			return err
		}},
		{"Write", func(ctx context.Context, s *redisstore.Store) error {
			return s.Write(ctx, tokenizer.Write{
				Sets:   []tokenizer.SetAdd{{Key: prefix + "wset", Members: []string{"a"}}},
				Create: e("wnew"),
			})
		}},
	}
}

// TestReplicaAcksSingleMaster: with MinReplicaAcks every write returns
// only once the replica holds it, and fails with ErrReplicaAcks, without
// hanging past the timeout, while the replica does not answer (SIGSTOP);
// reads are not held up; writes work again once it is back.
func TestReplicaAcksSingleMaster(t *testing.T) {
	rep := testenv.StartRedisReplicated(t, 1)
	s := newStore(t, redisstore.Config{Addrs: []string{rep.Master.Addr}, MinReplicaAcks: 1, ReplicaAckTimeout: 300 * time.Millisecond})
	ctx := context.Background()
	replica := rep.Replicas[0].Client(t)

	for _, w := range writes("jeton:test:up:") {
		if err := w.do(ctx, s); err != nil {
			t.Fatalf("%s with the replica up: %v", w.name, err)
		}
	}
	// WAIT answered, so the replica has applied every write already: no
	// polling here, or a missing WAIT would pass.
	if got, err := replica.Get(ctx, "jeton:test:up:put").Result(); err != nil || got != "w" {
		t.Fatalf("replica GET right after Put and Swap = %q, %v; want the swapped value", got, err)
	}
	if n, err := replica.Exists(ctx, "jeton:test:up:wnew", "jeton:test:up:wset").Result(); err != nil || n != 2 {
		t.Fatalf("replica EXISTS right after Write = %d, %v; want 2", n, err)
	}
	if n, err := replica.HLen(ctx, "jeton:test:up:set").Result(); err != nil || n != 2 {
		t.Fatalf("replica HLEN right after AddToSet = %d, %v; want 2", n, err)
	}
	if n, err := replica.Exists(ctx, "jeton:test:up:new").Result(); err != nil || n != 0 {
		t.Fatalf("replica EXISTS right after Delete = %d, %v; want 0", n, err)
	}

	rep.Replicas[0].Pause()
	for _, w := range writes("jeton:test:down:") {
		if err := w.do(ctx, s); !errors.Is(err, redisstore.ErrReplicaAcks) {
			t.Errorf("%s with the replica stopped = %v; want ErrReplicaAcks", w.name, err)
		}
	}
	if _, err := s.Get(ctx, []string{"jeton:test:up:put"}); err != nil {
		t.Errorf("Get with the replica stopped: %v; reads need no acknowledgement", err)
	}

	rep.Replicas[0].Resume()
	for _, w := range writes("jeton:test:again:") {
		if err := w.do(ctx, s); err != nil {
			t.Fatalf("%s after the replica came back: %v", w.name, err)
		}
	}
}

// TestReplicaAcksCluster: on Redis Cluster each master's part of a batch
// waits for that master's own replica; one stopped replica fails a batch
// that touches its master, and only that.
func TestReplicaAcksCluster(t *testing.T) {
	cl := testenv.StartRedisCluster(t, testenv.WithClusterReplicas(1))
	s := newStore(t, redisstore.Config{Addrs: cl.Addrs, MinReplicaAcks: 1, ReplicaAckTimeout: 300 * time.Millisecond})
	ctx := context.Background()
	entries := recordEntries(t, 300)
	if err := s.Put(ctx, entries); err != nil {
		t.Fatalf("Put of a batch over every master: %v", err)
	}
	// Every replica has its master's share at once.
	held := 0
	for _, n := range cl.Nodes[3:] {
		c := redis.NewClient(&redis.Options{Addr: n.Addr})
		size, err := c.DBSize(ctx).Result()
		_ = c.Close()
		if err != nil || size == 0 {
			t.Fatalf("replica %s holds %d keys right after Put (%v); want its master's share", n.Addr, size, err)
		}
		held += int(size)
	}
	if held != len(entries) {
		t.Fatalf("the replicas hold %d keys; want %d", held, len(entries))
	}

	victim := cl.MasterFor(t, entries[0].Key)
	var replicaOfVictim *testenv.Redis
	for i, n := range cl.Nodes[:3] {
		if n == victim {
			replicaOfVictim = cl.Nodes[3+i]
		}
	}
	replicaOfVictim.Pause()
	defer replicaOfVictim.Resume()
	if err := s.Put(ctx, entries); !errors.Is(err, redisstore.ErrReplicaAcks) {
		t.Fatalf("Put with one master's replica stopped = %v; want ErrReplicaAcks", err)
	}
	var elsewhere []tokenizer.Entry
	for _, e := range entries {
		if cl.MasterFor(t, e.Key) != victim {
			elsewhere = append(elsewhere, e)
		}
		if len(elsewhere) == 5 {
			break
		}
	}
	if err := s.Put(ctx, elsewhere); err != nil {
		t.Fatalf("Put of keys on the other masters: %v", err)
	}
	replicaOfVictim.Resume()
	if err := s.Put(ctx, entries); err != nil {
		t.Fatalf("Put after the replica came back: %v", err)
	}
}
