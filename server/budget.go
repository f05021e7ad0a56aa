package server

import (
	"context"
	"errors"
	"log/slog"

	"github.com/jeton-dev/jeton/server/audit"
	"github.com/jeton-dev/jeton/server/budget"
	"github.com/jeton-dev/jeton/tokenizer"
)

// initGuard sets up budgets and alerts; New calls it once the logger,
// clock and registry are set. Without a configured Limiter the server
// counts in memory, which bounds this replica only: production wiring
// passes the Redis one so that every replica shares one budget.
func (s *Server) initGuard(cfg Config) error {
	s.budgets = cfg.Budgets
	if s.budgets == nil {
		s.budgets = budget.NewMemory(budget.Config{Now: s.now})
	}
	a, err := newAlerts(s.registry, s.log)
	if err != nil {
		return err
	}
	s.alerts = a
	return nil
}

// admit reserves a reveal call's budget before any record is opened, and
// refuses the whole call when it would go over. lookups are the keyed
// hashes of every well-formed token of the call, refused ones included, so
// that guessing tokens spends budget like reading them. Every identity goes
// through it, budget or not, because it is also where a suspension is
// enforced.
func (s *Server) admit(ctx context.Context, p *Principal, method string, items int, lookups []string) error {
	err := s.budgets.Reserve(ctx, budget.Request{Identity: p.ID, Limits: p.Budget, Items: items, Lookups: lookups})
	var ex *budget.ExceededError
	switch {
	case err == nil:
	case errors.As(err, &ex):
		s.alerts.refusals.WithLabelValues(string(ex.Limit)).Inc()
		s.alerts.raise(ctx, slog.LevelWarn, AlertBudgetExceeded, p.ID, "limit", string(ex.Limit), "method", method)
		if ex.Suspended {
			s.suspendedNow(ctx, p.ID, "budget:"+string(ex.Limit))
		}
	case errors.Is(err, budget.ErrSuspended):
		s.log.WarnContext(ctx, "suspended identity refused", "identity", p.ID, "method", method)
	default:
		// Fail closed: no check, no reveal.
		s.metrics.count(ctx, BackendRedis, err)
		s.log.ErrorContext(ctx, "budget check failed; reveal refused", "identity", p.ID, "method", method, "error", err)
	}
	return err
}

// admitDeterministic bounds how fast a sponsor can use deterministic
// classes as an oracle ("is this phone number tokenized, and as what?"):
// the items of deterministic classes spend the identity's budget rate and
// batch cap, in a bucket of their own. Random items are no oracle and cost
// nothing. An identity without a budget is bounded by MaxBatch only.
func (s *Server) admitDeterministic(ctx context.Context, p *Principal, items []tokenizer.Item) error {
	if p.Budget.Rate == 0 && p.Budget.MaxBatch == 0 {
		return nil
	}
	n := 0
	for _, it := range items {
		if c, ok := s.tok.Class(it.Class); ok && c.Kind == tokenizer.KindDeterministic {
			n++
		}
	}
	if n == 0 {
		return nil
	}
	lim := budget.Limits{MaxBatch: p.Budget.MaxBatch, Rate: p.Budget.Rate, Burst: p.Budget.Burst}
	err := s.budgets.Reserve(ctx, budget.Request{Identity: "tokenize-deterministic\x00" + p.ID, Limits: lim, Items: n, Cost: n})
	var ex *budget.ExceededError
	switch {
	case err == nil:
	case errors.As(err, &ex):
		s.alerts.refusals.WithLabelValues(string(ex.Limit)).Inc()
		s.alerts.raise(ctx, slog.LevelWarn, AlertBudgetExceeded, p.ID, "limit", string(ex.Limit), "method", "Tokenize")
	default:
		s.metrics.count(ctx, BackendRedis, err)
		s.log.ErrorContext(ctx, "budget check failed; tokenize refused", "identity", p.ID, "error", err)
	}
	return err
}

// suspendedNow reports a suspension that just took effect.
func (s *Server) suspendedNow(ctx context.Context, identity, reason string) {
	s.alerts.suspensions.Inc()
	s.alerts.raise(ctx, slog.LevelError, AlertIdentitySuspended, identity, "reason", reason)
}

// canaries raises the alert for every canary among opened records, before
// the response leaves, and suspends the identity when a canary says so. A
// canary is answered like any other record, so the caller learns nothing;
// the error is non-nil only when a suspension could not be stored, and
// then the call must fail closed.
func (s *Server) canaries(ctx context.Context, p *Principal, method string, opened []tokenizer.Revealed) (found bool, err error) {
	suspend := false
	for _, o := range opened {
		if o.Err != nil || o.Flags&tokenizer.FlagCanary == 0 {
			continue
		}
		found = true
		suspend = suspend || o.Flags&tokenizer.FlagCanarySuspend != 0
		s.alerts.canaryReveals.Inc()
		// The class is configuration, not a value; the token stays out.
		s.alerts.raise(ctx, slog.LevelError, AlertCanaryRevealed, p.ID, "method", method,
			"tenant", o.Token.Tenant, "class", o.Token.Class, "suspend", o.Flags&tokenizer.FlagCanarySuspend != 0)
	}
	if !suspend {
		return found, nil
	}
	fresh, err := s.budgets.Suspend(ctx, p.ID, "canary")
	if err != nil {
		s.log.ErrorContext(ctx, "suspending after a canary failed; reveal refused", "identity", p.ID, "error", err)
		return found, err
	}
	if fresh {
		s.suspendedNow(ctx, p.ID, "canary")
	}
	return found, nil
}

// lookups returns the keyed hashes of a call's well-formed tokens: the
// audit items that carry one.
func lookups(items []audit.Item) []string {
	out := make([]string, 0, len(items))
	for _, it := range items {
		if it.TokenHash != "" {
			out = append(out, it.TokenHash)
		}
	}
	return out
}
