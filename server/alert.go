package server

import (
	"context"
	"fmt"
	"log/slog"

	"github.com/prometheus/client_golang/prometheus"
)

// Alert kinds: the kind attribute of an "alert" log event and the kind
// label of jeton_alerts_total.
const (
	AlertBudgetExceeded     = "budget_exceeded"
	AlertCanaryRevealed     = "canary_revealed"
	AlertIdentitySuspended  = "identity_suspended"
	AlertIdentityReinstated = "identity_reinstated"
)

// alerts raises security alerts: one structured log event with msg
// "alert", for whoever watches the logs, and a counter, for whoever watches
// the metrics. The identity goes in the log event only: a label would make
// one series per identity and would outlive the event in every scrape.
//
//	jeton_alerts_total{kind}
//	jeton_budget_refusals_total{op,limit}   op is reveal or tokenize
//	jeton_canary_reveals_total
//	jeton_suspensions_total
type alerts struct {
	log           *slog.Logger
	total         *prometheus.CounterVec
	refusals      *prometheus.CounterVec
	canaryReveals prometheus.Counter
	suspensions   prometheus.Counter
}

func newAlerts(reg prometheus.Registerer, log *slog.Logger) (*alerts, error) {
	a := &alerts{
		log: log,
		total: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "jeton_alerts_total",
			Help: "Security alerts raised, per kind (budget_exceeded, canary_revealed, identity_suspended, identity_reinstated).",
		}, []string{"kind"}),
		refusals: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "jeton_budget_refusals_total",
			Help: "Calls refused for going over a budget, per operation (reveal, or tokenize of deterministic classes) and limit (max_batch, rate, distinct).",
		}, []string{"op", "limit"}),
		canaryReveals: prometheus.NewCounter(prometheus.CounterOpts{
			Name: "jeton_canary_reveals_total",
			Help: "Canary records looked up by a Detokenize or Mask call.",
		}),
		suspensions: prometheus.NewCounter(prometheus.CounterOpts{
			Name: "jeton_suspensions_total",
			Help: "Identities suspended, by an exhausted distinct budget or a canary.",
		}),
	}
	for _, c := range []prometheus.Collector{a.total, a.refusals, a.canaryReveals, a.suspensions} {
		if err := reg.Register(c); err != nil {
			return nil, fmt.Errorf("server: metrics: %w", err)
		}
	}
	// Fixed label values exist at zero from the start, so an alerting rule
	// on increase() works before the first event.
	for _, k := range []string{AlertBudgetExceeded, AlertCanaryRevealed, AlertIdentitySuspended, AlertIdentityReinstated} {
		a.total.WithLabelValues(k)
	}
	for _, op := range []string{opReveal, opTokenize} {
		for _, l := range []string{"max_batch", "rate", "distinct"} {
			a.refusals.WithLabelValues(op, l)
		}
	}
	return a, nil
}

// raise logs one alert event and counts it. attrs are fixed words and
// identities, never a value or a token.
func (a *alerts) raise(ctx context.Context, level slog.Level, kind, identity string, attrs ...any) {
	a.total.WithLabelValues(kind).Inc()
	a.log.Log(ctx, level, "alert", append([]any{"kind", kind, "identity", identity}, attrs...)...)
}
