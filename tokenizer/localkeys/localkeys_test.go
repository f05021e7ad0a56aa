package localkeys_test

import (
	"bytes"
	"context"
	"errors"
	"slices"
	"testing"

	"github.com/jeton-dev/jeton/tokenizer"
	"github.com/jeton-dev/jeton/tokenizer/localkeys"
)

func newManager(tb testing.TB, opts ...localkeys.Option) *localkeys.Manager {
	tb.Helper()
	m, err := localkeys.New(true, opts...)
	if err != nil {
		tb.Fatal(err)
	}
	return m
}

// fakeKey is a 256-bit key for tests, never a real one.
func fakeKey(b byte) []byte { return bytes.Repeat([]byte{b}, 32) }

var adAcme = []byte("identity acme")

func TestNewRefusedOutsideDevMode(t *testing.T) {
	m, err := localkeys.New(false)
	if m != nil || !errors.Is(err, tokenizer.ErrDevOnly) {
		t.Fatalf("New(false) = %v, %v; want nil, ErrDevOnly", m, err)
	}
}

func TestWrapUnwrap(t *testing.T) {
	ctx := context.Background()
	m := newManager(t)
	key := fakeKey(0x11)
	wrapped, err := m.Wrap(ctx, "", key, adAcme)
	if err != nil {
		t.Fatal(err)
	}
	if bytes.Contains(wrapped, key) {
		t.Fatal("wrapped key contains the key")
	}
	got, err := m.Unwrap(ctx, "", wrapped, adAcme)
	if err != nil || !bytes.Equal(got, key) {
		t.Fatalf("Unwrap = %x, %v", got, err)
	}
	again, err := m.Wrap(ctx, "", key, adAcme)
	if err != nil || bytes.Equal(wrapped, again) {
		t.Fatalf("two wraps of one key are equal (%v): the nonce repeats", err)
	}
	// Another manager has another KEK.
	if _, err := newManager(t).Unwrap(ctx, "", wrapped, adAcme); !errors.Is(err, tokenizer.ErrKeyMismatch) {
		t.Fatalf("another manager's Unwrap: %v, want ErrKeyMismatch", err)
	}
}

// A wrapped key is bound to its associated data, as Vault Transit binds
// it: other associated data, none, or a prefix of it does not open it.
func TestWrapBindsAssociatedData(t *testing.T) {
	ctx := context.Background()
	m := newManager(t)
	wrapped, err := m.Wrap(ctx, "", fakeKey(0x22), adAcme)
	if err != nil {
		t.Fatal(err)
	}
	for _, ad := range [][]byte{nil, {}, []byte("identity beta"), adAcme[:len(adAcme)-1], append(bytes.Clone(adAcme), 0)} {
		if k, err := m.Unwrap(ctx, "", wrapped, ad); !errors.Is(err, tokenizer.ErrKeyMismatch) {
			t.Errorf("Unwrap with ad %q = %x, %v; want ErrKeyMismatch", ad, k, err)
		}
	}
	// Unbound keys (nil ad), as earlier releases wrote them, still open.
	unbound, err := m.Wrap(ctx, "", fakeKey(0x23), nil)
	if err != nil {
		t.Fatal(err)
	}
	if k, err := m.Unwrap(ctx, "", unbound, nil); err != nil || !bytes.Equal(k, fakeKey(0x23)) {
		t.Fatalf("Unwrap of an unbound key = %x, %v", k, err)
	}
	if _, err := m.Unwrap(ctx, "", unbound, adAcme); err == nil {
		t.Fatal("an unbound key opened with associated data")
	}
}

func TestWrapAfterRotate(t *testing.T) {
	ctx := context.Background()
	m := newManager(t)
	key := fakeKey(0x33)
	v1, err := m.Wrap(ctx, "", key, adAcme)
	if err != nil {
		t.Fatal(err)
	}
	if err := m.Rotate(); err != nil {
		t.Fatal(err)
	}
	v2, err := m.Wrap(ctx, "", key, adAcme)
	if err != nil {
		t.Fatal(err)
	}
	for _, w := range [][]byte{v1, v2} {
		got, err := m.Unwrap(ctx, "", w, adAcme)
		if err != nil || !bytes.Equal(got, key) {
			t.Fatalf("Unwrap after rotate = %x, %v", got, err)
		}
	}
	// The new wrap names the newer KEK version.
	if bytes.Equal(v1[:6], v2[:6]) {
		t.Fatal("a wrap after Rotate did not use the newest KEK version")
	}
}

func TestTamperedWrappedKeyFails(t *testing.T) {
	ctx := context.Background()
	m := newManager(t)
	if err := m.Rotate(); err != nil { // two KEK versions
		t.Fatal(err)
	}
	wrapped, err := m.Wrap(ctx, "", fakeKey(0x44), adAcme)
	if err != nil {
		t.Fatal(err)
	}
	for i := range wrapped {
		for _, mask := range []byte{0x01, 0x80} {
			b := bytes.Clone(wrapped)
			b[i] ^= mask
			if k, err := m.Unwrap(ctx, "", b, adAcme); !errors.Is(err, tokenizer.ErrKeyMismatch) {
				t.Fatalf("Unwrap with byte %d changed = %x, %v; want ErrKeyMismatch", i, k, err)
			}
		}
	}
	for n := range len(wrapped) {
		if _, err := m.Unwrap(ctx, "", wrapped[:n], adAcme); err == nil {
			t.Fatalf("Unwrap opened a blob truncated to %d bytes", n)
		}
	}
	for _, b := range [][]byte{nil, []byte("lk"), append([]byte("lk\x00\x00\x00\x00"), make([]byte, 60)...), append([]byte("lk\xff\xff\xff\xff"), make([]byte, 60)...)} {
		if _, err := m.Unwrap(ctx, "", b, adAcme); err == nil {
			t.Fatalf("Unwrap opened %x", b)
		}
	}
}

func TestCanceledContext(t *testing.T) {
	m := newManager(t)
	wrapped, err := m.Wrap(context.Background(), "", fakeKey(0x55), nil)
	if err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithCancel(context.Background())
	cancel()
	if _, err := m.Wrap(ctx, "", fakeKey(0x55), nil); !errors.Is(err, context.Canceled) {
		t.Fatalf("Wrap err = %v", err)
	}
	if _, err := m.Unwrap(ctx, "", wrapped, nil); !errors.Is(err, context.Canceled) {
		t.Fatalf("Unwrap err = %v", err)
	}
	if _, err := m.KEKs(ctx, ""); !errors.Is(err, context.Canceled) {
		t.Fatalf("KEKs err = %v", err)
	}
}

// failingReader fails every read, standing in for a broken entropy source.
type failingReader struct{}

func (failingReader) Read([]byte) (int, error) { return 0, errors.New("no entropy") }

func TestBrokenRandomness(t *testing.T) {
	if m, err := localkeys.New(true, localkeys.WithRand(failingReader{})); err == nil || m != nil {
		t.Fatalf("New with failing rand = %v, %v", m, err)
	}
	// The main KEK takes 32 bytes, one nonce 12 more; nothing is left for
	// a second wrap's nonce.
	m := newManager(t, localkeys.WithRand(bytes.NewReader(make([]byte, 32+12))))
	if _, err := m.Wrap(context.Background(), "", fakeKey(0x66), nil); err != nil {
		t.Fatal(err)
	}
	if _, err := m.Wrap(context.Background(), "", fakeKey(0x66), nil); err == nil {
		t.Fatal("Wrap succeeded with exhausted randomness")
	}
}

func TestNamedKEKs(t *testing.T) {
	ctx := context.Background()
	m := newManager(t)
	key := fakeKey(0x77)
	wrapped, err := m.Wrap(ctx, "acme-g1", key, adAcme)
	if err != nil {
		t.Fatal(err)
	}
	if got, err := m.Unwrap(ctx, "acme-g1", wrapped, adAcme); err != nil || !bytes.Equal(got, key) {
		t.Fatalf("Unwrap under its KEK = same key %t, %v", bytes.Equal(got, key), err)
	}
	// A key wrapped by one KEK never opens under another, the main one
	// included.
	if _, err := m.Wrap(ctx, "acme-g2", key, adAcme); err != nil {
		t.Fatal(err)
	}
	for _, other := range []string{"", "acme-g2"} {
		if _, err := m.Unwrap(ctx, other, wrapped, adAcme); !errors.Is(err, tokenizer.ErrKeyMismatch) {
			t.Errorf("Unwrap under KEK %q of a key of acme-g1: %v, want ErrKeyMismatch", other, err)
		}
	}
	// Names the tokenizer never asks for are refused.
	for _, bad := range []string{"acme", "acme-g0", "Acme-g1", "acme-g1/x"} {
		if _, err := m.Wrap(ctx, bad, key, adAcme); err == nil {
			t.Errorf("Wrap under KEK %q accepted", bad)
		}
	}
	if _, err := m.Wrap(ctx, "acme-g1-g1", key, adAcme); err != nil { // tenant "acme-g1"
		t.Fatal(err)
	}
	got, err := m.KEKs(ctx, "acme-g")
	slices.Sort(got)
	if err != nil || !slices.Equal(got, []string{"acme-g1", "acme-g1-g1", "acme-g2"}) {
		t.Fatalf("KEKs(acme-g) = %q, %v", got, err)
	}

	if err := m.DestroyKEK(ctx, ""); err == nil {
		t.Fatal("DestroyKEK accepted the main KEK")
	}
	for range 2 { // idempotent
		if err := m.DestroyKEK(ctx, "acme-g1"); err != nil {
			t.Fatalf("DestroyKEK: %v", err)
		}
	}
	if _, err := m.Unwrap(ctx, "acme-g1", wrapped, adAcme); !errors.Is(err, tokenizer.ErrKeyDestroyed) {
		t.Errorf("Unwrap after DestroyKEK: %v, want ErrKeyDestroyed", err)
	}
	if got, _ := m.KEKs(ctx, "acme-g"); slices.Contains(got, "acme-g1") {
		t.Errorf("KEKs lists a destroyed KEK: %q", got)
	}
	// The other KEKs are untouched.
	if _, err := m.Wrap(ctx, "", key, nil); err != nil {
		t.Errorf("main KEK after destroying another: %v", err)
	}
	// Using the name again makes a new KEK, which cannot open the old key.
	if _, err := m.Wrap(ctx, "acme-g1", key, adAcme); err != nil {
		t.Fatal(err)
	}
	if _, err := m.Unwrap(ctx, "acme-g1", wrapped, adAcme); err == nil {
		t.Error("a recreated KEK opened a key of the destroyed one")
	}
}
