package tokenizer

import (
	"context"
	"errors"
	"maps"
	"slices"
)

// Store key prefixes of one tenant's data. Each ends with the ':' after the
// tenant name, so the prefix of tenant "acme" never matches "acme-2".
func recordPrefix(tenant string) string      { return recordSpace + tenant + ":" }
func subjectPrefix(tenant string) string     { return "jeton:s:" + tenant + ":" }
func idempotencyPrefix(tenant string) string { return "jeton:i:" + tenant + ":" }

// PurgeTenant erases a whole tenant and reports how many records existed.
//
// It first crypto-shreds every generation, the current one included, by
// destroying its KEK in the KeyManager: from then on no record of the
// tenant opens, from the store or from any backup of it (generations made
// before per-generation KEKs excepted; see GenerationInfo.OwnKEK), and no
// deterministic token of it can be recomputed. The KEKs destroyed are
// those keyID computes for each generation the store knows, and every
// other KEK the KeyManager holds for the tenant: a store that lost or
// hid generations does not save their keys. Only
// then does it delete every record, subject index, idempotency entry and
// stored key of the tenant, so a purge cut short leaves unreadable data
// behind, never readable data without its keys' record, and running it
// again finishes the work.
//
// It is meant for a tenant whose sponsor has stopped tokenizing: records
// written while it runs may survive, unreadable. This replica forgets the
// tenant's cached keys; other replicas keep theirs until they restart, so
// a purged tenant must not be reused before then.
func (t *Tokenizer) PurgeTenant(ctx context.Context, tenant string) (int, error) {
	if err := validateName("tenant", tenant); err != nil {
		return 0, &UserError{err}
	}
	if err := t.shredGenerations(ctx, tenant); err != nil {
		return 0, err
	}
	// Records are counted; the keyring goes last, so that a purge that
	// stops half way can still find every generation's KEK name.
	erased := 0
	for _, prefix := range []string{recordPrefix(tenant), subjectPrefix(tenant), idempotencyPrefix(tenant), keyPrefix(tenant)} {
		isRecord := prefix == recordPrefix(tenant)
		err := t.store.Scan(ctx, prefix, func(keys []string) error {
			n, err := t.store.Delete(ctx, keys)
			if isRecord {
				erased += n
			}
			return err
		})
		if err != nil {
			return erased, unavailable("store", err)
		}
	}
	t.keys.mu.Lock()
	delete(t.keys.tenants, tenant)
	t.keys.mu.Unlock()
	return erased, nil
}

// shredGenerations destroys the KEK of every generation of tenant: those
// the store holds a wrapped key or a marker of, and every other one the
// KeyManager holds. It reads no pointer, so a store whose current
// generation was edited, deleted or hidden does not save a key.
func (t *Tokenizer) shredGenerations(ctx context.Context, tenant string) error {
	stored, _, err := t.keys.storedGenerations(ctx, tenant)
	if err != nil {
		return err
	}
	live, err := t.keys.liveKEKs(ctx, tenant)
	if err != nil {
		return err
	}
	gens := map[uint32]bool{}
	for _, g := range stored {
		gens[g] = true
	}
	for g := range live {
		gens[g] = true
	}
	all := slices.Sorted(maps.Keys(gens))
	names := make([]string, 0, len(all))
	for _, g := range all {
		names = append(names, destroyedName(tenant, g))
	}
	var markers [][]byte
	if len(names) > 0 {
		if markers, err = t.store.Get(ctx, names); err != nil {
			return unavailable("store", err)
		}
	}
	var entries []Entry
	for i, g := range all {
		if markers[i] == nil {
			entries = append(entries, Entry{Key: destroyedName(tenant, g), Value: markerBlob(t.now())})
		}
	}
	// The markers make every replica stop opening the records within
	// KeyRefresh, as DestroyGeneration's do.
	if len(entries) > 0 {
		if _, err := t.store.PutNew(ctx, entries); err != nil {
			return unavailable("store", err)
		}
	}
	if tk := t.keys.cached(tenant); tk != nil {
		for _, g := range all {
			t.keys.evict(tk, g)
		}
	}
	for _, g := range all {
		if err := t.keys.km.DestroyKEK(ctx, dekKeyID(tenant, g).kek()); err != nil {
			return unavailable("key manager", err)
		}
	}
	return nil
}

// TenantStats counts one tenant's stored records. It holds no value, token
// or key.
type TenantStats struct {
	Tenant string
	// Records is the number of records in the store, readable or not.
	Records int64
	// Generations are the tenant's generations, oldest first, each with
	// its record count; records whose envelope does not parse are in
	// Unreadable instead.
	Generations []GenerationStats
	Unreadable  int64
	// RecordsByClass counts the records by the field class their envelope
	// header names; records sealed before envelopes carried the class (v1)
	// count under UnknownClass. Unreadable records are not in it.
	RecordsByClass map[string]int64
}

// UnknownClass is the class Stats counts a record under when its envelope
// predates the class in the header (version 1). A configured class of that
// name would share the count.
const UnknownClass = "unknown"

// GenerationStats is one generation and its records.
type GenerationStats struct {
	GenerationInfo
	Records int64
}

// Stats counts the records of each tenant by key generation and by field
// class.
//
// Its cost grows with the data: one Store.Scan pass over the tenant's
// records plus one batched Get per batch of keys, to read each envelope's
// generation and class from its clear header; no record is decrypted and
// no key is unwrapped. Run it under a deadline. The counts are a snapshot
// taken while the service runs: a record written, expired or erased during
// the scan may or may not be counted, and Redis may report a key twice if
// it resizes its keyspace meanwhile. The header is authenticated only when
// a record is opened, so the counts trust it: a record whose header was
// tampered with is counted as its header says, and never opens.
func (t *Tokenizer) Stats(ctx context.Context, tenants []string) ([]TenantStats, error) {
	out := make([]TenantStats, 0, len(tenants))
	for _, tn := range tenants {
		if err := validateName("tenant", tn); err != nil {
			return nil, &UserError{err}
		}
		st := TenantStats{Tenant: tn, RecordsByClass: map[string]int64{}}
		gens, err := t.Generations(ctx, tn)
		if err != nil && !errors.Is(err, ErrNotFound) {
			return nil, err
		}
		// Per generation, per class: a record of a generation the keyring
		// does not list is unreadable, whatever its class.
		byGen := map[uint32]map[string]int64{}
		err = t.store.Scan(ctx, recordPrefix(tn), func(keys []string) error {
			blobs, err := t.store.Get(ctx, keys)
			if err != nil {
				return err
			}
			for _, b := range blobs {
				if b == nil {
					continue // expired or erased since the scan saw it
				}
				st.Records++
				class, gen, err := envelopeClassOf(b)
				if err != nil {
					st.Unreadable++
					continue
				}
				if class == "" {
					class = UnknownClass
				}
				if byGen[gen] == nil {
					byGen[gen] = map[string]int64{}
				}
				byGen[gen][class]++
			}
			return nil
		})
		if err != nil {
			return nil, unavailable("store", err)
		}
		for _, g := range gens {
			var n int64
			for class, c := range byGen[g.Generation] {
				n += c
				st.RecordsByClass[class] += c
			}
			st.Generations = append(st.Generations, GenerationStats{GenerationInfo: g, Records: n})
			delete(byGen, g.Generation)
		}
		// A record naming a generation the keyring does not list cannot
		// open: count it as unreadable rather than invent a generation.
		for _, classes := range byGen {
			for _, c := range classes {
				st.Unreadable += c
			}
		}
		out = append(out, st)
	}
	return out, nil
}
