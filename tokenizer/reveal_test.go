package tokenizer_test

import (
	"bytes"
	"context"
	"fmt"
	"testing"

	"github.com/jeton-dev/jeton/tokenizer"
)

// TestRevealLargeBatch: a batch large enough to be opened over several
// cores answers each token as it would alone, whatever its neighbours:
// records of two tenants and two generations open; those of a destroyed
// generation, swapped or edited records, and unknown tenants are not
// found; a token repeated gets its value each time.
func TestRevealLargeBatch(t *testing.T) {
	e := newEnv(t)
	ctx := context.Background()
	items := func(prefix string, n int) []tokenizer.Item {
		out := make([]tokenizer.Item, n)
		for i := range out {
			out[i] = tokenizer.Item{Class: "name", Value: fmt.Sprintf("Fake %s %04d", prefix, i)}
		}
		return out
	}
	type want struct {
		tok, value string
		gen        uint32
	}
	var all []want
	add := func(tenant, prefix string, n int, gen uint32) []want {
		its := items(prefix, n)
		var out []want
		for i, tok := range tokenize(t, e.tz, tenant, its, "") {
			out = append(out, want{tok, its[i].Value, gen})
		}
		all = append(all, out...)
		return out
	}
	// one mints a single record and returns its store key too.
	one := func(tenant, value string, gen uint32) (want, string) {
		m := e.store.mark()
		tok := tokenize(t, e.tz, tenant, []tokenizer.Item{{Class: "name", Value: value}}, "")[0]
		w := want{tok, value, gen}
		all = append(all, w)
		return w, e.store.recordKeysSince(m)[0]
	}

	old := add("acme", "Old", 200, 1)
	x, xKey := one("acme", "Fake Swapped One", 1)
	if _, err := e.tz.RotateGeneration(ctx, "acme"); err != nil {
		t.Fatal(err)
	}
	add("acme", "New", 200, 2)
	y, yKey := one("acme", "Fake Swapped Two", 2)
	z, zKey := one("beta", "Fake Edited", 1)
	add("beta", "Beta", 150, 1)

	// x and y swap places; one byte of z changes.
	vals, err := e.mem.Get(ctx, []string{xKey, yKey, zKey})
	if err != nil {
		t.Fatal(err)
	}
	z2 := bytes.Clone(vals[2])
	z2[len(z2)-1] ^= 1
	if err := e.mem.Put(ctx, []tokenizer.Entry{{Key: xKey, Value: vals[1]}, {Key: yKey, Value: vals[0]}, {Key: zKey, Value: z2}}); err != nil {
		t.Fatal(err)
	}
	gone := map[string]bool{x.tok: true, y.tok: true, z.tok: true}
	// acme's first generation is destroyed: its records are not found.
	if _, err := e.mem.Delete(ctx, []string{"jeton:k:acme:gen:1"}); err != nil {
		t.Fatal(err)
	}
	for _, w := range old {
		gone[w.tok] = true
	}
	// A token repeated, and one of a tenant with no keys.
	all = append(all, all[300], all[301])
	stranger := tokenize(t, e.newTokenizer(t), "gamma", items("Gamma", 1), "")[0]
	if _, err := e.mem.Delete(ctx, []string{"jeton:k:gamma:root"}); err != nil {
		t.Fatal(err)
	}
	all = append(all, want{tok: stranger})
	gone[stranger] = true

	texts := make([]string, len(all))
	for i, w := range all {
		texts[i] = w.tok
	}
	if len(texts) < 512 {
		t.Fatalf("%d tokens: too few to be opened in parallel", len(texts))
	}
	got := reveal(t, e.newTokenizer(t), texts...)
	opened := 0
	for i, w := range all {
		if gone[w.tok] {
			wantNotFound(t, got[i])
			continue
		}
		wantValue(t, got[i], w.value)
		if got[i].Generation != w.gen {
			t.Errorf("token %d: generation %d, want %d", i, got[i].Generation, w.gen)
		}
		opened++
	}
	if opened != 200+150+2 {
		t.Fatalf("%d records opened, want %d", opened, 200+150+2)
	}
}
