package integration_test

import (
	"context"
	"errors"
	"fmt"
	"sync"
	"testing"
	"time"

	"google.golang.org/grpc/codes"

	"github.com/jeton-dev/jeton/client"
	"github.com/jeton-dev/jeton/integration/testenv"
)

// TestRedisSlowAndFlaky puts a TCP proxy between jetond and Redis that
// first delays every reply past redis.timeout, then resets every
// connection ten times a second. Throughout, each call either succeeds
// with every value right or fails as a whole (UNAVAILABLE, or
// DEADLINE_EXCEEDED when its own deadline comes first), never later than
// its deadline: no partial plaintext, no hang. Afterwards jetond recovers by
// itself, and its goroutines come back to what they were (no pile-up of
// calls stuck on Redis).
func TestRedisSlowAndFlaky(t *testing.T) {
	r := testenv.StartRedis(t)
	proxy := testenv.StartProxy(t, r.Addr)
	v := startVaultEnv(t, false)
	h := startJetond(t, jetondOpts{RedisAddrs: []string{proxy.Addr}, Vault: v, Token: v.token(t, "jeton-jetond"),
		RedisTimeout: time.Second, HealthInterval: time.Second})
	ctx := context.Background()
	warm := items(t, 0, 50)
	tokenize(t, h, "acme", warm)
	detokenizeAll(t, h, warm)
	pid := h.Pid()
	sponsor, ttp := h.Sponsor(t, "acme"), h.TTP(t)
	time.Sleep(2 * time.Second) // let start-up goroutines settle
	before := metric(t, h, "go_goroutines")

	// calls runs 8 concurrent callers, each making calls with a 3 s
	// deadline until stop, and checks every outcome.
	const deadline = 3 * time.Second
	calls := func(t *testing.T, stop <-chan struct{}) (ok, failed int) {
		var mu sync.Mutex
		var wg sync.WaitGroup
		for w := range 8 {
			wg.Go(func() {
				for n := 100_000 * (w + 1); ; n += 5 {
					select {
					case <-stop:
						return
					default:
					}
					cctx, cancel := context.WithTimeout(ctx, deadline)
					start := time.Now()
					var err error
					if w%2 == 0 {
						fresh := items(t, n, 5)
						err = tryTokenizeCtx(cctx, sponsor, fresh)
					} else {
						err = tryDetokenizeCtx(cctx, ttp, warm[n%45:n%45+5])
					}
					took := time.Since(start)
					cancel()
					if took > deadline+2*time.Second {
						t.Errorf("a call returned %s after it began, past its %s deadline", took.Round(time.Millisecond), deadline)
					}
					mu.Lock()
					if err == nil {
						ok++
					} else {
						failed++
					}
					mu.Unlock()
					if errors.Is(err, errPartial) {
						t.Errorf("Detokenize: %v", err)
					} else if err != nil && !errors.Is(err, client.ErrUnavailable) && !isDeadline(err) {
						t.Errorf("a call failed with %v; want UNAVAILABLE or DEADLINE_EXCEEDED", err)
					}
				}
			})
		}
		wg.Wait()
		return ok, failed
	}
	run := func(t *testing.T, during func(stop chan struct{})) (int, int) {
		stop := make(chan struct{})
		var ok, failed int
		done := make(chan struct{})
		go func() { ok, failed = calls(t, stop); close(done) }()
		during(stop)
		<-done
		return ok, failed
	}

	t.Run("slow", func(t *testing.T) {
		proxy.SetDelay(2 * time.Second) // past redis.timeout (1 s)
		ok, failed := run(t, func(stop chan struct{}) { time.Sleep(6 * time.Second); close(stop) })
		proxy.SetDelay(0)
		t.Logf("Redis replies 2 s late: %d calls succeeded, %d failed", ok, failed)
		if failed == 0 {
			t.Error("no call failed with every Redis reply past redis.timeout")
		}
	})
	t.Run("cut", func(t *testing.T) {
		ok, failed := run(t, func(stop chan struct{}) {
			for range 30 {
				time.Sleep(100 * time.Millisecond)
				proxy.Cut()
			}
			close(stop)
		})
		t.Logf("connections to Redis reset every 100 ms: %d calls succeeded, %d failed", ok, failed)
		if failed == 0 {
			t.Error("no call failed while every Redis connection was reset ten times a second")
		}
	})

	eventually(t, "Tokenize once Redis is healthy again", func() error { return tryTokenize(t, h, "acme", items(t, 900_000, 5)) })
	detokenizeAll(t, h, warm)
	if h.Pid() != pid {
		t.Fatal("jetond was restarted")
	}
	// Calls that were cut off must not leave goroutines behind.
	var after float64
	eventually(t, "goroutines back to their level before the faults", func() error {
		after = metric(t, h, "go_goroutines")
		if after > before*1.2+10 {
			return errors.New("goroutines still above their level before the faults")
		}
		return nil
	})
	t.Logf("go_goroutines: %.0f before the faults, %.0f after", before, after)
}

// tryTokenizeCtx tokenizes its through c under ctx.
func tryTokenizeCtx(ctx context.Context, c *client.Client, its []item) error {
	in := make([]client.Item, len(its))
	for i, it := range its {
		in[i] = client.Item{Class: it.Class, Value: it.Value}
	}
	res, err := c.Tokenize(ctx, in)
	if err != nil {
		return err
	}
	for _, r := range res {
		if r.Err != nil {
			return r.Err
		}
	}
	return nil
}

// errPartial is a Detokenize answer that is neither a failed call nor
// every value right.
var errPartial = errors.New("a partial or wrong answer")

// tryDetokenizeCtx reveals its through c under ctx. A call that succeeds
// must give every value back right; anything else is errPartial.
func tryDetokenizeCtx(ctx context.Context, c *client.Client, its []item) error {
	toks := make([]string, len(its))
	for i, it := range its {
		toks[i] = it.Token
	}
	res, err := c.Detokenize(ctx, toks, purpose, caseRef)
	if err != nil {
		if res != nil {
			return fmt.Errorf("%w: results came back with a failed call", errPartial)
		}
		return err
	}
	for i, r := range res {
		if r.Err != nil || r.Value != its[i].Value {
			return fmt.Errorf("%w: item %d", errPartial, i)
		}
	}
	return nil
}

// isDeadline reports a call that failed DEADLINE_EXCEEDED.
func isDeadline(err error) bool {
	var ce *client.Error
	return errors.As(err, &ce) && ce.Code == codes.DeadlineExceeded
}
