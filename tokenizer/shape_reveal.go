package tokenizer

import (
	"context"
	"errors"
	"fmt"
	"slices"
	"strings"
)

// ErrAmbiguous means a format-preserving token opens a record, of a class
// the caller may see, in more than one of the tenants it was looked up in.
// Tokens are unique within a tenant only; naming the tenant resolves it.
var ErrAmbiguous = errors.New("tokenizer: token matches records in several of the caller's tenants; name the tenant")

// ErrNotPermitted is how RevealShaped reports a record whose class the
// caller may not see. It wraps ErrNotFound, and callers answer it exactly
// as an unknown token; it exists so an audit log can say "denied".
var ErrNotPermitted = fmt.Errorf("%w: class not permitted", ErrNotFound)

// Recognize parses the text of a token of any shape without touching
// storage. An opaque token (tok_...) is parsed by ParseToken and names its
// tenant and class. Any other text is tried against the shape of every
// configured format-preserving class: a token that passes one's check
// comes back as a Token whose Shaped is its canonical text, with the names
// of the classes whose shape it fits (more than one when classes share a
// shape); its tenant and class are those of its record, which
// RevealShaped finds. The error is ErrInvalidToken and never quotes s.
func (t *Tokenizer) Recognize(s string) (Token, []string, error) {
	if strings.HasPrefix(s, tokenPrefix) {
		tok, err := ParseToken(s)
		return tok, nil, err
	}
	var tok Token
	var classes []string
	for _, name := range t.order {
		sh := t.classes[name].shaper
		if sh == nil {
			continue
		}
		canon, ok := sh.parse(s)
		if !ok || (tok.Shaped != "" && canon != tok.Shaped) {
			continue
		}
		tok.Shaped = canon
		classes = append(classes, name)
	}
	if tok.Shaped == "" {
		return Token{}, nil, ErrInvalidToken
	}
	tok.Version = tokenVersion1
	return tok, classes, nil
}

// ShapedLookup asks RevealShaped for the record of a format-preserving
// token.
type ShapedLookup struct {
	// Token is as Recognize returned it.
	Token Token
	// Tenants are where to look: the caller's tenants, or the one it
	// named.
	Tenants []string
	// Classes are the classes the caller may see. A record of any other
	// class is never opened.
	Classes []string
}

// RevealShaped opens the records of format-preserving tokens. A token's
// record name is keyed per tenant, so it is looked up under each of its
// lookup's tenants, in one batch; the header of a record found names its
// class, and the record is opened only when that class is one of the
// lookup's, under that tenant and class: the associated data binds both,
// so a header edited to name another class, or a record copied from
// another tenant, fails to open. Each result's Token then names the
// record's tenant and class.
//
// A token whose record opens in more than one tenant gets ErrAmbiguous,
// and no value; a record of a class outside the lookup's gets
// ErrNotPermitted, which is ErrNotFound to the caller. Authorising the
// tenants and classes is the caller's job. The error is non-nil only when
// nothing could be done, and then no value may be used.
func (t *Tokenizer) RevealShaped(ctx context.Context, lookups []ShapedLookup) ([]Revealed, error) {
	out := make([]Revealed, len(lookups))
	type probe struct {
		i      int
		tenant string
		tk     *tenantKeys
	}
	var probes []probe
	var names []string
	tenants := map[string]*tenantKeys{}
	for i, l := range lookups {
		out[i] = Revealed{Token: l.Token, Err: ErrNotFound}
		if l.Token.Shaped == "" {
			continue
		}
		for _, tenant := range l.Tenants {
			tk, seen := tenants[tenant]
			if !seen {
				var err error
				tk, err = t.keys.tenant(ctx, tenant, false)
				if err != nil && !errors.Is(err, ErrNotFound) {
					return nil, err
				}
				tenants[tenant] = tk
			}
			if tk == nil {
				continue
			}
			probes = append(probes, probe{i: i, tenant: tenant, tk: tk})
			names = append(names, recordName(tk, l.Token.Shaped))
		}
	}
	if len(names) == 0 {
		return out, nil
	}
	blobs, err := t.store.Get(ctx, names)
	if err != nil {
		return nil, unavailable("store", err)
	}
	opened := make([]int, len(lookups))
	for j, pr := range probes {
		if blobs[j] == nil || opened[pr.i] > 1 {
			continue
		}
		h, err := parseEnvelopeHeader(blobs[j])
		if err != nil {
			continue
		}
		l := lookups[pr.i]
		if !slices.Contains(l.Classes, h.class) {
			if opened[pr.i] == 0 {
				out[pr.i].Err = ErrNotPermitted
			}
			continue
		}
		dek, err := t.keys.dek(ctx, pr.tk, h.gen)
		if errors.Is(err, ErrKeyDestroyed) {
			continue
		}
		if err != nil {
			return nil, err
		}
		tok := Token{Class: h.class, Tenant: pr.tenant, Version: tokenVersion1, Shaped: l.Token.Shaped}
		v, flags, err := openRecordMAC(dek, tok, tok.Shaped, blobs[j])
		if err != nil {
			continue // tampered or swapped: indistinguishable from unknown
		}
		if opened[pr.i]++; opened[pr.i] > 1 {
			out[pr.i] = Revealed{Token: l.Token, Err: ErrAmbiguous}
			continue
		}
		out[pr.i] = Revealed{Token: tok, Value: v, Flags: flags, Generation: h.gen}
	}
	return out, nil
}

// LocateShaped returns, for each format-preserving token, the tenants among
// tenants that hold a record under its name, whatever its class. It opens
// nothing: erasure needs only to know where a record is.
func (t *Tokenizer) LocateShaped(ctx context.Context, tokens []Token, tenants []string) ([][]string, error) {
	var tks []*tenantKeys
	for _, tenant := range tenants {
		tk, err := t.keys.tenant(ctx, tenant, false)
		if errors.Is(err, ErrNotFound) {
			continue
		}
		if err != nil {
			return nil, err
		}
		tks = append(tks, tk)
	}
	out := make([][]string, len(tokens))
	if len(tks) == 0 || len(tokens) == 0 {
		return out, nil
	}
	names := make([]string, 0, len(tokens)*len(tks))
	for _, tok := range tokens {
		for _, tk := range tks {
			names = append(names, recordName(tk, tok.String()))
		}
	}
	blobs, err := t.store.Get(ctx, names)
	if err != nil {
		return nil, unavailable("store", err)
	}
	for i := range tokens {
		for k, tk := range tks {
			if blobs[i*len(tks)+k] != nil {
				out[i] = append(out[i], tk.name)
			}
		}
	}
	return out, nil
}
