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
	"crypto/hmac"
	"crypto/rand"
	"crypto/sha256"
	"encoding/base64"
	"encoding/binary"
	"errors"
	"fmt"
	"hash"
	"io"
	"runtime"
	"slices"
	"sync"
	"time"
	"unicode/utf8"
)

// MaxSubjectLen bounds a data-subject id in bytes.
const MaxSubjectLen = 256

// idempotencyTTL is how long a retry with the same idempotency key gets the
// same tokens back.
const idempotencyTTL = 24 * time.Hour

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
	classes map[string]Class
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
	t := &Tokenizer{classes: map[string]Class{}, store: cfg.Store, rand: cfg.Rand, now: cfg.Now}
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
		t.classes[c.Name] = c
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
	return c, ok
}

// Classes returns the configured classes in configuration order.
func (t *Tokenizer) Classes() []Class {
	out := make([]Class, 0, len(t.order))
	for _, n := range t.order {
		out = append(out, t.classes[n])
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
	class Class
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
	idem    string  // idempotency entry name, for random items under a key
	idemKey []byte  // seals the token in that entry
	// replaceClaim marks a token reminted because the earlier attempt's
	// record is gone: its entry is overwritten, not claimed.
	replaceClaim bool
	// claimed marks a random shaped token whose record claimShaped stored.
	claimed bool
}

// Tokenize mints a token for each item in tenant, creating the tenant's
// keys on first use. Per-item problems are reported in the results; the
// error is non-nil only when nothing could be done (ErrUnavailable when a
// backend is down), and then no token from the batch may be used.
//
// With a non-empty idempotencyKey, a retry of the same items under the same
// key returns the same random tokens instead of minting new ones. Callers
// scope the key to the caller's identity.
func (t *Tokenizer) Tokenize(ctx context.Context, tenant string, items []Item, idempotencyKey string) ([]Result, error) {
	if err := validateName("tenant", tenant); err != nil {
		return nil, err
	}
	results := make([]Result, len(items))
	var work []pending
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
	if len(work) == 0 {
		return results, nil
	}
	tk, cur, err := t.currentGen(ctx, tenant)
	if err != nil {
		return nil, err
	}

	// Mint tokens. Randomness is read in one go, in item order, so an
	// injected reader sees the same sequence however the work is split.
	random := make([]byte, len(work)*(tokenPayloadLen+nonceSize))
	if _, err := io.ReadFull(t.rand, random); err != nil {
		return nil, fmt.Errorf("tokenizer: reading randomness: %w", err)
	}
	var idemNames []string
	parallel(len(work), func(lo, hi int) {
		for i := lo; i < hi; i++ {
			p := &work[i]
			p.gen, p.dek = cur.gen, cur.dek
			var payload [tokenPayloadLen]byte
			switch {
			case p.class.Kind == KindDeterministic:
				payload = deterministicPayload(cur.det, p.class.Name, p.norm)
			case p.class.shapeOf() != nil:
				continue // mintShaped, below
			default:
				copy(payload[:], random[i*tokenPayloadLen:])
			}
			p.tok = newToken(&p.class, tenant, payload)
			p.text = p.tok.String()
			p.name = recordName(tk, p.text)
		}
	})
	if err := t.mintShaped(tk, work); err != nil {
		return nil, err
	}
	// A value already tokenized under an older live generation keeps that
	// token (deterministic.go).
	olderGens, err := t.adoptOlderDeterministic(ctx, tk, cur.gen, work)
	if err != nil {
		return nil, err
	}
	if idempotencyKey != "" {
		for i := range work {
			if p := &work[i]; p.class.Kind == KindRandom {
				p.idem, p.idemKey = idemEntry(tk, idempotencyKey, p.idx, p.class.Name, p.value, p.subject)
				idemNames = append(idemNames, p.idem)
			}
		}
	}
	nonces := random[len(work)*tokenPayloadLen:]

	// A retry finds the tokens of the first attempt.
	if len(idemNames) > 0 {
		prior, err := t.store.Get(ctx, idemNames)
		if err != nil {
			return nil, unavailable("store", err)
		}
		j := 0
		for i := range work {
			if work[i].idem == "" {
				continue
			}
			if prior[j] != nil {
				if err := t.adoptIdempotent(tk, &work[i], prior[j]); err != nil {
					return nil, err
				}
			}
			j++
		}
		if err := t.remintErased(ctx, tk, work); err != nil {
			return nil, err
		}
	}

	// A random shaped token's record is its claim, stored first, alone:
	// one whose name is taken is minted again (shape_mint.go).
	refused, err := t.claimShaped(ctx, tk, work)
	if err != nil {
		return nil, err
	}
	if len(refused) > 0 {
		for _, i := range refused {
			results[work[i].idx].Err = ErrShapeExhausted
			work[i].idx = -1
		}
		work = slices.DeleteFunc(work, func(p pending) bool { return p.idx < 0 })
	}

	// Records first, idempotency entries second: an entry then always
	// points at a stored record, whoever wins a race.
	// Seal and store in chunks, storing each chunk while the next one is
	// sealed, so the store's round trip and the crypto overlap.
	var (
		putWG  sync.WaitGroup
		putMu  sync.Mutex
		putErr error
		putSem = make(chan struct{}, maxPutsInFlight)
	)
	subjects := map[string][]string{}
	subjectTTL := map[string]time.Duration{}
	for lo := 0; lo < len(work); lo += putChunk {
		chunk := work[lo:min(lo+putChunk, len(work))]
		blobs := make([][]byte, len(chunk))
		parallel(len(chunk), func(a, b int) {
			for i := a; i < b; i++ {
				// No name: adopted from an earlier attempt; claimed: stored.
				if p := &chunk[i]; p.name != "" && !p.claimed {
					j := lo + i
					blobs[i], _ = sealRecordMAC(p.dek, nonces[j*nonceSize:(j+1)*nonceSize], p.gen, 0, p.tok, p.text, p.value)
				}
			}
		})
		entries := make([]Entry, 0, len(chunk))
		for i := range chunk {
			p := &chunk[i]
			if p.name == "" {
				continue
			}
			if !p.claimed {
				if blobs[i] == nil {
					putWG.Wait()
					return nil, errors.New("tokenizer: sealing a record failed")
				}
				entries = append(entries, Entry{Key: p.name, Value: blobs[i], TTL: p.ttl})
			}
			if p.subject != "" {
				// The index lives as long as its longest-lived member (zero:
				// permanent wins); AddToSet only ever extends it.
				s := subjectName(tk, p.subject)
				subjects[s] = append(subjects[s], p.name)
				if ttl, seen := subjectTTL[s]; !seen || (ttl != 0 && (p.ttl == 0 || p.ttl > ttl)) {
					subjectTTL[s] = p.ttl
				}
			}
		}
		if len(entries) == 0 {
			continue
		}
		putSem <- struct{}{}
		putWG.Add(1)
		go func() {
			defer func() { <-putSem; putWG.Done() }()
			if err := t.store.Put(ctx, entries); err != nil {
				putMu.Lock()
				putErr = cmp.Or(putErr, err)
				putMu.Unlock()
			}
		}()
	}
	putWG.Wait()
	if putErr != nil {
		return nil, unavailable("store", putErr)
	}
	for s, members := range subjects {
		if err := t.store.AddToSet(ctx, s, members, subjectTTL[s]); err != nil {
			return nil, unavailable("store", err)
		}
	}
	if err := t.claimIdempotent(ctx, tk, work); err != nil {
		return nil, err
	}
	if err := t.checkNotDestroyed(ctx, tk, olderGens); err != nil {
		return nil, err
	}
	for _, p := range work {
		results[p.idx].Token = p.text
	}
	return results, nil
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

// remintErased gives a fresh token to every item whose earlier attempt's
// token no longer has a record (erased, or past its retention): a retry
// must never acknowledge a token that reveals nothing. Its idempotency
// entry is then replaced rather than claimed.
func (t *Tokenizer) remintErased(ctx context.Context, tk *tenantKeys, work []pending) error {
	var idx []int
	var names []string
	for i, p := range work {
		if p.idem != "" && p.name == "" {
			idx = append(idx, i)
			names = append(names, recordName(tk, p.text))
		}
	}
	if len(names) == 0 {
		return nil
	}
	blobs, err := t.store.Get(ctx, names)
	if err != nil {
		return unavailable("store", err)
	}
	for j, i := range idx {
		if blobs[j] != nil {
			continue
		}
		p := &work[i]
		if err := t.mintRandom(tk, p); err != nil {
			return err
		}
		p.replaceClaim = true
	}
	return nil
}

// claimIdempotent records the freshly minted random tokens under their
// idempotency entries. Where a concurrent attempt won, it adopts that
// attempt's token and deletes its own now-orphaned record.
func (t *Tokenizer) claimIdempotent(ctx context.Context, tk *tenantKeys, work []pending) error {
	var claims []Entry
	var idx []int
	var replace []Entry
	for i, p := range work {
		if p.idem == "" || p.name == "" {
			continue
		}
		blob, err := sealSmall(t.rand, p.idemKey, p.idem, []byte(p.text))
		if err != nil {
			return err
		}
		e := Entry{Key: p.idem, Value: blob, TTL: idempotencyTTL}
		if p.replaceClaim {
			replace = append(replace, e)
			continue
		}
		claims = append(claims, e)
		idx = append(idx, i)
	}
	if len(replace) > 0 {
		if err := t.store.Put(ctx, replace); err != nil {
			return unavailable("store", err)
		}
	}
	if len(claims) == 0 {
		return nil
	}
	won, err := t.store.PutNew(ctx, claims)
	if err != nil {
		return unavailable("store", err)
	}
	var lostNames, orphans []string
	var lost []int
	for j, ok := range won {
		if !ok {
			lostNames = append(lostNames, claims[j].Key)
			orphans = append(orphans, work[idx[j]].name)
			lost = append(lost, idx[j])
		}
	}
	if len(lost) == 0 {
		return nil
	}
	prior, err := t.store.Get(ctx, lostNames)
	if err != nil {
		return unavailable("store", err)
	}
	for j, i := range lost {
		if prior[j] == nil {
			return fmt.Errorf("%w: idempotency entry vanished", ErrUnavailable)
		}
		mine := work[i].text
		if err := t.adoptIdempotent(tk, &work[i], prior[j]); err != nil {
			return err
		}
		// A store client that resent the claim after a lost reply sees its
		// own entry as a rival's: then the record is ours and must stay.
		if work[i].text == mine {
			orphans[j] = ""
		}
	}
	orphans = slices.DeleteFunc(orphans, func(s string) bool { return s == "" })
	if len(orphans) == 0 {
		return nil
	}
	if _, err := t.store.Delete(ctx, orphans); err != nil {
		return unavailable("store", err)
	}
	return nil
}

// adoptIdempotent replaces p's fresh token with the one an earlier attempt
// stored, and marks p as needing no record.
func (t *Tokenizer) adoptIdempotent(tk *tenantKeys, p *pending, blob []byte) error {
	text, err := openSmall(p.idemKey, p.idem, blob)
	if err != nil {
		return fmt.Errorf("tokenizer: idempotency entry does not open: %w", err)
	}
	tok, err := parseOwnToken(&p.class, tk.name, string(text))
	if err != nil {
		return fmt.Errorf("tokenizer: idempotency entry holds no token: %w", err)
	}
	p.tok, p.text, p.name = tok, string(text), ""
	return nil
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
	blobs, err := t.store.Get(ctx, names)
	if err != nil {
		return nil, unavailable("store", err)
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
	s := subjectName(tk, subject)
	members, err := t.store.SetMembers(ctx, s)
	if err != nil {
		return 0, unavailable("store", err)
	}
	n := 0
	if len(members) > 0 {
		if n, err = t.store.Delete(ctx, members); err != nil {
			return 0, unavailable("store", err)
		}
	}
	if _, err := t.store.Delete(ctx, []string{s}); err != nil {
		return 0, unavailable("store", err)
	}
	return n, nil
}

// The store names of records, subjects and idempotency entries are keyed
// hashes under the tenant's index key, truncated to 160 bits.
func recordName(tk *tenantKeys, tokText string) string {
	return "jeton:r:" + tk.name + ":" + keyedName(tk.index, "record", tokText)
}

func subjectName(tk *tenantKeys, subject string) string {
	return "jeton:s:" + tk.name + ":" + keyedName(tk.index, "subject", subject)
}

// idemEntry names a random item's idempotency entry and derives the key
// that seals the token in it. Both are MACs over everything a retry
// resends (the caller's key, the item's position, class, value and
// subject), so the entry opens only for a caller who holds the value: the
// tenant's keys alone, even with the KEK, cannot turn the entries of a
// store dump into tokens.
func idemEntry(tk *tenantKeys, key string, idx int, class, value, subject string) (name string, sealKey []byte) {
	sum := func(m hash.Hash, domain string) []byte {
		for _, f := range []string{domain, key, class, value, subject} {
			var n [4]byte
			binary.BigEndian.PutUint32(n[:], uint32(len(f)))
			m.Write(n[:])
			m.Write([]byte(f))
		}
		var n [8]byte
		binary.BigEndian.PutUint64(n[:], uint64(idx))
		m.Write(n[:])
		return m.Sum(nil)
	}
	m := tk.index.get()
	name = "jeton:i:" + tk.name + ":" + base64.RawURLEncoding.EncodeToString(sum(m, "idempotency")[:20])
	tk.index.put(m)
	return name, sum(hmac.New(sha256.New, tk.idem), "idempotency-seal")
}

func keyedName(key *macKey, domain, s string) string {
	m := key.get()
	// One write of one buffer: each conversion passed to Write would
	// allocate, and this runs for every item.
	var stack [128]byte
	buf := append(append(append(stack[:0], domain...), 0), s...)
	m.Write(buf)
	var sum [sha256.Size]byte
	out := base64.RawURLEncoding.EncodeToString(m.Sum(sum[:0])[:20])
	key.put(m)
	return out
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
