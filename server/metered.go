package server

import (
	"context"
	"errors"
	"time"

	"github.com/jeton-dev/jeton/tokenizer"
)

// MeterStore counts the failures of s in jeton_backend_errors_total
// {backend="redis"}, on the request path as well as in the health probes.
// A call its caller abandoned is not the backend's failure.
func (m *Metrics) MeterStore(s tokenizer.Store) tokenizer.Store {
	return meteredStore{s: s, m: m}
}

// MeterKeys counts the failures of k in jeton_backend_errors_total
// {backend="vault"}. A retired or destroyed key is an answer, not a
// failure, and so is a stored key that does not open as its identity
// (moved or edited in Redis, not a Vault fault).
func (m *Metrics) MeterKeys(k tokenizer.KeyManager) tokenizer.KeyManager {
	return meteredKeys{k: k, m: m}
}

func (m *Metrics) count(ctx context.Context, backend string, err error) {
	if err == nil || ctx.Err() != nil || errors.Is(err, tokenizer.ErrKeyDestroyed) || errors.Is(err, tokenizer.ErrKeyMismatch) {
		return
	}
	m.BackendError(backend)
}

type meteredStore struct {
	s tokenizer.Store
	m *Metrics
}

func (w meteredStore) Put(ctx context.Context, e []tokenizer.Entry) error {
	err := w.s.Put(ctx, e)
	w.m.count(ctx, BackendRedis, err)
	return err
}

func (w meteredStore) PutNew(ctx context.Context, e []tokenizer.Entry) ([]bool, error) {
	r, err := w.s.PutNew(ctx, e)
	w.m.count(ctx, BackendRedis, err)
	return r, err
}

func (w meteredStore) PutExisting(ctx context.Context, e []tokenizer.Entry) ([]bool, error) {
	r, err := w.s.PutExisting(ctx, e)
	w.m.count(ctx, BackendRedis, err)
	return r, err
}

func (w meteredStore) Swap(ctx context.Context, old []byte, e tokenizer.Entry) (bool, error) {
	r, err := w.s.Swap(ctx, old, e)
	w.m.count(ctx, BackendRedis, err)
	return r, err
}

func (w meteredStore) Write(ctx context.Context, wr tokenizer.Write) error {
	err := w.s.Write(ctx, wr)
	w.m.count(ctx, BackendRedis, err)
	return err
}

func (w meteredStore) Get(ctx context.Context, keys []string) ([][]byte, error) {
	r, err := w.s.Get(ctx, keys)
	w.m.count(ctx, BackendRedis, err)
	return r, err
}

func (w meteredStore) Delete(ctx context.Context, keys []string) (int, error) {
	r, err := w.s.Delete(ctx, keys)
	w.m.count(ctx, BackendRedis, err)
	return r, err
}

func (w meteredStore) AddToSet(ctx context.Context, key string, members []string, ttl time.Duration) error {
	err := w.s.AddToSet(ctx, key, members, ttl)
	w.m.count(ctx, BackendRedis, err)
	return err
}

func (w meteredStore) SetMembers(ctx context.Context, key string) ([]string, error) {
	r, err := w.s.SetMembers(ctx, key)
	w.m.count(ctx, BackendRedis, err)
	return r, err
}

func (w meteredStore) Scan(ctx context.Context, prefix string, fn func(keys []string) error) error {
	err := w.s.Scan(ctx, prefix, fn)
	w.m.count(ctx, BackendRedis, err)
	return err
}

type meteredKeys struct {
	k tokenizer.KeyManager
	m *Metrics
}

func (w meteredKeys) Wrap(ctx context.Context, kek string, key, ad []byte) ([]byte, error) {
	wr, err := w.k.Wrap(ctx, kek, key, ad)
	w.m.count(ctx, BackendVault, err)
	return wr, err
}

func (w meteredKeys) Unwrap(ctx context.Context, kek string, wrapped, ad []byte) ([]byte, error) {
	k, err := w.k.Unwrap(ctx, kek, wrapped, ad)
	w.m.count(ctx, BackendVault, err)
	return k, err
}

func (w meteredKeys) DestroyKEK(ctx context.Context, kek string) error {
	err := w.k.DestroyKEK(ctx, kek)
	w.m.count(ctx, BackendVault, err)
	return err
}

func (w meteredKeys) KEKs(ctx context.Context, prefix string) ([]string, error) {
	r, err := w.k.KEKs(ctx, prefix)
	w.m.count(ctx, BackendVault, err)
	return r, err
}
