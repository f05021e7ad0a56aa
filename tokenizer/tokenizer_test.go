package tokenizer_test

import (
	"bytes"
	"context"
	"crypto/sha256"
	"encoding/base64"
	"encoding/hex"
	"errors"
	"fmt"
	"slices"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/jeton-dev/jeton/tokenizer"
	"github.com/jeton-dev/jeton/tokenizer/localkeys"
	"github.com/jeton-dev/jeton/tokenizer/memstore"
)

var errFakeDown = errors.New("fake backend down")

// fakeClock is a settable clock shared by a Tokenizer and its memstore.
type fakeClock struct {
	mu  sync.Mutex
	now time.Time
}

func newClock() *fakeClock {
	return &fakeClock{now: time.Date(2030, 1, 2, 3, 4, 5, 0, time.UTC)}
}

func (c *fakeClock) Now() time.Time {
	c.mu.Lock()
	defer c.mu.Unlock()
	return c.now
}

func (c *fakeClock) Advance(d time.Duration) {
	c.mu.Lock()
	c.now = c.now.Add(d)
	c.mu.Unlock()
}

// recStore wraps a Store, logs everything written to it, and can be told
// to fail an operation or to run a hook after a Get.
type recStore struct {
	inner tokenizer.Store

	mu       sync.Mutex
	written  []tokenizer.Entry   // every entry passed to Put or Write, or stored by PutNew or Swap
	sets     map[string][]string // every member added, by set key
	deleted  []string
	failing  map[string]bool
	afterGet func(keys []string)
	// beforePutNew, if set, runs before each PutNew.
	beforePutNew func(keys []string)
	// beforeWrite, if set, runs before each Write, and fails it if it
	// returns an error.
	beforeWrite func() error
	// beforeSwap, if set, runs before each Swap.
	beforeSwap func()
}

func newRecStore(inner tokenizer.Store) *recStore {
	return &recStore{inner: inner, sets: map[string][]string{}, failing: map[string]bool{}}
}

func (s *recStore) fail(op string, on bool) {
	s.mu.Lock()
	s.failing[op] = on
	s.mu.Unlock()
}

func (s *recStore) check(op string) error {
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.failing[op] {
		return errFakeDown
	}
	return nil
}

func (s *recStore) Put(ctx context.Context, entries []tokenizer.Entry) error {
	if err := s.check("Put"); err != nil {
		return err
	}
	s.mu.Lock()
	s.written = append(s.written, entries...)
	s.mu.Unlock()
	return s.inner.Put(ctx, entries)
}

func (s *recStore) PutNew(ctx context.Context, entries []tokenizer.Entry) ([]bool, error) {
	if err := s.check("PutNew"); err != nil {
		return nil, err
	}
	s.mu.Lock()
	hook := s.beforePutNew
	s.mu.Unlock()
	if hook != nil {
		keys := make([]string, len(entries))
		for i, e := range entries {
			keys[i] = e.Key
		}
		hook(keys)
	}
	won, err := s.inner.PutNew(ctx, entries)
	s.mu.Lock()
	for i, ok := range won {
		if ok {
			s.written = append(s.written, entries[i])
		}
	}
	s.mu.Unlock()
	return won, err
}

func (s *recStore) PutExisting(ctx context.Context, entries []tokenizer.Entry) ([]bool, error) {
	if err := s.check("PutExisting"); err != nil {
		return nil, err
	}
	stored, err := s.inner.PutExisting(ctx, entries)
	s.mu.Lock()
	for i, ok := range stored {
		if ok {
			s.written = append(s.written, entries[i])
		}
	}
	s.mu.Unlock()
	return stored, err
}

func (s *recStore) Swap(ctx context.Context, old []byte, e tokenizer.Entry) (bool, error) {
	if err := s.check("Swap"); err != nil {
		return false, err
	}
	s.mu.Lock()
	hook := s.beforeSwap
	s.mu.Unlock()
	if hook != nil {
		hook()
	}
	ok, err := s.inner.Swap(ctx, old, e)
	if ok {
		s.mu.Lock()
		s.written = append(s.written, e)
		s.mu.Unlock()
	}
	return ok, err
}

// Write logs every record it is given, whether or not the store creates
// it, and every set member.
func (s *recStore) Write(ctx context.Context, w tokenizer.Write) error {
	if err := s.check("Write"); err != nil {
		return err
	}
	s.mu.Lock()
	hook := s.beforeWrite
	s.mu.Unlock()
	if hook != nil {
		if err := hook(); err != nil {
			return err
		}
	}
	s.mu.Lock()
	s.written = append(s.written, w.Create...)
	s.written = append(s.written, w.Keep...)
	for _, a := range w.Sets {
		s.sets[a.Key] = append(s.sets[a.Key], a.Members...)
	}
	s.mu.Unlock()
	return s.inner.Write(ctx, w)
}

func (s *recStore) Get(ctx context.Context, keys []string) ([][]byte, error) {
	if err := s.check("Get"); err != nil {
		return nil, err
	}
	vals, err := s.inner.Get(ctx, keys)
	s.mu.Lock()
	hook := s.afterGet
	s.mu.Unlock()
	if hook != nil {
		hook(keys)
	}
	return vals, err
}

func (s *recStore) Delete(ctx context.Context, keys []string) (int, error) {
	if err := s.check("Delete"); err != nil {
		return 0, err
	}
	s.mu.Lock()
	s.deleted = append(s.deleted, keys...)
	s.mu.Unlock()
	return s.inner.Delete(ctx, keys)
}

func (s *recStore) AddToSet(ctx context.Context, key string, members []string, ttl time.Duration) error {
	if err := s.check("AddToSet"); err != nil {
		return err
	}
	s.mu.Lock()
	s.sets[key] = append(s.sets[key], members...)
	s.mu.Unlock()
	return s.inner.AddToSet(ctx, key, members, ttl)
}

func (s *recStore) Scan(ctx context.Context, prefix string, fn func(keys []string) error) error {
	if err := s.check("Scan"); err != nil {
		return err
	}
	return s.inner.Scan(ctx, prefix, fn)
}

func (s *recStore) SetMembers(ctx context.Context, key string) ([]string, error) {
	if err := s.check("SetMembers"); err != nil {
		return nil, err
	}
	return s.inner.SetMembers(ctx, key)
}

// mark returns a position in the write log.
func (s *recStore) mark() int {
	s.mu.Lock()
	defer s.mu.Unlock()
	return len(s.written)
}

// recordKeysSince returns the record keys written since mark, in order.
func (s *recStore) recordKeysSince(mark int) []string {
	s.mu.Lock()
	defer s.mu.Unlock()
	var out []string
	for _, e := range s.written[mark:] {
		if strings.HasPrefix(e.Key, "jeton:r:") {
			out = append(out, e.Key)
		}
	}
	return out
}

// distinctRecordsSince counts the distinct record keys written since mark.
func (s *recStore) distinctRecordsSince(mark int) int {
	seen := map[string]bool{}
	for _, k := range s.recordKeysSince(mark) {
		seen[k] = true
	}
	return len(seen)
}

// liveRecords counts the distinct record keys ever written that still hold
// a value.
func (s *recStore) liveRecords(tb testing.TB) int {
	tb.Helper()
	seen := map[string]bool{}
	for _, k := range s.recordKeysSince(0) {
		seen[k] = true
	}
	keys := make([]string, 0, len(seen))
	for k := range seen {
		keys = append(keys, k)
	}
	vals, err := s.inner.Get(context.Background(), keys)
	if err != nil {
		tb.Fatal(err)
	}
	n := 0
	for _, v := range vals {
		if v != nil {
			n++
		}
	}
	return n
}

func (s *recStore) deletedWithPrefix(prefix string) int {
	s.mu.Lock()
	defer s.mu.Unlock()
	n := 0
	for _, k := range s.deleted {
		if strings.HasPrefix(k, prefix) {
			n++
		}
	}
	return n
}

// recKeys wraps a KeyManager, counts calls, logs wrapped and unwrapped
// blobs, and can be told to fail.
type recKeys struct {
	inner tokenizer.KeyManager

	mu        sync.Mutex
	calls     map[string]int
	failing   map[string]bool
	wrapped   map[string]bool
	unwrapped [][]byte
	destroyed []string
}

func newRecKeys(inner tokenizer.KeyManager) *recKeys {
	return &recKeys{inner: inner, calls: map[string]int{}, failing: map[string]bool{}, wrapped: map[string]bool{}}
}

func (k *recKeys) enter(op string) error {
	k.mu.Lock()
	defer k.mu.Unlock()
	k.calls[op]++
	if k.failing[op] {
		return errFakeDown
	}
	return nil
}

func (k *recKeys) fail(op string, on bool) {
	k.mu.Lock()
	k.failing[op] = on
	k.mu.Unlock()
}

func (k *recKeys) count(op string) int {
	k.mu.Lock()
	defer k.mu.Unlock()
	return k.calls[op]
}

// destroyedKEKs returns the KEKs DestroyKEK was called with, in order.
func (k *recKeys) destroyedKEKs() []string {
	k.mu.Lock()
	defer k.mu.Unlock()
	return slices.Clone(k.destroyed)
}

func (k *recKeys) Wrap(ctx context.Context, kek string, key, ad []byte) ([]byte, error) {
	if err := k.enter("Wrap"); err != nil {
		return nil, err
	}
	out, err := k.inner.Wrap(ctx, kek, key, ad)
	if err == nil {
		k.mu.Lock()
		k.wrapped[string(out)] = true
		k.mu.Unlock()
	}
	return out, err
}

func (k *recKeys) Unwrap(ctx context.Context, kek string, wrapped, ad []byte) ([]byte, error) {
	if err := k.enter("Unwrap"); err != nil {
		return nil, err
	}
	k.mu.Lock()
	k.unwrapped = append(k.unwrapped, bytes.Clone(wrapped))
	k.mu.Unlock()
	return k.inner.Unwrap(ctx, kek, wrapped, ad)
}

func (k *recKeys) DestroyKEK(ctx context.Context, kek string) error {
	if err := k.enter("DestroyKEK"); err != nil {
		return err
	}
	k.mu.Lock()
	k.destroyed = append(k.destroyed, kek)
	k.mu.Unlock()
	return k.inner.DestroyKEK(ctx, kek)
}

func (k *recKeys) KEKs(ctx context.Context, prefix string) ([]string, error) {
	if err := k.enter("KEKs"); err != nil {
		return nil, err
	}
	return k.inner.KEKs(ctx, prefix)
}

// env is a Tokenizer over memstore and localkeys, with both wrapped so a
// test can watch and break them.
type env struct {
	tz    *tokenizer.Tokenizer
	store *recStore
	mem   *memstore.Store
	keys  *recKeys
	lk    *localkeys.Manager
	clock *fakeClock
	cfg   tokenizer.Config
}

type envOption func(*tokenizer.Config)

func withClasses(cs ...tokenizer.Class) envOption {
	return func(c *tokenizer.Config) { c.Classes = append(c.Classes, cs...) }
}

// withDeterministic makes the named classes deterministic: no built-in
// class is, so a test of deterministic tokens configures one, as a
// deployment does.
func withDeterministic(names ...string) envOption {
	return func(c *tokenizer.Config) {
		c.Classes = slices.Clone(c.Classes)
		for i := range c.Classes {
			if slices.Contains(names, c.Classes[i].Name) {
				c.Classes[i].Kind = tokenizer.KindDeterministic
			}
		}
	}
}

func withRefresh(d time.Duration) envOption {
	return func(c *tokenizer.Config) { c.KeyRefresh = d }
}

func newEnv(tb testing.TB, opts ...envOption) *env {
	tb.Helper()
	lk, err := localkeys.New(true)
	if err != nil {
		tb.Fatal(err)
	}
	e := &env{lk: lk, keys: newRecKeys(lk), clock: newClock()}
	e.mem = memstore.New(memstore.WithClock(e.clock.Now))
	e.store = newRecStore(e.mem)
	e.cfg = tokenizer.Config{Classes: tokenizer.DefaultClasses(), Keys: e.keys, Store: e.store, Now: e.clock.Now}
	for _, o := range opts {
		o(&e.cfg)
	}
	e.tz = e.newTokenizer(tb)
	return e
}

// newTokenizer returns another Tokenizer (a second replica) sharing the
// env's store, key manager, clock and classes, with a cold cache.
func (e *env) newTokenizer(tb testing.TB) *tokenizer.Tokenizer {
	tb.Helper()
	tz, err := tokenizer.New(e.cfg)
	if err != nil {
		tb.Fatal(err)
	}
	return tz
}

func tokenize(tb testing.TB, tz *tokenizer.Tokenizer, tenant string, items []tokenizer.Item, idem string) []string {
	tb.Helper()
	res, err := tz.Tokenize(context.Background(), tenant, items, idem)
	if err != nil {
		tb.Fatalf("Tokenize: %v", err)
	}
	if len(res) != len(items) {
		tb.Fatalf("Tokenize returned %d results for %d items", len(res), len(items))
	}
	out := make([]string, len(res))
	for i, r := range res {
		if r.Err != nil {
			tb.Fatalf("item %d (%s): %v", i, items[i].Class, r.Err)
		}
		out[i] = r.Token
	}
	return out
}

func reveal(tb testing.TB, tz *tokenizer.Tokenizer, texts ...string) []tokenizer.Revealed {
	tb.Helper()
	toks := make([]tokenizer.Token, len(texts))
	for i, s := range texts {
		var err error
		if toks[i], err = tokenizer.ParseToken(s); err != nil {
			tb.Fatalf("token %d does not parse: %v", i, err)
		}
	}
	out, err := tz.Reveal(context.Background(), toks)
	if err != nil {
		tb.Fatalf("Reveal: %v", err)
	}
	if len(out) != len(texts) {
		tb.Fatalf("Reveal returned %d results for %d tokens", len(out), len(texts))
	}
	return out
}

func revealOne(tb testing.TB, tz *tokenizer.Tokenizer, text string) tokenizer.Revealed {
	tb.Helper()
	return reveal(tb, tz, text)[0]
}

func wantNotFound(tb testing.TB, r tokenizer.Revealed) {
	tb.Helper()
	if !errors.Is(r.Err, tokenizer.ErrNotFound) {
		tb.Errorf("Reveal err = %v, want ErrNotFound", r.Err)
	}
	if r.Value != "" {
		tb.Errorf("Reveal returned a value with ErrNotFound")
	}
}

func wantValue(tb testing.TB, r tokenizer.Revealed, value string) {
	tb.Helper()
	if r.Err != nil {
		tb.Errorf("Reveal err = %v, want a value", r.Err)
	} else if r.Value != value {
		tb.Errorf("Reveal gave the wrong value (len %d, want len %d)", len(r.Value), len(value))
	}
}

// ukDramaRanges are Ofcom's telephone ranges kept for drama, 1,000
// numbers each (+44 113 496 0000 to 0999, ...): valid for libphonenumber,
// and nobody's.
var ukDramaRanges = []string{"113 496", "114 496", "116 496", "117 496", "118 496", "121 496", "131 496",
	"141 496", "151 496", "161 496", "20 7946", "28 9649", "29 2018"}

// fakePhone returns the i-th of 13,000 fake phone numbers, as a person
// might type it.
func fakePhone(i int) string {
	return fmt.Sprintf("+44 %s 0%03d", ukDramaRanges[i/1000%len(ukDramaRanges)], i%1000)
}

// fakeValue returns the i-th obviously fake value of a default class, not
// in its normalised form (spaces, capitals), so a round trip shows the
// value comes back as sent.
func fakeValue(class string, i int) string {
	switch class {
	case "email":
		return fmt.Sprintf(" Fake.User%d@Example.ORG", i)
	case "phone":
		return fakePhone(i)
	case "name":
		return fmt.Sprintf("Fake   Person%d", i)
	case "passport":
		return fmt.Sprintf("zz-%07d", i)
	case "birthdate":
		return time.Date(1970, 1, 1, 0, 0, 0, 0, time.UTC).AddDate(0, 0, i).Format(time.DateOnly)
	case "address":
		return fmt.Sprintf("%d Fake Street\n00000 Nowhere", i)
	default:
		return fmt.Sprintf("fake note number %d", i)
	}
}

func normalized(tb testing.TB, tz *tokenizer.Tokenizer, class, v string) string {
	tb.Helper()
	c, ok := tz.Class(class)
	if !ok {
		tb.Fatalf("no class %s", class)
	}
	n, err := c.NormalizeValue(v)
	if err != nil {
		tb.Fatalf("fake %s value does not normalise: %v", class, err)
	}
	return n
}

func TestNewValidatesConfig(t *testing.T) {
	lk, err := localkeys.New(true)
	if err != nil {
		t.Fatal(err)
	}
	st := memstore.New()
	good := tokenizer.DefaultClasses()
	tests := []struct {
		name string
		cfg  tokenizer.Config
	}{
		{"no keys", tokenizer.Config{Classes: good, Store: st}},
		{"no store", tokenizer.Config{Classes: good, Keys: lk}},
		{"no classes", tokenizer.Config{Keys: lk, Store: st}},
		{"duplicate class", tokenizer.Config{Classes: append(tokenizer.DefaultClasses(), tokenizer.Class{Name: "email"}), Keys: lk, Store: st}},
		{"invalid class", tokenizer.Config{Classes: []tokenizer.Class{{Name: "Bad Name"}}, Keys: lk, Store: st}},
		{"unknown step", tokenizer.Config{Classes: []tokenizer.Class{{Name: "c", Normalize: []string{"nope"}}}, Keys: lk, Store: st}},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			if tz, err := tokenizer.New(tc.cfg); err == nil || tz != nil {
				t.Fatalf("New = %v, %v; want an error", tz, err)
			}
		})
	}
	// Kind and Mask default to random and "all".
	tz, err := tokenizer.New(tokenizer.Config{Classes: []tokenizer.Class{{Name: "bare"}}, Keys: lk, Store: st})
	if err != nil {
		t.Fatal(err)
	}
	c, ok := tz.Class("bare")
	if !ok || c.Kind != tokenizer.KindRandom || c.Mask != "all" {
		t.Fatalf("Class(bare) = %+v, %v", c, ok)
	}
	if names := classNames(tz.Classes()); !slices.Equal(names, []string{"bare"}) {
		t.Fatalf("Classes() = %v", names)
	}
}

func classNames(cs []tokenizer.Class) []string {
	var out []string
	for _, c := range cs {
		out = append(out, c.Name)
	}
	return out
}

func TestRoundTripEveryClass(t *testing.T) {
	e := newEnv(t)
	if got, want := classNames(e.tz.Classes()), classNames(tokenizer.DefaultClasses()); !slices.Equal(got, want) {
		t.Fatalf("Classes() = %v, want %v", got, want)
	}
	for _, c := range tokenizer.DefaultClasses() {
		for _, n := range []int{1, 100, 10000} {
			if n == 10000 && testing.Short() {
				continue
			}
			t.Run(fmt.Sprintf("%s/%d", c.Name, n), func(t *testing.T) {
				items := make([]tokenizer.Item, n)
				for i := range items {
					items[i] = tokenizer.Item{Class: c.Name, Value: fakeValue(c.Name, i)}
				}
				toks := tokenize(t, e.tz, "acme", items, "")
				seen := map[string]bool{}
				for i, s := range toks {
					tok, err := tokenizer.ParseToken(s)
					if err != nil || tok.Class != c.Name || tok.Tenant != "acme" {
						t.Fatalf("token %d: %+v, %v", i, tok, err)
					}
					if seen[s] {
						t.Fatalf("token %d repeats for a distinct value", i)
					}
					seen[s] = true
				}
				got := reveal(t, e.tz, toks...)
				for i, r := range got {
					wantValue(t, r, items[i].Value) // byte for byte as sent
					if r.Generation != 1 || r.Flags != 0 || r.Token.String() != toks[i] {
						t.Fatalf("item %d revealed as gen %d flags %d token %v", i, r.Generation, r.Flags, r.Token)
					}
				}
			})
		}
	}
}

func TestRandomAndDeterministicTokens(t *testing.T) {
	email2 := tokenizer.Class{Name: "email-alt", Kind: tokenizer.KindDeterministic, Normalize: []string{"trim", "lower", "email"}, Mask: "email"}
	e := newEnv(t, withDeterministic("email"), withClasses(email2))
	item := func(class, v string) tokenizer.Item { return tokenizer.Item{Class: class, Value: v} }

	// Random: equal values, distinct tokens, in one batch and across calls.
	a := tokenize(t, e.tz, "acme", []tokenizer.Item{item("name", "Fake Person"), item("name", "Fake Person")}, "")
	b := tokenize(t, e.tz, "acme", []tokenizer.Item{item("name", "Fake Person")}, "")
	if a[0] == a[1] || a[0] == b[0] || a[1] == b[0] {
		t.Fatal("random tokens repeat for equal values")
	}
	for _, s := range append(a, b...) {
		wantValue(t, revealOne(t, e.tz, s), "Fake Person")
	}

	// Deterministic: equal normalised values, equal tokens.
	d := tokenize(t, e.tz, "acme", []tokenizer.Item{
		item("email", "Anne@Example.org "), item("email", "anne@example.org"), item("email", "anne@example.com"),
		item("email-alt", "anne@example.org"),
	}, "")
	if d[0] != d[1] {
		t.Fatal("deterministic tokens differ for equal normalised values")
	}
	if d[0] == d[2] {
		t.Fatal("deterministic tokens equal for different values")
	}
	again := tokenize(t, e.tz, "acme", []tokenizer.Item{item("email", "ANNE@EXAMPLE.ORG")}, "")
	if again[0] != d[0] {
		t.Fatal("deterministic token changed between calls")
	}
	other := tokenize(t, e.newTokenizer(t), "acme", []tokenizer.Item{item("email", "anne@example.org")}, "")
	if other[0] != d[0] {
		t.Fatal("a second replica mints a different deterministic token")
	}
	// The record holds the value as first sent under the token; later
	// tokenizations of an equivalent value, in the same batch or after,
	// do not replace it.
	wantValue(t, revealOne(t, e.tz, d[0]), "Anne@Example.org ")
	tokenize(t, e.tz, "acme", []tokenizer.Item{item("email", " Anne@EXAMPLE.org")}, "")
	wantValue(t, revealOne(t, e.tz, d[0]), "Anne@Example.org ")

	payload := func(s string) [16]byte {
		tok, err := tokenizer.ParseToken(s)
		if err != nil {
			t.Fatal(err)
		}
		return tok.Payload
	}
	// Across classes the MAC differs, not only the class name in the text.
	if payload(d[3]) == payload(d[0]) {
		t.Fatal("deterministic payload is equal across classes")
	}
	// Across tenants.
	beta := tokenize(t, e.tz, "beta", []tokenizer.Item{item("email", "anne@example.org")}, "")
	if beta[0] == d[0] || payload(beta[0]) == payload(d[0]) {
		t.Fatal("deterministic token is equal across tenants")
	}
	wantValue(t, revealOne(t, e.tz, beta[0]), "anne@example.org")
	// The other tenant's token with acme's name on it does not open.
	forged, _ := tokenizer.ParseToken(beta[0])
	forged.Tenant = "acme"
	wantNotFound(t, revealOne(t, e.tz, forged.String()))
}

func TestSwappedRecordsNeverReveal(t *testing.T) {
	e := newEnv(t, withDeterministic("email"))
	ctx := context.Background()
	type minted struct{ tok, key, value string }
	// The helpers take the (sub)test that calls them: failing the parent
	// from a subtest would stop the wrong goroutine.
	mint := func(tb testing.TB, tenant, class, value string) minted {
		tb.Helper()
		m := e.store.mark()
		tok := tokenize(tb, e.tz, tenant, []tokenizer.Item{{Class: class, Value: value}}, "")[0]
		keys := e.store.recordKeysSince(m)
		if len(keys) != 1 {
			tb.Fatalf("tokenizing one item wrote %d records", len(keys))
		}
		return minted{tok, keys[0], value}
	}
	swap := func(tb testing.TB, x, y minted) {
		tb.Helper()
		vals, err := e.mem.Get(ctx, []string{x.key, y.key})
		if err != nil || vals[0] == nil || vals[1] == nil {
			tb.Fatalf("records missing: %v", err)
		}
		if err := e.mem.Put(ctx, []tokenizer.Entry{{Key: x.key, Value: vals[1]}, {Key: y.key, Value: vals[0]}}); err != nil {
			tb.Fatal(err)
		}
	}
	check := func(tb testing.TB, x, y minted) {
		tb.Helper()
		for _, r := range reveal(tb, e.tz, x.tok, y.tok) {
			wantNotFound(tb, r)
			if r.Value == x.value || r.Value == y.value {
				tb.Fatal("a swapped record revealed a value")
			}
		}
	}
	t.Run("same tenant and class", func(t *testing.T) {
		x, y := mint(t, "acme", "name", "Fake Person One"), mint(t, "acme", "name", "Fake Person Two")
		wantValue(t, revealOne(t, e.tz, x.tok), x.value)
		swap(t, x, y)
		check(t, x, y)
		swap(t, x, y) // swapped back, both open again
		wantValue(t, revealOne(t, e.tz, x.tok), x.value)
		wantValue(t, revealOne(t, e.tz, y.tok), y.value)
	})
	t.Run("deterministic class", func(t *testing.T) {
		x, y := mint(t, "acme", "email", "one@example.org"), mint(t, "acme", "email", "two@example.org")
		swap(t, x, y)
		check(t, x, y)
	})
	t.Run("across classes", func(t *testing.T) {
		x, y := mint(t, "acme", "name", "Fake Person Three"), mint(t, "acme", "address", "3 Fake Street")
		swap(t, x, y)
		check(t, x, y)
	})
	t.Run("across tenants", func(t *testing.T) {
		x, y := mint(t, "acme", "text", "fake note three"), mint(t, "beta", "text", "fake note four")
		swap(t, x, y)
		check(t, x, y)
	})
	t.Run("copied over", func(t *testing.T) {
		x, y := mint(t, "acme", "name", "Fake Person Five"), mint(t, "acme", "name", "Fake Person Six")
		vals, _ := e.mem.Get(ctx, []string{x.key})
		if err := e.mem.Put(ctx, []tokenizer.Entry{{Key: y.key, Value: vals[0]}}); err != nil {
			t.Fatal(err)
		}
		wantValue(t, revealOne(t, e.tz, x.tok), x.value)
		wantNotFound(t, revealOne(t, e.tz, y.tok))
	})
	t.Run("bit flipped", func(t *testing.T) {
		x := mint(t, "acme", "name", "Fake Person Seven")
		vals, _ := e.mem.Get(ctx, []string{x.key})
		for i := range vals[0] {
			b := bytes.Clone(vals[0])
			b[i] ^= 0x01
			if err := e.mem.Put(ctx, []tokenizer.Entry{{Key: x.key, Value: b}}); err != nil {
				t.Fatal(err)
			}
			wantNotFound(t, revealOne(t, e.tz, x.tok))
		}
	})
}

func TestRevealUnknownTenantOrClass(t *testing.T) {
	e := newEnv(t)
	known := tokenize(t, e.tz, "acme", []tokenizer.Item{{Class: "name", Value: "Fake Person"}}, "")[0]
	kt, _ := tokenizer.ParseToken(known)
	writes, newKeys := e.store.mark(), e.keys.count("Wrap")

	ghost := kt
	ghost.Tenant = "ghost"
	unconfigured := kt
	unconfigured.Class = "iban"
	neverIssued := kt
	neverIssued.Payload[0] ^= 0xff
	res, err := e.tz.Reveal(context.Background(), []tokenizer.Token{ghost, unconfigured, neverIssued, kt})
	if err != nil {
		t.Fatal(err)
	}
	for _, r := range res[:3] {
		wantNotFound(t, r)
	}
	wantValue(t, res[3], "Fake Person")

	// A fresh replica too (nothing cached).
	for _, r := range reveal(t, e.newTokenizer(t), ghost.String(), unconfigured.String()) {
		wantNotFound(t, r)
	}
	ctx := context.Background()
	if n, err := e.tz.EraseTokens(ctx, []tokenizer.Token{ghost}); n != 0 || err != nil {
		t.Fatalf("EraseTokens(ghost) = %d, %v", n, err)
	}
	if n, err := e.tz.EraseSubject(ctx, "ghost", "subject-1"); n != 0 || err != nil {
		t.Fatalf("EraseSubject(ghost) = %d, %v", n, err)
	}
	if e.store.mark() != writes || e.keys.count("Wrap") != newKeys {
		t.Fatal("revealing or erasing for an unknown tenant created keys")
	}
	vals, _ := e.mem.Get(ctx, []string{"jeton:k:ghost:root", "jeton:k:ghost:current"})
	if vals[0] != nil || vals[1] != nil {
		t.Fatal("ghost tenant has keys")
	}
}

// TestRevealClassNoLongerConfigured checks that a record of a class that a
// replica does not configure (removed, or never rolled out there) stays
// sealed on that replica.
func TestRevealClassNoLongerConfigured(t *testing.T) {
	legacy := tokenizer.Class{Name: "legacy", Kind: tokenizer.KindRandom, Mask: "all"}
	e := newEnv(t, withClasses(legacy))
	tok := tokenize(t, e.tz, "acme", []tokenizer.Item{{Class: "legacy", Value: "fake legacy value"}}, "")[0]
	wantValue(t, revealOne(t, e.tz, tok), "fake legacy value")
	cfg := e.cfg
	cfg.Classes = tokenizer.DefaultClasses()
	without, err := tokenizer.New(cfg)
	if err != nil {
		t.Fatal(err)
	}
	wantNotFound(t, revealOne(t, without, tok))
}

func TestIdempotency(t *testing.T) {
	e := newEnv(t, withDeterministic("email"))
	items := []tokenizer.Item{
		{Class: "name", Value: "Fake Person"},
		{Class: "name", Value: "Fake Person"}, // same value, its own token
		{Class: "email", Value: "fake@example.org"},
		{Class: "text", Value: "fake note", Subject: "subject-1"},
	}
	first := tokenize(t, e.tz, "acme", items, "request-1")
	live := e.store.liveRecords(t)
	if live != len(items) {
		t.Fatalf("%d records for %d items", live, len(items))
	}
	if first[0] == first[1] {
		t.Fatal("two items with equal values share a random token")
	}
	m := e.store.mark()
	retry := tokenize(t, e.tz, "acme", items, "request-1")
	if !slices.Equal(retry, first) {
		t.Fatalf("retry with the same key minted new tokens")
	}
	if got := e.store.recordKeysSince(m); len(got) != 1 { // only the deterministic record is rewritten
		t.Fatalf("retry wrote %d records", len(got))
	}
	if got := e.store.liveRecords(t); got != live {
		t.Fatalf("retry left %d records, want %d", got, live)
	}
	// Another replica sees the same entries.
	if again := tokenize(t, e.newTokenizer(t), "acme", items, "request-1"); !slices.Equal(again, first) {
		t.Fatal("retry on another replica minted new tokens")
	}
	other := tokenize(t, e.tz, "acme", items, "request-2")
	none := tokenize(t, e.tz, "acme", items, "")
	for i := range items {
		if items[i].Class == "email" {
			if other[i] != first[i] || none[i] != first[i] {
				t.Fatal("deterministic token depends on the idempotency key")
			}
			continue
		}
		if other[i] == first[i] || none[i] == first[i] {
			t.Fatalf("item %d: a different or no key returned the earlier token", i)
		}
	}
	// The same key with other items is refused (TestIdempotencyKeyReused).
	changed := slices.Clone(items)
	changed[3].Value = "another fake note"
	if _, err := e.tz.Tokenize(context.Background(), "acme", changed, "request-1"); !errors.Is(err, tokenizer.ErrIdempotencyKeyReused) {
		t.Fatalf("the same key with another value: %v, want ErrIdempotencyKeyReused", err)
	}
	// Same key in another tenant does not return acme's tokens.
	beta := tokenize(t, e.tz, "beta", items, "request-1")
	if beta[0] == first[0] {
		t.Fatal("idempotency key leaked across tenants")
	}
	for i, s := range first {
		wantValue(t, revealOne(t, e.tz, s), items[i].Value)
	}
}

func TestIdempotencyConcurrentRetries(t *testing.T) {
	const workers = 20
	e := newEnv(t, withDeterministic("email"))
	tokenize(t, e.tz, "acme", []tokenizer.Item{{Class: "text", Value: "warm-up"}}, "") // create keys first
	items := []tokenizer.Item{{Class: "name", Value: "Fake Person"}, {Class: "address", Value: "1 Fake Street"}, {Class: "email", Value: "fake@example.org"}}

	// Hold every worker just before it claims the call's entry until all
	// have come, so that they race for it.
	var arrived atomic.Int32
	all := make(chan struct{})
	var timedOut atomic.Bool
	e.store.beforePutNew = func(keys []string) {
		if !strings.HasPrefix(keys[0], "jeton:i:") {
			return
		}
		n := arrived.Add(1)
		if n > workers {
			return
		}
		if n == workers {
			close(all)
		}
		select {
		case <-all:
		case <-time.After(10 * time.Second):
			timedOut.Store(true)
		}
	}
	before := e.store.liveRecords(t)
	mark := e.store.mark()
	results := make([][]string, workers)
	errs := make([]error, workers)
	var wg sync.WaitGroup
	for w := range workers {
		wg.Go(func() {
			res, err := e.tz.Tokenize(context.Background(), "acme", items, "request-1")
			if err != nil {
				errs[w] = err
				return
			}
			for _, r := range res {
				if r.Err != nil {
					errs[w] = r.Err
					return
				}
				results[w] = append(results[w], r.Token)
			}
		})
	}
	wg.Wait()
	if timedOut.Load() {
		t.Fatal("workers never all reached the idempotency claim")
	}
	for w := range workers {
		if errs[w] != nil {
			t.Fatalf("worker %d: %v", w, errs[w])
		}
		if !slices.Equal(results[w], results[0]) {
			t.Fatalf("worker %d got other tokens than worker 0", w)
		}
	}
	// One claim won; the others took its tokens and minted none, so no
	// orphan record had to be deleted, and each item has one record.
	if got := e.store.deletedWithPrefix("jeton:r:"); got != 0 {
		t.Fatalf("%d records deleted, want none", got)
	}
	if got := e.store.liveRecords(t) - before; got != len(items) {
		t.Fatalf("%d new live records, want %d", got, len(items))
	}
	if got := e.store.distinctRecordsSince(mark); got != len(items) {
		t.Fatalf("the workers wrote %d distinct records, want %d: a loser minted", got, len(items))
	}
	for i, r := range reveal(t, e.tz, results[0]...) {
		wantValue(t, r, items[i].Value)
	}
}

func TestConcurrentTenantCreation(t *testing.T) {
	const workers = 20
	e := newEnv(t, withDeterministic("email")) // equal tokens show equal keys
	toks := make([]string, workers)
	var wg sync.WaitGroup
	var failed atomic.Bool
	for w := range workers {
		wg.Go(func() {
			res, err := e.tz.Tokenize(context.Background(), "fresh", []tokenizer.Item{{Class: "email", Value: "fake@example.org"}}, "")
			if err != nil || res[0].Err != nil {
				failed.Store(true)
				return
			}
			toks[w] = res[0].Token
		})
	}
	wg.Wait()
	if failed.Load() {
		t.Fatal("a concurrent first use failed")
	}
	for w := range workers {
		if toks[w] != toks[0] {
			t.Fatal("concurrent first uses disagree on the tenant's keys")
		}
	}
	wantValue(t, revealOne(t, e.newTokenizer(t), toks[0]), "fake@example.org")
}

func TestConcurrentTokenizeAndRotate(t *testing.T) {
	e := newEnv(t, withRefresh(time.Nanosecond))
	tokenize(t, e.tz, "acme", []tokenizer.Item{{Class: "name", Value: "warm-up"}}, "")
	var wg sync.WaitGroup
	var mu sync.Mutex
	var minted []string
	for w := range 8 {
		wg.Go(func() {
			for i := range 150 {
				res, err := e.tz.Tokenize(context.Background(), "acme", []tokenizer.Item{{Class: "name", Value: fmt.Sprintf("Fake Person %d %d", w, i)}}, "")
				if err != nil || res[0].Err != nil {
					t.Errorf("Tokenize: %v", err)
					return
				}
				mu.Lock()
				minted = append(minted, res[0].Token)
				mu.Unlock()
			}
		})
	}
	wg.Go(func() {
		for range 50 {
			if _, err := e.tz.RotateGeneration(context.Background(), "acme"); err != nil {
				t.Errorf("RotateGeneration: %v", err)
			}
		}
	})
	wg.Wait()
	for _, r := range reveal(t, e.tz, minted...) {
		if r.Err != nil {
			t.Fatalf("a token minted during rotation does not reveal: %v", r.Err)
		}
	}
}

func TestBackendFailuresFailClosed(t *testing.T) {
	items := []tokenizer.Item{
		{Class: "name", Value: "Fake Person", Subject: "subject-1"},
		{Class: "email", Value: "fake@example.org", Subject: "subject-1"},
	}
	// A warm replica's first attempt reads nothing: it claims (PutNew),
	// writes (Write) and completes (Swap); a cold one reads its keys.
	for _, op := range []string{"Get", "PutNew", "Write", "Swap"} {
		for _, warm := range []bool{false, true} {
			if op == "Get" && warm {
				continue
			}
			t.Run(fmt.Sprintf("%s/warm=%v", op, warm), func(t *testing.T) {
				e := newEnv(t)
				if warm {
					tokenize(t, e.tz, "acme", items[:1], "warm-up")
				}
				e.store.fail(op, true)
				res, err := e.tz.Tokenize(context.Background(), "acme", items, "request-1")
				if !errors.Is(err, tokenizer.ErrUnavailable) {
					t.Fatalf("Tokenize err = %v, want ErrUnavailable", err)
				}
				if res != nil {
					t.Fatal("Tokenize returned results with an error")
				}
				if strings.Contains(err.Error(), "Fake Person") || strings.Contains(err.Error(), "fake@example.org") {
					t.Fatal("error quotes a value")
				}
				// It recovers by itself.
				e.store.fail(op, false)
				toks := tokenize(t, e.tz, "acme", items, "request-1")
				wantValue(t, revealOne(t, e.tz, toks[0]), "Fake Person")
			})
		}
	}
	t.Run("Reveal", func(t *testing.T) {
		e := newEnv(t)
		toks := tokenize(t, e.tz, "acme", items, "")
		cold := e.newTokenizer(t)
		e.store.fail("Get", true)
		for _, tz := range []*tokenizer.Tokenizer{e.tz, cold} {
			parsed, _ := tokenizer.ParseToken(toks[0])
			res, err := tz.Reveal(context.Background(), []tokenizer.Token{parsed})
			if !errors.Is(err, tokenizer.ErrUnavailable) || res != nil {
				t.Fatalf("Reveal = %v, %v; want nil, ErrUnavailable", res, err)
			}
		}
		e.store.fail("Get", false)
		wantValue(t, revealOne(t, cold, toks[0]), "Fake Person")
	})
	t.Run("Erase", func(t *testing.T) {
		e := newEnv(t)
		toks := tokenize(t, e.tz, "acme", items, "")
		parsed, _ := tokenizer.ParseToken(toks[0])
		e.store.fail("Delete", true)
		if _, err := e.tz.EraseTokens(context.Background(), []tokenizer.Token{parsed}); !errors.Is(err, tokenizer.ErrUnavailable) {
			t.Fatalf("EraseTokens err = %v", err)
		}
		if _, err := e.tz.EraseSubject(context.Background(), "acme", "subject-1"); !errors.Is(err, tokenizer.ErrUnavailable) {
			t.Fatalf("EraseSubject err = %v", err)
		}
		e.store.fail("Delete", false)
		e.store.fail("SetMembers", true)
		if _, err := e.tz.EraseSubject(context.Background(), "acme", "subject-1"); !errors.Is(err, tokenizer.ErrUnavailable) {
			t.Fatalf("EraseSubject err = %v", err)
		}
		wantValue(t, revealOne(t, e.tz, toks[0]), "Fake Person")
	})
	t.Run("KeyManager", func(t *testing.T) {
		e := newEnv(t)
		toks := tokenize(t, e.tz, "acme", items, "")
		e.keys.fail("Wrap", true)
		if res, err := e.tz.Tokenize(context.Background(), "newcomer", items, ""); !errors.Is(err, tokenizer.ErrUnavailable) || res != nil {
			t.Fatalf("Tokenize with no key manager = %v, %v", res, err)
		}
		if _, err := e.tz.RotateGeneration(context.Background(), "acme"); !errors.Is(err, tokenizer.ErrUnavailable) {
			t.Fatalf("RotateGeneration err = %v", err)
		}
		e.keys.fail("Unwrap", true)
		cold := e.newTokenizer(t)
		parsed, _ := tokenizer.ParseToken(toks[0])
		if res, err := cold.Reveal(context.Background(), []tokenizer.Token{parsed}); !errors.Is(err, tokenizer.ErrUnavailable) || res != nil {
			t.Fatalf("Reveal with no key manager = %v, %v", res, err)
		}
		if res, err := cold.Tokenize(context.Background(), "acme", items, ""); !errors.Is(err, tokenizer.ErrUnavailable) || res != nil {
			t.Fatalf("Tokenize with no key manager = %v, %v", res, err)
		}
		if _, err := e.tz.Rewrap(context.Background(), []string{"acme"}, nil); !errors.Is(err, tokenizer.ErrUnavailable) {
			t.Fatalf("Rewrap err = %v", err)
		}
		// The warm replica needs no key manager for keys it holds.
		wantValue(t, revealOne(t, e.tz, toks[0]), "Fake Person")
		e.keys.fail("Unwrap", false)
		wantValue(t, revealOne(t, cold, toks[0]), "Fake Person")
	})
	t.Run("canceled context", func(t *testing.T) {
		e := newEnv(t)
		ctx, cancel := context.WithCancel(context.Background())
		cancel()
		res, err := e.tz.Tokenize(ctx, "acme", items, "")
		if !errors.Is(err, context.Canceled) || res != nil {
			t.Fatalf("Tokenize = %v, %v; want context.Canceled", res, err)
		}
	})
}

func TestEraseSubjectAndTokens(t *testing.T) {
	e := newEnv(t)
	ctx := context.Background()
	items := []tokenizer.Item{
		{Class: "name", Value: "Fake Person A", Subject: "subject-a"},
		{Class: "email", Value: "a@example.org", Subject: "subject-a"},
		{Class: "name", Value: "Fake Person B", Subject: "subject-b"},
		{Class: "text", Value: "fake unindexed note"},
	}
	toks := tokenize(t, e.tz, "acme", items, "")
	more := tokenize(t, e.tz, "acme", []tokenizer.Item{{Class: "address", Value: "1 Fake Street", Subject: "subject-a"}}, "")
	betaTok := tokenize(t, e.tz, "beta", []tokenizer.Item{{Class: "name", Value: "Fake Person A", Subject: "subject-a"}}, "")

	n, err := e.tz.EraseSubject(ctx, "acme", "subject-a")
	if err != nil || n != 3 {
		t.Fatalf("EraseSubject = %d, %v; want 3", n, err)
	}
	got := reveal(t, e.tz, toks[0], toks[1], more[0], toks[2], toks[3], betaTok[0])
	for _, r := range got[:3] {
		wantNotFound(t, r)
	}
	wantValue(t, got[3], "Fake Person B")
	wantValue(t, got[4], "fake unindexed note")
	wantValue(t, got[5], "Fake Person A") // same subject id, other tenant
	if n, err := e.tz.EraseSubject(ctx, "acme", "subject-a"); n != 0 || err != nil {
		t.Fatalf("second EraseSubject = %d, %v", n, err)
	}
	if n, err := e.tz.EraseSubject(ctx, "acme", "subject-none"); n != 0 || err != nil {
		t.Fatalf("EraseSubject(unknown subject) = %d, %v", n, err)
	}

	b, _ := tokenizer.ParseToken(toks[2])
	c, _ := tokenizer.ParseToken(toks[3])
	gone, _ := tokenizer.ParseToken(toks[0])
	n, err = e.tz.EraseTokens(ctx, []tokenizer.Token{b, gone})
	if err != nil || n != 1 {
		t.Fatalf("EraseTokens = %d, %v; want 1", n, err)
	}
	wantNotFound(t, revealOne(t, e.tz, toks[2]))
	wantValue(t, revealOne(t, e.tz, toks[3]), "fake unindexed note")
	if n, _ := e.tz.EraseTokens(ctx, []tokenizer.Token{b}); n != 0 {
		t.Fatalf("second EraseTokens = %d", n)
	}
	if n, _ := e.tz.EraseTokens(ctx, []tokenizer.Token{c}); n != 1 {
		t.Fatalf("EraseTokens(c) = %d", n)
	}
	wantNotFound(t, revealOne(t, e.tz, toks[3]))
	// Subject b's index still names its erased record; erasing it is harmless.
	if n, err := e.tz.EraseSubject(ctx, "acme", "subject-b"); n != 0 || err != nil {
		t.Fatalf("EraseSubject(b) = %d, %v", n, err)
	}
}

func TestRotateAndRewrap(t *testing.T) {
	e := newEnv(t, withDeterministic("email"))
	ctx := context.Background()
	t1 := tokenize(t, e.tz, "acme", []tokenizer.Item{{Class: "name", Value: "Fake Gen One"}}, "")[0]
	if r := revealOne(t, e.tz, t1); r.Generation != 1 {
		t.Fatalf("first record in generation %d", r.Generation)
	}
	g, err := e.tz.RotateGeneration(ctx, "acme")
	if err != nil || g != 2 {
		t.Fatalf("RotateGeneration = %d, %v", g, err)
	}
	t2 := tokenize(t, e.tz, "acme", []tokenizer.Item{{Class: "name", Value: "Fake Gen Two"}}, "")[0]
	if g, err = e.tz.RotateGeneration(ctx, "acme"); err != nil || g != 3 {
		t.Fatalf("RotateGeneration = %d, %v", g, err)
	}
	t3 := tokenize(t, e.tz, "acme", []tokenizer.Item{{Class: "email", Value: "gen3@example.org"}}, "")[0]
	got := reveal(t, e.tz, t1, t2, t3)
	for i, want := range []struct {
		gen uint32
		v   string
	}{{1, "Fake Gen One"}, {2, "Fake Gen Two"}, {3, "gen3@example.org"}} {
		wantValue(t, got[i], want.v)
		if got[i].Generation != want.gen {
			t.Errorf("token %d in generation %d, want %d", i, got[i].Generation, want.gen)
		}
	}
	// Rotating a new tenant creates it at generation 2.
	if g, err := e.tz.RotateGeneration(ctx, "beta"); err != nil || g != 2 {
		t.Fatalf("RotateGeneration(new tenant) = %d, %v", g, err)
	}
	if _, err := e.tz.RotateGeneration(ctx, "Bad Tenant"); !tokenizer.IsUserError(err) {
		t.Fatalf("RotateGeneration(bad name) err = %v, want a UserError", err)
	}

	// KEK rotation, then rewrap: root + 3 generations.
	if err := e.lk.Rotate(); err != nil {
		t.Fatal(err)
	}
	e.keys.mu.Lock()
	clear(e.keys.wrapped)
	e.keys.mu.Unlock()
	var progress []int
	p, err := e.tz.Rewrap(ctx, []string{"acme", "nobody"}, func(p tokenizer.RewrapProgress) { progress = append(progress, p.Done) })
	// acme's root key and its 3 generations.
	if err != nil || p.Rewrapped != 4 || p.Done != 4 || p.Total != 4 || p.Skipped != 0 {
		t.Fatalf("Rewrap = %+v, %v; want 4 rewrapped of 4", p, err)
	}
	if !slices.Equal(progress, []int{1, 2, 3, 4}) {
		t.Fatalf("progress = %v", progress)
	}
	// A cold replica opens everything, unwrapping only rewrapped keys.
	e.keys.mu.Lock()
	e.keys.unwrapped = nil
	e.keys.mu.Unlock()
	cold := e.newTokenizer(t)
	got = reveal(t, cold, t1, t2, t3)
	wantValue(t, got[0], "Fake Gen One")
	wantValue(t, got[1], "Fake Gen Two")
	wantValue(t, got[2], "gen3@example.org")
	t4 := tokenize(t, cold, "acme", []tokenizer.Item{{Class: "email", Value: "gen3@example.org"}}, "")[0]
	if t4 != t3 {
		t.Fatal("rewrap changed the deterministic key")
	}
	e.keys.mu.Lock()
	defer e.keys.mu.Unlock()
	if len(e.keys.unwrapped) == 0 {
		t.Fatal("cold replica unwrapped nothing")
	}
	for _, w := range e.keys.unwrapped {
		if !e.keys.wrapped[string(w)] {
			t.Fatal("cold replica unwrapped a key that was not rewrapped")
		}
	}
}

// TestCorruptKeyBlobs checks that damaged key entries in the store make
// calls fail rather than panic or reveal anything.
func TestCorruptKeyBlobs(t *testing.T) {
	ctx := context.Background()
	for _, blob := range [][]byte{{}, {1}, {2, 0, 0, 0, 1}, {1, 0, 0, 0, 1, 0}} {
		e := newEnv(t)
		tok := tokenize(t, e.tz, "acme", []tokenizer.Item{{Class: "name", Value: "Fake Person"}}, "")[0]
		if err := e.mem.Put(ctx, []tokenizer.Entry{{Key: "jeton:k:acme:current", Value: blob}}); err != nil {
			t.Fatal(err)
		}
		if _, err := e.tz.Rewrap(ctx, []string{"acme"}, nil); err == nil {
			t.Errorf("Rewrap accepted current generation blob %x", blob)
		}
		cold := e.newTokenizer(t)
		parsed, _ := tokenizer.ParseToken(tok)
		if res, err := cold.Reveal(ctx, []tokenizer.Token{parsed}); err == nil && res[0].Err == nil {
			t.Errorf("Reveal succeeded with current generation blob %x", blob)
		}
	}
	e := newEnv(t)
	tok := tokenize(t, e.tz, "acme", []tokenizer.Item{{Class: "name", Value: "Fake Person"}}, "")[0]
	if err := e.mem.Put(ctx, []tokenizer.Entry{{Key: "jeton:k:acme:gen:1", Value: []byte{9, 9, 9}}}); err != nil {
		t.Fatal(err)
	}
	parsed, _ := tokenizer.ParseToken(tok)
	if res, err := e.newTokenizer(t).Reveal(ctx, []tokenizer.Token{parsed}); err == nil && res[0].Err == nil {
		t.Error("Reveal succeeded with a corrupt wrapped DEK")
	}
}

func TestDestroyedGeneration(t *testing.T) {
	e := newEnv(t, withRefresh(time.Minute))
	ctx := context.Background()
	t1 := tokenize(t, e.tz, "acme", []tokenizer.Item{{Class: "name", Value: "Fake Gen One"}}, "")[0]
	if _, err := e.tz.RotateGeneration(ctx, "acme"); err != nil {
		t.Fatal(err)
	}
	t2 := tokenize(t, e.tz, "acme", []tokenizer.Item{{Class: "name", Value: "Fake Gen Two"}}, "")[0]
	if _, err := e.mem.Delete(ctx, []string{"jeton:k:acme:gen:1"}); err != nil {
		t.Fatal(err)
	}
	cold := e.newTokenizer(t)
	wantNotFound(t, revealOne(t, cold, t1))
	wantValue(t, revealOne(t, cold, t2), "Fake Gen Two")
	// The warm replica stops opening it once its cache is due a re-check.
	e.clock.Advance(time.Minute + time.Second)
	wantNotFound(t, revealOne(t, e.tz, t1))
	wantValue(t, revealOne(t, e.tz, t2), "Fake Gen Two")
}

func TestRetention(t *testing.T) {
	session := tokenizer.Class{Name: "session", Kind: tokenizer.KindRandom, Mask: "all", Retention: time.Hour}
	detSession := tokenizer.Class{Name: "det-session", Kind: tokenizer.KindDeterministic, Mask: "all", Retention: time.Hour}
	e := newEnv(t, withClasses(session, detSession))
	ctx := context.Background()
	toks := tokenize(t, e.tz, "acme", []tokenizer.Item{
		{Class: "session", Value: "fake session value", Subject: "subject-1"},
		{Class: "det-session", Value: "fake det value"},
		{Class: "name", Value: "Fake Forever"},
	}, "")
	e.clock.Advance(59 * time.Minute)
	got := reveal(t, e.tz, toks...)
	wantValue(t, got[0], "fake session value")
	wantValue(t, got[1], "fake det value")
	e.clock.Advance(2 * time.Minute)
	got = reveal(t, e.tz, toks...)
	wantNotFound(t, got[0])
	wantNotFound(t, got[1])
	wantValue(t, got[2], "Fake Forever")
	// The subject index expired with its only record.
	if n, err := e.tz.EraseSubject(ctx, "acme", "subject-1"); n != 0 || err != nil {
		t.Fatalf("EraseSubject after expiry = %d, %v", n, err)
	}
	// Keys do not expire: much later, old and new records still work.
	e.clock.Advance(10 * 365 * 24 * time.Hour)
	wantValue(t, revealOne(t, e.newTokenizer(t), toks[2]), "Fake Forever")
	again := tokenize(t, e.tz, "acme", []tokenizer.Item{{Class: "det-session", Value: "fake det value"}}, "")
	if again[0] != toks[1] {
		t.Fatal("deterministic token changed after its record expired")
	}
	wantValue(t, revealOne(t, e.tz, again[0]), "fake det value")
}

func TestItemErrorsNeverQuoteValues(t *testing.T) {
	e := newEnv(t)
	items := []tokenizer.Item{
		{Class: "email", Value: "not-an-email-fake-value"},
		{Class: "phone", Value: "+99 fake phone 42"},
		{Class: "passport", Value: "FAKE_PASSPORT_99"},
		{Class: "birthdate", Value: "1999-99-99"},
		{Class: "name", Value: "   "},
		{Class: "text", Value: "fake\xffinvalid-utf8"},
		{Class: "address", Value: strings.Repeat("9 Fake Street ", 100)},
		{Class: "iban", Value: "FAKE00IBAN0000"},
		{Class: "name", Value: "Fake Person", Subject: strings.Repeat("fake-subject-", 30)},
		{Class: "name", Value: "Fake Person", Subject: "fake-subject\xff"},
		{Class: "name", Value: "Fake Good Person"},
	}
	res, err := e.tz.Tokenize(context.Background(), "acme", items, "request-1")
	if err != nil {
		t.Fatal(err)
	}
	for i, r := range res[:len(res)-1] {
		if r.Err == nil || r.Token != "" {
			t.Fatalf("item %d: token %q, err %v; want only an error", i, r.Token, r.Err)
		}
		if !tokenizer.IsUserError(r.Err) {
			t.Errorf("item %d: %v is not a UserError", i, r.Err)
		}
		want := tokenizer.ErrInvalidValue
		if items[i].Class == "iban" {
			want = tokenizer.ErrUnknownClass
		}
		if !errors.Is(r.Err, want) {
			t.Errorf("item %d: %v is not %v", i, r.Err, want)
		}
		for _, s := range []string{strings.TrimSpace(items[i].Value), items[i].Subject} {
			if len(s) >= 3 && strings.Contains(r.Err.Error(), s) {
				t.Errorf("item %d: error quotes the input", i)
			}
		}
	}
	last := res[len(res)-1]
	if last.Err != nil {
		t.Fatal(last.Err)
	}
	wantValue(t, revealOne(t, e.tz, last.Token), "Fake Good Person")
	// A batch with nothing valid touches no backend.
	e.store.fail("Get", true)
	e.store.fail("PutNew", true)
	res, err = e.tz.Tokenize(context.Background(), "newcomer", items[:3], "")
	if err != nil || len(res) != 3 {
		t.Fatalf("all-invalid batch = %v, %v", res, err)
	}
	if _, err := e.tz.Tokenize(context.Background(), "Bad Tenant", items[10:], ""); err == nil {
		t.Fatal("bad tenant name accepted")
	}
}

func TestKeyRefreshSeesOtherReplicaRotation(t *testing.T) {
	e := newEnv(t, withRefresh(time.Minute))
	ctx := context.Background()
	a, b := e.tz, e.newTokenizer(t)
	item := []tokenizer.Item{{Class: "name", Value: "Fake Person"}}
	if r := revealOne(t, a, tokenize(t, a, "acme", item, "")[0]); r.Generation != 1 {
		t.Fatalf("generation %d, want 1", r.Generation)
	}
	if g, err := b.RotateGeneration(ctx, "acme"); err != nil || g != 2 {
		t.Fatalf("RotateGeneration on replica b = %d, %v", g, err)
	}
	e.clock.Advance(30 * time.Second)
	if r := revealOne(t, a, tokenize(t, a, "acme", item, "")[0]); r.Generation != 1 {
		t.Fatalf("replica a used generation %d before its refresh was due", r.Generation)
	}
	e.clock.Advance(31 * time.Second)
	tok := tokenize(t, a, "acme", item, "")[0]
	r := revealOne(t, b, tok)
	wantValue(t, r, "Fake Person")
	if r.Generation != 2 {
		t.Fatalf("replica a still uses generation %d after the refresh interval", r.Generation)
	}
}

// TestStoreHoldsNoValueOrToken checks invariant 3: nothing written to the
// store contains a value, a token, or their hex, base64 or unkeyed SHA-256
// forms.
func TestStoreHoldsNoValueOrToken(t *testing.T) {
	e := newEnv(t)
	var items []tokenizer.Item
	for _, c := range tokenizer.DefaultClasses() {
		for i := range 3 {
			items = append(items, tokenizer.Item{Class: c.Name, Value: fakeValue(c.Name, 1000+i), Subject: fmt.Sprintf("fake-subject-%d", i)})
		}
	}
	toks := tokenize(t, e.tz, "acme", items, "request-1")
	tokenize(t, e.tz, "acme", items, "request-1") // retry path too
	if _, err := e.tz.RotateGeneration(context.Background(), "acme"); err != nil {
		t.Fatal(err)
	}
	tokenize(t, e.tz, "acme", items, "")

	var secrets [][]byte
	add := func(b []byte) {
		sum := sha256.Sum256(b)
		secrets = append(secrets, b, []byte(hex.EncodeToString(b)), []byte(strings.ToUpper(hex.EncodeToString(b))),
			[]byte(base64.StdEncoding.EncodeToString(b)), []byte(base64.RawURLEncoding.EncodeToString(b)),
			sum[:], []byte(hex.EncodeToString(sum[:])), []byte(base64.StdEncoding.EncodeToString(sum[:])),
			[]byte(base64.RawURLEncoding.EncodeToString(sum[:])), []byte(base64.RawStdEncoding.EncodeToString(sum[:])))
	}
	for i, it := range items {
		add([]byte(it.Value))
		add([]byte(normalized(t, e.tz, it.Class, it.Value)))
		add([]byte(it.Subject))
		add([]byte(toks[i]))
		tok, _ := tokenizer.ParseToken(toks[i])
		add(tok.Payload[:])
		body := toks[i][strings.LastIndexByte(toks[i], '_')+1:]
		secrets = append(secrets, []byte(body), []byte(body[:len(body)-1]))
	}
	e.store.mu.Lock()
	defer e.store.mu.Unlock()
	var blobs [][]byte
	for _, en := range e.store.written {
		blobs = append(blobs, []byte(en.Key), en.Value)
	}
	for k, ms := range e.store.sets {
		blobs = append(blobs, []byte(k))
		for _, m := range ms {
			blobs = append(blobs, []byte(m))
		}
	}
	if len(blobs) < 3*len(items) {
		t.Fatalf("only %d blobs recorded", len(blobs))
	}
	for _, b := range blobs {
		for _, s := range secrets {
			if bytes.Contains(b, s) {
				t.Fatalf("the store holds a value or token in some form (%d-byte secret)", len(s))
			}
		}
	}
}

func BenchmarkTokenize1000(b *testing.B) {
	e := newEnv(b)
	items := make([]tokenizer.Item, 1000)
	classes := tokenizer.DefaultClasses()
	for i := range items {
		c := classes[i%len(classes)].Name
		items[i] = tokenizer.Item{Class: c, Value: fakeValue(c, i)}
	}
	tokenize(b, e.tz, "acme", items[:1], "") // create the tenant's keys
	b.ReportAllocs()
	for b.Loop() {
		if _, err := e.tz.Tokenize(context.Background(), "acme", items, ""); err != nil {
			b.Fatal(err)
		}
	}
	b.ReportMetric(float64(b.N*len(items))/b.Elapsed().Seconds(), "items/s")
}

// resendStore stores PutNew entries but reports them as not stored, as a
// store client does when it resends a pipeline whose reply was lost.
type resendStore struct{ tokenizer.Store }

func (s resendStore) PutNew(ctx context.Context, entries []tokenizer.Entry) ([]bool, error) {
	if _, err := s.Store.PutNew(ctx, entries); err != nil {
		return nil, err
	}
	return make([]bool, len(entries)), nil
}

// An idempotency claim that looks lost but holds our own token must not
// delete our record: the token was acknowledged and must reveal.
func TestIdempotencyClaimResentKeepsRecord(t *testing.T) {
	e := newEnv(t)
	var s tokenizer.Store = e.mem
	cfg := e.cfg
	cfg.Store = resendStore{s}
	tz, err := tokenizer.New(cfg)
	if err != nil {
		t.Fatal(err)
	}
	items := []tokenizer.Item{{Class: "name", Value: "Resent Person"}}
	toks := tokenize(t, tz, "acme", items, "retry-key-1")
	wantValue(t, revealOne(t, tz, toks[0]), "Resent Person")
}

// A retry after the first attempt's record was erased gets a fresh token
// that reveals, never the dead one.
func TestIdempotentRetryAfterErasureRemints(t *testing.T) {
	e := newEnv(t)
	items := []tokenizer.Item{{Class: "name", Value: "Erased Person"}}
	first := tokenize(t, e.tz, "acme", items, "retry-after-erase")
	tok, err := tokenizer.ParseToken(first[0])
	if err != nil {
		t.Fatal(err)
	}
	if n, err := e.tz.EraseTokens(context.Background(), []tokenizer.Token{tok}); err != nil || n != 1 {
		t.Fatalf("EraseTokens: %d, %v", n, err)
	}
	again := tokenize(t, e.tz, "acme", items, "retry-after-erase")
	if again[0] == first[0] {
		t.Fatal("the retry acknowledged the erased token")
	}
	wantValue(t, revealOne(t, e.tz, again[0]), "Erased Person")
	// And the retry after that is stable again.
	if third := tokenize(t, e.tz, "acme", items, "retry-after-erase"); third[0] != again[0] {
		t.Fatal("a later retry minted yet another token")
	}
}
