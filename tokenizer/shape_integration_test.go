package tokenizer_test

// Format-preserving tokens against a real redis-server (SET NX is the
// claim) and a real Vault.

import (
	"bytes"
	"errors"
	"testing"
	"time"

	"github.com/jeton-dev/jeton/integration/testenv"
	"github.com/jeton-dev/jeton/tokenizer"
	"github.com/jeton-dev/jeton/tokenizer/redisstore"
)

// TestShapedAgainstRedis: a forced collision is caught by Redis's SET NX
// and minted again; a token in two tenants is ambiguous to a reader of both
// and its own value to each; and Redis holds neither a value nor a token.
func TestShapedAgainstRedis(t *testing.T) {
	r := testenv.StartRedis(t)
	e := startRealEnv(t)
	rc, err := redisstore.NewClient(redisstore.Config{Addrs: []string{r.Addr}})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = rc.Close() })
	store := &countingStore{Store: redisstore.New(rc)}
	rr := &replayReader{inner: newSeeded(11)}
	tz, err := tokenizer.New(tokenizer.Config{Classes: append(tokenizer.DefaultClasses(), shapedClasses()...),
		Keys: e.keys(t), Store: store, Rand: rr, KeyRefresh: time.Second})
	if err != nil {
		t.Fatal(err)
	}
	mint := func(tenant, class, value string) string {
		return tokenize(t, tz, tenant, []tokenizer.Item{{Class: class, Value: value}}, "")[0]
	}
	mint("acme", "name", "Key Maker")
	mint("other", "name", "Key Maker")
	rr.again()
	rr.again()

	// The same draw twice in one tenant: the second is minted again.
	a := mint("acme", "mobile", "0600000042")
	rr.again()
	b := mint("acme", "mobile", "0700000042")
	if a == b || store.refused != 1 {
		t.Fatalf("%d collisions, tokens equal: %v; want one collision, minted again", store.refused, a == b)
	}
	// The first draw again, in another tenant: allowed, as each tenant has
	// its own record names.
	rr.again() // replays b's reads, which began with a's draw
	c := mint("other", "mobile", "0800000042")
	if c != a {
		t.Fatal("the replayed draw did not give the same token in the other tenant")
	}
	all := []string{"mobile"}
	for _, tc := range []struct {
		tok     string
		tenants []string
		want    string
	}{
		{a, []string{"acme"}, "0600000042"},
		{b, []string{"acme"}, "0700000042"},
		{a, []string{"other"}, "0800000042"},
		{b, []string{"acme", "other"}, "0700000042"},
	} {
		if got := lookupShaped(t, tz, tc.tok, tc.tenants, all); got.Err != nil || got.Value != tc.want {
			t.Errorf("%v: %v; want its own value", tc.tenants, got.Err)
		}
	}
	if got := lookupShaped(t, tz, a, []string{"acme", "other"}, all); !errors.Is(got.Err, tokenizer.ErrAmbiguous) || got.Value != "" {
		t.Errorf("a token in both tenants: %v; want ErrAmbiguous", got.Err)
	}

	// Redis holds no value and no token.
	rdb := r.Client(t)
	keys, err := rdb.Keys(ctxTimeout(t), "*").Result()
	if err != nil {
		t.Fatal(err)
	}
	for _, k := range keys {
		v, _ := rdb.Get(ctxTimeout(t), k).Bytes()
		for _, secret := range []string{a, b, "0600000042", "0700000042", "0800000042", "600000042"} {
			if bytes.Contains([]byte(k), []byte(secret)) || bytes.Contains(v, []byte(secret)) {
				t.Fatalf("Redis key %d of %d holds a value or a token", len(k), len(keys))
			}
		}
	}
}

// TestShapedBirthDatesAgainstRedisAndVault: date-only tokens minted with
// a real Redis store and Vault keys are dates in the reserved range with an
// odd Luhn sum, reveal each value as sent, and a token with a digit
// changed to break the parity is refused before any lookup; Redis holds
// neither a value nor a token.
func TestShapedBirthDatesAgainstRedisAndVault(t *testing.T) {
	r := testenv.StartRedis(t)
	e := startRealEnv(t)
	rc, err := redisstore.NewClient(redisstore.Config{Addrs: []string{r.Addr}})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = rc.Close() })
	store := &countingStore{Store: redisstore.New(rc)}
	tz, err := tokenizer.New(tokenizer.Config{Classes: append(tokenizer.DefaultClasses(), shapedClasses()...),
		Keys: e.keys(t), Store: store, KeyRefresh: time.Second})
	if err != nil {
		t.Fatal(err)
	}
	var items []tokenizer.Item
	for i := range 300 {
		items = append(items, tokenizer.Item{Class: "birth", Value: time.Date(1950, 1, 1, 0, 0, 0, 0, time.UTC).AddDate(0, 0, 61*i).Format(birthLayout)})
	}
	toks := tokenize(t, tz, "acme", items, "")
	for i, tok := range toks {
		checkFormat(t, "birth", items[i].Value, tok)
		if luhnSum(tok)%2 != 1 {
			t.Fatalf("item %d: token with an even Luhn sum", i)
		}
		if got := lookupShaped(t, tz, tok, []string{"acme"}, []string{"birth"}); got.Err != nil || got.Value != items[i].Value {
			t.Fatalf("item %d: %v; want the value as sent", i, got.Err)
		}
	}
	// The last digit changed by one flips the parity: no lookup.
	tok := toks[0]
	last := tok[len(tok)-1]
	mistyped := tok[:len(tok)-1] + string(rune('0'+(last-'0'+1)%10))
	if _, _, err := tz.Recognize(mistyped); !errors.Is(err, tokenizer.ErrInvalidToken) {
		t.Errorf("a token with its parity broken: %v; want ErrInvalidToken", err)
	}
	if store.claimed != len(items) || store.putRecord != 0 {
		t.Errorf("%d records claimed, %d put, for %d items", store.claimed, store.putRecord, len(items))
	}

	rdb := r.Client(t)
	keys, err := rdb.Keys(ctxTimeout(t), "*").Result()
	if err != nil {
		t.Fatal(err)
	}
	for _, k := range keys {
		v, _ := rdb.Get(ctxTimeout(t), k).Bytes()
		for i := range items {
			for _, secret := range []string{toks[i], items[i].Value} {
				if bytes.Contains([]byte(k), []byte(secret)) || bytes.Contains(v, []byte(secret)) {
					t.Fatalf("Redis key %d of %d holds a birth date or its token", len(k), len(keys))
				}
			}
		}
	}
}
