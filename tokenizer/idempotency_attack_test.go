package tokenizer_test

import (
	"context"
	"crypto/aes"
	"crypto/cipher"
	"crypto/hkdf"
	"crypto/hmac"
	"crypto/sha256"
	"encoding/binary"
	"hash"
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
	const callerKey = "caller\x00retry-1"
	res, err := tz.Tokenize(ctx, "acme", items, callerKey)
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
	// Every key the attacker can derive from the root without the
	// values: the root's labelled keys, and the entry's key computed over
	// the caller's key (which the attacker is granted) but not the items.
	// Each is tried with the associated data the entry is sealed with.
	var candidates [][]byte
	for _, label := range []string{"jeton/v1/idempotency", "jeton/v1/index", "jeton/v1/deterministic"} {
		k, err := hkdf.Expand(sha256.New, root, label, 32)
		if err != nil {
			t.Fatal(err)
		}
		candidates = append(candidates, k)
	}
	idem := candidates[0]
	lp := func(m hash.Hash, s string) {
		m.Write(binary.BigEndian.AppendUint32(nil, uint32(len(s))))
		m.Write([]byte(s))
	}
	for _, n := range []uint32{0, 1} {
		m := hmac.New(sha256.New, idem)
		lp(m, "jeton/v2/idempotency")
		lp(m, callerKey)
		m.Write(binary.BigEndian.AppendUint32(nil, n))
		candidates = append(candidates, m.Sum(nil))
	}
	// The entry: its state byte, then version 0x01 | nonce | sealed seed.
	blob := entryBlobs[0][1:]
	for _, ad := range []string{entries[0], "jeton/v2/idempotency\x00" + entries[0]} {
		for i, k := range candidates {
			block, _ := aes.NewCipher(k)
			aead, _ := cipher.NewGCM(block)
			if _, err := aead.Open(nil, blob[1:13], blob[13:], []byte(ad)); err == nil {
				t.Fatalf("an idempotency entry opened with a key derived without the values (candidate %d)", i)
			}
		}
	}
	// The same derivation over the items does open it: the test would
	// notice a change of format that made the attempts above meaningless.
	m := hmac.New(sha256.New, idem)
	lp(m, "jeton/v2/idempotency")
	lp(m, callerKey)
	m.Write(binary.BigEndian.AppendUint32(nil, uint32(len(items))))
	for _, it := range items {
		for _, f := range []string{it.Class, it.Value, it.Subject} {
			lp(m, f)
		}
	}
	block, _ := aes.NewCipher(m.Sum(nil))
	aead, _ := cipher.NewGCM(block)
	if _, err := aead.Open(nil, blob[1:13], blob[13:], []byte("jeton/v2/idempotency\x00"+entries[0])); err != nil {
		t.Fatal("the entry does not open even with the values: the test no longer models its sealing")
	}
	// The retrying caller, who resends the value, still gets its token back.
	again, err := tz.Tokenize(ctx, "acme", items, callerKey)
	if err != nil || again[0].Token != res[0].Token {
		t.Fatalf("a retry minted another token: %v", err)
	}
}
