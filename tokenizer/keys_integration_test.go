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

// Blobs written by earlier releases are read with the KEK their identity
// names: version 2 (under the generation's own KEK, no associated data, a
// KEK name that is ignored) and version 3 (bound to its identity, but not
// to its creation time) open; Rewrap binds them as version 4, identity and
// creation time, so that the upgraded blob opens neither without its
// associated data nor with its creation time changed.
func TestUnboundBlobUpgradeAgainstVault(t *testing.T) {
	// KeyIdentity reads only a blob's header; this stands for its body.
	legacyPlaceholder := []byte("vault:v1:AA==")
	for _, version := range []byte{2, 3} {
		t.Run(fmt.Sprintf("version %d", version), func(t *testing.T) {
			e := startRealEnv(t)
			r := testenv.StartRedis(t)
			ctx := ctxTimeout(t)
			tz := e.replica(t, r)
			tok := tokenize(t, tz, "acme", fakeItems("Legacy", 2), "")
			// Re-wrap generation 1's DEK as the earlier release did.
			blob := rawGet(t, r, "jeton:k:acme:gen:1")
			kek, ad := tokenizer.KeyIdentity("acme", 1, blob)
			m := e.keys(t)
			dek, err := m.Unwrap(ctx, kek, wrappedOf(t, blob), ad)
			if err != nil {
				t.Fatal(err)
			}
			created := binary.BigEndian.Uint64(blob[1:9])
			old := binary.BigEndian.AppendUint64([]byte{version}, created)
			var oldAD []byte // version 2: none
			if version == 3 {
				_, oldAD = tokenizer.KeyIdentity("acme", 1, append(slices.Clone(old), legacyPlaceholder...))
			}
			legacy, err := m.Wrap(ctx, kek, dek, oldAD)
			if err != nil {
				t.Fatal(err)
			}
			if version == 2 {
				old = append(append(old, byte(len(kek))), kek...)
			}
			rawPut(t, r, "jeton:k:acme:gen:1", append(old, legacy...))
			wantAll(t, e.replica(t, r), "legacy blob", tok, fakeItems("Legacy", 2))

			p, err := tz.Rewrap(ctx, []string{"acme"}, nil)
			if err != nil || p.Upgraded != 1 || p.Rewrapped != 2 { // root and generation 1
				t.Fatalf("Rewrap = %+v, %v; want the one legacy key upgraded", p, err)
			}
			after := rawGet(t, r, "jeton:k:acme:gen:1")
			if after[0] != 4 || bytes.Equal(wrappedOf(t, after), legacy) || binary.BigEndian.Uint64(after[1:9]) != created {
				t.Fatal("Rewrap did not bind the legacy blob as version 4, with its creation time")
			}
			if _, err := m.Unwrap(ctx, kek, wrappedOf(t, after), oldAD); !errors.Is(err, tokenizer.ErrKeyMismatch) {
				t.Errorf("the upgraded key opens with the legacy binding: %v", err)
			}
			edited := slices.Clone(after)
			binary.BigEndian.PutUint64(edited[1:9], created-3600)
			ekek, ead := tokenizer.KeyIdentity("acme", 1, edited)
			if _, err := m.Unwrap(ctx, ekek, wrappedOf(t, edited), ead); !errors.Is(err, tokenizer.ErrKeyMismatch) {
				t.Errorf("the upgraded key with its creation time changed: %v, want ErrKeyMismatch", err)
			}
			wantAll(t, e.replica(t, r), "after the upgrade", tok, fakeItems("Legacy", 2))
		})
	}
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
