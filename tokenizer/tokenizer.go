// Package tokenizer is jeton's domain: field classes, tokens, record
// envelopes and the keyring of data-key generations. It defines the Store
// and KeyManager it needs; adapters in sub-packages implement them.
//
// Invariants kept here:
//   - A random token carries 128 bits from the injected reader (crypto/rand
//     by default); a deterministic token is a MAC under a key of one key
//     generation of the tenant, which dies with that generation.
//   - Store key names are keyed hashes; no token, value or unkeyed hash is
//     ever part of a key or a stored value.
//   - A record opens only under its own token, tenant and class.
//   - A record holds its value exactly as sent; only a deterministic
//     token's input is normalised. Its clear header says no more than
//     version, generation and class: flags are sealed, and the value is
//     padded to a size bucket.
package tokenizer

import (
	"cmp"
	"context"
	"crypto/hkdf"
	"crypto/rand"
	"crypto/sha256"
	"encoding/base64"
	"errors"
	"fmt"
	"io"
	"maps"
	"runtime"
	"slices"
	"strings"
	"sync"
	"time"
	"unicode/utf8"
)

// MaxSubjectLen bounds a data-subject id in bytes.
const MaxSubjectLen = 256

// Config configures a Tokenizer.
type Config struct {
	Classes []Class
	Keys    KeyManager
	Store   Store
	// Rand is the source of tokens, nonces and keys; crypto/rand if nil.
	Rand io.Reader
	// Now is the clock; time.Now if nil.
	Now func() time.Time
	// KeyRefresh bounds how long a replica trusts its cached view of a
	// tenant's current generation and of each wrapped DEK; 10s if zero.
	KeyRefresh time.Duration
	// Observer receives cache events for metrics; nil for none.
	Observer Observer
}

// Tokenizer mints tokens and reveals values. It is safe for concurrent use.
type Tokenizer struct {
	classes map[string]*Class
	order   []string
	store   Store
	rand    io.Reader
	now     func() time.Time
	keys    *keyring
}

// New validates cfg and returns a Tokenizer.
func New(cfg Config) (*Tokenizer, error) {
	if cfg.Keys == nil || cfg.Store == nil {
		return nil, errors.New("tokenizer: config needs a KeyManager and a Store")
	}
	if len(cfg.Classes) == 0 {
		return nil, errors.New("tokenizer: config needs at least one class")
	}
	t := &Tokenizer{classes: map[string]*Class{}, store: cfg.Store, rand: cfg.Rand, now: cfg.Now}
	if t.rand == nil {
		t.rand = rand.Reader
	}
	if t.now == nil {
		t.now = time.Now
	}
	for _, c := range cfg.Classes {
		if c.Kind == "" {
			c.Kind = KindRandom
		}
		if c.Mask == "" {
			c.Mask = "all"
		}
		if err := c.Validate(); err != nil {
			return nil, err
		}
		c.shaper, _ = c.Shape.compile() // Validate compiled it once already
		if _, dup := t.classes[c.Name]; dup {
			return nil, fmt.Errorf("tokenizer: class %s is defined twice", c.Name)
		}
		t.classes[c.Name] = &c
		t.order = append(t.order, c.Name)
	}
	if err := ValidateShapes(t.Classes()); err != nil {
		return nil, err
	}
	refresh := cfg.KeyRefresh
	if refresh <= 0 {
		refresh = 10 * time.Second
	}
	t.keys = &keyring{km: cfg.Keys, store: cfg.Store, rand: t.rand, now: t.now, refresh: refresh, obs: cfg.Observer, tenants: map[string]*tenantKeys{}}
	return t, nil
}

// Class returns a configured class by name.
func (t *Tokenizer) Class(name string) (Class, bool) {
	c, ok := t.classes[name]
	if !ok {
		return Class{}, false
	}
	return *c, true
}

// Classes returns the configured classes in configuration order.
func (t *Tokenizer) Classes() []Class {
	out := make([]Class, 0, len(t.order))
	for _, n := range t.order {
		out = append(out, *t.classes[n])
	}
	return out
}

// Item is one value to tokenize.
type Item struct {
	Class string
	Value string
	// Subject optionally names the data subject, for erasure by subject.
	Subject string
}

// Result is the outcome for one Item: a token, or an error that never
// quotes the value: a UserError (bad class or value), or ErrShapeExhausted
// (no free token of the class's shape left for the value).
type Result struct {
	Token string
	Err   error
}

// pending is an item on its way to becoming a stored record.
type pending struct {
	idx   int
	class *Class
	// value is the item's value as sent: what the record seals.
	value string
	// norm is its normalised form: what a deterministic token is minted
	// from. It is never stored.
	norm    string
	subject string
	ttl     time.Duration // the record's lifetime; see Class.RecordTTL
	tok     Token
	text    string
	name    string
	gen     uint32  // the generation the record is sealed under
	dek     *macKey // that generation's DEK
	// stored marks a random item whose record an earlier attempt of the
	// call wrote and that still opens: it is not written again.
	stored bool
	// claimed marks a random shaped item whose record this attempt stored
	// first, as its claim (claimShaped); refused, one that found no free
	// token in its shape.
	claimed, refused bool
}

// Tokenize mints a token for each item in tenant, creating the tenant's
// keys on first use. Per-item problems are reported in the results; the
// error is non-nil only when nothing could be done (ErrUnavailable when a
// backend is down), and then no token from the batch may be used.
//
// With a non-empty idempotencyKey, a retry of the same items under the same
// key returns the same random tokens instead of minting new ones
// (idempotency.go), and the same key with other items is refused with a
// UserError wrapping ErrIdempotencyKeyReused. Callers scope the key to the
// caller's identity.
//
// Records are created, never replaced: a deterministic value tokenized
// again keeps the record its first tokenization wrote (its value as first
// sent, its flags: a canary stays armed), and its retention is extended to
// run from the latest tokenization, never shortened, never past the
// class's RetainUntil.
func (t *Tokenizer) Tokenize(ctx context.Context, tenant string, items []Item, idempotencyKey string) ([]Result, error) {
	if err := validateName("tenant", tenant); err != nil {
		return nil, err
	}
	results, work := t.validate(items)
	if len(work) == 0 {
		return results, nil
	}
	tk, cur, err := t.currentGen(ctx, tenant)
	if err != nil {
		return nil, err
	}
	// Randomness is read in one go: the seed of the call's random tokens,
	// then a nonce per item.
	random := make([]byte, seedSize+len(work)*nonceSize)
	if _, err := io.ReadFull(t.rand, random); err != nil {
		return nil, fmt.Errorf("tokenizer: reading randomness: %w", err)
	}
	seed, nonces := random[:seedSize], random[seedSize:]
	// A call of deterministic items alone needs no idempotency entry:
	// every attempt gets the same tokens and writes the same records.
	if idempotencyKey == "" || !slices.ContainsFunc(work, func(p pending) bool { return p.class.Kind == KindRandom }) {
		err = t.tokenizeOnce(ctx, tk, cur, work, &callEntry{seed: [seedSize]byte(seed)}, nonces)
	} else {
		err = t.tokenizeKeyed(ctx, tk, cur, work, items, idempotencyKey, seed, nonces)
	}
	if err != nil {
		return nil, err
	}
	for _, p := range work {
		if p.refused {
			results[p.idx].Err = ErrShapeExhausted
		} else {
			results[p.idx].Token = p.text
		}
	}
	return results, nil
}

// validate checks each item and returns the results of the bad ones and
// the work of the good ones.
func (t *Tokenizer) validate(items []Item) ([]Result, []pending) {
	results := make([]Result, len(items))
	work := make([]pending, 0, len(items))
	now := t.now()
	for i, it := range items {
		c, ok := t.classes[it.Class]
		if !ok {
			results[i].Err = &UserError{ErrUnknownClass}
			continue
		}
		ttl, err := c.RecordTTL(now)
		if err != nil {
			results[i].Err = err
			continue
		}
		n, err := c.NormalizeValue(it.Value)
		if err != nil {
			results[i].Err = err
			continue
		}
		if len(it.Subject) > MaxSubjectLen || !utf8.ValidString(it.Subject) {
			results[i].Err = &UserError{fmt.Errorf("%w: subject id is too long or not UTF-8", ErrInvalidValue)}
			continue
		}
		work = append(work, pending{idx: i, class: c, value: it.Value, norm: n, subject: it.Subject, ttl: ttl})
	}
	return results, work
}

// tokenizeOnce mints the tokens of a call without idempotency key and
// stores their records.
func (t *Tokenizer) tokenizeOnce(ctx context.Context, tk *tenantKeys, cur *genKeys, work []pending, e *callEntry, nonces []byte) error {
	older, err := t.mint(ctx, tk, cur, work, e)
	if err != nil {
		return err
	}
	err = t.claimShaped(ctx, tk, work, nonces, func(idx []int) error {
		for _, i := range idx {
			var fresh [tokenPayloadLen]byte
			if _, err := io.ReadFull(t.rand, fresh[:]); err != nil {
				return fmt.Errorf("tokenizer: reading randomness: %w", err)
			}
			if err := work[i].setToken(tk, fresh); err != nil {
				return err
			}
		}
		return nil
	})
	if err != nil {
		return err
	}
	if err := t.write(ctx, tk, work, nonces); err != nil {
		return err
	}
	return t.checkNotDestroyed(ctx, tk, older)
}

// tokenizeKeyed is Tokenize under an idempotency key: claim, mint, check
// what an earlier attempt left, store, complete (idempotency.go).
func (t *Tokenizer) tokenizeKeyed(ctx context.Context, tk *tenantKeys, cur *genKeys, work []pending, items []Item, key string, seed, nonces []byte) error {
	c := newIdemCall(tk, key, items)
	e, fresh, err := t.claim(ctx, c, len(items), seed)
	if err != nil {
		return err
	}
	for round := 0; ; round++ {
		if round == maxCallRounds {
			return fmt.Errorf("%w: the idempotency entry keeps changing under concurrent attempts", ErrUnavailable)
		}
		older, err := t.mint(ctx, tk, cur, work, e)
		if err != nil {
			return err
		}
		if !fresh {
			// Records an earlier attempt wrote are kept; gone ones are
			// written again (pending) or reminted (done).
			next, err := t.inspect(ctx, tk, work, e)
			if err != nil {
				return err
			}
			if next != nil {
				ok, err := t.swap(ctx, c, e, next)
				if err != nil {
					return err
				}
				if !ok {
					if e, fresh, err = t.current(ctx, c, len(items), seed); err != nil {
						return err
					}
					continue
				}
				e = next
			}
		}
		// Shaped tokens can collide: one whose name another value holds
		// is reminted, the entry recording its new payload before its
		// record is claimed.
		err = t.claimShaped(ctx, tk, work, nonces, func(idx []int) error {
			next := e.remint()
			for _, i := range idx {
				var fresh [tokenPayloadLen]byte
				if _, err := io.ReadFull(t.rand, fresh[:]); err != nil {
					return fmt.Errorf("tokenizer: reading randomness: %w", err)
				}
				next.reminted[work[i].idx] = fresh
			}
			ok, err := t.swap(ctx, c, e, next)
			if err != nil {
				return err
			}
			if !ok {
				return errEntryMoved
			}
			e = next
			for _, i := range idx {
				if err := work[i].setToken(tk, next.reminted[work[i].idx]); err != nil {
					return err
				}
			}
			return nil
		})
		if errors.Is(err, errEntryMoved) {
			if e, fresh, err = t.current(ctx, c, len(items), seed); err != nil {
				return err
			}
			continue
		}
		if err != nil {
			return err
		}
		if err := t.write(ctx, tk, work, nonces); err != nil {
			return err
		}
		if err := t.checkNotDestroyed(ctx, tk, older); err != nil {
			return err
		}
		if e.done {
			return nil
		}
		done := &callEntry{done: true, seed: e.seed, reminted: e.reminted, sealed: e.sealed}
		ok, err := t.swap(ctx, c, e, done)
		if err != nil || ok {
			return err
		}
		// Another attempt changed the entry first. If it completed the
		// same tokens, so be it; if it reminted some (their records were
		// erased after the call completed), the records this attempt wrote
		// for them are stale: take them back and go again.
		now, err := t.reread(ctx, c, len(items))
		if err != nil || now == nil || now.sameTokens(e) {
			return err
		}
		if err := t.dropStale(ctx, work, e, now); err != nil {
			return err
		}
		e, fresh = now, false
	}
}

// errEntryMoved reports that another attempt changed the call's entry
// first; the attempt starts its round again from the entry as stored.
var errEntryMoved = errors.New("tokenizer: idempotency entry changed")

// remint returns a pending copy of e to which fresh payloads are added.
func (e *callEntry) remint() *callEntry {
	next := &callEntry{seed: e.seed, reminted: maps.Clone(e.reminted)}
	if next.reminted == nil {
		next.reminted = map[int][tokenPayloadLen]byte{}
	}
	return next
}

// current returns the call's entry as now stored, claiming it again if it
// has vanished.
func (t *Tokenizer) current(ctx context.Context, c *idemCall, items int, seed []byte) (*callEntry, bool, error) {
	e, err := t.reread(ctx, c, items)
	if err != nil {
		return nil, false, err
	}
	if e == nil {
		return t.claim(ctx, c, items, seed)
	}
	return e, false, nil
}

// mint gives each item of work its token and record name: a random item
// the token e draws for it, a deterministic one its MAC, or the token a
// live older generation already holds a record of (deterministic.go),
// whose generations it returns for checkNotDestroyed.
func (t *Tokenizer) mint(ctx context.Context, tk *tenantKeys, cur *genKeys, work []pending, e *callEntry) ([]uint32, error) {
	stream, err := drawTokens(e.seed[:], work[len(work)-1].idx+1)
	if err != nil {
		return nil, err
	}
	var (
		mu      sync.Mutex
		mintErr error
	)
	parallel(len(work), func(lo, hi int) {
		for i := lo; i < hi; i++ {
			p := &work[i]
			p.gen, p.dek, p.stored, p.claimed, p.refused = cur.gen, cur.dek, false, false, false
			var payload [tokenPayloadLen]byte
			switch reminted, ok := e.reminted[p.idx]; {
			case p.class.Kind == KindDeterministic:
				payload = deterministicPayload(cur.det, p.class.Name, p.norm)
			case ok:
				payload = reminted
			default:
				payload = [tokenPayloadLen]byte(stream[p.idx*tokenPayloadLen:])
			}
			if err := p.setToken(tk, payload); err != nil {
				mu.Lock()
				mintErr = cmp.Or(mintErr, err)
				mu.Unlock()
			}
		}
	})
	if mintErr != nil {
		return nil, mintErr
	}
	return t.adoptOlderDeterministic(ctx, tk, cur.gen, work)
}

// setToken gives p the token of payload and its record name. A random
// shaped class's token is drawn from a stream keyed by payload
// (shapeStream), so every attempt of a call draws the same one.
func (p *pending) setToken(tk *tenantKeys, payload [tokenPayloadLen]byte) error {
	sh := p.class.shapeOf()
	if p.class.Kind == KindRandom && sh != nil {
		text, err := sh.mint(shapeStream(payload), p.value)
		if err != nil {
			return err
		}
		p.tok = Token{Class: p.class.Name, Tenant: tk.name, Version: tokenVersion1, Shaped: text}
	} else {
		p.tok = newToken(p.class, tk.name, payload)
	}
	p.text = p.tok.String()
	p.name = recordName(tk, p.text)
	return nil
}

// inspect reads the records an earlier attempt of the call may have
// written for its random items. One that exists and whose generation is
// live is kept (marked stored). One that is missing is written again if
// the entry is pending, since its token was never acknowledged; if the
// entry is done, the record was erased or expired, and the item gets a
// fresh token, as does one whose generation was destroyed. It returns the
// entry with those fresh tokens, nil if there are none.
func (t *Tokenizer) inspect(ctx context.Context, tk *tenantKeys, work []pending, e *callEntry) (*callEntry, error) {
	var idx []int
	var names []string
	for i, p := range work {
		if p.class.Kind == KindRandom {
			idx = append(idx, i)
			names = append(names, p.name)
		}
	}
	if len(names) == 0 {
		return nil, nil
	}
	blobs, err := t.store.Get(ctx, names)
	if err != nil {
		return nil, unavailable("store", err)
	}
	var next *callEntry
	for j, i := range idx {
		p := &work[i]
		dead := blobs[j] == nil && e.done
		if blobs[j] != nil {
			// Kept only if it is this item's record and still opens: not
			// one of a destroyed generation (its token would reveal
			// nothing), nor another value's that drew the same shaped token.
			ok, err := t.holdsValue(ctx, tk, p, blobs[j])
			if err != nil {
				return nil, err
			}
			p.stored, dead = ok, !ok
		}
		if !dead {
			continue
		}
		if next == nil {
			next = e.remint()
		}
		var fresh [tokenPayloadLen]byte
		if _, err := io.ReadFull(t.rand, fresh[:]); err != nil {
			return nil, fmt.Errorf("tokenizer: reading randomness: %w", err)
		}
		next.reminted[p.idx] = fresh
		if err := p.setToken(tk, fresh); err != nil {
			return nil, err
		}
		p.stored = false
	}
	return next, nil
}

// dropStale deletes the records this attempt wrote under tokens of e that
// now, the entry as another attempt left it, has replaced.
func (t *Tokenizer) dropStale(ctx context.Context, work []pending, e, now *callEntry) error {
	var stale []string
	for _, p := range work {
		if p.class.Kind != KindRandom || p.stored {
			continue
		}
		if mine, ok := e.reminted[p.idx]; ok {
			if theirs, ok := now.reminted[p.idx]; !ok || theirs != mine {
				stale = append(stale, p.name)
			}
		} else if _, ok := now.reminted[p.idx]; ok || now.seed != e.seed {
			stale = append(stale, p.name)
		}
	}
	if len(stale) == 0 {
		return nil
	}
	if _, err := t.store.Delete(ctx, stale); err != nil {
		return unavailable("store", err)
	}
	return nil
}

// write seals and stores the records of work that are not marked stored,
// with the call's additions to subject indexes. Random records are
// created; deterministic ones are created or, when present, kept with
// their lifetime extended (Store.Write). Large batches go in chunks,
// each chunk stored while the next one is sealed, so that the store's
// round trip and the crypto overlap; the subject indexes go with the
// first chunk.
func (t *Tokenizer) write(ctx context.Context, tk *tenantKeys, work []pending, nonces []byte) error {
	var (
		wg   sync.WaitGroup
		mu   sync.Mutex
		werr error
		sem  = make(chan struct{}, maxPutsInFlight)
	)
	sets := subjectAdds(tk, work)
	for lo := 0; lo < len(work); lo += putChunk {
		chunk := work[lo:min(lo+putChunk, len(work))]
		blobs := make([][]byte, len(chunk))
		parallel(len(chunk), func(a, b int) {
			for i := a; i < b; i++ {
				if p := &chunk[i]; !p.stored && !p.claimed && !p.refused {
					j := lo + i
					blobs[i], _ = sealRecordMAC(p.dek, nonces[j*nonceSize:(j+1)*nonceSize], p.gen, 0, p.tok, p.text, p.value)
				}
			}
		})
		var w Write
		if lo == 0 {
			w.Sets = sets
		}
		for i := range chunk {
			p := &chunk[i]
			if p.stored || p.claimed || p.refused {
				continue
			}
			if blobs[i] == nil {
				wg.Wait()
				return errors.New("tokenizer: sealing a record failed")
			}
			e := Entry{Key: p.name, Value: blobs[i], TTL: p.ttl}
			if p.class.Kind == KindDeterministic {
				w.Keep = append(w.Keep, e)
			} else {
				w.Create = append(w.Create, e)
			}
		}
		if len(w.Create)+len(w.Keep)+len(w.Sets) == 0 {
			continue
		}
		store := func() {
			if err := t.store.Write(ctx, w); err != nil {
				mu.Lock()
				werr = cmp.Or(werr, err)
				mu.Unlock()
			}
		}
		if lo+putChunk >= len(work) {
			store() // the last chunk: nothing left to overlap with
			break
		}
		sem <- struct{}{}
		wg.Go(func() {
			defer func() { <-sem }()
			store()
		})
	}
	wg.Wait()
	if werr != nil {
		return unavailable("store", werr)
	}
	return nil
}

// subjectAdds groups the record names of work by data subject. An index
// lives as long as its longest-lived member (zero: permanent wins); a
// set addition only ever extends it.
//
// It allocates per call, not per item: the members are slices of one
// string, the member lists slices of one array, and a subject's index is
// named once (items of one subject usually come together, so those skip
// the map).
func subjectAdds(tk *tenantKeys, work []pending) []SetAdd {
	// The runs of items of one subject bound the number of subjects.
	runs, last := 0, ""
	for _, p := range work {
		if p.subject != "" && !p.refused && p.subject != last {
			runs++
			last = p.subject
		}
	}
	if runs == 0 {
		return nil
	}
	adds := make([]subjectAdd, 0, runs)
	counts := make([]int, 0, runs)
	at := make(map[string]int32, runs) // by subject: its index is named once per call
	group := make([]int32, len(work))
	members := 0
	prev := int32(-1)
	for k, p := range work {
		if p.subject == "" || p.refused {
			group[k] = -1
			continue
		}
		i := prev
		if i < 0 || adds[i].subject != p.subject {
			var seen bool
			if i, seen = at[p.subject]; !seen {
				i = int32(len(adds))
				at[p.subject] = i
				adds = append(adds, subjectAdd{SetAdd: SetAdd{Key: subjectName(tk, p.subject), TTL: p.ttl}, subject: p.subject})
				counts = append(counts, 0)
			}
		}
		a := &adds[i]
		if counts[i] > 0 && a.TTL != 0 && (p.ttl == 0 || p.ttl > a.TTL) {
			a.TTL = p.ttl
		}
		counts[i]++
		group[k], prev = i, i
		members++
	}
	var raw strings.Builder
	raw.Grow(members * recordHashLen)
	for k, p := range work {
		if group[k] >= 0 {
			var m [recordHashLen]byte
			raw.Write(appendSubjectMember(m[:0], tk, p.name))
		}
	}
	all := raw.String()
	lists := make([]string, members)
	out := make([]SetAdd, len(adds))
	off := 0
	for i, a := range adds {
		out[i] = a.SetAdd
		out[i].Members = lists[off : off : off+counts[i]]
		off += counts[i]
	}
	j := 0
	for k := range work {
		if g := group[k]; g >= 0 {
			out[g].Members = append(out[g].Members, all[j*recordHashLen:(j+1)*recordHashLen])
			j++
		}
	}
	return out
}

// subjectAdd is a SetAdd while subjectAdds builds it, with its subject.
type subjectAdd struct {
	SetAdd
	subject string
}

// Large batches are stored in chunks of putChunk records, at most
// maxPutsInFlight of them at once.
const (
	putChunk        = 256
	maxPutsInFlight = 4
)

// parallelMin is the batch size from which per-item crypto is spread over
// the available cores.
const parallelMin = 256

// parallel runs fn over [0, n) in contiguous chunks, one per core, when n
// is large enough to pay for the goroutines.
func parallel(n int, fn func(lo, hi int)) {
	workers := runtime.GOMAXPROCS(0)
	if n < parallelMin || workers < 2 {
		fn(0, n)
		return
	}
	var wg sync.WaitGroup
	chunk := (n + workers - 1) / workers
	for lo := 0; lo < n; lo += chunk {
		wg.Add(1)
		go func(lo, hi int) {
			defer wg.Done()
			fn(lo, hi)
		}(lo, min(lo+chunk, n))
	}
	wg.Wait()
}

// currentGen returns the tenant's keys, creating them on first use, and
// the keys of its current generation. A destroyed current generation (a
// store restored from a backup taken before a rotation) is an outage to
// fix by rotating, not a missing token.
func (t *Tokenizer) currentGen(ctx context.Context, tenant string) (*tenantKeys, *genKeys, error) {
	tk, err := t.keys.tenant(ctx, tenant, true)
	if err != nil {
		return nil, nil, err
	}
	tk.mu.Lock()
	gen := tk.current // rotate and refreshCurrent write it under tk.mu
	tk.mu.Unlock()
	keys, err := t.keys.genKeys(ctx, tk, gen)
	if errors.Is(err, ErrKeyDestroyed) {
		return nil, nil, fmt.Errorf("%w: tenant %s: current generation %d: %w; rotate to a new one", ErrUnavailable, tenant, gen, ErrKeyDestroyed)
	}
	if err != nil {
		return nil, nil, err
	}
	return tk, keys, nil
}

// Revealed is the outcome of revealing one token. Err is ErrNotFound for
// every token that cannot be revealed, whatever the reason.
type Revealed struct {
	Token      Token
	Value      string
	Flags      Flags
	Generation uint32
	Err        error
}

// Reveal opens the records of already parsed tokens. Authorisation is the
// caller's job: pass only the tokens the caller may see. The error is
// non-nil only when nothing could be done, and then no value may be used.
func (t *Tokenizer) Reveal(ctx context.Context, tokens []Token) ([]Revealed, error) {
	return t.RevealWith(ctx, tokens, func(ctx context.Context, names []string) ([][]byte, error) {
		blobs, err := t.store.Get(ctx, names)
		if err != nil {
			return nil, unavailable("store", err)
		}
		return blobs, nil
	})
}

// RevealWith is Reveal with the records read by read instead of the
// Store's Get, so that a caller can send the read in a round trip of its
// own, with a check that must pass before anything is opened. read is
// called at most once, with the store names of the records, before any
// record is opened; it returns their values as Store.Get does, or an
// error that RevealWith returns as it is, having opened nothing. It is not
// called when no token names a record that could exist (an unknown
// tenant or class).
func (t *Tokenizer) RevealWith(ctx context.Context, tokens []Token, read func(ctx context.Context, names []string) ([][]byte, error)) ([]Revealed, error) {
	out := make([]Revealed, len(tokens))
	names := make([]string, 0, len(tokens))
	texts := make([]string, len(tokens))
	idx := make([]int, 0, len(tokens))
	tenants := map[string]*tenantKeys{}
	for i, tok := range tokens {
		out[i].Token = tok
		out[i].Err = ErrNotFound
		if _, ok := t.classes[tok.Class]; !ok {
			continue
		}
		tk, seen := tenants[tok.Tenant]
		if !seen {
			var err error
			tk, err = t.keys.tenant(ctx, tok.Tenant, false)
			if err != nil && !errors.Is(err, ErrNotFound) {
				return nil, err
			}
			tenants[tok.Tenant] = tk
		}
		if tk == nil {
			continue
		}
		texts[i] = tok.String()
		names = append(names, recordName(tk, texts[i]))
		idx = append(idx, i)
	}
	if len(names) == 0 {
		return out, nil
	}
	blobs, err := read(ctx, names)
	if err != nil {
		return nil, err
	}
	if len(blobs) != len(names) {
		return nil, fmt.Errorf("%w: store: %d values read for %d records", ErrUnavailable, len(blobs), len(names))
	}
	// The key of each record, looked up once per tenant and generation:
	// this is where the key manager can fail the whole call.
	keys := make([]revealKey, len(idx))
	var known []revealKey
	for j, i := range idx {
		if blobs[j] == nil {
			continue
		}
		h, err := scanEnvelopeHeader(blobs[j])
		if err != nil {
			continue
		}
		k := revealKey{tk: tenants[tokens[i].Tenant], gen: h.gen}
		if at := slices.IndexFunc(known, k.same); at >= 0 {
			k.dek = known[at].dek
		} else {
			if k.dek, err = t.keys.dek(ctx, k.tk, k.gen); err != nil && !errors.Is(err, ErrKeyDestroyed) {
				return nil, err
			}
			known = append(known, k)
		}
		keys[j] = k // a nil dek: destroyed, so unknown
	}
	// Then the records, spread over the cores for a large batch.
	parallel(len(idx), func(lo, hi int) {
		for j := lo; j < hi; j++ {
			if keys[j].dek == nil {
				continue
			}
			i := idx[j]
			v, flags, err := openRecordMAC(keys[j].dek, tokens[i], texts[i], blobs[j])
			if err != nil {
				continue // tampered or swapped: indistinguishable from unknown
			}
			out[i] = Revealed{Token: tokens[i], Value: v, Flags: flags, Generation: keys[j].gen}
		}
	})
	return out, nil
}

// revealKey is the data key of a tenant's generation, as Reveal looked it
// up: nil when the generation is destroyed.
type revealKey struct {
	tk  *tenantKeys
	gen uint32
	dek *macKey
}

func (k revealKey) same(o revealKey) bool { return k.tk == o.tk && k.gen == o.gen }

// EraseTokens deletes the records behind tokens and reports how many
// existed.
func (t *Tokenizer) EraseTokens(ctx context.Context, tokens []Token) (int, error) {
	var names []string
	for _, tok := range tokens {
		tk, err := t.keys.tenant(ctx, tok.Tenant, false)
		if errors.Is(err, ErrNotFound) {
			continue
		}
		if err != nil {
			return 0, err
		}
		names = append(names, recordName(tk, tok.String()))
	}
	if len(names) == 0 {
		return 0, nil
	}
	n, err := t.store.Delete(ctx, names)
	if err != nil {
		return 0, unavailable("store", err)
	}
	return n, nil
}

// EraseSubject deletes every record indexed under a data subject of tenant
// and the index itself, and reports how many records existed.
func (t *Tokenizer) EraseSubject(ctx context.Context, tenant, subject string) (int, error) {
	tk, err := t.keys.tenant(ctx, tenant, false)
	if errors.Is(err, ErrNotFound) {
		return 0, nil
	}
	if err != nil {
		return 0, err
	}
	index, legacy := subjectName(tk, subject), legacySubjectName(tk, subject)
	members, err := t.store.SetMembers(ctx, index)
	if err != nil {
		return 0, unavailable("store", err)
	}
	names := make([]string, 0, len(members))
	for _, m := range members {
		if len(m) == recordHashLen {
			names = append(names, recordPrefix(tk.name)+base64.RawURLEncoding.EncodeToString([]byte(m)))
		}
	}
	old, err := t.store.SetMembers(ctx, legacy)
	if err != nil {
		return 0, unavailable("store", err)
	}
	names = append(names, old...)
	n := 0
	if len(names) > 0 {
		if n, err = t.store.Delete(ctx, names); err != nil {
			return 0, unavailable("store", err)
		}
	}
	if _, err := t.store.Delete(ctx, []string{index, legacy}); err != nil {
		return 0, unavailable("store", err)
	}
	return n, nil
}

// The store names of records, subjects and idempotency entries are keyed
// hashes under the tenant's index key, truncated to 160 bits
// (recordHashLen bytes).
func recordName(tk *tenantKeys, tokText string) string {
	// One allocation: the name is built in a Builder sized for it.
	var sum [sha256.Size]byte
	var enc [32]byte
	h := tk.index.mac(sum[:0], "record", "\x00", tokText)[:recordHashLen]
	var b strings.Builder
	b.Grow(len(recordSpace) + len(tk.name) + 1 + base64.RawURLEncoding.EncodedLen(recordHashLen))
	b.WriteString(recordSpace)
	b.WriteString(tk.name)
	b.WriteByte(':')
	b.Write(base64.RawURLEncoding.AppendEncode(enc[:0], h))
	return b.String()
}

// recordSpace starts every record's name; recordPrefix adds the tenant.
const recordSpace = "jeton:r:"

// recordHashLen is the length of the keyed hash that names a record.
const recordHashLen = 20

// subjectName names a data subject's index: a set whose members are the
// keyed hashes that name its records, as bytes (recordHashLen of them,
// where the record's name holds them in base64), so a member costs the
// store 20 bytes, not the 40 of a whole record name.
func subjectName(tk *tenantKeys, subject string) string {
	var buf [96]byte // one allocation, for the name itself
	return string(appendKeyedName(append(buf[:0], subjectPrefix(tk.name)...), tk.index, "subject-index", subject))
}

// subjectMember is the member that stands for a record in its subject's
// index: the keyed hash in its name, as bytes.
func subjectMember(tk *tenantKeys, recordName string) string {
	return string(appendSubjectMember(nil, tk, recordName))
}

// appendSubjectMember appends subjectMember(tk, recordName) to dst.
func appendSubjectMember(dst []byte, tk *tenantKeys, recordName string) []byte {
	enc, ok := strings.CutPrefix(recordName, recordPrefix(tk.name))
	n := len(dst)
	dst, err := base64.RawURLEncoding.AppendDecode(dst, []byte(enc))
	if !ok || err != nil || len(dst)-n != recordHashLen {
		panic("tokenizer: a record name that recordName did not make")
	}
	return dst
}

// legacySubjectName names a subject index as versions before compact
// members wrote it, whose members are whole record names. EraseSubject
// still reads and erases it; nothing adds to it any more.
func legacySubjectName(tk *tenantKeys, subject string) string {
	return subjectPrefix(tk.name) + keyedName(tk.index, "subject", subject)
}

func keyedName(key *macKey, domain, s string) string {
	var buf [32]byte
	return string(appendKeyedName(buf[:0], key, domain, s))
}

// appendKeyedName appends keyedName(key, domain, s) to dst.
func appendKeyedName(dst []byte, key *macKey, domain, s string) []byte {
	var sum [sha256.Size]byte
	return base64.RawURLEncoding.AppendEncode(dst, key.mac(sum[:0], domain, "\x00", s)[:recordHashLen])
}

// systemKeyring names the keyring of the service's own keys. Tenant names
// cannot start with '_', so it never collides with a tenant.
const systemKeyring = "_system"

// DeriveKey returns a 256-bit key for the service's own use (for example
// the audit log's MAC key), derived from a root key that the KeyManager
// wraps like any tenant's, bound to the identity ("_system", root). The
// same label gives the same key on every replica and across restarts.
func (t *Tokenizer) DeriveKey(ctx context.Context, label string) ([]byte, error) {
	root, err := t.keys.loadOrCreate(ctx, rootKeyID(systemKeyring), true)
	if err != nil {
		return nil, err
	}
	defer clear(root)
	k, err := hkdf.Expand(sha256.New, root, "jeton/v1/system/"+label, 32)
	if err != nil {
		return nil, fmt.Errorf("tokenizer: deriving %s key: %w", label, err)
	}
	return k, nil
}
