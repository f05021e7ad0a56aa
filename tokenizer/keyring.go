package tokenizer

import (
	"bytes"
	"context"
	"encoding/binary"
	"errors"
	"fmt"
	"io"
	"maps"
	"slices"
	"strconv"
	"strings"
	"sync"
	"time"
)

// Each tenant has a root key and numbered data-key generations, each
// wrapped by a KEK of the KeyManager and kept in the Store; keyid.go says
// which KEK, bound how, stored where. Plaintext keys live only in memory.
// The KeyManager is called once per key per process to unwrap it, then
// once per KeyRefresh for each generation in use, to ask whether its KEK
// still exists (genKeys): never on the per-item path.

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
	// checking is set while one caller re-checks the entry past its
	// refresh interval; the others keep using keys meanwhile, so a re-check
	// costs one KeyManager call, not one per concurrent caller.
	checking bool
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
	wrapped, err := k.km.Wrap(ctx, id.kek(), key, id.ad(created))
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
	if err := k.refreshCurrent(ctx, tk, create, false); err != nil {
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

// readCurrent returns the tenant's current generation, ok false when the
// tenant has none. What the store holds never chooses it: the stored
// pointer is a hint that must name a generation that exists (its wrapped
// key or its destroyed marker), and readCurrent walks up from it to the
// last of the generations that follow, since the generation whose PutNew
// won is current from that moment, and a rotation that stopped before
// moving the pointer, or a slow writer that moved it back, must neither
// strand that generation nor let it be reused. A pointer out of range
// (0, above MaxGenerations) or naming a generation that does not exist is
// ErrUnavailable: the store was edited. With no pointer, the generations
// are found by scanning the tenant's keyring (scanCurrent).
func (k *keyring) readCurrent(ctx context.Context, tenant string) (gen uint32, ok bool, err error) {
	vals, err := k.store.Get(ctx, []string{currentName(tenant)})
	if err != nil {
		return 0, false, unavailable("store", err)
	}
	if vals[0] == nil {
		return k.scanCurrent(ctx, tenant)
	}
	if len(vals[0]) != 5 || vals[0][0] != currentVersion1 {
		return 0, false, fmt.Errorf("%w: tenant %s: stored current generation has an unknown version", ErrUnavailable, tenant)
	}
	gen = binary.BigEndian.Uint32(vals[0][1:])
	if gen == 0 || gen > MaxGenerations {
		return 0, false, fmt.Errorf("%w: tenant %s: stored current generation %d is out of range (1 to %d): the store was edited",
			ErrUnavailable, tenant, gen, MaxGenerations)
	}
	last, err := k.lastFrom(ctx, tenant, gen)
	if err != nil {
		return 0, false, err
	}
	if last < gen {
		return 0, false, fmt.Errorf("%w: tenant %s: stored current generation %d does not exist: the store was edited",
			ErrUnavailable, tenant, gen)
	}
	return last, true, nil
}

// currentWalk is how many generations lastFrom reads per round trip.
const currentWalk = 4

// lastFrom returns the last generation of the unbroken run of existing
// generations (wrapped key or destroyed marker) that starts at from, or
// from-1 if from does not exist. It never goes past MaxGenerations.
func (k *keyring) lastFrom(ctx context.Context, tenant string, from uint32) (uint32, error) {
	for lo := from; ; lo += currentWalk {
		hi := min(lo+currentWalk-1, MaxGenerations)
		names := make([]string, 0, 2*(hi-lo+1))
		for g := lo; g <= hi; g++ {
			names = append(names, genName(tenant, g), destroyedName(tenant, g))
		}
		vals, err := k.store.Get(ctx, names)
		if err != nil {
			return 0, unavailable("store", err)
		}
		for i := range hi - lo + 1 {
			if vals[2*i] == nil && vals[2*i+1] == nil {
				return lo + i - 1, nil
			}
		}
		if hi == MaxGenerations {
			return hi, nil
		}
	}
}

// scanCurrent finds the current generation of a tenant whose pointer is
// missing from the generations the store holds, and stores the pointer
// again. It costs a scan of the store, so it runs only for a tenant being
// created, or whose pointer was deleted. ok is false when the store holds
// no generation of the tenant.
func (k *keyring) scanCurrent(ctx context.Context, tenant string) (gen uint32, ok bool, err error) {
	gens, beyond, err := k.storedGenerations(ctx, tenant)
	if err != nil {
		return 0, false, err
	}
	if beyond {
		return 0, false, fmt.Errorf("%w: tenant %s: the store holds a generation above %d: the store was edited",
			ErrUnavailable, tenant, MaxGenerations)
	}
	if len(gens) == 0 {
		return 0, false, nil
	}
	last := gens[len(gens)-1]
	gen, err = k.lastFrom(ctx, tenant, last)
	if err != nil {
		return 0, false, err
	}
	if gen < last { // deleted since the scan: look again next time
		return 0, false, fmt.Errorf("%w: tenant %s: generations changed while being read", ErrUnavailable, tenant)
	}
	if _, err := k.store.PutNew(ctx, []Entry{{Key: currentName(tenant), Value: currentBlob(gen)}}); err != nil {
		return 0, false, unavailable("store", err)
	}
	return gen, true, nil
}

// storedGenerations lists, sorted, the generations of tenant that have a
// wrapped key or a destroyed marker in the store, up to MaxGenerations;
// beyond reports names of higher generations (which jeton never writes).
func (k *keyring) storedGenerations(ctx context.Context, tenant string) (gens []uint32, beyond bool, err error) {
	seen := map[uint32]bool{}
	prefix := keyPrefix(tenant)
	err = k.store.Scan(ctx, prefix, func(keys []string) error {
		for _, key := range keys {
			rest := strings.TrimPrefix(key, prefix)
			num, ok := strings.CutPrefix(rest, "gen:")
			if !ok {
				if num, ok = strings.CutPrefix(rest, "destroyed:"); !ok {
					continue
				}
			}
			n, err := strconv.ParseUint(num, 10, 32)
			switch {
			case err != nil || n == 0:
			case n > MaxGenerations:
				beyond = true
			default:
				seen[uint32(n)] = true
			}
		}
		return nil
	})
	if err != nil {
		return nil, false, unavailable("store", err)
	}
	return slices.Sorted(maps.Keys(seen)), beyond, nil
}

// liveKEKs returns the generations of tenant whose KEK the KeyManager
// holds: what Vault says, whatever the store says.
func (k *keyring) liveKEKs(ctx context.Context, tenant string) (map[uint32]bool, error) {
	listed, err := k.km.KEKs(ctx, generationKEKPrefix(tenant))
	if err != nil {
		return nil, unavailable("key manager", err)
	}
	live := map[uint32]bool{}
	// The prefix also matches other tenants' KEKs ("acme-g" starts
	// "acme-g1-g1", of tenant "acme-g1"): keep only this tenant's.
	for _, kek := range listed {
		if tn, g, ok := ParseGenerationKEK(kek); ok && tn == tenant {
			live[g] = true
		}
	}
	return live, nil
}

// refreshCurrent re-reads the current generation when the cached one is
// older than the refresh interval (or always, with force), so a rotation on
// any replica is seen. With create set, a tenant with no generation gets
// generation 1, unless the KeyManager holds KEKs of later generations of
// it: then its keyring was deleted from the store, and starting it again
// would seal new records under a generation a custodian may destroy as an
// old one. That is ErrUnavailable, for custodians to restore the store.
func (k *keyring) refreshCurrent(ctx context.Context, tk *tenantKeys, create, force bool) error {
	tk.mu.Lock()
	defer tk.mu.Unlock()
	if !force && tk.current != 0 && k.now().Sub(tk.checked) < k.refresh {
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
	live, err := k.liveKEKs(ctx, tk.name)
	if err != nil {
		return err
	}
	for g := range live {
		if g > 1 {
			return fmt.Errorf("%w: tenant %s: the key manager holds the KEK of generation %d but the store holds none of "+
				"the tenant's generations; restore its keyring (%s*) from a backup rather than start generation 1 again",
				ErrUnavailable, tk.name, g, keyPrefix(tk.name))
		}
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
	// created is when the generation was made, as its key blob states;
	// zero when unknown. createdBound is true when the blob binds it
	// (version 4), so that it is authenticated by the unwrap that gave
	// these keys; otherwise anyone who can write to the store could have
	// changed it.
	created      time.Time
	createdBound bool
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
func newGenKeys(gen uint32, dek []byte, blob keyBlob) *genKeys {
	d := newMACKey(dek)
	return &genKeys{gen: gen, dek: d, det: newMACKey(d.expand32(nil, "jeton/v2/deterministic")),
		created: blob.created, createdBound: blob.createdBound()}
}

// genKeys returns the keys of a generation. A destroyed generation, or one
// that does not exist, is ErrKeyDestroyed; a wrapped key that does not
// open as the generation's (moved or edited in the store) is
// ErrUnavailable, as is any backend failure.
//
// Once per refresh interval it checks the generation again: the store's
// destroyed marker and wrapped key, and the KeyManager, which unwraps the
// wrapped key again even when it has not changed. So a generation stops
// opening records on every replica within KeyRefresh of its destroy (of
// the replica's next use of it after that), even when the store no longer
// says so: a Redis writer, or a Redis backup restored while replicas run,
// can put back the wrapped key and delete the marker, but cannot bring
// back the KEK. When the KeyManager cannot be reached, a replica keeps the
// keys it verified and asks again an interval later: Vault being down
// does not take away what a replica could serve, and a Vault that is up
// is always asked.
//
// Only generations that exist are remembered: a record's header naming
// any other (0, above MaxGenerations, above the tenant's current one) is
// answered without a trace in the cache.
func (k *keyring) genKeys(ctx context.Context, tk *tenantKeys, gen uint32) (*genKeys, error) {
	if gen == 0 || gen > MaxGenerations {
		return nil, ErrKeyDestroyed
	}
	tk.mu.Lock()
	c, cur := tk.gens[gen], tk.current
	if c != nil && (k.now().Sub(c.checked) < k.refresh || (c.checking && c.keys != nil)) {
		tk.mu.Unlock()
		if c.keys == nil {
			return nil, ErrKeyDestroyed
		}
		k.observeDEK(true)
		return c.keys, nil
	}
	if c != nil {
		c.checking = true
	}
	tk.mu.Unlock()
	if c != nil {
		defer func() {
			tk.mu.Lock()
			c.checking = false
			tk.mu.Unlock()
		}()
	}
	if c == nil && gen > cur {
		// Newer than this replica's view of the tenant: a rotation it has
		// not seen yet, or a header naming a generation that never was.
		if err := k.refreshCurrent(ctx, tk, false, true); errors.Is(err, ErrNotFound) {
			return nil, ErrKeyDestroyed
		} else if err != nil {
			return nil, err
		}
		tk.mu.Lock()
		cur = tk.current
		tk.mu.Unlock()
		if gen > cur {
			return nil, ErrKeyDestroyed
		}
	}
	return k.loadGen(ctx, tk, gen, c)
}

// loadGen reads, unwraps and caches generation gen's keys, which
// genKeys had as c (nil if none).
func (k *keyring) loadGen(ctx context.Context, tk *tenantKeys, gen uint32, c *cachedKey) (*genKeys, error) {
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
	same := c != nil && c.keys != nil && bytes.Equal(c.blob, vals[0])
	k.observeDEK(false)
	raw, err := k.unwrap(ctx, id, blob)
	switch {
	case errors.Is(err, ErrKeyDestroyed):
		k.destroyed(tk, gen) // its KEK, or the KEK version, is gone
		return nil, ErrKeyDestroyed
	case errors.Is(err, ErrKeyMismatch):
		if same {
			// The KEK no longer opens what it opened: whatever replaced
			// it, the keys held are no longer vouched for.
			k.evict(tk, gen)
		}
		return nil, err
	case err != nil && same && ctx.Err() == nil:
		// The KeyManager could not answer: keep what was verified.
		k.cache(tk, gen, &cachedKey{keys: c.keys, blob: c.blob, checked: k.now()})
		return c.keys, nil
	case err != nil:
		return nil, err
	}
	// Any change to the stored blob, even one that keeps the wrapped key,
	// gives keys derived anew, so a warm replica sees an edited blob as a
	// cold one does. An unchanged blob opened to the same key.
	var keys *genKeys
	if same {
		keys = c.keys
	} else {
		keys = newGenKeys(gen, raw, blob)
	}
	clear(raw)
	k.cache(tk, gen, &cachedKey{keys: keys, blob: vals[0], checked: k.now()})
	return keys, nil
}

// cache stores a generation's entry.
func (k *keyring) cache(tk *tenantKeys, gen uint32, c *cachedKey) {
	tk.mu.Lock()
	tk.gens[gen] = c
	tk.mu.Unlock()
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
// generation never comes back: its KEK is gone. genKeys calls it only for
// generations up to the tenant's current one, so the cache holds at most
// MaxGenerations entries per tenant.
func (k *keyring) destroyed(tk *tenantKeys, gen uint32) {
	k.cache(tk, gen, &cachedKey{checked: k.now()})
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
// from, when not 0, is the generation the caller found due for rotation:
// if another generation is current by now, nothing is rotated.
func (k *keyring) rotate(ctx context.Context, tenant string, from uint32) (gen uint32, won bool, err error) {
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
	if from != 0 && cur != from {
		// Another replica rotated past the generation the caller found
		// old: its rotation is the one that was due.
		return cur, false, nil
	}
	if cur >= MaxGenerations {
		return 0, false, &UserError{fmt.Errorf("tokenizer: tenant %s has reached the most generations a tenant can have (%d)", tenant, MaxGenerations)}
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
