package tokenizer

import (
	"bytes"
	"context"
	"encoding/binary"
	"errors"
	"fmt"
	"strconv"
	"sync"
	"time"
)

// Each tenant has a root key and numbered data-key generations, all wrapped
// by the KEK and kept in the Store:
//
//	jeton:k:<tenant>:root     wrapped root key (names, deterministic MACs)
//	jeton:k:<tenant>:gen:<n>  wrapped DEK of generation n
//	jeton:k:<tenant>:current  the generation new records use
//
// Stored key blobs start with a version byte. Plaintext keys live only in
// memory. The KeyManager is called once per key per process, plus when a
// wrapped key changes (rewrap), so it is never on the per-item path.
const keyBlobVersion1 = 0x01

type keyring struct {
	km      KeyManager
	store   Store
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
	det   *macKey // mints deterministic tokens
	idem  []byte  // AEAD key for idempotency entries

	mu      sync.Mutex
	current uint32
	checked time.Time
	deks    map[uint32]*cachedKey
}

type cachedKey struct {
	key     *macKey
	wrapped []byte
	checked time.Time
}

func rootName(tenant string) string    { return "jeton:k:" + tenant + ":root" }
func currentName(tenant string) string { return "jeton:k:" + tenant + ":current" }
func genName(tenant string, gen uint32) string {
	return "jeton:k:" + tenant + ":gen:" + strconv.FormatUint(uint64(gen), 10)
}

func unavailable(what string, err error) error {
	if errors.Is(err, context.Canceled) || errors.Is(err, context.DeadlineExceeded) {
		return err
	}
	return fmt.Errorf("%w: %s: %v", ErrUnavailable, what, err)
}

// tenant returns a tenant's keys. With create set it makes the root key and
// generation 1 when the tenant has none; otherwise a tenant with no keys is
// ErrNotFound.
func (k *keyring) tenant(ctx context.Context, name string, create bool) (*tenantKeys, error) {
	k.mu.Lock()
	tk := k.tenants[name]
	k.mu.Unlock()
	if tk == nil {
		root, err := k.loadOrCreate(ctx, rootName(name), create)
		if err != nil {
			return nil, err
		}
		rk := newMACKey(root)
		tk = &tenantKeys{
			name:  name,
			index: newMACKey(rk.expand32(nil, "jeton/v1/index")),
			det:   newMACKey(rk.expand32(nil, "jeton/v1/deterministic")),
			idem:  rk.expand32(nil, "jeton/v1/idempotency"),
			deks:  map[uint32]*cachedKey{},
		}
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

// loadOrCreate unwraps the key stored at name, first storing a fresh one if
// create is set and there is none. Concurrent creators agree on one key.
func (k *keyring) loadOrCreate(ctx context.Context, name string, create bool) ([]byte, error) {
	vals, err := k.store.Get(ctx, []string{name})
	if err != nil {
		return nil, unavailable("store", err)
	}
	if vals[0] == nil {
		if !create {
			return nil, ErrNotFound
		}
		key, wrapped, err := k.km.NewDataKey(ctx)
		if err != nil {
			return nil, unavailable("key manager", err)
		}
		won, err := k.store.PutNew(ctx, []Entry{{Key: name, Value: keyBlob(wrapped)}})
		if err != nil {
			return nil, unavailable("store", err)
		}
		if won[0] {
			return key, nil
		}
		if vals, err = k.store.Get(ctx, []string{name}); err != nil {
			return nil, unavailable("store", err)
		}
		if vals[0] == nil {
			return nil, fmt.Errorf("%w: key %s vanished while being created", ErrUnavailable, name)
		}
	}
	wrapped, err := parseKeyBlob(vals[0])
	if err != nil {
		return nil, err
	}
	key, err := k.km.Unwrap(ctx, wrapped)
	if err != nil {
		return nil, unavailable("key manager", err)
	}
	return key, nil
}

func keyBlob(wrapped []byte) []byte { return append([]byte{keyBlobVersion1}, wrapped...) }

func parseKeyBlob(b []byte) ([]byte, error) {
	if len(b) < 2 || b[0] != keyBlobVersion1 {
		return nil, fmt.Errorf("tokenizer: stored key blob has unknown version")
	}
	return b[1:], nil
}

// refreshCurrent re-reads the current generation when the cached one is
// older than the refresh interval, so a rotation on any replica is seen.
func (k *keyring) refreshCurrent(ctx context.Context, tk *tenantKeys, create bool) error {
	tk.mu.Lock()
	defer tk.mu.Unlock()
	if tk.current != 0 && k.now().Sub(tk.checked) < k.refresh {
		return nil
	}
	vals, err := k.store.Get(ctx, []string{currentName(tk.name)})
	if err != nil {
		return unavailable("store", err)
	}
	if vals[0] != nil {
		if len(vals[0]) != 5 || vals[0][0] != keyBlobVersion1 {
			return fmt.Errorf("tokenizer: stored current generation has unknown version")
		}
		tk.current = binary.BigEndian.Uint32(vals[0][1:])
		tk.checked = k.now()
		return nil
	}
	if !create {
		return ErrNotFound
	}
	if _, err := k.loadOrCreate(ctx, genName(tk.name, 1), true); err != nil {
		return err
	}
	if _, err := k.store.PutNew(ctx, []Entry{{Key: currentName(tk.name), Value: currentBlob(1)}}); err != nil {
		return unavailable("store", err)
	}
	tk.current, tk.checked = 1, k.now()
	return nil
}

func currentBlob(gen uint32) []byte {
	return binary.BigEndian.AppendUint32([]byte{keyBlobVersion1}, gen)
}

// dek returns the data key of a generation. It re-checks the wrapped key in
// the store once per refresh interval, so a destroyed generation stops
// opening records on every replica within that interval.
func (k *keyring) dek(ctx context.Context, tk *tenantKeys, gen uint32) (*macKey, error) {
	tk.mu.Lock()
	c := tk.deks[gen]
	tk.mu.Unlock()
	if c != nil && k.now().Sub(c.checked) < k.refresh {
		k.observeDEK(true)
		return c.key, nil
	}
	vals, err := k.store.Get(ctx, []string{genName(tk.name, gen)})
	if err != nil {
		return nil, unavailable("store", err)
	}
	if vals[0] == nil {
		tk.mu.Lock()
		delete(tk.deks, gen)
		tk.mu.Unlock()
		return nil, ErrKeyDestroyed
	}
	wrapped, err := parseKeyBlob(vals[0])
	if err != nil {
		return nil, err
	}
	var key *macKey
	if c != nil && bytes.Equal(c.wrapped, wrapped) {
		k.observeDEK(true)
		key = c.key
	} else {
		k.observeDEK(false)
		raw, err := k.km.Unwrap(ctx, wrapped)
		if errors.Is(err, ErrKeyDestroyed) {
			return nil, ErrKeyDestroyed // its KEK version was retired
		}
		if err != nil {
			return nil, unavailable("key manager", err)
		}
		key = newMACKey(raw)
	}
	tk.mu.Lock()
	tk.deks[gen] = &cachedKey{key: key, wrapped: wrapped, checked: k.now()}
	tk.mu.Unlock()
	return key, nil
}

// rotate makes a new generation current for the tenant and returns it.
func (k *keyring) rotate(ctx context.Context, tenant string) (uint32, error) {
	tk, err := k.tenant(ctx, tenant, true)
	if err != nil {
		return 0, err
	}
	tk.mu.Lock()
	tk.checked = time.Time{}
	tk.mu.Unlock()
	if err := k.refreshCurrent(ctx, tk, true); err != nil {
		return 0, err
	}
	next := tk.current + 1
	_, wrapped, err := k.km.NewDataKey(ctx)
	if err != nil {
		return 0, unavailable("key manager", err)
	}
	won, err := k.store.PutNew(ctx, []Entry{{Key: genName(tenant, next), Value: keyBlob(wrapped)}})
	if err != nil {
		return 0, unavailable("store", err)
	}
	if !won[0] {
		return 0, fmt.Errorf("tokenizer: generation %d of tenant %s was created concurrently", next, tenant)
	}
	if err := k.store.Put(ctx, []Entry{{Key: currentName(tenant), Value: currentBlob(next)}}); err != nil {
		return 0, unavailable("store", err)
	}
	tk.mu.Lock()
	tk.current, tk.checked = next, k.now()
	tk.mu.Unlock()
	return next, nil
}

// rewrap re-wraps the tenant's root key and every generation's DEK under
// the newest KEK version. It reports how many keys it rewrapped.
func (k *keyring) rewrap(ctx context.Context, tenant string) (int, error) {
	vals, err := k.store.Get(ctx, []string{currentName(tenant)})
	if err != nil {
		return 0, unavailable("store", err)
	}
	if vals[0] == nil {
		return 0, nil
	}
	if len(vals[0]) != 5 || vals[0][0] != keyBlobVersion1 {
		return 0, fmt.Errorf("tokenizer: stored current generation has unknown version")
	}
	current := binary.BigEndian.Uint32(vals[0][1:])
	names := []string{rootName(tenant)}
	for g := uint32(1); g <= current; g++ {
		names = append(names, genName(tenant, g))
	}
	blobs, err := k.store.Get(ctx, names)
	if err != nil {
		return 0, unavailable("store", err)
	}
	var out []Entry
	for i, b := range blobs {
		if b == nil {
			continue // destroyed generation
		}
		wrapped, err := parseKeyBlob(b)
		if err != nil {
			return 0, err
		}
		re, err := k.km.Rewrap(ctx, wrapped)
		if err != nil {
			return 0, unavailable("key manager", err)
		}
		out = append(out, Entry{Key: names[i], Value: keyBlob(re)})
	}
	if err := k.store.Put(ctx, out); err != nil {
		return 0, unavailable("store", err)
	}
	return len(out), nil
}
