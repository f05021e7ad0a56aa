package budget

import (
	"context"
	"errors"
	"fmt"
	"slices"
	"strconv"
	"sync"

	"github.com/redis/go-redis/v9"
)

// reserveScript decides one call atomically. Redis runs one script at a
// time, so every replica sees every other's admissions.
//
//	KEYS: susp, bucket, seen, refusals, refused
//	ARGV: now_ms (-1: use TIME), identity, items, max_batch, rate (items/s),
//	      burst, suspend_after, cost (rate tokens), refusal_window_ms, nb,
//	      then nb pairs (distinct, window_ms), longest window first, then
//	      the keyed hashes, duplicates removed (only when nb > 0)
//
// It returns {"ok"}, {"suspended"} or {"exceeded", limit, suspended_now,
// retry_ms[, repeat]}; retry_ms is how long until the call fits the rate,
// or -1; repeat, 1 when present, marks a distinct refusal not counted
// towards suspend_after (ExceededError.Repeat).
//
// Its cost falls on Redis's main thread, which every replica shares, and
// every command a script runs costs that thread about a microsecond of
// glue besides its own work. So the script runs the same commands
// whatever the number of lookups: an admitted call with a rate and a
// distinct budget runs TIME, EXISTS, GET, ZREMRANGEBYSCORE, ZCARD (and
// one ZCOUNT per further window), SET, ZADD and PEXPIRE. (The token bucket
// is one string, "<tokens> <ms>", so that one SET with PX writes it and
// its lifetime, where a hash took HSET and PEXPIRE.) Only a
// call that could go over a distinct bound if all its lookups were new
// also reads their scores, with one ZMSCORE, to count exactly which are.
// Lookups past 1,000 add one ZMSCORE and one ZADD per 1,000 (unpack's
// limit). A refused call writes nothing but the refusal count and, for a
// distinct refusal, the records it asked for (KEYS[5]).
var reserveScript = redis.NewScript(`
local now = tonumber(ARGV[1])
if now < 0 then
  local t = redis.call('TIME')
  now = tonumber(t[1]) * 1000 + math.floor(tonumber(t[2]) / 1000)
end
if redis.call('EXISTS', KEYS[1]) == 1 then
  return {'suspended'}
end
local identity = ARGV[2]
local items = tonumber(ARGV[3])
local maxBatch = tonumber(ARGV[4])
local rate = tonumber(ARGV[5])
local burst = tonumber(ARGV[6])
local suspendAfter = tonumber(ARGV[7])
local cost = tonumber(ARGV[8])
local refusalWindow = tonumber(ARGV[9])
local nb = tonumber(ARGV[10])
local first = 11 + 2 * nb
local last = #ARGV
-- unpack puts its values on Lua's C stack, which holds 8,000.
local chunk = 1000

local limit = nil
local retry = -1
if maxBatch > 0 and items > maxBatch then
  limit = 'max_batch'
end

local tokens = 0
if not limit and rate > 0 then
  local b = redis.call('GET', KEYS[2])
  tokens = burst
  if b then
    local sp = string.find(b, ' ', 1, true)
    local left, ts = tonumber(string.sub(b, 1, sp - 1)), tonumber(string.sub(b, sp + 1))
    local elapsed = now - ts
    if elapsed < 0 then elapsed = 0 end
    tokens = math.min(burst, left + elapsed * rate / 1000)
  end
  if cost > tokens then
    limit = 'rate'
    if cost <= burst then
      retry = math.ceil((cost - tokens) * 1000 / rate)
    end
  end
end

-- scores[1..k] are the lookups' last reads, when they were read.
local scores = {}
local k = 0
if not limit and nb > 0 then
  -- The first bound has the longest window: nothing older counts, and
  -- once it is trimmed the set's size is that window's count.
  redis.call('ZREMRANGEBYSCORE', KEYS[3], '-inf', now - tonumber(ARGV[12]))
  local n = math.max(last - first + 1, 0)
  local counts = {}
  local close = false
  for b = 0, nb - 1 do
    if b == 0 then
      counts[b] = redis.call('ZCARD', KEYS[3])
    else
      counts[b] = redis.call('ZCOUNT', KEYS[3], '(' .. (now - tonumber(ARGV[12 + 2 * b])), '+inf')
    end
    if counts[b] + n > tonumber(ARGV[11 + 2 * b]) then
      close = true
    end
  end
  -- Were every lookup a new record, the call would fit every bound:
  -- which lookups are new does not matter. Only a call that might not
  -- fit reads the records' scores.
  if close then
    for i = first, last, chunk do
      local got = redis.call('ZMSCORE', KEYS[3], unpack(ARGV, i, math.min(i + chunk - 1, last)))
      for j = 1, #got do
        k = k + 1
        scores[k] = got[j]
      end
    end
    for b = 0, nb - 1 do
      local since = now - tonumber(ARGV[12 + 2 * b])
      local fresh = 0
      for j = 1, k do
        local sc = scores[j]
        if (not sc) or tonumber(sc) <= since then
          fresh = fresh + 1
        end
      end
      if counts[b] + fresh > tonumber(ARGV[11 + 2 * b]) then
        limit = 'distinct'
        break
      end
    end
  end
end

if limit then
  -- Only an exhausted distinct budget is a sign of extraction; a rate or
  -- batch refusal is a client going too fast, and never suspends.
  if limit ~= 'distinct' then
    return {'exceeded', limit, 0, retry}
  end
  -- Retries are no sweep: a refusal counts towards suspend_after only if
  -- it asks for a record neither read within the window nor in a refusal
  -- counted within the refusal window (KEYS[5]: record -> ms). A distinct
  -- refusal comes from the close branch above, so scores holds every
  -- lookup.
  if suspendAfter > 0 then
    redis.call('ZREMRANGEBYSCORE', KEYS[5], '-inf', now - refusalWindow)
    local since = now - tonumber(ARGV[12])
    local added, args = 0, {}
    for j = 1, k do
      if (not scores[j]) or tonumber(scores[j]) <= since then
        args[#args + 1] = now
        args[#args + 1] = ARGV[first + j - 1]
        if #args >= 2 * chunk then
          added = added + redis.call('ZADD', KEYS[5], unpack(args))
          args = {}
        end
      end
    end
    if #args > 0 then
      added = added + redis.call('ZADD', KEYS[5], unpack(args))
    end
    redis.call('PEXPIRE', KEYS[5], refusalWindow)
    if added == 0 then
      return {'exceeded', limit, 0, -1, 1}
    end
  end
  local n = redis.call('INCR', KEYS[4])
  if n == 1 then
    redis.call('PEXPIRE', KEYS[4], refusalWindow)
  end
  if suspendAfter > 0 and n >= suspendAfter then
    redis.call('HSET', KEYS[1], 'identity', identity, 'reason', 'budget:' .. limit, 'at', now)
    redis.call('DEL', KEYS[4])
    return {'exceeded', limit, 1, -1}
  end
  return {'exceeded', limit, 0, -1}
end

if rate > 0 and cost > 0 then
  -- Once full again the bucket is as good as absent.
  redis.call('SET', KEYS[2], tostring(tokens - cost) .. ' ' .. now, 'PX', math.ceil(burst * 1000 / rate) + 1000)
end
if nb > 0 and last >= first then
  local score = tostring(now)
  for i = first, last, chunk do
    local args = {}
    local k = 0
    for j = i, math.min(i + chunk - 1, last) do
      args[k + 1] = score
      args[k + 2] = ARGV[j]
      k = k + 2
    end
    redis.call('ZADD', KEYS[3], unpack(args))
  end
  redis.call('PEXPIRE', KEYS[3], tonumber(ARGV[12]))
end
return {'ok'}
`)

// suspendScript sets the suspension unless one is set, and reports
// whether it set it. KEYS: susp; ARGV: now_ms (-1: TIME), identity, reason.
var suspendScript = redis.NewScript(`
if redis.call('EXISTS', KEYS[1]) == 1 then
  return 0
end
local now = tonumber(ARGV[1])
if now < 0 then
  local t = redis.call('TIME')
  now = tonumber(t[1]) * 1000 + math.floor(tonumber(t[2]) / 1000)
end
redis.call('HSET', KEYS[1], 'identity', ARGV[2], 'reason', ARGV[3], 'at', now)
return 1
`)

// usageScript reads one identity's counters in one step, so that the
// three agree. It changes nothing. KEYS: susp, seen, refusals; ARGV: now_ms
// (-1: TIME), window_ms. It returns {distinct, refusals, suspended}, the
// distinct count being of the lookups reserveScript would still count:
// scored after now - window.
var usageScript = redis.NewScript(`
local now = tonumber(ARGV[1])
if now < 0 then
  local t = redis.call('TIME')
  now = tonumber(t[1]) * 1000 + math.floor(tonumber(t[2]) / 1000)
end
local window = tonumber(ARGV[2])
local distinct = redis.call('ZCOUNT', KEYS[2], '(' .. (now - window), '+inf')
local refusals = tonumber(redis.call('GET', KEYS[3]) or '0')
return {distinct, refusals, redis.call('EXISTS', KEYS[1])}
`)

// suspPattern matches every suspension key.
const suspPattern = "jeton:susp:*"

func suspKey(k string) string   { return "jeton:susp:{" + k + "}" }
func bucketKey(k string) string { return "jeton:b:{" + k + "}:bucket" }
func seenKey(k string) string   { return "jeton:b:{" + k + "}:seen" }
func refusalsKey(k string) string {
	return "jeton:b:{" + k + "}:refusals"
}
func refusedKey(k string) string { return "jeton:b:{" + k + "}:refused" }

// NewRedis returns a Limiter whose counters live in Redis, shared by every
// replica using the same Redis. A single node, Sentinel and Redis Cluster
// all work: each identity's keys share one hash slot.
func NewRedis(c redis.UniversalClient, cfg Config) *Limiter {
	return newLimiter(&redisBackend{c: c}, cfg)
}

type redisBackend struct {
	c redis.UniversalClient

	keys memo[[]string] // reserveScript's keys by identity key
}

// scriptKeys returns reserveScript's keys for an identity key. The slice
// is shared: read it only.
func (r *redisBackend) scriptKeys(key string) []string {
	return r.keys.get(key, func(key string) []string {
		return []string{suspKey(key), bucketKey(key), seenKey(key), refusalsKey(key), refusedKey(key)}
	})
}

func (r *redisBackend) reserve(ctx context.Context, key string, req Request, uniq []string, now int64) error {
	keys, args := r.scriptKeys(key), reserveArgs(req, uniq, now)
	res, err := reserveScript.Run(ctx, r.c, keys, args...).Slice()
	if err != nil {
		return unavailable(err)
	}
	return reserveReply(res)
}

// reserveRead runs reserveScript and reads names in one pipeline: one
// round trip where a Reserve and then a read would take two. Redis runs
// the script first, but nothing depends on that: the values are only
// returned when the script admitted the call. On a cluster each name is
// its own GET, since one call's records are spread over slots, and
// go-redis sends each node its share of the pipeline, the script to its
// identity's slot; elsewhere one MGET per mgetChunk names reads them,
// one command for Redis to run instead of one per record (a single
// record is a GET, which costs the client fewer allocations).
func (r *redisBackend) reserveRead(ctx context.Context, key string, req Request, uniq []string, now int64, names []string) (vals [][]byte, err error) {
	keys, args := r.scriptKeys(key), reserveArgs(req, uniq, now)
	p := r.c.Pipeline()
	eval := reserveScript.EvalSha(ctx, p, keys, args...)
	var gets []*redis.StringCmd
	var mgets []*redis.SliceCmd
	// MGET only where one server holds every key: a plain or Sentinel
	// client. A cluster or a ring spreads a call's records over nodes.
	if _, single := r.c.(*redis.Client); !single || len(names) == 1 {
		gets = make([]*redis.StringCmd, len(names))
		for i, n := range names {
			gets[i] = p.Get(ctx, n)
		}
	} else {
		for i := 0; i < len(names); i += mgetChunk {
			mgets = append(mgets, p.MGet(ctx, names[i:min(i+mgetChunk, len(names))]...))
		}
	}
	// Exec's error is the first failed command's: a script the server does
	// not hold yet (NOSCRIPT) or an absent key (redis.Nil) is no failure
	// of the round trip, so each reply is checked on its own below.
	_, _ = p.Exec(ctx)
	defer func() {
		// As the record store does: a master that died never answers
		// MOVED, so have a cluster client learn the new layout now.
		if cc, ok := r.c.(*redis.ClusterClient); ok && err != nil && ctx.Err() == nil {
			cc.ReloadState(ctx)
		}
	}()
	res, err := eval.Slice()
	if redis.HasErrorPrefix(err, "NOSCRIPT") {
		// First call since Redis started: the script did not run, so
		// running it now (EVAL, which loads it) decides the call once.
		res, err = reserveScript.Run(ctx, r.c, keys, args...).Slice()
	}
	if err != nil {
		return nil, unavailable(err)
	}
	if err := reserveReply(res); err != nil {
		return nil, err
	}
	out := make([][]byte, len(names))
	for i, g := range gets {
		v, err := g.Bytes()
		switch {
		case err == redis.Nil:
		case err != nil:
			return nil, unavailable(err)
		default:
			out[i] = v
		}
	}
	i := 0
	for _, m := range mgets {
		got, err := m.Result()
		if err != nil {
			return nil, unavailable(err)
		}
		for _, v := range got {
			switch v := v.(type) {
			case nil: // absent
			case string:
				out[i] = []byte(v)
			default:
				return nil, fmt.Errorf("%w: unexpected MGET reply", ErrUnavailable)
			}
			i++
		}
	}
	if mgets != nil && i != len(names) {
		return nil, fmt.Errorf("%w: MGET returned %d values for %d keys", ErrUnavailable, i, len(names))
	}
	return out, nil
}

// mgetChunk bounds the keys of one MGET, so that no single command holds
// Redis's main thread for long.
const mgetChunk = 1000

// reserveArgs returns reserveScript's arguments for req.
func reserveArgs(req Request, uniq []string, now int64) []any {
	l := req.Limits
	bounds := l.bounds()
	refusalWindow := l.window() // l.refusalWindow(), without a second bounds()
	for _, b := range bounds {
		refusalWindow = max(refusalWindow, b.Window)
	}
	args := make([]any, 0, 10+2*len(bounds)+len(uniq))
	args = append(args, now, req.Identity, req.Items, l.MaxBatch,
		strconv.FormatFloat(l.Rate, 'f', -1, 64), l.Burst, l.SuspendAfter, req.cost(),
		refusalWindow.Milliseconds(), len(bounds))
	for _, b := range bounds {
		args = append(args, b.Distinct, b.Window.Milliseconds())
	}
	if len(bounds) > 0 {
		for _, h := range uniq {
			args = append(args, h)
		}
	}
	return args
}

// reserveReply turns reserveScript's reply into Reserve's answer.
func reserveReply(res []any) error {
	switch {
	case len(res) == 1 && res[0] == "ok":
		return nil
	case len(res) == 1 && res[0] == "suspended":
		return ErrSuspended
	case (len(res) == 4 || len(res) == 5) && res[0] == "exceeded":
		lim, _ := res[1].(string)
		n, _ := res[2].(int64)
		ms, _ := res[3].(int64)
		ex := &ExceededError{Limit: Limit(lim), Suspended: n == 1, RetryAfter: retryAfter(ms)}
		if len(res) == 5 {
			ex.Repeat = res[4] == int64(1)
		}
		return ex
	}
	return fmt.Errorf("%w: unexpected script reply", ErrUnavailable)
}

func (r *redisBackend) isSuspended(ctx context.Context, key string) (bool, error) {
	n, err := r.c.Exists(ctx, suspKey(key)).Result()
	if err != nil {
		return false, unavailable(err)
	}
	return n == 1, nil
}

func (r *redisBackend) suspend(ctx context.Context, key, identity, reason string, now int64) (bool, error) {
	n, err := suspendScript.Run(ctx, r.c, []string{suspKey(key)}, now, identity, reason).Int()
	if err != nil {
		return false, unavailable(err)
	}
	return n == 1, nil
}

func (r *redisBackend) reinstate(ctx context.Context, key string) (bool, error) {
	// The keys share a slot, so one DEL works on a cluster too.
	if _, err := r.c.Del(ctx, refusalsKey(key), refusedKey(key)).Result(); err != nil {
		return false, unavailable(err)
	}
	n, err := r.c.Del(ctx, suspKey(key)).Result()
	if err != nil {
		return false, unavailable(err)
	}
	return n > 0, nil
}

func (r *redisBackend) suspended(ctx context.Context) ([]string, error) {
	var (
		mu  sync.Mutex
		out []string
	)
	scan := func(ctx context.Context, c redis.UniversalClient) error {
		it := c.Scan(ctx, 0, suspPattern, 100).Iterator()
		for it.Next(ctx) {
			id, err := c.HGet(ctx, it.Val(), "identity").Result()
			if errors.Is(err, redis.Nil) {
				continue // reinstated since the scan saw it
			}
			if err != nil {
				return err
			}
			mu.Lock()
			out = append(out, id)
			mu.Unlock()
		}
		return it.Err()
	}
	var err error
	if cc, ok := r.c.(*redis.ClusterClient); ok {
		// SCAN walks one node; a cluster's keys are spread over masters.
		err = cc.ForEachMaster(ctx, func(ctx context.Context, c *redis.Client) error { return scan(ctx, c) })
	} else {
		err = scan(ctx, r.c)
	}
	if err != nil {
		return nil, unavailable(err)
	}
	slices.Sort(out)
	return slices.Compact(out), nil
}

func (r *redisBackend) usage(ctx context.Context, key string, window, now int64) (Usage, error) {
	keys := []string{suspKey(key), seenKey(key), refusalsKey(key)}
	res, err := usageScript.Run(ctx, r.c, keys, now, window).Int64Slice()
	if err != nil {
		return Usage{}, unavailable(err)
	}
	if len(res) != 3 {
		return Usage{}, fmt.Errorf("%w: unexpected script reply", ErrUnavailable)
	}
	return Usage{Distinct: int(res[0]), Refusals: int(res[1]), Suspended: res[2] == 1}, nil
}
