package redisstore_test

import (
	"context"
	"strconv"
	"testing"
	"time"

	"github.com/jeton-dev/jeton/integration/testenv"
	"github.com/jeton-dev/jeton/tokenizer"
	"github.com/jeton-dev/jeton/tokenizer/localkeys"
	"github.com/jeton-dev/jeton/tokenizer/redisstore"
)

// BenchmarkTokenizeRedis measures batched Tokenize in process on a real
// Redis (AOF everysec): calls of 1,000 items with one data subject per
// four, with and without an idempotency key, interleaved call by call so
// that both see the same machine. It reports the time per item of each
// and the ratio, which is the cost of the key; `make bench` measures the
// same over gRPC.
func BenchmarkTokenizeRedis(b *testing.B) {
	r := testenv.StartRedis(b, testenv.WithAppendFsync("everysec"))
	store := newStore(b, redisstore.Config{Addrs: []string{r.Addr}})
	km, err := localkeys.New(true)
	if err != nil {
		b.Fatal(err)
	}
	var classes []tokenizer.Class
	for _, name := range []string{"name", "email", "address", "text"} {
		classes = append(classes, tokenizer.Class{Name: name, Retention: time.Hour})
	}
	tz, err := tokenizer.New(tokenizer.Config{Keys: km, Store: store, Classes: classes})
	if err != nil {
		b.Fatal(err)
	}
	ctx := context.Background()
	items := make([]tokenizer.Item, 1000)
	for i := range items {
		c := classes[i%len(classes)].Name
		items[i] = tokenizer.Item{Class: c, Value: footprintValue(c, i), Subject: "fake-subject-" + strconv.Itoa(i/4)}
	}
	if _, err := tz.Tokenize(ctx, "demo", items[:1], ""); err != nil {
		b.Fatal(err)
	}
	var with, without time.Duration
	b.ReportAllocs()
	n := 0
	for b.Loop() {
		n++
		for _, key := range []string{"", "caller\x00call-" + strconv.Itoa(n)} {
			start := time.Now()
			if _, err := tz.Tokenize(ctx, "demo", items, key); err != nil {
				b.Fatal(err)
			}
			if key == "" {
				without += time.Since(start)
			} else {
				with += time.Since(start)
			}
		}
	}
	per := func(d time.Duration) float64 { return float64(d.Nanoseconds()) / float64(n*len(items)) }
	b.ReportMetric(per(without), "ns/item-no-key")
	b.ReportMetric(per(with), "ns/item-key")
	b.ReportMetric(float64(with)/float64(without), "key/no-key")
}

// BenchmarkWrite1000 measures Store.Write of a Tokenize chunk: 1,000
// records with a lifetime and one subject-index addition per four of
// them, in one pipeline. Its allocations per call are what the store adds
// to a batch's garbage.
func BenchmarkWrite1000(b *testing.B) {
	r := testenv.StartRedis(b, testenv.WithAppendFsync("everysec"))
	s := newStore(b, redisstore.Config{Addrs: []string{r.Addr}})
	var w tokenizer.Write
	w.Create = benchEntries(b)
	for i := range w.Create {
		w.Create[i].TTL = time.Hour
		if i%4 == 0 {
			w.Sets = append(w.Sets, tokenizer.SetAdd{Key: "bench:s:" + strconv.Itoa(i), TTL: time.Hour})
		}
		a := &w.Sets[len(w.Sets)-1]
		a.Members = append(a.Members, "member-"+strconv.Itoa(i))
	}
	ctx := context.Background()
	b.ReportAllocs()
	for b.Loop() {
		if err := s.Write(ctx, w); err != nil {
			b.Fatal(err)
		}
	}
	b.ReportMetric(float64(b.Elapsed().Nanoseconds())/float64(b.N*len(w.Create)), "ns/item")
}
