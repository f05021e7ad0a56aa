package server_test

import (
	"context"
	"fmt"
	"maps"
	"strings"
	"testing"

	"google.golang.org/protobuf/proto"

	"github.com/jeton-dev/jeton/integration/testenv"
	jetonv1 "github.com/jeton-dev/jeton/proto/jeton/v1"
	"github.com/jeton-dev/jeton/server/devpki"
	"github.com/jeton-dev/jeton/tokenizer"
	"github.com/jeton-dev/jeton/tokenizer/memstore"
	"github.com/jeton-dev/jeton/tokenizer/redisstore"
)

// Stats reports records_by_class exactly, on memstore and on Redis, and
// the class alone: no value or token.
func TestStatsRecordsByClass(t *testing.T) {
	stores := []struct {
		name string
		open func(t *testing.T) tokenizer.Store
	}{
		{"memstore", func(*testing.T) tokenizer.Store { return memstore.New() }},
		{"redis", func(t *testing.T) tokenizer.Store {
			r := testenv.StartRedis(t)
			c, err := redisstore.NewClient(redisstore.Config{Addrs: []string{r.Addr}})
			if err != nil {
				t.Fatal(err)
			}
			t.Cleanup(func() { _ = c.Close() })
			return redisstore.New(c)
		}},
	}
	for _, s := range stores {
		t.Run(s.name, func(t *testing.T) {
			e := startEnv(t, envOpts{store: s.open(t)})
			var values, toks []string
			add := func(tenant, class string, n int) {
				for i := range n {
					v := fmt.Sprintf("Stats Class Person %s %d", tenant, i)
					switch class {
					case "email":
						v = fmt.Sprintf("stats.%s.%d@example.org", tenant, i)
					case "phone":
						v = fmt.Sprintf("+44 20 7946 0%03d", i)
					}
					values = append(values, v)
					toks = append(toks, e.tokenizeIn(t, tenant, tokenizer.Item{Class: class, Value: v})...)
				}
			}
			add("demo", "name", 3)
			add("demo", "email", 2)
			if _, err := e.tok.RotateGeneration(context.Background(), "demo"); err != nil {
				t.Fatal(err)
			}
			add("demo", "name", 1)
			add("demo", "phone", 4)
			add("acme", "email", 1)
			add("other", "name", 2) // not the custodian's

			res, err := jetonv1.NewAdminClient(e.custodianConn(t)).Stats(ctx(t), &jetonv1.StatsRequest{})
			if err != nil {
				t.Fatal(err)
			}
			want := map[string]map[string]int64{
				"acme":   {"email": 1},
				"acme-2": {},
				"demo":   {"name": 4, "email": 2, "phone": 4},
			}
			if len(res.GetTenants()) != len(want) {
				t.Fatalf("Stats reports %d tenants; want %d", len(res.GetTenants()), len(want))
			}
			for _, ts := range res.GetTenants() {
				w, ok := want[ts.GetTenant()]
				if !ok {
					t.Errorf("unexpected tenant %q", ts.GetTenant())
					continue
				}
				if got := ts.GetRecordsByClass(); !maps.Equal(got, w) {
					t.Errorf("%s: records_by_class = %v; want %v", ts.GetTenant(), got, w)
				}
			}
			b, err := proto.Marshal(res)
			if err != nil {
				t.Fatal(err)
			}
			for _, v := range append(values, toks...) {
				if strings.Contains(string(b), v) {
					t.Errorf("the Stats response holds a value or token (%d bytes)", len(v))
				}
			}
		})
	}
}

// Stats reports each budgeted identity's use: the distinct records it
// revealed, its refusals and its suspension, on the memory limiter and on
// Redis. Identities without a budget are not listed.
func TestStatsBudgetUsage(t *testing.T) {
	for _, useRedis := range []bool{false, true} {
		t.Run(map[bool]string{false: "memory", true: "redis"}[useRedis], func(t *testing.T) {
			e := startGuardEnv(t, guardOpts{budget: "{distinct: 8, window: 1h, suspend_after: 2}", redis: useRedis})
			toks := e.fakeTokens(t, 13)
			reader := e.conn(t, 0, devpki.TTPID)
			free := e.conn(t, 0, "spiffe://jeton.dev/ttp/free")
			admin := jetonv1.NewAdminClient(e.conn(t, 0, devpki.CustodianID))
			stats := func(what string, want *jetonv1.BudgetUsage, suspended bool) {
				t.Helper()
				res, err := admin.Stats(ctx(t), &jetonv1.StatsRequest{})
				if err != nil {
					t.Fatalf("%s: Stats: %v", what, err)
				}
				// The sponsor is listed too: it may tokenize deterministic
				// classes, so it has a budget of distinct values.
				got := res.GetBudgets()
				if len(got) != 2 || !proto.Equal(got[1], want) || got[0].GetIdentity() != devpki.SponsorID || got[0].GetDistinctLimit() != 100000 {
					t.Fatalf("%s: budgets = %v; want the sponsor's and %v", what, got, want)
				}
				isSusp := false
				for _, id := range res.GetSuspendedIdentities() {
					isSusp = isSusp || id == devpki.TTPID
				}
				if isSusp != suspended {
					t.Fatalf("%s: suspended_identities = %q", what, res.GetSuspendedIdentities())
				}
			}
			usage := func(distinct, refusals int64, suspended bool) *jetonv1.BudgetUsage {
				return &jetonv1.BudgetUsage{Identity: devpki.TTPID, Distinct: distinct, DistinctLimit: 8, Refusals: refusals, Suspended: suspended}
			}
			stats("before any reveal", usage(0, 0, false), false)

			// Five distinct records over two overlapping calls.
			for _, part := range [][]string{toks[0:3], toks[1:5], toks[0:2]} {
				res, err := detok(reader, part)
				if err != nil || values(res) != len(part) {
					t.Fatalf("Detokenize: %d values, %v", values(res), err)
				}
			}
			// The free reader has no budget: neither listed nor counted.
			if _, err := detok(free, toks[5:10]); err != nil {
				t.Fatal(err)
			}
			stats("after revealing 5 distinct", usage(5, 0, false), false)

			// 5 + 4 > 8: refused, counted, nothing revealed.
			if _, err := detok(reader, toks[5:9]); err == nil {
				t.Fatal("over-budget call admitted")
			}
			stats("after a refusal", usage(5, 1, false), false)
			// The same call again is a retry: counted once.
			if _, err := detok(reader, toks[5:9]); err == nil {
				t.Fatal("over-budget call admitted")
			}
			stats("after a retry", usage(5, 1, false), false)
			// A refusal of other records is the second: it suspends and
			// resets the count.
			if _, err := detok(reader, toks[9:13]); err == nil {
				t.Fatal("over-budget call admitted")
			}
			stats("suspended", usage(5, 0, true), true)
		})
	}
}
