package tokenizer_test

import (
	"bytes"
	"context"
	"encoding/binary"
	"errors"
	"slices"
	"testing"

	"github.com/jeton-dev/jeton/tokenizer"
)

// keyAttack rewrites what the store holds for one of acme's keys, as
// someone who can write to Redis would.
type keyAttack struct {
	name string
	key  string // the store key rewritten
	// blob returns the new value from acme's and beta's stored blobs.
	blob func(t *testing.T, e *env) []byte
}

// asVersion2 rewrites a stored version 3 blob as version 2 naming kek:
// the format that carried a KEK name, which jeton once trusted.
func asVersion2(t *testing.T, blob []byte, kek string) []byte {
	t.Helper()
	b := binary.BigEndian.AppendUint64([]byte{2}, binary.BigEndian.Uint64(blob[1:9]))
	b = append(b, byte(len(kek)))
	return append(append(b, kek...), wrappedOf(t, blob)...)
}

var keyAttacks = []keyAttack{
	{"empty KEK field", "jeton:k:acme:gen:1", func(t *testing.T, e *env) []byte {
		return asVersion2(t, e.rawGet(t, "jeton:k:acme:gen:1"), "")
	}},
	{"another tenant's KEK name", "jeton:k:acme:gen:1", func(t *testing.T, e *env) []byte {
		return asVersion2(t, e.rawGet(t, "jeton:k:acme:gen:1"), "beta-g1")
	}},
	{"another tenant's generation blob", "jeton:k:acme:gen:1", func(t *testing.T, e *env) []byte {
		return e.rawGet(t, "jeton:k:beta:gen:1")
	}},
	{"another tenant's root blob", "jeton:k:acme:root", func(t *testing.T, e *env) []byte {
		return e.rawGet(t, "jeton:k:beta:root")
	}},
	{"the root blob as a generation's", "jeton:k:acme:gen:1", func(t *testing.T, e *env) []byte {
		return e.rawGet(t, "jeton:k:acme:root")
	}},
	{"another generation's blob", "jeton:k:acme:gen:1", func(t *testing.T, e *env) []byte {
		return e.rawGet(t, "jeton:k:acme:gen:2")
	}},
	{"downgraded to version 1 (main KEK)", "jeton:k:acme:gen:1", func(t *testing.T, e *env) []byte {
		return append([]byte{1}, wrappedOf(t, e.rawGet(t, "jeton:k:acme:gen:1"))...)
	}},
	{"edited wrapped key", "jeton:k:acme:gen:1", func(t *testing.T, e *env) []byte {
		b := bytes.Clone(e.rawGet(t, "jeton:k:acme:gen:1"))
		b[len(b)-1] ^= 1
		return b
	}},
}

// attackEnv is acme with generations 1 and 2 (2 current, 1 destroyable)
// and beta with generation 1, each with a token, and a tenant "acme-g1"
// whose KEK names start like acme's.
type attackEnv struct {
	genEnv
	beta, lookalike string
}

func newAttackEnv(t *testing.T) attackEnv {
	t.Helper()
	e := newGenEnv(t)
	beta := tokenize(t, e.tz, "beta", []tokenizer.Item{{Class: "name", Value: "Fake Beta"}}, "")[0]
	look := tokenize(t, e.tz, "acme-g1", []tokenizer.Item{{Class: "name", Value: "Fake Lookalike"}}, "")[0]
	return attackEnv{genEnv: e, beta: beta, lookalike: look}
}

// wantOthersIntact checks that beta's and acme-g1's keys survived.
func (e attackEnv) wantOthersIntact(t *testing.T) {
	t.Helper()
	fresh := e.newTokenizer(t)
	wantValue(t, revealOne(t, fresh, e.beta), "Fake Beta")
	wantValue(t, revealOne(t, fresh, e.lookalike), "Fake Lookalike")
	for _, kek := range e.keys.destroyedKEKs() {
		if tenant, _, ok := tokenizer.ParseGenerationKEK(kek); !ok || tenant != "acme" {
			t.Errorf("destroyed KEK %q, which is not acme's", kek)
		}
	}
}

// A key blob moved or edited in the store never unwraps: a cold replica
// answers ErrUnavailable (naming ErrKeyMismatch), never ErrNotFound, and
// never a value; so does a warm one for a generation's DEK, which it
// re-reads every KeyRefresh. A warm replica keeps the genuine root key it
// unwrapped before the attack, and goes on serving with it.
func TestMovedOrEditedKeyBlobFailsClosed(t *testing.T) {
	for _, a := range keyAttacks {
		t.Run(a.name, func(t *testing.T) {
			e := newAttackEnv(t)
			ctx := context.Background()
			warm := e.newTokenizer(t)
			wantValue(t, revealOne(t, warm, e.t1), "Fake Gen One")
			if err := e.mem.Put(ctx, []tokenizer.Entry{{Key: a.key, Value: a.blob(t, e.env)}}); err != nil {
				t.Fatal(err)
			}
			e.clock.Advance(testRefresh + 1) // the warm replica re-reads its keys
			parsed, _ := tokenizer.ParseToken(e.t1)
			replicas := map[string]*tokenizer.Tokenizer{"warm": warm, "cold": e.newTokenizer(t)}
			if a.key == "jeton:k:acme:root" {
				wantValue(t, revealOne(t, warm, e.t1), "Fake Gen One")
				delete(replicas, "warm")
			}
			for name, tz := range replicas {
				res, err := tz.Reveal(ctx, []tokenizer.Token{parsed})
				if !errors.Is(err, tokenizer.ErrUnavailable) || !errors.Is(err, tokenizer.ErrKeyMismatch) {
					t.Errorf("%s replica: Reveal = %v, %v; want ErrUnavailable with ErrKeyMismatch", name, res, err)
				}
				if errors.Is(err, tokenizer.ErrNotFound) || errors.Is(err, tokenizer.ErrKeyDestroyed) {
					t.Errorf("%s replica: a moved key reads as a missing token: %v", name, err)
				}
			}
			e.wantOthersIntact(t)
		})
	}
}

// Whatever the store holds, DestroyGeneration destroys exactly the KEK of
// the tenant and generation asked for, and PurgeTenant exactly the
// tenant's KEKs: never another tenant's, and never none.
func TestDestroyAndPurgeIgnoreTheStoredBlob(t *testing.T) {
	ctx := context.Background()
	for _, a := range keyAttacks {
		t.Run(a.name, func(t *testing.T) {
			t.Run("DestroyGeneration", func(t *testing.T) {
				e := newAttackEnv(t)
				stored := e.rawGet(t, "jeton:k:acme:gen:1")
				wrapped := wrappedOf(t, stored)
				if err := e.mem.Put(ctx, []tokenizer.Entry{{Key: a.key, Value: a.blob(t, e.env)}}); err != nil {
					t.Fatal(err)
				}
				if err := e.tz.DestroyGeneration(ctx, "acme", 1); err != nil {
					t.Fatalf("DestroyGeneration: %v", err)
				}
				if got := e.keys.destroyedKEKs(); !slices.Equal(got, []string{"acme-g1"}) {
					t.Errorf("destroyed %q, want exactly [acme-g1]", got)
				}
				kek, ad := tokenizer.KeyIdentity("acme", 1, stored)
				if _, err := e.lk.Unwrap(ctx, kek, wrapped, ad); !errors.Is(err, tokenizer.ErrKeyDestroyed) {
					t.Errorf("acme's generation 1 DEK still unwraps: %v", err)
				}
				e.wantOthersIntact(t)
			})
			t.Run("PurgeTenant", func(t *testing.T) {
				e := newAttackEnv(t)
				if err := e.mem.Put(ctx, []tokenizer.Entry{{Key: a.key, Value: a.blob(t, e.env)}}); err != nil {
					t.Fatal(err)
				}
				if _, err := e.tz.PurgeTenant(ctx, "acme"); err != nil {
					t.Fatalf("PurgeTenant: %v", err)
				}
				got := e.keys.destroyedKEKs()
				slices.Sort(got)
				if !slices.Equal(got, []string{"acme-g1", "acme-g2"}) {
					t.Errorf("destroyed %q, want exactly [acme-g1 acme-g2]", got)
				}
				if left, _ := e.lk.KEKs(ctx, "acme-g"); !slices.Equal(left, []string{"acme-g1-g1"}) {
					t.Errorf("KEKs left with acme's prefix: %q, want only tenant acme-g1's", left)
				}
				e.wantOthersIntact(t)
			})
		})
	}
}

// A store that hides generations (the current pointer moved back, a
// generation's blob and marker deleted) does not save their KEKs from a
// purge: the KeyManager is asked which of the tenant's KEKs exist.
func TestPurgeFindsGenerationsTheStoreHides(t *testing.T) {
	e := newAttackEnv(t)
	ctx := context.Background()
	if _, err := e.tz.RotateGeneration(ctx, "acme"); err != nil { // generation 3
		t.Fatal(err)
	}
	if _, err := e.mem.Delete(ctx, []string{"jeton:k:acme:gen:2", "jeton:k:acme:gen:3"}); err != nil {
		t.Fatal(err)
	}
	if err := e.mem.Put(ctx, []tokenizer.Entry{{Key: "jeton:k:acme:current", Value: []byte{1, 0, 0, 0, 1}}}); err != nil {
		t.Fatal(err)
	}
	if _, err := e.tz.PurgeTenant(ctx, "acme"); err != nil {
		t.Fatal(err)
	}
	got := e.keys.destroyedKEKs()
	slices.Sort(got)
	if !slices.Equal(got, []string{"acme-g1", "acme-g2", "acme-g3"}) {
		t.Errorf("destroyed %q, want every one of acme's KEKs", got)
	}
	e.wantOthersIntact(t)

	// A purge that cannot list the KEKs fails rather than leave some.
	e2 := newAttackEnv(t)
	e2.keys.fail("KEKs", true)
	if _, err := e2.tz.PurgeTenant(ctx, "acme"); !errors.Is(err, tokenizer.ErrUnavailable) {
		t.Fatalf("PurgeTenant with a failing KEK listing: %v, want ErrUnavailable", err)
	}
}
