package tokenizer_test

import (
	"context"
	"fmt"
	"strconv"
	"testing"

	"github.com/jeton-dev/jeton/tokenizer"
	"github.com/jeton-dev/jeton/tokenizer/localkeys"
	"github.com/jeton-dev/jeton/tokenizer/memstore"
)

// Benchmarks of the public Tokenize and Reveal paths in process, on the
// in-memory store and in-process keys: minting and opening with
// everything but the network. They report allocations per call and time
// per item. End-to-end figures over gRPC, with Redis and Vault, come from
// `make bench`.

// benchTokenizer returns a Tokenizer with one random and one
// deterministic class, and the tenant's keys already created.
func benchTokenizer(b *testing.B) *tokenizer.Tokenizer {
	b.Helper()
	lk, err := localkeys.New(true)
	if err != nil {
		b.Fatal(err)
	}
	tz, err := tokenizer.New(tokenizer.Config{
		Classes: []tokenizer.Class{
			{Name: "name", Kind: tokenizer.KindRandom, Normalize: []string{"trim"}, Mask: "all"},
			{Name: "lookup", Kind: tokenizer.KindDeterministic, Normalize: []string{"trim"}, Mask: "all"},
		},
		Keys:  lk,
		Store: memstore.New(),
	})
	if err != nil {
		b.Fatal(err)
	}
	if _, err := tz.Tokenize(context.Background(), "acme", []tokenizer.Item{{Class: "name", Value: "Fake Warmup"}}, ""); err != nil {
		b.Fatal(err)
	}
	return tz
}

// benchItems returns n items of class with distinct fake values, numbered
// from first.
func benchItems(class string, first, n int) []tokenizer.Item {
	items := make([]tokenizer.Item, n)
	for i := range items {
		items[i] = tokenizer.Item{Class: class, Value: fmt.Sprintf("Fake Person %09d", first+i)}
	}
	return items
}

// BenchmarkMint measures Tokenize of one new value per call: validation,
// minting, naming, sealing and storing, for each kind of class, and for a
// random one with an idempotency key (claiming and completing its entry),
// as the client library sends every call.
func BenchmarkMint(b *testing.B) {
	for _, bc := range []struct {
		name, class string
		idem        bool
	}{{"name", "name", false}, {"lookup", "lookup", false}, {"name/idempotency-key", "name", true}} {
		b.Run(bc.name, func(b *testing.B) {
			tz := benchTokenizer(b)
			ctx := context.Background()
			item := make([]tokenizer.Item, 1)
			b.ReportAllocs()
			n := 0
			for b.Loop() {
				n++
				item[0] = tokenizer.Item{Class: bc.class, Value: "Fake Person " + strconv.Itoa(n)}
				key := ""
				if bc.idem {
					key = "caller\x00call-" + strconv.Itoa(n)
				}
				res, err := tz.Tokenize(ctx, "acme", item, key)
				if err != nil || res[0].Err != nil {
					b.Fatalf("Tokenize: %v %v", err, res[0].Err)
				}
			}
		})
	}
}

// BenchmarkTokenizeBatch measures a batch of 1,000 random items, with and
// without an idempotency key, and reports the time per item.
func BenchmarkTokenizeBatch(b *testing.B) {
	const batch = 1000
	for _, idem := range []bool{false, true} {
		b.Run(map[bool]string{false: "no-key", true: "idempotency-key"}[idem], func(b *testing.B) {
			tz := benchTokenizer(b)
			ctx := context.Background()
			// Random tokens differ for equal values, so one set of items
			// serves every call; a fresh key per call keeps retries out.
			items := benchItems("name", 0, batch)
			b.ReportAllocs()
			n := 0
			for b.Loop() {
				n++
				key := ""
				if idem {
					key = "caller\x00call-" + strconv.Itoa(n)
				}
				if _, err := tz.Tokenize(ctx, "acme", items, key); err != nil {
					b.Fatal(err)
				}
			}
			b.ReportMetric(float64(b.Elapsed().Nanoseconds())/float64(b.N*batch), "ns/item")
		})
	}
}

// BenchmarkReveal measures Reveal of 1 and of 100 stored tokens per call,
// and reports the time per item.
func BenchmarkReveal(b *testing.B) {
	for _, n := range []int{1, 100} {
		b.Run(strconv.Itoa(n), func(b *testing.B) {
			tz := benchTokenizer(b)
			ctx := context.Background()
			res, err := tz.Tokenize(ctx, "acme", benchItems("name", 0, n), "")
			if err != nil {
				b.Fatal(err)
			}
			toks := make([]tokenizer.Token, n)
			for i, r := range res {
				if toks[i], err = tokenizer.ParseToken(r.Token); err != nil {
					b.Fatal(err)
				}
			}
			b.ReportAllocs()
			for b.Loop() {
				out, err := tz.Reveal(ctx, toks)
				if err != nil || out[n-1].Err != nil {
					b.Fatalf("Reveal: %v", err)
				}
			}
			b.ReportMetric(float64(b.Elapsed().Nanoseconds())/float64(b.N*n), "ns/item")
		})
	}
}
