// Package storetest is the conformance suite for tokenizer.Store. Every
// implementation (memstore, redisstore) runs it from its own tests, so they
// all keep the contract documented on tokenizer.Store in the same way:
//
//	func TestConformance(t *testing.T) {
//		storetest.Run(t, func(t testing.TB) tokenizer.Store { return memstore.New() })
//	}
//
// The TTL cases use real time, with lifetimes of a few hundred milliseconds,
// because a Store backed by a server has no clock to inject.
package storetest

import (
	"bytes"
	"context"
	"crypto/rand"
	"encoding/hex"
	"errors"
	"fmt"
	"slices"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/jeton-dev/jeton/tokenizer"
)

const (
	// shortTTL is long enough that a value is still there right after it
	// was written, even on a loaded machine, and short enough to wait out.
	shortTTL = 300 * time.Millisecond
	// expiryDeadline bounds the wait for a shortTTL key to disappear.
	expiryDeadline = 3 * time.Second
	// longTTL never runs out during a test.
	longTTL = time.Hour
)

// Run runs the conformance suite against the stores newStore returns.
//
// The subtests run in parallel and call newStore once each, with their own
// t. The stores may share one backend (one Redis server, say): every subtest
// writes only keys under a prefix of its own, and none expects an empty
// store.
func Run(t *testing.T, newStore func(t testing.TB) tokenizer.Store) {
	tests := []struct {
		name string
		run  func(t *testing.T, s tokenizer.Store, k keys)
	}{
		{"PutGetRoundTrip", testPutGetRoundTrip},
		{"ValuesAreByteExact", testValuesAreByteExact},
		{"UnusualKeys", testUnusualKeys},
		{"PutOverwrites", testPutOverwrites},
		{"GetMissingKeysAreNilInPlace", testGetMissing},
		{"EmptyBatches", testEmptyBatches},
		{"ValuesAreCopies", testValuesAreCopies},
		{"LargeBatch", testLargeBatch},
		{"PutNew", testPutNew},
		{"PutNewDuplicateKeysInBatch", testPutNewDuplicates},
		{"PutExisting", testPutExisting},
		{"Swap", testSwap},
		{"ConcurrentSwapHasOneWinner", testConcurrentSwap},
		{"WriteCreatesNeverReplaces", testWriteCreate},
		{"WriteKeep", testWriteKeep},
		{"WriteSets", testWriteSets},
		{"WriteLargeBatch", testWriteLarge},
		{"WriteScriptCacheFlushed", testWriteAfterScriptFlush},
		{"Delete", testDelete},
		{"DeleteRemovesSets", testDeleteRemovesSets},
		{"AddToSetAndSetMembers", testSets},
		{"AddToSetNoMembers", testAddToSetNoMembers},
		{"LargeSet", testLargeSet},
		{"CanceledContext", testCanceledContext},
		{"ExpiredContext", testExpiredContext},
		{"ConcurrentPutGet", testConcurrentPutGet},
		{"ConcurrentPutNewHasOneWinner", testConcurrentPutNew},
		{"ConcurrentAddToSet", testConcurrentAddToSet},
		{"ConcurrentDeleteCountsOnce", testConcurrentDelete},
		{"ScanPrefix", testScanPrefix},
		{"ScanPrefixIsLiteral", testScanLiteral},
		{"ScanManyKeys", testScanMany},
		{"ScanStopsOnError", testScanError},
		{"ScanWhileDeleting", testScanDelete},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			t.Parallel()
			tc.run(t, newStore(t), newKeys(t))
		})
	}
	t.Run("TTL", func(t *testing.T) {
		t.Parallel()
		runTTL(t, newStore)
	})
}

// runTTL runs the lifetime cases in parallel with each other, so their waits
// overlap.
func runTTL(t *testing.T, newStore func(t testing.TB) tokenizer.Store) {
	tests := []struct {
		name string
		run  func(t *testing.T, s tokenizer.Store, k keys)
	}{
		{"PutWithTTLExpires", testPutTTLExpires},
		{"PutWithoutTTLClearsTTL", testPutClearsTTL},
		{"PutNewStoresOverExpiredKey", testPutNewOverExpired},
		{"PutNewKeepsExistingTTL", testPutNewKeepsTTL},
		{"PutExistingSkipsExpiredKey", testPutExistingOverExpired},
		{"NewSetWithTTLExpires", testSetTTLExpires},
		{"SetTTLExtends", testSetTTLExtends},
		{"SetTTLNeverShortens", testSetTTLNeverShortens},
		{"PermanentSetStaysPermanent", testPermanentSetStays},
		{"ZeroTTLMakesSetPermanent", testZeroTTLMakesSetPermanent},
		{"SwapSetsTTL", testSwapTTL},
		{"WriteCreateKeepsExistingTTL", testWriteCreateKeepsTTL},
		{"WriteKeepExtendsTTL", testWriteKeepExtends},
		{"WriteKeepNeverShortens", testWriteKeepNeverShortens},
		{"WriteKeepZeroTTLMakesPermanent", testWriteKeepPermanent},
		{"WriteSetTTL", testWriteSetTTL},
		{"WriteManySetsLifetimes", testWriteManySetsLifetimes},
		{"ScanSkipsExpired", testScanSkipsExpired},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			t.Parallel()
			tc.run(t, newStore(t), newKeys(t))
		})
	}
}

// keys makes the keys of one subtest. They look like jeton's record keys
// and carry a random prefix, so subtests can share a backend.
type keys string

func newKeys(t testing.TB) keys {
	t.Helper()
	b := make([]byte, 8)
	if _, err := rand.Read(b); err != nil {
		t.Fatal(err)
	}
	return keys("storetest:" + hex.EncodeToString(b) + ":")
}

func (k keys) key(name string) string { return string(k) + name }

func (k keys) n(name string, i int) string { return fmt.Sprintf("%s%s:%d", k, name, i) }

// show describes a value for a failure message without printing it whole:
// values may be large or binary.
func show(v []byte) string {
	if v == nil {
		return "<absent>"
	}
	if len(v) <= 32 {
		return fmt.Sprintf("%q", v)
	}
	return fmt.Sprintf("%d bytes %q...", len(v), v[:16])
}

// --- helpers that fail the test on a store error ---

func put(t testing.TB, s tokenizer.Store, entries ...tokenizer.Entry) {
	t.Helper()
	if err := s.Put(context.Background(), entries); err != nil {
		t.Fatalf("Put: %v", err)
	}
}

func get(t testing.TB, s tokenizer.Store, ks ...string) [][]byte {
	t.Helper()
	vals, err := s.Get(context.Background(), ks)
	if err != nil {
		t.Fatalf("Get: %v", err)
	}
	if len(vals) != len(ks) {
		t.Fatalf("Get of %d keys returned %d values", len(ks), len(vals))
	}
	return vals
}

func get1(t testing.TB, s tokenizer.Store, k string) []byte {
	t.Helper()
	return get(t, s, k)[0]
}

func putNew(t testing.TB, s tokenizer.Store, entries ...tokenizer.Entry) []bool {
	t.Helper()
	stored, err := s.PutNew(context.Background(), entries)
	if err != nil {
		t.Fatalf("PutNew: %v", err)
	}
	if len(stored) != len(entries) {
		t.Fatalf("PutNew of %d entries returned %d results", len(entries), len(stored))
	}
	return stored
}

func del(t testing.TB, s tokenizer.Store, ks ...string) int {
	t.Helper()
	n, err := s.Delete(context.Background(), ks)
	if err != nil {
		t.Fatalf("Delete: %v", err)
	}
	return n
}

func addToSet(t testing.TB, s tokenizer.Store, k string, ttl time.Duration, members ...string) {
	t.Helper()
	if err := s.AddToSet(context.Background(), k, members, ttl); err != nil {
		t.Fatalf("AddToSet: %v", err)
	}
}

// members returns the members of a set, sorted: the order is unspecified.
func members(t testing.TB, s tokenizer.Store, k string) []string {
	t.Helper()
	m, err := s.SetMembers(context.Background(), k)
	if err != nil {
		t.Fatalf("SetMembers: %v", err)
	}
	slices.Sort(m)
	return m
}

func wantValue(t testing.TB, s tokenizer.Store, k string, want []byte) {
	t.Helper()
	if got := get1(t, s, k); !bytes.Equal(got, want) || got == nil {
		t.Errorf("Get(%s) = %s; want %s", k, show(got), show(want))
	}
}

func wantAbsent(t testing.TB, s tokenizer.Store, k string) {
	t.Helper()
	if got := get1(t, s, k); got != nil {
		t.Errorf("Get(%s) = %s; want <absent>", k, show(got))
	}
}

func wantMembers(t testing.TB, s tokenizer.Store, k string, want ...string) {
	t.Helper()
	want = slices.Clone(want)
	slices.Sort(want)
	if got := members(t, s, k); !slices.Equal(got, want) {
		t.Errorf("SetMembers(%s) = %q; want %q", k, got, want)
	}
}

// eventually polls cond until it holds or expiryDeadline passes.
func eventually(t testing.TB, what string, cond func() bool) {
	t.Helper()
	deadline := time.Now().Add(expiryDeadline)
	for !cond() {
		if time.Now().After(deadline) {
			t.Fatalf("%s: not within %s", what, expiryDeadline)
		}
		time.Sleep(10 * time.Millisecond)
	}
}

// --- round trips ---

func testPutGetRoundTrip(t *testing.T, s tokenizer.Store, k keys) {
	entries := []tokenizer.Entry{
		{Key: k.key("a"), Value: []byte("anne@example.org")},
		{Key: k.key("b"), Value: []byte("bob@example.org")},
		{Key: k.key("c"), Value: []byte("+33 6 00 00 00 00"), TTL: longTTL},
	}
	put(t, s, entries...)
	ks := []string{k.key("c"), k.key("a"), k.key("b"), k.key("a")}
	want := []string{"+33 6 00 00 00 00", "anne@example.org", "bob@example.org", "anne@example.org"}
	got := get(t, s, ks...)
	for i := range ks {
		if string(got[i]) != want[i] {
			t.Errorf("Get[%d] (%s) = %s; want %q", i, ks[i], show(got[i]), want[i])
		}
	}
}

func testValuesAreByteExact(t *testing.T, s tokenizer.Store, k keys) {
	all := make([]byte, 256)
	for i := range all {
		all[i] = byte(i)
	}
	big := make([]byte, 1<<20)
	if _, err := rand.Read(big); err != nil {
		t.Fatal(err)
	}
	tests := []struct {
		name  string
		value []byte
		want  []byte
	}{
		{"text", []byte("anne@example.org"), []byte("anne@example.org")},
		{"zero bytes", []byte{0, 0, 'a', 0, 'b', 0}, []byte{0, 0, 'a', 0, 'b', 0}},
		{"every byte value", all, all},
		{"invalid UTF-8", []byte{0xff, 0xfe, 0xc3, 0x28}, []byte{0xff, 0xfe, 0xc3, 0x28}},
		{"CRLF and RESP markers", []byte("\r\n$-1\r\n*0\r\n"), []byte("\r\n$-1\r\n*0\r\n")},
		{"one MiB", big, big},
		// A present key with an empty value must not read as absent.
		{"empty", []byte{}, []byte{}},
		{"nil value is stored as empty", nil, []byte{}},
	}
	for _, tc := range tests {
		key := k.key(tc.name)
		put(t, s, tokenizer.Entry{Key: key, Value: tc.value})
		got := get1(t, s, key)
		if got == nil || !bytes.Equal(got, tc.want) {
			t.Errorf("%s: Get = %s; want %s", tc.name, show(got), show(tc.want))
		}
	}
}

func testUnusualKeys(t *testing.T, s tokenizer.Store, k keys) {
	names := []string{
		"jeton:r:tenant-1:q83v+/AB==", // base64 with +, / and =
		"with space",
		"{hash}tag",
		"}{",
		"ünïcødé",
		"nul\x00inside",
		strings.Repeat("x", 1000),
	}
	for i, n := range names {
		put(t, s, tokenizer.Entry{Key: k.key(n), Value: fmt.Appendf(nil, "value %d", i)})
	}
	for i, n := range names {
		wantValue(t, s, k.key(n), fmt.Appendf(nil, "value %d", i))
	}
	if got := del(t, s, k.key(names[2])); got != 1 {
		t.Errorf("Delete = %d; want 1", got)
	}
	wantAbsent(t, s, k.key(names[2]))
	wantValue(t, s, k.key(names[3]), []byte("value 3"))
}

func testPutOverwrites(t *testing.T, s tokenizer.Store, k keys) {
	put(t, s, tokenizer.Entry{Key: k.key("a"), Value: []byte("anne@example.org")})
	put(t, s, tokenizer.Entry{Key: k.key("a"), Value: []byte("bob@example.org")})
	wantValue(t, s, k.key("a"), []byte("bob@example.org"))

	// Within one batch the last entry for a key wins, as if applied in order.
	put(t, s,
		tokenizer.Entry{Key: k.key("b"), Value: []byte("first")},
		tokenizer.Entry{Key: k.key("b"), Value: []byte("second")},
		tokenizer.Entry{Key: k.key("b"), Value: []byte("third")},
	)
	wantValue(t, s, k.key("b"), []byte("third"))

	// A shorter value replaces a longer one completely.
	put(t, s, tokenizer.Entry{Key: k.key("b"), Value: []byte("x")})
	wantValue(t, s, k.key("b"), []byte("x"))
}

func testGetMissing(t *testing.T, s tokenizer.Store, k keys) {
	put(t, s,
		tokenizer.Entry{Key: k.key("a"), Value: []byte("1")},
		tokenizer.Entry{Key: k.key("c"), Value: []byte("3")},
	)
	ks := []string{k.key("missing-0"), k.key("a"), k.key("b"), k.key("c"), k.key("missing-1")}
	want := [][]byte{nil, []byte("1"), nil, []byte("3"), nil}
	got := get(t, s, ks...)
	for i := range ks {
		if (got[i] == nil) != (want[i] == nil) || !bytes.Equal(got[i], want[i]) {
			t.Errorf("Get[%d] (%s) = %s; want %s", i, ks[i], show(got[i]), show(want[i]))
		}
	}
	// Only absent keys: all nil, no error.
	for i, v := range get(t, s, k.key("x"), k.key("y")) {
		if v != nil {
			t.Errorf("Get[%d] of an absent key = %s; want <absent>", i, show(v))
		}
	}
}

func testEmptyBatches(t *testing.T, s tokenizer.Store, _ keys) {
	ctx := context.Background()
	if err := s.Put(ctx, nil); err != nil {
		t.Errorf("Put(nil) = %v", err)
	}
	if got, err := s.PutNew(ctx, nil); err != nil || len(got) != 0 {
		t.Errorf("PutNew(nil) = %v, %v; want none", got, err)
	}
	if got, err := s.Get(ctx, nil); err != nil || len(got) != 0 {
		t.Errorf("Get(nil) = %v, %v; want none", got, err)
	}
	if got, err := s.Delete(ctx, []string{}); err != nil || got != 0 {
		t.Errorf("Delete(none) = %d, %v; want 0", got, err)
	}
}

func testValuesAreCopies(t *testing.T, s tokenizer.Store, k keys) {
	in := []byte("anne@example.org")
	put(t, s, tokenizer.Entry{Key: k.key("a"), Value: in})
	in[0] = 'X'
	out := get1(t, s, k.key("a"))
	if string(out) != "anne@example.org" {
		t.Fatalf("after changing the Put argument, Get = %s; the store kept the caller's slice", show(out))
	}
	out[0] = 'Y'
	wantValue(t, s, k.key("a"), []byte("anne@example.org"))

	in2 := []byte("bob@example.org")
	putNew(t, s, tokenizer.Entry{Key: k.key("b"), Value: in2})
	in2[0] = 'X'
	wantValue(t, s, k.key("b"), []byte("bob@example.org"))
}

func testLargeBatch(t *testing.T, s tokenizer.Store, k keys) {
	const n = 10_000
	entries := make([]tokenizer.Entry, n)
	for i := range entries {
		entries[i] = tokenizer.Entry{Key: k.n("r", i), Value: fmt.Appendf(nil, "value-%d\x00", i)}
	}
	put(t, s, entries...)

	// Read back in reverse, with an absent key after every tenth, so a
	// store that answers out of order or drops the absent ones fails.
	var ks []string
	for i := n - 1; i >= 0; i-- {
		ks = append(ks, k.n("r", i))
		if i%10 == 0 {
			ks = append(ks, k.n("absent", i))
		}
	}
	got := get(t, s, ks...)
	bad := 0
	for j, key := range ks {
		var want []byte
		var i int
		if _, err := fmt.Sscanf(key[len(k):], "r:%d", &i); err == nil {
			want = fmt.Appendf(nil, "value-%d\x00", i)
		}
		if (got[j] == nil) != (want == nil) || !bytes.Equal(got[j], want) {
			if bad++; bad <= 5 {
				t.Errorf("Get[%d] (%s) = %s; want %s", j, key, show(got[j]), show(want))
			}
		}
	}
	if bad > 5 {
		t.Errorf("... %d wrong values in all", bad)
	}

	// PutNew over half old, half new keys.
	news := make([]tokenizer.Entry, n)
	for i := range news {
		key := k.n("r", i)
		if i%2 == 1 {
			key = k.n("new", i)
		}
		news[i] = tokenizer.Entry{Key: key, Value: []byte("new")}
	}
	stored := putNew(t, s, news...)
	for i, ok := range stored {
		if ok != (i%2 == 1) {
			t.Fatalf("PutNew[%d] (%s) stored=%t; want %t", i, news[i].Key, ok, i%2 == 1)
		}
	}

	all := make([]string, 0, n+n/2)
	for i := range n {
		all = append(all, k.n("r", i))
		if i%2 == 1 {
			all = append(all, k.n("new", i))
		}
	}
	if got := del(t, s, all...); got != len(all) {
		t.Errorf("Delete of %d present keys = %d", len(all), got)
	}
	for i, v := range get(t, s, all...) {
		if v != nil {
			t.Fatalf("after Delete, Get[%d] (%s) = %s; want <absent>", i, all[i], show(v))
		}
	}
}

// --- PutNew ---

func testPutNew(t *testing.T, s tokenizer.Store, k keys) {
	put(t, s, tokenizer.Entry{Key: k.key("old"), Value: []byte("anne@example.org")})
	got := putNew(t, s,
		tokenizer.Entry{Key: k.key("new-1"), Value: []byte("n1")},
		tokenizer.Entry{Key: k.key("old"), Value: []byte("bob@example.org")},
		tokenizer.Entry{Key: k.key("new-2"), Value: []byte("n2")},
	)
	if want := []bool{true, false, true}; !slices.Equal(got, want) {
		t.Errorf("PutNew stored = %v; want %v", got, want)
	}
	wantValue(t, s, k.key("old"), []byte("anne@example.org"))
	wantValue(t, s, k.key("new-1"), []byte("n1"))
	wantValue(t, s, k.key("new-2"), []byte("n2"))

	// Again: now nothing is new.
	got = putNew(t, s,
		tokenizer.Entry{Key: k.key("new-1"), Value: []byte("other")},
		tokenizer.Entry{Key: k.key("new-2"), Value: []byte("other")},
	)
	if want := []bool{false, false}; !slices.Equal(got, want) {
		t.Errorf("second PutNew stored = %v; want %v", got, want)
	}
	wantValue(t, s, k.key("new-1"), []byte("n1"))

	// A deleted key is absent again.
	del(t, s, k.key("old"))
	if got := putNew(t, s, tokenizer.Entry{Key: k.key("old"), Value: []byte("again")}); !got[0] {
		t.Error("PutNew after Delete did not store")
	}
	wantValue(t, s, k.key("old"), []byte("again"))
}

// --- Swap ---

func swap(t testing.TB, s tokenizer.Store, old []byte, e tokenizer.Entry) bool {
	t.Helper()
	ok, err := s.Swap(context.Background(), old, e)
	if err != nil {
		t.Fatalf("Swap: %v", err)
	}
	return ok
}

func testSwap(t *testing.T, s tokenizer.Store, k keys) {
	put(t, s, tokenizer.Entry{Key: k.key("a"), Value: []byte("v1")})
	if swap(t, s, []byte("other"), tokenizer.Entry{Key: k.key("a"), Value: []byte("v2")}) {
		t.Error("Swap replaced a value that was not the one expected")
	}
	wantValue(t, s, k.key("a"), []byte("v1"))
	if !swap(t, s, []byte("v1"), tokenizer.Entry{Key: k.key("a"), Value: []byte("v2")}) {
		t.Error("Swap did not replace the value expected")
	}
	wantValue(t, s, k.key("a"), []byte("v2"))
	// The old value is gone: swapping from it again fails.
	if swap(t, s, []byte("v1"), tokenizer.Entry{Key: k.key("a"), Value: []byte("v3")}) {
		t.Error("Swap replaced a value twice from the same old value")
	}
	// Byte-exact: a prefix, or the value with a trailing zero, is not it.
	if swap(t, s, []byte("v"), tokenizer.Entry{Key: k.key("a"), Value: []byte("v4")}) ||
		swap(t, s, []byte("v2\x00"), tokenizer.Entry{Key: k.key("a"), Value: []byte("v4")}) {
		t.Error("Swap matched a value that is not byte-for-byte the one stored")
	}
	// An absent key is never created, whatever old says.
	for _, old := range [][]byte{nil, {}, []byte("v1")} {
		if swap(t, s, old, tokenizer.Entry{Key: k.key("absent"), Value: []byte("v")}) {
			t.Errorf("Swap from %q reported storing an absent key", old)
		}
	}
	wantAbsent(t, s, k.key("absent"))
	// Binary values compare exactly.
	bin := []byte{0, 0xff, 0x80, 0}
	put(t, s, tokenizer.Entry{Key: k.key("b"), Value: bin})
	if !swap(t, s, bin, tokenizer.Entry{Key: k.key("b"), Value: []byte{1}}) {
		t.Error("Swap of a binary value failed")
	}
	wantValue(t, s, k.key("b"), []byte{1})
}

func testConcurrentSwap(t *testing.T, s tokenizer.Store, k keys) {
	const n = 16
	put(t, s, tokenizer.Entry{Key: k.key("a"), Value: []byte("start")})
	won := make([]bool, n)
	errs := parallel(n, func(i int) error {
		ok, err := s.Swap(context.Background(), []byte("start"), tokenizer.Entry{Key: k.key("a"), Value: []byte(fmt.Sprint("w", i))})
		won[i] = ok
		return err
	})
	winners := 0
	for i := range n {
		if errs[i] != nil {
			t.Fatalf("Swap %d: %v", i, errs[i])
		}
		if won[i] {
			winners++
			wantValue(t, s, k.key("a"), []byte(fmt.Sprint("w", i)))
		}
	}
	if winners != 1 {
		t.Fatalf("%d concurrent Swaps from one value won; want exactly 1", winners)
	}
}

func testSwapTTL(t *testing.T, s tokenizer.Store, k keys) {
	put(t, s, tokenizer.Entry{Key: k.key("a"), Value: []byte("v1")})
	swap(t, s, []byte("v1"), tokenizer.Entry{Key: k.key("a"), Value: []byte("v2"), TTL: shortTTL})
	put(t, s, tokenizer.Entry{Key: k.key("b"), Value: []byte("v1"), TTL: shortTTL})
	swap(t, s, []byte("v1"), tokenizer.Entry{Key: k.key("b"), Value: []byte("v2")})
	eventually(t, "a swapped key with a TTL expires", func() bool { return get1(t, s, k.key("a")) == nil })
	wantValue(t, s, k.key("b"), []byte("v2"))
}

// --- Write ---

func write(t testing.TB, s tokenizer.Store, w tokenizer.Write) {
	t.Helper()
	if err := s.Write(context.Background(), w); err != nil {
		t.Fatalf("Write: %v", err)
	}
}

func testWriteCreate(t *testing.T, s tokenizer.Store, k keys) {
	put(t, s, tokenizer.Entry{Key: k.key("old"), Value: []byte("first")})
	write(t, s, tokenizer.Write{Create: []tokenizer.Entry{
		{Key: k.key("new"), Value: []byte("n")},
		{Key: k.key("old"), Value: []byte("second")},
		{Key: k.key("twice"), Value: []byte("t1")},
		{Key: k.key("twice"), Value: []byte("t2")},
	}})
	wantValue(t, s, k.key("new"), []byte("n"))
	wantValue(t, s, k.key("old"), []byte("first"))
	wantValue(t, s, k.key("twice"), []byte("t1")) // the first in the batch wins
	// An empty Write is fine.
	write(t, s, tokenizer.Write{})
}

func testWriteKeep(t *testing.T, s tokenizer.Store, k keys) {
	put(t, s, tokenizer.Entry{Key: k.key("old"), Value: []byte("first")})
	write(t, s, tokenizer.Write{Keep: []tokenizer.Entry{
		{Key: k.key("old"), Value: []byte("second"), TTL: longTTL},
		{Key: k.key("new"), Value: []byte("n"), TTL: longTTL},
	}})
	wantValue(t, s, k.key("old"), []byte("first"))
	wantValue(t, s, k.key("new"), []byte("n"))
}

func testWriteSets(t *testing.T, s tokenizer.Store, k keys) {
	addToSet(t, s, k.key("s1"), longTTL, "m0")
	write(t, s, tokenizer.Write{
		Create: []tokenizer.Entry{{Key: k.key("r"), Value: []byte("v")}},
		Sets: []tokenizer.SetAdd{
			{Key: k.key("s1"), Members: []string{"m1", "m2"}, TTL: longTTL},
			{Key: k.key("s2"), Members: []string{"m3"}, TTL: 0},
			{Key: k.key("s3"), Members: nil, TTL: longTTL},
		},
	})
	wantMembers(t, s, k.key("s1"), "m0", "m1", "m2")
	wantMembers(t, s, k.key("s2"), "m3")
	wantMembers(t, s, k.key("s3"))
	wantValue(t, s, k.key("r"), []byte("v"))
	// Sets written by Write read like those of AddToSet, and take more.
	addToSet(t, s, k.key("s2"), 0, "m4")
	wantMembers(t, s, k.key("s2"), "m3", "m4")
	if n := del(t, s, k.key("s1"), k.key("s2"), k.key("s3")); n != 2 {
		t.Errorf("Delete of two sets and an empty one counted %d", n)
	}
}

func testWriteLarge(t *testing.T, s tokenizer.Store, k keys) {
	const n = 3000
	var w tokenizer.Write
	var names []string
	for i := range n {
		e := tokenizer.Entry{Key: k.n("r", i), Value: []byte(fmt.Sprint("v", i)), TTL: longTTL}
		names = append(names, e.Key)
		if i%2 == 0 {
			w.Create = append(w.Create, e)
		} else {
			w.Keep = append(w.Keep, e)
		}
		if i%4 == 0 {
			w.Sets = append(w.Sets, tokenizer.SetAdd{Key: k.n("s", i/40), Members: []string{e.Key}, TTL: longTTL})
		}
	}
	write(t, s, w)
	got := get(t, s, names...)
	for i, v := range got {
		if string(v) != fmt.Sprint("v", i) {
			t.Fatalf("record %d reads %s after a large Write", i, show(v))
		}
	}
	if m := members(t, s, k.n("s", 0)); len(m) != 10 {
		t.Fatalf("set 0 has %d members, want 10", len(m))
	}
}

// scriptFlusher is a Store that can drop its server's cached scripts, as a
// restarted Redis has none.
type scriptFlusher interface {
	FlushScripts(ctx context.Context) error
}

func testWriteAfterScriptFlush(t *testing.T, s tokenizer.Store, k keys) {
	f, ok := s.(scriptFlusher)
	if !ok {
		t.Skip("the store has no script cache")
	}
	write(t, s, tokenizer.Write{Sets: []tokenizer.SetAdd{{Key: k.key("s"), Members: []string{"m1"}, TTL: longTTL}}})
	if err := f.FlushScripts(context.Background()); err != nil {
		t.Fatal(err)
	}
	write(t, s, tokenizer.Write{
		Create: []tokenizer.Entry{{Key: k.key("r"), Value: []byte("v")}},
		Sets:   []tokenizer.SetAdd{{Key: k.key("s"), Members: []string{"m2"}, TTL: longTTL}, {Key: k.key("t"), Members: []string{"m3"}, TTL: 0}},
	})
	wantMembers(t, s, k.key("s"), "m1", "m2")
	wantMembers(t, s, k.key("t"), "m3")
	wantValue(t, s, k.key("r"), []byte("v"))
}

func testWriteCreateKeepsTTL(t *testing.T, s tokenizer.Store, k keys) {
	// A Create that finds the key leaves its lifetime as it was.
	put(t, s, tokenizer.Entry{Key: k.key("a"), Value: []byte("v"), TTL: shortTTL})
	write(t, s, tokenizer.Write{Create: []tokenizer.Entry{{Key: k.key("a"), Value: []byte("other"), TTL: longTTL}}})
	put(t, s, tokenizer.Entry{Key: k.key("b"), Value: []byte("v")})
	write(t, s, tokenizer.Write{Create: []tokenizer.Entry{{Key: k.key("b"), Value: []byte("other"), TTL: shortTTL / 3}}})
	write(t, s, tokenizer.Write{Create: []tokenizer.Entry{{Key: k.key("c"), Value: []byte("v"), TTL: shortTTL}}})
	eventually(t, "the created keys keep their TTL", func() bool {
		return get1(t, s, k.key("a")) == nil && get1(t, s, k.key("c")) == nil
	})
	wantValue(t, s, k.key("b"), []byte("v"))
}

func testWriteKeepExtends(t *testing.T, s tokenizer.Store, k keys) {
	put(t, s, tokenizer.Entry{Key: k.key("a"), Value: []byte("v"), TTL: shortTTL})
	write(t, s, tokenizer.Write{Keep: []tokenizer.Entry{{Key: k.key("a"), Value: []byte("other"), TTL: longTTL}}})
	write(t, s, tokenizer.Write{Keep: []tokenizer.Entry{{Key: k.key("b"), Value: []byte("v"), TTL: shortTTL}}})
	time.Sleep(shortTTL + 100*time.Millisecond)
	wantValue(t, s, k.key("a"), []byte("v"))
	// A kept key created by the Write has the entry's TTL.
	eventually(t, "a key Keep created expires", func() bool { return get1(t, s, k.key("b")) == nil })
}

func testWriteKeepNeverShortens(t *testing.T, s tokenizer.Store, k keys) {
	put(t, s, tokenizer.Entry{Key: k.key("a"), Value: []byte("v"), TTL: longTTL})
	put(t, s, tokenizer.Entry{Key: k.key("b"), Value: []byte("v")})
	write(t, s, tokenizer.Write{Keep: []tokenizer.Entry{
		{Key: k.key("a"), Value: []byte("other"), TTL: shortTTL / 3},
		{Key: k.key("b"), Value: []byte("other"), TTL: shortTTL / 3},
	}})
	time.Sleep(shortTTL + 100*time.Millisecond)
	wantValue(t, s, k.key("a"), []byte("v"))
	wantValue(t, s, k.key("b"), []byte("v"))
}

func testWriteKeepPermanent(t *testing.T, s tokenizer.Store, k keys) {
	put(t, s, tokenizer.Entry{Key: k.key("a"), Value: []byte("v"), TTL: shortTTL})
	write(t, s, tokenizer.Write{Keep: []tokenizer.Entry{{Key: k.key("a"), Value: []byte("other")}}})
	time.Sleep(shortTTL + 100*time.Millisecond)
	wantValue(t, s, k.key("a"), []byte("v"))
}

func testWriteSetTTL(t *testing.T, s tokenizer.Store, k keys) {
	write(t, s, tokenizer.Write{Sets: []tokenizer.SetAdd{
		{Key: k.key("short"), Members: []string{"m"}, TTL: shortTTL},
		{Key: k.key("ext"), Members: []string{"m1"}, TTL: shortTTL},
	}})
	write(t, s, tokenizer.Write{Sets: []tokenizer.SetAdd{{Key: k.key("ext"), Members: []string{"m2"}, TTL: longTTL}}})
	eventually(t, "a set Write gave a TTL expires", func() bool { return len(members(t, s, k.key("short"))) == 0 })
	wantMembers(t, s, k.key("ext"), "m1", "m2")
}

// testWriteManySetsLifetimes applies every lifetime rule to sets of one
// Write at once, which a store may send together: a new set gets its TTL
// (or none), an existing one is only ever extended, a permanent one stays
// permanent and a zero TTL makes one permanent.
func testWriteManySetsLifetimes(t *testing.T, s tokenizer.Store, k keys) {
	// The sets that exist before the Write live long enough that a slow
	// machine still writes before they run out.
	const before = 3 * shortTTL
	start := time.Now()
	addToSet(t, s, k.key("extend"), before, "m")
	addToSet(t, s, k.key("permanent"), 0, "m")
	addToSet(t, s, k.key("long"), longTTL, "m")
	addToSet(t, s, k.key("persist"), before, "m")
	sets := []tokenizer.SetAdd{
		{Key: k.key("extend"), Members: []string{"n"}, TTL: longTTL},
		{Key: k.key("permanent"), Members: []string{"n"}, TTL: shortTTL / 3},
		{Key: k.key("long"), Members: []string{"n"}, TTL: shortTTL / 3},
		{Key: k.key("persist"), Members: nil, TTL: 0},
		{Key: k.key("new-short"), Members: []string{"n"}, TTL: shortTTL},
		{Key: k.key("new-permanent"), Members: []string{"n"}, TTL: 0},
		{Key: k.key("new-empty"), Members: nil, TTL: longTTL},
	}
	// Many more sets than one script call of a store may take.
	for i := range 300 {
		sets = append(sets, tokenizer.SetAdd{Key: k.n("bulk", i), Members: []string{"a", "b"}, TTL: longTTL})
	}
	write(t, s, tokenizer.Write{Sets: sets})
	if time.Since(start) >= before {
		t.Fatalf("the sets made before the Write may have run out before it (%v)", time.Since(start))
	}
	eventually(t, "a new set given a short TTL expires", func() bool { return len(members(t, s, k.key("new-short"))) == 0 })
	time.Sleep(time.Until(start.Add(before + shortTTL/2))) // every lifetime set before the Write has run out
	wantMembers(t, s, k.key("extend"), "m", "n")
	wantMembers(t, s, k.key("permanent"), "m", "n")
	wantMembers(t, s, k.key("long"), "m", "n")
	wantMembers(t, s, k.key("persist"), "m")
	wantMembers(t, s, k.key("new-permanent"), "n")
	wantMembers(t, s, k.key("new-empty"))
	for i := range 300 {
		wantMembers(t, s, k.n("bulk", i), "a", "b")
	}
}

// --- PutExisting ---

func putExisting(t testing.TB, s tokenizer.Store, entries ...tokenizer.Entry) []bool {
	t.Helper()
	got, err := s.PutExisting(context.Background(), entries)
	if err != nil {
		t.Fatalf("PutExisting: %v", err)
	}
	if len(got) != len(entries) {
		t.Fatalf("PutExisting returned %d results for %d entries", len(got), len(entries))
	}
	return got
}

func testPutExisting(t *testing.T, s tokenizer.Store, k keys) {
	put(t, s, tokenizer.Entry{Key: k.key("old"), Value: []byte("v1"), TTL: longTTL})
	got := putExisting(t, s,
		tokenizer.Entry{Key: k.key("absent"), Value: []byte("x")},
		tokenizer.Entry{Key: k.key("old"), Value: []byte("v2")},
	)
	if want := []bool{false, true}; !slices.Equal(got, want) {
		t.Errorf("PutExisting stored = %v; want %v", got, want)
	}
	wantAbsent(t, s, k.key("absent"))
	wantValue(t, s, k.key("old"), []byte("v2"))

	// A deleted key stays deleted: this is what makes a read-modify-write
	// safe against a concurrent Delete.
	del(t, s, k.key("old"))
	if got := putExisting(t, s, tokenizer.Entry{Key: k.key("old"), Value: []byte("v3")}); got[0] {
		t.Error("PutExisting after Delete reported stored")
	}
	wantAbsent(t, s, k.key("old"))
}

func testPutExistingOverExpired(t *testing.T, s tokenizer.Store, k keys) {
	put(t, s, tokenizer.Entry{Key: k.key("a"), Value: []byte("v1"), TTL: shortTTL})
	// No Get while waiting: an expired key a store has not purged yet
	// must count as absent too.
	time.Sleep(shortTTL + shortTTL/2)
	if got := putExisting(t, s, tokenizer.Entry{Key: k.key("a"), Value: []byte("v2")}); got[0] {
		t.Error("PutExisting stored over an expired key")
	}
	wantAbsent(t, s, k.key("a"))
}

func testPutNewDuplicates(t *testing.T, s tokenizer.Store, k keys) {
	// Entries apply in order: the first of two for one key wins.
	got := putNew(t, s,
		tokenizer.Entry{Key: k.key("a"), Value: []byte("first")},
		tokenizer.Entry{Key: k.key("a"), Value: []byte("second")},
	)
	if want := []bool{true, false}; !slices.Equal(got, want) {
		t.Errorf("PutNew stored = %v; want %v", got, want)
	}
	wantValue(t, s, k.key("a"), []byte("first"))
}

// --- Delete ---

func testDelete(t *testing.T, s tokenizer.Store, k keys) {
	put(t, s,
		tokenizer.Entry{Key: k.key("a"), Value: []byte("1")},
		tokenizer.Entry{Key: k.key("b"), Value: []byte("2")},
		tokenizer.Entry{Key: k.key("c"), Value: []byte("3")},
	)
	tests := []struct {
		name string
		keys []string
		want int
	}{
		{"two present, one absent", []string{k.key("a"), k.key("absent"), k.key("b")}, 2},
		{"already deleted", []string{k.key("a"), k.key("b")}, 0},
		{"same key twice counts once", []string{k.key("c"), k.key("c")}, 1},
		{"absent only", []string{k.key("x")}, 0},
	}
	for _, tc := range tests {
		if got := del(t, s, tc.keys...); got != tc.want {
			t.Errorf("%s: Delete = %d; want %d", tc.name, got, tc.want)
		}
	}
	for _, name := range []string{"a", "b", "c"} {
		wantAbsent(t, s, k.key(name))
	}
}

func testDeleteRemovesSets(t *testing.T, s tokenizer.Store, k keys) {
	addToSet(t, s, k.key("set"), 0, "r1", "r2")
	put(t, s, tokenizer.Entry{Key: k.key("rec"), Value: []byte("v")})
	if got := del(t, s, k.key("set"), k.key("rec"), k.key("absent")); got != 2 {
		t.Errorf("Delete of a set, a record and an absent key = %d; want 2", got)
	}
	wantMembers(t, s, k.key("set"))
	wantAbsent(t, s, k.key("rec"))
	// A deleted set starts afresh.
	addToSet(t, s, k.key("set"), 0, "r3")
	wantMembers(t, s, k.key("set"), "r3")
}

// --- sets ---

func testSets(t *testing.T, s tokenizer.Store, k keys) {
	set := k.key("subject")
	wantMembers(t, s, set) // absent: none

	addToSet(t, s, set, 0, "jeton:r:t1:AAA", "jeton:r:t1:BBB", "jeton:r:t1:AAA")
	wantMembers(t, s, set, "jeton:r:t1:AAA", "jeton:r:t1:BBB")

	addToSet(t, s, set, 0, "jeton:r:t1:BBB", "jeton:r:t1:CCC")
	wantMembers(t, s, set, "jeton:r:t1:AAA", "jeton:r:t1:BBB", "jeton:r:t1:CCC")

	// Members are byte strings too.
	addToSet(t, s, k.key("odd"), 0, "", "a\x00b", "ü", "a\x00b")
	wantMembers(t, s, k.key("odd"), "", "a\x00b", "ü")

	// Sets are separate from each other.
	wantMembers(t, s, k.key("other"))
}

func testAddToSetNoMembers(t *testing.T, s tokenizer.Store, k keys) {
	// Adding nothing to an absent set creates nothing: Delete finds no key.
	addToSet(t, s, k.key("empty"), 0)
	addToSet(t, s, k.key("empty-ttl"), longTTL)
	wantMembers(t, s, k.key("empty"))
	if got := del(t, s, k.key("empty"), k.key("empty-ttl")); got != 0 {
		t.Errorf("Delete of sets given no members = %d; want 0", got)
	}
	// Adding nothing to a present set keeps its members.
	addToSet(t, s, k.key("set"), 0, "m1")
	addToSet(t, s, k.key("set"), longTTL)
	wantMembers(t, s, k.key("set"), "m1")
}

func testLargeSet(t *testing.T, s tokenizer.Store, k keys) {
	const n = 20_000
	ms := make([]string, n)
	for i := range ms {
		ms[i] = fmt.Sprintf("jeton:r:t1:%06d", i)
	}
	addToSet(t, s, k.key("big"), longTTL, ms...)
	if got := members(t, s, k.key("big")); !slices.Equal(got, ms) {
		t.Errorf("SetMembers of a %d-member set returned %d members", n, len(got))
	}
}

// --- contexts ---

// contextCases calls every method with ctx; each must fail with an error
// that wraps the context's error.
func contextCases(t *testing.T, s tokenizer.Store, k keys, ctx context.Context, want error) {
	t.Helper()
	calls := []struct {
		name string
		call func() error
	}{
		{"Put", func() error {
			return s.Put(ctx, []tokenizer.Entry{{Key: k.key("a"), Value: []byte("v")}})
		}},
		{"PutNew", func() error {
			_, err := s.PutNew(ctx, []tokenizer.Entry{{Key: k.key("b"), Value: []byte("v")}})
			return err
		}},
		{"Get", func() error { _, err := s.Get(ctx, []string{k.key("a")}); return err }},
		{"Delete", func() error { _, err := s.Delete(ctx, []string{k.key("a")}); return err }},
		{"AddToSet", func() error { return s.AddToSet(ctx, k.key("s"), []string{"m"}, 0) }},
		{"SetMembers", func() error { _, err := s.SetMembers(ctx, k.key("s")); return err }},
		{"Scan", func() error { return s.Scan(ctx, k.key(""), func([]string) error { return nil }) }},
		{"Swap", func() error {
			_, err := s.Swap(ctx, []byte("v"), tokenizer.Entry{Key: k.key("a"), Value: []byte("w")})
			return err
		}},
		{"Write", func() error {
			return s.Write(ctx, tokenizer.Write{Create: []tokenizer.Entry{{Key: k.key("w"), Value: []byte("v")}}})
		}},
	}
	for _, c := range calls {
		if err := c.call(); !errors.Is(err, want) {
			t.Errorf("%s = %v; want an error wrapping %v", c.name, err, want)
		}
	}
}

func testCanceledContext(t *testing.T, s tokenizer.Store, k keys) {
	ctx, cancel := context.WithCancel(context.Background())
	cancel()
	contextCases(t, s, k, ctx, context.Canceled)
}

func testExpiredContext(t *testing.T, s tokenizer.Store, k keys) {
	ctx, cancel := context.WithDeadline(context.Background(), time.Now().Add(-time.Second))
	defer cancel()
	contextCases(t, s, k, ctx, context.DeadlineExceeded)
}

// --- concurrency ---

// parallel runs f(i) for i in [0, n) on n goroutines and returns the errors.
func parallel(n int, f func(i int) error) []error {
	errs := make([]error, n)
	var wg sync.WaitGroup
	for i := range n {
		wg.Go(func() { errs[i] = f(i) })
	}
	wg.Wait()
	return errs
}

func testConcurrentPutGet(t *testing.T, s tokenizer.Store, k keys) {
	const workers, rounds = 16, 50
	ctx := context.Background()
	errs := parallel(workers, func(w int) error {
		for r := range rounds {
			key := k.n(fmt.Sprintf("w%d", w), r%5)
			want := fmt.Appendf(nil, "w%d-r%d", w, r)
			if err := s.Put(ctx, []tokenizer.Entry{{Key: key, Value: want}, {Key: k.key("shared"), Value: want}}); err != nil {
				return err
			}
			got, err := s.Get(ctx, []string{key, k.key("shared")})
			if err != nil {
				return err
			}
			if !bytes.Equal(got[0], want) {
				return fmt.Errorf("Get(%s) = %s; want %s", key, show(got[0]), show(want))
			}
			// Others write the shared key too: any worker's value will do,
			// but never a torn or missing one.
			if !bytes.HasPrefix(got[1], []byte("w")) || !bytes.Contains(got[1], []byte("-r")) {
				return fmt.Errorf("Get(shared) = %s; want some worker's value", show(got[1]))
			}
		}
		return nil
	})
	for _, err := range errs {
		if err != nil {
			t.Error(err)
		}
	}
}

func testConcurrentPutNew(t *testing.T, s tokenizer.Store, k keys) {
	const workers = 32
	ctx := context.Background()
	won := make([]bool, workers)
	errs := parallel(workers, func(w int) error {
		stored, err := s.PutNew(ctx, []tokenizer.Entry{{Key: k.key("contended"), Value: fmt.Appendf(nil, "w%d", w)}})
		if err == nil {
			won[w] = stored[0]
		}
		return err
	})
	winners := 0
	winner := -1
	for w := range workers {
		if errs[w] != nil {
			t.Errorf("PutNew on worker %d: %v", w, errs[w])
		}
		if won[w] {
			winners++
			winner = w
		}
	}
	if winners != 1 {
		t.Fatalf("%d of %d concurrent PutNew calls on one key stored; want exactly 1", winners, workers)
	}
	wantValue(t, s, k.key("contended"), fmt.Appendf(nil, "w%d", winner))
}

func testConcurrentAddToSet(t *testing.T, s tokenizer.Store, k keys) {
	const workers = 32
	ctx := context.Background()
	var want []string
	for w := range workers {
		want = append(want, fmt.Sprintf("m%02d-a", w), fmt.Sprintf("m%02d-b", w))
	}
	errs := parallel(workers, func(w int) error {
		return s.AddToSet(ctx, k.key("set"), []string{fmt.Sprintf("m%02d-a", w), fmt.Sprintf("m%02d-b", w)}, longTTL)
	})
	for _, err := range errs {
		if err != nil {
			t.Error(err)
		}
	}
	wantMembers(t, s, k.key("set"), want...)
}

func testConcurrentDelete(t *testing.T, s tokenizer.Store, k keys) {
	const workers = 32
	put(t, s, tokenizer.Entry{Key: k.key("a"), Value: []byte("v")})
	ctx := context.Background()
	counts := make([]int, workers)
	errs := parallel(workers, func(w int) error {
		n, err := s.Delete(ctx, []string{k.key("a")})
		counts[w] = n
		return err
	})
	total := 0
	for w := range workers {
		if errs[w] != nil {
			t.Error(errs[w])
		}
		total += counts[w]
	}
	if total != 1 {
		t.Errorf("concurrent Deletes of one key counted %d in all; want 1", total)
	}
}

// --- lifetimes ---

func testPutTTLExpires(t *testing.T, s tokenizer.Store, k keys) {
	put(t, s,
		tokenizer.Entry{Key: k.key("short"), Value: []byte("v"), TTL: shortTTL},
		tokenizer.Entry{Key: k.key("unread"), Value: []byte("v"), TTL: shortTTL},
		tokenizer.Entry{Key: k.key("long"), Value: []byte("v"), TTL: longTTL},
		tokenizer.Entry{Key: k.key("forever"), Value: []byte("v")},
	)
	wantValue(t, s, k.key("short"), []byte("v"))
	eventually(t, "the key put with a TTL expires", func() bool { return get1(t, s, k.key("short")) == nil })
	wantValue(t, s, k.key("long"), []byte("v"))
	wantValue(t, s, k.key("forever"), []byte("v"))
	// An expired key does not exist: Delete does not count it, even when
	// no Get has noticed the expiry first.
	if got := del(t, s, k.key("short"), k.key("unread")); got != 0 {
		t.Errorf("Delete of expired keys = %d; want 0", got)
	}
}

func testPutClearsTTL(t *testing.T, s tokenizer.Store, k keys) {
	put(t, s, tokenizer.Entry{Key: k.key("a"), Value: []byte("v1"), TTL: shortTTL})
	put(t, s, tokenizer.Entry{Key: k.key("a"), Value: []byte("v2")})
	time.Sleep(shortTTL + 100*time.Millisecond)
	wantValue(t, s, k.key("a"), []byte("v2"))
}

func testPutNewOverExpired(t *testing.T, s tokenizer.Store, k keys) {
	if got := putNew(t, s, tokenizer.Entry{Key: k.key("a"), Value: []byte("v1"), TTL: shortTTL}); !got[0] {
		t.Fatal("PutNew of an absent key did not store")
	}
	if got := putNew(t, s, tokenizer.Entry{Key: k.key("a"), Value: []byte("v2")}); got[0] {
		t.Fatal("PutNew stored over a live key")
	}
	// Waited out without a Get, so no read can have removed the key first.
	time.Sleep(shortTTL + 100*time.Millisecond)
	if got := putNew(t, s, tokenizer.Entry{Key: k.key("a"), Value: []byte("v3")}); !got[0] {
		t.Fatal("PutNew over an expired key did not store")
	}
	wantValue(t, s, k.key("a"), []byte("v3"))
}

func testPutNewKeepsTTL(t *testing.T, s tokenizer.Store, k keys) {
	// A PutNew that does not store must not touch the existing lifetime.
	put(t, s, tokenizer.Entry{Key: k.key("a"), Value: []byte("v"), TTL: shortTTL})
	putNew(t, s, tokenizer.Entry{Key: k.key("a"), Value: []byte("other"), TTL: longTTL})
	put(t, s, tokenizer.Entry{Key: k.key("b"), Value: []byte("v")})
	putNew(t, s, tokenizer.Entry{Key: k.key("b"), Value: []byte("other"), TTL: shortTTL / 3})
	eventually(t, "the key keeps its TTL", func() bool { return get1(t, s, k.key("a")) == nil })
	wantValue(t, s, k.key("b"), []byte("v"))
}

func testSetTTLExpires(t *testing.T, s tokenizer.Store, k keys) {
	addToSet(t, s, k.key("set"), shortTTL, "m")
	wantMembers(t, s, k.key("set"), "m")
	eventually(t, "the set given a TTL expires", func() bool { return len(members(t, s, k.key("set"))) == 0 })
	// An expired set starts afresh, without its old members.
	addToSet(t, s, k.key("set"), longTTL, "n")
	wantMembers(t, s, k.key("set"), "n")
}

func testSetTTLExtends(t *testing.T, s tokenizer.Store, k keys) {
	addToSet(t, s, k.key("set"), shortTTL, "m1")
	addToSet(t, s, k.key("set"), longTTL, "m2")
	time.Sleep(shortTTL + 100*time.Millisecond)
	wantMembers(t, s, k.key("set"), "m1", "m2")
}

func testSetTTLNeverShortens(t *testing.T, s tokenizer.Store, k keys) {
	addToSet(t, s, k.key("set"), longTTL, "m1")
	addToSet(t, s, k.key("set"), shortTTL/3, "m2")
	time.Sleep(shortTTL + 100*time.Millisecond)
	wantMembers(t, s, k.key("set"), "m1", "m2")
}

func testPermanentSetStays(t *testing.T, s tokenizer.Store, k keys) {
	addToSet(t, s, k.key("set"), 0, "m1")
	addToSet(t, s, k.key("set"), shortTTL/3, "m2")
	time.Sleep(shortTTL + 100*time.Millisecond)
	wantMembers(t, s, k.key("set"), "m1", "m2")
}

func testZeroTTLMakesSetPermanent(t *testing.T, s tokenizer.Store, k keys) {
	addToSet(t, s, k.key("set"), shortTTL, "m1")
	addToSet(t, s, k.key("set"), 0, "m2")
	time.Sleep(shortTTL + 100*time.Millisecond)
	wantMembers(t, s, k.key("set"), "m1", "m2")
}

// --- Scan ---

// scan returns every key Scan reports under prefix, once each, sorted.
func scan(t testing.TB, s tokenizer.Store, prefix string) []string {
	t.Helper()
	seen := map[string]bool{}
	err := s.Scan(context.Background(), prefix, func(ks []string) error {
		if len(ks) == 0 {
			t.Error("Scan called fn with an empty batch")
		}
		for _, k := range ks {
			seen[k] = true
		}
		return nil
	})
	if err != nil {
		t.Fatalf("Scan(%s): %v", prefix, err)
	}
	out := make([]string, 0, len(seen))
	for k := range seen {
		out = append(out, k)
	}
	slices.Sort(out)
	return out
}

func wantScan(t testing.TB, s tokenizer.Store, prefix string, want ...string) {
	t.Helper()
	want = slices.Clone(want)
	slices.Sort(want)
	if got := scan(t, s, prefix); !slices.Equal(got, want) {
		t.Errorf("Scan(%s) = %q; want %q", prefix, got, want)
	}
}

// testScanPrefix checks that a tenant's prefix matches its own plain keys
// and sets and nothing of a tenant whose name extends it.
func testScanPrefix(t *testing.T, s tokenizer.Store, k keys) {
	put(t, s,
		tokenizer.Entry{Key: k.key("r:acme:1"), Value: []byte("1")},
		tokenizer.Entry{Key: k.key("r:acme:2"), Value: []byte("2"), TTL: longTTL},
		tokenizer.Entry{Key: k.key("r:acme-2:1"), Value: []byte("3")},
		tokenizer.Entry{Key: k.key("r:acm:1"), Value: []byte("4")},
		tokenizer.Entry{Key: k.key("s:acme:1"), Value: []byte("5")},
	)
	addToSet(t, s, k.key("r:acme:set"), 0, "m1", "m2")
	addToSet(t, s, k.key("r:acme-2:set"), 0, "m1")

	wantScan(t, s, k.key("r:acme:"), k.key("r:acme:1"), k.key("r:acme:2"), k.key("r:acme:set"))
	wantScan(t, s, k.key("r:acme-2:"), k.key("r:acme-2:1"), k.key("r:acme-2:set"))
	wantScan(t, s, k.key("r:nobody:"))
	wantScan(t, s, k.key(""), k.key("r:acme:1"), k.key("r:acme:2"), k.key("r:acme-2:1"),
		k.key("r:acm:1"), k.key("s:acme:1"), k.key("r:acme:set"), k.key("r:acme-2:set"))
}

// testScanLiteral checks that glob characters in a prefix match only
// themselves.
func testScanLiteral(t *testing.T, s tokenizer.Store, k keys) {
	names := []string{"a*", "ab", "a?", "ac", "[ab]", "a", "b", `a\b`, `a\\b`, "a^b", "a-b"}
	for _, n := range names {
		put(t, s, tokenizer.Entry{Key: k.key(n + ":x"), Value: []byte("v")})
	}
	for _, n := range names {
		wantScan(t, s, k.key(n+":"), k.key(n+":x"))
	}
}

// testScanMany checks that every key arrives across several batches.
func testScanMany(t *testing.T, s tokenizer.Store, k keys) {
	const n = 2500
	entries := make([]tokenizer.Entry, n)
	want := make([]string, n)
	for i := range entries {
		want[i] = k.n("many", i)
		entries[i] = tokenizer.Entry{Key: want[i], Value: []byte("v")}
	}
	put(t, s, entries...)
	batches := 0
	err := s.Scan(context.Background(), k.key("many:"), func([]string) error { batches++; return nil })
	if err != nil {
		t.Fatalf("Scan: %v", err)
	}
	if batches < 2 {
		t.Errorf("Scan of %d keys made %d batch; want several, so that no batch holds a whole keyspace", n, batches)
	}
	wantScan(t, s, k.key("many:"), want...)
}

func testScanError(t *testing.T, s tokenizer.Store, k keys) {
	for i := range 3 {
		put(t, s, tokenizer.Entry{Key: k.n("e", i), Value: []byte("v")})
	}
	stop := errors.New("storetest: stop")
	calls := 0
	err := s.Scan(context.Background(), k.key(""), func([]string) error { calls++; return stop })
	if !errors.Is(err, stop) || calls != 1 {
		t.Errorf("Scan with a failing fn = %v after %d calls; want fn's error after 1", err, calls)
	}
}

// testScanDelete deletes every batch as it comes, as a tenant purge does.
func testScanDelete(t *testing.T, s tokenizer.Store, k keys) {
	const n = 1500
	entries := make([]tokenizer.Entry, n)
	for i := range entries {
		entries[i] = tokenizer.Entry{Key: k.n("d", i), Value: []byte("v")}
	}
	put(t, s, entries...)
	addToSet(t, s, k.key("d:set"), 0, "m")
	deleted := 0
	err := s.Scan(context.Background(), k.key("d:"), func(ks []string) error {
		n, err := s.Delete(context.Background(), ks)
		deleted += n
		return err
	})
	if err != nil {
		t.Fatalf("Scan: %v", err)
	}
	if deleted != n+1 {
		t.Errorf("deleted %d keys while scanning; want %d", deleted, n+1)
	}
	wantScan(t, s, k.key("d:"))
}

func testScanSkipsExpired(t *testing.T, s tokenizer.Store, k keys) {
	put(t, s,
		tokenizer.Entry{Key: k.key("short"), Value: []byte("v"), TTL: shortTTL},
		tokenizer.Entry{Key: k.key("long"), Value: []byte("v"), TTL: longTTL},
	)
	addToSet(t, s, k.key("set"), shortTTL, "m")
	eventually(t, "expired keys leave the scan", func() bool {
		return slices.Equal(scan(t, s, k.key("")), []string{k.key("long")})
	})
}
