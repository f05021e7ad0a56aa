package tokenizer

import (
	"context"
	"crypto/aes"
	"crypto/cipher"
	"crypto/sha256"
	"encoding/binary"
	"errors"
	"fmt"
	"io"
	"maps"
	"slices"
	"time"
)

// Idempotency: one sealed entry per call.
//
// A call with an idempotency key first claims its entry (a store PutNew)
// and only then writes records, so whatever happens after the claim (a
// crash, a killed client, a lost reply, a concurrent retry), the next
// attempt with the same key finds the entry and the tokens in it, and
// writes the same records again, never new ones.
//
// The entry does not hold the tokens: it holds the 256-bit seed that the
// call's random tokens are drawn from (tokenStream), so it costs the same
// few dozen bytes for one item or a thousand, plus 16 bytes for each token
// reminted after an erasure. Item i's token is block i of the stream,
// whatever its position in the work, so an attempt that finds the entry
// rebuilds every token without reading a record.
//
// Its states:
//
//	pending  claimed; records may be missing because the attempt that
//	         claimed it has not finished, or never will. An attempt that
//	         finds it writes every record that is missing (Store.Write
//	         creates, never replaces), then marks it done.
//	done     every record was written and the tokens acknowledged. A record
//	         now missing was erased or has expired: its item gets a fresh
//	         token (reminted), never the dead one, and the entry goes back
//	         to pending with that token until it is written.
//
// Every change after the claim is a compare-and-set (Store.Swap) of the
// whole stored entry, so concurrent attempts agree on one set of tokens.
//
// The entry is sealed under a key derived from the tenant's idempotency
// key, the caller's idempotency key and a digest of every item of the call
// (class, value, subject, in order). So:
//   - it opens only for a caller who resends the same values: the tenant's
//     keys alone, even with the KEK, cannot turn a store dump of entries
//     into tokens;
//   - a call that reuses a key with other items finds an entry it cannot
//     open, and is refused (ErrIdempotencyKeyReused): it can neither be
//     handed another call's tokens nor silently mint new ones under the key.
//
// A call of deterministic items alone claims no entry: its tokens are the
// same on every attempt, and its records are only ever created or kept, so
// its key is neither needed nor checked.
//
// Known limits. An erasure does not reach into a call that has not
// completed: a retry of an unfinished call writes its missing records,
// even if a subject erasure ran in between (erase after the call is done).
// A store writer can delete or edit entries; a later retry then mints anew
// or is refused, as it would for a lost entry. Entries written by versions
// before this scheme (one per item) are not read: a retry across an
// upgrade, within the day entries live, mints new tokens.

// idempotencyTTL is how long a retry with the same idempotency key gets the
// same tokens back.
const idempotencyTTL = 24 * time.Hour

// ErrIdempotencyKeyReused means an idempotency key came back with other
// items (classes, values, subjects or their order) than the call that first
// used it. It comes wrapped in a UserError; the message names no value.
var ErrIdempotencyKeyReused = errors.New("tokenizer: idempotency key already used for a call with other items; send new items under a new key")

const (
	seedSize = 32
	// callEntryVersion starts an entry's plaintext.
	callEntryVersion = 0x02
	// maxCallRounds bounds how often Tokenize starts over because another
	// attempt changed the entry under it.
	maxCallRounds = 8
)

// callEntry is a call's idempotency entry, opened.
type callEntry struct {
	done bool
	seed [seedSize]byte
	// reminted are the tokens that replaced erased ones, by item index.
	reminted map[int][tokenPayloadLen]byte
	// sealed is the entry's seed and reminted tokens as sealed; nil until
	// sealed. Marking the entry done keeps it.
	sealed []byte
}

// stored is the entry as the store holds it, what a Swap compares: its
// state, then its sealed part. The state is in the clear, so that marking
// a call done seals nothing anew; sealing it would protect nothing, since
// whoever can write the store can also put back the pending entry it held
// before, or delete it.
func (e *callEntry) stored() []byte {
	var state byte
	if e.done {
		state = 1
	}
	return append([]byte{state}, e.sealed...)
}

// idemCall is what a call with an idempotency key needs to find and open
// its entry.
type idemCall struct {
	name    string
	sealKey []byte
	ad      string
}

// newIdemCall names the call's entry and derives the key that seals it.
// The name depends on the caller's key alone, so a call with other items
// finds the entry (and is refused); the seal key depends on the items too:
//
//	HMAC-SHA256(idem, lp("jeton/v2/idempotency") || lp(key) || u32(n) ||
//	            lp(class_i) || lp(value_i) || lp(subject_i) for each item)
//
// where lp is a 32-bit big-endian length and the field itself.
func newIdemCall(tk *tenantKeys, key string, items []Item) *idemCall {
	sealKey := tk.idem.stream(make([]byte, 0, sha256.Size), func(w macWriter) {
		w.write("jeton/v2/idempotency", key)
		w.writeRaw(binary.BigEndian.AppendUint32(nil, uint32(len(items))))
		for _, it := range items {
			w.write(it.Class, it.Value, it.Subject)
		}
	})
	name := idempotencyPrefix(tk.name) + keyedName(tk.index, "call", key)
	return &idemCall{name: name, sealKey: sealKey, ad: "jeton/v2/idempotency\x00" + name}
}

// seal seals e's seed and reminted tokens:
//
//	plaintext = 0x02 | seed (32) | uvarint(n) | n × (uvarint(index) | payload (16))
//
// with sealSmall under the call's key, bound to the entry's name. The
// stored entry is a state byte (0 pending, 1 done) and this.
func (c *idemCall) seal(rand io.Reader, e *callEntry) error {
	pt := make([]byte, 0, 1+seedSize+binary.MaxVarintLen64+len(e.reminted)*(binary.MaxVarintLen64+tokenPayloadLen))
	pt = append(pt, callEntryVersion)
	pt = append(pt, e.seed[:]...)
	pt = binary.AppendUvarint(pt, uint64(len(e.reminted)))
	for _, i := range slices.Sorted(maps.Keys(e.reminted)) {
		p := e.reminted[i]
		pt = binary.AppendUvarint(pt, uint64(i))
		pt = append(pt, p[:]...)
	}
	sealed, err := sealSmall(rand, c.sealKey, c.ad, pt)
	e.sealed = sealed
	return err
}

// open opens a stored entry. Any failure, a call with other items above
// all, is ErrIdempotencyKeyReused: the entry cannot say which.
func (c *idemCall) open(blob []byte, items int) (*callEntry, error) {
	reused := &UserError{ErrIdempotencyKeyReused}
	if len(blob) < 1 || blob[0] > 1 {
		return nil, reused
	}
	pt, err := openSmall(c.sealKey, c.ad, blob[1:])
	if err != nil || len(pt) < 1+seedSize+1 || pt[0] != callEntryVersion {
		return nil, reused
	}
	e := &callEntry{done: blob[0] == 1, sealed: blob[1:]}
	copy(e.seed[:], pt[1:])
	rest := pt[1+seedSize:]
	n, k := binary.Uvarint(rest)
	if k <= 0 || n > uint64(items) {
		return nil, reused
	}
	rest = rest[k:]
	if n > 0 {
		e.reminted = make(map[int][tokenPayloadLen]byte, n)
	}
	for range n {
		i, k := binary.Uvarint(rest)
		if k <= 0 || i >= uint64(items) || len(rest) < k+tokenPayloadLen {
			return nil, reused
		}
		e.reminted[int(i)] = [tokenPayloadLen]byte(rest[k : k+tokenPayloadLen])
		rest = rest[k+tokenPayloadLen:]
	}
	if len(rest) != 0 {
		return nil, reused
	}
	return e, nil
}

// sameTokens reports whether two entries give every item the same token.
func (e *callEntry) sameTokens(o *callEntry) bool {
	if e.seed != o.seed || len(e.reminted) != len(o.reminted) {
		return false
	}
	for i, p := range e.reminted {
		if q, ok := o.reminted[i]; !ok || q != p {
			return false
		}
	}
	return true
}

// claim claims the call's entry with a fresh seed, or returns the entry an
// earlier or concurrent attempt claimed. fresh reports that this attempt
// made the claim just now, so that no record of the call exists yet.
func (t *Tokenizer) claim(ctx context.Context, c *idemCall, items int, seed []byte) (e *callEntry, fresh bool, err error) {
	mine := &callEntry{seed: [seedSize]byte(seed)}
	if err := c.seal(t.rand, mine); err != nil {
		return nil, false, err
	}
	for range 3 {
		won, err := t.store.PutNew(ctx, []Entry{{Key: c.name, Value: mine.stored(), TTL: idempotencyTTL}})
		if err != nil {
			return nil, false, unavailable("store", err)
		}
		if won[0] {
			return mine, true, nil
		}
		// Someone holds it; possibly this very call, whose claim the
		// store reported lost after applying it (a resent command).
		got, err := t.store.Get(ctx, []string{c.name})
		if err != nil {
			return nil, false, unavailable("store", err)
		}
		if got[0] == nil {
			continue // expired or deleted in between: claim again
		}
		e, err := c.open(got[0], items)
		return e, false, err
	}
	return nil, false, fmt.Errorf("%w: idempotency entry vanishes as it is claimed", ErrUnavailable)
}

// reread returns the call's entry as now stored; nil if it is gone.
func (t *Tokenizer) reread(ctx context.Context, c *idemCall, items int) (*callEntry, error) {
	got, err := t.store.Get(ctx, []string{c.name})
	if err != nil {
		return nil, unavailable("store", err)
	}
	if got[0] == nil {
		return nil, nil
	}
	return c.open(got[0], items)
}

// swap replaces the stored entry old with next, sealing next first if it
// is not. It reports false when another attempt changed the entry first.
func (t *Tokenizer) swap(ctx context.Context, c *idemCall, old, next *callEntry) (bool, error) {
	if next.sealed == nil {
		if err := c.seal(t.rand, next); err != nil {
			return false, err
		}
	}
	ok, err := t.store.Swap(ctx, old.stored(), Entry{Key: c.name, Value: next.stored(), TTL: idempotencyTTL})
	if err != nil {
		return false, unavailable("store", err)
	}
	return ok, nil
}

// drawTokens draws the payloads of a call's random tokens from its seed:
// item i's payload is block i of the AES-256-CTR keystream under the seed
// (counter i, 128-bit big-endian), as a CTR_DRBG (NIST SP 800-90A) draws
// its output from a seed read from the system's randomness. Every token of
// the call is 128 bits that no one without the seed can predict or link
// to another; the seed comes from the Tokenizer's reader (crypto/rand) and
// is kept only in memory and, for a call with an idempotency key, sealed
// in its entry. It returns n payloads, one after the other.
func drawTokens(seed []byte, n int) ([]byte, error) {
	b, err := aes.NewCipher(seed)
	if err != nil {
		return nil, fmt.Errorf("tokenizer: %w", err)
	}
	out := make([]byte, n*tokenPayloadLen)
	var iv [aes.BlockSize]byte
	cipher.NewCTR(b, iv[:]).XORKeyStream(out, out)
	return out, nil
}
