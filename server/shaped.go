package server

import "github.com/jeton-dev/jeton/tokenizer"

// shapedLookup is what p may ask of a format-preserving token, which names
// neither its tenant nor its class: it is looked up in p's tenants (only
// the one named, if any, and only if it is p's) and opened only if its
// record's class is one the token's shape fits that p may see under the
// call's purpose (level). ok is false when nothing is left to look up: the
// token is then answered as unknown without touching the store.
func shapedLookup(p *Principal, tok tokenizer.Token, classes []string, tenant string, level func(class string) Reveal) (l tokenizer.ShapedLookup, ok bool) {
	l.Token = tok
	for _, c := range classes {
		if level(c) != RevealNone {
			l.Classes = append(l.Classes, c)
		}
	}
	switch {
	case tenant == "":
		l.Tenants = p.Tenants
	case p.HasTenant(tenant):
		l.Tenants = []string{tenant}
	}
	return l, len(l.Classes) > 0 && len(l.Tenants) > 0
}
