// Package budget bounds how much an identity can extract: items per call,
// a token-bucket rate of items, and budgets of distinct records (or, for
// deterministic tokenization, distinct values) per sliding window. Past a
// configurable number of distinct-budget refusals it suspends the identity
// until a custodian reinstates it.
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
// than the longest window, counts per window the members a call would add
// and, only if every bound holds, adds them. There is no estimation error:
// the number of distinct records admitted per window never exceeds the
// budget, and at saturation it equals it. A HyperLogLog would bound memory
// to 12 KiB per window bucket but miss by about 0.81% (one standard error)
// and could only slide in bucket steps; with budgets in the thousands the
// exact set costs about 100 bytes per member and is the better trade.
//
// A call that looks nothing up and costs no rate token (a tokenization of
// random classes only) spends nothing, so only a suspension or its batch
// size can refuse it; it never runs the script, only a check that the
// identity is not suspended, whose "no" it may trust for Config.Recheck.
//
// The script needs Redis 6.2 or later (ZMSCORE).
//
// Records are named by a keyed hash (the audit log's token hash for
// reveals, a keyed hash of the normalised value for deterministic
// tokenization), never a token or a value: Redis learns nothing it could
// reverse. A lookup of an unknown or refused token counts like a reveal,
// so guessing tokens spends the same budget as reading them.
//
// The window slides: a record counts from its latest lookup until one
// window later. Reading a record again within the window costs rate but no
// distinct budget.
//
// # Several windows
//
// Limits may hold several distinct bounds, each over its own window (see
// Merge): 1,000 records per 24h and 10 per minute are both enforced, over
// one sorted set trimmed to the longest window.
//
// # What suspends
//
// Only the signals of extraction suspend: a distinct budget exhausted
// SuspendAfter times within the refusal window (and, outside this
// package, a canary revealed). A suspension refuses every call of the
// identity at once, on every replica; only a call that spends nothing may,
// on a replica other than the one that suspended it, go through for up to
// Config.Recheck more (it can reveal nothing, and tokenizes only random
// values, which answer no question). A rate or batch refusal never counts
// towards a suspension: a client that retries too fast is slowed down,
// not locked out. A rate refusal says how long to wait (RetryAfter).
//
// A distinct refusal counts only when it asks for a record that was
// neither read within the window nor part of a refusal already counted
// within the refusal window (ExceededError.Repeat otherwise). A client
// retrying one over-budget call is refused every time and counted once; a
// sweep asks for new records with every call, and each of its refusals
// counts. The records of counted refusals are kept, under their keyed
// hashes, for the refusal window: at most SuspendAfter calls' worth.
//
// # Order and failure
//
// Reserve is called before any record is opened and admits or refuses the
// whole call. A call that is admitted and then fails still counts: the
// error is on the side of revealing less. Reserve fails closed: when Redis
// cannot be reached it returns ErrUnavailable and the caller must reveal
// nothing.
//
// ReserveRead is Reserve with the caller's records read in the same
// round trip (the script and the reads in one pipeline), for a Redis that
// holds both (Config.ReadsRecords). What it read is handed over only
// once the script has admitted the call: a refused call gets its refusal
// and nothing else, so it opens nothing, exactly as with Reserve.
//
// Usage reads an identity's counters for Admin.Stats without changing
// them: the distinct records within the longest window (ZCOUNT over the
// scores after now - window, the set Reserve would count), the refusal
// count and the suspension.
//
// # Key layout
//
// Keys are named by the first 32 hex digits of SHA-256(identity), with the
// hash in a Redis Cluster hash tag so one script touches one slot:
//
//	jeton:b:{<h>}:bucket    string "<tokens> <ms>" (the token bucket)
//	jeton:b:{<h>}:seen      sorted set: record hash -> ms of latest lookup
//	jeton:b:{<h>}:refusals  distinct refusals since the first one of this window
//	jeton:b:{<h>}:refused   sorted set: record hash -> ms, of counted refusals
//	jeton:susp:{<h>}        hash: identity, reason, at (ms); present = suspended
package budget

import (
	"cmp"
	"context"
	"crypto/sha256"
	"encoding/hex"
	"errors"
	"fmt"
	"slices"
	"sync"
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
	// identity. Only distinct refusals ever suspend.
	Suspended bool
	// Repeat is set on a distinct refusal that asked for no record outside
	// the refusals already counted within the refusal window: a retry of a
	// refused call, which does not count towards SuspendAfter. It is only
	// told apart while SuspendAfter is set.
	Repeat bool
	// RetryAfter, when positive, is how long until the same call would fit
	// the rate limit: set for rate refusals of a call no larger than the
	// burst. Zero means waiting alone does not help.
	RetryAfter time.Duration
}

func (e *ExceededError) Error() string { return "budget: " + string(e.Limit) + " limit exceeded" }

// Is makes errors.Is(err, ErrExceeded) true.
func (e *ExceededError) Is(target error) bool { return target == ErrExceeded }

// Bound is one distinct bound: at most Distinct records per sliding
// Window (DefaultWindow if zero).
type Bound struct {
	Distinct int
	Window   time.Duration
}

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
	// SuspendAfter suspends the identity at its SuspendAfter-th distinct
	// refusal within one Window, counted from the first. Rate and batch
	// refusals never count, nor does a refusal that asks for no record
	// beyond those of the refusals already counted: retrying a refused
	// call is no sweep.
	SuspendAfter int `yaml:"suspend_after"`
	// Also are further distinct bounds, each over a window of its own,
	// shorter than Window. Merge sets them; a policy file cannot.
	Also []Bound `yaml:"-"`
}

// IsZero reports whether l bounds nothing.
func (l Limits) IsZero() bool {
	return l.MaxBatch == 0 && l.Rate == 0 && l.Burst == 0 && l.Distinct == 0 &&
		l.Window == 0 && l.SuspendAfter == 0 && len(l.Also) == 0
}

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
	for _, b := range l.Also {
		if b.Distinct <= 0 || b.Window < time.Millisecond {
			return errors.New("budget: every further distinct bound needs a positive distinct and a window of at least 1ms")
		}
	}
	return nil
}

func (l Limits) window() time.Duration {
	if l.Window == 0 {
		return DefaultWindow
	}
	return l.Window
}

// bounds returns every distinct bound of l, windows defaulted, longest
// window first.
func (l Limits) bounds() []Bound {
	if len(l.Also) == 0 {
		if l.Distinct == 0 {
			return nil
		}
		return []Bound{{Distinct: l.Distinct, Window: l.window()}}
	}
	var out []Bound
	if l.Distinct > 0 {
		out = append(out, Bound{Distinct: l.Distinct, Window: l.window()})
	}
	for _, b := range l.Also {
		if b.Window == 0 {
			b.Window = DefaultWindow
		}
		out = append(out, b)
	}
	slices.SortFunc(out, func(a, b Bound) int { return cmp.Compare(b.Window, a.Window) })
	return out
}

// refusalWindow is how long distinct refusals are counted towards
// SuspendAfter, and how long the lookups are kept: the longest window.
func (l Limits) refusalWindow() time.Duration {
	w := l.window()
	for _, b := range l.bounds() {
		w = max(w, b.Window)
	}
	return w
}

// Merge returns limits that are never looser than a or b, bound by bound,
// for an identity that holds the roles of both:
//
//   - max_batch, rate, burst and suspend_after: the smaller of the two
//     where both are set, the one that is set where only one is (a bound
//     nobody sets is absent). A token bucket with a smaller rate and a
//     smaller burst admits less, at every moment, than either bucket.
//   - distinct bounds are kept per window: for each window the smaller
//     budget, and every window is enforced. 1,000 per 24h merged with 10
//     per minute is both, never 1,000 per minute. A bound implied by a
//     tighter one over a longer window is dropped.
//
// The merge is commutative and associative, so the order of roles does
// not matter.
func Merge(a, b Limits) Limits {
	out := Limits{
		MaxBatch:     tightest(a.MaxBatch, b.MaxBatch),
		Rate:         tightest(a.Rate, b.Rate),
		Burst:        tightest(a.Burst, b.Burst),
		SuspendAfter: tightest(a.SuspendAfter, b.SuspendAfter),
	}
	// A batch larger than the merged burst could never be admitted.
	if out.Rate > 0 && out.MaxBatch > out.Burst {
		out.MaxBatch = out.Burst
	}
	byWindow := map[time.Duration]int{}
	for _, bd := range append(a.bounds(), b.bounds()...) {
		byWindow[bd.Window] = tightest(byWindow[bd.Window], bd.Distinct)
	}
	var bounds []Bound
	for w, d := range byWindow {
		bounds = append(bounds, Bound{Distinct: d, Window: w})
	}
	slices.SortFunc(bounds, func(x, y Bound) int { return cmp.Compare(y.Window, x.Window) })
	// Longest window first: a bound over a shorter window that allows as
	// many records as one over a longer window says nothing more.
	var kept []Bound
	for _, bd := range bounds {
		if len(kept) > 0 && kept[len(kept)-1].Distinct <= bd.Distinct {
			continue
		}
		kept = append(kept, bd)
	}
	if len(kept) > 0 {
		out.Distinct, out.Window, out.Also = kept[0].Distinct, kept[0].Window, kept[1:]
		if len(out.Also) == 0 {
			out.Also = nil
		}
	} else {
		// No distinct bound: the window only times the refusal count,
		// and the longer one remembers refusals longer.
		out.Window = max(a.Window, b.Window)
	}
	return out
}

// tightest is the smaller of two bounds where zero means "not set".
func tightest[T int | float64](a, b T) T {
	switch {
	case a == 0:
		return b
	case b == 0:
		return a
	}
	return min(a, b)
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
	// Recheck is how long a call that spends nothing (see Reserve) trusts
	// an earlier answer that its identity is not suspended, instead of
	// asking the store again. A suspension made on another replica then
	// stops such calls on this one within Recheck; on the replica that
	// makes it, and for every call that spends budget (whose script checks
	// the suspension itself), at once. Zero asks every time.
	Recheck time.Duration
	// ReadsRecords tells a Redis Limiter that its Redis is the one holding
	// the records, so that ReserveRead may read them in the round trip
	// that reserves the call. The memory Limiter ignores it.
	ReadsRecords bool
}

// backend is where the counters live.
type backend interface {
	reserve(ctx context.Context, key string, req Request, uniq []string, now int64) error
	// isSuspended is reserve for a call that spends nothing.
	isSuspended(ctx context.Context, key string) (bool, error)
	suspend(ctx context.Context, key, identity, reason string, now int64) (bool, error)
	reinstate(ctx context.Context, key string) (bool, error)
	suspended(ctx context.Context) ([]string, error)
	usage(ctx context.Context, key string, window, now int64) (Usage, error)
}

// reader is a backend that can read store keys in the round trip of a
// reservation (Limiter.ReserveRead).
type reader interface {
	reserveRead(ctx context.Context, key string, req Request, uniq []string, now int64, names []string) ([][]byte, error)
}

// Limiter admits or refuses calls. It is safe for concurrent use.
type Limiter struct {
	b   backend
	r   reader // nil: ReserveRead is not available
	now func() time.Time

	recheck time.Duration
	mu      sync.Mutex
	// clear holds, by identity key, when the store last said the identity
	// was not suspended (Config.Recheck).
	clear map[string]time.Time

	keys memo[string] // Key of each identity seen
}

// key is Key(identity), computed once per identity.
func (l *Limiter) key(identity string) string { return l.keys.get(identity, Key) }

// memo holds f(k) for the keys asked, up to maxClear of them, then starts
// over: a policy names few identities, and a flood of unknown ones cannot
// grow it. The zero value is ready to use.
type memo[V any] struct {
	mu sync.RWMutex
	m  map[string]V
}

// get returns f(k), calling f only for a key not held.
func (c *memo[V]) get(k string, f func(string) V) V {
	c.mu.RLock()
	v, ok := c.m[k]
	c.mu.RUnlock()
	if ok {
		return v
	}
	v = f(k)
	c.mu.Lock()
	if c.m == nil || len(c.m) >= maxClear {
		c.m = make(map[string]V)
	}
	c.m[k] = v
	c.mu.Unlock()
	return v
}

func newLimiter(b backend, cfg Config) *Limiter {
	l := &Limiter{b: b, now: cfg.Now, recheck: cfg.Recheck, clear: map[string]time.Time{}}
	if r, ok := b.(reader); ok && cfg.ReadsRecords {
		l.r = r
	}
	return l
}

// maxClear bounds the identities whose answers are kept: more than any
// policy names. Past it they are all forgotten and asked for again.
const maxClear = 4096

// notSuspended reports whether the store said, within Recheck, that the
// identity was not suspended.
func (l *Limiter) notSuspended(key string) bool {
	if l.recheck <= 0 {
		return false
	}
	l.mu.Lock()
	defer l.mu.Unlock()
	at, ok := l.clear[key]
	return ok && l.clock().Sub(at) < l.recheck
}

// found records what the store said of an identity's suspension.
func (l *Limiter) found(key string, suspended bool) {
	if l.recheck <= 0 {
		return
	}
	l.mu.Lock()
	defer l.mu.Unlock()
	if suspended {
		delete(l.clear, key)
		return
	}
	if len(l.clear) >= maxClear {
		clear(l.clear)
	}
	l.clear[key] = l.clock()
}

// clock is the injected clock, else the local one (Recheck is a span on
// this replica, whatever clock the store uses).
func (l *Limiter) clock() time.Time {
	if l.now != nil {
		return l.now()
	}
	return time.Now()
}

// Reserve admits req or refuses it whole. It returns nil when the call may
// go ahead; ErrSuspended when the identity is suspended; an *ExceededError
// when the call would go over a limit (and nothing is counted but a
// distinct refusal); ErrUnavailable, wrapped, when the store fails; or the
// context's error.
func (l *Limiter) Reserve(ctx context.Context, req Request) error {
	if err := req.Limits.Validate(); err != nil {
		return err
	}
	key := l.key(req.Identity)
	if req.cost() == 0 {
		// Nothing to spend: no rate token, no record. Only a suspension
		// or the batch size can refuse it, in that order, and neither
		// needs the script. (A call looking nothing up cannot go over a
		// distinct budget either, even one lowered below the records
		// already counted.)
		if !l.notSuspended(key) {
			susp, err := l.b.isSuspended(ctx, key)
			if err != nil {
				return err
			}
			l.found(key, susp)
			if susp {
				return ErrSuspended
			}
		}
		if req.Limits.MaxBatch > 0 && req.Items > req.Limits.MaxBatch {
			return &ExceededError{Limit: LimitMaxBatch}
		}
		return nil
	}
	err := l.b.reserve(ctx, key, req, dedup(req.Lookups), l.nowMS())
	var ex *ExceededError
	if errors.Is(err, ErrSuspended) || errors.As(err, &ex) && ex.Suspended {
		l.found(key, true)
	}
	return err
}

// Reads reports whether ReserveRead is available: on a Redis Limiter
// configured with ReadsRecords.
func (l *Limiter) Reads() bool { return l.r != nil }

// ReserveRead is Reserve, then, for an admitted call, the values of the
// store keys names, nil where a key is absent: read in the round trip that
// reserves the call, where Reserve and a read would take two. The values
// are only returned once the call is admitted: a refused or failed call
// gets its error and nothing read. A call that spends nothing still asks
// the store whether its identity is suspended (no Recheck). Only
// available when Reads is true.
func (l *Limiter) ReserveRead(ctx context.Context, req Request, names []string) ([][]byte, error) {
	if l.r == nil {
		return nil, errors.New("budget: ReserveRead on a Limiter that does not read records")
	}
	if err := req.Limits.Validate(); err != nil {
		return nil, err
	}
	key := l.key(req.Identity)
	vals, err := l.r.reserveRead(ctx, key, req, dedup(req.Lookups), l.nowMS(), names)
	var ex *ExceededError
	if errors.Is(err, ErrSuspended) || errors.As(err, &ex) && ex.Suspended {
		l.found(key, true)
	}
	return vals, err
}

// dedup returns hashes without repeats, in their first order: hashes
// itself when it has none (a unary call's one lookup), which the caller
// must then not modify. A call's few lookups are compared in place; a map
// pays off only for many.
func dedup(hashes []string) []string {
	if len(hashes) <= 1 {
		return hashes
	}
	out := make([]string, 0, len(hashes))
	if len(hashes) <= 32 {
		for _, h := range hashes {
			if !slices.Contains(out, h) {
				out = append(out, h)
			}
		}
		return out
	}
	seen := make(map[string]struct{}, len(hashes))
	for _, h := range hashes {
		if _, dup := seen[h]; !dup {
			seen[h] = struct{}{}
			out = append(out, h)
		}
	}
	return out
}

// Suspend suspends identity, with a fixed, value-free reason, and reports
// whether it was not suspended already.
func (l *Limiter) Suspend(ctx context.Context, identity, reason string) (bool, error) {
	key := Key(identity)
	l.found(key, true)
	return l.b.suspend(ctx, key, identity, reason, l.nowMS())
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
	// within the longest window ending now: the count its main distinct
	// budget is checked against. Lookups are recorded only while a
	// distinct budget is set.
	Distinct int
	// DistinctLimit is the distinct budget of the longest window of the
	// limits asked about; zero means none.
	DistinctLimit int
	// Refusals counts the identity's distinct refusals since the first
	// one of the current refusal window; zero once that window has passed
	// or the identity was reinstated, and reset when a refusal suspends
	// it.
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
	window := limits.refusalWindow()
	if bs := limits.bounds(); len(bs) > 0 {
		window = bs[0].Window
	}
	u, err := l.b.usage(ctx, Key(identity), window.Milliseconds(), l.nowMS())
	if err != nil {
		return Usage{}, err
	}
	if bs := limits.bounds(); len(bs) > 0 {
		u.DistinctLimit = bs[0].Distinct
	}
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

// retryAfter converts the milliseconds a backend computed.
func retryAfter(ms int64) time.Duration {
	if ms <= 0 {
		return 0
	}
	return time.Duration(ms) * time.Millisecond
}

func unavailable(err error) error {
	if errors.Is(err, context.Canceled) || errors.Is(err, context.DeadlineExceeded) {
		return err
	}
	return fmt.Errorf("%w: %v", ErrUnavailable, err)
}
