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
// by a KEK of the KeyManager and kept in the Store:
//
//	jeton:k:<tenant>:root          wrapped root key (names, deterministic MACs)
//	jeton:k:<tenant>:gen:<n>       wrapped DEK of generation n
//	jeton:k:<tenant>:destroyed:<n> marker: generation n is destroyed
//	jeton:k:<tenant>:current       the generation new records use (a hint)
//
// Root keys are wrapped by the main KEK (KEK name ""). Each generation's DEK
// is wrapped by a KEK of its own, named genKEK(tenant, n), which
// DestroyGeneration destroys: a Redis backup taken before then holds the
// wrapped DEK but nothing can unwrap it any more.
//
// Stored key blobs start with a version byte. Plaintext keys live only in
// memory. The KeyManager is called once per key per process, plus when a
// wrapped key changes (rewrap), so it is never on the per-item path.
const (
	// keyBlobVersion1 is version | wrapped, wrapped by the main KEK. It is
	// still read; new blobs are version 2.
	keyBlobVersion1 = 0x01
	// keyBlobVersion2 is version | created (int64, Unix seconds, big
	// endian) | len(kek) (one byte) | kek | wrapped.
	keyBlobVersion2 = 0x02
	// markerVersion1 is version | destroyed (int64, Unix seconds, big
	// endian): the destroyed marker of a generation.
	markerVersion1 = 0x01
	// currentVersion1 is version | generation (uint32, big endian).
	currentVersion1 = 0x01
)

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
func destroyedName(tenant string, gen uint32) string {
	return "jeton:k:" + tenant + ":destroyed:" + strconv.FormatUint(uint64(gen), 10)
}

// genKEK names the KEK of one tenant generation. Tenant names are a-z, 0-9
// and '-', so reading "-g<digits>" from the right recovers tenant and
// generation: no two generations share a KEK.
func genKEK(tenant string, gen uint32) string {
	return tenant + "-g" + strconv.FormatUint(uint64(gen), 10)
}

func unavailable(what string, err error) error {
	if errors.Is(err, context.Canceled) || errors.Is(err, context.DeadlineExceeded) {
		return err
	}
	return fmt.Errorf("%w: %s: %v", ErrUnavailable, what, err)
}

// keyBlob is a stored wrapped key.
type keyBlob struct {
	version byte
	created time.Time // zero for version 1
	kek     string    // the KEK that wraps it; "" is the main KEK
	wrapped []byte
}

func newKeyBlob(created time.Time, kek string, wrapped []byte) keyBlob {
	return keyBlob{version: keyBlobVersion2, created: created, kek: kek, wrapped: wrapped}
}

// encode writes b in its own version, so a rewrap keeps a version 1 blob
// readable by older replicas during a rolling upgrade.
func (b keyBlob) encode() []byte {
	if b.version == keyBlobVersion1 {
		return append([]byte{keyBlobVersion1}, b.wrapped...)
	}
	out := binary.BigEndian.AppendUint64([]byte{keyBlobVersion2}, uint64(b.created.Unix()))
	out = append(out, byte(len(b.kek)))
	out = append(out, b.kek...)
	return append(out, b.wrapped...)
}

var errKeyBlob = errors.New("tokenizer: stored key blob is malformed or has an unknown version")

func parseKeyBlob(b []byte) (keyBlob, error) {
	switch {
	case len(b) >= 2 && b[0] == keyBlobVersion1:
		return keyBlob{version: keyBlobVersion1, wrapped: b[1:]}, nil
	case len(b) >= 1+8+1 && b[0] == keyBlobVersion2:
		n := int(b[9])
		if len(b) < 10+n+1 {
			return keyBlob{}, errKeyBlob
		}
		return keyBlob{
			version: keyBlobVersion2,
			created: time.Unix(int64(binary.BigEndian.Uint64(b[1:9])), 0).UTC(),
			kek:     string(b[10 : 10+n]),
			wrapped: b[10+n:],
		}, nil
	}
	return keyBlob{}, errKeyBlob
}

func markerBlob(destroyed time.Time) []byte {
	return binary.BigEndian.AppendUint64([]byte{markerVersion1}, uint64(destroyed.Unix()))
}

// parseMarker returns when a generation was destroyed. Any marker, even a
// malformed one, means destroyed: erasure must not hinge on its format.
func parseMarker(b []byte) time.Time {
	if len(b) != 9 || b[0] != markerVersion1 {
		return time.Time{}
	}
	return time.Unix(int64(binary.BigEndian.Uint64(b[1:])), 0).UTC()
}

func currentBlob(gen uint32) []byte {
	return binary.BigEndian.AppendUint32([]byte{currentVersion1}, gen)
}

// tenant returns a tenant's keys. With create set it makes the root key and
// generation 1 when the tenant has none; otherwise a tenant with no keys is
// ErrNotFound.
func (k *keyring) tenant(ctx context.Context, name string, create bool) (*tenantKeys, error) {
	k.mu.Lock()
	tk := k.tenants[name]
	k.mu.Unlock()
	if tk == nil {
		root, err := k.loadOrCreate(ctx, rootName(name), "", create)
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

// loadOrCreate unwraps the key stored at name, first storing a fresh one
// wrapped by kek if create is set and there is none. Concurrent creators
// agree on one key.
func (k *keyring) loadOrCreate(ctx context.Context, name, kek string, create bool) ([]byte, error) {
	vals, err := k.store.Get(ctx, []string{name})
	if err != nil {
		return nil, unavailable("store", err)
	}
	if vals[0] == nil {
		if !create {
			return nil, ErrNotFound
		}
		key, wrapped, err := k.km.NewDataKey(ctx, kek)
		if err != nil {
			return nil, unavailable("key manager", err)
		}
		blob := newKeyBlob(k.now(), kek, wrapped)
		won, err := k.store.PutNew(ctx, []Entry{{Key: name, Value: blob.encode()}})
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
	blob, err := parseKeyBlob(vals[0])
	if err != nil {
		return nil, err
	}
	key, err := k.km.Unwrap(ctx, blob.kek, blob.wrapped)
	if err != nil {
		return nil, unavailable("key manager", err)
	}
	return key, nil
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
	if _, err := k.loadOrCreate(ctx, genName(tk.name, 1), genKEK(tk.name, 1), true); err != nil {
		return err
	}
	if _, err := k.store.PutNew(ctx, []Entry{{Key: currentName(tk.name), Value: currentBlob(1)}}); err != nil {
		return unavailable("store", err)
	}
	tk.current, tk.checked = 1, k.now()
	return nil
}

// dek returns the data key of a generation. It re-checks the wrapped key
// and the destroyed marker in the store once per refresh interval, so a
// destroyed generation stops opening records on every replica within that
// interval.
func (k *keyring) dek(ctx context.Context, tk *tenantKeys, gen uint32) (*macKey, error) {
	tk.mu.Lock()
	c := tk.deks[gen]
	tk.mu.Unlock()
	if c != nil && k.now().Sub(c.checked) < k.refresh {
		k.observeDEK(true)
		return c.key, nil
	}
	vals, err := k.store.Get(ctx, []string{genName(tk.name, gen), destroyedName(tk.name, gen)})
	if err != nil {
		return nil, unavailable("store", err)
	}
	if vals[0] == nil || vals[1] != nil {
		k.evict(tk, gen)
		return nil, ErrKeyDestroyed
	}
	blob, err := parseKeyBlob(vals[0])
	if err != nil {
		return nil, err
	}
	var key *macKey
	if c != nil && bytes.Equal(c.wrapped, blob.wrapped) {
		k.observeDEK(true)
		key = c.key
	} else {
		k.observeDEK(false)
		raw, err := k.km.Unwrap(ctx, blob.kek, blob.wrapped)
		if errors.Is(err, ErrKeyDestroyed) {
			k.evict(tk, gen)
			return nil, ErrKeyDestroyed // its KEK, or the KEK version, is gone
		}
		if err != nil {
			return nil, unavailable("key manager", err)
		}
		key = newMACKey(raw)
	}
	tk.mu.Lock()
	tk.deks[gen] = &cachedKey{key: key, wrapped: blob.wrapped, checked: k.now()}
	tk.mu.Unlock()
	return key, nil
}

// evict forgets a generation's DEK in this process.
func (k *keyring) evict(tk *tenantKeys, gen uint32) {
	tk.mu.Lock()
	delete(tk.deks, gen)
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
	// Racing rotations ask for the same KEK name; the KeyManager creates
	// it once, so the losers leave no orphan KEK behind.
	_, wrapped, err := k.km.NewDataKey(ctx, genKEK(tenant, next))
	if err != nil {
		return 0, false, unavailable("key manager", err)
	}
	blob := newKeyBlob(k.now(), genKEK(tenant, next), wrapped)
	ok2, err := k.store.PutNew(ctx, []Entry{{Key: genName(tenant, next), Value: blob.encode()}})
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
