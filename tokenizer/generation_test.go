package tokenizer_test

import (
	"context"
	"crypto/rand"
	"encoding/binary"
	"errors"
	"fmt"
	"slices"
	"strconv"
	"sync"
	"testing"
	"time"

	"github.com/jeton-dev/jeton/tokenizer"
)

const testRefresh = time.Minute

// genEnv is an env with a tenant "acme" holding one gen-1 and one gen-2
// token, with generation 2 current and old enough that generation 1 may
// be destroyed.
type genEnv struct {
	*env
	t1, t2 string
}

func newGenEnv(t *testing.T) genEnv {
	t.Helper()
	e := newEnv(t, withRefresh(testRefresh))
	ctx := context.Background()
	t1 := tokenize(t, e.tz, "acme", []tokenizer.Item{{Class: "name", Value: "Fake Gen One"}}, "")[0]
	if g, err := e.tz.RotateGeneration(ctx, "acme"); err != nil || g != 2 {
		t.Fatalf("RotateGeneration = %d, %v", g, err)
	}
	t2 := tokenize(t, e.tz, "acme", []tokenizer.Item{{Class: "name", Value: "Fake Gen Two"}}, "")[0]
	e.clock.Advance(2*testRefresh + time.Second)
	return genEnv{env: e, t1: t1, t2: t2}
}

// wrappedOf cuts the wrapped key out of a version 3 or 4 key blob:
// version | created (8 bytes) | wrapped.
func wrappedOf(t testing.TB, blob []byte) []byte {
	t.Helper()
	if len(blob) < 10 || (blob[0] != 3 && blob[0] != 4) {
		t.Fatalf("not a version 3 or 4 key blob (%d bytes)", len(blob))
	}
	return blob[9:]
}

func TestDestroyGenerationRefusals(t *testing.T) {
	e := newEnv(t, withRefresh(testRefresh))
	ctx := context.Background()
	tokenize(t, e.tz, "acme", []tokenizer.Item{{Class: "name", Value: "Fake Person"}}, "")
	for _, tc := range []struct {
		name     string
		tenant   string
		gen      uint32
		notFound bool
	}{
		{"bad tenant name", "Bad Tenant", 1, false},
		{"unknown tenant", "nobody", 1, true},
		{"generation 0", "acme", 0, true},
		{"generation after current", "acme", 2, true},
		{"current generation", "acme", 1, false},
	} {
		t.Run(tc.name, func(t *testing.T) {
			err := e.tz.DestroyGeneration(ctx, tc.tenant, tc.gen)
			if got := errors.Is(err, tokenizer.ErrNotFound); got != tc.notFound {
				t.Errorf("err %v: ErrNotFound %t, want %t", err, got, tc.notFound)
			}
			if !tc.notFound && !tokenizer.IsUserError(err) {
				t.Errorf("err %v is not a UserError", err)
			}
		})
	}

	// Generation 1 just stopped being current: a replica may still write
	// to it, so it cannot be destroyed yet.
	if _, err := e.tz.RotateGeneration(ctx, "acme"); err != nil {
		t.Fatal(err)
	}
	e.clock.Advance(testRefresh)
	if err := e.tz.DestroyGeneration(ctx, "acme", 1); !tokenizer.IsUserError(err) {
		t.Fatalf("destroying a generation current %s ago: %v, want a UserError", testRefresh, err)
	}
	if n := e.keys.count("DestroyKEK"); n != 0 {
		t.Fatalf("a refused destroy called DestroyKEK %d times", n)
	}
	e.clock.Advance(testRefresh + time.Second)
	if err := e.tz.DestroyGeneration(ctx, "acme", 1); err != nil {
		t.Fatalf("DestroyGeneration once replicas moved on: %v", err)
	}
}

func TestDestroyGenerationShreds(t *testing.T) {
	e := newGenEnv(t)
	ctx := context.Background()
	other := e.newTokenizer(t) // a second replica with warm caches
	wantValue(t, revealOne(t, other, e.t1), "Fake Gen One")

	backup := e.rawGet(t, "jeton:k:acme:gen:1")
	wrapped := wrappedOf(t, backup)
	kek, ad := tokenizer.KeyIdentity("acme", 1, backup)
	if _, err := e.lk.Unwrap(ctx, kek, wrapped, ad); kek != "acme-g1" || err != nil {
		t.Fatalf("generation 1 does not unwrap under its own KEK %q: %v", kek, err)
	}
	if err := e.tz.DestroyGeneration(ctx, "acme", 1); err != nil {
		t.Fatalf("DestroyGeneration: %v", err)
	}
	// This replica stops at once, the other within KeyRefresh.
	wantNotFound(t, revealOne(t, e.tz, e.t1))
	wantValue(t, revealOne(t, other, e.t1), "Fake Gen One")
	e.clock.Advance(testRefresh + time.Second)
	wantNotFound(t, revealOne(t, other, e.t1))
	for _, tz := range []*tokenizer.Tokenizer{e.tz, other, e.newTokenizer(t)} {
		wantValue(t, revealOne(t, tz, e.t2), "Fake Gen Two")
	}

	if e.rawGet(t, "jeton:k:acme:gen:1") != nil {
		t.Error("the wrapped DEK of generation 1 is still in the store")
	}
	if _, err := e.lk.Unwrap(ctx, kek, wrapped, ad); !errors.Is(err, tokenizer.ErrKeyDestroyed) {
		t.Errorf("Unwrap with the destroyed KEK: %v, want ErrKeyDestroyed", err)
	}
	// Restoring a backup of the blob (and not the marker) brings nothing
	// back: the KEK that could unwrap it is gone.
	if err := e.mem.Put(ctx, []tokenizer.Entry{{Key: "jeton:k:acme:gen:1", Value: backup}}); err != nil {
		t.Fatal(err)
	}
	if _, err := e.mem.Delete(ctx, []string{"jeton:k:acme:destroyed:1"}); err != nil {
		t.Fatal(err)
	}
	wantNotFound(t, revealOne(t, e.newTokenizer(t), e.t1))
	// Rewrap counts such a key as skipped rather than failing on it.
	if p, err := e.tz.Rewrap(ctx, []string{"acme"}, nil); err != nil || p.Skipped != 1 || p.Rewrapped != 2 {
		t.Fatalf("Rewrap over a restored, destroyed generation = %+v, %v; want it skipped", p, err)
	}

	// Again is harmless.
	if err := e.tz.DestroyGeneration(ctx, "acme", 1); err != nil {
		t.Fatalf("DestroyGeneration again: %v", err)
	}
}

func TestDestroyGenerationCrashSafety(t *testing.T) {
	for _, step := range []struct {
		name  string
		fail  func(e genEnv, on bool)
		kekUp bool // whether the KEK survives the failed attempt
	}{
		{"key manager fails", func(e genEnv, on bool) { e.keys.fail("DestroyKEK", on) }, true},
		{"store delete fails", func(e genEnv, on bool) { e.store.fail("Delete", on) }, false},
	} {
		t.Run(step.name, func(t *testing.T) {
			e := newGenEnv(t)
			ctx := context.Background()
			stored := e.rawGet(t, "jeton:k:acme:gen:1")
			wrapped := wrappedOf(t, stored)
			kek, ad := tokenizer.KeyIdentity("acme", 1, stored)

			step.fail(e, true)
			if err := e.tz.DestroyGeneration(ctx, "acme", 1); !errors.Is(err, tokenizer.ErrUnavailable) {
				t.Fatalf("DestroyGeneration with a failing backend: %v, want ErrUnavailable", err)
			}
			step.fail(e, false)
			// Half done, it already reads as destroyed, everywhere.
			gens, err := e.tz.Generations(ctx, "acme")
			if err != nil || len(gens) != 2 || !gens[0].Destroyed {
				t.Fatalf("Generations after an interrupted destroy = %+v, %v; want generation 1 destroyed", gens, err)
			}
			wantNotFound(t, revealOne(t, e.newTokenizer(t), e.t1))
			// Rewrap leaves a half-destroyed generation alone.
			if p, err := e.tz.Rewrap(ctx, []string{"acme"}, nil); err != nil || p.Skipped != 1 || p.Rewrapped != 2 {
				t.Fatalf("Rewrap after an interrupted destroy = %+v, %v; want generation 1 skipped", p, err)
			}
			if _, err := e.lk.Unwrap(ctx, kek, wrapped, ad); (err == nil) != step.kekUp {
				t.Fatalf("KEK alive after the failed step: %t, want %t (%v)", err == nil, step.kekUp, err)
			}
			// A retry finishes the job.
			if err := e.tz.DestroyGeneration(ctx, "acme", 1); err != nil {
				t.Fatalf("retried DestroyGeneration: %v", err)
			}
			if _, err := e.lk.Unwrap(ctx, kek, wrapped, ad); !errors.Is(err, tokenizer.ErrKeyDestroyed) {
				t.Errorf("KEK after the retry: %v, want ErrKeyDestroyed", err)
			}
			if e.rawGet(t, "jeton:k:acme:gen:1") != nil {
				t.Error("wrapped DEK still stored after the retry")
			}
			wantValue(t, revealOne(t, e.newTokenizer(t), e.t2), "Fake Gen Two")
		})
	}
}

func TestGenerations(t *testing.T) {
	e := newEnv(t, withRefresh(testRefresh))
	ctx := context.Background()
	if _, err := e.tz.Generations(ctx, "acme"); !errors.Is(err, tokenizer.ErrNotFound) {
		t.Fatalf("Generations of an unknown tenant: %v, want ErrNotFound", err)
	}
	tokenize(t, e.tz, "acme", []tokenizer.Item{{Class: "name", Value: "Fake Person"}}, "")
	e.clock.Advance(time.Hour)
	t1 := e.clock.Now().Truncate(time.Second)
	if _, err := e.tz.RotateGeneration(ctx, "acme"); err != nil {
		t.Fatal(err)
	}
	e.clock.Advance(time.Hour)
	t2 := e.clock.Now().Truncate(time.Second)
	if _, err := e.tz.RotateGeneration(ctx, "acme"); err != nil {
		t.Fatal(err)
	}
	e.clock.Advance(time.Hour)
	td := e.clock.Now().Truncate(time.Second)
	if err := e.tz.DestroyGeneration(ctx, "acme", 1); err != nil {
		t.Fatal(err)
	}
	got, err := e.tz.Generations(ctx, "acme")
	if err != nil {
		t.Fatal(err)
	}
	want := []tokenizer.GenerationInfo{
		{Generation: 1, Created: time.Time{}, Destroyed: true, DestroyedAt: td},
		{Generation: 2, Created: t1, OwnKEK: true, Bound: true},
		{Generation: 3, Created: t2, OwnKEK: true, Bound: true, Current: true},
	}
	// The destroyed generation's blob, and with it its creation time, is
	// gone; the marker keeps when it was destroyed.
	if len(got) != len(want) {
		t.Fatalf("Generations = %+v, want %+v", got, want)
	}
	for i := range want {
		if !got[i].Created.Equal(want[i].Created) || !got[i].DestroyedAt.Equal(want[i].DestroyedAt) {
			t.Errorf("generation %d times = %v / %v, want %v / %v", i+1, got[i].Created, got[i].DestroyedAt, want[i].Created, want[i].DestroyedAt)
		}
		got[i].Created, got[i].DestroyedAt, want[i].Created, want[i].DestroyedAt = time.Time{}, time.Time{}, time.Time{}, time.Time{}
		if got[i] != want[i] {
			t.Errorf("generation %d = %+v, want %+v", i+1, got[i], want[i])
		}
	}
}

// legacyBlob wraps a fresh key as an earlier release stored it: unbound,
// under kek, as a version 1 blob (kek must be the main KEK "") or a
// version 2 blob naming storedKEK, a field that is now ignored.
func legacyBlob(t *testing.T, e *env, version byte, kek, storedKEK string) []byte {
	t.Helper()
	key := make([]byte, 32)
	if _, err := rand.Read(key); err != nil {
		t.Fatal(err)
	}
	wrapped, err := e.lk.Wrap(context.Background(), kek, key, nil)
	if err != nil {
		t.Fatal(err)
	}
	if version == 1 {
		return append([]byte{1}, wrapped...)
	}
	b := binary.BigEndian.AppendUint64([]byte{2}, uint64(e.clock.Now().Add(-time.Hour).Unix()))
	b = append(b, byte(len(storedKEK)))
	return append(append(b, storedKEK...), wrapped...)
}

// Generations written before keys were bound keep working: version 1
// (under the main KEK, no KEK of its own) and version 2 (its own KEK; the
// KEK name the blob carries is ignored, here even a lie). Rewrap upgrades
// every one to a bound version 3 blob, the version 1 generation moving to
// a KEK of its own; destroying a legacy generation destroys the KEK its
// identity names, never one the blob names.
func TestLegacyGenerationsAndTheirUpgrade(t *testing.T) {
	e := newEnv(t, withRefresh(testRefresh))
	ctx := context.Background()
	tokenize(t, e.tz, "beta", []tokenizer.Item{{Class: "name", Value: "Fake Beta"}}, "")
	// A tenant as earlier releases left it.
	if err := e.mem.Put(ctx, []tokenizer.Entry{
		{Key: "jeton:k:old:root", Value: legacyBlob(t, e, 1, "", "")},
		{Key: "jeton:k:old:gen:1", Value: legacyBlob(t, e, 1, "", "")},
		{Key: "jeton:k:old:gen:2", Value: legacyBlob(t, e, 2, "old-g2", "beta-g1")},
		{Key: "jeton:k:old:current", Value: []byte{1, 0, 0, 0, 1}},
	}); err != nil {
		t.Fatal(err)
	}
	cold := e.newTokenizer(t)
	tok2 := tokenize(t, cold, "old", []tokenizer.Item{{Class: "name", Value: "Fake Legacy Two"}}, "")[0]
	if r := revealOne(t, cold, tok2); r.Generation != 2 {
		t.Fatalf("tokenized under generation %d, want 2", r.Generation)
	}
	gens, err := e.tz.Generations(ctx, "old")
	if err != nil || len(gens) != 2 || gens[0].OwnKEK || gens[0].Bound || !gens[0].Created.IsZero() ||
		!gens[1].OwnKEK || gens[1].Bound || !gens[1].Current {
		t.Fatalf("Generations = %+v, %v", gens, err)
	}
	if _, err := e.tz.RotateGeneration(ctx, "old"); err != nil {
		t.Fatal(err)
	}
	e.clock.Advance(2*testRefresh + time.Second)
	tok3 := tokenize(t, e.tz, "old", []tokenizer.Item{{Class: "name", Value: "Fake Legacy Three"}}, "")[0]

	// Custodians rotate, then Rewrap binds every legacy key.
	if err := e.lk.Rotate(); err != nil {
		t.Fatal(err)
	}
	p, err := e.tz.Rewrap(ctx, []string{"old"}, nil)
	if want := (tokenizer.RewrapProgress{Done: 4, Total: 4, Rewrapped: 4, Upgraded: 3}); err != nil || p != want {
		t.Fatalf("Rewrap = %+v, %v; want %+v", p, err, want)
	}
	for _, g := range []uint32{0, 1, 2, 3} {
		name := "jeton:k:old:root"
		if g > 0 {
			name = "jeton:k:old:gen:" + strconv.Itoa(int(g))
		}
		kek, ad := tokenizer.KeyIdentity("old", g, e.rawGet(t, name))
		if _, err := e.lk.Unwrap(ctx, kek, wrappedOf(t, e.rawGet(t, name)), ad); err != nil {
			t.Errorf("%s after Rewrap does not unwrap as its identity (KEK %q): %v", name, kek, err)
		}
	}
	gens, err = e.tz.Generations(ctx, "old")
	if err != nil || len(gens) != 3 {
		t.Fatalf("Generations = %+v, %v", gens, err)
	}
	for _, g := range gens {
		if !g.OwnKEK || !g.Bound {
			t.Errorf("generation %d after Rewrap: own KEK %t, bound %t", g.Generation, g.OwnKEK, g.Bound)
		}
	}
	fresh := e.newTokenizer(t)
	wantValue(t, revealOne(t, fresh, tok2), "Fake Legacy Two")
	wantValue(t, revealOne(t, fresh, tok3), "Fake Legacy Three")

	// Destroying generation 2, whose old blob named beta's KEK, destroys
	// old-g2 and nothing of beta's.
	if err := e.tz.DestroyGeneration(ctx, "old", 2); err != nil {
		t.Fatal(err)
	}
	if got := e.keys.destroyedKEKs(); !slices.Equal(got, []string{"old-g2"}) {
		t.Errorf("DestroyGeneration destroyed %q, want [old-g2]", got)
	}
	wantNotFound(t, revealOne(t, e.newTokenizer(t), tok2))
	if _, err := e.tz.Tokenize(ctx, "beta", []tokenizer.Item{{Class: "name", Value: "Fake Beta"}}, ""); err != nil {
		t.Errorf("beta after destroying old's generation 2: %v", err)
	}
}

func (e *env) rawGet(t *testing.T, key string) []byte {
	t.Helper()
	v, err := e.mem.Get(context.Background(), []string{key})
	if err != nil {
		t.Fatal(err)
	}
	return v[0]
}

func TestRewrapSkipsDestroyedAndReportsProgress(t *testing.T) {
	e := newGenEnv(t)
	ctx := context.Background()
	if _, err := e.tz.DeriveKey(ctx, "test"); err != nil { // the system root key
		t.Fatal(err)
	}
	if err := e.tz.DestroyGeneration(ctx, "acme", 1); err != nil {
		t.Fatal(err)
	}
	if err := e.lk.Rotate(); err != nil {
		t.Fatal(err)
	}
	var seen []tokenizer.RewrapProgress
	p, err := e.tz.Rewrap(ctx, []string{"acme", "nobody"}, func(p tokenizer.RewrapProgress) { seen = append(seen, p) })
	// system root, acme root, generation 1 (destroyed), generation 2
	want := tokenizer.RewrapProgress{Done: 4, Total: 4, Rewrapped: 3, Skipped: 1}
	if err != nil || p != want {
		t.Fatalf("Rewrap = %+v, %v; want %+v", p, err, want)
	}
	if len(seen) != 4 {
		t.Fatalf("progress called %d times, want once per key: %+v", len(seen), seen)
	}
	for i, s := range seen {
		if s.Done != i+1 || s.Total != 4 || s.Rewrapped+s.Skipped != s.Done {
			t.Errorf("progress %d = %+v", i, s)
		}
	}
	if e.rawGet(t, "jeton:k:acme:gen:1") != nil {
		t.Error("Rewrap brought back the destroyed generation's blob")
	}
	wantValue(t, revealOne(t, e.newTokenizer(t), e.t2), "Fake Gen Two")

	// Bad tenant names are the caller's fault.
	if _, err := e.tz.Rewrap(ctx, []string{"Bad Tenant"}, nil); !tokenizer.IsUserError(err) {
		t.Errorf("Rewrap(bad name) = %v, want a UserError", err)
	}
}

// destroyDuringRewrap runs a DestroyGeneration between the moment Rewrap
// gets a new wrapping from the KeyManager and the moment it stores it.
type destroyDuringRewrap struct {
	tokenizer.KeyManager
	once    sync.Once
	destroy func()
}

func (k *destroyDuringRewrap) Wrap(ctx context.Context, kek string, key, ad []byte) ([]byte, error) {
	out, err := k.KeyManager.Wrap(ctx, kek, key, ad)
	if kek == "acme-g1" {
		k.once.Do(k.destroy)
	}
	return out, err
}

func TestRewrapNeverResurrectsADestroyedGeneration(t *testing.T) {
	e := newGenEnv(t)
	ctx := context.Background()
	hook := &destroyDuringRewrap{KeyManager: e.keys}
	hook.destroy = func() {
		if err := e.tz.DestroyGeneration(ctx, "acme", 1); err != nil {
			t.Errorf("DestroyGeneration during Rewrap: %v", err)
		}
	}
	cfg := e.cfg
	cfg.Keys = hook
	rewrapper, err := tokenizer.New(cfg)
	if err != nil {
		t.Fatal(err)
	}
	p, err := rewrapper.Rewrap(ctx, []string{"acme"}, nil)
	if err != nil {
		t.Fatal(err)
	}
	if p.Skipped != 1 || p.Rewrapped != 2 {
		t.Errorf("Rewrap = %+v; want generation 1 skipped", p)
	}
	if e.rawGet(t, "jeton:k:acme:gen:1") != nil {
		t.Fatal("Rewrap wrote back the wrapped DEK of a generation destroyed meanwhile")
	}
	gens, err := e.tz.Generations(ctx, "acme")
	if err != nil || !gens[0].Destroyed {
		t.Fatalf("Generations = %+v, %v", gens, err)
	}
}

func TestRotateIfOlder(t *testing.T) {
	e := newEnv(t, withRefresh(testRefresh))
	ctx := context.Background()
	const month = 30 * 24 * time.Hour
	if _, _, err := e.tz.RotateIfOlder(ctx, "acme", month); !errors.Is(err, tokenizer.ErrNotFound) {
		t.Fatalf("RotateIfOlder(unknown tenant): %v, want ErrNotFound", err)
	}
	if _, err := e.tz.Generations(ctx, "acme"); !errors.Is(err, tokenizer.ErrNotFound) {
		t.Fatal("RotateIfOlder created the tenant")
	}
	tokenize(t, e.tz, "acme", []tokenizer.Item{{Class: "name", Value: "Fake Person"}}, "")
	for _, bad := range []time.Duration{0, -time.Hour} {
		if _, _, err := e.tz.RotateIfOlder(ctx, "acme", bad); !tokenizer.IsUserError(err) {
			t.Errorf("RotateIfOlder(maxAge %v): %v, want a UserError", bad, err)
		}
	}
	e.clock.Advance(month - time.Minute)
	if rotated, g, err := e.tz.RotateIfOlder(ctx, "acme", month); err != nil || rotated || g != 1 {
		t.Fatalf("RotateIfOlder(young) = %t, %d, %v; want false, 1", rotated, g, err)
	}
	e.clock.Advance(time.Minute)
	if rotated, g, err := e.tz.RotateIfOlder(ctx, "acme", month); err != nil || !rotated || g != 2 {
		t.Fatalf("RotateIfOlder(old) = %t, %d, %v; want true, 2", rotated, g, err)
	}

	// Five replicas on the same schedule: exactly one rotates.
	e.clock.Advance(month)
	replicas := make([]*tokenizer.Tokenizer, 5)
	for i := range replicas {
		replicas[i] = e.newTokenizer(t)
	}
	type result struct {
		rotated bool
		gen     uint32
		err     error
	}
	results := make([]result, len(replicas))
	var wg sync.WaitGroup
	start := make(chan struct{})
	for i, r := range replicas {
		wg.Go(func() {
			<-start
			rotated, gen, err := r.RotateIfOlder(ctx, "acme", month)
			results[i] = result{rotated, gen, err}
		})
	}
	close(start)
	wg.Wait()
	winners := 0
	for i, r := range results {
		if r.err != nil || r.gen != 3 {
			t.Errorf("replica %d: RotateIfOlder = %t, %d, %v; want generation 3", i, r.rotated, r.gen, r.err)
		}
		if r.rotated {
			winners++
		}
	}
	if winners != 1 {
		t.Errorf("%d replicas rotated, want exactly 1", winners)
	}
	gens, err := e.tz.Generations(ctx, "acme")
	if err != nil || len(gens) != 3 || !gens[2].Current {
		t.Fatalf("Generations = %+v, %v; want 3 generations", gens, err)
	}
}

// The stored current generation is a hint: a rotation that stopped before
// moving it, or a slow writer that moved it back, neither strands the
// newest generation nor makes it destroyable.
func TestCurrentPointerIsAHint(t *testing.T) {
	e := newGenEnv(t)
	ctx := context.Background()
	if err := e.mem.Put(ctx, []tokenizer.Entry{{Key: "jeton:k:acme:current", Value: []byte{1, 0, 0, 0, 1}}}); err != nil {
		t.Fatal(err)
	}
	cold := e.newTokenizer(t)
	tok := tokenize(t, cold, "acme", []tokenizer.Item{{Class: "name", Value: "Fake Person"}}, "")[0]
	if r := revealOne(t, cold, tok); r.Generation != 2 {
		t.Fatalf("tokenized under generation %d, want 2", r.Generation)
	}
	if err := cold.DestroyGeneration(ctx, "acme", 2); !tokenizer.IsUserError(err) {
		t.Fatalf("DestroyGeneration(real current) = %v, want a UserError", err)
	}
	if g, err := cold.RotateGeneration(ctx, "acme"); err != nil || g != 3 {
		t.Fatalf("RotateGeneration = %d, %v; want 3", g, err)
	}
	gens, err := cold.Generations(ctx, "acme")
	if err != nil {
		t.Fatal(err)
	}
	var nums []uint32
	for _, g := range gens {
		nums = append(nums, g.Generation)
	}
	if !slices.Equal(nums, []uint32{1, 2, 3}) || !gens[2].Current {
		t.Fatalf("Generations = %+v", gens)
	}
}

// retiredMain answers every unwrap under the main KEK as retired, as Vault
// does once custodians raised min_decryption_version without a rewrap.
type retiredMain struct{ tokenizer.KeyManager }

func (k retiredMain) Unwrap(ctx context.Context, kek string, wrapped, ad []byte) ([]byte, error) {
	if kek == "" {
		return nil, fmt.Errorf("retired: %w", tokenizer.ErrKeyDestroyed)
	}
	return k.KeyManager.Unwrap(ctx, kek, wrapped, ad)
}

// A tenant whose root key can no longer be unwrapped is an outage
// (ErrUnavailable), not a set of missing tokens: the call fails as a whole,
// and never as "not found".
func TestRetiredRootKeyIsUnavailable(t *testing.T) {
	e := newGenEnv(t)
	if _, err := e.tz.DeriveKey(context.Background(), "audit"); err != nil { // the system root key
		t.Fatal(err)
	}
	cfg := e.cfg
	cfg.Keys = retiredMain{e.keys}
	cold, err := tokenizer.New(cfg)
	if err != nil {
		t.Fatal(err)
	}
	ctx := context.Background()
	parsed, _ := tokenizer.ParseToken(e.t2)
	res, err := cold.Reveal(ctx, []tokenizer.Token{parsed})
	if !errors.Is(err, tokenizer.ErrUnavailable) || res != nil {
		t.Fatalf("Reveal with the root key retired = %v, %v; want ErrUnavailable", res, err)
	}
	if _, err := cold.Tokenize(ctx, "acme", []tokenizer.Item{{Class: "name", Value: "Fake Person"}}, ""); !errors.Is(err, tokenizer.ErrUnavailable) {
		t.Fatalf("Tokenize with the root key retired: %v; want ErrUnavailable", err)
	}
	if _, err := cold.DeriveKey(ctx, "audit"); !errors.Is(err, tokenizer.ErrUnavailable) {
		t.Fatalf("DeriveKey with the system root key retired: %v; want ErrUnavailable", err)
	}
}
