package budget_test

import (
	"context"
	"fmt"
	"strconv"
	"testing"
	"time"

	"github.com/redis/go-redis/v9"

	"github.com/jeton-dev/jeton/integration/testenv"
	"github.com/jeton-dev/jeton/server/budget"
)

// BenchmarkReserveRedis measures what one Reserve costs Redis, which every
// replica shares: the main thread's CPU time per call (redis-µs/call,
// from INFO cpu) and the commands it runs per call, those inside the
// script included (cmds/call, from INFO commandstats). The identity
// already has benchSeen records in its window, as a busy revealer would,
// and reads benchSeen/2 of them again among fresh ones, so that both the
// refresh and the add paths run. Redis runs with appendfsync everysec,
// as in `make bench`.
func BenchmarkReserveRedis(b *testing.B) {
	r := testenv.StartRedis(b, testenv.WithAppendFsync("everysec"))
	c := r.Client(b)
	ctx := context.Background()
	limits := map[string]budget.Limits{
		"one-window": {MaxBatch: 10000, Rate: 1e9, Burst: 1e9, Distinct: 1e9, Window: 24 * time.Hour},
		"two-windows": budget.Merge(
			budget.Limits{MaxBatch: 10000, Rate: 1e9, Burst: 1e9, Distinct: 1e9, Window: 24 * time.Hour},
			budget.Limits{Distinct: 1e8, Window: time.Hour}),
	}
	for _, lname := range []string{"one-window", "two-windows"} {
		for _, n := range []int{1, 100, 1000} {
			b.Run(fmt.Sprintf("%s/lookups=%d", lname, n), func(b *testing.B) {
				id := "spiffe://jeton.dev/ttp/bench-" + lname + "-" + strconv.Itoa(n)
				l := budget.NewRedis(c, budget.Config{})
				lim := limits[lname]
				// Fill the window in calls of at most 1,000.
				const benchSeen = 20000
				seen := hashes("seen-", benchSeen)
				for i := 0; i < len(seen); i += 1000 {
					if err := l.Reserve(ctx, budget.Request{Identity: id, Limits: lim, Items: 1000, Lookups: seen[i:min(i+1000, len(seen))]}); err != nil {
						b.Fatal(err)
					}
				}
				cpu0, cmds0 := redisCost(b, c)
				calls := 0
				for b.Loop() {
					lookups := make([]string, n)
					for i := range lookups {
						if i%2 == 0 {
							lookups[i] = seen[(calls*n+i)%len(seen)]
						} else {
							lookups[i] = fmt.Sprintf("fresh-%d-%d", calls, i)
						}
					}
					if err := l.Reserve(ctx, budget.Request{Identity: id, Limits: lim, Items: n, Lookups: lookups}); err != nil {
						b.Fatal(err)
					}
					calls++
				}
				cpu1, cmds1 := redisCost(b, c)
				b.ReportMetric(float64((cpu1-cpu0).Microseconds())/float64(calls), "redis-µs/call")
				b.ReportMetric(float64(cmds1-cmds0)/float64(calls), "cmds/call")
			})
		}
	}
}

// redisCost reads the main thread's CPU time and the commands run so far.
func redisCost(b *testing.B, c *redis.Client) (cpu time.Duration, cmds int64) {
	b.Helper()
	info, err := c.InfoMap(context.Background(), "cpu").Result()
	if err != nil {
		b.Fatal(err)
	}
	for _, k := range []string{"used_cpu_sys_main_thread", "used_cpu_user_main_thread"} {
		f, err := strconv.ParseFloat(info["CPU"][k], 64)
		if err != nil {
			b.Fatalf("INFO cpu %s: %v", k, err)
		}
		cpu += time.Duration(f * float64(time.Second))
	}
	for name, n := range commandCounts(b, c) {
		if name != "info" { // the reads of these counters
			cmds += n
		}
	}
	return cpu, cmds
}
