// Package memstore is an in-memory tokenizer.Store for dev mode and unit
// tests. It keeps nothing across restarts and is not shared between
// replicas; production uses redisstore.
package memstore

import (
	"bytes"
	"context"
	"maps"
	"slices"
	"strings"
	"sync"
	"time"

	"github.com/jeton-dev/jeton/tokenizer"
)

// Store is an in-memory tokenizer.Store. The zero value is not usable; call
// New.
type Store struct {
	now func() time.Time

	mu   sync.Mutex
	kv   map[string]item
	sets map[string]set
}

type item struct {
	val     []byte
	expires time.Time // zero: never
}

type set struct {
	members map[string]struct{}
	expires time.Time
}

// Option configures a Store.
type Option func(*Store)

// WithClock sets the clock used for TTLs, so tests need not sleep.
func WithClock(now func() time.Time) Option { return func(s *Store) { s.now = now } }

// New returns an empty Store.
func New(opts ...Option) *Store {
	s := &Store{now: time.Now, kv: map[string]item{}, sets: map[string]set{}}
	for _, o := range opts {
		o(s)
	}
	return s
}

var _ tokenizer.Store = (*Store)(nil)

func (s *Store) expiry(ttl time.Duration) time.Time {
	if ttl <= 0 {
		return time.Time{}
	}
	return s.now().Add(ttl)
}

// clone copies v and never returns nil: Get reports an absent key as nil, so
// a stored empty value must read back as a non-nil empty slice.
func clone(v []byte) []byte { return append([]byte{}, v...) }

func (s *Store) live(exp time.Time) bool { return exp.IsZero() || s.now().Before(exp) }

// Put implements tokenizer.Store.
func (s *Store) Put(ctx context.Context, entries []tokenizer.Entry) error {
	if err := ctx.Err(); err != nil {
		return err
	}
	s.mu.Lock()
	defer s.mu.Unlock()
	for _, e := range entries {
		s.kv[e.Key] = item{val: clone(e.Value), expires: s.expiry(e.TTL)}
	}
	return nil
}

// PutNew implements tokenizer.Store.
func (s *Store) PutNew(ctx context.Context, entries []tokenizer.Entry) ([]bool, error) {
	if err := ctx.Err(); err != nil {
		return nil, err
	}
	s.mu.Lock()
	defer s.mu.Unlock()
	out := make([]bool, len(entries))
	for i, e := range entries {
		if it, ok := s.kv[e.Key]; ok && s.live(it.expires) {
			continue
		}
		s.kv[e.Key] = item{val: clone(e.Value), expires: s.expiry(e.TTL)}
		out[i] = true
	}
	return out, nil
}

// PutExisting implements tokenizer.Store.
func (s *Store) PutExisting(ctx context.Context, entries []tokenizer.Entry) ([]bool, error) {
	if err := ctx.Err(); err != nil {
		return nil, err
	}
	s.mu.Lock()
	defer s.mu.Unlock()
	out := make([]bool, len(entries))
	for i, e := range entries {
		if it, ok := s.kv[e.Key]; !ok || !s.live(it.expires) {
			continue
		}
		s.kv[e.Key] = item{val: clone(e.Value), expires: s.expiry(e.TTL)}
		out[i] = true
	}
	return out, nil
}

// Swap implements tokenizer.Store.
func (s *Store) Swap(ctx context.Context, old []byte, e tokenizer.Entry) (bool, error) {
	if err := ctx.Err(); err != nil {
		return false, err
	}
	s.mu.Lock()
	defer s.mu.Unlock()
	it, ok := s.kv[e.Key]
	if !ok || !s.live(it.expires) || !bytes.Equal(it.val, old) {
		return false, nil
	}
	s.kv[e.Key] = item{val: clone(e.Value), expires: s.expiry(e.TTL)}
	return true, nil
}

// Write implements tokenizer.Store, all of it under one lock.
func (s *Store) Write(ctx context.Context, w tokenizer.Write) error {
	if err := ctx.Err(); err != nil {
		return err
	}
	s.mu.Lock()
	defer s.mu.Unlock()
	for _, a := range w.Sets {
		s.addToSet(a.Key, a.Members, a.TTL)
	}
	for _, e := range w.Create {
		if it, ok := s.kv[e.Key]; !ok || !s.live(it.expires) {
			s.kv[e.Key] = item{val: clone(e.Value), expires: s.expiry(e.TTL)}
		}
	}
	for _, e := range w.Keep {
		it, ok := s.kv[e.Key]
		if !ok || !s.live(it.expires) {
			s.kv[e.Key] = item{val: clone(e.Value), expires: s.expiry(e.TTL)}
			continue
		}
		switch exp := s.expiry(e.TTL); {
		case exp.IsZero():
			it.expires = time.Time{}
		case !it.expires.IsZero() && exp.After(it.expires):
			it.expires = exp
		}
		s.kv[e.Key] = it
	}
	return nil
}

// Get implements tokenizer.Store.
func (s *Store) Get(ctx context.Context, keys []string) ([][]byte, error) {
	if err := ctx.Err(); err != nil {
		return nil, err
	}
	s.mu.Lock()
	defer s.mu.Unlock()
	out := make([][]byte, len(keys))
	for i, k := range keys {
		if it, ok := s.kv[k]; ok && s.live(it.expires) {
			out[i] = slices.Clone(it.val)
		} else if ok {
			delete(s.kv, k)
		}
	}
	return out, nil
}

// Delete implements tokenizer.Store.
func (s *Store) Delete(ctx context.Context, keys []string) (int, error) {
	if err := ctx.Err(); err != nil {
		return 0, err
	}
	s.mu.Lock()
	defer s.mu.Unlock()
	n := 0
	for _, k := range keys {
		if it, ok := s.kv[k]; ok {
			if s.live(it.expires) {
				n++
			}
			delete(s.kv, k)
		}
		if st, ok := s.sets[k]; ok {
			if s.live(st.expires) {
				n++
			}
			delete(s.sets, k)
		}
	}
	return n, nil
}

// AddToSet implements tokenizer.Store.
func (s *Store) AddToSet(ctx context.Context, key string, members []string, ttl time.Duration) error {
	if err := ctx.Err(); err != nil {
		return err
	}
	s.mu.Lock()
	defer s.mu.Unlock()
	s.addToSet(key, members, ttl)
	return nil
}

// addToSet is AddToSet with s.mu held.
func (s *Store) addToSet(key string, members []string, ttl time.Duration) {
	st, ok := s.sets[key]
	if !ok || !s.live(st.expires) {
		if len(members) == 0 {
			// As in Redis, an empty set does not exist; Delete must not
			// count it.
			delete(s.sets, key)
			return
		}
		st = set{members: map[string]struct{}{}, expires: s.expiry(ttl)}
	}
	for _, m := range members {
		st.members[m] = struct{}{}
	}
	switch exp := s.expiry(ttl); {
	case exp.IsZero():
		st.expires = time.Time{}
	case !st.expires.IsZero() && exp.After(st.expires):
		st.expires = exp
	}
	s.sets[key] = st
}

// SetMembers implements tokenizer.Store.
func (s *Store) SetMembers(ctx context.Context, key string) ([]string, error) {
	if err := ctx.Err(); err != nil {
		return nil, err
	}
	s.mu.Lock()
	defer s.mu.Unlock()
	st, ok := s.sets[key]
	if !ok || !s.live(st.expires) {
		return nil, nil
	}
	return slices.Sorted(maps.Keys(st.members)), nil
}

// scanBatch is how many keys Scan hands fn at a time, as redisstore's
// SCAN COUNT does.
const scanBatch = 1000

// Scan implements tokenizer.Store. It takes a snapshot of the matching live
// keys first and calls fn without holding the lock, so fn may use the
// Store.
func (s *Store) Scan(ctx context.Context, prefix string, fn func(keys []string) error) error {
	if err := ctx.Err(); err != nil {
		return err
	}
	s.mu.Lock()
	var keys []string
	for k, it := range s.kv {
		if strings.HasPrefix(k, prefix) && s.live(it.expires) {
			keys = append(keys, k)
		}
	}
	for k, st := range s.sets {
		if strings.HasPrefix(k, prefix) && s.live(st.expires) {
			keys = append(keys, k)
		}
	}
	s.mu.Unlock()
	slices.Sort(keys)
	for len(keys) > 0 {
		if err := ctx.Err(); err != nil {
			return err
		}
		n := min(scanBatch, len(keys))
		if err := fn(keys[:n:n]); err != nil {
			return err
		}
		keys = keys[n:]
	}
	return nil
}
