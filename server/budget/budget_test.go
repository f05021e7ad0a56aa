package budget_test

import (
	"context"
	"errors"
	"fmt"
	"math/rand/v2"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/redis/go-redis/v9"

	"github.com/jeton-dev/jeton/integration/testenv"
	"github.com/jeton-dev/jeton/server/budget"
)

// clock is a settable test clock.
type clock struct {
	mu sync.Mutex
	t  time.Time
}

func newClock() *clock { return &clock{t: time.Date(2026, 3, 1, 12, 0, 0, 0, time.UTC)} }

func (c *clock) Now() time.Time { c.mu.Lock(); defer c.mu.Unlock(); return c.t }

func (c *clock) Advance(d time.Duration) { c.mu.Lock(); c.t = c.t.Add(d); c.mu.Unlock() }

// backends builds each Limiter implementation over a fresh state; every
// behaviour test runs against all of them.
var backends = []struct {
	name string
	new  func(t testing.TB, cfg budget.Config) *budget.Limiter
}{
	{"memory", func(_ testing.TB, cfg budget.Config) *budget.Limiter { return budget.NewMemory(cfg) }},
	{"redis", func(t testing.TB, cfg budget.Config) *budget.Limiter {
		r := testenv.StartRedis(t)
		return budget.NewRedis(r.Client(t), cfg)
	}},
}

func hashes(prefix string, n int) []string {
	out := make([]string, n)
	for i := range out {
		out[i] = fmt.Sprintf("%s%030d", prefix, i)
	}
	return out
}

func ctx(t testing.TB) context.Context {
	c, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	t.Cleanup(cancel)
	return c
}

// exceeded returns the limit err names, or "" when err is no refusal.
func exceeded(err error) (budget.Limit, bool) {
	var e *budget.ExceededError
	if !errors.As(err, &e) || !errors.Is(err, budget.ErrExceeded) {
		return "", false
	}
	return e.Limit, e.Suspended
}

const alice = "spiffe://jeton.dev/ttp/test-alice"

func TestLimits(t *testing.T) {
	for _, b := range backends {
		t.Run(b.name, func(t *testing.T) {
			t.Run("max_batch", func(t *testing.T) {
				l := b.new(t, budget.Config{Now: newClock().Now})
				lim := budget.Limits{MaxBatch: 3}
				if err := l.Reserve(ctx(t), budget.Request{Identity: alice, Limits: lim, Items: 3, Lookups: hashes("a", 3)}); err != nil {
					t.Fatalf("3 items under max_batch 3: %v", err)
				}
				err := l.Reserve(ctx(t), budget.Request{Identity: alice, Limits: lim, Items: 4, Lookups: hashes("a", 2)})
				if got, _ := exceeded(err); got != budget.LimitMaxBatch {
					t.Fatalf("4 items under max_batch 3: got %v, want max_batch exceeded", err)
				}
			})
			t.Run("rate by cost, no lookups", func(t *testing.T) {
				l := b.new(t, budget.Config{Now: newClock().Now})
				lim := budget.Limits{Rate: 1, Burst: 10}
				if err := l.Reserve(ctx(t), budget.Request{Identity: alice, Limits: lim, Items: 10, Cost: 10}); err != nil {
					t.Fatalf("a full burst by cost: %v", err)
				}
				if got, _ := exceeded(l.Reserve(ctx(t), budget.Request{Identity: alice, Limits: lim, Items: 1, Cost: 1})); got != budget.LimitRate {
					t.Fatal("a call costing past the burst was admitted")
				}
			})
			t.Run("rate", func(t *testing.T) {
				clk := newClock()
				l := b.new(t, budget.Config{Now: clk.Now})
				lim := budget.Limits{Rate: 5, Burst: 10}
				req := func(n int) error {
					return l.Reserve(ctx(t), budget.Request{Identity: alice, Limits: lim, Items: n, Lookups: hashes("r", n)})
				}
				if err := req(10); err != nil {
					t.Fatalf("a full burst: %v", err)
				}
				if got, _ := exceeded(req(1)); got != budget.LimitRate {
					t.Fatal("one item beyond the burst was admitted")
				}
				clk.Advance(200 * time.Millisecond) // refills one token at 5/s
				if err := req(1); err != nil {
					t.Fatalf("after refilling one token: %v", err)
				}
				if got, _ := exceeded(req(1)); got != budget.LimitRate {
					t.Fatal("a second item after one refilled token was admitted")
				}
				clk.Advance(time.Hour) // refills to the burst, never beyond
				if err := req(10); err != nil {
					t.Fatalf("a full burst after an hour: %v", err)
				}
				if got, _ := exceeded(req(1)); got != budget.LimitRate {
					t.Fatal("the bucket refilled beyond its burst")
				}
			})
			t.Run("distinct", func(t *testing.T) {
				clk := newClock()
				l := b.new(t, budget.Config{Now: clk.Now})
				lim := budget.Limits{Distinct: 5, Window: time.Minute}
				req := func(h []string) error {
					return l.Reserve(ctx(t), budget.Request{Identity: alice, Limits: lim, Items: len(h), Lookups: h})
				}
				five := hashes("d", 5)
				if err := req(five[:3]); err != nil {
					t.Fatal(err)
				}
				// Duplicates in a call and records already seen cost nothing.
				if err := req(append(five, five[0], five[1])); err != nil {
					t.Fatalf("reading the same five records again: %v", err)
				}
				if got, _ := exceeded(req(hashes("e", 1))); got != budget.LimitDistinct {
					t.Fatal("a sixth distinct record was admitted under a budget of five")
				}
				// A refused call is refused whole: none of its records count.
				clk.Advance(30 * time.Second)
				if got, _ := exceeded(req(append(five[:1], hashes("f", 1)...))); got != budget.LimitDistinct {
					t.Fatal("a call with one new record over budget was admitted")
				}
				// The window slides: five[3:] were last read at 0s, five[:3]
				// also at 0s; at 61s all have left it.
				clk.Advance(31 * time.Second)
				if err := req(hashes("g", 5)); err != nil {
					t.Fatalf("five new records once the window slid: %v", err)
				}
			})
			t.Run("suspend_after", func(t *testing.T) {
				clk := newClock()
				l := b.new(t, budget.Config{Now: clk.Now})
				lim := budget.Limits{Distinct: 2, Window: time.Minute, SuspendAfter: 2}
				req := func(h []string) error {
					return l.Reserve(ctx(t), budget.Request{Identity: alice, Limits: lim, Items: len(h), Lookups: h})
				}
				if err := req(hashes("s", 2)); err != nil {
					t.Fatal(err)
				}
				if lim, susp := exceeded(req(hashes("t", 1))); lim != budget.LimitDistinct || susp {
					t.Fatalf("first refusal: limit %q suspended %v, want distinct and not suspended", lim, susp)
				}
				// A second refusal, of records not refused before.
				if lim, susp := exceeded(req(hashes("v", 1))); lim != budget.LimitDistinct || !susp {
					t.Fatalf("second refusal: limit %q suspended %v, want distinct and suspended", lim, susp)
				}
				// Suspended: even a call within every limit is refused.
				if err := req(nil); !errors.Is(err, budget.ErrSuspended) {
					t.Fatalf("suspended identity: got %v, want ErrSuspended", err)
				}
				if err := l.Reserve(ctx(t), budget.Request{Identity: alice}); !errors.Is(err, budget.ErrSuspended) {
					t.Fatalf("suspended identity without limits: got %v, want ErrSuspended", err)
				}
				other := "spiffe://jeton.dev/ttp/test-bob"
				if err := l.Reserve(ctx(t), budget.Request{Identity: other, Limits: lim, Lookups: hashes("s", 2)}); err != nil {
					t.Fatalf("another identity is not affected: %v", err)
				}
				got, err := l.Suspended(ctx(t))
				if err != nil || len(got) != 1 || got[0] != alice {
					t.Fatalf("Suspended() = %q, %v; want just the suspended identity", got, err)
				}
				if ok, err := l.Reinstate(ctx(t), alice); err != nil || !ok {
					t.Fatalf("Reinstate = %v, %v; want true", ok, err)
				}
				if ok, _ := l.Reinstate(ctx(t), alice); ok {
					t.Fatal("reinstating twice reported a suspension the second time")
				}
				if got, _ := l.Suspended(ctx(t)); len(got) != 0 {
					t.Fatalf("Suspended() after reinstating = %q", got)
				}
				// Reinstated, the budget still holds until the window slides,
				// and the refusal count starts afresh.
				if lim, susp := exceeded(req(hashes("t", 1))); lim != budget.LimitDistinct || susp {
					t.Fatalf("after reinstating: limit %q suspended %v, want distinct, not suspended", lim, susp)
				}
				clk.Advance(2 * time.Minute)
				if err := req(hashes("u", 2)); err != nil {
					t.Fatalf("after reinstating and the window sliding: %v", err)
				}
			})
			t.Run("suspend", func(t *testing.T) {
				l := b.new(t, budget.Config{Now: newClock().Now})
				if ok, err := l.Suspend(ctx(t), alice, "canary"); err != nil || !ok {
					t.Fatalf("Suspend = %v, %v; want true", ok, err)
				}
				if ok, _ := l.Suspend(ctx(t), alice, "canary"); ok {
					t.Fatal("suspending twice reported a new suspension")
				}
				if err := l.Reserve(ctx(t), budget.Request{Identity: alice}); !errors.Is(err, budget.ErrSuspended) {
					t.Fatalf("got %v, want ErrSuspended", err)
				}
			})
		})
	}
}

func TestValidate(t *testing.T) {
	tests := []struct {
		name  string
		lim   budget.Limits
		field string // named in the error; "" for valid
	}{
		{"zero", budget.Limits{}, ""},
		{"full", budget.Limits{MaxBatch: 100, Rate: 50, Burst: 200, Distinct: 1000, Window: time.Hour, SuspendAfter: 3}, ""},
		{"negative batch", budget.Limits{MaxBatch: -1}, "max_batch"},
		{"rate without burst", budget.Limits{Rate: 1}, "burst"},
		{"burst without rate", budget.Limits{Burst: 1}, "rate"},
		{"burst under batch", budget.Limits{MaxBatch: 10, Rate: 1, Burst: 5}, "burst"},
		{"negative distinct", budget.Limits{Distinct: -1}, "distinct"},
		{"negative window", budget.Limits{Window: -time.Second}, "window"},
		{"negative suspend", budget.Limits{SuspendAfter: -1}, "suspend_after"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			err := tt.lim.Validate()
			if tt.field == "" {
				if err != nil {
					t.Fatalf("Validate: %v", err)
				}
				return
			}
			if err == nil || !strings.Contains(err.Error(), tt.field) {
				t.Fatalf("Validate = %v, want an error naming %s", err, tt.field)
			}
		})
	}
}

// TestDistinctAcrossReplicas hammers one budget from two Limiters, as two
// jetond replicas would, each with its own connection to one real Redis.
// The union of admitted records never exceeds the budget, and once
// saturated it equals it exactly.
func TestDistinctAcrossReplicas(t *testing.T) {
	r := testenv.StartRedis(t)
	replicas := []*budget.Limiter{
		budget.NewRedis(redis.NewClient(&redis.Options{Addr: r.Addr}), budget.Config{}),
		budget.NewRedis(redis.NewClient(&redis.Options{Addr: r.Addr}), budget.Config{}),
	}
	const limit = 1000
	lim := budget.Limits{Distinct: limit, Window: time.Hour}
	pool := hashes("p", 4000)

	var (
		mu       sync.Mutex
		admitted = map[string]bool{}
		calls    atomic.Int64
		refused  atomic.Int64
	)
	try := func(l *budget.Limiter, batch []string) bool {
		calls.Add(1)
		err := l.Reserve(ctx(t), budget.Request{Identity: alice, Limits: lim, Items: len(batch), Lookups: batch})
		if err == nil {
			mu.Lock()
			for _, h := range batch {
				admitted[h] = true
			}
			mu.Unlock()
			return true
		}
		if got, _ := exceeded(err); got != budget.LimitDistinct {
			t.Errorf("Reserve: %v", err)
		}
		refused.Add(1)
		return false
	}
	var wg sync.WaitGroup
	for g := range 16 {
		wg.Add(1)
		go func() {
			defer wg.Done()
			rng := rand.New(rand.NewPCG(uint64(g), 7))
			l := replicas[g%2]
			// Random overlapping batches, then single fresh records until
			// the budget refuses: the end state is saturated.
			for range 60 {
				batch := make([]string, 1+rng.IntN(10))
				for i := range batch {
					batch[i] = pool[rng.IntN(len(pool))]
				}
				try(l, batch)
			}
			for i := g; i < len(pool); i += 16 {
				if !try(l, pool[i:i+1]) {
					mu.Lock()
					seen := admitted[pool[i]]
					mu.Unlock()
					if !seen {
						break
					}
				}
			}
		}()
	}
	wg.Wait()

	if len(admitted) != limit {
		t.Fatalf("admitted %d distinct records across replicas, want exactly the budget %d", len(admitted), limit)
	}
	if refused.Load() == 0 {
		t.Fatal("no call was refused: the test never reached the budget")
	}
	n, err := r.Client(t).ZCard(ctx(t), "jeton:b:{"+budget.Key(alice)+"}:seen").Result()
	if err != nil || n != limit {
		t.Fatalf("Redis holds %d records for the identity (%v), want %d", n, err, limit)
	}
	t.Logf("%d calls, %d refused", calls.Load(), refused.Load())
}

// TestRedisDownFailsClosed: with Redis gone, Reserve refuses with
// ErrUnavailable, never admits; it recovers when Redis is back.
func TestRedisDownFailsClosed(t *testing.T) {
	r := testenv.StartRedis(t)
	c := redis.NewClient(&redis.Options{Addr: r.Addr, MaxRetries: -1, DialTimeout: time.Second})
	t.Cleanup(func() { c.Close() })
	l := budget.NewRedis(c, budget.Config{})
	req := budget.Request{Identity: alice, Items: 1, Lookups: hashes("x", 1)}
	if err := l.Reserve(ctx(t), req); err != nil {
		t.Fatal(err)
	}
	r.Kill()
	// Without limits too: the suspension check alone needs Redis.
	if err := l.Reserve(ctx(t), req); !errors.Is(err, budget.ErrUnavailable) {
		t.Fatalf("Reserve with Redis down: %v, want ErrUnavailable", err)
	}
	if _, err := l.Suspended(ctx(t)); !errors.Is(err, budget.ErrUnavailable) {
		t.Fatalf("Suspended with Redis down: %v, want ErrUnavailable", err)
	}
	r.Start()
	if err := l.Reserve(ctx(t), req); err != nil {
		t.Fatalf("Reserve after Redis came back: %v", err)
	}
}

// TestKeyNames pins the key layout: every key is named by the identity's
// hash, never the identity or a token, and shares one cluster hash tag.
func TestKeyNames(t *testing.T) {
	r := testenv.StartRedis(t)
	l := budget.NewRedis(r.Client(t), budget.Config{})
	lim := budget.Limits{Rate: 10, Burst: 10, Distinct: 10}
	if err := l.Reserve(ctx(t), budget.Request{Identity: alice, Limits: lim, Items: 1, Lookups: hashes("k", 1)}); err != nil {
		t.Fatal(err)
	}
	if _, err := l.Suspend(ctx(t), alice, "canary"); err != nil {
		t.Fatal(err)
	}
	keys, err := r.Client(t).Keys(ctx(t), "*").Result()
	if err != nil {
		t.Fatal(err)
	}
	h := budget.Key(alice)
	if len(h) != 32 {
		t.Fatalf("Key is %d characters, want 32", len(h))
	}
	want := map[string]bool{
		"jeton:b:{" + h + "}:bucket": true, "jeton:b:{" + h + "}:seen": true, "jeton:susp:{" + h + "}": true,
	}
	for _, k := range keys {
		if !want[k] {
			t.Errorf("unexpected key %q", k)
		}
		delete(want, k)
	}
	for k := range want {
		t.Errorf("missing key %q", k)
	}
}
