package tokenizer_test

// What a Redis writer can do to the keyring by editing what it keeps in
// the store: the current-generation pointer, a key blob's creation time,
// destroyed markers, and the generation a record's header names. Each
// test plays the attacker on the store directly.

import (
	"context"
	"encoding/binary"
	"errors"
	"fmt"
	"slices"
	"strconv"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/jeton-dev/jeton/tokenizer"
)

func (e *env) rawPut(t *testing.T, key string, val []byte) {
	t.Helper()
	if err := e.mem.Put(context.Background(), []tokenizer.Entry{{Key: key, Value: val}}); err != nil {
		t.Fatal(err)
	}
}

func (e *env) rawDel(t *testing.T, keys ...string) {
	t.Helper()
	if _, err := e.mem.Delete(context.Background(), keys); err != nil {
		t.Fatal(err)
	}
}

func pointer(gen uint32) []byte { return binary.BigEndian.AppendUint32([]byte{1}, gen) }

// threeGenerations is a tenant "acme" with generations 1, 2 and 3, 3
// current and every one old enough to destroy, and a token of each.
func threeGenerations(t *testing.T) (*env, []string) {
	t.Helper()
	e := newEnv(t, withRefresh(testRefresh))
	ctx := context.Background()
	var toks []string
	for g := 1; g <= 3; g++ {
		if g > 1 {
			if _, err := e.tz.RotateGeneration(ctx, "acme"); err != nil {
				t.Fatal(err)
			}
		}
		toks = append(toks, tokenize(t, e.tz, "acme", []tokenizer.Item{{Class: "name", Value: "Fake Gen Person"}}, "")[0])
	}
	e.clock.Advance(2*testRefresh + time.Second)
	return e, toks
}

// The stored pointer to the current generation never chooses it: a pointer
// far beyond the generations that exist is refused (not walked, not
// allocated for), and a deleted pointer is recovered from the generations
// that exist, never by starting generation 1 again.
func TestCurrentGenerationIsNotRedisChoice(t *testing.T) {
	ctx := context.Background()
	for _, huge := range []uint32{0xFFFFFFF0, 0xFFFFFFFF, tokenizer.MaxGenerations + 1, 4} {
		t.Run(fmt.Sprintf("pointer at %d", huge), func(t *testing.T) {
			e, toks := threeGenerations(t)
			e.rawPut(t, "jeton:k:acme:current", pointer(huge))
			cold := e.newTokenizer(t)
			calls := map[string]error{}
			_, calls["Generations"] = cold.Generations(ctx, "acme")
			_, calls["Stats"] = cold.Stats(ctx, []string{"acme"})
			_, calls["SweepDestroyed"] = cold.SweepDestroyed(ctx, "acme", tokenizer.SweepOptions{}, nil)
			_, calls["Rewrap"] = cold.Rewrap(ctx, []string{"acme"}, nil)
			_, calls["RotateGeneration"] = cold.RotateGeneration(ctx, "acme")
			calls["DestroyGeneration"] = cold.DestroyGeneration(ctx, "acme", 1)
			_, calls["Tokenize"] = cold.Tokenize(ctx, "acme", []tokenizer.Item{{Class: "name", Value: "Fake Person"}}, "")
			for call, err := range calls {
				if !errors.Is(err, tokenizer.ErrUnavailable) {
					t.Errorf("%s with the pointer at %d: %v, want ErrUnavailable", call, huge, err)
				}
			}
			if got := e.keys.destroyedKEKs(); len(got) != 0 {
				t.Errorf("a destroy under a forged pointer destroyed %q", got)
			}
			// Put back, everything works again.
			e.rawPut(t, "jeton:k:acme:current", pointer(3))
			if r := revealOne(t, e.newTokenizer(t), toks[2]); r.Err != nil {
				t.Fatalf("after the pointer is repaired: %v", r.Err)
			}
		})
	}

	t.Run("pointer deleted", func(t *testing.T) {
		e, _ := threeGenerations(t)
		e.rawDel(t, "jeton:k:acme:current")
		cold := e.newTokenizer(t)
		tok := tokenize(t, cold, "acme", []tokenizer.Item{{Class: "name", Value: "Fake Person"}}, "")[0]
		if r := revealOne(t, cold, tok); r.Generation != 3 {
			t.Fatalf("a cold replica with the pointer deleted sealed under generation %d, want 3", r.Generation)
		}
	})

	t.Run("pointer, generation 1 and its marker deleted", func(t *testing.T) {
		e, _ := threeGenerations(t)
		if err := e.tz.DestroyGeneration(ctx, "acme", 1); err != nil {
			t.Fatal(err)
		}
		e.rawDel(t, "jeton:k:acme:current", "jeton:k:acme:destroyed:1")
		cold := e.newTokenizer(t)
		tok := tokenize(t, cold, "acme", []tokenizer.Item{{Class: "name", Value: "Fake Person"}}, "")[0]
		if r := revealOne(t, cold, tok); r.Generation != 3 {
			t.Fatalf("sealed under generation %d, want 3", r.Generation)
		}
		if keks, _ := e.lk.KEKs(ctx, "acme-g1"); len(keks) != 0 {
			t.Errorf("a destroyed generation's KEK was created again: %q", keks)
		}
	})

	t.Run("every generation deleted, KEKs still in the key manager", func(t *testing.T) {
		e, _ := threeGenerations(t)
		e.rawDel(t, "jeton:k:acme:current", "jeton:k:acme:gen:1", "jeton:k:acme:gen:2", "jeton:k:acme:gen:3")
		cold := e.newTokenizer(t)
		if _, err := cold.Tokenize(ctx, "acme", []tokenizer.Item{{Class: "name", Value: "Fake Person"}}, ""); !errors.Is(err, tokenizer.ErrUnavailable) {
			t.Fatalf("Tokenize over a keyring emptied in the store: %v, want ErrUnavailable", err)
		}
		if e.rawGet(t, "jeton:k:acme:gen:1") != nil {
			t.Error("generation 1 was started again while the key manager holds the tenant's generations")
		}
	})

	t.Run("at most MaxGenerations", func(t *testing.T) {
		e, _ := threeGenerations(t)
		last := uint32(tokenizer.MaxGenerations)
		e.rawPut(t, "jeton:k:acme:destroyed:"+strconv.FormatUint(uint64(last), 10), []byte{1, 0, 0, 0, 0, 0, 0, 0, 0})
		e.rawPut(t, "jeton:k:acme:current", pointer(last))
		if _, err := e.tz.RotateGeneration(ctx, "acme"); !tokenizer.IsUserError(err) {
			t.Fatalf("RotateGeneration past MaxGenerations: %v, want a UserError", err)
		}
	})
}

// A key blob's creation time is bound to the wrapped key: moving it back
// to 1970 or into the future makes the blob fail to unwrap, so it can
// neither open the guard that keeps a just-superseded generation from
// being destroyed nor quietly stop scheduled rotation. A forged destroyed
// marker after the current generation does not make the current one
// destroyable either.
func TestKeyBlobCreationTimeIsBound(t *testing.T) {
	ctx := context.Background()
	edit := func(t *testing.T, e *env, key string, created time.Time) {
		t.Helper()
		b := e.rawGet(t, key)
		binary.BigEndian.PutUint64(b[1:9], uint64(created.Unix()))
		e.rawPut(t, key, b)
	}

	t.Run("successor moved to 1970", func(t *testing.T) {
		e := newEnv(t, withRefresh(testRefresh))
		tok := tokenize(t, e.tz, "acme", []tokenizer.Item{{Class: "name", Value: "Fake Person"}}, "")[0]
		if _, err := e.tz.RotateGeneration(ctx, "acme"); err != nil {
			t.Fatal(err)
		}
		edit(t, e, "jeton:k:acme:gen:2", time.Unix(1, 0))
		if err := e.newTokenizer(t).DestroyGeneration(ctx, "acme", 1); err == nil {
			t.Fatal("generation 1 was destroyed right after it stopped being current")
		}
		if got := e.keys.destroyedKEKs(); len(got) != 0 {
			t.Errorf("destroyed %q", got)
		}
		wantValue(t, revealOne(t, e.newTokenizer(t), tok), "Fake Person")
	})

	t.Run("current moved to the future", func(t *testing.T) {
		e := newEnv(t, withRefresh(testRefresh))
		tokenize(t, e.tz, "acme", []tokenizer.Item{{Class: "name", Value: "Fake Person"}}, "")
		const month = 30 * 24 * time.Hour
		e.clock.Advance(2 * month)
		edit(t, e, "jeton:k:acme:gen:1", e.clock.Now().Add(10*365*24*time.Hour))
		rotated, _, err := e.newTokenizer(t).RotateIfOlder(ctx, "acme", month)
		if rotated == false && err == nil {
			t.Fatal("a creation time moved into the future quietly stopped scheduled rotation")
		}
		if err != nil && !errors.Is(err, tokenizer.ErrKeyMismatch) {
			t.Fatalf("RotateIfOlder: %v, want a rotation or ErrKeyMismatch", err)
		}
	})

	// A successor stored by an earlier release (version 3: bound to its
	// identity, not to its creation time) may carry an edited time: the
	// destroy waits for a rewrap, which binds it.
	t.Run("successor stored before creation times were bound", func(t *testing.T) {
		e := newEnv(t, withRefresh(testRefresh))
		tokenize(t, e.tz, "acme", []tokenizer.Item{{Class: "name", Value: "Fake Person"}}, "")
		if _, err := e.tz.RotateGeneration(ctx, "acme"); err != nil {
			t.Fatal(err)
		}
		e.clock.Advance(2*testRefresh + time.Second)
		blob := e.rawGet(t, "jeton:k:acme:gen:2")
		kek, ad := tokenizer.KeyIdentity("acme", 2, blob)
		dek, err := e.lk.Unwrap(ctx, kek, wrappedOf(t, blob), ad)
		if err != nil {
			t.Fatal(err)
		}
		v3 := append([]byte{3}, blob[1:9]...)
		_, adV3 := tokenizer.KeyIdentity("acme", 2, append(slices.Clone(v3), "placeholder"...))
		wrapped, err := e.lk.Wrap(ctx, kek, dek, adV3)
		if err != nil {
			t.Fatal(err)
		}
		e.rawPut(t, "jeton:k:acme:gen:2", append(v3, wrapped...))
		cold := e.newTokenizer(t)
		if err := cold.DestroyGeneration(ctx, "acme", 1); !tokenizer.IsUserError(err) {
			t.Fatalf("destroy before a version 3 successor is rewrapped: %v, want a UserError", err)
		}
		if got := e.keys.destroyedKEKs(); len(got) != 0 {
			t.Fatalf("destroyed %q", got)
		}
		if p, err := cold.Rewrap(ctx, []string{"acme"}, nil); err != nil || p.Upgraded != 1 {
			t.Fatalf("Rewrap = %+v, %v; want the version 3 blob upgraded", p, err)
		}
		if err := cold.DestroyGeneration(ctx, "acme", 1); err != nil {
			t.Fatalf("destroy once the successor is rewrapped: %v", err)
		}
	})

	t.Run("forged destroyed marker after the current generation", func(t *testing.T) {
		e, toks := threeGenerations(t)
		e.rawPut(t, "jeton:k:acme:destroyed:4", []byte{1, 0, 0, 0, 0, 0, 0, 0, 0})
		err := e.newTokenizer(t).DestroyGeneration(ctx, "acme", 3)
		if err == nil {
			t.Fatal("the real current generation was destroyed behind a forged marker")
		}
		if got := e.keys.destroyedKEKs(); len(got) != 0 {
			t.Errorf("destroyed %q", got)
		}
		e.rawDel(t, "jeton:k:acme:destroyed:4")
		wantValue(t, revealOne(t, e.newTokenizer(t), toks[2]), "Fake Gen Person")
	})
}

// Records whose header names generations that do not exist add nothing
// lasting to a replica's key cache, however many are revealed.
func TestForgedRecordGenerationsDoNotGrowTheCache(t *testing.T) {
	e := newEnv(t, withRefresh(testRefresh))
	ctx := context.Background()
	toks := tokenize(t, e.tz, "acme", []tokenizer.Item{{Class: "name", Value: "Fake Person"}}, "")
	name, err := tokenizer.RecordKey(ctx, e.tz, toks[0])
	if err != nil {
		t.Fatal(err)
	}
	blob := e.rawGet(t, name)
	for g := uint32(2); g < 2000; g += 7 {
		b := slices.Clone(blob)
		binary.BigEndian.PutUint32(b[1:5], g) // the v3 header's generation
		e.rawPut(t, name, b)
		wantNotFound(t, revealOne(t, e.tz, toks[0]))
		e.clock.Advance(time.Second)
	}
	if n := tokenizer.CachedGenerations(e.tz, "acme"); n > 1 {
		t.Errorf("the key cache holds %d generations after reveals of forged headers; the tenant has 1", n)
	}
}

// A warm replica asks the key manager again once per KeyRefresh: a
// destroyed generation put back into the store (its wrapped key restored,
// its marker deleted) stops opening on a replica that had it loaded. While
// the key manager cannot be reached, the replica keeps serving what it
// verified; once it answers "destroyed", the keys are dropped.
func TestWarmReplicaAsksTheKeyManagerAgain(t *testing.T) {
	e := newGenEnv(t)
	ctx := context.Background()
	warm := e.newTokenizer(t)
	wantValue(t, revealOne(t, warm, e.t1), "Fake Gen One")

	// The key manager down: past KeyRefresh the loaded generation is
	// still served from memory.
	e.keys.fail("Unwrap", true)
	e.clock.Advance(testRefresh + time.Second)
	wantValue(t, revealOne(t, warm, e.t1), "Fake Gen One")
	e.keys.fail("Unwrap", false)

	blob := e.rawGet(t, "jeton:k:acme:gen:1")
	if err := e.tz.DestroyGeneration(ctx, "acme", 1); err != nil {
		t.Fatal(err)
	}
	e.rawPut(t, "jeton:k:acme:gen:1", blob)
	e.rawDel(t, "jeton:k:acme:destroyed:1")
	before := e.keys.count("Unwrap")
	wantValue(t, revealOne(t, warm, e.t1), "Fake Gen One") // within KeyRefresh: cached
	if e.keys.count("Unwrap") != before {
		t.Error("a generation checked less than KeyRefresh ago was unwrapped again: the key manager is on the per-item path")
	}
	e.clock.Advance(testRefresh + time.Second)
	wantNotFound(t, revealOne(t, warm, e.t1))
	gens, err := warm.Generations(ctx, "acme")
	if err != nil || !gens[0].Destroyed {
		t.Fatalf("Generations = %+v, %v; want generation 1 destroyed", gens, err)
	}
	wantValue(t, revealOne(t, warm, e.t2), "Fake Gen Two")
}

// gatedUnwrap holds the first Unwrap after it is armed until released, and
// counts the Unwraps made while armed.
type gatedUnwrap struct {
	tokenizer.KeyManager
	armed   atomic.Bool
	calls   atomic.Int32
	release chan struct{}
}

func (g *gatedUnwrap) Unwrap(ctx context.Context, kek string, wrapped, ad []byte) ([]byte, error) {
	if g.armed.Load() && g.calls.Add(1) == 1 {
		<-g.release
	}
	return g.KeyManager.Unwrap(ctx, kek, wrapped, ad)
}

// Past KeyRefresh, one caller asks the key manager again while the others
// go on with the keys held: a generation in use costs one key-manager call
// per interval, however many calls arrive meanwhile.
func TestOneRecheckPerInterval(t *testing.T) {
	e := newGenEnv(t)
	g := &gatedUnwrap{KeyManager: e.keys, release: make(chan struct{})}
	cfg := e.cfg
	cfg.Keys = g
	warm, err := tokenizer.New(cfg)
	if err != nil {
		t.Fatal(err)
	}
	wantValue(t, revealOne(t, warm, e.t1), "Fake Gen One")
	e.clock.Advance(testRefresh + time.Second)
	g.armed.Store(true)

	const callers = 16
	var wg sync.WaitGroup
	done := make(chan struct{}, callers)
	for range callers {
		wg.Go(func() {
			defer func() { done <- struct{}{} }()
			wantValue(t, revealOne(t, warm, e.t1), "Fake Gen One")
		})
	}
	// All but the one held in Unwrap finish without it.
	for range callers - 1 {
		<-done
	}
	close(g.release)
	wg.Wait()
	if n := g.calls.Load(); n != 1 {
		t.Errorf("%d callers past KeyRefresh made %d key-manager calls, want 1", callers, n)
	}
}
