package server

import (
	"context"
	"log/slog"
	"sync"
	"time"

	"golang.org/x/time/rate"

	"github.com/jeton-dev/jeton/server/audit"
)

// How much a stream of refusals may cost. Every refused reveal is audited
// and every refused identity logged, but one by one only at this pace: per
// identity, method and reason, a burst and then one a minute; across them
// all, a few a second. The rest are counted and written as one aggregate
// per key every refusalFlush: "N refusals of identity X for reason R since
// T". An identity that can present a certificate of the TTP CA, or a
// client stuck in a loop, then cannot fill the audit disk (and stop every
// reveal) or the logs, and still every refusal is accounted for.
const (
	refusalBurst       = 10
	refusalEvery       = time.Minute
	refusalGlobalRate  = 20 // per second, over all keys
	refusalGlobalBurst = 100
	refusalFlush       = 10 * time.Second
	// refusalKeys bounds the keys followed at once; the refusals of
	// identities beyond it are counted under refusalOthers.
	refusalKeys   = 1024
	refusalOthers = "(other identities)"
)

// refusalKey is what refusals are counted under: who, where, why. Each is
// a certificate identity (clipped), a method name (audit records) or a
// listener name (log lines), and a fixed reason.
type refusalKey struct{ identity, where, reason string }

// refusalCount is one key's state.
type refusalCount struct {
	lim   *rate.Limiter
	n     int       // refusals not written since the last aggregate
	since time.Time // the first of them
	last  time.Time // the latest refusal, written or not
	peer  string    // the latest refusal's peer
}

// refusalGate decides which refusals are written one by one, and keeps
// the count of the others until they are drained as aggregates. It is
// safe for concurrent use.
type refusalGate struct {
	mu     sync.Mutex
	global *rate.Limiter
	keys   map[refusalKey]*refusalCount
	now    func() time.Time
}

func newRefusalGate(now func() time.Time) *refusalGate {
	return &refusalGate{
		global: rate.NewLimiter(refusalGlobalRate, refusalGlobalBurst),
		keys:   map[refusalKey]*refusalCount{},
		now:    now,
	}
}

// admit reports whether a refusal under k may be written on its own; when
// not, it is counted towards k's next aggregate.
func (g *refusalGate) admit(k refusalKey, peer string) bool {
	now := g.now()
	g.mu.Lock()
	defer g.mu.Unlock()
	c := g.keys[k]
	if c == nil {
		if len(g.keys) >= refusalKeys {
			k.identity = refusalOthers
			c = g.keys[k]
		}
		if c == nil {
			c = &refusalCount{lim: rate.NewLimiter(rate.Every(refusalEvery), refusalBurst)}
			g.keys[k] = c
		}
	}
	c.last, c.peer = now, peer
	// The key's own limiter first: a flood of one key never spends the
	// others' share of the global one.
	if k.identity != refusalOthers && c.lim.AllowN(now, 1) && g.global.AllowN(now, 1) {
		return true
	}
	if c.n == 0 {
		c.since = now
	}
	c.n++
	return false
}

// refusalAggregate is the count of one key's refusals not written one by
// one.
type refusalAggregate struct {
	key         refusalKey
	n           int
	since, last time.Time
	peer        string
}

// drain returns the pending aggregates and forgets them, and forgets the
// keys that have been quiet long enough for their limiter to be full.
func (g *refusalGate) drain() []refusalAggregate {
	now := g.now()
	g.mu.Lock()
	defer g.mu.Unlock()
	var out []refusalAggregate
	for k, c := range g.keys {
		if c.n > 0 {
			out = append(out, refusalAggregate{key: k, n: c.n, since: c.since, last: c.last, peer: c.peer})
			c.n = 0
			continue
		}
		if now.Sub(c.last) > refusalBurst*refusalEvery {
			delete(g.keys, k)
		}
	}
	return out
}

// restore puts back aggregates that could not be written, so that the
// next drain reports them.
func (g *refusalGate) restore(aggs []refusalAggregate) {
	g.mu.Lock()
	defer g.mu.Unlock()
	for _, a := range aggs {
		c := g.keys[a.key]
		if c == nil {
			c = &refusalCount{lim: rate.NewLimiter(rate.Every(refusalEvery), refusalBurst), last: a.last, peer: a.peer}
			g.keys[a.key] = c
		}
		if c.n == 0 || a.since.Before(c.since) {
			c.since = a.since
		}
		c.n += a.n
	}
}

// refusals are the server's two gates: the audit records of refused
// reveals, and the log lines of identities refused by the auth step.
type refusals struct {
	audit, log *refusalGate
	cancel     context.CancelFunc
	done       chan struct{}
}

// auditRefusal appends rec, a refused reveal, unless its key is past its
// pace; then it is counted for the next aggregate record.
func (s *Server) auditRefusal(ctx context.Context, rec audit.Record) {
	if !s.refusals.audit.admit(refusalKey{rec.Identity, rec.Method, rec.Detail}, rec.Peer) {
		return
	}
	if err := s.audit.Append(context.WithoutCancel(ctx), rec); err != nil {
		s.log.ErrorContext(ctx, "audit append failed", "method", rec.Method, "error", err)
	}
}

// warnRefused logs the auth step's refusal of an identity, unless its key
// is past its pace; then it is counted for the next aggregate line. reason
// is a fixed message; args never hold a value.
func (s *Server) warnRefused(ctx context.Context, listener, identity, reason string, args ...any) {
	if !s.refusals.log.admit(refusalKey{clip(identity, 1024), listener, reason}, peerAddr(ctx)) {
		return
	}
	s.log.WarnContext(ctx, reason, append([]any{"identity", identity, "listener", listener, "peer", peerAddr(ctx)}, args...)...)
}

// startRefusalFlush writes the aggregates every refusalFlush until
// stopRefusalFlush, which writes the last ones.
func (s *Server) startRefusalFlush() {
	ctx, cancel := context.WithCancel(context.Background())
	r := &s.refusals
	r.cancel, r.done = cancel, make(chan struct{})
	go func() {
		defer close(r.done)
		t := time.NewTicker(refusalFlush)
		defer t.Stop()
		for {
			select {
			case <-ctx.Done():
				return
			case <-t.C:
				s.flushRefusals()
			}
		}
	}()
}

func (s *Server) stopRefusalFlush() {
	r := &s.refusals
	if r.cancel != nil {
		r.cancel()
		<-r.done
		r.cancel = nil
	}
	s.flushRefusals()
}

// flushRefusals writes one audit record and one log line per key with
// refusals not written one by one. An aggregate the audit log refuses is
// kept for the next flush: a refusal is never lost to an audit outage.
func (s *Server) flushRefusals() {
	for _, a := range s.refusals.log.drain() {
		s.log.Warn("refusals not logged one by one", "identity", a.key.identity, "listener", a.key.where,
			"reason", a.key.reason, "count", a.n, "since", a.since, "last", a.last, "peer", a.peer)
	}
	aggs := s.refusals.audit.drain()
	for i, a := range aggs {
		rec := audit.Record{
			Time: s.now(), Identity: a.key.identity, Peer: a.peer, Method: a.key.where,
			Outcome: "failed", Detail: a.key.reason, Count: a.n, Since: a.since,
		}
		ctx, cancel := context.WithTimeout(context.Background(), refusalFlush)
		err := s.audit.Append(ctx, rec)
		cancel()
		if err != nil {
			s.refusals.audit.restore(aggs[i:])
			s.log.Error("audit append of refused reveals failed; kept for the next attempt", "error", err)
			return
		}
		s.log.Log(context.Background(), slog.LevelWarn, "refused reveals audited as one record", "identity", a.key.identity,
			"method", a.key.where, "detail", a.key.reason, "count", a.n, "since", a.since)
	}
}
