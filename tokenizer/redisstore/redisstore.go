// Package redisstore is the production tokenizer.Store, on Redis through a
// go-redis UniversalClient: one node, Sentinel or Redis Cluster from one
// Config.
//
// Each batch goes out as one pipeline, so a batch of any size costs one
// round trip per node it touches. Keys are used as given, without hash tags,
// so on a cluster a batch spreads over the masters and go-redis splits the
// pipeline per node. A batch is not atomic, as tokenizer.Store allows.
//
// Durability is the server's: run Redis with appendonly yes and appendfsync
// always if an acknowledged write must survive a crash, and set
// Config.MinReplicaAcks if it must survive a failover to a replica.
package redisstore

import (
	"context"
	"crypto/tls"
	"errors"
	"fmt"
	"strconv"
	"strings"
	"sync"
	"time"

	"github.com/redis/go-redis/v9"

	"github.com/jeton-dev/jeton/tokenizer"
)

// Config selects and configures the Redis deployment. Which client
// NewClient builds follows go-redis: MasterName set means Sentinel (Addrs
// are the sentinels); two or more Addrs, or Cluster, mean Redis Cluster;
// otherwise a single node.
type Config struct {
	// Addrs are host:port addresses: the node, the cluster seed nodes or the
	// sentinels.
	Addrs []string
	// MasterName is the Sentinel master name; empty when not using Sentinel.
	MasterName string
	// Cluster selects Redis Cluster with a single seed address.
	Cluster bool
	// Username and Password authenticate with Redis ACLs (Username empty:
	// the default user).
	Username string
	Password string
	// DB is the database number; Redis Cluster has only database 0.
	DB int
	// TLS enables TLS with this configuration when not nil.
	TLS *tls.Config
	// DialTimeout, ReadTimeout and WriteTimeout bound each network
	// operation; zero takes go-redis's defaults (5 s, 3 s, 3 s).
	DialTimeout  time.Duration
	ReadTimeout  time.Duration
	WriteTimeout time.Duration
	// PoolSize is the number of connections per node; zero takes go-redis's
	// default (10 per CPU).
	PoolSize int
	// MinReplicaAcks is how many replicas must acknowledge each write of
	// records and keys (Redis WAIT) before it succeeds; zero waits for
	// none. Replication is asynchronous, so without it a master that
	// crashes right after answering can take acknowledged tokens with it
	// when a replica is promoted. A write that too few replicas acknowledge
	// within ReplicaAckTimeout fails with ErrReplicaAcks, and the caller
	// fails its call: it may still be on the master, but it is not durable.
	MinReplicaAcks int
	// ReplicaAckTimeout bounds that wait; it must be positive when
	// MinReplicaAcks is set, and shorter than ReadTimeout.
	ReplicaAckTimeout time.Duration
}

// NewClient validates cfg and builds the client it describes. It does not
// connect; call Store.Ping to check the server is reachable.
func NewClient(cfg Config) (redis.UniversalClient, error) {
	if err := cfg.validate(); err != nil {
		return nil, err
	}
	c := redis.NewUniversalClient(&redis.UniversalOptions{
		Addrs:         cfg.Addrs,
		MasterName:    cfg.MasterName,
		IsClusterMode: cfg.Cluster,
		Username:      cfg.Username,
		Password:      cfg.Password,
		DB:            cfg.DB,
		TLSConfig:     cfg.TLS,
		DialTimeout:   cfg.DialTimeout,
		ReadTimeout:   cfg.ReadTimeout,
		WriteTimeout:  cfg.WriteTimeout,
		PoolSize:      cfg.PoolSize,
		// go-redis would resend a whole pipeline after a network error or
		// read timeout, though Redis may have run it already. A resent
		// SET NX then reports "not stored" for an entry this very call
		// stored, and a caller acting on that (adopting the "other" winner,
		// deleting its own record as an orphan) loses data. Errors go to the
		// caller instead, whose retries are idempotent by design.
		MaxRetries: -1,
		// Without this go-redis bounds socket reads and writes by
		// Read/WriteTimeout alone; with it a caller's deadline bounds them
		// too, so a request never outlives its context.
		ContextTimeoutEnabled: true,
	})
	if cfg.MinReplicaAcks > 0 {
		replicaAcks{n: cfg.MinReplicaAcks, timeout: cfg.ReplicaAckTimeout}.install(c)
	}
	return c, nil
}

func (cfg Config) validate() error {
	if len(cfg.Addrs) == 0 {
		return errors.New("redisstore: Config.Addrs is empty")
	}
	for i, a := range cfg.Addrs {
		if a == "" {
			return fmt.Errorf("redisstore: Config.Addrs[%d] is empty", i)
		}
	}
	cluster := cfg.MasterName == "" && (len(cfg.Addrs) > 1 || cfg.Cluster)
	switch {
	case cfg.MasterName != "" && cfg.Cluster:
		return errors.New("redisstore: Config.MasterName and Config.Cluster are exclusive")
	case cfg.DB < 0:
		return fmt.Errorf("redisstore: Config.DB is %d; want 0 or more", cfg.DB)
	case cfg.DB != 0 && cluster:
		return fmt.Errorf("redisstore: Config.DB is %d; Redis Cluster has only database 0", cfg.DB)
	case cfg.DialTimeout < 0, cfg.ReadTimeout < 0, cfg.WriteTimeout < 0:
		return errors.New("redisstore: Config.DialTimeout, ReadTimeout and WriteTimeout must not be negative")
	case cfg.PoolSize < 0:
		return fmt.Errorf("redisstore: Config.PoolSize is %d; want 0 or more", cfg.PoolSize)
	case cfg.MinReplicaAcks < 0:
		return fmt.Errorf("redisstore: Config.MinReplicaAcks is %d; want 0 or more", cfg.MinReplicaAcks)
	case cfg.MinReplicaAcks > 0 && cfg.ReplicaAckTimeout <= 0:
		// WAIT with timeout 0 blocks until enough replicas answer, forever
		// if they never do.
		return errors.New("redisstore: Config.ReplicaAckTimeout must be positive with MinReplicaAcks")
	case cfg.MinReplicaAcks > 0 && cfg.ReplicaAckTimeout >= readTimeout(cfg):
		return fmt.Errorf("redisstore: Config.ReplicaAckTimeout %s must be shorter than the read timeout %s, "+
			"or the client gives up before Redis answers", cfg.ReplicaAckTimeout, readTimeout(cfg))
	}
	return nil
}

// readTimeout is the read timeout go-redis applies for cfg.
func readTimeout(cfg Config) time.Duration {
	if cfg.ReadTimeout > 0 {
		return cfg.ReadTimeout
	}
	return 3 * time.Second
}

// Store is a tokenizer.Store on Redis. It is safe for concurrent use.
type Store struct {
	c redis.UniversalClient
}

var _ tokenizer.Store = (*Store)(nil)

// New returns a Store on c. The caller keeps ownership of c and closes it.
//
// Build c with NewClient, or else disable go-redis's command retries
// (MaxRetries: -1): a retried pipeline can make PutNew report an entry it
// stored itself as not stored, and Delete undercount.
func New(c redis.UniversalClient) *Store { return &Store{c: c} }

// Ping checks that Redis answers; on a cluster, every master.
func (s *Store) Ping(ctx context.Context) error {
	if err := ctx.Err(); err != nil {
		return wrap(ctx, err)
	}
	var err error
	if cc, ok := s.c.(*redis.ClusterClient); ok {
		err = cc.ForEachMaster(ctx, func(ctx context.Context, c *redis.Client) error {
			return c.Ping(ctx).Err()
		})
	} else {
		err = s.c.Ping(ctx).Err()
	}
	return wrap(ctx, err)
}

// Put implements tokenizer.Store with SET, with PX when the entry has a TTL.
func (s *Store) Put(ctx context.Context, entries []tokenizer.Entry) error {
	_, err := s.pipeline(withWrite(ctx), len(entries), func(p redis.Pipeliner) {
		for _, e := range entries {
			p.Set(ctx, e.Key, e.Value, ttl(e.TTL))
		}
	})
	return err
}

// PutNew implements tokenizer.Store with SET NX, with PX when the entry has
// a TTL. Redis applies the commands of one connection in order, so of two
// entries with one key in a batch the first wins.
func (s *Store) PutNew(ctx context.Context, entries []tokenizer.Entry) ([]bool, error) {
	cmds, err := s.pipeline(withWrite(ctx), len(entries), func(p redis.Pipeliner) {
		for _, e := range entries {
			p.SetNX(ctx, e.Key, e.Value, ttl(e.TTL))
		}
	})
	if err != nil {
		return nil, err
	}
	out := make([]bool, len(entries))
	for i, c := range cmds {
		out[i] = c.(*redis.BoolCmd).Val()
	}
	return out, nil
}

// PutExisting implements tokenizer.Store with SET XX, with PX when the
// entry has a TTL.
func (s *Store) PutExisting(ctx context.Context, entries []tokenizer.Entry) ([]bool, error) {
	cmds, err := s.pipeline(withWrite(ctx), len(entries), func(p redis.Pipeliner) {
		for _, e := range entries {
			p.SetXX(ctx, e.Key, e.Value, ttl(e.TTL))
		}
	})
	if err != nil {
		return nil, err
	}
	out := make([]bool, len(entries))
	for i, c := range cmds {
		out[i] = c.(*redis.BoolCmd).Val()
	}
	return out, nil
}

// swap replaces KEYS[1]'s value with ARGV[2] if it is ARGV[1], with a
// lifetime of ARGV[3] milliseconds (0: none). Lua compares and sets in one
// step, which Redis runs without interleaving other clients' commands.
var swap = redis.NewScript(`
if redis.call('GET', KEYS[1]) ~= ARGV[1] then
  return 0
end
if ARGV[3] == '0' then
  redis.call('SET', KEYS[1], ARGV[2])
else
  redis.call('SET', KEYS[1], ARGV[2], 'PX', ARGV[3])
end
return 1
`)

// Swap implements tokenizer.Store in one script call.
func (s *Store) Swap(ctx context.Context, old []byte, e tokenizer.Entry) (bool, error) {
	if err := ctx.Err(); err != nil {
		return false, wrap(ctx, err)
	}
	c, err := s.evalWrite(ctx, swap, []string{e.Key}, old, e.Value, strconv.FormatInt(ttlMillis(e.TTL), 10))
	if err != nil {
		return false, err
	}
	n, err := c.Int()
	if err != nil {
		return false, wrap(ctx, err)
	}
	return n == 1, nil
}

// Write implements tokenizer.Store in one pipeline: the set additions in
// as few addToSets script calls as the server allows (see setScripts), then
// SET NX for each entry, followed for a Keep entry by PEXPIRE GT (or
// PERSIST for no TTL), which extends the lifetime of a key that already
// held a value and leaves a fresh one as SET made it.
//
// The scripts go by digest (EVALSHA). A node that does not have the
// script cached (restarted, or SCRIPT FLUSH) answers NOSCRIPT; those
// calls alone are sent again in full (EVAL), which caches it. Sending a
// set addition twice changes nothing.
func (s *Store) Write(ctx context.Context, w tokenizer.Write) error {
	if err := ctx.Err(); err != nil {
		return wrap(ctx, err)
	}
	scripts := s.setScripts(w.Sets)
	n := len(scripts) + len(w.Create) + 2*len(w.Keep)
	if n == 0 {
		return nil
	}
	p := s.c.Pipeline()
	for _, g := range scripts {
		keys, args := setArgs(g)
		addToSets.EvalSha(ctx, p, keys, args...)
	}
	// The records' SET NX commands are built here rather than by
	// p.SetNX, so that a batch costs one argument array and one pipeline
	// append, and an entry only its command: the key and value go in as
	// pointers into w (which go-redis writes as the string and bytes they
	// point to), and each distinct lifetime is boxed once.
	q := make([]redis.Cmder, 0, len(w.Create)+2*len(w.Keep))
	args := make([]any, 0, setNXArgs*(len(w.Create)+len(w.Keep)))
	var exp expiries
	for i := range w.Create {
		q, args = queueSetNX(ctx, q, args, &exp, &w.Create[i])
	}
	for i := range w.Keep {
		e := &w.Keep[i]
		q, args = queueSetNX(ctx, q, args, &exp, e)
		if e.TTL <= 0 {
			q = append(q, redis.NewBoolCmd(ctx, "persist", e.Key)) // as p.Persist
		} else {
			q = append(q, redis.NewCmd(ctx, "PEXPIRE", e.Key, ttlMillis(e.TTL), "GT")) // as p.Do
		}
	}
	_ = p.BatchProcess(ctx, q...)
	cmds, err := p.Exec(withWrite(ctx))
	if err != nil && !redis.HasErrorPrefix(err, "NOSCRIPT") {
		return s.failed(ctx, err)
	}
	if len(cmds) != n && err == nil {
		return fmt.Errorf("redisstore: pipeline returned %d results for %d commands", len(cmds), n)
	}
	var again [][]tokenizer.SetAdd
	for i, c := range cmds {
		cerr := c.Err()
		switch {
		case cerr == nil:
		case i < len(scripts) && redis.HasErrorPrefix(cerr, "NOSCRIPT"):
			again = append(again, scripts[i])
		default:
			return s.failed(ctx, cerr)
		}
	}
	if err != nil && len(again) == 0 {
		return s.failed(ctx, err)
	}
	if len(again) == 0 {
		return nil
	}
	_, err = s.pipeline(withWrite(ctx), len(again), func(p redis.Pipeliner) {
		for _, g := range again {
			keys, args := setArgs(g)
			addToSets.Eval(ctx, p, keys, args...)
		}
	})
	return err
}

// Get implements tokenizer.Store with pipelined GETs rather than MGET: MGET
// needs all its keys in one cluster slot, and record keys are spread.
func (s *Store) Get(ctx context.Context, keys []string) ([][]byte, error) {
	cmds, err := s.pipeline(ctx, len(keys), func(p redis.Pipeliner) {
		for _, k := range keys {
			p.Get(ctx, k)
		}
	})
	if err != nil {
		return nil, err
	}
	out := make([][]byte, len(keys))
	for i, c := range cmds {
		if c.Err() == redis.Nil {
			continue
		}
		// []byte of a string is never nil, so an empty value reads as
		// present.
		out[i] = []byte(c.(*redis.StringCmd).Val())
	}
	return out, nil
}

// Delete implements tokenizer.Store with one UNLINK per key, so keys in
// different cluster slots can share a batch; UNLINK frees large sets off the
// main thread.
func (s *Store) Delete(ctx context.Context, keys []string) (int, error) {
	cmds, err := s.pipeline(withWrite(ctx), len(keys), func(p redis.Pipeliner) {
		for _, k := range keys {
			p.Unlink(ctx, k)
		}
	})
	if err != nil {
		return 0, err
	}
	n := 0
	for _, c := range cmds {
		n += int(c.(*redis.IntCmd).Val())
	}
	return n, nil
}

// A set is kept as a Redis hash whose fields are its members (with empty
// values), not as a Redis set: Redis keeps a small hash as one compact
// listpack (up to hash-max-listpack-entries fields, 128 by default, of up
// to hash-max-listpack-value bytes, 64), about two bytes beside each
// member, where a set of strings (before Redis 7.2) is a hash table from
// its first member, some 50 bytes beside each. A subject index of a few
// records so costs about half the memory. A key that an earlier version
// wrote as a Redis set stays one: the scripts below add to it and read it
// as such.

// addToSets adds members to each set of KEYS and sets its lifetime. ARGV
// holds, for each key in turn, its TTL (milliseconds, 0 for permanent),
// the number of its members, then the members. A script is needed because
// the lifetime rule depends on whether the set existed before: a new set
// gets the TTL; an existing one only ever has its TTL extended (PEXPIRE GT,
// which leaves a permanent set permanent). PEXPIRE NX cannot stand in for
// the existence test, since it would give an existing permanent set a TTL.
// Members go in chunks to stay under Lua's limit on unpack.
//
// One call takes many sets where they live on one server: Redis spends
// several microseconds entering any script, more than the commands inside
// it for a set of a few members, and a batch of a thousand items may name
// hundreds of subjects.
var addToSets = redis.NewScript(`
local at = 1
for k = 1, #KEYS do
  local key = KEYS[k]
  local ttl = ARGV[at]
  local first = at + 2
  local last = at + 1 + tonumber(ARGV[at + 1])
  at = last + 1
  local kind = redis.call('TYPE', key)['ok']
  local existed = kind ~= 'none'
  if kind == 'set' then
    for i = first, last, 1000 do
      redis.call('SADD', key, unpack(ARGV, i, math.min(i + 999, last)))
    end
  else
    for i = first, last, 500 do
      local fields = {}
      for j = i, math.min(i + 499, last) do
        fields[#fields + 1] = ARGV[j]
        fields[#fields + 1] = ''
      end
      redis.call('HSET', key, unpack(fields))
    end
  end
  if existed or last >= first then
    if ttl == '0' then
      redis.call('PERSIST', key)
    elseif existed then
      redis.call('PEXPIRE', key, ttl, 'GT')
    else
      redis.call('PEXPIRE', key, ttl)
    end
  end
end
return 1
`)

// Bounds of one addToSets call, so that no script holds Redis for long:
// at most maxSetsPerScript sets and, unless one set alone has more,
// maxMembersPerScript members.
const (
	maxSetsPerScript    = 128
	maxMembersPerScript = 4096
)

// setScripts groups sets into addToSets calls: as many as the bounds allow
// on a single server (or a Sentinel-managed one), one per set on Redis
// Cluster, where a script's keys must share a slot and subject indexes are
// spread over all of them.
func (s *Store) setScripts(sets []tokenizer.SetAdd) [][]tokenizer.SetAdd {
	if _, single := s.c.(*redis.Client); !single {
		groups := make([][]tokenizer.SetAdd, len(sets))
		for i := range sets {
			groups[i] = sets[i : i+1]
		}
		return groups
	}
	var groups [][]tokenizer.SetAdd
	lo, members := 0, 0
	for i, a := range sets {
		if i > lo && (i-lo == maxSetsPerScript || members+len(a.Members) > maxMembersPerScript) {
			groups = append(groups, sets[lo:i])
			lo, members = i, 0
		}
		members += len(a.Members)
	}
	if lo < len(sets) {
		groups = append(groups, sets[lo:])
	}
	return groups
}

// setArgs are the keys and arguments of an addToSets call.
func setArgs(sets []tokenizer.SetAdd) (keys []string, args []any) {
	n := 0
	for _, a := range sets {
		n += 2 + len(a.Members)
	}
	keys, args = make([]string, 0, len(sets)), make([]any, 0, n)
	for _, a := range sets {
		keys = append(keys, a.Key)
		args = append(args, strconv.FormatInt(ttlMillis(a.TTL), 10), len(a.Members))
		// The members go in as pointers into a.Members, which go-redis
		// writes as the strings they point to: boxing each string would
		// cost an allocation per member.
		for i := range a.Members {
			args = append(args, &a.Members[i])
		}
	}
	return keys, args
}

// setMembers returns the members of the set KEYS[1], kept as a hash or,
// written by an earlier version, as a Redis set.
var setMembers = redis.NewScript(`
local kind = redis.call('TYPE', KEYS[1])['ok']
if kind == 'none' then
  return {}
elseif kind == 'set' then
  return redis.call('SMEMBERS', KEYS[1])
end
return redis.call('HKEYS', KEYS[1])
`)

// AddToSet implements tokenizer.Store in one script call, so the members
// and the lifetime change together.
func (s *Store) AddToSet(ctx context.Context, key string, members []string, ttl time.Duration) error {
	if err := ctx.Err(); err != nil {
		return wrap(ctx, err)
	}
	keys, args := setArgs([]tokenizer.SetAdd{{Key: key, Members: members, TTL: ttl}})
	_, err := s.evalWrite(ctx, addToSets, keys, args...)
	return err
}

// evalWrite runs a writing script as a pipeline of one, so that the write
// waits for replicas as the others do (see replicaAcks): EVALSHA first, the
// script body only when the server does not have it yet.
func (s *Store) evalWrite(ctx context.Context, sc *redis.Script, keys []string, args ...any) (*redis.Cmd, error) {
	for _, eval := range []func(redis.Pipeliner) *redis.Cmd{
		func(p redis.Pipeliner) *redis.Cmd { return sc.EvalSha(ctx, p, keys, args...) },
		func(p redis.Pipeliner) *redis.Cmd { return sc.Eval(ctx, p, keys, args...) },
	} {
		var c *redis.Cmd
		_, err := s.pipeline(withWrite(ctx), 1, func(p redis.Pipeliner) { c = eval(p) })
		if err == nil {
			return c, nil
		}
		if !redis.HasErrorPrefix(c.Err(), "NOSCRIPT") {
			return nil, err
		}
	}
	return nil, errors.New("redisstore: script not loaded after EVAL")
}

// setNXArgs is the most arguments SET NX takes here: SET key value PX ms NX.
const setNXArgs = 6

// queueSetNX appends to q the command SET e.Key e.Value [PX ms | EX s] NX,
// as p.SetNX(ctx, e.Key, e.Value, ttl(e.TTL)) builds it, with its
// arguments carved from args. e must stay unchanged until the pipeline
// has run.
func queueSetNX(ctx context.Context, q []redis.Cmder, args []any, exp *expiries, e *tokenizer.Entry) ([]redis.Cmder, []any) {
	at := len(args)
	args = append(args, "set", &e.Key, (*entryValue)(e))
	if d := ttl(e.TTL); d > 0 {
		unit, n := exp.arg(d)
		args = append(args, unit, n)
	}
	args = append(args, "nx")
	return append(q, redis.NewBoolCmd(ctx, args[at:len(args):len(args)]...)), args
}

// entryValue writes an entry's value as a command argument: go-redis
// writes an encoding.BinaryMarshaler as the bytes it returns, and a
// pointer goes into an interface without the allocation that boxing the
// slice itself costs.
type entryValue tokenizer.Entry

func (e *entryValue) MarshalBinary() ([]byte, error) { return e.Value, nil }

// expiries boxes the expiry arguments of SET once per distinct lifetime in
// a batch (its records share a few, one per class). Like go-redis's SetNX,
// it gives a lifetime of whole seconds as EX and any other as PX.
type expiries struct {
	d       time.Duration
	unit, n any
}

func (x *expiries) arg(d time.Duration) (unit, n any) {
	if x.n == nil || x.d != d {
		x.d = d
		if d < time.Second || d%time.Second != 0 {
			x.unit, x.n = "px", int64(d/time.Millisecond)
		} else {
			x.unit, x.n = "ex", int64(d/time.Second)
		}
	}
	return x.unit, x.n
}

// SetMembers implements tokenizer.Store with HKEYS (SMEMBERS for a set
// written as a Redis set), in one script call.
func (s *Store) SetMembers(ctx context.Context, key string) ([]string, error) {
	if err := ctx.Err(); err != nil {
		return nil, wrap(ctx, err)
	}
	m, err := setMembers.Run(ctx, s.c, []string{key}).StringSlice()
	if err != nil {
		return nil, s.failed(ctx, err)
	}
	return m, nil
}

// pipeline sends the n commands queue adds in one pipeline and returns them
// in order. A GET of an absent key (redis.Nil) is a result, not an error;
// any other failed command fails the batch.
func (s *Store) pipeline(ctx context.Context, n int, queue func(redis.Pipeliner)) ([]redis.Cmder, error) {
	// Checked first so a call whose context is done sends nothing, whatever
	// go-redis does with such a context.
	if err := ctx.Err(); err != nil {
		return nil, wrap(ctx, err)
	}
	if n == 0 {
		return nil, nil
	}
	p := s.c.Pipeline()
	queue(p)
	cmds, err := p.Exec(ctx)
	if err != nil && err != redis.Nil {
		return nil, s.failed(ctx, err)
	}
	for _, c := range cmds {
		if err := c.Err(); err != nil && err != redis.Nil {
			return nil, s.failed(ctx, err)
		}
	}
	if len(cmds) != n {
		return nil, fmt.Errorf("redisstore: pipeline returned %d results for %d commands", len(cmds), n)
	}
	return cmds, nil
}

// failed wraps err and, on Redis Cluster, has the client reload the
// cluster's layout in the background. go-redis learns a new layout from
// MOVED replies and otherwise only every minute; a master that died never
// answers MOVED, so without this every call to its slots would fail for up
// to a minute after a replica took over.
func (s *Store) failed(ctx context.Context, err error) error {
	if cc, ok := s.c.(*redis.ClusterClient); ok && ctx.Err() == nil {
		cc.ReloadState(ctx)
	}
	return wrap(ctx, err)
}

// wrap prefixes err with the package name and, when ctx is done, makes it
// wrap ctx.Err() too: go-redis may report a canceled call as a network
// error, and callers map context errors to their own status codes.
// Redis replies and go-redis errors carry no values, only keys, which are
// keyed hashes.
func wrap(ctx context.Context, err error) error {
	if err == nil {
		return nil
	}
	cerr := ctx.Err()
	if dl, ok := ctx.Deadline(); ok && cerr == nil && !time.Now().Before(dl) {
		// The socket deadline go-redis derives from ctx can fire a moment
		// before ctx itself reports it.
		cerr = context.DeadlineExceeded
	}
	if cerr != nil && !errors.Is(err, cerr) {
		return fmt.Errorf("redisstore: %w: %w", cerr, err)
	}
	return fmt.Errorf("redisstore: %w", err)
}

// ttl maps an entry TTL to go-redis's expiration: zero or negative means no
// expiry (go-redis reads -1 as KEEPTTL, which would keep an old lifetime),
// and Redis counts in whole milliseconds, so a shorter TTL rounds up.
func ttl(d time.Duration) time.Duration {
	switch {
	case d <= 0:
		return 0
	case d < time.Millisecond:
		return time.Millisecond
	}
	return d
}

func ttlMillis(d time.Duration) int64 {
	ms := ttl(d).Milliseconds()
	if ttl(d)%time.Millisecond != 0 {
		ms++ // round up: a lifetime is "at least ttl"
	}
	return ms
}

// scanCount is the COUNT hint of each SCAN: how much of the keyspace one
// call walks, and so roughly how many keys fn gets at a time.
const scanCount = 1000

// Scan implements tokenizer.Store with SCAN MATCH <prefix>* on every master
// (keys are spread over all of them on a cluster). SCAN walks the keyspace
// without blocking the server, and guarantees that a key present for the
// whole scan is returned at least once.
func (s *Store) Scan(ctx context.Context, prefix string, fn func(keys []string) error) error {
	if err := ctx.Err(); err != nil {
		return wrap(ctx, err)
	}
	match := globEscape(prefix) + "*"
	cc, ok := s.c.(*redis.ClusterClient)
	if !ok {
		return scanNode(ctx, s.c, match, fn)
	}
	// ForEachMaster scans the masters concurrently; fn is the caller's and
	// need not be safe for that, so its calls are serialised, and once it
	// fails it is not called again.
	var mu sync.Mutex
	var failed error
	return cc.ForEachMaster(ctx, func(ctx context.Context, c *redis.Client) error {
		return scanNode(ctx, c, match, func(keys []string) error {
			mu.Lock()
			defer mu.Unlock()
			if failed == nil {
				failed = fn(keys)
			}
			return failed
		})
	})
}

// scanNode runs one SCAN iteration to its end on one node.
func scanNode(ctx context.Context, c redis.Cmdable, match string, fn func(keys []string) error) error {
	var cursor uint64
	for {
		keys, next, err := c.Scan(ctx, cursor, match, scanCount).Result()
		if err != nil {
			return wrap(ctx, err)
		}
		if len(keys) > 0 {
			if err := fn(keys); err != nil {
				return err
			}
		}
		if cursor = next; cursor == 0 {
			return nil
		}
	}
}

// globEscape quotes the characters that Redis glob patterns treat
// specially, so a prefix matches only itself.
func globEscape(s string) string {
	var b strings.Builder
	for _, r := range s {
		switch r {
		case '*', '?', '[', ']', '\\':
			b.WriteByte('\\')
		}
		b.WriteRune(r)
	}
	return b.String()
}
