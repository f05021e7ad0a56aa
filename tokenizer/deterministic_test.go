package tokenizer_test

import (
	"context"
	"errors"
	"fmt"
	"testing"
	"time"

	"github.com/jeton-dev/jeton/tokenizer"
	"github.com/jeton-dev/jeton/tokenizer/memstore"
)

// memberID is a deterministic class configured explicitly: the built-in
// classes are not relied on to be deterministic.
var memberID = tokenizer.Class{Name: "member-id", Kind: tokenizer.KindDeterministic, Normalize: []string{"trim", "lower"}, Mask: "all"}

func member(v string) []tokenizer.Item { return []tokenizer.Item{{Class: memberID.Name, Value: v}} }

// snapshot copies every entry of a memstore, as a backup of Redis would.
func snapshot(t *testing.T, m *memstore.Store) []tokenizer.Entry {
	t.Helper()
	ctx := context.Background()
	var keys []string
	if err := m.Scan(ctx, "jeton:", func(k []string) error { keys = append(keys, k...); return nil }); err != nil {
		t.Fatal(err)
	}
	vals, err := m.Get(ctx, keys)
	if err != nil {
		t.Fatal(err)
	}
	out := make([]tokenizer.Entry, 0, len(keys))
	for i, k := range keys {
		if vals[i] != nil {
			out = append(out, tokenizer.Entry{Key: k, Value: vals[i]})
		}
	}
	return out
}

// Deterministic tokens belong to a generation: stable across a rotation
// while their generation lives, gone with it. After the destroy the same
// value gets a new token, the old token reveals nothing, and a copy of the
// store taken before the destroy brings back neither the old token nor a
// way to match it.
func TestDeterministicTokensDieWithTheirGeneration(t *testing.T) {
	e := newEnv(t, withRefresh(testRefresh), withClasses(memberID))
	ctx := context.Background()
	t1 := tokenize(t, e.tz, "acme", member("fake-member-0001"), "")[0]
	if g, err := e.tz.RotateGeneration(ctx, "acme"); err != nil || g != 2 {
		t.Fatalf("RotateGeneration = %d, %v", g, err)
	}
	e.clock.Advance(2*testRefresh + time.Second)

	// Stable across the rotation, on this replica and a cold one, and
	// normalisation still decides which values share it.
	for name, tz := range map[string]*tokenizer.Tokenizer{"same": e.tz, "cold": e.newTokenizer(t)} {
		if got := tokenize(t, tz, "acme", member("  FAKE-MEMBER-0001 "), "")[0]; got != t1 {
			t.Fatalf("%s replica: the value got a new token after a rotation", name)
		}
	}
	if r := revealOne(t, e.tz, t1); r.Err != nil || r.Generation != 1 {
		t.Fatalf("the generation 1 token now reveals from generation %d (%v); it must stay in 1", r.Generation, r.Err)
	}
	// A new value is minted under generation 2.
	w2 := tokenize(t, e.tz, "acme", member("fake-member-0002"), "")[0]
	if r := revealOne(t, e.tz, w2); r.Generation != 2 {
		t.Fatalf("a new value was tokenized under generation %d, want 2", r.Generation)
	}
	backup := snapshot(t, e.mem)
	blob1 := e.rawGet(t, "jeton:k:acme:gen:1")
	wrapped1 := wrappedOf(t, blob1)

	if err := e.tz.DestroyGeneration(ctx, "acme", 1); err != nil {
		t.Fatal(err)
	}
	t2 := tokenize(t, e.tz, "acme", member("fake-member-0001"), "")[0]
	if t2 == t1 {
		t.Fatal("after destroying generation 1 the value got its generation 1 token again")
	}
	wantValue(t, revealOne(t, e.tz, t2), "fake-member-0001")
	wantNotFound(t, revealOne(t, e.tz, t1))
	wantNotFound(t, revealOne(t, e.newTokenizer(t), t1))
	if got := tokenize(t, e.newTokenizer(t), "acme", member("fake-member-0002"), "")[0]; got != w2 {
		t.Error("a generation 2 token changed when generation 1 was destroyed")
	}

	// The pre-destroy copy, restored: generation 1's wrapped DEK and
	// records are back, but its KEK is not.
	restored := memstore.New(memstore.WithClock(e.clock.Now))
	if err := restored.Put(ctx, backup); err != nil {
		t.Fatal(err)
	}
	cfg := e.cfg
	cfg.Store = restored
	old, err := tokenizer.New(cfg)
	if err != nil {
		t.Fatal(err)
	}
	wantNotFound(t, revealOne(t, old, t1))
	if got := tokenize(t, old, "acme", member("fake-member-0001"), ""); got[0] == t1 {
		t.Fatal("the restored copy recomputed the destroyed generation's token")
	}
	kek, ad := tokenizer.KeyIdentity("acme", 1, blob1)
	if _, err := e.lk.Unwrap(ctx, kek, wrapped1, ad); !errors.Is(err, tokenizer.ErrKeyDestroyed) {
		t.Fatalf("generation 1's DEK, and with it its deterministic key, still unwraps: %v", err)
	}
}

// Two records of one value, minted under two generations at the moment of
// a rotation (one replica still on the old generation): every later call
// returns the older one, the same one, whichever replica answers.
func TestDeterministicOldestGenerationWins(t *testing.T) {
	e := newEnv(t, withRefresh(testRefresh), withClasses(memberID))
	ctx := context.Background()
	tokenize(t, e.tz, "acme", member("fake-member-0000"), "") // create acme
	stale := e.newTokenizer(t)
	tokenize(t, stale, "acme", member("fake-member-0000"), "") // stale caches generation 1
	if _, err := e.tz.RotateGeneration(ctx, "acme"); err != nil {
		t.Fatal(err)
	}
	newer := tokenize(t, e.tz, "acme", member("fake-member-0009"), "")[0]
	older := tokenize(t, stale, "acme", member("fake-member-0009"), "")[0]
	if newer == older {
		t.Fatal("the test needs two tokens of one value, one per generation")
	}
	for _, tz := range []*tokenizer.Tokenizer{e.tz, stale, e.newTokenizer(t)} {
		for range 2 {
			if got := tokenize(t, tz, "acme", member("fake-member-0009"), "")[0]; got != older {
				t.Fatal("the value did not keep its oldest generation's token")
			}
		}
	}
	// Both tokens stay revealable: the sponsor may hold either.
	wantValue(t, revealOne(t, e.tz, newer), "fake-member-0009")
	wantValue(t, revealOne(t, e.tz, older), "fake-member-0009")

	// A third generation: both records are now in older generations, and
	// the oldest still wins.
	if _, err := e.tz.RotateGeneration(ctx, "acme"); err != nil {
		t.Fatal(err)
	}
	e.clock.Advance(testRefresh + time.Second)
	for _, tz := range []*tokenizer.Tokenizer{e.tz, stale, e.newTokenizer(t)} {
		if got := tokenize(t, tz, "acme", member("fake-member-0009"), "")[0]; got != older {
			t.Fatal("with three generations the value did not keep its oldest generation's token")
		}
	}
}

// A replica whose cached view says generation 1 lives must not hand out a
// generation 1 token once another replica destroyed it: the call fails
// and the retry mints under a live generation.
func TestDeterministicTokenOfAGenerationDestroyedMeanwhile(t *testing.T) {
	e := newEnv(t, withRefresh(testRefresh), withClasses(memberID))
	ctx := context.Background()
	t1 := tokenize(t, e.tz, "acme", member("fake-member-0001"), "")[0]
	if _, err := e.tz.RotateGeneration(ctx, "acme"); err != nil {
		t.Fatal(err)
	}
	e.clock.Advance(2*testRefresh + time.Second)
	warm := e.newTokenizer(t)
	if got := tokenize(t, warm, "acme", member("fake-member-0001"), "")[0]; got != t1 {
		t.Fatal("setup: the warm replica did not find the generation 1 token")
	}
	if err := e.tz.DestroyGeneration(ctx, "acme", 1); err != nil {
		t.Fatal(err)
	}
	// Within KeyRefresh the warm replica still trusts its cached keys.
	_, err := warm.Tokenize(ctx, "acme", member("fake-member-0001"), "")
	if !errors.Is(err, tokenizer.ErrUnavailable) {
		t.Fatalf("Tokenize on a replica unaware of the destroy: %v, want ErrUnavailable", err)
	}
	again := tokenize(t, warm, "acme", member("fake-member-0001"), "")[0]
	if again == t1 {
		t.Fatal("the retry returned the destroyed generation's token")
	}
	wantValue(t, revealOne(t, warm, again), "fake-member-0001")
}

// When an older generation's key cannot be read (the key manager is
// down), a deterministic item fails closed rather than mint a second
// token for a value that may have one; random items still work.
func TestDeterministicLookupFailsClosed(t *testing.T) {
	e := newEnv(t, withRefresh(testRefresh), withClasses(memberID))
	ctx := context.Background()
	t1 := tokenize(t, e.tz, "acme", member("fake-member-0001"), "")[0]
	if _, err := e.tz.RotateGeneration(ctx, "acme"); err != nil {
		t.Fatal(err)
	}
	cold := e.newTokenizer(t)
	tokenize(t, cold, "acme", []tokenizer.Item{{Class: "name", Value: "Fake Person"}}, "") // loads generation 2 only
	e.keys.fail("Unwrap", true)
	if res, err := cold.Tokenize(ctx, "acme", member("fake-member-0001"), ""); !errors.Is(err, tokenizer.ErrUnavailable) || res != nil {
		t.Fatalf("deterministic Tokenize with generation 1 unreadable = %v, %v; want ErrUnavailable", res, err)
	}
	tokenize(t, cold, "acme", []tokenizer.Item{{Class: "name", Value: "Fake Person"}}, "")
	e.keys.fail("Unwrap", false)
	if got := tokenize(t, cold, "acme", member("fake-member-0001"), "")[0]; got != t1 {
		t.Fatal("after recovery the value did not get its generation 1 token")
	}
}

// A warm replica, its tenant loaded, whose key manager cannot unwrap a
// DEK it needs (Vault down or sealed, KEK unavailable) answers
// ErrUnavailable: never ErrNotFound, which would tell a caller, and the
// audit log, that a live token does not exist.
func TestWarmReplicaUnwrapFailureIsUnavailable(t *testing.T) {
	e := newGenEnv(t)
	ctx := context.Background()
	for _, tc := range []struct {
		name string
		warm func(t *testing.T) *tokenizer.Tokenizer
	}{
		// Generation 2 is loaded; generation 1 never was.
		{"generation not yet loaded", func(t *testing.T) *tokenizer.Tokenizer {
			tz := e.newTokenizer(t)
			wantValue(t, revealOne(t, tz, e.t2), "Fake Gen Two")
			return tz
		}},
		// Generation 1 is loaded, but another replica rewrapped it since:
		// past KeyRefresh the warm replica unwraps the new blob.
		{"generation rewrapped by another replica", func(t *testing.T) *tokenizer.Tokenizer {
			tz := e.newTokenizer(t)
			wantValue(t, revealOne(t, tz, e.t1), "Fake Gen One")
			if _, err := e.tz.Rewrap(ctx, []string{"acme"}, nil); err != nil {
				t.Fatal(err)
			}
			e.clock.Advance(testRefresh + time.Second)
			return tz
		}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			tz := tc.warm(t)
			e.keys.fail("Unwrap", true)
			defer e.keys.fail("Unwrap", false)
			parsed, _ := tokenizer.ParseToken(e.t1)
			res, err := tz.Reveal(ctx, []tokenizer.Token{parsed})
			if !errors.Is(err, tokenizer.ErrUnavailable) || errors.Is(err, tokenizer.ErrNotFound) || res != nil {
				t.Fatalf("Reveal with the DEK unwrap failing = %v, %v; want nil, ErrUnavailable", res, err)
			}
			e.keys.fail("Unwrap", false)
			wantValue(t, revealOne(t, tz, e.t1), "Fake Gen One")
		})
	}
}

// BenchmarkTokenizeOlderGenerations measures what the deterministic lookup
// over older live generations costs: the same batch (every default class,
// a third deterministic) against a tenant with one generation and with
// four. Compare the two in one run.
func BenchmarkTokenizeOlderGenerations(b *testing.B) {
	for _, gens := range []int{1, 4} {
		b.Run(fmt.Sprintf("generations=%d", gens), func(b *testing.B) {
			e := newEnv(b)
			items := make([]tokenizer.Item, 1000)
			classes := tokenizer.DefaultClasses()
			for i := range items {
				c := classes[i%len(classes)].Name
				items[i] = tokenizer.Item{Class: c, Value: fakeValue(c, i)}
			}
			tokenize(b, e.tz, "acme", items[:1], "")
			for range gens - 1 {
				if _, err := e.tz.RotateGeneration(context.Background(), "acme"); err != nil {
					b.Fatal(err)
				}
			}
			tokenize(b, e.tz, "acme", items[:1], "") // load every generation's keys
			b.ReportAllocs()
			for b.Loop() {
				if _, err := e.tz.Tokenize(context.Background(), "acme", items, ""); err != nil {
					b.Fatal(err)
				}
			}
			b.ReportMetric(float64(b.N*len(items))/b.Elapsed().Seconds(), "items/s")
		})
	}
}
