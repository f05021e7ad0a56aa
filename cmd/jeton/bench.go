package main

import (
	"context"
	"errors"
	"flag"
	"fmt"
	"net"
	"slices"
	"sync"
	"sync/atomic"
	"time"
)

// runBench measures unary Tokenize calls (one item each) against a jetond
// on this machine, and, in the same run and over the same connection, a
// baseline of grpc health checks: the ratio says what jeton adds to a
// bare gRPC round trip, whatever the machine is doing. It refuses any
// address that is not loopback: a load test never leaves the machine.
const benchUsage = `Usage: jeton bench [--calls N] [--concurrency N] [--class CLASS] [connection flags]

Measures single-item Tokenize calls against a jetond on this machine and,
in the same run over the same connection, grpc health checks as the
baseline; prints both rates, p50 and p99 latencies and their ratio. Only
loopback addresses are accepted: a load test never leaves the machine. It
tokenizes fake values, so point it at a dev or test jetond.

Exit status: 0 done, 2 usage error, 3 a call failed.

Flags:
`

func runBench(args []string, e *env) int {
	fs := flag.NewFlagSet("bench", flag.ContinueOnError)
	fs.SetOutput(e.stderr)
	fs.Usage = func() { fmt.Fprint(fs.Output(), benchUsage); fs.PrintDefaults() }
	var c conn
	c.register(fs, e.getenv)
	calls := fs.Int("calls", 20000, "calls per measurement (1 to 1000000)")
	workers := fs.Int("concurrency", 32, "calls in flight (1 to 1024)")
	class := fs.String("class", "name", "field class of the tokenized values (a random class measures the store; a deterministic one, the oracle limit)")
	limit := fs.Duration("max-duration", 2*time.Minute, "stop each measurement after this long")
	args, code, ok := parse(fs, args, e)
	if !ok {
		return code
	}
	if len(args) > 0 || *calls < 1 || *calls > 1000000 || *workers < 1 || *workers > 1024 {
		e.errorf("bench: bad arguments; see jeton bench -h")
		return exitUsage
	}
	if err := loopbackOnly(c.addr); err != nil {
		e.errorf("bench: %v", err)
		return exitUsage
	}
	cl, err := c.dial()
	if err != nil {
		e.errorf("bench: %v", err)
		return exitUsage
	}
	defer cl.Close()
	ctx := context.Background()
	if err := cl.Ping(ctx); err != nil {
		return callFailed(e, "bench", err)
	}

	base, err := measure(*calls, *workers, *limit, func(int) error { return cl.Ping(ctx) })
	if err != nil {
		return callFailed(e, "bench", err)
	}
	tok, err := measure(*calls, *workers, *limit, func(i int) error {
		_, err := cl.TokenizeValue(ctx, *class, fmt.Sprintf("Bench Value %09d", i))
		return err
	})
	if err != nil {
		return callFailed(e, "bench", err)
	}
	fmt.Fprintf(e.stdout, "health check   %9.0f calls/s  p50 %v  p99 %v  (%d calls)\n", base.rate, base.p50, base.p99, base.n)
	fmt.Fprintf(e.stdout, "tokenize (1)   %9.0f calls/s  p50 %v  p99 %v  (%d calls)\n", tok.rate, tok.p50, tok.p99, tok.n)
	fmt.Fprintf(e.stdout, "tokenize/health ratio %.2f\n", tok.rate/base.rate)
	return exitOK
}

type benchResult struct {
	n        int
	rate     float64
	p50, p99 time.Duration
}

// measure runs call n times over workers goroutines, stopping early after
// limit, and returns throughput and latency percentiles. The first error
// stops it.
func measure(n, workers int, limit time.Duration, call func(i int) error) (benchResult, error) {
	var next atomic.Int64
	var mu sync.Mutex
	var firstErr error
	lat := make([]time.Duration, 0, n)
	deadline := time.Now().Add(limit)
	start := time.Now()
	var wg sync.WaitGroup
	for range workers {
		wg.Add(1)
		go func() {
			defer wg.Done()
			mine := make([]time.Duration, 0, n/workers+1)
			for {
				i := int(next.Add(1)) - 1
				if i >= n || time.Now().After(deadline) {
					break
				}
				t := time.Now()
				err := call(i)
				mine = append(mine, time.Since(t))
				if err != nil {
					mu.Lock()
					firstErr = cmpErr(firstErr, err)
					mu.Unlock()
					next.Store(int64(n))
					break
				}
			}
			mu.Lock()
			lat = append(lat, mine...)
			mu.Unlock()
		}()
	}
	wg.Wait()
	elapsed := time.Since(start)
	if firstErr != nil {
		return benchResult{}, firstErr
	}
	slices.Sort(lat)
	pct := func(p float64) time.Duration {
		if len(lat) == 0 {
			return 0
		}
		return lat[min(len(lat)-1, int(float64(len(lat))*p))]
	}
	return benchResult{n: len(lat), rate: float64(len(lat)) / elapsed.Seconds(), p50: pct(0.50), p99: pct(0.99)}, nil
}

func cmpErr(a, b error) error {
	if a != nil {
		return a
	}
	return b
}

// loopbackOnly refuses an address whose host is not a loopback address
// or "localhost".
func loopbackOnly(addr string) error {
	host, _, err := net.SplitHostPort(addr)
	if err != nil {
		return fmt.Errorf("--addr: %w", err)
	}
	if host == "localhost" {
		return nil
	}
	ip := net.ParseIP(host)
	if ip == nil || !ip.IsLoopback() {
		return errors.New("--addr must be a loopback address (127.0.0.0/8, ::1, localhost): load is never sent off this machine")
	}
	return nil
}
