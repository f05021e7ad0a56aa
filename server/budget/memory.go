package budget

import (
	"context"
	"math"
	"slices"
	"sync"
	"time"
)

// NewMemory returns a Limiter whose counters live in this process. It
// decides exactly as the Redis Limiter does but bounds one replica only:
// use it for dev mode and tests, never behind a load balancer.
func NewMemory(cfg Config) *Limiter {
	return newLimiter(&memoryBackend{ids: map[string]*memState{}}, cfg)
}

type memoryBackend struct {
	mu  sync.Mutex
	ids map[string]*memState
}

type memState struct {
	tokens   float64
	ts       int64 // ms; 0: bucket full
	seen     map[string]int64
	refused  map[string]int64 // records of counted refusals -> ms
	refusals int
	refUntil int64
	susp     *suspension
}

type suspension struct{ identity, reason string }

func (m *memoryBackend) state(key string) *memState {
	s := m.ids[key]
	if s == nil {
		s = &memState{seen: map[string]int64{}, refused: map[string]int64{}}
		m.ids[key] = s
	}
	return s
}

func (m *memoryBackend) reserve(_ context.Context, key string, req Request, uniq []string, now int64) error {
	if now < 0 {
		now = time.Now().UnixMilli()
	}
	m.mu.Lock()
	defer m.mu.Unlock()
	s := m.state(key)
	if s.susp != nil {
		return ErrSuspended
	}
	l := req.Limits
	bounds := l.bounds()
	cost := float64(req.cost())
	var limit Limit
	var retry time.Duration
	if l.MaxBatch > 0 && req.Items > l.MaxBatch {
		limit = LimitMaxBatch
	}
	tokens := float64(l.Burst)
	if limit == "" && l.Rate > 0 {
		if s.ts != 0 {
			tokens = math.Min(tokens, s.tokens+float64(max(now-s.ts, 0))*l.Rate/1000)
		}
		if cost > tokens {
			limit = LimitRate
			if cost <= float64(l.Burst) {
				retry = retryAfter(int64(math.Ceil((cost - tokens) * 1000 / l.Rate)))
			}
		}
	}
	if limit == "" && len(bounds) > 0 {
		for h, at := range s.seen {
			if at <= now-bounds[0].Window.Milliseconds() {
				delete(s.seen, h)
			}
		}
		for _, b := range bounds {
			since := now - b.Window.Milliseconds()
			n := 0
			for _, at := range s.seen {
				if at > since {
					n++
				}
			}
			for _, h := range uniq {
				if at, ok := s.seen[h]; !ok || at <= since {
					n++
				}
			}
			if n > b.Distinct {
				limit = LimitDistinct
				break
			}
		}
	}
	switch limit {
	case "":
	case LimitDistinct:
		if !s.newRefusal(uniq, now, bounds[0].Window.Milliseconds(), l) {
			return &ExceededError{Limit: limit, Repeat: true}
		}
		if s.refusals == 0 || now >= s.refUntil {
			s.refusals, s.refUntil = 0, now+l.refusalWindow().Milliseconds()
		}
		s.refusals++
		if l.SuspendAfter > 0 && s.refusals >= l.SuspendAfter {
			s.susp = &suspension{identity: req.Identity, reason: "budget:" + string(limit)}
			s.refusals = 0
			return &ExceededError{Limit: limit, Suspended: true}
		}
		return &ExceededError{Limit: limit}
	default:
		// A client going too fast is slowed down, never suspended.
		return &ExceededError{Limit: limit, RetryAfter: retry}
	}
	if l.Rate > 0 && cost > 0 {
		s.tokens, s.ts = tokens-cost, now
	}
	if len(bounds) > 0 {
		for _, h := range uniq {
			s.seen[h] = now
		}
	}
	return nil
}

func (m *memoryBackend) isSuspended(_ context.Context, key string) (bool, error) {
	m.mu.Lock()
	defer m.mu.Unlock()
	s := m.ids[key]
	return s != nil && s.susp != nil, nil
}

// newRefusal reports whether a distinct refusal of uniq asks for a record
// that neither was read within the window nor was in a refusal counted
// within the refusal window, and remembers those records: a retry of a
// refused call is no sweep, and counts towards SuspendAfter once. (Redis:
// the refused block of reserveScript.)
func (s *memState) newRefusal(uniq []string, now, window int64, l Limits) bool {
	if l.SuspendAfter == 0 {
		return true // nothing suspends: nothing to remember
	}
	for h, at := range s.refused {
		if at <= now-l.refusalWindow().Milliseconds() {
			delete(s.refused, h)
		}
	}
	added := false
	for _, h := range uniq {
		if at, ok := s.seen[h]; ok && at > now-window {
			continue
		}
		if _, ok := s.refused[h]; !ok {
			added = true
		}
		s.refused[h] = now
	}
	return added
}

func (m *memoryBackend) suspend(_ context.Context, key, identity, reason string, _ int64) (bool, error) {
	m.mu.Lock()
	defer m.mu.Unlock()
	s := m.state(key)
	if s.susp != nil {
		return false, nil
	}
	s.susp = &suspension{identity: identity, reason: reason}
	return true, nil
}

func (m *memoryBackend) reinstate(_ context.Context, key string) (bool, error) {
	m.mu.Lock()
	defer m.mu.Unlock()
	s := m.state(key)
	was := s.susp != nil
	s.susp, s.refusals = nil, 0
	clear(s.refused)
	return was, nil
}

func (m *memoryBackend) suspended(context.Context) ([]string, error) {
	m.mu.Lock()
	defer m.mu.Unlock()
	var out []string
	for _, s := range m.ids {
		if s.susp != nil {
			out = append(out, s.susp.identity)
		}
	}
	slices.Sort(out)
	return out, nil
}

func (m *memoryBackend) usage(_ context.Context, key string, window, now int64) (Usage, error) {
	if now < 0 {
		now = time.Now().UnixMilli()
	}
	m.mu.Lock()
	defer m.mu.Unlock()
	var u Usage
	s := m.ids[key]
	if s == nil {
		return u, nil
	}
	// The same window as reserve's: a lookup counts while at > now-window.
	for _, at := range s.seen {
		if at > now-window {
			u.Distinct++
		}
	}
	if s.refusals > 0 && now < s.refUntil {
		u.Refusals = s.refusals
	}
	u.Suspended = s.susp != nil
	return u, nil
}
