package tokenizer

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"io"
	"time"
)

// ErrShapeExhausted means maxShapeAttempts random tokens in a row were
// already taken for one value: its class's shape leaves almost no free
// token of that value's length in the tenant. The item fails; the rest of
// the batch is stored.
var ErrShapeExhausted = errors.New("tokenizer: no free token left in the domain of the class's shape for this value")

// maxShapeAttempts bounds the mints of one value whose tokens keep being
// taken. A domain must be nearly full for even a few to fail: the chance
// that all of them do is the fraction taken to this power.
const maxShapeAttempts = 32

// newToken returns the token of class c in tenant for a payload: opaque,
// or the payload written in c's shape when that shape holds one (a
// deterministic email-shaped class).
func newToken(c *Class, tenant string, payload [tokenPayloadLen]byte) Token {
	tok := Token{Class: c.Name, Tenant: tenant, Version: tokenVersion1, Payload: payload}
	if ps, ok := c.shapeOf().(payloadShaper); ok {
		tok.Shaped = ps.fromPayload(payload)
	}
	return tok
}

// mintShaped gives every random item of a shaped class that has no token
// yet a fresh one. It runs in item order on the caller's goroutine: shapes
// read a varying amount of randomness.
func (t *Tokenizer) mintShaped(tk *tenantKeys, work []pending) error {
	for i := range work {
		if p := &work[i]; p.text == "" && p.class.Kind == KindRandom && p.class.shapeOf() != nil {
			if err := t.mintRandom(tk, p); err != nil {
				return err
			}
		}
	}
	return nil
}

// mintRandom gives p a fresh random token of its class's shape, and that
// token's record name.
func (t *Tokenizer) mintRandom(tk *tenantKeys, p *pending) error {
	p.tok = Token{Class: p.class.Name, Tenant: tk.name, Version: tokenVersion1}
	if sh := p.class.shapeOf(); sh != nil {
		text, err := sh.mint(t.rand, p.value)
		if err != nil {
			return err
		}
		p.tok.Shaped = text
	} else if _, err := io.ReadFull(t.rand, p.tok.Payload[:]); err != nil {
		return fmt.Errorf("tokenizer: reading randomness: %w", err)
	}
	p.text = p.tok.String()
	p.name = recordName(tk, p.text)
	return nil
}

// parseOwnToken parses the text of a token of class c in tenant, as an
// idempotency entry holds it.
func parseOwnToken(c *Class, tenant, text string) (Token, error) {
	sh := c.shapeOf()
	if sh == nil {
		return ParseToken(text)
	}
	canon, ok := sh.parse(text)
	if !ok {
		return Token{}, ErrInvalidToken
	}
	return Token{Class: c.Name, Tenant: tenant, Version: tokenVersion1, Shaped: canon}, nil
}

// claimShaped stores the record of every random shaped item of work that
// needs one, with PutNew: the record name is the token's claim in its
// tenant. An item whose name is taken, by another value's record, gets a
// fresh token and tries again, up to maxShapeAttempts times; it returns
// the positions in work of the items that never found a free one. A
// record is never overwritten. Stored items are marked claimed.
func (t *Tokenizer) claimShaped(ctx context.Context, tk *tenantKeys, work []pending) (refused []int, err error) {
	var idx []int
	for i := range work {
		if p := &work[i]; p.name != "" && p.class.Kind == KindRandom && p.class.shapeOf() != nil {
			idx = append(idx, i)
		}
	}
	for attempt := 0; len(idx) > 0; attempt++ {
		if attempt == maxShapeAttempts {
			return idx, nil
		}
		if attempt > 0 {
			for _, i := range idx {
				if err := t.mintRandom(tk, &work[i]); err != nil {
					return nil, err
				}
			}
		}
		nonces := make([]byte, len(idx)*nonceSize)
		if _, err := io.ReadFull(t.rand, nonces); err != nil {
			return nil, fmt.Errorf("tokenizer: reading nonce: %w", err)
		}
		entries := make([]Entry, len(idx))
		parallel(len(idx), func(lo, hi int) {
			for j := lo; j < hi; j++ {
				p := &work[idx[j]]
				blob, _ := sealRecordMAC(p.dek, nonces[j*nonceSize:(j+1)*nonceSize], p.gen, 0, p.tok, p.text, p.value)
				entries[j] = Entry{Key: p.name, Value: blob, TTL: p.ttl}
			}
		})
		for _, e := range entries {
			if e.Value == nil {
				return nil, errors.New("tokenizer: sealing a record failed")
			}
		}
		won, err := t.store.PutNew(ctx, entries)
		if err != nil {
			return nil, unavailable("store", err)
		}
		var taken []int
		var names []string
		for j, ok := range won {
			if ok {
				work[idx[j]].claimed = true
				continue
			}
			taken = append(taken, j)
			names = append(names, entries[j].Key)
		}
		if len(taken) == 0 {
			return nil, nil
		}
		// A store client that resent a write after a lost reply finds its
		// own record there: the same bytes, random nonce included.
		stored, err := t.store.Get(ctx, names)
		if err != nil {
			return nil, unavailable("store", err)
		}
		var again []int
		for k, j := range taken {
			if bytes.Equal(stored[k], entries[j].Value) {
				work[idx[j]].claimed = true
				continue
			}
			again = append(again, idx[j])
		}
		idx = again
	}
	return nil, nil
}

// putNewShaped stores one shaped record, a canary's, minting its token
// again while the name is taken; seal seals the record for a token.
func (t *Tokenizer) putNewShaped(ctx context.Context, tk *tenantKeys, c *Class, value string, ttl time.Duration, seal func(tok Token) ([]byte, error)) (string, error) {
	p := pending{class: *c, value: value}
	for range maxShapeAttempts {
		if err := t.mintRandom(tk, &p); err != nil {
			return "", err
		}
		blob, err := seal(p.tok)
		if err != nil {
			return "", err
		}
		won, err := t.store.PutNew(ctx, []Entry{{Key: p.name, Value: blob, TTL: ttl}})
		if err != nil {
			return "", unavailable("store", err)
		}
		if won[0] {
			return p.text, nil
		}
	}
	return "", ErrShapeExhausted
}
