package budget_test

import (
	"context"
	"errors"
	"fmt"
	"math/rand/v2"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/redis/go-redis/v9"

	"github.com/jeton-dev/jeton/integration/testenv"
	"github.com/jeton-dev/jeton/server/budget"
)

// TestCallSpendingNothing: a call that looks nothing up and costs no rate
// token (a tokenization of random classes only, a reveal of malformed
// tokens only) is refused only by a suspension or its batch size. It is
// never a distinct refusal, even for an identity whose budget was lowered
// below the records it already read, so it never counts towards a
// suspension.
func TestCallSpendingNothing(t *testing.T) {
	for _, b := range backends {
		t.Run(b.name, func(t *testing.T) {
			clk := newClock()
			l := b.new(t, budget.Config{Now: clk.Now})
			wide := budget.Limits{MaxBatch: 10, Distinct: 5, Window: time.Hour, SuspendAfter: 1}
			if err := l.Reserve(ctx(t), budget.Request{Identity: alice, Limits: wide, Items: 5, Lookups: hashes("n", 5)}); err != nil {
				t.Fatal(err)
			}
			// The budget is lowered below the five records counted.
			narrow := wide
			narrow.Distinct = 2
			for range 3 {
				if err := l.Reserve(ctx(t), budget.Request{Identity: alice, Limits: narrow, Items: 3}); err != nil {
					t.Fatalf("a call spending nothing over a lowered budget: %v, want admitted", err)
				}
			}
			if got, _ := exceeded(l.Reserve(ctx(t), budget.Request{Identity: alice, Limits: narrow, Items: 11})); got != budget.LimitMaxBatch {
				t.Fatal("a call spending nothing but over max_batch was admitted")
			}
			u, err := l.Usage(ctx(t), alice, narrow)
			if err != nil {
				t.Fatal(err)
			}
			if u.Refusals != 0 || u.Suspended || u.Distinct != 5 {
				t.Fatalf("usage %+v: calls spending nothing counted a refusal or a record", u)
			}
			// A lookup of a new record over the lowered budget is refused,
			// and suspends. (One of a record read within the window is
			// refused too but no sweep: it counts towards no suspension.)
			if lim, susp := exceeded(l.Reserve(ctx(t), budget.Request{Identity: alice, Limits: narrow, Items: 1, Lookups: hashes("n", 1)})); lim != budget.LimitDistinct || susp {
				t.Fatalf("a lookup of a record read within the window, over the lowered budget: %q suspended %v, want distinct, not suspended", lim, susp)
			}
			if lim, susp := exceeded(l.Reserve(ctx(t), budget.Request{Identity: alice, Limits: narrow, Items: 1, Lookups: hashes("fresh", 1)})); lim != budget.LimitDistinct || !susp {
				t.Fatalf("a lookup over the lowered budget: %q suspended %v, want distinct and suspended", lim, susp)
			}
			// Suspended, a call spending nothing is refused before its
			// batch size is looked at.
			for _, items := range []int{0, 11} {
				if err := l.Reserve(ctx(t), budget.Request{Identity: alice, Limits: narrow, Items: items}); !errors.Is(err, budget.ErrSuspended) {
					t.Fatalf("suspended identity, a call of %d items spending nothing: %v, want ErrSuspended", items, err)
				}
			}
		})
	}
}

// TestReserveCommands pins what one call costs Redis in commands, those
// the script runs included: the same whatever the number of lookups (one
// ZADD writes them, per 1,000), one ZMSCORE more only for a call that
// could go over a distinct bound if all its lookups were new, one EXISTS
// for a call spending nothing, and no write for a refused call.
func TestReserveCommands(t *testing.T) {
	r := testenv.StartRedis(t)
	c := r.Client(t)
	l := budget.NewRedis(c, budget.Config{})
	wide := budget.Limits{MaxBatch: 5000, Rate: 1e6, Burst: 1e6, Distinct: 1e6, Window: time.Hour}
	two := budget.Merge(wide, budget.Limits{Distinct: 1e5, Window: time.Minute})
	run := func(identity string, lim budget.Limits, lookups []string, cost int) (map[string]int64, error) {
		t.Helper()
		before := commandCounts(t, c)
		err := l.Reserve(ctx(t), budget.Request{Identity: identity, Limits: lim, Items: max(len(lookups), 1), Lookups: lookups, Cost: cost})
		after := commandCounts(t, c)
		per := map[string]int64{}
		for name, v := range after {
			if d := v - before[name]; d > 0 && name != "info" {
				per[name] = d
			}
		}
		return per, err
	}
	total := func(per map[string]int64) (n int64) {
		for _, v := range per {
			n += v
		}
		return n
	}
	if _, err := run(alice, wide, hashes("warm", 1), 0); err != nil { // loads the script (NOSCRIPT, then EVAL)
		t.Fatal(err)
	}

	one, err := run(alice, wide, hashes("one", 1), 0)
	if err != nil {
		t.Fatal(err)
	}
	want := map[string]int64{"evalsha": 1, "time": 1, "exists": 1, "get": 1, "zremrangebyscore": 1,
		"zcard": 1, "set": 1, "pexpire": 1, "zadd": 1}
	if fmt.Sprint(one) != fmt.Sprint(want) {
		t.Fatalf("one lookup ran %v, want %v", one, want)
	}
	for i, tc := range []struct {
		name    string
		lim     budget.Limits
		lookups int
		extra   int64
	}{
		{"100 lookups", wide, 100, 0},
		{"1,000 lookups", wide, 1000, 0},
		{"2,500 lookups: three ZADD", wide, 2500, 2},
		{"two windows: one ZCOUNT more", two, 100, 1},
	} {
		per, err := run(alice, tc.lim, hashes(fmt.Sprintf("n%d-", i), tc.lookups), 0)
		if err != nil {
			t.Fatal(err)
		}
		if total(per) != total(one)+tc.extra {
			t.Errorf("%s: %v, want %d commands", tc.name, per, total(one)+tc.extra)
		}
	}
	if per, err := run(alice, wide, nil, 0); err != nil || total(per) != 1 || per["exists"] != 1 {
		t.Errorf("a call spending nothing ran %v (%v), want one EXISTS", per, err)
	}

	// Close to the budget the scores are read, and the count is exact:
	// 5 records known, 8 lookups of which 3 new fit a budget of 10.
	const carol = "spiffe://jeton.dev/ttp/test-carol"
	tight := budget.Limits{Distinct: 10, Window: time.Hour}
	known := hashes("k", 5)
	if _, err := run(carol, tight, known, 0); err != nil {
		t.Fatal(err)
	}
	per, err := run(carol, tight, append(known, hashes("new", 3)...), 0)
	if err != nil {
		t.Fatalf("3 new records with 5 of a budget of 10 left: %v", err)
	}
	if per["zmscore"] != 1 || per["zadd"] != 1 {
		t.Errorf("a call close to the budget ran %v, want one ZMSCORE and one ZADD", per)
	}
	// A refused call writes nothing but its refusal count.
	per, err = run(carol, tight, hashes("over", 3), 0)
	if got, _ := exceeded(err); got != budget.LimitDistinct {
		t.Fatalf("over the budget: %v", err)
	}
	if per["zadd"] != 0 || per["set"] != 0 || per["zmscore"] != 1 || per["incr"] != 1 {
		t.Errorf("a refused call ran %v, want one ZMSCORE, one INCR and no ZADD or SET", per)
	}
}

// commandCounts reads INFO commandstats: the calls of each command, by
// name (a subcommand as "config|resetstat").
func commandCounts(t testing.TB, c *redis.Client) map[string]int64 {
	t.Helper()
	info, err := c.InfoMap(context.Background(), "commandstats").Result()
	if err != nil {
		t.Fatal(err)
	}
	out := map[string]int64{}
	for name, v := range info["Commandstats"] {
		for _, f := range strings.Split(v, ",") {
			if n, ok := strings.CutPrefix(f, "calls="); ok {
				x, err := strconv.ParseInt(n, 10, 64)
				if err != nil {
					t.Fatalf("INFO commandstats %s: %v", name, err)
				}
				out[strings.TrimPrefix(name, "cmdstat_")] = x
			}
		}
	}
	return out
}

// TestRedisDecidesAsMemory: over a long random sequence of calls (records
// read again and new, windows sliding, bounds near and far, costs with and
// without lookups), the Redis script decides every call exactly as the
// memory backend does, and leaves the same usage behind. The memory
// backend counts with no shortcut, so the script's (counting scores only
// near a bound) must never change a decision.
func TestRedisDecidesAsMemory(t *testing.T) {
	r := testenv.StartRedis(t)
	clk := newClock()
	mem := budget.NewMemory(budget.Config{Now: clk.Now})
	red := budget.NewRedis(r.Client(t), budget.Config{Now: clk.Now})
	lim := budget.Merge(
		budget.Limits{MaxBatch: 12, Rate: 20, Burst: 40, Distinct: 60, Window: time.Hour, SuspendAfter: 1000},
		budget.Limits{Distinct: 15, Window: time.Minute})
	pool := hashes("p", 150)
	rng := rand.New(rand.NewPCG(1, 2))
	verdict := func(err error) string {
		var ex *budget.ExceededError
		if errors.As(err, &ex) {
			return fmt.Sprintf("exceeded %s suspended=%v retry=%v", ex.Limit, ex.Suspended, ex.RetryAfter)
		}
		return fmt.Sprint(err)
	}
	admitted := 0
	for step := range 600 {
		req := budget.Request{Identity: alice, Limits: lim}
		switch rng.IntN(10) {
		case 0: // spends nothing
			req.Items = rng.IntN(14)
		case 1: // costs without lookups
			req.Items = 1 + rng.IntN(5)
			req.Cost = req.Items
		default:
			req.Lookups = make([]string, 1+rng.IntN(13))
			for i := range req.Lookups {
				req.Lookups[i] = pool[rng.IntN(len(pool))]
			}
			req.Items = len(req.Lookups)
		}
		want, got := verdict(mem.Reserve(ctx(t), req)), verdict(red.Reserve(ctx(t), req))
		if got != want {
			t.Fatalf("step %d (%d lookups): Redis says %s, memory %s", step, len(req.Lookups), got, want)
		}
		if want == "<nil>" {
			admitted++
		}
		wu, err := mem.Usage(ctx(t), alice, lim)
		if err != nil {
			t.Fatal(err)
		}
		gu, err := red.Usage(ctx(t), alice, lim)
		if err != nil {
			t.Fatal(err)
		}
		if gu != wu {
			t.Fatalf("step %d: Redis usage %+v, memory %+v", step, gu, wu)
		}
		clk.Advance(time.Duration(rng.IntN(8000)) * time.Millisecond)
	}
	if admitted < 100 || admitted > 500 {
		t.Fatalf("%d of 600 calls admitted: the sequence does not probe both sides of the bounds", admitted)
	}
}

// TestRecheck: with Config.Recheck, a call that spends nothing trusts a
// "not suspended" answer for that long. A suspension stops it at once on
// the replica that makes it, and within Recheck on the others; a call
// that spends budget is checked by the script at once everywhere. Without
// Recheck every call asks.
func TestRecheck(t *testing.T) {
	r := testenv.StartRedis(t)
	clk := newClock()
	replica := func(recheck time.Duration) *budget.Limiter {
		return budget.NewRedis(r.Client(t), budget.Config{Now: clk.Now, Recheck: recheck})
	}
	a, b, exact := replica(time.Second), replica(time.Second), replica(0)
	free := budget.Request{Identity: alice, Limits: budget.Limits{MaxBatch: 5}, Items: 1}
	spend := budget.Request{Identity: alice, Limits: budget.Limits{Distinct: 100}, Items: 1, Lookups: hashes("r", 1)}
	admitted := func(who string, l *budget.Limiter, req budget.Request) {
		t.Helper()
		if err := l.Reserve(ctx(t), req); err != nil {
			t.Fatalf("%s: %v, want admitted", who, err)
		}
	}
	refused := func(who string, l *budget.Limiter, req budget.Request) {
		t.Helper()
		if err := l.Reserve(ctx(t), req); !errors.Is(err, budget.ErrSuspended) {
			t.Fatalf("%s: %v, want ErrSuspended", who, err)
		}
	}
	admitted("a, not suspended", a, free)
	admitted("b, not suspended", b, free)
	if _, err := a.Suspend(ctx(t), alice, "canary"); err != nil {
		t.Fatal(err)
	}
	refused("a, which suspended", a, free)
	refused("a replica without recheck", exact, free)
	admitted("b, within its recheck", b, free)
	refused("b, a call that spends", b, spend)
	refused("b, once it saw the suspension", b, free)

	if _, err := a.Reinstate(ctx(t), alice); err != nil {
		t.Fatal(err)
	}
	admitted("b, reinstated", b, free)
	if _, err := a.Suspend(ctx(t), alice, "canary"); err != nil {
		t.Fatal(err)
	}
	admitted("b, within its recheck again", b, free)
	clk.Advance(time.Second)
	refused("b, past its recheck", b, free)
}

// TestWindowEdge: a record read exactly one window ago has left the
// window: reading it again is new, for the count and for the call's own
// lookups alike, on both backends, for the longest window (whose records
// are trimmed) and for a shorter one (whose are not).
func TestWindowEdge(t *testing.T) {
	for _, b := range backends {
		for _, lim := range []budget.Limits{
			{Distinct: 2, Window: time.Minute},
			budget.Merge(budget.Limits{Distinct: 100, Window: time.Hour}, budget.Limits{Distinct: 2, Window: time.Minute}),
		} {
			t.Run(fmt.Sprintf("%s/%d windows", b.name, 1+len(lim.Also)), func(t *testing.T) {
				testWindowEdge(t, b.new, lim)
			})
		}
	}
}

func testWindowEdge(t *testing.T, newLimiter func(testing.TB, budget.Config) *budget.Limiter, lim budget.Limits) {
	clk := newClock()
	l := newLimiter(t, budget.Config{Now: clk.Now})
	req := func(h []string) error {
		return l.Reserve(ctx(t), budget.Request{Identity: alice, Limits: lim, Items: len(h), Lookups: h})
	}
	ab := hashes("e", 2)
	if err := req(ab); err != nil {
		t.Fatal(err)
	}
	clk.Advance(time.Minute - time.Millisecond)
	if got, _ := exceeded(req(append(ab, hashes("x", 1)...))); got != budget.LimitDistinct {
		t.Fatal("a third record a millisecond before the window ends was admitted")
	}
	clk.Advance(time.Millisecond)
	// a and b, read a window ago, are new: with c, three.
	if got, _ := exceeded(req(append(ab, hashes("x", 1)...))); got != budget.LimitDistinct {
		t.Fatal("records read exactly one window ago still counted as read")
	}
	if err := req(ab); err != nil {
		t.Fatalf("the same two records, new again: %v", err)
	}
}

// TestManyLookupsNearTheBudget: a call of more lookups than one command
// carries (its scores read in several parts) is counted exactly near its
// budget: 200 records known, then 2,300 new among 2,500 lookups fit a
// budget of 2,500 and not one of 2,499; and all of them are counted.
func TestManyLookupsNearTheBudget(t *testing.T) {
	for _, b := range backends {
		t.Run(b.name, func(t *testing.T) {
			for _, tc := range []struct {
				distinct int
				admitted bool
			}{{2499, false}, {2500, true}} {
				l := b.new(t, budget.Config{Now: newClock().Now})
				lim := budget.Limits{Distinct: tc.distinct, Window: time.Hour}
				known := hashes("known", 200)
				if err := l.Reserve(ctx(t), budget.Request{Identity: alice, Limits: lim, Items: 200, Lookups: known}); err != nil {
					t.Fatal(err)
				}
				// The known records spread over the call, so that every
				// part holds some.
				lookups := hashes("new", 2300)
				for i, h := range known {
					at := i * 12
					lookups = append(lookups[:at], append([]string{h}, lookups[at:]...)...)
				}
				err := l.Reserve(ctx(t), budget.Request{Identity: alice, Limits: lim, Items: len(lookups), Lookups: lookups})
				if got, _ := exceeded(err); (err == nil) != tc.admitted || err != nil && got != budget.LimitDistinct {
					t.Fatalf("distinct %d: %v, want admitted %v", tc.distinct, err, tc.admitted)
				}
				// Every record of an admitted call is counted, those of a
				// refused one are not.
				want := 200
				if tc.admitted {
					want = 2500
				}
				if u, err := l.Usage(ctx(t), alice, lim); err != nil || u.Distinct != want {
					t.Fatalf("distinct %d: usage %+v, %v; want %d records counted", tc.distinct, u, err, want)
				}
			}
		})
	}
}
