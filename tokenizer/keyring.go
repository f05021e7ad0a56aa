package tokenizer

import (
	"bytes"
	"context"
	"encoding/binary"
	"errors"
	"fmt"
	"io"
	"sync"
	"time"
)

// Each tenant has a root key and numbered data-key generations, each
// wrapped by a KEK of the KeyManager and kept in the Store; keyid.go says
// which KEK, bound how, stored where. Plaintext keys live only in memory.
// The KeyManager is called once per key per process, plus when a wrapped
// key changes (rewrap), so it is never on the per-item path.

type keyring struct {
	km      KeyManager
	store   Store
	rand    io.Reader // makes the keys the KeyManager wraps
	now     func() time.Time
	refresh time.Duration
	obs     Observer // nil: none

	mu      sync.Mutex
	tenants map[string]*tenantKeys
}

// tenantKeys are one tenant's keys in memory.
type tenantKeys struct {
	name  string
	index *macKey // names store keys
	idem  *macKey // derives the key of each call's idempotency entry

	mu      sync.Mutex
	current uint32
	checked time.Time
	gens    map[uint32]*cachedKey
}

type cachedKey struct {
	keys    *genKeys // nil: the generation is destroyed
	blob    []byte   // the stored blob the keys came from
	checked time.Time
}

func unavailable(what string, err error) error {
	if errors.Is(err, context.Canceled) || errors.Is(err, context.DeadlineExceeded) {
		return err
	}
	return fmt.Errorf("%w: %s: %v", ErrUnavailable, what, err)
}

// newKey makes a 256-bit key from the keyring's randomness.
func (k *keyring) newKey() ([]byte, error) {
	key := make([]byte, 32)
	if _, err := io.ReadFull(k.rand, key); err != nil {
		return nil, fmt.Errorf("tokenizer: reading randomness for a key: %w", err)
	}
	return key, nil
}

// wrap wraps key as id and returns the blob to store, bound to id.
func (k *keyring) wrap(ctx context.Context, id keyID, key []byte, created time.Time) ([]byte, error) {
	wrapped, err := k.km.Wrap(ctx, id.kek(), key, id.ad())
	if err != nil {
		return nil, unavailable("key manager: wrapping "+id.String(), err)
	}
	return newKeyBlob(created, wrapped).encode(), nil
}

// unwrap opens a stored blob of id. A blob that does not open under id's
// identity (moved, copied or edited in the store) is ErrKeyMismatch
// wrapped in ErrUnavailable: never a missing key, so never NotFound.
func (k *keyring) unwrap(ctx context.Context, id keyID, b keyBlob) ([]byte, error) {
	kek, ad := id.opener(b)
	key, err := k.km.Unwrap(ctx, kek, b.wrapped, ad)
	switch {
	case errors.Is(err, ErrKeyDestroyed):
		return nil, fmt.Errorf("tokenizer: %s: %w", id, err)
	case errors.Is(err, ErrKeyMismatch):
		return nil, fmt.Errorf("%w: %s: %w", ErrUnavailable, id, err)
	case err != nil:
		return nil, unavailable("key manager: unwrapping "+id.String(), err)
	case len(key) != 32:
		clear(key)
		return nil, fmt.Errorf("%w: %s: %w: not a 256-bit key", ErrUnavailable, id, ErrKeyMismatch)
	}
	return key, nil
}

// newTenantKeys derives a tenant's keys from its root key.
func newTenantKeys(name string, root []byte) *tenantKeys {
	rk := newMACKey(root)
	return &tenantKeys{
		name:  name,
		index: newMACKey(rk.expand32(nil, "jeton/v1/index")),
		idem:  newMACKey(rk.expand32(nil, "jeton/v1/idempotency")),
		gens:  map[uint32]*cachedKey{},
	}
}

// tenant returns a tenant's keys. With create set it makes the root key and
// generation 1 when the tenant has none; otherwise a tenant with no keys is
// ErrNotFound.
func (k *keyring) tenant(ctx context.Context, name string, create bool) (*tenantKeys, error) {
	k.mu.Lock()
	tk := k.tenants[name]
	k.mu.Unlock()
	if tk == nil {
		root, err := k.loadOrCreate(ctx, rootKeyID(name), create)
		if err != nil {
			return nil, err
		}
		tk = newTenantKeys(name, root)
		clear(root)
		k.mu.Lock()
		if prev := k.tenants[name]; prev != nil {
			tk = prev
		} else {
			k.tenants[name] = tk
		}
		k.mu.Unlock()
	}
	if err := k.refreshCurrent(ctx, tk, create); err != nil {
		return nil, err
	}
	return tk, nil
}

// loadOrCreate unwraps the key id, first storing a fresh one if create is
// set and there is none. Concurrent creators agree on one key.
func (k *keyring) loadOrCreate(ctx context.Context, id keyID, create bool) ([]byte, error) {
	name := id.storeName()
	vals, err := k.store.Get(ctx, []string{name})
	if err != nil {
		return nil, unavailable("store", err)
	}
	if vals[0] == nil {
		if !create {
			return nil, ErrNotFound
		}
		key, err := k.newKey()
		if err != nil {
			return nil, err
		}
		blob, err := k.wrap(ctx, id, key, k.now())
		if err != nil {
			return nil, err
		}
		won, err := k.store.PutNew(ctx, []Entry{{Key: name, Value: blob}})
		if err != nil {
			return nil, unavailable("store", err)
		}
		if won[0] {
			return key, nil
		}
		clear(key)
		if vals, err = k.store.Get(ctx, []string{name}); err != nil {
			return nil, unavailable("store", err)
		}
		if vals[0] == nil {
			return nil, fmt.Errorf("%w: %s vanished while being created", ErrUnavailable, id)
		}
	}
	blob, err := parseKeyBlob(vals[0])
	if err != nil {
		return nil, fmt.Errorf("%w: %s: %w", ErrUnavailable, id, err)
	}
	key, err := k.unwrap(ctx, id, blob)
	if errors.Is(err, ErrKeyDestroyed) {
		// A root key whose KEK version was retired (without a rewrap)
		// leaves its whole tenant unusable: an outage for custodians to
		// fix, not a missing token.
		return nil, fmt.Errorf("%w: %w", ErrUnavailable, err)
	}
	return key, err
}

// readCurrent returns the tenant's current generation as the store has it,
// ok false when the tenant has none. The stored pointer is only a hint: the
// generation whose PutNew won is current from that moment, and a rotation
// that stopped before moving the pointer, or a slow writer that moved it
// back, must neither strand that generation nor let it be reused. So it
// walks up from the pointer to the last generation that exists (live or
// destroyed).
func (k *keyring) readCurrent(ctx context.Context, tenant string) (gen uint32, ok bool, err error) {
	vals, err := k.store.Get(ctx, []string{currentName(tenant)})
	if err != nil {
		return 0, false, unavailable("store", err)
	}
	if vals[0] == nil {
		return 0, false, nil
	}
	if len(vals[0]) != 5 || vals[0][0] != currentVersion1 {
		return 0, false, fmt.Errorf("tokenizer: stored current generation has unknown version")
	}
	gen = binary.BigEndian.Uint32(vals[0][1:])
	if gen == 0 {
		return 0, false, fmt.Errorf("tokenizer: stored current generation is 0")
	}
	for {
		next, err := k.store.Get(ctx, []string{genName(tenant, gen+1), destroyedName(tenant, gen+1)})
		if err != nil {
			return 0, false, unavailable("store", err)
		}
		if next[0] == nil && next[1] == nil {
			return gen, true, nil
		}
		gen++
	}
}

// refreshCurrent re-reads the current generation when the cached one is
// older than the refresh interval, so a rotation on any replica is seen.
func (k *keyring) refreshCurrent(ctx context.Context, tk *tenantKeys, create bool) error {
	tk.mu.Lock()
	defer tk.mu.Unlock()
	if tk.current != 0 && k.now().Sub(tk.checked) < k.refresh {
		return nil
	}
	gen, ok, err := k.readCurrent(ctx, tk.name)
	if err != nil {
		return err
	}
	if ok {
		tk.current, tk.checked = gen, k.now()
		return nil
	}
	if !create {
		return ErrNotFound
	}
	key, err := k.loadOrCreate(ctx, dekKeyID(tk.name, 1), true)
	if err != nil {
		return err
	}
	clear(key)
	if _, err := k.store.PutNew(ctx, []Entry{{Key: currentName(tk.name), Value: currentBlob(1)}}); err != nil {
		return unavailable("store", err)
	}
	tk.current, tk.checked = 1, k.now()
	return nil
}

// genKeys are the keys of one live generation, in memory.
type genKeys struct {
	gen uint32
	// dek derives each record's key (envelope.go).
	dek *macKey
	// det mints the generation's deterministic tokens
	// (deterministicPayload).
	det *macKey
}

// newGenKeys derives a generation's keys from its DEK.
//
// The deterministic-token key is HKDF-Expand(DEK, "jeton/v2/deterministic")
// rather than a key wrapped on its own, and that is sound:
//   - it dies with the generation: it exists only where the DEK is
//     unwrapped, so once the generation's KEK is destroyed no one, jetond
//     included, can derive it again from any copy of the store;
//   - it is independent of every record key: those are HKDF-Expand(DEK,
//     "jeton/v1/record" 0x00 token), an info string that can never equal
//     this one, and HKDF-Expand is a PRF, so knowing either reveals
//     nothing of the other or of the DEK;
//   - it costs no second wrapped blob, no second Vault unwrap, and no
//     second thing to destroy or to forget to destroy.
func newGenKeys(gen uint32, dek []byte) *genKeys {
	d := newMACKey(dek)
	return &genKeys{gen: gen, dek: d, det: newMACKey(d.expand32(nil, "jeton/v2/deterministic"))}
}

// genKeys returns the keys of a generation. It re-checks the wrapped key
// and the destroyed marker in the store once per refresh interval, so a
// destroyed generation stops opening records on every replica within that
// interval. A destroyed generation is ErrKeyDestroyed; a wrapped key that
// does not open as the generation's (moved or edited in the store) is
// ErrUnavailable, as is any backend failure.
func (k *keyring) genKeys(ctx context.Context, tk *tenantKeys, gen uint32) (*genKeys, error) {
	tk.mu.Lock()
	c := tk.gens[gen]
	tk.mu.Unlock()
	if c != nil && k.now().Sub(c.checked) < k.refresh {
		if c.keys == nil {
			return nil, ErrKeyDestroyed
		}
		k.observeDEK(true)
		return c.keys, nil
	}
	id := dekKeyID(tk.name, gen)
	vals, err := k.store.Get(ctx, []string{id.storeName(), destroyedName(tk.name, gen)})
	if err != nil {
		return nil, unavailable("store", err)
	}
	if vals[0] == nil || vals[1] != nil {
		k.destroyed(tk, gen)
		return nil, ErrKeyDestroyed
	}
	blob, err := parseKeyBlob(vals[0])
	if err != nil {
		return nil, fmt.Errorf("%w: %s: %w", ErrUnavailable, id, err)
	}
	// Any change to the stored blob, even one that keeps the wrapped key,
	// is unwrapped anew, so a warm replica sees an edited blob as a cold
	// one does.
	var keys *genKeys
	if c != nil && c.keys != nil && bytes.Equal(c.blob, vals[0]) {
		k.observeDEK(true)
		keys = c.keys
	} else {
		k.observeDEK(false)
		raw, err := k.unwrap(ctx, id, blob)
		if errors.Is(err, ErrKeyDestroyed) {
			k.destroyed(tk, gen)
			return nil, ErrKeyDestroyed // its KEK, or the KEK version, is gone
		}
		if err != nil {
			return nil, err
		}
		keys = newGenKeys(gen, raw)
		clear(raw)
	}
	tk.mu.Lock()
	tk.gens[gen] = &cachedKey{keys: keys, blob: vals[0], checked: k.now()}
	tk.mu.Unlock()
	return keys, nil
}

// dek returns the data key of a generation; see genKeys.
func (k *keyring) dek(ctx context.Context, tk *tenantKeys, gen uint32) (*macKey, error) {
	keys, err := k.genKeys(ctx, tk, gen)
	if err != nil {
		return nil, err
	}
	return keys.dek, nil
}

// olderLive returns the keys of the tenant's live generations below gen,
// oldest first. Destroyed generations are left out; any other failure
// fails the call, since a generation that cannot be read might hold a
// token the caller must get.
func (k *keyring) olderLive(ctx context.Context, tk *tenantKeys, gen uint32) ([]*genKeys, error) {
	var out []*genKeys
	for g := uint32(1); g < gen; g++ {
		keys, err := k.genKeys(ctx, tk, g)
		if errors.Is(err, ErrKeyDestroyed) {
			continue
		}
		if err != nil {
			return nil, err
		}
		out = append(out, keys)
	}
	return out, nil
}

// destroyed remembers for one refresh interval that a generation is
// destroyed, so that deterministic lookups over many old generations, and
// reveals of their tokens, do not ask the store each time. A destroyed
// generation never comes back: its KEK is gone.
func (k *keyring) destroyed(tk *tenantKeys, gen uint32) {
	tk.mu.Lock()
	tk.gens[gen] = &cachedKey{checked: k.now()}
	tk.mu.Unlock()
}

// evict forgets a generation's keys in this process.
func (k *keyring) evict(tk *tenantKeys, gen uint32) {
	tk.mu.Lock()
	delete(tk.gens, gen)
	tk.mu.Unlock()
}

// cached returns the tenant's keys if this process holds them.
func (k *keyring) cached(tenant string) *tenantKeys {
	k.mu.Lock()
	defer k.mu.Unlock()
	return k.tenants[tenant]
}

// rotate makes generation current+1 current for the tenant, creating the
// tenant if needed. won is false when another caller created that
// generation first; gen is then the current generation as now stored.
func (k *keyring) rotate(ctx context.Context, tenant string) (gen uint32, won bool, err error) {
	tk, err := k.tenant(ctx, tenant, true)
	if err != nil {
		return 0, false, err
	}
	cur, ok, err := k.readCurrent(ctx, tenant)
	if err != nil {
		return 0, false, err
	}
	if !ok {
		return 0, false, fmt.Errorf("%w: tenant %s lost its current generation", ErrUnavailable, tenant)
	}
	next := cur + 1
	id := dekKeyID(tenant, next)
	key, err := k.newKey()
	if err != nil {
		return 0, false, err
	}
	// Racing rotations wrap under the same KEK; the KeyManager creates it
	// once, so the losers leave no orphan KEK behind.
	blob, err := k.wrap(ctx, id, key, k.now())
	clear(key)
	if err != nil {
		return 0, false, err
	}
	ok2, err := k.store.PutNew(ctx, []Entry{{Key: id.storeName(), Value: blob}})
	if err != nil {
		return 0, false, unavailable("store", err)
	}
	if !ok2[0] {
		gen, _, err := k.readCurrent(ctx, tenant)
		return gen, false, err
	}
	// The pointer only speeds up readCurrent; the PutNew above decided.
	if err := k.store.Put(ctx, []Entry{{Key: currentName(tenant), Value: currentBlob(next)}}); err != nil {
		return 0, false, unavailable("store", err)
	}
	tk.mu.Lock()
	tk.current, tk.checked = next, k.now()
	tk.mu.Unlock()
	return next, true, nil
}
