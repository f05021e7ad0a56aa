package budget_test

import (
	"errors"
	"fmt"
	"strings"
	"testing"
	"time"

	"github.com/redis/go-redis/v9"

	"github.com/jeton-dev/jeton/integration/testenv"
	"github.com/jeton-dev/jeton/server/budget"
)

// TestReserveRead: ReserveRead decides like Reserve and returns the keys'
// values only for an admitted call: nil where a key is absent, nothing at
// all for a refused or failed call. It works on a Redis that has not
// loaded the script yet (NOSCRIPT inside the pipeline), spending the
// budget once. A memory Limiter, or a Redis one not told that its Redis
// holds the records, does not read.
func TestReserveRead(t *testing.T) {
	r := testenv.StartRedis(t)
	c := redis.NewClient(&redis.Options{Addr: r.Addr, MaxRetries: -1, DialTimeout: time.Second})
	t.Cleanup(func() { c.Close() })
	if err := c.Set(ctx(t), "rec:a", "ciphertext-a", 0).Err(); err != nil {
		t.Fatal(err)
	}
	if budget.NewMemory(budget.Config{}).Reads() || budget.NewRedis(c, budget.Config{}).Reads() {
		t.Fatal("a Limiter not configured to read records says it does")
	}
	l := budget.NewRedis(c, budget.Config{ReadsRecords: true})
	if !l.Reads() {
		t.Fatal("a Redis Limiter with ReadsRecords does not read")
	}
	if err := c.ScriptFlush(ctx(t)).Err(); err != nil {
		t.Fatal(err)
	}
	lim := budget.Limits{Distinct: 2}
	vals, err := l.ReserveRead(ctx(t), budget.Request{Identity: alice, Limits: lim, Items: 2, Lookups: hashes("x", 2)}, []string{"rec:a", "rec:absent"})
	if err != nil || len(vals) != 2 || string(vals[0]) != "ciphertext-a" || vals[1] != nil {
		t.Fatalf("admitted call: %q, %v", vals, err)
	}
	u, err := l.Usage(ctx(t), alice, lim)
	if err != nil || u.Distinct != 2 {
		t.Fatalf("after one admitted call of 2 lookups: %+v, %v; want 2 distinct", u, err)
	}
	vals, err = l.ReserveRead(ctx(t), budget.Request{Identity: alice, Limits: lim, Items: 1, Lookups: hashes("y", 1)}, []string{"rec:a"})
	if !errors.Is(err, budget.ErrExceeded) || vals != nil {
		t.Fatalf("refused call: %q, %v; want nothing and ErrExceeded", vals, err)
	}
	if _, err := l.Suspend(ctx(t), alice, "test"); err != nil {
		t.Fatal(err)
	}
	vals, err = l.ReserveRead(ctx(t), budget.Request{Identity: alice, Limits: lim, Items: 1, Lookups: hashes("x", 1)}, []string{"rec:a"})
	if !errors.Is(err, budget.ErrSuspended) || vals != nil {
		t.Fatalf("suspended identity: %q, %v; want nothing and ErrSuspended", vals, err)
	}
	r.Kill()
	vals, err = l.ReserveRead(ctx(t), budget.Request{Identity: alice + "-other", Items: 1, Lookups: hashes("x", 1)}, []string{"rec:a"})
	if !errors.Is(err, budget.ErrUnavailable) || vals != nil {
		t.Fatalf("Redis down: %q, %v; want nothing and ErrUnavailable", vals, err)
	}
}

// BenchmarkReserveRead compares, in one run, a reveal's budget and record
// reads in one round trip (ReserveRead) with Reserve followed by a
// pipeline of GETs, for 1 and 100 records of jeton's size; Redis runs with
// appendfsync everysec, as in `make bench`.
func BenchmarkReserveRead(b *testing.B) {
	r := testenv.StartRedis(b, testenv.WithAppendFsync("everysec"))
	c := r.Client(b)
	l := budget.NewRedis(c, budget.Config{ReadsRecords: true})
	lim := budget.Limits{MaxBatch: 10000, Rate: 1e9, Burst: 1e9, Distinct: 1e9}
	for _, n := range []int{1, 100} {
		names := make([]string, n)
		for i := range names {
			names[i] = fmt.Sprintf("jeton:r:bench:%d", i)
			if err := c.Set(ctx(b), names[i], strings.Repeat("c", 120), 0).Err(); err != nil {
				b.Fatal(err)
			}
		}
		lookups := hashes("bench", n)
		req := budget.Request{Identity: alice, Limits: lim, Items: n, Lookups: lookups}
		b.Run(fmt.Sprintf("records=%d/one-trip", n), func(b *testing.B) {
			cx := ctx(b)
			b.ReportAllocs()
			for b.Loop() {
				if vals, err := l.ReserveRead(cx, req, names); err != nil || vals[n-1] == nil {
					b.Fatal(err)
				}
			}
		})
		b.Run(fmt.Sprintf("records=%d/two-trips", n), func(b *testing.B) {
			cx := ctx(b)
			b.ReportAllocs()
			for b.Loop() {
				if err := l.Reserve(cx, req); err != nil {
					b.Fatal(err)
				}
				p := c.Pipeline()
				for _, name := range names {
					p.Get(cx, name)
				}
				if _, err := p.Exec(cx); err != nil {
					b.Fatal(err)
				}
			}
		})
	}
}

// TestReserveReadCluster: on Redis Cluster, a call's records spread over
// slots and masters are read in the round trip of the script, which runs
// on its identity's slot, loaded there by the call that finds it absent.
func TestReserveReadCluster(t *testing.T) {
	cl := testenv.StartRedisCluster(t)
	c := cl.Client(t)
	names := make([]string, 64)
	for i := range names {
		names[i] = fmt.Sprintf("jeton:r:cluster:%d", i)
		if i%4 == 3 {
			continue // absent
		}
		if err := c.Set(ctx(t), names[i], "ciphertext-"+names[i], 0).Err(); err != nil {
			t.Fatal(err)
		}
	}
	l := budget.NewRedis(c, budget.Config{ReadsRecords: true})
	lim := budget.Limits{Distinct: 64}
	for call := range 2 {
		vals, err := l.ReserveRead(ctx(t), budget.Request{Identity: alice, Limits: lim, Items: 64, Lookups: hashes("x", 64)}, names)
		if err != nil || len(vals) != len(names) {
			t.Fatalf("call %d: %d values, %v", call, len(vals), err)
		}
		for i, v := range vals {
			want := "ciphertext-" + names[i]
			if i%4 == 3 {
				want = ""
			}
			if string(v) != want || (want == "") != (v == nil) {
				t.Fatalf("call %d: record %d read as %q, want %q", call, i, v, want)
			}
		}
	}
	vals, err := l.ReserveRead(ctx(t), budget.Request{Identity: alice, Limits: lim, Items: 1, Lookups: hashes("y", 1)}, names[:1])
	if !errors.Is(err, budget.ErrExceeded) || vals != nil {
		t.Fatalf("refused call on a cluster: %q, %v", vals, err)
	}
}
