package tokenizer_test

import (
	"context"
	"errors"
	"fmt"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/jeton-dev/jeton/tokenizer"
	"github.com/jeton-dev/jeton/tokenizer/localkeys"
	"github.com/jeton-dev/jeton/tokenizer/memstore"
)

// admClock is a settable clock shared by a tokenizer and its memstore.
type admClock struct {
	mu  sync.Mutex
	now time.Time
}

func (c *admClock) Now() time.Time { c.mu.Lock(); defer c.mu.Unlock(); return c.now }

func (c *admClock) Advance(d time.Duration) { c.mu.Lock(); c.now = c.now.Add(d); c.mu.Unlock() }

// admEnv is a tokenizer on a memstore and dev key manager that share clock.
type admEnv struct {
	tz    *tokenizer.Tokenizer
	store *memstore.Store
	keys  *localkeys.Manager
	clock *admClock
}

func newAdmEnv(tb testing.TB, classes ...tokenizer.Class) *admEnv {
	tb.Helper()
	clock := &admClock{now: time.Date(2031, 7, 1, 12, 0, 0, 0, time.UTC)}
	store := memstore.New(memstore.WithClock(clock.Now))
	km, err := localkeys.New(true)
	if err != nil {
		tb.Fatal(err)
	}
	if len(classes) == 0 {
		classes = tokenizer.DefaultClasses()
	}
	tz, err := tokenizer.New(tokenizer.Config{Classes: classes, Keys: km, Store: store, Now: clock.Now})
	if err != nil {
		tb.Fatal(err)
	}
	return &admEnv{tz: tz, store: store, keys: km, clock: clock}
}

func (e *admEnv) tokenize(tb testing.TB, tenant string, items ...tokenizer.Item) []string {
	tb.Helper()
	res, err := e.tz.Tokenize(context.Background(), tenant, items, "")
	if err != nil {
		tb.Fatalf("Tokenize: %v", err)
	}
	out := make([]string, len(res))
	for i, r := range res {
		if r.Err != nil {
			tb.Fatalf("Tokenize item %d: %v", i, r.Err)
		}
		out[i] = r.Token
	}
	return out
}

// revealed reports, per token, whether it still opens.
func revealed(tb testing.TB, tz *tokenizer.Tokenizer, texts ...string) []bool {
	tb.Helper()
	toks := make([]tokenizer.Token, len(texts))
	for i, s := range texts {
		var err error
		if toks[i], err = tokenizer.ParseToken(s); err != nil {
			tb.Fatal(err)
		}
	}
	res, err := tz.Reveal(context.Background(), toks)
	if err != nil {
		tb.Fatalf("Reveal: %v", err)
	}
	out := make([]bool, len(res))
	for i, r := range res {
		if r.Err != nil && !errors.Is(r.Err, tokenizer.ErrNotFound) {
			tb.Fatalf("Reveal item %d: %v; want a value or ErrNotFound", i, r.Err)
		}
		out[i] = r.Err == nil
	}
	return out
}

func wantRevealed(tb testing.TB, tz *tokenizer.Tokenizer, want bool, what string, texts ...string) {
	tb.Helper()
	for i, ok := range revealed(tb, tz, texts...) {
		if ok != want {
			tb.Errorf("%s: token %d opens = %v; want %v", what, i, ok, want)
		}
	}
}

// storeKeys returns every live key of s under prefix.
func storeKeys(tb testing.TB, s tokenizer.Store, prefix string) []string {
	tb.Helper()
	var out []string
	if err := s.Scan(context.Background(), prefix, func(ks []string) error {
		out = append(out, ks...)
		return nil
	}); err != nil {
		tb.Fatalf("Scan: %v", err)
	}
	return out
}

func TestRecordTTL(t *testing.T) {
	now := time.Date(2031, 7, 1, 12, 0, 0, 0, time.UTC)
	tests := []struct {
		name      string
		retention time.Duration
		until     time.Time
		want      time.Duration
		wantEnded bool
	}{
		{"neither: keep until erased", 0, time.Time{}, 0, false},
		{"retention only", time.Hour, time.Time{}, time.Hour, false},
		{"end date only", 0, now.Add(48 * time.Hour), 48 * time.Hour, false},
		{"end date sooner than retention", 72 * time.Hour, now.Add(48 * time.Hour), 48 * time.Hour, false},
		{"retention sooner than end date", time.Hour, now.Add(48 * time.Hour), time.Hour, false},
		{"sub-millisecond rounds down", 0, now.Add(1500 * time.Microsecond), time.Millisecond, false},
		{"less than a millisecond left", time.Hour, now.Add(time.Microsecond), 0, true},
		{"end date now", time.Hour, now, 0, true},
		{"end date past", 0, now.Add(-time.Hour), 0, true},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			c := tokenizer.Class{Name: "name", Retention: tt.retention, RetainUntil: tt.until}
			got, err := c.RecordTTL(now)
			if tt.wantEnded {
				if !errors.Is(err, tokenizer.ErrRetentionEnded) || !tokenizer.IsUserError(err) {
					t.Errorf("RecordTTL = %v, %v; want a UserError wrapping ErrRetentionEnded", got, err)
				}
				return
			}
			if err != nil || got != tt.want {
				t.Errorf("RecordTTL = %v, %v; want %v", got, err, tt.want)
			}
		})
	}
}

// A record past its retention, by duration or by end date, is gone from
// the store and reveals as unknown; the subject index outlives none of its
// members' records and is gone with the last one. The clock is injected.
func TestRetentionExpires(t *testing.T) {
	start := time.Date(2031, 7, 1, 12, 0, 0, 0, time.UTC)
	e := newAdmEnv(t,
		// Ends with the event plus six months, whatever its retention says.
		tokenizer.Class{Name: "name", Kind: tokenizer.KindRandom, Retention: 365 * 24 * time.Hour, RetainUntil: start.Add(10 * time.Minute)},
		// A shorter retention wins over a later end date.
		tokenizer.Class{Name: "text", Kind: tokenizer.KindRandom, Retention: 2 * time.Minute, RetainUntil: start.Add(time.Hour)},
		tokenizer.Class{Name: "email", Kind: tokenizer.KindDeterministic},
	)
	toks := e.tokenize(t, "acme",
		tokenizer.Item{Class: "name", Value: "Anne Testperson", Subject: "guest-0001"},
		tokenizer.Item{Class: "text", Value: "fake note", Subject: "guest-0001"},
		tokenizer.Item{Class: "email", Value: "kept.test@example.org"},
	)
	name, text, email := toks[0], toks[1], toks[2]
	records := func() int { return len(storeKeys(t, e.store, "jeton:r:acme:")) }
	subjects := func() int { return len(storeKeys(t, e.store, "jeton:s:acme:")) }
	if records() != 3 || subjects() != 1 {
		t.Fatalf("after tokenize: %d records, %d subject indexes; want 3 and 1", records(), subjects())
	}

	e.clock.Advance(2*time.Minute + time.Millisecond)
	wantRevealed(t, e.tz, false, "text after its retention", text)
	wantRevealed(t, e.tz, true, "name before its end date", name, email)
	if records() != 2 || subjects() != 1 {
		t.Errorf("after 2 minutes: %d records, %d subject indexes; want 2 and 1", records(), subjects())
	}

	e.clock.Advance(8 * time.Minute)
	wantRevealed(t, e.tz, false, "name after its end date", name)
	wantRevealed(t, e.tz, true, "email without retention", email)
	if records() != 1 || subjects() != 0 {
		t.Errorf("after the end date: %d records, %d subject indexes; want 1 and 0", records(), subjects())
	}

	// Past its end date a class stores nothing more, item by item.
	res, err := e.tz.Tokenize(context.Background(), "acme", []tokenizer.Item{
		{Class: "name", Value: "Late Testperson"},
		{Class: "text", Value: "late fake note"},
	}, "")
	if err != nil {
		t.Fatal(err)
	}
	if !errors.Is(res[0].Err, tokenizer.ErrRetentionEnded) || !tokenizer.IsUserError(res[0].Err) || res[0].Token != "" {
		t.Errorf("tokenize past the end date: %v; want a UserError wrapping ErrRetentionEnded", res[0].Err)
	} else if strings.Contains(res[0].Err.Error(), "Late") {
		t.Error("the refusal quotes the value")
	}
	if res[1].Err != nil || res[1].Token == "" {
		t.Errorf("another class in the same batch: %v; want a token", res[1].Err)
	}
}

// backup copies every key of src, as a Redis backup would hold it.
func backup(tb testing.TB, src *memstore.Store, clock func() time.Time) *memstore.Store {
	tb.Helper()
	ctx := context.Background()
	dst := memstore.New(memstore.WithClock(clock))
	for _, k := range storeKeys(tb, src, "jeton:") {
		v, err := src.Get(ctx, []string{k})
		if err != nil {
			tb.Fatal(err)
		}
		if v[0] != nil {
			if err := dst.Put(ctx, []tokenizer.Entry{{Key: k, Value: v[0]}}); err != nil {
				tb.Fatal(err)
			}
			continue
		}
		m, err := src.SetMembers(ctx, k)
		if err != nil {
			tb.Fatal(err)
		}
		if err := dst.AddToSet(ctx, k, m, 0); err != nil {
			tb.Fatal(err)
		}
	}
	return dst
}

func TestPurgeTenant(t *testing.T) {
	ctx := context.Background()
	e := newAdmEnv(t)
	items := func(tenant string) []tokenizer.Item {
		return []tokenizer.Item{
			{Class: "name", Value: "Anne Testperson", Subject: "guest-0001"},
			{Class: "email", Value: tenant + ".test@example.org", Subject: "guest-0002"},
		}
	}
	var acme, acme2 []string
	for _, tn := range []string{"acme", "acme-2"} {
		res, err := e.tz.Tokenize(ctx, tn, items(tn), "idem-1") // leaves idempotency entries too
		if err != nil {
			t.Fatal(err)
		}
		for _, r := range res {
			if tn == "acme" {
				acme = append(acme, r.Token)
			} else {
				acme2 = append(acme2, r.Token)
			}
		}
	}
	if _, err := e.tz.RotateGeneration(ctx, "acme"); err != nil {
		t.Fatal(err)
	}
	acme = append(acme, e.tokenize(t, "acme", tokenizer.Item{Class: "text", Value: "fake note under gen 2"})...)
	for _, kind := range []string{"r", "s", "i", "k"} {
		if len(storeKeys(t, e.store, "jeton:"+kind+":acme:")) == 0 {
			t.Fatalf("the test set-up left no jeton:%s:acme: key", kind)
		}
	}
	before := backup(t, e.store, e.clock.Now)

	n, err := e.tz.PurgeTenant(ctx, "acme")
	if err != nil || n != len(acme) {
		t.Fatalf("PurgeTenant = %d, %v; want %d", n, err, len(acme))
	}
	for _, k := range storeKeys(t, e.store, "jeton:") {
		if strings.Contains(k, ":acme:") {
			t.Errorf("key %s of the purged tenant is still stored", k)
		}
	}
	wantRevealed(t, e.tz, false, "purged tenant", acme...)
	wantRevealed(t, e.tz, true, "tenant whose name extends the purged one", acme2...)

	// The backup taken before the purge holds the wrapped keys, but their
	// KEKs are gone: nothing of the tenant opens from it.
	old, err := tokenizer.New(tokenizer.Config{Classes: tokenizer.DefaultClasses(), Keys: e.keys, Store: before, Now: e.clock.Now})
	if err != nil {
		t.Fatal(err)
	}
	wantRevealed(t, old, false, "purged tenant from a backup", acme...)
	wantRevealed(t, old, true, "other tenant from a backup", acme2...)

	if n, err := e.tz.PurgeTenant(ctx, "acme"); err != nil || n != 0 {
		t.Errorf("second PurgeTenant = %d, %v; want 0, nil", n, err)
	}
	if _, err := e.tz.PurgeTenant(ctx, "Not A Tenant"); !tokenizer.IsUserError(err) {
		t.Errorf("PurgeTenant of a bad name = %v; want a UserError", err)
	}
	// The tenant starts afresh on this replica.
	again := e.tokenize(t, "acme", tokenizer.Item{Class: "name", Value: "New Testperson"})
	wantRevealed(t, e.tz, true, "token of the tenant after the purge", again...)
}

func TestStats(t *testing.T) {
	ctx := context.Background()
	e := newAdmEnv(t)
	var gen1 []string
	for i := range 3 {
		gen1 = append(gen1, e.tokenize(t, "acme", tokenizer.Item{Class: "name", Value: fmt.Sprintf("Test Person %d", i)})...)
	}
	if _, err := e.tz.RotateGeneration(ctx, "acme"); err != nil {
		t.Fatal(err)
	}
	e.tokenize(t, "acme", tokenizer.Item{Class: "name", Value: "Gen Two"}, tokenizer.Item{Class: "email", Value: "gen.two@example.org"})
	e.tokenize(t, "acme-2", tokenizer.Item{Class: "name", Value: "Other Tenant"})
	tok, _ := tokenizer.ParseToken(gen1[0])
	if n, err := e.tz.EraseTokens(ctx, []tokenizer.Token{tok}); err != nil || n != 1 {
		t.Fatalf("EraseTokens = %d, %v", n, err)
	}

	got, err := e.tz.Stats(ctx, []string{"acme", "acme-2", "nobody"})
	if err != nil {
		t.Fatal(err)
	}
	type gen struct {
		n       uint32
		records int64
		current bool
	}
	want := []struct {
		tenant  string
		records int64
		gens    []gen
	}{
		{"acme", 4, []gen{{1, 2, false}, {2, 2, true}}},
		{"acme-2", 1, []gen{{1, 1, true}}},
		{"nobody", 0, nil},
	}
	if len(got) != len(want) {
		t.Fatalf("Stats returned %d tenants; want %d", len(got), len(want))
	}
	for i, w := range want {
		g := got[i]
		if g.Tenant != w.tenant || g.Records != w.records || g.Unreadable != 0 || len(g.Generations) != len(w.gens) {
			t.Errorf("tenant %d: %s with %d records (%d unreadable) in %d generations; want %s with %d in %d",
				i, g.Tenant, g.Records, g.Unreadable, len(g.Generations), w.tenant, w.records, len(w.gens))
			continue
		}
		for j, wg := range w.gens {
			gg := g.Generations[j]
			if gg.Generation != wg.n || gg.Records != wg.records || gg.Current != wg.current {
				t.Errorf("%s generation %d: %+v; want %+v", w.tenant, j, gg, wg)
			}
		}
	}
	if _, err := e.tz.Stats(ctx, []string{"_system"}); !tokenizer.IsUserError(err) {
		t.Errorf("Stats of a bad tenant name = %v; want a UserError", err)
	}
}
