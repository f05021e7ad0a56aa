package budget_test

import (
	"testing"
	"time"

	"github.com/jeton-dev/jeton/server/budget"
)

func TestUsage(t *testing.T) {
	for _, b := range backends {
		t.Run(b.name, func(t *testing.T) {
			clk := newClock()
			l := b.new(t, budget.Config{Now: clk.Now})
			lim := budget.Limits{Distinct: 5, Window: time.Minute, SuspendAfter: 3}
			usage := func(id string) budget.Usage {
				t.Helper()
				u, err := l.Usage(ctx(t), id, lim)
				if err != nil {
					t.Fatalf("Usage: %v", err)
				}
				return u
			}
			want := func(what string, got, want budget.Usage) {
				t.Helper()
				if got != want {
					t.Fatalf("%s: Usage = %+v; want %+v", what, got, want)
				}
			}
			req := func(lookups []string) error {
				return l.Reserve(ctx(t), budget.Request{Identity: alice, Limits: lim, Lookups: lookups})
			}
			want("unknown identity", usage(alice), budget.Usage{DistinctLimit: 5})

			// Duplicates and repeated lookups count once.
			if err := req(append(hashes("a", 3), hashes("a", 2)...)); err != nil {
				t.Fatal(err)
			}
			want("after 3 distinct", usage(alice), budget.Usage{Distinct: 3, DistinctLimit: 5})
			clk.Advance(30 * time.Second)
			if err := req(append(hashes("a", 1), hashes("b", 1)...)); err != nil {
				t.Fatal(err)
			}
			want("after 1 more", usage(alice), budget.Usage{Distinct: 4, DistinctLimit: 5})

			// A refusal counts, and spends no distinct budget.
			if _, susp := exceeded(req(hashes("c", 2))); susp {
				t.Fatal("first refusal suspended")
			}
			want("after a refusal", usage(alice), budget.Usage{Distinct: 4, DistinctLimit: 5, Refusals: 1})
			// The same call again is a retry, not a second refusal.
			if _, susp := exceeded(req(hashes("c", 2))); susp {
				t.Fatal("a retry suspended")
			}
			want("after a retry", usage(alice), budget.Usage{Distinct: 4, DistinctLimit: 5, Refusals: 1})
			if _, susp := exceeded(req(hashes("e", 2))); susp {
				t.Fatal("second refusal suspended")
			}
			want("after two refusals", usage(alice), budget.Usage{Distinct: 4, DistinctLimit: 5, Refusals: 2})

			// Reading changes nothing, and other identities are apart.
			want("read twice", usage(alice), budget.Usage{Distinct: 4, DistinctLimit: 5, Refusals: 2})
			want("other identity", usage("spiffe://jeton.dev/ttp/test-bob"), budget.Usage{DistinctLimit: 5})

			// The window slides: a1 and a2, looked up at 0s, leave it at
			// 60s; a0 and b0, (re-)looked up at 30s, stay.
			clk.Advance(31 * time.Second)
			if n := usage(alice).Distinct; n != 2 {
				t.Fatalf("window slid: Distinct = %d; want 2", n)
			}

			// The third refusal suspends and resets the count.
			if _, susp := exceeded(req(hashes("d", 4))); !susp {
				t.Fatal("third refusal did not suspend")
			}
			want("suspended", usage(alice), budget.Usage{Distinct: 2, DistinctLimit: 5, Suspended: true})
			if _, err := l.Reinstate(ctx(t), alice); err != nil {
				t.Fatal(err)
			}
			want("reinstated", usage(alice), budget.Usage{Distinct: 2, DistinctLimit: 5})

			// A suspension by canary shows too.
			if _, err := l.Suspend(ctx(t), alice, "canary"); err != nil {
				t.Fatal(err)
			}
			if !usage(alice).Suspended {
				t.Fatal("canary suspension not reported")
			}
			clk.Advance(2 * time.Minute)
			if n := usage(alice).Distinct; n != 0 {
				t.Fatalf("window passed: Distinct = %d; want 0", n)
			}

			if _, err := l.Usage(ctx(t), alice, budget.Limits{Distinct: -1}); err == nil {
				t.Fatal("Usage accepted invalid limits")
			}
		})
	}
}
