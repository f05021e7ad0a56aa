package server

import (
	"context"
	"crypto/hmac"
	"crypto/sha256"
	"encoding/hex"
	"errors"
	"log/slog"
	"sync"

	"github.com/jeton-dev/jeton/server/audit"
	"github.com/jeton-dev/jeton/server/budget"
	"github.com/jeton-dev/jeton/tokenizer"
)

// The operations a budget bounds, as named in refusals and metrics.
const (
	opReveal   = "reveal"
	opTokenize = "tokenize"
)

// initGuard sets up budgets and alerts; New calls it once the logger,
// clock and registry are set. Without a configured Limiter the server
// counts in memory, which bounds this replica only: production wiring
// passes the Redis one so that every replica shares one budget.
func (s *Server) initGuard(cfg Config) error {
	for _, c := range cfg.Tokenizer.Classes() {
		if c.Kind == tokenizer.KindDeterministic {
			s.detClasses = append(s.detClasses, c.Name)
		}
	}
	if len(cfg.OracleKey) > 0 {
		s.oracleKey.key = cfg.OracleKey
	}
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
	return s.reserve(ctx, p, opReveal, method, budget.Request{Identity: p.ID, Limits: p.Budget, Items: items, Lookups: lookups})
}

// admitRead is admit, reading the store keys names in the same round trip
// (budget.Limiter.ReserveRead); their values come back only when the call
// is admitted.
func (s *Server) admitRead(ctx context.Context, p *Principal, method string, items int, lookups, names []string) ([][]byte, error) {
	var vals [][]byte
	err := s.decide(ctx, p, opReveal, method, budget.Request{Identity: p.ID, Limits: p.Budget, Items: items, Lookups: lookups}, func(req budget.Request) error {
		var err error
		vals, err = s.budgets.ReserveRead(ctx, req, names)
		return err
	})
	if err != nil {
		return nil, err
	}
	return vals, nil
}

// admitTokenize bounds how a sponsor can use deterministic classes as an
// oracle ("is this phone number tokenized, and as what?"): the items of
// deterministic classes spend the identity's budget, items per call and
// rate, and each distinct value (a keyed hash of tenant, class and
// normalised value) spends its distinct budget, shared across replicas
// like a revealer's. Random items are no oracle and cost nothing. An
// identity that may tokenize a deterministic class is checked on every
// call, so that a suspension stops all its tokenizing; the others never
// touch the limiter. CheckOracles makes sure every such identity has a
// distinct budget.
func (s *Server) admitTokenize(ctx context.Context, p *Principal, tenant string, items []tokenizer.Item) error {
	if !s.mayOracle(p) {
		return nil
	}
	var lookups []string
	n := 0
	for _, it := range items {
		c, ok := s.tok.Class(it.Class)
		if !ok || c.Kind != tokenizer.KindDeterministic {
			continue
		}
		n++
		norm, err := c.NormalizeValue(it.Value)
		if err != nil {
			continue // refused per item, no token: no answer to learn from
		}
		h, err := s.valueHash(ctx, tenant, c.Name, norm)
		if err != nil {
			return err
		}
		lookups = append(lookups, h)
	}
	return s.reserve(ctx, p, opTokenize, "Tokenize", budget.Request{Identity: p.ID, Limits: p.Budget, Items: n, Lookups: lookups, Cost: n})
}

// mayOracle reports whether p may tokenize some deterministic class.
func (s *Server) mayOracle(p *Principal) bool {
	for _, c := range s.detClasses {
		if p.CanTokenize(c) {
			return true
		}
	}
	return false
}

// OracleKeyLabel is the tokenizer.DeriveKey label of the key that names
// deterministic values in the sponsors' distinct budgets (Config.OracleKey).
// It is a key of its own, not the audit key, which verifiers may hold: a
// hash of a value must not be confirmable by guessing without it.
const OracleKeyLabel = "oracle-budget"

// valueHash names a deterministic value in the budget: a MAC of tenant,
// class and normalised value under a key derived from the key hierarchy,
// so that Redis holds no value and nothing that confirms a guess.
func (s *Server) valueHash(ctx context.Context, tenant, class, norm string) (string, error) {
	key, err := s.oracleKey.get(ctx, s.tok)
	if err != nil {
		return "", err
	}
	m := hmac.New(sha256.New, key)
	for _, part := range []string{tenant, class, norm} {
		m.Write([]byte(part))
		m.Write([]byte{0})
	}
	return hex.EncodeToString(m.Sum(nil)[:16]), nil
}

// lazyKey is Config.OracleKey, or derived on first use and kept; a
// failure is retried at the next use. jetond derives it at start-up, so
// that a Vault outage later never stops deterministic tokenization of
// tenants whose keys are loaded.
type lazyKey struct {
	mu  sync.Mutex
	key []byte
}

func (k *lazyKey) get(ctx context.Context, tok *tokenizer.Tokenizer) ([]byte, error) {
	k.mu.Lock()
	defer k.mu.Unlock()
	if k.key == nil {
		key, err := tok.DeriveKey(ctx, OracleKeyLabel)
		if err != nil {
			return nil, errors.Join(tokenizer.ErrUnavailable, err)
		}
		k.key = key
	}
	return k.key, nil
}

// reserve asks the limiter, and reports what it decided: a distinct
// refusal raises an alert (unless it repeats one already counted, see
// budget.ExceededError.Repeat), a suspension another; rate and batch refusals
// are counted but raise nothing, since a client that goes too fast is
// told how long to wait, not treated as an extraction. The error it
// returns is a refusal that toStatus turns into the caller's answer.
func (s *Server) reserve(ctx context.Context, p *Principal, op, method string, req budget.Request) error {
	return s.decide(ctx, p, op, method, req, func(req budget.Request) error { return s.budgets.Reserve(ctx, req) })
}

// decide is reserve with the limiter's call made by ask.
func (s *Server) decide(ctx context.Context, p *Principal, op, method string, req budget.Request, ask func(budget.Request) error) error {
	err := ask(req)
	var ex *budget.ExceededError
	switch {
	case err == nil:
		return nil
	case errors.As(err, &ex):
		s.alerts.refusals.WithLabelValues(op, string(ex.Limit)).Inc()
		switch {
		case ex.Limit == budget.LimitDistinct && ex.Repeat:
			// A retry of a refused call: counted, but no new alert.
			s.log.DebugContext(ctx, "a refused call was sent again", "identity", p.ID, "method", method, "limit", string(ex.Limit))
		case ex.Limit == budget.LimitDistinct:
			s.alerts.raise(ctx, slog.LevelWarn, AlertBudgetExceeded, p.ID, "limit", string(ex.Limit), "method", method)
		default:
			s.log.DebugContext(ctx, "call refused by a rate or batch limit", "identity", p.ID, "method", method,
				"limit", string(ex.Limit), "retry_after", ex.RetryAfter)
		}
		if ex.Suspended {
			s.suspendedNow(ctx, p.ID, "budget:"+string(ex.Limit))
		}
		return refusal{op: op, maxBatch: req.Limits.MaxBatch, err: err}
	case errors.Is(err, budget.ErrSuspended):
		listener := ListenerTrusted
		if op == opTokenize {
			listener = ListenerPublic
		}
		s.warnRefused(ctx, listener, p.ID, "suspended identity refused", "method", method)
		return refusal{op: op, err: err}
	default:
		// Fail closed: no check, no reveal and no deterministic token.
		s.metrics.count(ctx, BackendRedis, err)
		s.log.ErrorContext(ctx, "budget check failed; call refused", "identity", p.ID, "method", method, "error", err)
		return err
	}
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
