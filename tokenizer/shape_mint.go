package tokenizer

import (
	"bytes"
	"context"
	"crypto/aes"
	"crypto/cipher"
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

// shapeStream is the randomness a random shaped token is drawn from:
// AES-128-CTR keyed by the item's payload, so that the token is a
// function of the payload, which the call's idempotency entry holds (its
// seed, or a reminted payload). A stream, not the payload's 16 bytes:
// shapes read a varying amount of randomness.
func shapeStream(payload [tokenPayloadLen]byte) io.Reader {
	b, _ := aes.NewCipher(payload[:]) // a 16-byte key is always valid
	var iv [aes.BlockSize]byte
	return cipher.StreamReader{S: cipher.NewCTR(b, iv[:]), R: zeros{}}
}

// zeros reads as an endless run of zero bytes.
type zeros struct{}

func (zeros) Read(b []byte) (int, error) {
	clear(b)
	return len(b), nil
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

// claimShaped stores first, alone, with PutNew, the record of every
// random shaped item of work that has none yet: the record name is the
// token's claim in its tenant, and a shape's domain can be small enough
// for two values to draw the same token. An item whose name the record of
// another value holds gets fresh payloads from remint (which, under an
// idempotency key, first records them in the call's entry) until it finds
// a free name, up to maxShapeAttempts times; one that never does is marked
// refused. A record is never overwritten. Claimed items are marked claimed.
// nonces holds one per item of work: the record key is the token's own
// (recordAEAD), so a nonce is never used twice under one key.
func (t *Tokenizer) claimShaped(ctx context.Context, tk *tenantKeys, work []pending, nonces []byte, remint func(idx []int) error) error {
	var idx []int
	for i := range work {
		if p := &work[i]; !p.stored && p.class.Kind == KindRandom && p.class.shapeOf() != nil {
			idx = append(idx, i)
		}
	}
	for attempt := 0; len(idx) > 0; attempt++ {
		if attempt == maxShapeAttempts {
			for _, i := range idx {
				work[i].refused = true
			}
			return nil
		}
		if attempt > 0 {
			if err := remint(idx); err != nil {
				return err
			}
		}
		entries := make([]Entry, len(idx))
		for j, i := range idx {
			p := &work[i]
			blob, err := sealRecordMAC(p.dek, nonces[i*nonceSize:(i+1)*nonceSize], p.gen, 0, p.tok, p.text, p.value)
			if err != nil {
				return err
			}
			entries[j] = Entry{Key: p.name, Value: blob, TTL: p.ttl}
		}
		won, err := t.store.PutNew(ctx, entries)
		if err != nil {
			return unavailable("store", err)
		}
		var taken []int // positions in idx
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
			return nil
		}
		held, err := t.store.Get(ctx, names)
		if err != nil {
			return unavailable("store", err)
		}
		var again []int
		for k, j := range taken {
			i := idx[j]
			// A store client that resent the write after a lost reply
			// finds its own record there: the same bytes, nonce included.
			// Any other record, even of the same value, is another
			// tokenization's: a random token is never shared.
			if bytes.Equal(held[k], entries[j].Value) {
				work[i].claimed = true
				continue
			}
			again = append(again, i)
		}
		idx = again
	}
	return nil
}

// holdsValue reports whether blob is a live record of p's token and p's
// value, as another attempt of p's call would have written it. Absent,
// of a destroyed generation, or of another value, it is not.
func (t *Tokenizer) holdsValue(ctx context.Context, tk *tenantKeys, p *pending, blob []byte) (bool, error) {
	if blob == nil {
		return false, nil
	}
	h, err := parseEnvelopeHeader(blob)
	if err != nil {
		return false, nil
	}
	g, err := t.keys.genKeys(ctx, tk, h.gen)
	if errors.Is(err, ErrKeyDestroyed) {
		return false, nil
	}
	if err != nil {
		return false, err
	}
	v, _, err := openRecordMAC(g.dek, p.tok, p.text, blob)
	return err == nil && v == p.value, nil
}

// putNewShaped stores one shaped record, a canary's, minting its token
// again while the name is taken; seal seals the record for a token.
func (t *Tokenizer) putNewShaped(ctx context.Context, tk *tenantKeys, c *Class, value string, ttl time.Duration, seal func(tok Token) ([]byte, error)) (string, error) {
	p := pending{class: c, value: value}
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
