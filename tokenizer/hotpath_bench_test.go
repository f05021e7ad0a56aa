package tokenizer

import (
	"bytes"
	"encoding/binary"
	"fmt"
	"strconv"
	"testing"
	"time"
)

// Micro-benchmarks of the per-item steps of Tokenize and Reveal, each as
// the service calls it (pooled keyed states, v2 envelopes). They report
// allocations because allocation, not arithmetic, is what GC turns into
// CPU under load. `make test` runs each once so they cannot rot;
// `go test -run '^$' -bench . ./tokenizer/` measures them.

// benchKeys returns a tenant's keys built from fixed bytes, as the keyring
// would hold them, and a DEK.
func benchKeys() (*tenantKeys, *macKey) {
	root := newMACKey(bytes.Repeat([]byte{0x42}, 32))
	tk := &tenantKeys{
		name:  "acme",
		index: newMACKey(root.expand32(nil, "jeton/v1/index")),
		idem:  newMACKey(root.expand32(nil, "jeton/v1/idempotency")),
	}
	return tk, newMACKey(bytes.Repeat([]byte{0x17}, 32))
}

// benchToken returns the n-th token of a fixed sequence.
func benchToken(n int) Token {
	tok := Token{Class: "name", Tenant: "acme", Version: tokenVersion1}
	binary.BigEndian.PutUint64(tok.Payload[:], uint64(n))
	return tok
}

const benchValue = "Fake Person 0000001" // the size of a short name

// BenchmarkMintText measures a random token's text form: what minting
// costs beyond the batch's one read of randomness.
func BenchmarkMintText(b *testing.B) {
	b.ReportAllocs()
	n := 0
	for b.Loop() {
		n++
		if s := benchToken(n).String(); len(s) == 0 {
			b.Fatal("empty token")
		}
	}
}

// BenchmarkRecordName measures naming a record: a keyed hash of the token
// under the tenant's index key, as every Tokenize and Reveal item does.
func BenchmarkRecordName(b *testing.B) {
	tk, _ := benchKeys()
	text := benchToken(1).String()
	b.ReportAllocs()
	for b.Loop() {
		if recordName(tk, text) == "" {
			b.Fatal("empty name")
		}
	}
}

// BenchmarkSeal measures sealing one record: the per-token key
// derivation, a new AES-GCM, and the encryption.
func BenchmarkSeal(b *testing.B) {
	_, dek := benchKeys()
	tok := benchToken(1)
	text := tok.String()
	nonce := make([]byte, nonceSize)
	b.ReportAllocs()
	b.SetBytes(int64(len(benchValue)))
	for b.Loop() {
		if _, err := sealRecordMAC(dek, nonce, 1, 0, tok, text, benchValue); err != nil {
			b.Fatal(err)
		}
	}
}

// BenchmarkOpen measures opening one record, as Reveal does per token.
func BenchmarkOpen(b *testing.B) {
	_, dek := benchKeys()
	tok := benchToken(1)
	text := tok.String()
	blob, err := sealRecordMAC(dek, make([]byte, nonceSize), 1, 0, tok, text, benchValue)
	if err != nil {
		b.Fatal(err)
	}
	b.ReportAllocs()
	b.SetBytes(int64(len(benchValue)))
	for b.Loop() {
		if v, _, err := openRecordMAC(dek, tok, text, blob); err != nil || v != benchValue {
			b.Fatalf("open: %v", err)
		}
	}
}

// BenchmarkIdempotencyCall measures what an idempotency key adds to a
// call of 1,000 items besides the store's round trips: the keyed digest of
// the items that derives the entry's key, naming the entry and sealing
// it. It reports the cost per item.
func BenchmarkIdempotencyCall(b *testing.B) {
	tk, _ := benchKeys()
	items := make([]Item, 1000)
	for i := range items {
		items[i] = Item{Class: "name", Value: benchValue, Subject: "fake-subject-" + strconv.Itoa(i/4)}
	}
	e := &callEntry{}
	b.ReportAllocs()
	i := 0
	for b.Loop() {
		i++
		c := newIdemCall(tk, "caller\x00key-"+strconv.Itoa(i), items)
		if err := c.seal(benchZeros{}, e); err != nil {
			b.Fatal(err)
		}
	}
	b.ReportMetric(float64(b.Elapsed().Nanoseconds())/float64(b.N*len(items)), "ns/item")
}

// benchZeros keeps nonces off crypto/rand: they do not matter here.
type benchZeros struct{}

func (benchZeros) Read(p []byte) (int, error) { clear(p); return len(p), nil }

// benchBatch returns a Tokenizer holding the classes of `make bench`'s
// batches (their normalisation steps included) and a batch of 1,000 of
// their items, one data subject per four, as that benchmark sends them.
func benchBatch() (*Tokenizer, []Item) {
	t := &Tokenizer{classes: map[string]*Class{}, now: time.Now}
	for _, c := range []Class{
		{Name: "name", Kind: KindRandom, Normalize: []string{"trim", "collapse-space"}, Mask: "initials", MaxLen: 256},
		{Name: "email", Kind: KindRandom, Normalize: []string{"trim", "lower", "email"}, Mask: "email", MaxLen: 320},
		{Name: "address", Kind: KindRandom, Normalize: []string{"trim", "collapse-space"}, Mask: "all", MaxLen: 1024},
		{Name: "text", Kind: KindRandom, Mask: "all"},
	} {
		t.classes[c.Name] = &c
	}
	values := map[string]string{
		"name":    "Fake Person %07d",
		"email":   "fake.person.%07d@example.test",
		"address": "%d Fake Street, 00000 Nowhere",
		"text":    "fake note %07d written by the benchmark",
	}
	items := make([]Item, 1000)
	for i := range items {
		c := []string{"name", "email", "address", "text"}[i%4]
		items[i] = Item{Class: c, Value: fmt.Sprintf(values[c], i), Subject: "fake-subject-" + strconv.Itoa(i/4)}
	}
	return t, items
}

// BenchmarkValidate measures checking and normalising a batch of 1,000
// items, and reports the cost per item.
func BenchmarkValidate(b *testing.B) {
	t, items := benchBatch()
	b.ReportAllocs()
	for b.Loop() {
		if res, work := t.validate(items); len(work) != len(items) {
			b.Fatalf("validate refused an item: %v", res)
		}
	}
	b.ReportMetric(float64(b.Elapsed().Nanoseconds())/float64(b.N*len(items)), "ns/item")
}

// BenchmarkSubjectAdds measures grouping the record names of a batch of
// 1,000 items by data subject (one per four items) into the additions to
// their indexes, and reports the cost per item.
func BenchmarkSubjectAdds(b *testing.B) {
	tk, _ := benchKeys()
	t, items := benchBatch()
	_, work := t.validate(items)
	for i := range work {
		work[i].name = recordName(tk, benchToken(i).String())
	}
	b.ReportAllocs()
	for b.Loop() {
		if adds := subjectAdds(tk, work); len(adds) != len(items)/4 {
			b.Fatalf("%d subject indexes, want %d", len(adds), len(items)/4)
		}
	}
	b.ReportMetric(float64(b.Elapsed().Nanoseconds())/float64(b.N*len(items)), "ns/item")
}
