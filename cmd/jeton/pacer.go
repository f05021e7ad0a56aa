package main

import (
	"context"
	"sync"
	"time"

	"golang.org/x/time/rate"
)

// pacer decides when the next call may go. It keeps at most limit calls in
// flight, between 1 and max: a refusal halves limit and holds every call
// until the delay the server asked for has passed; each run of limit
// successes lets one more call in again (additive increase,
// multiplicative decrease, as TCP does). With --rate, a token bucket also
// bounds items per second, so a known budget is never hit at all.
type pacer struct {
	mu        sync.Mutex
	changed   chan struct{} // closed and replaced on every change
	limit     int
	max       int
	inflight  int
	successes int
	until     time.Time
	items     *rate.Limiter
	now       func() time.Time
}

func newPacer(concurrency int, itemsPerSecond float64, batch int) *pacer {
	p := &pacer{changed: make(chan struct{}), limit: concurrency, max: concurrency, now: time.Now}
	if itemsPerSecond > 0 {
		p.items = rate.NewLimiter(rate.Limit(itemsPerSecond), max(batch, int(itemsPerSecond)))
	}
	return p
}

// acquire waits until a call of n items may go.
func (p *pacer) acquire(ctx context.Context, n int) error {
	for {
		p.mu.Lock()
		wait := p.until.Sub(p.now())
		if wait <= 0 && p.inflight < p.limit {
			p.inflight++
			p.mu.Unlock()
			break
		}
		changed := p.changed
		p.mu.Unlock()
		var timer <-chan time.Time
		var t *time.Timer
		if wait > 0 {
			t = time.NewTimer(wait)
			timer = t.C
		}
		select {
		case <-ctx.Done():
		case <-changed:
		case <-timer:
		}
		if t != nil {
			t.Stop()
		}
		if ctx.Err() != nil {
			return ctx.Err()
		}
	}
	if p.items != nil {
		if err := p.items.WaitN(ctx, min(n, p.items.Burst())); err != nil {
			p.release(false)
			return err
		}
	}
	return nil
}

// release ends a call; ok says it was not refused.
func (p *pacer) release(ok bool) {
	p.mu.Lock()
	defer p.mu.Unlock()
	p.inflight--
	if ok {
		p.successes++
		if p.successes >= p.limit && p.limit < p.max {
			p.limit++
			p.successes = 0
		}
	}
	p.signal()
}

// refused ends a call the server refused, asking to wait d.
func (p *pacer) refused(d time.Duration) {
	p.mu.Lock()
	defer p.mu.Unlock()
	p.inflight--
	p.successes = 0
	p.limit = max(1, p.limit/2)
	if until := p.now().Add(d); until.After(p.until) {
		p.until = until
	}
	p.signal()
}

func (p *pacer) signal() {
	close(p.changed)
	p.changed = make(chan struct{})
}
