package localkeys_test

import (
	"bytes"
	"context"
	"errors"
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

func TestNewRefusedOutsideDevMode(t *testing.T) {
	m, err := localkeys.New(false)
	if m != nil || !errors.Is(err, tokenizer.ErrDevOnly) {
		t.Fatalf("New(false) = %v, %v; want nil, ErrDevOnly", m, err)
	}
}

func TestWrapUnwrap(t *testing.T) {
	ctx := context.Background()
	m := newManager(t)
	key, wrapped, err := m.NewDataKey(ctx, "")
	if err != nil {
		t.Fatal(err)
	}
	if len(key) != 32 {
		t.Fatalf("data key is %d bytes, want 32", len(key))
	}
	if bytes.Contains(wrapped, key) {
		t.Fatal("wrapped key contains the key")
	}
	got, err := m.Unwrap(ctx, "", wrapped)
	if err != nil || !bytes.Equal(got, key) {
		t.Fatalf("Unwrap = %x, %v", got, err)
	}
	key2, wrapped2, err := m.NewDataKey(ctx, "")
	if err != nil {
		t.Fatal(err)
	}
	if bytes.Equal(key, key2) || bytes.Equal(wrapped, wrapped2) {
		t.Fatal("two data keys are equal")
	}
	// Another manager has another KEK.
	if _, err := newManager(t).Unwrap(ctx, "", wrapped); err == nil {
		t.Fatal("another manager unwrapped the key")
	}
}

func TestRewrapAfterRotate(t *testing.T) {
	ctx := context.Background()
	m := newManager(t)
	key, v1, err := m.NewDataKey(ctx, "")
	if err != nil {
		t.Fatal(err)
	}
	if err := m.Rotate(); err != nil {
		t.Fatal(err)
	}
	v2, err := m.Rewrap(ctx, "", v1)
	if err != nil {
		t.Fatal(err)
	}
	if bytes.Equal(v1, v2) {
		t.Fatal("Rewrap returned the same blob")
	}
	for _, w := range [][]byte{v1, v2} {
		got, err := m.Unwrap(ctx, "", w)
		if err != nil || !bytes.Equal(got, key) {
			t.Fatalf("Unwrap after rotate = %x, %v", got, err)
		}
	}
	// The rewrapped blob names the newer KEK version: it is not the old
	// blob with a new header.
	if bytes.Equal(v1[:6], v2[:6]) {
		t.Fatal("rewrapped blob has the same KEK version")
	}
	// New keys use the newest KEK too.
	_, w3, err := m.NewDataKey(ctx, "")
	if err != nil {
		t.Fatal(err)
	}
	if !bytes.Equal(w3[:6], v2[:6]) {
		t.Fatal("new data key is not wrapped by the newest KEK")
	}
}

func TestTamperedWrappedKeyFails(t *testing.T) {
	ctx := context.Background()
	m := newManager(t)
	if err := m.Rotate(); err != nil { // two KEK versions
		t.Fatal(err)
	}
	_, wrapped, err := m.NewDataKey(ctx, "")
	if err != nil {
		t.Fatal(err)
	}
	for i := range wrapped {
		for _, mask := range []byte{0x01, 0x80} {
			b := bytes.Clone(wrapped)
			b[i] ^= mask
			if k, err := m.Unwrap(ctx, "", b); err == nil {
				t.Fatalf("Unwrap opened with byte %d changed: %x", i, k)
			}
			if _, err := m.Rewrap(ctx, "", b); err == nil {
				t.Fatalf("Rewrap accepted byte %d changed", i)
			}
		}
	}
	for n := range len(wrapped) {
		if _, err := m.Unwrap(ctx, "", wrapped[:n]); err == nil {
			t.Fatalf("Unwrap opened a blob truncated to %d bytes", n)
		}
	}
	for _, b := range [][]byte{nil, []byte("lk"), append([]byte("lk\x00\x00\x00\x00"), make([]byte, 60)...), append([]byte("lk\xff\xff\xff\xff"), make([]byte, 60)...)} {
		if _, err := m.Unwrap(ctx, "", b); err == nil {
			t.Fatalf("Unwrap opened %x", b)
		}
	}
}

func TestCanceledContext(t *testing.T) {
	m := newManager(t)
	_, wrapped, err := m.NewDataKey(context.Background(), "")
	if err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithCancel(context.Background())
	cancel()
	if _, _, err := m.NewDataKey(ctx, ""); !errors.Is(err, context.Canceled) {
		t.Fatalf("NewDataKey err = %v", err)
	}
	if _, err := m.Unwrap(ctx, "", wrapped); !errors.Is(err, context.Canceled) {
		t.Fatalf("Unwrap err = %v", err)
	}
	if _, err := m.Rewrap(ctx, "", wrapped); !errors.Is(err, context.Canceled) {
		t.Fatalf("Rewrap err = %v", err)
	}
}

// failingReader fails every read, standing in for a broken entropy source.
type failingReader struct{}

func (failingReader) Read([]byte) (int, error) { return 0, errors.New("no entropy") }

func TestBrokenRandomness(t *testing.T) {
	if m, err := localkeys.New(true, localkeys.WithRand(failingReader{})); err == nil || m != nil {
		t.Fatalf("New with failing rand = %v, %v", m, err)
	}
	fixed := bytes.NewReader(bytes.Repeat([]byte{0x5a}, 32+32+12))
	m := newManager(t, localkeys.WithRand(fixed))
	key, _, err := m.NewDataKey(context.Background(), "")
	if err != nil {
		t.Fatal(err)
	}
	if !bytes.Equal(key, bytes.Repeat([]byte{0x5a}, 32)) {
		t.Fatal("WithRand is not the source of data keys")
	}
	if _, _, err := m.NewDataKey(context.Background(), ""); err == nil {
		t.Fatal("NewDataKey succeeded with exhausted randomness")
	}
}

func TestNamedKEKs(t *testing.T) {
	ctx := context.Background()
	m := newManager(t)
	key, wrapped, err := m.NewDataKey(ctx, "acme-g1")
	if err != nil {
		t.Fatal(err)
	}
	if got, err := m.Unwrap(ctx, "acme-g1", wrapped); err != nil || !bytes.Equal(got, key) {
		t.Fatalf("Unwrap under its KEK = same key %t, %v", bytes.Equal(got, key), err)
	}
	// A key wrapped by one KEK never opens under another, the main one
	// included.
	if _, _, err := m.NewDataKey(ctx, "acme-g2"); err != nil {
		t.Fatal(err)
	}
	for _, other := range []string{"", "acme-g2"} {
		if _, err := m.Unwrap(ctx, other, wrapped); err == nil {
			t.Errorf("Unwrap under KEK %q opened a key of acme-g1", other)
		}
	}

	if err := m.DestroyKEK(ctx, ""); err == nil {
		t.Fatal("DestroyKEK accepted the main KEK")
	}
	for range 2 { // idempotent
		if err := m.DestroyKEK(ctx, "acme-g1"); err != nil {
			t.Fatalf("DestroyKEK: %v", err)
		}
	}
	for name, call := range map[string]func() error{
		"Unwrap": func() error { _, err := m.Unwrap(ctx, "acme-g1", wrapped); return err },
		"Rewrap": func() error { _, err := m.Rewrap(ctx, "acme-g1", wrapped); return err },
	} {
		if err := call(); !errors.Is(err, tokenizer.ErrKeyDestroyed) {
			t.Errorf("%s after DestroyKEK: %v, want ErrKeyDestroyed", name, err)
		}
	}
	// The other KEKs are untouched.
	if _, _, err := m.NewDataKey(ctx, ""); err != nil {
		t.Errorf("main KEK after destroying another: %v", err)
	}
	// Using the name again makes a new KEK, which cannot open the old key.
	if _, _, err := m.NewDataKey(ctx, "acme-g1"); err != nil {
		t.Fatal(err)
	}
	if _, err := m.Unwrap(ctx, "acme-g1", wrapped); err == nil {
		t.Error("a recreated KEK opened a key of the destroyed one")
	}
}
