// Package budget bounds how much a trusted identity can reveal: items per
// call, a token-bucket rate of items, and a budget of distinct records per
// sliding window. Past a configurable number of refusals it suspends the
// identity until a custodian reinstates it.
//
// The Redis Limiter keeps every counter in Redis and decides each call in a
// single Lua script (EVALSHA), so any number of jetond replicas sharing one
// Redis enforce one budget, and two replicas racing for the last slot
// cannot both win. The memory Limiter keeps the same counters in process,
// for dev mode and unit tests; it bounds one replica only.
//
// # Distinct records: exact, not approximate
//
// The distinct budget is exact. Each identity has a sorted set of the
// records it looked up, scored by time; one script trims entries older
// than the window, counts the members a call would add and, only if the
// total stays within the budget, adds them. There is no estimation error:
// the number of distinct records admitted per window never exceeds the
// budget, and at saturation it equals it. A HyperLogLog would bound memory
// to 12 KiB per window bucket but miss by about 0.81% (one standard error)
// and could only slide in bucket steps; with budgets in the thousands the
// exact set costs about 100 bytes per member and is the better trade.
//
// Records are named by the keyed token hash of the audit log, never a
// token: Redis learns nothing it could reverse. A lookup of an unknown or
// refused token counts like a reveal, so guessing tokens spends the same
// budget as reading them.
//
// The window slides: a record counts from its latest lookup until one
// window later. Reading a record again within the window costs rate but no
// distinct budget.
//
// # Order and failure
//
// Reserve is called before any record is opened and admits or refuses the
// whole call. A call that is admitted and then fails still counts: the
// error is on the side of revealing less. Reserve fails closed: when Redis
// cannot be reached it returns ErrUnavailable and the caller must reveal
// nothing.
//
// Usage reads an identity's counters for Admin.Stats without changing
// them: the distinct records within the window (ZCOUNT over the scores
// after now - window, the set Reserve would count), the refusal count
// and the suspension.
//
// # Key layout
//
// Keys are named by the first 32 hex digits of SHA-256(identity), with the
// hash in a Redis Cluster hash tag so one script touches one slot:
//
//	jeton:b:{<h>}:rate      hash: tokens, ts (the token bucket)
//	jeton:b:{<h>}:seen      sorted set: token hash -> ms of latest lookup
//	jeton:b:{<h>}:refusals  refusals since the first one of this window
//	jeton:susp:{<h>}        hash: identity, reason, at (ms); present = suspended
package budget

import (
	"context"
	"crypto/sha256"
	"encoding/hex"
	"errors"
	"fmt"
	"time"
)

// Limit names one of the bounds, as reported in errors and metrics.
type Limit string

// The limits a call can exceed.
const (
	LimitMaxBatch Limit = "max_batch"
	LimitRate     Limit = "rate"
	LimitDistinct Limit = "distinct"
)

// DefaultWindow is the window of the distinct budget and of the refusal
// count when Limits sets none.
const DefaultWindow = 24 * time.Hour

// Sentinel errors that callers branch on. Their messages carry no identity,
// token or value.
var (
	// ErrSuspended means the identity is suspended and may reveal nothing
	// until reinstated.
	ErrSuspended = errors.New("budget: identity suspended")
	// ErrExceeded means the call would go over a limit; errors.As finds the
	// *ExceededError with the details.
	ErrExceeded = errors.New("budget: limit exceeded")
	// ErrUnavailable means the budget store could not decide; the caller
	// must fail closed.
	ErrUnavailable = errors.New("budget: store unavailable")
)

// ExceededError is a refused call. It matches ErrExceeded.
type ExceededError struct {
	Limit Limit
	// Suspended is set when this refusal was the one that suspended the
	// identity.
	Suspended bool
}

func (e *ExceededError) Error() string { return "budget: " + string(e.Limit) + " limit exceeded" }

// Is makes errors.Is(err, ErrExceeded) true.
func (e *ExceededError) Is(target error) bool { return target == ErrExceeded }

// Limits are one identity's bounds. A zero field means no bound of that
// kind.
type Limits struct {
	// MaxBatch bounds the items of one call.
	MaxBatch int `yaml:"max_batch"`
	// Rate is the token bucket's refill in items per second, Burst its
	// size. A call costs one token per well-formed token looked up, and a
	// call costing more than Burst is always refused.
	Rate  float64 `yaml:"rate"`
	Burst int     `yaml:"burst"`
	// Distinct bounds the distinct records looked up per Window.
	Distinct int `yaml:"distinct"`
	// Window is the sliding window of Distinct and of SuspendAfter;
	// DefaultWindow if zero.
	Window time.Duration `yaml:"window"`
	// SuspendAfter suspends the identity at its SuspendAfter-th refusal
	// within one Window, counted from the first.
	SuspendAfter int `yaml:"suspend_after"`
}

// IsZero reports whether l bounds nothing.
func (l Limits) IsZero() bool { return l == Limits{} }

// Validate checks l; its errors name the bad field.
func (l Limits) Validate() error {
	switch {
	case l.MaxBatch < 0:
		return errors.New("budget: max_batch must not be negative")
	case l.Rate < 0:
		return errors.New("budget: rate must not be negative")
	case l.Burst < 0:
		return errors.New("budget: burst must not be negative")
	case l.Rate > 0 && l.Burst == 0:
		return errors.New("budget: burst must be at least 1 when rate is set")
	case l.Burst > 0 && l.Rate == 0:
		return errors.New("budget: rate must be set when burst is")
	case l.Rate > 0 && l.MaxBatch > l.Burst:
		return errors.New("budget: burst must be at least max_batch, or a full batch is never admitted")
	case l.Distinct < 0:
		return errors.New("budget: distinct must not be negative")
	case l.Window < 0:
		return errors.New("budget: window must not be negative")
	case l.Window > 0 && l.Window < time.Millisecond:
		return errors.New("budget: window must be at least 1ms")
	case l.SuspendAfter < 0:
		return errors.New("budget: suspend_after must not be negative")
	}
	return nil
}

func (l Limits) window() time.Duration {
	if l.Window == 0 {
		return DefaultWindow
	}
	return l.Window
}

// Request is one call to admit.
type Request struct {
	Identity string
	Limits   Limits
	// Items is the number of items in the call, for MaxBatch.
	Items int
	// Lookups are the keyed hashes of every well-formed token the call
	// would look up, refused ones included. Each costs one rate token;
	// each distinct one not seen within the window costs one unit of the
	// distinct budget.
	Lookups []string
	// Cost overrides the rate tokens the call spends, for calls that look
	// nothing up (deterministic tokenization). Zero means one per lookup.
	Cost int
}

// cost is the rate tokens req spends.
func (req Request) cost() int {
	if req.Cost > 0 {
		return req.Cost
	}
	return len(req.Lookups)
}

// Config configures a Limiter.
type Config struct {
	// Now is the clock. If nil, the Redis Limiter uses the Redis server's
	// clock, one clock for every replica, and the memory one time.Now.
	Now func() time.Time
}

// backend is where the counters live.
type backend interface {
	reserve(ctx context.Context, key string, req Request, uniq []string, now int64) error
	suspend(ctx context.Context, key, identity, reason string, now int64) (bool, error)
	reinstate(ctx context.Context, key string) (bool, error)
	suspended(ctx context.Context) ([]string, error)
	usage(ctx context.Context, key string, window, now int64) (Usage, error)
}

// Limiter admits or refuses reveal calls. It is safe for concurrent use.
type Limiter struct {
	b   backend
	now func() time.Time
}

// Reserve admits req or refuses it whole. It returns nil when the call may
// go ahead; ErrSuspended when the identity is suspended; an *ExceededError
// when the call would go over a limit (and nothing is counted but the
// refusal); ErrUnavailable, wrapped, when the store fails; or the context's
// error.
func (l *Limiter) Reserve(ctx context.Context, req Request) error {
	if err := req.Limits.Validate(); err != nil {
		return err
	}
	seen := make(map[string]struct{}, len(req.Lookups))
	uniq := make([]string, 0, len(req.Lookups))
	for _, h := range req.Lookups {
		if _, dup := seen[h]; !dup {
			seen[h] = struct{}{}
			uniq = append(uniq, h)
		}
	}
	return l.b.reserve(ctx, Key(req.Identity), req, uniq, l.nowMS())
}

// Suspend suspends identity, with a fixed, value-free reason, and reports
// whether it was not suspended already.
func (l *Limiter) Suspend(ctx context.Context, identity, reason string) (bool, error) {
	return l.b.suspend(ctx, Key(identity), identity, reason, l.nowMS())
}

// Reinstate lifts identity's suspension and clears its refusal count, and
// reports whether it was suspended. Its distinct and rate budgets are kept:
// a reinstated identity reveals again once its window allows.
func (l *Limiter) Reinstate(ctx context.Context, identity string) (bool, error) {
	return l.b.reinstate(ctx, Key(identity))
}

// Suspended lists the suspended identities, sorted.
func (l *Limiter) Suspended(ctx context.Context) ([]string, error) {
	return l.b.suspended(ctx)
}

// Usage is how much of its budget an identity has used, as counted now.
// It holds counts, never a token hash.
type Usage struct {
	// Distinct is the number of distinct records the identity looked up
	// within the window ending now: the count its distinct budget is
	// checked against. Lookups are recorded only while a distinct budget
	// is set.
	Distinct int
	// DistinctLimit is the distinct budget of the limits asked about; zero
	// means none.
	DistinctLimit int
	// Refusals counts the identity's refused calls since the first refusal
	// of the current refusal window; zero once that window has passed or
	// the identity was reinstated, and reset when a refusal suspends it.
	Refusals int
	// Suspended is set while the identity is suspended.
	Suspended bool
}

// Usage reads identity's budget use under limits, which give the window
// and the distinct budget. It changes nothing: no window is trimmed and
// nothing is counted. ErrUnavailable, wrapped, means the store failed.
func (l *Limiter) Usage(ctx context.Context, identity string, limits Limits) (Usage, error) {
	if err := limits.Validate(); err != nil {
		return Usage{}, err
	}
	u, err := l.b.usage(ctx, Key(identity), limits.window().Milliseconds(), l.nowMS())
	if err != nil {
		return Usage{}, err
	}
	u.DistinctLimit = limits.Distinct
	return u, nil
}

// nowMS is the injected clock in Unix milliseconds, or -1 to let the
// backend use its own.
func (l *Limiter) nowMS() int64 {
	if l.now == nil {
		return -1
	}
	return l.now().UnixMilli()
}

// Key returns the hash that names identity's counters: the first 32 hex
// digits of its SHA-256.
func Key(identity string) string {
	sum := sha256.Sum256([]byte(identity))
	return hex.EncodeToString(sum[:16])
}

func unavailable(err error) error {
	if errors.Is(err, context.Canceled) || errors.Is(err, context.DeadlineExceeded) {
		return err
	}
	return fmt.Errorf("%w: %v", ErrUnavailable, err)
}
