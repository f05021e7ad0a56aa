package tokenizer_test

// Key identity and per-generation deterministic keys against a real
// redis-server and a real Vault (integration/testenv), with jetond's
// least-privilege Vault policy.

import (
	"bytes"
	"encoding/binary"
	"errors"
	"fmt"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/jeton-dev/jeton/integration/testenv"
	"github.com/jeton-dev/jeton/tokenizer"
)

// vaultKeys lists the Transit keys of the mount.
func (e *realEnv) vaultKeys(t *testing.T) []string {
	t.Helper()
	s, err := e.root.Logical().ListWithContext(ctxTimeout(t), "transit/keys")
	if err != nil || s == nil {
		t.Fatalf("list transit keys: %v", err)
	}
	var out []string
	for _, k := range s.Data["keys"].([]any) {
		out = append(out, k.(string))
	}
	slices.Sort(out)
	return out
}

func rawPut(t *testing.T, r *testenv.Redis, key string, val []byte) {
	t.Helper()
	if err := r.Client(t).Set(ctxTimeout(t), key, val, 0).Err(); err != nil {
		t.Fatal(err)
	}
}

// The done-when of key identity, against real Vault: a stored key blob is
// rewritten (its KEK field emptied, set to another tenant's key name, or
// replaced by another tenant's blob). A moved blob does not unwrap: the
// call answers UNAVAILABLE, not "not found". DestroyGeneration and
// PurgeTenant still destroy exactly the right Vault keys and never another
// tenant's.
func TestKeyBlobRewritesAgainstVault(t *testing.T) {
	e := startRealEnv(t)
	r := testenv.StartRedis(t)
	ctx := ctxTimeout(t)
	tz := e.replica(t, r)
	for i, attack := range []struct {
		name string
		key  func(a string) string
		blob func(t *testing.T, a, b string) []byte
	}{
		{"empty KEK field", func(a string) string { return "jeton:k:" + a + ":gen:1" }, func(t *testing.T, a, b string) []byte {
			return asVersion2(t, rawGet(t, r, "jeton:k:"+a+":gen:1"), "")
		}},
		{"another tenant's key name", func(a string) string { return "jeton:k:" + a + ":gen:1" }, func(t *testing.T, a, b string) []byte {
			return asVersion2(t, rawGet(t, r, "jeton:k:"+a+":gen:1"), b+"-g1")
		}},
		{"another tenant's generation blob", func(a string) string { return "jeton:k:" + a + ":gen:1" }, func(t *testing.T, a, b string) []byte {
			return rawGet(t, r, "jeton:k:"+b+":gen:1")
		}},
		{"another tenant's root blob", func(a string) string { return "jeton:k:" + a + ":root" }, func(t *testing.T, a, b string) []byte {
			return rawGet(t, r, "jeton:k:"+b+":root")
		}},
	} {
		t.Run(attack.name, func(t *testing.T) {
			a, b := fmt.Sprintf("acme%d", i), fmt.Sprintf("beta%d", i)
			e.offset.Store(0)
			tokA := tokenize(t, tz, a, fakeItems("Acme", 2), "")
			if _, err := tz.RotateGeneration(ctx, a); err != nil {
				t.Fatal(err)
			}
			tokB := tokenize(t, tz, b, fakeItems("Beta", 2), "")
			e.offset.Store(int64(24 * time.Hour))
			before := e.vaultKeys(t)
			rawPut(t, r, attack.key(a), attack.blob(t, a, b))

			res, err := e.replica(t, r).Reveal(ctx, []tokenizer.Token{mustParse(t, tokA[0])})
			if !errors.Is(err, tokenizer.ErrUnavailable) || !errors.Is(err, tokenizer.ErrKeyMismatch) || errors.Is(err, tokenizer.ErrNotFound) {
				t.Errorf("Reveal under a moved blob = %v, %v; want ErrUnavailable (key mismatch), never not found", res, err)
			}

			if err := tz.DestroyGeneration(ctx, a, 1); err != nil {
				t.Fatalf("DestroyGeneration: %v", err)
			}
			after := e.vaultKeys(t)
			if gone := slices.DeleteFunc(slices.Clone(before), func(k string) bool { return slices.Contains(after, k) }); !slices.Equal(gone, []string{"jeton-kek-" + a + "-g1"}) {
				t.Errorf("DestroyGeneration removed Vault keys %q, want exactly [jeton-kek-%s-g1]", gone, a)
			}
			if _, err := tz.PurgeTenant(ctx, a); err != nil {
				t.Fatalf("PurgeTenant: %v", err)
			}
			final := e.vaultKeys(t)
			for _, k := range final {
				if strings.HasPrefix(k, "jeton-kek-"+a+"-") {
					t.Errorf("PurgeTenant left %s's Vault key %s", a, k)
				}
			}
			if want := []string{"jeton-kek-" + b + "-g1"}; !slices.Contains(final, want[0]) {
				t.Errorf("PurgeTenant of %s destroyed %s's Vault key", a, b)
			}
			wantAll(t, e.replica(t, r), b+" after "+a+"'s destroy and purge", tokB, fakeItems("Beta", 2))
		})
	}
}

func mustParse(t *testing.T, s string) tokenizer.Token {
	t.Helper()
	tok, err := tokenizer.ParseToken(s)
	if err != nil {
		t.Fatal(err)
	}
	return tok
}

// The done-when of per-generation deterministic keys, against real Redis
// and Vault: a deterministic value tokenized under generation 1 keeps its
// token across the rotation; once generation 1 is destroyed, the same
// value gets a different token, the old token reveals nothing, and
// restoring a copy of Redis taken before the destroy brings neither back.
func TestDeterministicGenerationDestroyEndToEnd(t *testing.T) {
	e := startRealEnv(t)
	live := testenv.StartRedis(t)
	ctx := ctxTimeout(t)
	tz := e.replicaWith(t, live, memberID)
	value := member("fake-member-0042")

	t1 := tokenize(t, tz, "acme", value, "")[0]
	if _, err := tz.RotateGeneration(ctx, "acme"); err != nil {
		t.Fatal(err)
	}
	e.offset.Store(int64(24 * time.Hour)) // replicas long on generation 2
	if got := tokenize(t, tz, "acme", value, "")[0]; got != t1 {
		t.Fatal("the value got a new token across a rotation")
	}
	backup := backupRedis(t, live)

	if err := tz.DestroyGeneration(ctx, "acme", 1); err != nil {
		t.Fatalf("DestroyGeneration: %v", err)
	}
	t2 := tokenize(t, tz, "acme", value, "")[0]
	if t2 == t1 {
		t.Fatal("after the destroy the value got its generation 1 token again")
	}
	fresh := e.replicaWith(t, live, memberID)
	wantNone(t, fresh, "live, old token", []string{t1})
	if r := reveal(t, fresh, t2)[0]; r.Err != nil || r.Value != "fake-member-0042" || r.Generation != 2 {
		t.Fatalf("the new token: generation %d, err %v", r.Generation, r.Err)
	}

	restored := e.replicaWith(t, restoreRedis(t, backup), memberID)
	if rawGet(t, live, "jeton:k:acme:gen:1") != nil {
		t.Fatal("the live Redis still holds generation 1's key")
	}
	wantNone(t, restored, "restored copy, old token", []string{t1})
	if got := tokenize(t, restored, "acme", value, "")[0]; got == t1 {
		t.Fatal("the restored copy recomputed the destroyed generation's token")
	}
}

// replicaWith is replica with extra classes.
func (e *realEnv) replicaWith(t testing.TB, r *testenv.Redis, extra ...tokenizer.Class) *tokenizer.Tokenizer {
	t.Helper()
	return e.replicaClasses(t, r, append(tokenizer.DefaultClasses(), extra...))
}

// A blob written as version 2 (the format with a KEK name) is read with
// the KEK its identity names: the version 2 blob that jeton wrote before
// binding, under the generation's own KEK and without associated data,
// opens; Rewrap binds it.
func TestUnboundBlobUpgradeAgainstVault(t *testing.T) {
	e := startRealEnv(t)
	r := testenv.StartRedis(t)
	ctx := ctxTimeout(t)
	tz := e.replica(t, r)
	tok := tokenize(t, tz, "acme", fakeItems("Legacy", 2), "")
	// Re-wrap generation 1's DEK as the previous release did: no
	// associated data, a version 2 blob naming its KEK.
	blob := rawGet(t, r, "jeton:k:acme:gen:1")
	kek, ad := tokenizer.KeyIdentity("acme", 1)
	m := e.keys(t)
	dek, err := m.Unwrap(ctx, kek, wrappedOf(t, blob), ad)
	if err != nil {
		t.Fatal(err)
	}
	unbound, err := m.Wrap(ctx, kek, dek, nil)
	if err != nil {
		t.Fatal(err)
	}
	v2 := binary.BigEndian.AppendUint64([]byte{2}, binary.BigEndian.Uint64(blob[1:9]))
	v2 = append(append(append(v2, byte(len(kek))), kek...), unbound...)
	rawPut(t, r, "jeton:k:acme:gen:1", v2)
	wantAll(t, e.replica(t, r), "unbound version 2 blob", tok, fakeItems("Legacy", 2))

	p, err := tz.Rewrap(ctx, []string{"acme"}, nil)
	if err != nil || p.Upgraded != 1 || p.Rewrapped != 2 { // root and generation 1
		t.Fatalf("Rewrap = %+v, %v; want the one unbound key upgraded", p, err)
	}
	after := rawGet(t, r, "jeton:k:acme:gen:1")
	if after[0] != 3 || bytes.Equal(wrappedOf(t, after), unbound) {
		t.Fatal("Rewrap did not bind the version 2 blob")
	}
	if _, err := m.Unwrap(ctx, kek, wrappedOf(t, after), nil); !errors.Is(err, tokenizer.ErrKeyMismatch) {
		t.Errorf("the upgraded key opens without its associated data: %v", err)
	}
	wantAll(t, e.replica(t, r), "after the upgrade", tok, fakeItems("Legacy", 2))
}

// A warm replica whose DEK unwrap fails because Vault is sealed answers
// UNAVAILABLE for a generation it has not loaded: never "not found".
// Real Vault.
func TestWarmReplicaWithVaultSealedIsUnavailable(t *testing.T) {
	e := startRealEnv(t)
	r := testenv.StartRedis(t)
	ctx := ctxTimeout(t)
	tz := e.replica(t, r)
	old := tokenize(t, tz, "acme", fakeItems("Sealed", 2), "")
	if _, err := tz.RotateGeneration(ctx, "acme"); err != nil {
		t.Fatal(err)
	}
	warm := e.replica(t, r)
	// A random class only: a deterministic one would look its value up
	// in generation 1 too, and load it.
	warmItems := []tokenizer.Item{{Class: "name", Value: "Fake Warm Person"}}
	cur := tokenize(t, warm, "acme", warmItems, "") // loads acme and generation 2 only

	e.vault.Seal()
	res, err := warm.Reveal(ctx, []tokenizer.Token{mustParse(t, old[0])})
	if !errors.Is(err, tokenizer.ErrUnavailable) || errors.Is(err, tokenizer.ErrNotFound) || res != nil {
		t.Errorf("Reveal of an unloaded generation with Vault sealed = %v, %v; want ErrUnavailable", res, err)
	}
	// What it holds it still serves.
	wantAll(t, warm, "loaded generation, Vault sealed", cur, warmItems)
	e.vault.Unseal()
	wantAll(t, warm, "after unseal", old, fakeItems("Sealed", 2))
}
