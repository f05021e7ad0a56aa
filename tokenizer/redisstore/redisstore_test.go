package redisstore_test

import (
	"bytes"
	"context"
	"crypto/rand"
	"encoding/base64"
	"errors"
	"fmt"
	"net"
	"slices"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/redis/go-redis/v9"

	"github.com/jeton-dev/jeton/integration/testenv"
	"github.com/jeton-dev/jeton/tokenizer"
	"github.com/jeton-dev/jeton/tokenizer/redisstore"
	"github.com/jeton-dev/jeton/tokenizer/storetest"
)

// newStore builds a client from cfg the way jetond does and closes it when
// t ends.
func newStore(t testing.TB, cfg redisstore.Config) *redisstore.Store {
	t.Helper()
	c, err := redisstore.NewClient(cfg)
	if err != nil {
		t.Fatalf("NewClient: %v", err)
	}
	t.Cleanup(func() { _ = c.Close() })
	s := redisstore.New(c)
	if err := s.Ping(context.Background()); err != nil {
		t.Fatalf("Ping: %v", err)
	}
	return s
}

// flushable is a Store whose server can be made to forget its cached
// scripts, as a restarted Redis has; the conformance suite checks that
// Write recovers.
type flushable struct {
	*redisstore.Store
	c redis.UniversalClient
}

func (f flushable) FlushScripts(ctx context.Context) error {
	if cc, ok := f.c.(*redis.ClusterClient); ok {
		return cc.ForEachMaster(ctx, func(ctx context.Context, c *redis.Client) error {
			return c.ScriptFlush(ctx).Err()
		})
	}
	return f.c.ScriptFlush(ctx).Err()
}

func TestConformanceSingleNode(t *testing.T) {
	r := testenv.StartRedis(t)
	cfg := redisstore.Config{Addrs: []string{r.Addr}}
	s := flushable{newStore(t, cfg), newClient(t, cfg)}
	// The suite keeps each subtest's keys apart, so they share the server.
	storetest.Run(t, func(testing.TB) tokenizer.Store { return s })
}

func TestConformanceCluster(t *testing.T) {
	cl := testenv.StartRedisCluster(t)
	cfg := redisstore.Config{Addrs: cl.Addrs}
	s := flushable{newStore(t, cfg), newClient(t, cfg)}
	storetest.Run(t, func(testing.TB) tokenizer.Store { return s })
}

func newClient(t testing.TB, cfg redisstore.Config) redis.UniversalClient {
	t.Helper()
	c, err := redisstore.NewClient(cfg)
	if err != nil {
		t.Fatalf("NewClient: %v", err)
	}
	t.Cleanup(func() { _ = c.Close() })
	return c
}

// recordEntries returns n entries keyed like jeton's records,
// jeton:r:<tenant>:<base64 of a keyed hash>, with fake values.
func recordEntries(t testing.TB, n int) []tokenizer.Entry {
	t.Helper()
	entries := make([]tokenizer.Entry, n)
	for i := range entries {
		h := make([]byte, 32)
		if _, err := rand.Read(h); err != nil {
			t.Fatal(err)
		}
		entries[i] = tokenizer.Entry{
			Key:   "jeton:r:tenant-1:" + base64.RawURLEncoding.EncodeToString(h),
			Value: fmt.Appendf(nil, "user%d@example.org", i),
		}
	}
	return entries
}

func keysOf(entries []tokenizer.Entry) []string {
	ks := make([]string, len(entries))
	for i, e := range entries {
		ks[i] = e.Key
	}
	return ks
}

// wantAll fails unless every entry reads back with its value.
func wantAll(t testing.TB, s *redisstore.Store, entries []tokenizer.Entry) {
	t.Helper()
	got, err := s.Get(context.Background(), keysOf(entries))
	if err != nil {
		t.Fatalf("Get: %v", err)
	}
	lost := 0
	for i, e := range entries {
		if string(got[i]) != string(e.Value) {
			lost++
		}
	}
	if lost > 0 {
		t.Fatalf("%d of %d acknowledged entries are missing or wrong", lost, len(entries))
	}
}

func TestClusterBatchSpreadsOverAllMasters(t *testing.T) {
	cl := testenv.StartRedisCluster(t)
	s := newStore(t, redisstore.Config{Addrs: cl.Addrs})
	ctx := context.Background()
	entries := recordEntries(t, 1000)
	if err := s.Put(ctx, entries); err != nil {
		t.Fatalf("Put: %v", err)
	}
	wantAll(t, s, entries)

	var total int64
	for _, addr := range cl.Addrs {
		node := redis.NewClient(&redis.Options{Addr: addr})
		defer node.Close()
		n, err := node.DBSize(ctx).Result()
		if err != nil {
			t.Fatalf("DBSIZE on %s: %v", addr, err)
		}
		if n == 0 {
			t.Errorf("master %s holds none of the batch; want keys on every master", addr)
		}
		total += n
	}
	if total != int64(len(entries)) {
		t.Errorf("the masters hold %d keys; want %d", total, len(entries))
	}

	if n, err := s.Delete(ctx, keysOf(entries)); err != nil || n != len(entries) {
		t.Errorf("Delete = %d, %v; want %d", n, err, len(entries))
	}
}

func TestAcknowledgedPutsSurviveKill(t *testing.T) {
	r := testenv.StartRedis(t) // appendfsync always
	s := newStore(t, redisstore.Config{Addrs: []string{r.Addr}})
	ctx := context.Background()

	// Batches acknowledged before the kill.
	before := recordEntries(t, 1000)
	for i := 0; i < len(before); i += 100 {
		if err := s.Put(ctx, before[i:i+100]); err != nil {
			t.Fatalf("Put: %v", err)
		}
	}

	// A writer still going when the server is killed: whatever it saw
	// acknowledged must be there after the restart.
	var (
		mu    sync.Mutex
		acked []tokenizer.Entry
		wg    sync.WaitGroup
	)
	started := make(chan struct{})
	var once sync.Once
	wg.Go(func() {
		defer once.Do(func() { close(started) })
		for i := 0; ; i++ {
			batch := recordEntries(t, 50)
			if err := s.Put(ctx, batch); err != nil {
				return
			}
			mu.Lock()
			acked = append(acked, batch...)
			mu.Unlock()
			if i == 10 {
				once.Do(func() { close(started) })
			}
		}
	})
	<-started
	r.Kill()
	wg.Wait()
	r.Start()

	wantAll(t, s, before)
	wantAll(t, s, acked)
	t.Logf("%d entries acknowledged by the writer that was interrupted", len(acked))
}

func TestFailsWhileDownAndRecovers(t *testing.T) {
	r := testenv.StartRedis(t)
	s := newStore(t, redisstore.Config{Addrs: []string{r.Addr}, DialTimeout: time.Second})
	entries := []tokenizer.Entry{{Key: "jeton:r:tenant-1:AAAA", Value: []byte("anne@example.org")}}
	if err := s.Put(context.Background(), entries); err != nil {
		t.Fatal(err)
	}

	calls := []struct {
		name string
		call func(ctx context.Context) error
	}{
		{"Ping", s.Ping},
		{"Put", func(ctx context.Context) error { return s.Put(ctx, entries) }},
		{"PutNew", func(ctx context.Context) error { _, err := s.PutNew(ctx, entries); return err }},
		{"Get", func(ctx context.Context) error { _, err := s.Get(ctx, keysOf(entries)); return err }},
		{"Delete", func(ctx context.Context) error { _, err := s.Delete(ctx, []string{"absent"}); return err }},
		{"AddToSet", func(ctx context.Context) error {
			return s.AddToSet(ctx, "jeton:s:tenant-1:subject", []string{"m"}, time.Hour)
		}},
		{"SetMembers", func(ctx context.Context) error {
			_, err := s.SetMembers(ctx, "jeton:s:tenant-1:subject")
			return err
		}},
	}

	r.Kill()
	const bound = 2 * time.Second
	for _, c := range calls {
		ctx, cancel := context.WithTimeout(context.Background(), bound)
		done := make(chan error, 1)
		start := time.Now()
		go func() { done <- c.call(ctx) }()
		select {
		case err := <-done:
			t.Logf("%s failed after %s", c.name, time.Since(start).Round(time.Millisecond))
			if err == nil {
				t.Errorf("%s succeeded with Redis down", c.name)
			} else if !strings.HasPrefix(err.Error(), "redisstore: ") {
				t.Errorf("%s error %q lacks the package prefix", c.name, err)
			}
		case <-time.After(bound + 5*time.Second):
			t.Fatalf("%s still running %s after its context expired", c.name, 5*time.Second)
		}
		cancel()
	}

	// The same client reconnects by itself. After repeated dial failures
	// go-redis stops dialing and probes once a second, so allow a few
	// seconds before the first call succeeds; after that every call must.
	r.Start()
	deadline := time.Now().Add(10 * time.Second)
	for s.Ping(context.Background()) != nil {
		if time.Now().After(deadline) {
			t.Fatalf("Ping still failing %s after Redis came back", 10*time.Second)
		}
		time.Sleep(50 * time.Millisecond)
	}
	for _, c := range calls {
		if err := c.call(context.Background()); err != nil {
			t.Errorf("%s after restart: %v", c.name, err)
		}
	}
	wantAll(t, s, entries)
}

// replayProxy forwards TCP between clients and Redis. Once armed, it lets
// the next command containing NX reach Redis, swallows Redis's reply and
// closes the connection: the client cannot tell whether the command ran,
// and it did.
type replayProxy struct {
	addr    string
	armed   atomic.Bool
	tripped atomic.Bool
}

func startReplayProxy(t testing.TB, target string) *replayProxy {
	t.Helper()
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	p := &replayProxy{addr: l.Addr().String()}
	var wg sync.WaitGroup
	t.Cleanup(func() { l.Close(); wg.Wait() })
	wg.Go(func() {
		for {
			c, err := l.Accept()
			if err != nil {
				return
			}
			wg.Go(func() { p.serve(c, target) })
		}
	})
	return p
}

func (p *replayProxy) serve(c net.Conn, target string) {
	defer c.Close()
	d, err := net.Dial("tcp", target)
	if err != nil {
		return
	}
	defer d.Close()
	var drop atomic.Bool
	go func() {
		buf := make([]byte, 64<<10)
		for {
			n, err := c.Read(buf)
			if err != nil {
				d.Close()
				return
			}
			// Decided before Redis can see the command, so before it replies.
			if p.armed.Load() && bytes.Contains(bytes.ToLower(buf[:n]), []byte("\r\nnx\r\n")) && !p.tripped.Swap(true) {
				drop.Store(true)
			}
			if _, err := d.Write(buf[:n]); err != nil {
				return
			}
		}
	}()
	buf := make([]byte, 64<<10)
	for {
		n, err := d.Read(buf)
		if err != nil || drop.Load() {
			return
		}
		if _, err := c.Write(buf[:n]); err != nil {
			return
		}
	}
}

func TestPutNewNeverDeniesItsOwnWrite(t *testing.T) {
	r := testenv.StartRedis(t)
	proxy := startReplayProxy(t, r.Addr)
	s := newStore(t, redisstore.Config{Addrs: []string{proxy.addr}})
	entries := []tokenizer.Entry{{Key: "jeton:i:tenant-1:claim", Value: []byte("token-1")}}

	proxy.armed.Store(true)
	stored, err := s.PutNew(context.Background(), entries)
	if !proxy.tripped.Load() {
		t.Fatal("the proxy never saw the SET NX")
	}
	// Redis stored the entry. The reply was lost, so an error is right;
	// "not stored" would be a lie that a resent SET NX tells.
	if err == nil && !stored[0] {
		t.Fatal("PutNew reported its own, stored, entry as not stored: the pipeline was resent")
	}
	wantAll(t, s, entries)
}

func TestContextDeadlineInterruptsACall(t *testing.T) {
	r := testenv.StartRedis(t)
	s := newStore(t, redisstore.Config{Addrs: []string{r.Addr}})
	// A paused server holds the reply back, so only the caller's deadline
	// can end the call before the pause does.
	if err := r.Client(t).Do(context.Background(), "client", "pause", 3000, "all").Err(); err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithTimeout(context.Background(), 100*time.Millisecond)
	defer cancel()
	_, err := s.Get(ctx, []string{"jeton:r:tenant-1:AAAA"})
	if !errors.Is(err, context.DeadlineExceeded) {
		t.Fatalf("Get on a paused server with a 100ms deadline = %v; want an error wrapping %v", err, context.DeadlineExceeded)
	}
}

func TestErrorsCarryNoValues(t *testing.T) {
	r := testenv.StartRedis(t)
	s := newStore(t, redisstore.Config{Addrs: []string{r.Addr}})
	ctx := context.Background()
	const secret = "anne@example.org"
	if err := s.Put(ctx, []tokenizer.Entry{{Key: "k", Value: []byte(secret)}}); err != nil {
		t.Fatal(err)
	}
	// SADD on a string key fails in Redis itself.
	err := s.AddToSet(ctx, "k", []string{secret}, 0)
	if err == nil {
		t.Fatal("AddToSet on a string key succeeded")
	}
	if strings.Contains(err.Error(), secret) {
		t.Errorf("error %q contains a value", err)
	}
}

func TestNewClient(t *testing.T) {
	tests := []struct {
		name      string
		cfg       redisstore.Config
		wantErr   string // substring; empty: no error
		wantType  string
		wantAddrs int
	}{
		{name: "single node", cfg: redisstore.Config{Addrs: []string{"127.0.0.1:6379"}}, wantType: "*redis.Client"},
		{name: "cluster", cfg: redisstore.Config{Addrs: []string{"127.0.0.1:7000", "127.0.0.1:7001"}}, wantType: "*redis.ClusterClient"},
		{name: "cluster with one seed", cfg: redisstore.Config{Addrs: []string{"127.0.0.1:7000"}, Cluster: true}, wantType: "*redis.ClusterClient"},
		{name: "sentinel", cfg: redisstore.Config{Addrs: []string{"127.0.0.1:26379"}, MasterName: "jeton"}, wantType: "*redis.Client"},
		{name: "no addrs", cfg: redisstore.Config{}, wantErr: "Config.Addrs"},
		{name: "empty addr", cfg: redisstore.Config{Addrs: []string{"127.0.0.1:6379", ""}}, wantErr: "Config.Addrs[1]"},
		{name: "DB on a cluster", cfg: redisstore.Config{Addrs: []string{"a:1", "b:1"}, DB: 2}, wantErr: "Config.DB"},
		{name: "negative DB", cfg: redisstore.Config{Addrs: []string{"a:1"}, DB: -1}, wantErr: "Config.DB"},
		{name: "negative timeout", cfg: redisstore.Config{Addrs: []string{"a:1"}, ReadTimeout: -time.Second}, wantErr: "ReadTimeout"},
		{name: "negative pool", cfg: redisstore.Config{Addrs: []string{"a:1"}, PoolSize: -1}, wantErr: "Config.PoolSize"},
		{name: "sentinel and cluster", cfg: redisstore.Config{Addrs: []string{"a:1"}, MasterName: "m", Cluster: true}, wantErr: "Config.Cluster"},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			c, err := redisstore.NewClient(tc.cfg)
			if tc.wantErr != "" {
				if err == nil || !strings.Contains(err.Error(), tc.wantErr) || !strings.HasPrefix(err.Error(), "redisstore: ") {
					t.Fatalf("NewClient = %v; want an error naming %s", err, tc.wantErr)
				}
				return
			}
			if err != nil {
				t.Fatalf("NewClient: %v", err)
			}
			defer c.Close()
			if got := fmt.Sprintf("%T", c); got != tc.wantType {
				t.Errorf("client type = %s; want %s", got, tc.wantType)
			}
		})
	}
}

// The two benchmarks below run side by side so the cost of the Store over a
// bare go-redis pipeline is visible, for each AOF fsync policy:
//
//	go test -run '^$' -bench 1000 ./tokenizer/redisstore/
var fsyncPolicies = []string{"always", "everysec"}

// BenchmarkPut1000 measures Store.Put of 1000 entries, one pipeline.
func BenchmarkPut1000(b *testing.B) {
	for _, policy := range fsyncPolicies {
		b.Run("appendfsync="+policy, func(b *testing.B) {
			r := testenv.StartRedis(b, testenv.WithAppendFsync(policy))
			s := newStore(b, redisstore.Config{Addrs: []string{r.Addr}})
			entries := benchEntries(b)
			ctx := context.Background()
			for b.Loop() {
				if err := s.Put(ctx, entries); err != nil {
					b.Fatal(err)
				}
			}
			b.ReportMetric(float64(len(entries)*b.N)/b.Elapsed().Seconds(), "items/s")
		})
	}
}

// BenchmarkRawPipelinedSet1000 measures the same 1000 SETs sent through a
// bare go-redis pipeline: the floor for BenchmarkPut1000.
func BenchmarkRawPipelinedSet1000(b *testing.B) {
	for _, policy := range fsyncPolicies {
		b.Run("appendfsync="+policy, func(b *testing.B) {
			r := testenv.StartRedis(b, testenv.WithAppendFsync(policy))
			c := r.Client(b)
			entries := benchEntries(b)
			ctx := context.Background()
			for b.Loop() {
				_, err := c.Pipelined(ctx, func(p redis.Pipeliner) error {
					for _, e := range entries {
						p.Set(ctx, e.Key, e.Value, 0)
					}
					return nil
				})
				if err != nil {
					b.Fatal(err)
				}
			}
			b.ReportMetric(float64(len(entries)*b.N)/b.Elapsed().Seconds(), "items/s")
		})
	}
}

// benchEntries returns 1000 record-sized entries: a 43-byte key and a
// 100-byte value, about the size of an envelope around a short plaintext.
func benchEntries(b *testing.B) []tokenizer.Entry {
	b.Helper()
	entries := recordEntries(b, 1000)
	for i := range entries {
		entries[i].Value = make([]byte, 100)
	}
	return entries
}

// A set is kept as a hash that Redis encodes as a compact listpack while
// small; a set an earlier version wrote as a Redis set is still read and
// added to as one, by AddToSet and by Write alike.
func TestSetRepresentation(t *testing.T) {
	r := testenv.StartRedis(t)
	s := newStore(t, redisstore.Config{Addrs: []string{r.Addr}})
	raw := r.Client(t)
	ctx := context.Background()
	member := string([]byte{0, 0xff, 'm', 0x80}) // binary members are kept exactly
	if err := s.Write(ctx, tokenizer.Write{Sets: []tokenizer.SetAdd{{Key: "jeton:s:t1:new", Members: []string{member, "m2"}, TTL: time.Hour}}}); err != nil {
		t.Fatal(err)
	}
	if typ := raw.Type(ctx, "jeton:s:t1:new").Val(); typ != "hash" {
		t.Fatalf("a new set is a Redis %s, want a hash", typ)
	}
	if enc := raw.ObjectEncoding(ctx, "jeton:s:t1:new").Val(); enc != "listpack" {
		t.Fatalf("a small set is encoded as %s, want listpack", enc)
	}
	if got, err := s.SetMembers(ctx, "jeton:s:t1:new"); err != nil || len(got) != 2 || !slices.Contains(got, member) {
		t.Fatalf("SetMembers = %q, %v", got, err)
	}
	// Written by an earlier version.
	if err := raw.SAdd(ctx, "jeton:s:t1:old", "jeton:r:t1:a").Err(); err != nil {
		t.Fatal(err)
	}
	if err := raw.Expire(ctx, "jeton:s:t1:old", time.Minute).Err(); err != nil {
		t.Fatal(err)
	}
	if err := s.AddToSet(ctx, "jeton:s:t1:old", []string{"jeton:r:t1:b"}, time.Hour); err != nil {
		t.Fatal(err)
	}
	// In one script call with a new set, which is made a hash.
	if err := s.Write(ctx, tokenizer.Write{Sets: []tokenizer.SetAdd{
		{Key: "jeton:s:t1:old", Members: []string{"jeton:r:t1:c"}, TTL: time.Hour},
		{Key: "jeton:s:t1:beside", Members: []string{"jeton:r:t1:d"}, TTL: time.Hour},
	}}); err != nil {
		t.Fatal(err)
	}
	if typ := raw.Type(ctx, "jeton:s:t1:beside").Val(); typ != "hash" {
		t.Fatalf("a new set written beside an old one is a Redis %s, want a hash", typ)
	}
	if typ := raw.Type(ctx, "jeton:s:t1:old").Val(); typ != "set" {
		t.Fatalf("an existing Redis set became a %s", typ)
	}
	got, err := s.SetMembers(ctx, "jeton:s:t1:old")
	slices.Sort(got)
	if err != nil || !slices.Equal(got, []string{"jeton:r:t1:a", "jeton:r:t1:b", "jeton:r:t1:c"}) {
		t.Fatalf("SetMembers of an old set = %q, %v", got, err)
	}
	if ttl := raw.PTTL(ctx, "jeton:s:t1:old").Val(); ttl <= time.Minute {
		t.Fatalf("the old set's lifetime was not extended: %v left", ttl)
	}
}

// TestWriteSetsInFewScripts: on a single server, Write adds to many sets in
// few script calls (Redis's cost of entering a script exceeds that of a
// small set's commands), within bounds on sets and members per call; on
// Redis Cluster, where a script's keys must share a slot, one per set.
func TestWriteSetsInFewScripts(t *testing.T) {
	sets := func(n, members int) []tokenizer.SetAdd {
		out := make([]tokenizer.SetAdd, n)
		for i := range out {
			out[i] = tokenizer.SetAdd{Key: fmt.Sprintf("jeton:s:t1:%d-%d", members, i), TTL: time.Hour}
			for j := range members {
				out[i].Members = append(out[i].Members, fmt.Sprintf("m%d", j))
			}
		}
		return out
	}
	scriptCalls := func(t *testing.T, c redis.UniversalClient, s *redisstore.Store, w tokenizer.Write) int64 {
		t.Helper()
		ctx := context.Background()
		reset := func(ctx context.Context, n *redis.Client) error { return n.ConfigResetStat(ctx).Err() }
		count := func() int64 {
			var total int64
			add := func(ctx context.Context, n *redis.Client) error {
				info, err := n.InfoMap(ctx, "commandstats").Result()
				if err != nil {
					return err
				}
				for _, cmd := range []string{"cmdstat_evalsha", "cmdstat_eval"} {
					// A call refused with NOSCRIPT, then sent in full,
					// counts once: as the successful EVAL.
					if v, ok := info["Commandstats"][cmd]; ok {
						var calls, failed int64
						for _, f := range strings.Split(v, ",") {
							k, n, _ := strings.Cut(f, "=")
							switch k {
							case "calls":
								calls, _ = strconv.ParseInt(n, 10, 64)
							case "failed_calls":
								failed, _ = strconv.ParseInt(n, 10, 64)
							}
						}
						total += calls - failed
					}
				}
				return nil
			}
			var err error
			if cl, ok := c.(*redis.ClusterClient); ok {
				err = cl.ForEachMaster(ctx, add)
			} else {
				err = add(ctx, c.(*redis.Client))
			}
			if err != nil {
				t.Fatal(err)
			}
			return total
		}
		var err error
		if cl, ok := c.(*redis.ClusterClient); ok {
			err = cl.ForEachMaster(ctx, reset)
		} else {
			err = reset(ctx, c.(*redis.Client))
		}
		if err != nil {
			t.Fatal(err)
		}
		if err := s.Write(ctx, w); err != nil {
			t.Fatal(err)
		}
		return count()
	}

	t.Run("single server", func(t *testing.T) {
		r := testenv.StartRedis(t)
		cfg := redisstore.Config{Addrs: []string{r.Addr}}
		c := newClient(t, cfg)
		s := redisstore.New(c)
		// 300 small sets: 128 per call.
		if n := scriptCalls(t, c, s, tokenizer.Write{Sets: sets(300, 4)}); n != 3 {
			t.Errorf("300 sets of 4 members took %d script calls, want 3", n)
		}
		// 3 sets of 3,000 members: 4,096 members per call, unless one set
		// alone has more.
		if n := scriptCalls(t, c, s, tokenizer.Write{Sets: sets(3, 3000)}); n != 3 {
			t.Errorf("3 sets of 3,000 members took %d script calls, want 3", n)
		}
		if n := scriptCalls(t, c, s, tokenizer.Write{Sets: sets(1, 5000)}); n != 1 {
			t.Errorf("one set of 5,000 members took %d script calls, want 1", n)
		}
		got, err := s.SetMembers(context.Background(), "jeton:s:t1:5000-0")
		if err != nil || len(got) != 5000 {
			t.Fatalf("a set of 5,000 members read back %d members, %v", len(got), err)
		}
	})
	t.Run("cluster", func(t *testing.T) {
		cl := testenv.StartRedisCluster(t)
		cfg := redisstore.Config{Addrs: cl.Addrs}
		c := newClient(t, cfg)
		s := redisstore.New(c)
		if n := scriptCalls(t, c, s, tokenizer.Write{Sets: sets(20, 4)}); n != 20 {
			t.Errorf("20 sets on a cluster took %d script calls, want 20", n)
		}
	})
}

// Write gives each record the lifetime its entry asks for, in whole
// seconds or in milliseconds, and the value exactly as given: the
// batch's SET NX commands are built by hand, not by go-redis's SetNX.
func TestWriteLifetimesAndValues(t *testing.T) {
	r := testenv.StartRedis(t)
	s := newStore(t, redisstore.Config{Addrs: []string{r.Addr}})
	raw := r.Client(t)
	ctx := context.Background()
	entries := []struct {
		tokenizer.Entry
		min, max time.Duration // the PTTL expected; -1 for none
		keep     bool
	}{
		{tokenizer.Entry{Key: "jeton:r:t1:hour", Value: []byte("sealed-1"), TTL: time.Hour}, 59 * time.Minute, time.Hour, false},
		{tokenizer.Entry{Key: "jeton:r:t1:precise", Value: []byte("sealed-2"), TTL: 90500 * time.Millisecond}, 60 * time.Second, 90500 * time.Millisecond, false},
		{tokenizer.Entry{Key: "jeton:r:t1:day", Value: []byte("sealed-3"), TTL: 24 * time.Hour}, 23 * time.Hour, 24 * time.Hour, false},
		{tokenizer.Entry{Key: "jeton:r:t1:forever", Value: []byte{0, 0xff, 0x80}}, -1, -1, false},
		{tokenizer.Entry{Key: "jeton:r:t1:kept", Value: []byte("sealed-5"), TTL: 2 * time.Hour}, 119 * time.Minute, 2 * time.Hour, true},
		{tokenizer.Entry{Key: "jeton:r:t1:kept-forever", Value: []byte("sealed-6")}, -1, -1, true},
	}
	var w tokenizer.Write
	for _, e := range entries {
		if e.keep {
			w.Keep = append(w.Keep, e.Entry)
		} else {
			w.Create = append(w.Create, e.Entry)
		}
	}
	if err := s.Write(ctx, w); err != nil {
		t.Fatal(err)
	}
	for _, e := range entries {
		got, err := raw.Get(ctx, e.Key).Bytes()
		if err != nil || !bytes.Equal(got, e.Value) {
			t.Errorf("%s holds %q, %v; want %q", e.Key, got, err, e.Value)
		}
		ttl, err := raw.PTTL(ctx, e.Key).Result()
		if err != nil {
			t.Fatal(err)
		}
		if e.min < 0 {
			if ttl != -1 {
				t.Errorf("%s expires in %v, want never", e.Key, ttl)
			}
		} else if ttl < e.min || ttl > e.max {
			t.Errorf("%s expires in %v, want in [%v, %v]", e.Key, ttl, e.min, e.max)
		}
	}
}
