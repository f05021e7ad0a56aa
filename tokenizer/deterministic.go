package tokenizer

import (
	"context"
	"crypto/sha256"
	"fmt"
)

// Deterministic tokens. Each key generation has its own deterministic-token
// key (genKeys.det, derived from the generation's DEK), so destroying a
// generation makes its deterministic tokens impossible to recompute or
// match, by anyone, jetond included.
//
// Stability across rotation: a value keeps the token it got, as long as
// the generation that minted it lives and its record is there. Tokenize
// computes the value's token under every live generation and takes that
// of the OLDEST generation that holds a record for it; only when none
// does is a token minted under the current generation. Oldest-first is
// the rule because it is the one that converges: a value tokenized twice
// at the moment of a rotation (two replicas, one still on the old
// generation) gets two records, and every later call returns the older
// one, the same one, until that generation is destroyed; "newest first"
// would switch a value's token at every rotation where a record of it
// exists under the new generation, and break the joins sponsors make.
// The cost is one store lookup per live generation per deterministic item,
// in one batch, and no KeyManager call once the generations' keys are
// cached.

// deterministicPayload is the payload of the deterministic token of a
// normalised value of class, under a generation's deterministic key:
// HMAC-SHA256(det, class || 0x00 || value), truncated to 128 bits. Class
// names never contain 0x00, so no two (class, value) pairs collide.
func deterministicPayload(det *macKey, class, value string) (p [tokenPayloadLen]byte) {
	var sum [sha256.Size]byte
	copy(p[:], det.mac(sum[:0], class, "\x00", value))
	return p
}

// adoptOlderDeterministic gives each deterministic item of work the token
// of the oldest live generation below cur that holds a record for its
// value, and that generation's keys to seal it under. It returns the
// generations it took tokens from, for checkNotDestroyed.
func (t *Tokenizer) adoptOlderDeterministic(ctx context.Context, tk *tenantKeys, cur uint32, work []pending) ([]uint32, error) {
	var det []int
	for i := range work {
		if work[i].class.Kind == KindDeterministic {
			det = append(det, i)
		}
	}
	if len(det) == 0 || cur <= 1 {
		return nil, nil
	}
	older, err := t.keys.olderLive(ctx, tk, cur)
	if err != nil || len(older) == 0 {
		return nil, err
	}
	type candidate struct {
		tok  Token
		text string
	}
	cands := make([]candidate, 0, len(det)*len(older))
	names := make([]string, 0, len(det)*len(older))
	for _, i := range det {
		p := &work[i]
		for _, g := range older {
			tok := newToken(p.class, tk.name, deterministicPayload(g.det, p.class.Name, p.norm))
			text := tok.String()
			cands = append(cands, candidate{tok, text})
			names = append(names, recordName(tk, text))
		}
	}
	found, err := t.store.Get(ctx, names)
	if err != nil {
		return nil, unavailable("store", err)
	}
	used := map[uint32]bool{}
	for j, i := range det {
		for k, g := range older { // oldest first: the first hit wins
			c := j*len(older) + k
			if found[c] == nil {
				continue
			}
			p := &work[i]
			p.tok, p.text, p.name = cands[c].tok, cands[c].text, names[c]
			p.gen, p.dek = g.gen, g.dek
			used[g.gen] = true
			break
		}
	}
	gens := make([]uint32, 0, len(used))
	for g := range used {
		gens = append(gens, g)
	}
	return gens, nil
}

// checkNotDestroyed fails, and makes this replica forget their keys, if
// any of gens was destroyed while Tokenize was sealing records under it.
// A replica trusts its cached view of a generation for up to KeyRefresh;
// without this check it could acknowledge a deterministic token of a
// generation destroyed a moment before, a token that would reveal nothing.
// The retry mints under a live generation.
func (t *Tokenizer) checkNotDestroyed(ctx context.Context, tk *tenantKeys, gens []uint32) error {
	if len(gens) == 0 {
		return nil
	}
	names := make([]string, len(gens))
	for i, g := range gens {
		names[i] = destroyedName(tk.name, g)
	}
	markers, err := t.store.Get(ctx, names)
	if err != nil {
		return unavailable("store", err)
	}
	for i, m := range markers {
		if m != nil {
			t.keys.evict(tk, gens[i])
			return fmt.Errorf("%w: tenant %s: generation %d was destroyed during the call; retry", ErrUnavailable, tk.name, gens[i])
		}
	}
	return nil
}
