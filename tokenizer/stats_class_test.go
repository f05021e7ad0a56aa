package tokenizer_test

import (
	"bytes"
	"context"
	"fmt"
	"maps"
	"testing"

	"github.com/jeton-dev/jeton/integration/testenv"
	"github.com/jeton-dev/jeton/tokenizer"
	"github.com/jeton-dev/jeton/tokenizer/localkeys"
	"github.com/jeton-dev/jeton/tokenizer/memstore"
	"github.com/jeton-dev/jeton/tokenizer/redisstore"
)

// classStores are the stores the per-class counts are checked on.
var classStores = []struct {
	name string
	open func(t *testing.T) tokenizer.Store
}{
	{"memstore", func(*testing.T) tokenizer.Store { return memstore.New() }},
	{"redis", func(t *testing.T) tokenizer.Store {
		r := testenv.StartRedis(t)
		c, err := redisstore.NewClient(redisstore.Config{Addrs: []string{r.Addr}})
		if err != nil {
			t.Fatal(err)
		}
		t.Cleanup(func() { _ = c.Close() })
		return redisstore.New(c)
	}},
}

func newClassTokenizer(t *testing.T, store tokenizer.Store) *tokenizer.Tokenizer {
	t.Helper()
	km, err := localkeys.New(true)
	if err != nil {
		t.Fatal(err)
	}
	tz, err := tokenizer.New(tokenizer.Config{Classes: tokenizer.DefaultClasses(), Keys: km, Store: store})
	if err != nil {
		t.Fatal(err)
	}
	return tz
}

func tokenizeN(t *testing.T, tz *tokenizer.Tokenizer, tenant, class string, n int) []string {
	t.Helper()
	items := make([]tokenizer.Item, n)
	for i := range items {
		v := fmt.Sprintf("Class Testperson %d", i)
		switch class {
		case "email":
			v = fmt.Sprintf("class.test.%d@example.org", i)
		case "phone":
			v = fmt.Sprintf("+44 20 7946 0%03d", i)
		}
		items[i] = tokenizer.Item{Class: class, Value: v}
	}
	res, err := tz.Tokenize(context.Background(), tenant, items, "")
	if err != nil {
		t.Fatal(err)
	}
	out := make([]string, n)
	for i, r := range res {
		if r.Err != nil {
			t.Fatalf("Tokenize %s item %d: %v", class, i, r.Err)
		}
		out[i] = r.Token
	}
	return out
}

func statsOf(t *testing.T, tz *tokenizer.Tokenizer, tenants ...string) []tokenizer.TenantStats {
	t.Helper()
	st, err := tz.Stats(context.Background(), tenants)
	if err != nil {
		t.Fatal(err)
	}
	return st
}

// Stats counts records per class from the v2 header; v1 records count as
// "unknown", and every count adds up to the tenant's total.
func TestStatsByClass(t *testing.T) {
	for _, s := range classStores {
		t.Run(s.name, func(t *testing.T) {
			ctx := context.Background()
			tz := newClassTokenizer(t, s.open(t))
			names := tokenizeN(t, tz, "acme", "name", 4)
			emails := tokenizeN(t, tz, "acme", "email", 3)
			if _, err := tz.RotateGeneration(ctx, "acme"); err != nil {
				t.Fatal(err)
			}
			tokenizeN(t, tz, "acme", "phone", 2)
			tokenizeN(t, tz, "acme-2", "email", 1)
			canary, err := tz.MintCanary(ctx, "acme", "phone", "", "", false)
			if err != nil {
				t.Fatal(err)
			}

			st := statsOf(t, tz, "acme", "acme-2", "nobody")
			want := []map[string]int64{
				{"name": 4, "email": 3, "phone": 3},
				{"email": 1},
				{},
			}
			for i, w := range want {
				if !maps.Equal(st[i].RecordsByClass, w) {
					t.Errorf("%s: RecordsByClass = %v; want %v", st[i].Tenant, st[i].RecordsByClass, w)
				}
			}
			if st[0].Records != 10 || st[0].Unreadable != 0 {
				t.Errorf("acme: %d records, %d unreadable; want 10, 0", st[0].Records, st[0].Unreadable)
			}

			// Records sealed as v1 still open and count as unknown.
			for _, tok := range []string{names[0], names[1], emails[2]} {
				if err := tokenizer.ResealAs(ctx, tz, tok, 1); err != nil {
					t.Fatal(err)
				}
			}
			wantRevealed(t, tz, true, "v1 records", names[0], names[1], emails[2], canary)
			st = statsOf(t, tz, "acme")
			if w := map[string]int64{"name": 2, "email": 2, "phone": 3, tokenizer.UnknownClass: 3}; !maps.Equal(st[0].RecordsByClass, w) {
				t.Errorf("after v1: RecordsByClass = %v; want %v", st[0].RecordsByClass, w)
			}
			var byGen int64
			for _, g := range st[0].Generations {
				byGen += g.Records
			}
			if byGen != 10 {
				t.Errorf("generations add up to %d; want 10", byGen)
			}
		})
	}
}

// A record whose header names another class does not open, even though
// the rest of it is intact; putting the class back opens it again.
func TestSwappedClassHeader(t *testing.T) {
	for _, s := range classStores {
		t.Run(s.name, func(t *testing.T) {
			ctx := context.Background()
			store := s.open(t)
			tz := newClassTokenizer(t, store)
			toks := tokenizeN(t, tz, "acme", "email", 2)
			tok, other := toks[0], toks[1]
			key, err := tokenizer.RecordKey(ctx, tz, tok)
			if err != nil {
				t.Fatal(err)
			}
			blobs, err := store.Get(ctx, []string{key})
			if err != nil || blobs[0] == nil {
				t.Fatalf("Get record: %v", err)
			}
			orig := blobs[0]
			// [5] is the class length, [6:6+n] the class: "email" and
			// "phone" have the same length.
			if i := bytes.Index(orig, []byte("\x05email")); i != 5 {
				t.Fatalf("class not at offset 5 of the header: %x", orig[:11])
			}
			swapped := bytes.Clone(orig)
			copy(swapped[6:], "phone")
			put := func(b []byte) {
				t.Helper()
				if err := store.Put(ctx, []tokenizer.Entry{{Key: key, Value: b}}); err != nil {
					t.Fatal(err)
				}
			}
			put(swapped)
			wantRevealed(t, tz, false, "swapped class", tok)
			wantRevealed(t, tz, true, "untouched record", other)
			// The counts trust the clear header.
			if st := statsOf(t, tz, "acme"); !maps.Equal(st[0].RecordsByClass, map[string]int64{"email": 1, "phone": 1}) {
				t.Errorf("RecordsByClass = %v", st[0].RecordsByClass)
			}
			put(orig)
			wantRevealed(t, tz, true, "class restored", tok)

			// A header class that is no name makes the record unreadable.
			bad := bytes.Clone(orig)
			copy(bad[6:], "EMAIL")
			put(bad)
			wantRevealed(t, tz, false, "class not a name", tok)
			if st := statsOf(t, tz, "acme"); st[0].Unreadable != 1 || !maps.Equal(st[0].RecordsByClass, map[string]int64{"email": 1}) {
				t.Errorf("unreadable %d, RecordsByClass %v; want 1 and email: 1", st[0].Unreadable, st[0].RecordsByClass)
			}
		})
	}
}
