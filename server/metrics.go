package server

import (
	"context"
	"errors"
	"fmt"
	"maps"
	"sync/atomic"
	"time"

	"github.com/prometheus/client_golang/prometheus"

	jetonv1 "github.com/jeton-dev/jeton/proto/jeton/v1"
	"github.com/jeton-dev/jeton/server/audit"
	"github.com/jeton-dev/jeton/tokenizer"
)

// Backend label values of jeton_backend_errors_total.
const (
	BackendRedis = "redis"
	BackendVault = "vault"
	BackendAudit = "audit"
)

// Metrics are jeton's own Prometheus series, beside the gRPC ones:
//
//	jeton_items_tokenized_total{class}
//	jeton_items_revealed_total{class,mode}   mode is full or masked
//	jeton_audit_append_seconds               histogram
//	jeton_backend_errors_total{backend}      redis, vault or audit
//	jeton_dek_cache_total{result}            hit or miss
//	jeton_dependency_up{dependency}          1 or 0, per readiness check
//
// Every label value is configuration (a class name) or a fixed word; none
// ever comes from a value, a token, a subject, an identity or a case
// reference. The methods are safe for concurrent use, and on a nil
// *Metrics they do nothing.
type Metrics struct {
	tokenized     *prometheus.CounterVec
	revealed      *prometheus.CounterVec
	auditAppend   prometheus.Histogram
	backendErrors *prometheus.CounterVec
	dekCache      *prometheus.CounterVec
	depUp         *prometheus.GaugeVec

	// The series the request path adds to, resolved once: a label lookup
	// hashes its values and takes the vector's lock, on every call.
	dekHit, dekMiss prometheus.Counter
	// classes maps a configured class name to its series; initClasses
	// replaces the whole map, so readers never lock.
	classes atomic.Pointer[map[string]*classSeries]
}

// classSeries are one field class's series.
type classSeries struct {
	tokenized, full, masked prometheus.Counter
}

// NewMetrics registers jeton's series on reg. Build them before the
// tokenizer when it should report DEK cache events (Metrics is a
// tokenizer.Observer), and hand them to the server in Config.Metrics.
func NewMetrics(reg prometheus.Registerer) (*Metrics, error) {
	m := &Metrics{
		tokenized: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "jeton_items_tokenized_total",
			Help: "Items tokenized, per field class.",
		}, []string{"class"}),
		revealed: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "jeton_items_revealed_total",
			Help: "Items revealed to a caller, per field class and mode (full or masked).",
		}, []string{"class", "mode"}),
		auditAppend: prometheus.NewHistogram(prometheus.HistogramOpts{
			Name: "jeton_audit_append_seconds",
			Help: "Time to append one audit record durably (group commit and fsync included).",
			// An fsync takes from tens of microseconds to tens of
			// milliseconds; the buckets span that range.
			Buckets: prometheus.ExponentialBuckets(50e-6, 2.5, 12),
		}),
		backendErrors: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "jeton_backend_errors_total",
			// Counted: every failed readiness probe, per check, and every
			// failed audit append. Redis and Vault failures on the request
			// path surface within one probe interval.
			Help: "Failed readiness probes per backend (redis, vault, audit), and failed audit appends.",
		}, []string{"backend"}),
		dekCache: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "jeton_dek_cache_total",
			Help: "Data-key lookups, per result: hit (served from memory) or miss (unwrapped by the key manager).",
		}, []string{"result"}),
		depUp: prometheus.NewGaugeVec(prometheus.GaugeOpts{
			Name: "jeton_dependency_up",
			Help: "Whether a dependency answered its last readiness probe (1) or not (0), per dependency (redis, vault, audit). Vault down with readiness up means the tenants whose keys are loaded are still served.",
		}, []string{"dependency"}),
	}
	for _, c := range []prometheus.Collector{m.tokenized, m.revealed, m.auditAppend, m.backendErrors, m.dekCache, m.depUp} {
		if err := reg.Register(c); err != nil {
			return nil, fmt.Errorf("server: metrics: %w", err)
		}
	}
	// Series with fixed label values exist from the start, at zero, so a
	// rate() over them is defined before the first event.
	for _, b := range []string{BackendRedis, BackendVault, BackendAudit} {
		m.backendErrors.WithLabelValues(b)
	}
	m.dekHit = m.dekCache.WithLabelValues("hit")
	m.dekMiss = m.dekCache.WithLabelValues("miss")
	m.classes.Store(&map[string]*classSeries{})
	return m, nil
}

// initClasses creates the per-class series at zero. Servers sharing m
// may call it concurrently, each with its classes.
func (m *Metrics) initClasses(classes []tokenizer.Class) {
	if m == nil {
		return
	}
	for {
		old := m.classes.Load()
		next := maps.Clone(*old)
		for _, c := range classes {
			next[c.Name] = &classSeries{
				tokenized: m.tokenized.WithLabelValues(c.Name),
				full:      m.revealed.WithLabelValues(c.Name, "full"),
				masked:    m.revealed.WithLabelValues(c.Name, "masked"),
			}
		}
		if m.classes.CompareAndSwap(old, &next) {
			return
		}
	}
}

// class returns the series of a configured class; a name initClasses has
// not seen (never on the request path, whose classes are configured) gets
// its series looked up.
func (m *Metrics) class(name string) *classSeries {
	if c, ok := (*m.classes.Load())[name]; ok {
		return c
	}
	return &classSeries{
		tokenized: m.tokenized.WithLabelValues(name),
		full:      m.revealed.WithLabelValues(name, "full"),
		masked:    m.revealed.WithLabelValues(name, "masked"),
	}
}

// DEKCache implements tokenizer.Observer.
func (m *Metrics) DEKCache(hit bool) {
	if m == nil {
		return
	}
	if hit {
		m.dekHit.Inc()
	} else {
		m.dekMiss.Inc()
	}
}

// BackendError counts one failure of a backend: BackendRedis, BackendVault
// or BackendAudit (or a readiness check's configured name).
func (m *Metrics) BackendError(backend string) {
	if m == nil {
		return
	}
	m.backendErrors.WithLabelValues(backend).Inc()
}

// dependencyUp records the outcome of a readiness probe.
func (m *Metrics) dependencyUp(name string, up bool) {
	if m == nil {
		return
	}
	v := 0.0
	if up {
		v = 1
	}
	m.depUp.WithLabelValues(name).Set(v)
}

// countTokenized counts the minted tokens of one Tokenize call. A result
// holds a token only when its class was accepted, so the label is always a
// configured class name.
func (m *Metrics) countTokenized(items []*jetonv1.TokenizeItem, results []*jetonv1.TokenizeResult) {
	if m == nil {
		return
	}
	// Add once per class and call, not per item: a batch of thousands
	// would otherwise contend on one atomic per item.
	t := make(tally, 0, 8)
	for i, r := range results {
		if _, ok := r.GetOutcome().(*jetonv1.TokenizeResult_Token); ok {
			t = t.add(m.class(items[i].GetFieldClass()).tokenized)
		}
	}
	t.flush()
}

// countRevealed counts the values of one reveal call that left the server.
// FieldClass is set only for opened records, from the configured class.
func (m *Metrics) countRevealed(results []*jetonv1.RevealResult) {
	if m == nil {
		return
	}
	t := make(tally, 0, 8)
	for _, r := range results {
		if _, ok := r.GetOutcome().(*jetonv1.RevealResult_Value); !ok || r.GetFieldClass() == "" {
			continue
		}
		c := m.class(r.GetFieldClass())
		if r.GetMasked() {
			t = t.add(c.masked)
		} else {
			t = t.add(c.full)
		}
	}
	t.flush()
}

// tally adds up one call's increments per series, so that each series is
// added to once. A call's items span a few classes: a short list searched
// in place costs no allocation, where a map costs one per call.
type tally []tallied

type tallied struct {
	c prometheus.Counter
	n float64
}

func (t tally) add(c prometheus.Counter) tally {
	for i := range t {
		if t[i].c == c {
			t[i].n++
			return t
		}
	}
	return append(t, tallied{c, 1})
}

func (t tally) flush() {
	for _, e := range t {
		e.c.Add(e.n)
	}
}

// meteredAuditor times every Append and counts its failures. A caller that
// gave up (its context ended) is not a sink failure and is not counted.
type meteredAuditor struct {
	Auditor
	m *Metrics
}

func (a meteredAuditor) Append(ctx context.Context, rec audit.Record) error {
	// Wall time, not Config.Now: tests may fix that clock.
	start := time.Now()
	err := a.Auditor.Append(ctx, rec)
	if a.m == nil {
		return err
	}
	a.m.auditAppend.Observe(time.Since(start).Seconds())
	if err != nil && ctx.Err() == nil && !errors.Is(err, context.Canceled) {
		a.m.BackendError(BackendAudit)
	}
	return err
}
