package budget_test

import (
	"errors"
	"math/rand/v2"
	"reflect"
	"testing"
	"time"

	"github.com/jeton-dev/jeton/server/budget"
)

// TestMerge: the merged budget of two roles is never looser than either,
// bound by bound; distinct bounds are kept per window.
func TestMerge(t *testing.T) {
	tests := []struct {
		name string
		a, b budget.Limits
		want budget.Limits
	}{
		{
			// The example of the report: 1,000 per 24h and 10 per minute
			// must not become 1,000 per minute.
			name: "two windows are both kept",
			a:    budget.Limits{Distinct: 1000, Window: 24 * time.Hour},
			b:    budget.Limits{Distinct: 10, Window: time.Minute},
			want: budget.Limits{Distinct: 1000, Window: 24 * time.Hour, Also: []budget.Bound{{Distinct: 10, Window: time.Minute}}},
		},
		{
			name: "a bound implied by a tighter, longer one is dropped",
			a:    budget.Limits{Distinct: 10, Window: 24 * time.Hour},
			b:    budget.Limits{Distinct: 1000, Window: time.Minute},
			want: budget.Limits{Distinct: 10, Window: 24 * time.Hour},
		},
		{
			name: "same window: the smaller budget",
			a:    budget.Limits{Distinct: 500, Window: time.Hour},
			b:    budget.Limits{Distinct: 50, Window: time.Hour},
			want: budget.Limits{Distinct: 50, Window: time.Hour},
		},
		{
			name: "default window equals an explicit 24h",
			a:    budget.Limits{Distinct: 500},
			b:    budget.Limits{Distinct: 50, Window: 24 * time.Hour},
			want: budget.Limits{Distinct: 50, Window: 24 * time.Hour},
		},
		{
			name: "the smaller of each bound set by both",
			a:    budget.Limits{MaxBatch: 100, Rate: 50, Burst: 200, SuspendAfter: 5},
			b:    budget.Limits{MaxBatch: 20, Rate: 5, Burst: 60, SuspendAfter: 2},
			want: budget.Limits{MaxBatch: 20, Rate: 5, Burst: 60, SuspendAfter: 2},
		},
		{
			name: "a bound set by one role only is kept",
			a:    budget.Limits{MaxBatch: 100},
			b:    budget.Limits{Distinct: 7, Window: time.Hour, SuspendAfter: 3},
			want: budget.Limits{MaxBatch: 100, Distinct: 7, Window: time.Hour, SuspendAfter: 3},
		},
		{
			name: "a batch larger than the merged burst is cut to it",
			a:    budget.Limits{MaxBatch: 100},
			b:    budget.Limits{Rate: 1, Burst: 5},
			want: budget.Limits{MaxBatch: 5, Rate: 1, Burst: 5},
		},
		{
			name: "no budget merged with one is that one",
			a:    budget.Limits{},
			b:    budget.Limits{MaxBatch: 10, Rate: 2, Burst: 10, Distinct: 100, Window: time.Hour, SuspendAfter: 3},
			want: budget.Limits{MaxBatch: 10, Rate: 2, Burst: 10, Distinct: 100, Window: time.Hour, SuspendAfter: 3},
		},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			for _, got := range []budget.Limits{budget.Merge(tt.a, tt.b), budget.Merge(tt.b, tt.a)} {
				if !reflect.DeepEqual(got, tt.want) {
					t.Fatalf("Merge = %+v, want %+v", got, tt.want)
				}
				if err := got.Validate(); err != nil {
					t.Fatalf("the merged limits are invalid: %v", err)
				}
			}
		})
	}
}

// TestMergeNeverLooser checks the rule on random limits: every bound of
// either role is at least as tight in the merge, and the merge is
// commutative and associative.
func TestMergeNeverLooser(t *testing.T) {
	rng := rand.New(rand.NewPCG(1, 2))
	windows := []time.Duration{0, time.Minute, time.Hour, 24 * time.Hour}
	random := func() budget.Limits {
		var l budget.Limits
		if rng.IntN(2) == 0 {
			l.MaxBatch = 1 + rng.IntN(100)
		}
		if rng.IntN(2) == 0 {
			l.Rate = float64(1 + rng.IntN(50))
			l.Burst = max(l.MaxBatch, 1+rng.IntN(300))
		}
		if rng.IntN(3) > 0 {
			l.Distinct = 1 + rng.IntN(2000)
		}
		l.Window = windows[rng.IntN(len(windows))]
		if rng.IntN(2) == 0 {
			l.SuspendAfter = 1 + rng.IntN(5)
		}
		return l
	}
	// tighter reports whether bound m is at least as tight as bound r,
	// zero meaning "no bound".
	tighter := func(m, r float64) bool { return r == 0 || m != 0 && m <= r }
	for i := range 2000 {
		a, b, c := random(), random(), random()
		m := budget.Merge(a, b)
		if err := m.Validate(); err != nil {
			t.Fatalf("case %d: Merge(%+v, %+v) is invalid: %v", i, a, b, err)
		}
		for _, r := range []budget.Limits{a, b} {
			if !tighter(float64(m.MaxBatch), float64(r.MaxBatch)) || !tighter(m.Rate, r.Rate) ||
				!tighter(float64(m.Burst), float64(r.Burst)) || !tighter(float64(m.SuspendAfter), float64(r.SuspendAfter)) {
				t.Fatalf("case %d: Merge(%+v, %+v) = %+v is looser than %+v", i, a, b, m, r)
			}
			if r.Distinct > 0 && !allows(m, r.Distinct, windowOf(r)) {
				t.Fatalf("case %d: Merge(%+v, %+v) = %+v allows more than %d per %v", i, a, b, m, r.Distinct, windowOf(r))
			}
		}
		if !reflect.DeepEqual(m, budget.Merge(b, a)) {
			t.Fatalf("case %d: Merge is not commutative for %+v and %+v", i, a, b)
		}
		if !reflect.DeepEqual(budget.Merge(m, c), budget.Merge(a, budget.Merge(b, c))) {
			t.Fatalf("case %d: Merge is not associative", i)
		}
	}
}

func windowOf(l budget.Limits) time.Duration {
	if l.Window == 0 {
		return budget.DefaultWindow
	}
	return l.Window
}

// allows reports whether m bounds the distinct records of any window w to
// at most n: some bound of m over a window at least as long allows no
// more than n.
func allows(m budget.Limits, n int, w time.Duration) bool {
	bounds := append([]budget.Bound{{Distinct: m.Distinct, Window: windowOf(m)}}, m.Also...)
	for _, b := range bounds {
		if b.Distinct > 0 && b.Window >= w && b.Distinct <= n {
			return true
		}
	}
	return false
}

// TestMergedWindowsEnforced: a merged budget of 1,000 per 24h and 10 per
// minute admits 10 records a minute, and no more than 1,000 a day.
func TestMergedWindowsEnforced(t *testing.T) {
	lim := budget.Merge(budget.Limits{Distinct: 30, Window: 24 * time.Hour}, budget.Limits{Distinct: 10, Window: time.Minute})
	for _, b := range backends {
		t.Run(b.name, func(t *testing.T) {
			clk := newClock()
			l := b.new(t, budget.Config{Now: clk.Now})
			req := func(h []string) error {
				return l.Reserve(ctx(t), budget.Request{Identity: alice, Limits: lim, Items: len(h), Lookups: h})
			}
			if err := req(hashes("a", 10)); err != nil {
				t.Fatalf("10 records in the first minute: %v", err)
			}
			if got, _ := exceeded(req(hashes("b", 1))); got != budget.LimitDistinct {
				t.Fatal("an 11th record within a minute was admitted: the minute bound was lost in the merge")
			}
			// Re-reading costs nothing in either window.
			if err := req(hashes("a", 10)); err != nil {
				t.Fatalf("re-reading the same 10 records: %v", err)
			}
			for minute := 1; minute <= 2; minute++ {
				clk.Advance(time.Minute)
				if err := req(hashes(string(rune('b'+minute)), 10)); err != nil {
					t.Fatalf("10 new records in minute %d: %v", minute, err)
				}
			}
			// 30 records today: the day bound holds once the minute's has
			// room again.
			clk.Advance(time.Minute)
			if got, _ := exceeded(req(hashes("z", 1))); got != budget.LimitDistinct {
				t.Fatal("a 31st record within the day was admitted: the day bound was lost in the merge")
			}
			// A record read 3 minutes ago is new for the minute bound but
			// not for the day's: re-reading it fits the day bound.
			if err := req(hashes("a", 1)); err != nil {
				t.Fatalf("re-reading a record of the day: %v", err)
			}
			clk.Advance(24 * time.Hour)
			if err := req(hashes("y", 10)); err != nil {
				t.Fatalf("a new day: %v", err)
			}
		})
	}
}

// TestRateRefusalsNeverSuspend: a client retrying too fast is refused
// with the delay after which the call fits, and never suspended, however
// many times it is refused; a distinct refusal still suspends.
func TestRateRefusalsNeverSuspend(t *testing.T) {
	for _, b := range backends {
		t.Run(b.name, func(t *testing.T) {
			clk := newClock()
			l := b.new(t, budget.Config{Now: clk.Now})
			lim := budget.Limits{MaxBatch: 4, Rate: 5, Burst: 10, Distinct: 30, Window: time.Hour, SuspendAfter: 1}
			req := func(h []string) error {
				return l.Reserve(ctx(t), budget.Request{Identity: alice, Limits: lim, Items: len(h), Lookups: h})
			}
			if err := req(hashes("a", 4)); err != nil {
				t.Fatal(err)
			}
			if err := req(hashes("b", 4)); err != nil {
				t.Fatal(err)
			}
			// 2 tokens left: 3 items need one more, 200ms at 5/s.
			for range 50 {
				err := req(hashes("c", 3))
				var ex *budget.ExceededError
				if !errors.As(err, &ex) || ex.Limit != budget.LimitRate || ex.Suspended {
					t.Fatalf("a call past the rate: got %v, want a rate refusal that does not suspend", err)
				}
				if ex.RetryAfter != 200*time.Millisecond {
					t.Fatalf("RetryAfter = %v, want 200ms (one token at 5/s)", ex.RetryAfter)
				}
			}
			for range 20 {
				var ex *budget.ExceededError
				if err := req(hashes("d", 5)); !errors.As(err, &ex) || ex.Limit != budget.LimitMaxBatch || ex.Suspended || ex.RetryAfter != 0 {
					t.Fatalf("a call over max_batch: got %v, want a batch refusal with no retry delay and no suspension", err)
				}
			}
			clk.Advance(200 * time.Millisecond)
			if err := req(hashes("c", 3)); err != nil {
				t.Fatalf("after waiting RetryAfter: %v", err)
			}
			if got, err := l.Suspended(ctx(t)); err != nil || len(got) != 0 {
				t.Fatalf("Suspended = %v, %v after rate and batch refusals only; want nobody", got, err)
			}
			// Exhausting the distinct budget does suspend.
			clk.Advance(time.Hour / 2)
			for i := 0; ; i++ {
				clk.Advance(time.Second) // within the rate: only the distinct budget refuses
				err := req(hashes(string(rune('e'+i)), 4))
				if err == nil {
					continue
				}
				if got, susp := exceeded(err); got != budget.LimitDistinct || !susp {
					t.Fatalf("the sweep: got %v, want the distinct refusal that suspends", err)
				}
				break
			}
			if err := req(nil); !errors.Is(err, budget.ErrSuspended) {
				t.Fatalf("after the sweep: got %v, want ErrSuspended", err)
			}
		})
	}
}

// A call costing more than the burst can never fit: no retry delay.
func TestNoRetryDelayPastTheBurst(t *testing.T) {
	for _, b := range backends {
		t.Run(b.name, func(t *testing.T) {
			l := b.new(t, budget.Config{Now: newClock().Now})
			var ex *budget.ExceededError
			err := l.Reserve(ctx(t), budget.Request{Identity: alice, Limits: budget.Limits{Rate: 1, Burst: 5}, Items: 6, Cost: 6})
			if !errors.As(err, &ex) || ex.Limit != budget.LimitRate || ex.RetryAfter != 0 {
				t.Fatalf("got %v, want a rate refusal with no retry delay", err)
			}
		})
	}
}

// TestRetriesDoNotSuspend: suspension reflects extraction, not retries. A
// client that sends one over-budget call again and again is refused each
// time, and its refusals count once towards suspend_after; a sweep, each
// call asking for records not refused before, is suspended as before.
func TestRetriesDoNotSuspend(t *testing.T) {
	for _, b := range backends {
		t.Run(b.name, func(t *testing.T) {
			clk := newClock()
			l := b.new(t, budget.Config{Now: clk.Now})
			lim := budget.Limits{Distinct: 2, Window: time.Minute, SuspendAfter: 3}
			req := func(h []string) error {
				return l.Reserve(ctx(t), budget.Request{Identity: alice, Limits: lim, Items: len(h), Lookups: h})
			}
			seen := hashes("s", 2)
			if err := req(seen); err != nil {
				t.Fatal(err)
			}
			// The same refused call, 20 times, some with records already
			// read: one refusal towards suspension.
			over := hashes("t", 3)
			for i := range 20 {
				call := over
				if i%2 == 1 {
					call = append(append([]string{}, seen...), over[:2]...)
				}
				err := req(call)
				if lim, susp := exceeded(err); lim != budget.LimitDistinct || susp {
					t.Fatalf("retry %d: limit %q suspended %v, want a distinct refusal that does not suspend", i, lim, susp)
				}
				var ex *budget.ExceededError
				if errors.As(err, &ex); ex.Repeat != (i > 0) {
					t.Fatalf("retry %d: Repeat = %v", i, ex.Repeat)
				}
				clk.Advance(time.Millisecond)
			}
			if u, err := l.Usage(ctx(t), alice, lim); err != nil || u.Refusals != 1 || u.Suspended {
				t.Fatalf("usage after 20 retries of one call: %+v, %v; want 1 refusal, not suspended", u, err)
			}
			// A sweep: each call asks for records never refused.
			if lim, susp := exceeded(req(hashes("u", 1))); lim != budget.LimitDistinct || susp {
				t.Fatalf("second new batch: limit %q suspended %v, want distinct, not suspended", lim, susp)
			}
			if lim, susp := exceeded(req(append(over, hashes("v", 1)...))); lim != budget.LimitDistinct || !susp {
				t.Fatalf("third new batch: limit %q suspended %v, want the refusal that suspends", lim, susp)
			}
		})
	}
}
