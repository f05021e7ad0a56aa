package tokenizer_test

import (
	"context"
	"crypto/aes"
	"crypto/cipher"
	"crypto/hkdf"
	"crypto/sha256"
	"testing"

	"github.com/jeton-dev/jeton/tokenizer"
	"github.com/jeton-dev/jeton/tokenizer/localkeys"
	"github.com/jeton-dev/jeton/tokenizer/memstore"
)

// An attacker holding a store dump and the power to unwrap keys (the KEK)
// but no token and no value must not open an idempotency entry: that would
// give tokens, and with them every record minted in the last day.
func TestIdempotencyEntriesDoNotOpenFromADump(t *testing.T) {
	km, err := localkeys.New(true)
	if err != nil {
		t.Fatal(err)
	}
	store := memstore.New()
	tz, err := tokenizer.New(tokenizer.Config{Classes: tokenizer.DefaultClasses(), Keys: km, Store: store})
	if err != nil {
		t.Fatal(err)
	}
	ctx := context.Background()
	items := []tokenizer.Item{{Class: "name", Value: "Idem Person", Subject: "subject-1"}}
	res, err := tz.Tokenize(ctx, "acme", items, "caller\x00retry-1")
	if err != nil || res[0].Err != nil {
		t.Fatalf("Tokenize: %v", err)
	}
	dump := func(prefix string) (names []string, blobs [][]byte) {
		t.Helper()
		if err := store.Scan(ctx, prefix, func(keys []string) error { names = append(names, keys...); return nil }); err != nil {
			t.Fatal(err)
		}
		if blobs, err = store.Get(ctx, names); err != nil {
			t.Fatal(err)
		}
		return names, blobs
	}
	entries, entryBlobs := dump("jeton:i:acme:")
	roots, rootBlobs := dump("jeton:k:acme:root")
	if len(entries) != 1 || len(roots) != 1 {
		t.Fatalf("%d entries, %d root keys", len(entries), len(roots))
	}
	// Root key blob v3: 03 | created (8) | wrapped, bound to its identity,
	// which is no secret.
	b := rootBlobs[0]
	if b[0] != 4 {
		t.Fatalf("root key blob version %d", b[0])
	}
	kek, ad := tokenizer.KeyIdentity("acme", 0, b)
	root, err := km.Unwrap(ctx, kek, b[9:], ad)
	if err != nil {
		t.Fatalf("the attacker's unwrap failed: %v", err)
	}
	// Every key the root derives that the attacker could guess a label for.
	for _, label := range []string{"jeton/v1/idempotency", "jeton/v1/index", "jeton/v1/deterministic"} {
		k, err := hkdf.Expand(sha256.New, root, label, 32)
		if err != nil {
			t.Fatal(err)
		}
		block, _ := aes.NewCipher(k)
		aead, _ := cipher.NewGCM(block)
		blob := entryBlobs[0]
		if _, err := aead.Open(nil, blob[1:13], blob[13:], []byte(entries[0])); err == nil {
			t.Fatalf("an idempotency entry opened with the root-derived key %q", label)
		}
	}
	// The retrying caller, who resends the value, still gets its token back.
	again, err := tz.Tokenize(ctx, "acme", items, "caller\x00retry-1")
	if err != nil || again[0].Token != res[0].Token {
		t.Fatalf("a retry minted another token: %v", err)
	}
}
