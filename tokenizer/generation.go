package tokenizer

import (
	"context"
	"errors"
	"fmt"
	"time"
)

// GenerationInfo describes one data-key generation of a tenant. It holds no
// key material.
type GenerationInfo struct {
	Generation uint32
	// Current is true for the generation new records use.
	Current bool
	// Created is when the generation was made; zero when unknown (key
	// blobs written before version 2 carry no time).
	Created time.Time
	// Destroyed is true once DestroyGeneration has started on it: its
	// records no longer open.
	Destroyed bool
	// DestroyedAt is when; zero when not destroyed or unknown.
	DestroyedAt time.Time
	// OwnKEK is true when the generation's DEK is wrapped by a KEK of its
	// own, so destroying it also makes Redis backups unreadable. Only
	// generations created before per-generation KEKs (key blob version 1)
	// lack one until Rewrap moves them under their own: destroying those
	// erases the store's copy, but a backup stays readable until
	// custodians retire the main KEK versions it was wrapped under.
	OwnKEK bool
	// Bound is true when the stored DEK is bound to its tenant and
	// generation (Transit associated data), so that a copy moved or edited
	// in the store fails to unwrap. Rewrap binds the keys written before.
	Bound bool
}

// RotateGeneration starts a new data-key generation for tenant, wrapped by
// a new KEK of its own; records tokenized from now on use it (on other
// replicas within KeyRefresh). Older generations keep opening their
// records until destroyed. A tenant with no keys is created at generation
// 2. Two rotations racing for the same generation: one fails and may be
// retried.
func (t *Tokenizer) RotateGeneration(ctx context.Context, tenant string) (uint32, error) {
	if err := validateName("tenant", tenant); err != nil {
		return 0, &UserError{err}
	}
	gen, won, err := t.keys.rotate(ctx, tenant, 0)
	if err != nil {
		return 0, err
	}
	if !won {
		return 0, fmt.Errorf("tokenizer: generation %d of tenant %s was created concurrently; retry", gen, tenant)
	}
	return gen, nil
}

// RotateIfOlder rotates tenant's generation when the current one is at
// least maxAge old (or of unknown age), for scheduled rotation. The age is
// the creation time bound into the generation's key blob, so a store edit
// cannot hold rotation off: an edited blob does not unwrap, and the call
// fails (ErrUnavailable, ErrKeyMismatch) rather than skip the rotation. Every
// replica may run it on the same schedule: the store decides one winner
// per generation, and the others get rotated false with the generation
// now current. A tenant with no keys is ErrNotFound; it is not created.
func (t *Tokenizer) RotateIfOlder(ctx context.Context, tenant string, maxAge time.Duration) (rotated bool, gen uint32, err error) {
	if err := validateName("tenant", tenant); err != nil {
		return false, 0, &UserError{err}
	}
	if maxAge <= 0 {
		return false, 0, &UserError{errors.New("tokenizer: rotation age must be positive")}
	}
	tk, err := t.keys.tenant(ctx, tenant, false)
	if err != nil {
		return false, 0, err
	}
	cur, ok, err := t.keys.readCurrent(ctx, tenant)
	if err != nil {
		return false, 0, err
	}
	if !ok {
		return false, 0, ErrNotFound
	}
	// The age comes from the key blob that unwrapped, which binds it; a
	// destroyed current generation (a restored store) is replaced.
	keys, err := t.keys.genKeys(ctx, tk, cur)
	if err != nil && !errors.Is(err, ErrKeyDestroyed) {
		return false, 0, err
	}
	if keys != nil {
		created := keys.created
		if !keys.createdBound && created.After(t.now()) {
			created = time.Time{} // an unbound time in the future is no age
		}
		if !created.IsZero() && t.now().Sub(created) < maxAge {
			return false, cur, nil
		}
	}
	// Only from the generation found old: a replica that read it before
	// another rotated must not rotate again.
	gen, won, err := t.keys.rotate(ctx, tenant, cur)
	if err != nil {
		return false, 0, err
	}
	return won, gen, nil
}

// Generations lists tenant's generations, oldest first. A tenant with no
// keys is ErrNotFound. Whether a generation is destroyed is the
// KeyManager's word as much as the store's: one whose KEK is gone is
// destroyed even if the store still holds its wrapped key and no marker
// (a restored backup), so it costs one KeyManager call (KEKs).
func (t *Tokenizer) Generations(ctx context.Context, tenant string) ([]GenerationInfo, error) {
	if err := validateName("tenant", tenant); err != nil {
		return nil, &UserError{err}
	}
	cur, ok, err := t.keys.readCurrent(ctx, tenant)
	if err != nil {
		return nil, err
	}
	if !ok {
		return nil, ErrNotFound
	}
	names := make([]string, 0, 2*cur)
	for g := uint32(1); g <= cur; g++ {
		names = append(names, genName(tenant, g), destroyedName(tenant, g))
	}
	vals, err := t.store.Get(ctx, names)
	if err != nil {
		return nil, unavailable("store", err)
	}
	live, err := t.keys.liveKEKs(ctx, tenant)
	if err != nil {
		return nil, err
	}
	out := make([]GenerationInfo, 0, cur)
	for g := uint32(1); g <= cur; g++ {
		blob, marker := vals[2*(g-1)], vals[2*(g-1)+1]
		gi := GenerationInfo{Generation: g, Current: g == cur}
		if blob != nil {
			kb, err := parseKeyBlob(blob)
			if err != nil {
				return nil, err
			}
			gi.Created, gi.OwnKEK, gi.Bound = kb.created, kb.version != keyBlobVersion1, kb.bound()
		}
		// No blob and no marker: destroyed before markers existed. A
		// generation with a KEK of its own that the KeyManager no longer
		// holds is destroyed, whatever the store says.
		if marker != nil || blob == nil || (gi.OwnKEK && !live[g]) {
			gi.Destroyed, gi.DestroyedAt = true, parseMarker(marker)
		}
		out = append(out, gi)
	}
	return out, nil
}

// DestroyGeneration crypto-shreds generation gen of tenant: every record
// sealed under it becomes unrecoverable, from the live store and from any
// backup of it, because the generation's KEK is destroyed in the
// KeyManager, and with it the generation's deterministic-token key: its
// deterministic tokens can no longer be recomputed or matched. The KEK is
// the one keyID computes for (tenant, gen), whatever the store holds. It
// refuses the current generation (a UserError) and, as a UserError too, a
// generation that stopped being current less than twice KeyRefresh ago,
// since another replica may still be writing records under it (see
// superseded). An unknown tenant or generation is ErrNotFound. Destroying
// a destroyed generation again finishes whatever an interrupted call left.
//
// The steps run in an order that a crash at any point leaves safe:
//  1. store the destroyed marker: every replica stops opening the
//     generation's records within KeyRefresh, and this one at once;
//  2. destroy the generation's KEK in the KeyManager: the wrapped DEK, in
//     the store and in backups, can never be unwrapped again;
//  3. delete the wrapped DEK from the store.
//
// After step 1 the generation reads as destroyed, so it never looks live
// while it cannot open. Rewrap writes a wrapped DEK back only if it still
// exists (Store.PutExisting), so it cannot bring one back after step 3.
func (t *Tokenizer) DestroyGeneration(ctx context.Context, tenant string, gen uint32) error {
	if err := validateName("tenant", tenant); err != nil {
		return &UserError{err}
	}
	cur, ok, err := t.keys.readCurrent(ctx, tenant)
	if err != nil {
		return err
	}
	if !ok || gen == 0 || gen > cur {
		return fmt.Errorf("tokenizer: tenant %s has no generation %d: %w", tenant, gen, ErrNotFound)
	}
	if gen == cur {
		return &UserError{fmt.Errorf("tokenizer: generation %d is tenant %s's current generation; rotate first", gen, tenant)}
	}
	if err := t.superseded(ctx, tenant, gen, cur); err != nil {
		return err
	}
	vals, err := t.store.Get(ctx, []string{destroyedName(tenant, gen)})
	if err != nil {
		return unavailable("store", err)
	}
	marker := vals[0]
	// Never read from the stored blob: the store does not choose the key.
	kek := dekKeyID(tenant, gen).kek()
	if marker == nil {
		if _, err := t.store.PutNew(ctx, []Entry{{Key: destroyedName(tenant, gen), Value: markerBlob(t.now())}}); err != nil {
			return unavailable("store", err)
		}
	}
	if tk := t.keys.cached(tenant); tk != nil {
		t.keys.evict(tk, gen)
	}
	// A generation from before per-generation KEKs has none in the
	// KeyManager; destroying an absent KEK succeeds.
	if err := t.keys.km.DestroyKEK(ctx, kek); err != nil {
		return unavailable("key manager", err)
	}
	if _, err := t.store.Delete(ctx, []string{genName(tenant, gen)}); err != nil {
		return unavailable("store", err)
	}
	return nil
}

// superseded returns nil when generation gen of tenant stopped being
// current long enough ago that no replica still writes to it: the first
// live generation after it was created at least twice KeyRefresh ago. It
// trusts nothing of the store that a KeyManager does not vouch for: that
// generation must unwrap, and its creation time is the one its key blob
// binds. A forged destroyed marker, or a key blob of a generation that
// never was, does not count as a successor; a generation stored before
// creation times were bound must be rewrapped first.
func (t *Tokenizer) superseded(ctx context.Context, tenant string, gen, cur uint32) error {
	tk, err := t.keys.tenant(ctx, tenant, false)
	if err != nil {
		return err
	}
	for g := gen + 1; g <= cur; g++ {
		next, err := t.keys.genKeys(ctx, tk, g)
		if errors.Is(err, ErrKeyDestroyed) {
			continue
		}
		if err != nil {
			return err
		}
		if !next.createdBound {
			return &UserError{fmt.Errorf("tokenizer: generation %d of tenant %s was stored before creation times were "+
				"authenticated; run a rewrap, then destroy generation %d (after a rewrap, replicas see the "+
				"rewrapped key within their key refresh interval)", g, tenant, gen)}
		}
		// Zero: made before generations kept a creation time, long ago.
		if wait := next.created.Add(2 * t.keys.refresh).Sub(t.now()); !next.created.IsZero() && wait > 0 {
			return &UserError{fmt.Errorf("tokenizer: generation %d of tenant %s stopped being current "+
				"too recently; replicas may still write to it; retry in %s", gen, tenant, wait.Round(time.Second))}
		}
		return nil
	}
	return &UserError{fmt.Errorf("tokenizer: no live generation of tenant %s follows generation %d; rotate first", tenant, gen)}
}

// RewrapProgress counts the keys a Rewrap has handled.
type RewrapProgress struct {
	// Done of Total keys are handled; Total is known before the first.
	Done, Total int
	// Rewrapped keys now sit under their KEK's newest version, bound to
	// their identity.
	Rewrapped int
	// Upgraded counts the Rewrapped keys that were stored unbound (key
	// blob version 1 or 2) or with an unbound creation time (version 3)
	// and are now bound to both (version 4); those of version 1 also
	// moved from the main KEK to their generation's own.
	Upgraded int
	// Skipped keys belong to destroyed generations, or were wrapped under
	// a KEK version that has been retired, and were left as they are.
	Skipped int
}

// Rewrap re-wraps the service's own root key (if any) and every stored key
// of the tenants (root key and each generation's DEK) under the newest
// version of its KEK, after custodians rotated KEKs in the KeyManager. No
// record is re-encrypted. Each key is unwrapped as its identity says
// (keyID.opener) and wrapped anew, bound to that identity: this is also
// how keys stored before binding are upgraded. (Vault's transit/rewrap
// cannot do this: in Vault 1.21 it ignores associated_data, so it can
// neither rewrap a bound key nor bind an unbound one.)
//
// It never brings back a destroyed generation, even one destroyed while it
// runs. progress, if not nil, is called after each key. A tenant with no
// keys counts nothing. The error is non-nil when a backend failed or a
// stored key does not open under its identity (ErrKeyMismatch); the keys
// rewrapped by then stay rewrapped, and running Rewrap again is safe.
func (t *Tokenizer) Rewrap(ctx context.Context, tenants []string, progress func(RewrapProgress)) (RewrapProgress, error) {
	type target struct {
		id     keyID
		marker string
	}
	var todo []target
	sys, err := t.store.Get(ctx, []string{rootName(systemKeyring)})
	if err != nil {
		return RewrapProgress{}, unavailable("store", err)
	}
	if sys[0] != nil {
		todo = append(todo, target{id: rootKeyID(systemKeyring)})
	}
	for _, tn := range tenants {
		if err := validateName("tenant", tn); err != nil {
			return RewrapProgress{}, &UserError{err}
		}
		cur, ok, err := t.keys.readCurrent(ctx, tn)
		if err != nil {
			return RewrapProgress{}, err
		}
		if !ok {
			continue
		}
		todo = append(todo, target{id: rootKeyID(tn)})
		for g := uint32(1); g <= cur; g++ {
			todo = append(todo, target{id: dekKeyID(tn, g), marker: destroyedName(tn, g)})
		}
	}
	p := RewrapProgress{Total: len(todo)}
	for _, tg := range todo {
		res, err := t.rewrapOne(ctx, tg.id, tg.marker)
		if err != nil {
			return p, err
		}
		p.Done++
		switch res {
		case rewrapSkipped:
			p.Skipped++
		case rewrapUpgraded:
			p.Upgraded++
			p.Rewrapped++
		default:
			p.Rewrapped++
		}
		if progress != nil {
			progress(p)
		}
	}
	return p, nil
}

type rewrapResult int

const (
	rewrapSkipped rewrapResult = iota
	rewrapDone
	rewrapUpgraded
)

// rewrapOne rewraps the key id, unless it is absent, its marker says
// destroyed, or its KEK version is retired.
func (t *Tokenizer) rewrapOne(ctx context.Context, id keyID, marker string) (rewrapResult, error) {
	names := []string{id.storeName()}
	if marker != "" {
		names = append(names, marker)
	}
	vals, err := t.store.Get(ctx, names)
	if err != nil {
		return 0, unavailable("store", err)
	}
	if vals[0] == nil || (marker != "" && vals[1] != nil) {
		return rewrapSkipped, nil
	}
	blob, err := parseKeyBlob(vals[0])
	if err != nil {
		return 0, fmt.Errorf("%w: %s: %w", ErrUnavailable, id, err)
	}
	key, err := t.keys.unwrap(ctx, id, blob)
	if errors.Is(err, ErrKeyDestroyed) {
		return rewrapSkipped, nil
	}
	if err != nil {
		return 0, err
	}
	created := blob.created
	if !blob.createdBound() && created.After(t.now()) {
		// Bound from now on: never an unauthenticated time in the future.
		created = t.now()
	}
	re, err := t.keys.wrap(ctx, id, key, created)
	clear(key)
	if err != nil {
		return 0, err
	}
	// Only over a key that still exists: a DestroyGeneration that deleted
	// it since the Get above must stay done.
	stored, err := t.store.PutExisting(ctx, []Entry{{Key: id.storeName(), Value: re}})
	if err != nil {
		return 0, unavailable("store", err)
	}
	if tk := t.keys.cached(id.tenant); tk != nil && id.purpose == purposeDEK {
		// This replica reads the new blob at its next use; others within
		// KeyRefresh.
		t.keys.evict(tk, id.gen)
	}
	switch {
	case !stored[0]:
		return rewrapSkipped, nil
	case !blob.createdBound():
		return rewrapUpgraded, nil
	}
	return rewrapDone, nil
}
