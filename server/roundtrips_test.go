package server_test

import (
	"bufio"
	"context"
	"fmt"
	"strconv"
	"strings"
	"sync/atomic"
	"testing"

	"github.com/redis/go-redis/v9"
	"google.golang.org/grpc/codes"

	"github.com/jeton-dev/jeton/integration/testenv"
	jetonv1 "github.com/jeton-dev/jeton/proto/jeton/v1"
	"github.com/jeton-dev/jeton/server/devpki"
	"github.com/jeton-dev/jeton/tokenizer"
)

// tripCounter is a go-redis hook counting round trips: a command sent
// alone or a pipeline (go-redis sends a pipeline to one node in one
// write and reads its replies in one go).
type tripCounter struct{ trips atomic.Int64 }

func (c *tripCounter) DialHook(next redis.DialHook) redis.DialHook { return next }

func (c *tripCounter) ProcessHook(next redis.ProcessHook) redis.ProcessHook {
	return func(ctx context.Context, cmd redis.Cmder) error {
		c.trips.Add(1)
		return next(ctx, cmd)
	}
}

func (c *tripCounter) ProcessPipelineHook(next redis.ProcessPipelineHook) redis.ProcessPipelineHook {
	return func(ctx context.Context, cmds []redis.Cmder) error {
		c.trips.Add(1)
		return next(ctx, cmds)
	}
}

// redisCommands is the number of commands Redis has run, those run by
// scripts included (INFO commandstats), INFO itself left out.
func redisCommands(t testing.TB, c *redis.Client) int {
	t.Helper()
	info, err := c.Info(context.Background(), "commandstats").Result()
	if err != nil {
		t.Fatal(err)
	}
	n := 0
	sc := bufio.NewScanner(strings.NewReader(info))
	for sc.Scan() {
		line := sc.Text()
		if !strings.HasPrefix(line, "cmdstat_") || strings.HasPrefix(line, "cmdstat_info:") {
			continue
		}
		_, rest, _ := strings.Cut(line, "calls=")
		calls, _, _ := strings.Cut(rest, ",")
		v, err := strconv.Atoi(calls)
		if err != nil {
			t.Fatalf("INFO commandstats: %q", line)
		}
		n += v
	}
	return n
}

// TestRevealRoundTrips counts what a warm reveal and a warm unary
// Tokenize send to Redis, with records and budgets in one Redis as jetond
// wires them, and the clock Redis's own (TIME in the budget script). A
// Detokenize takes one round trip whatever its size: the budget script
// and the records' GETs share a pipeline. Its commands are the script's
// eight for a budget with a rate and a distinct bound (TIME, EXISTS, GET,
// ZREMRANGEBYSCORE, ZCARD, SET, ZADD, PEXPIRE; nine while the token
// bucket was a hash, written by HSET and PEXPIRE), EVALSHA itself and
// one MGET for all its records (one GET per record before the reads
// joined the script's pipeline, in a second round trip). A unary Tokenize
// of a random class with an idempotency key claims the call's entry,
// writes the record and marks the entry done: three round trips. A round
// trip or a command coming back fails this test.
func TestRevealRoundTrips(t *testing.T) {
	e := startGuardEnv(t, guardOpts{budget: "{distinct: 100000, rate: 100000, burst: 100000}", redisStore: true, realClock: true})
	toks := e.fakeTokens(t, 101)
	stats := e.redis.Client(t)
	reader := e.conn(t, 0, devpki.TTPID)
	sponsor := e.conn(t, 0, devpki.SponsorID)
	// Warm up: the tenant's keys loaded, the script cached in Redis.
	if res, err := detok(reader, toks[100:]); err != nil || values(res) != 1 {
		t.Fatalf("warm-up Detokenize: %v", err)
	}
	measure := func(call func()) (trips, cmds int) {
		t.Helper()
		t0, c0 := e.trips.trips.Load(), redisCommands(t, stats)
		call()
		return int(e.trips.trips.Load() - t0), redisCommands(t, stats) - c0
	}
	for _, tc := range []struct {
		name        string
		toks        []string
		trips, cmds int
	}{
		{"unary", toks[:1], 1, 1 + 8 + 1},
		{"batch of 100", toks[:100], 1, 1 + 8 + 1},
	} {
		trips, cmds := measure(func() {
			res, err := detok(reader, tc.toks)
			if err != nil || values(res) != len(tc.toks) {
				t.Fatalf("%s Detokenize: %v", tc.name, err)
			}
		})
		if trips != tc.trips || cmds != tc.cmds {
			t.Errorf("%s Detokenize: %d round trips and %d Redis commands, want %d and %d", tc.name, trips, cmds, tc.trips, tc.cmds)
		}
	}

	tokenize := func(key string) {
		res, err := jetonv1.NewTokenizerClient(sponsor).Tokenize(ctx(t), &jetonv1.TokenizeRequest{
			IdempotencyKey: key,
			Items:          []*jetonv1.TokenizeItem{{FieldClass: "name", Value: useValue("Roundtrip Testperson")}},
		})
		if err != nil || res.GetResults()[0].GetToken() == "" {
			t.Fatalf("Tokenize: %v", err)
		}
	}
	tokenize("warm-up")
	// Claim (SET NX), record (SET NX), done (the compare-and-set script:
	// EVALSHA, GET, SET).
	if trips, cmds := measure(func() { tokenize("roundtrip-1") }); trips != 3 || cmds != 5 {
		t.Errorf("unary Tokenize: %d round trips and %d Redis commands, want 3 and 5", trips, cmds)
	}
}

// TestRevealSharedTripRefuses: with the budget and the records' reads in
// one round trip, a refused call still gets no value, is audited as a
// failure and counted as a refusal; with the audit sink or Redis down the
// call is UNAVAILABLE and nothing leaves.
func TestRevealSharedTripRefuses(t *testing.T) {
	e := startGuardEnv(t, guardOpts{budget: "{distinct: 2}", redisStore: true})
	toks := e.fakeTokens(t, 3)
	cc := e.conn(t, 0, devpki.TTPID)
	if res, err := detok(cc, toks[:2]); err != nil || values(res) != 2 {
		t.Fatalf("within budget: %v", err)
	}
	audited := len(e.replicas[0].audit.records())
	res, err := detok(cc, toks)
	wantRefused(t, "over budget", res, err, codes.ResourceExhausted, "reveal budget of distinct records exhausted for this window")
	recs := e.replicas[0].audit.records()
	if len(recs) != audited+1 || recs[len(recs)-1].Outcome != "failed" || recs[len(recs)-1].Detail != codes.ResourceExhausted.String() {
		t.Fatalf("the refusal was not audited as a failure: %d records after %d", len(recs), audited)
	}
	if n := e.counter(t, "jeton_budget_refusals_total", "limit", "distinct"); n != 1 {
		t.Fatalf("%v distinct refusals counted, want 1", n)
	}
	// Within budget but the audit sink down: no value leaves.
	e.replicas[0].audit.setFail(true)
	res, err = detok(cc, toks[:1])
	wantRefused(t, "audit sink down", res, err, codes.Unavailable, "a backend is unavailable; retry later")
	e.replicas[0].audit.setFail(false)
	e.redis.Kill()
	res, err = detok(cc, toks[:1])
	wantRefused(t, "Redis down", res, err, codes.Unavailable, "a backend is unavailable; retry later")
}

// TestRevealNothingToReadSpends: tokens of a tenant of the caller's that
// holds no keys yet name no record, so nothing is read; they spend the
// distinct budget all the same, as guesses do.
func TestRevealNothingToReadSpends(t *testing.T) {
	pol := strings.Replace(budgetPolicy, "tenants: [demo]\n    roles: [reader]", "tenants: [demo, spare]\n    roles: [reader]", 1)
	e := startGuardEnv(t, guardOpts{budget: "{distinct: 1}", policy: pol, redisStore: true})
	real := e.fakeTokens(t, 2)
	var forged []string
	for _, text := range real {
		tok, err := tokenizer.ParseToken(text)
		if err != nil {
			t.Fatal(err)
		}
		tok.Tenant = "spare"
		forged = append(forged, tok.String())
	}
	res, err := detok(e.conn(t, 0, devpki.TTPID), forged)
	wantRefused(t, "two guesses in a tenant without keys", res, err, codes.ResourceExhausted, "reveal budget of distinct records exhausted for this window")
}

// BenchmarkDetokenizeRedis measures Detokenize over mTLS gRPC with the
// records and the budget in a real Redis, 1 and 100 tokens per call, with
// the budget and the reads in one round trip (as jetond runs) and, for
// comparison in the same run, in two. Redis runs with appendfsync
// everysec, as in `make bench`.
func BenchmarkDetokenizeRedis(b *testing.B) {
	for _, n := range []int{1, 100} {
		for _, mode := range []string{"one-trip", "two-trips"} {
			b.Run(fmt.Sprintf("tokens=%d/%s", n, mode), func(b *testing.B) {
				e := startGuardEnv(b, guardOpts{budget: "{distinct: 100000000, rate: 1000000000, burst: 1000000000}",
					redisStore: true, realClock: true, twoTrips: mode == "two-trips",
					redisOpts: []testenv.RedisOption{testenv.WithAppendFsync("everysec")}})
				toks := e.fakeTokens(b, n)
				cc := e.conn(b, 0, devpki.TTPID)
				b.ReportAllocs()
				for b.Loop() {
					if res, err := detok(cc, toks); err != nil || values(res) != n {
						b.Fatalf("Detokenize: %v", err)
					}
				}
			})
		}
	}
}
