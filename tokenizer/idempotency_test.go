package tokenizer_test

import (
	"context"
	"errors"
	"slices"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/jeton-dev/jeton/tokenizer"
)

// A key used again with items that differ in any way (a value, a class, a
// subject, their order, their number) is refused, names no value, mints
// nothing, and leaves the first call's tokens to its own retries.
func TestIdempotencyKeyReused(t *testing.T) {
	items := []tokenizer.Item{
		{Class: "name", Value: "Reused Person", Subject: "subject-1"},
		{Class: "email", Value: "reused@example.org", Subject: "subject-1"},
		{Class: "text", Value: "reused fake note"},
	}
	change := func(f func(it []tokenizer.Item) []tokenizer.Item) []tokenizer.Item {
		return f(slices.Clone(items))
	}
	tests := []struct {
		name  string
		items []tokenizer.Item
	}{
		{"value", change(func(it []tokenizer.Item) []tokenizer.Item { it[2].Value = "another fake note"; return it })},
		{"value of a deterministic item", change(func(it []tokenizer.Item) []tokenizer.Item { it[1].Value = "other@example.org"; return it })},
		{"class", change(func(it []tokenizer.Item) []tokenizer.Item { it[2].Class = "address"; return it })},
		{"subject", change(func(it []tokenizer.Item) []tokenizer.Item { it[0].Subject = "subject-2"; return it })},
		{"subject added", change(func(it []tokenizer.Item) []tokenizer.Item { it[2].Subject = "subject-1"; return it })},
		{"order", change(func(it []tokenizer.Item) []tokenizer.Item { it[0], it[2] = it[2], it[0]; return it })},
		{"one item fewer", items[:2]},
		{"one item more", append(slices.Clone(items), tokenizer.Item{Class: "name", Value: "Extra Person"})},
		{"an invalid item added", append(slices.Clone(items), tokenizer.Item{Class: "no-such-class", Value: "x"})},
		// Length-prefixed fields: moving bytes from one field to the next
		// is another call.
		{"bytes moved between fields", change(func(it []tokenizer.Item) []tokenizer.Item {
			it[2].Value, it[2].Subject = "reused fake", " note"
			return it
		})},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			e := newEnv(t, withDeterministic("email"))
			first := tokenize(t, e.tz, "acme", items, "reused-key")
			m := e.store.mark()
			for _, tz := range []*tokenizer.Tokenizer{e.tz, e.newTokenizer(t)} {
				res, err := tz.Tokenize(context.Background(), "acme", tc.items, "reused-key")
				if !errors.Is(err, tokenizer.ErrIdempotencyKeyReused) || !tokenizer.IsUserError(err) || res != nil {
					t.Fatalf("Tokenize = %v, %v; want a UserError wrapping ErrIdempotencyKeyReused", res, err)
				}
				for _, it := range append(slices.Clone(items), tc.items...) {
					if strings.Contains(err.Error(), it.Value) || (it.Subject != "" && strings.Contains(err.Error(), it.Subject)) {
						t.Fatal("the refusal quotes an item")
					}
				}
			}
			if got := e.store.recordKeysSince(m); len(got) != 0 {
				t.Fatalf("the refused call wrote %d records", len(got))
			}
			// The first call's retries still get its tokens.
			if again := tokenize(t, e.tz, "acme", items, "reused-key"); !slices.Equal(again, first) {
				t.Fatal("a retry of the first call got other tokens after the refusal")
			}
			// The other items under a new key are served.
			tokenize(t, e.tz, "acme", tc.items[:min(len(tc.items), 3)], "fresh-key")
		})
	}
}

// A caller killed between its claim and the end of its writes, or whose
// completion never reached the store, leaves a claimed entry: the retry
// writes the missing records under the same tokens, and no item ever has
// two records.
func TestIdempotentRetryAfterInterruptedCall(t *testing.T) {
	const n = 700 // three chunks of records
	items := make([]tokenizer.Item, n)
	for i := range items {
		c := []string{"name", "email", "text"}[i%3]
		items[i] = tokenizer.Item{Class: c, Value: fakeValue(c, i), Subject: "fake-subject-" + string(rune('a'+i%7))}
	}
	for _, fail := range []string{"Swap", "Write"} {
		t.Run("failing "+fail, func(t *testing.T) {
			e := newEnv(t, withDeterministic("email"))
			tokenize(t, e.tz, "acme", []tokenizer.Item{{Class: "name", Value: "Fake Warm-up"}}, "") // create the tenant's keys
			// Let one chunk's Write through, fail the rest: a client gone
			// half way through its call.
			var writes atomic.Int32
			e.store.mu.Lock()
			e.store.beforeWrite = func() error {
				if fail == "Write" && writes.Add(1) > 1 {
					return errFakeDown
				}
				return nil
			}
			e.store.mu.Unlock()
			e.store.fail("Swap", fail == "Swap")
			if _, err := e.tz.Tokenize(context.Background(), "acme", items, "interrupted"); !errors.Is(err, tokenizer.ErrUnavailable) {
				t.Fatalf("the interrupted call: %v, want ErrUnavailable", err)
			}
			written := e.store.distinctRecordsSince(0)
			if written == 0 {
				t.Fatal("the interrupted call wrote no record: the test interrupts it too early")
			}
			e.store.mu.Lock()
			e.store.beforeWrite = nil
			e.store.mu.Unlock()
			e.store.fail("Swap", false)

			// The retry, on another replica, finishes the call.
			toks := tokenize(t, e.newTokenizer(t), "acme", items, "interrupted")
			if got := e.store.liveRecords(t); got != n+1 {
				t.Fatalf("%d live records after the retry, want one per item (%d) and the warm-up", got, n+1)
			}
			if got := e.store.distinctRecordsSince(0); got != n+1 {
				t.Fatalf("%d distinct records were ever written, want %d: the retry minted new tokens", got, n+1)
			}
			for i, r := range reveal(t, e.tz, toks...) {
				wantValue(t, r, items[i].Value)
			}
			// Completed now: another retry reads and writes no random record.
			m := e.store.mark()
			if again := tokenize(t, e.tz, "acme", items, "interrupted"); !slices.Equal(again, toks) {
				t.Fatal("a retry after completion got other tokens")
			}
			for _, k := range e.store.recordKeysSince(m) {
				if !slices.Contains(detNames(t, e, items), k) {
					t.Fatal("a retry after completion rewrote a random record")
				}
			}
			// And the subject index holds every record of its subject.
			n, err := e.tz.EraseSubject(context.Background(), "acme", "fake-subject-a")
			if err != nil || n != (len(items)+6)/7 {
				t.Fatalf("EraseSubject = %d, %v; want %d", n, err, (len(items)+6)/7)
			}
		})
	}
}

// detNames returns the record names of the deterministic items.
func detNames(t testing.TB, e *env, items []tokenizer.Item) []string {
	t.Helper()
	var out []string
	for _, it := range items {
		if c, _ := e.tz.Class(it.Class); c.Kind == tokenizer.KindDeterministic {
			tok := tokenize(t, e.tz, "acme", []tokenizer.Item{it}, "")[0]
			name, err := tokenizer.RecordKey(context.Background(), e.tz, tok)
			if err != nil {
				t.Fatal(err)
			}
			out = append(out, name)
		}
	}
	return out
}

// Two replicas retrying at once after a record of the call was erased
// agree on one fresh token for it, and leave one record.
func TestIdempotentConcurrentRetriesAfterErasure(t *testing.T) {
	e := newEnv(t)
	items := []tokenizer.Item{{Class: "name", Value: "Erased Person"}, {Class: "text", Value: "kept fake note"}}
	first := tokenize(t, e.tz, "acme", items, "erase-race")
	tok, _ := tokenizer.ParseToken(first[0])
	if n, err := e.tz.EraseTokens(context.Background(), []tokenizer.Token{tok}); err != nil || n != 1 {
		t.Fatalf("EraseTokens = %d, %v", n, err)
	}
	// Hold both retries just before their first Swap of the entry, so that
	// both have seen the erasure and minted a fresh token.
	const workers = 2
	var arrived atomic.Int32
	all := make(chan struct{})
	e.store.mu.Lock()
	e.store.beforeSwap = func() {
		if arrived.Add(1) == workers {
			close(all)
		}
		select {
		case <-all:
		case <-time.After(10 * time.Second):
		}
	}
	e.store.mu.Unlock()
	results := make([][]string, workers)
	var wg sync.WaitGroup
	for w := range workers {
		tz := e.newTokenizer(t)
		wg.Go(func() { results[w] = tokenize(t, tz, "acme", items, "erase-race") })
	}
	wg.Wait()
	if t.Failed() {
		t.FailNow()
	}
	if arrived.Load() < workers {
		t.Fatal("the retries never met at the entry")
	}
	if !slices.Equal(results[0], results[1]) {
		t.Fatal("two concurrent retries disagree on the reminted token")
	}
	if results[0][0] == first[0] || results[0][1] != first[1] {
		t.Fatal("the erased item kept its token, or the kept one changed")
	}
	wantValue(t, revealOne(t, e.tz, results[0][0]), "Erased Person")
	// One record for the erased item: the loser's fresh record, if it wrote
	// one, is gone.
	if got := e.store.liveRecords(t); got != 2 {
		t.Fatalf("%d live records, want 2", got)
	}
}

// Records are created, never replaced. A deterministic value tokenized
// again keeps the record of its first tokenization: its value as first
// sent, and a canary's flags, so a canary stays armed. Its retention runs
// from the latest tokenization.
func TestDeterministicFirstRecordWins(t *testing.T) {
	det := tokenizer.Class{Name: "member", Kind: tokenizer.KindDeterministic, Normalize: []string{"trim", "lower"}, Mask: "all", Retention: time.Hour}
	e := newEnv(t, withClasses(det), withDeterministic("email"))
	ctx := context.Background()

	// The form sent first is the one revealed, whoever sends it after.
	first := tokenize(t, e.tz, "acme", []tokenizer.Item{{Class: "member", Value: " Fake-Member-0001"}}, "")[0]
	for _, v := range []string{"fake-member-0001", "FAKE-MEMBER-0001 "} {
		for _, key := range []string{"", "later-" + v} {
			if got := tokenize(t, e.newTokenizer(t), "acme", []tokenizer.Item{{Class: "member", Value: v}}, key)[0]; got != first {
				t.Fatal("an equivalent value got another deterministic token")
			}
		}
	}
	wantValue(t, revealOne(t, e.tz, first), " Fake-Member-0001")

	// A deterministic canary stays a canary when its value is tokenized.
	canary, err := e.tz.MintCanary(ctx, "acme", "email", "canary-fake@example.invalid", "", true)
	if err != nil {
		t.Fatal(err)
	}
	for _, v := range []string{"canary-fake@example.invalid", " CANARY-FAKE@example.invalid"} {
		if got := tokenize(t, e.tz, "acme", []tokenizer.Item{{Class: "email", Value: v}}, ""); got[0] != canary {
			t.Fatal("tokenizing a canary's value gave another token")
		}
	}
	r := revealOne(t, e.newTokenizer(t), canary)
	if r.Flags != tokenizer.FlagCanary|tokenizer.FlagCanarySuspend || r.Value != "canary-fake@example.invalid" {
		t.Fatalf("after its value was tokenized, the canary reveals flags %b: disarmed", r.Flags)
	}

	// Retention counts from the latest tokenization: 50 minutes in, the
	// value is sent again, and the record outlives its first hour...
	e.clock.Advance(50 * time.Minute)
	tokenize(t, e.tz, "acme", []tokenizer.Item{{Class: "member", Value: "fake-member-0001"}}, "")
	e.clock.Advance(50 * time.Minute)
	wantValue(t, revealOne(t, e.tz, first), " Fake-Member-0001")
	// ... and ends an hour after that one.
	e.clock.Advance(11 * time.Minute)
	wantNotFound(t, revealOne(t, e.tz, first))
}

// A subject's index holds the 20-byte keyed hashes that name its records,
// not their whole names; EraseSubject also erases what an index written
// by an earlier version (whole record names) lists.
func TestSubjectIndexCompactAndLegacy(t *testing.T) {
	e := newEnv(t)
	ctx := context.Background()
	toks := tokenize(t, e.tz, "acme", []tokenizer.Item{
		{Class: "name", Value: "Indexed Person", Subject: "subject-9"},
		{Class: "email", Value: "indexed@example.org", Subject: "subject-9"},
		{Class: "text", Value: "an older fake note"},
	}, "")
	index, legacy, err := tokenizer.SubjectKeys(ctx, e.tz, "acme", "subject-9")
	if err != nil {
		t.Fatal(err)
	}
	members, err := e.mem.SetMembers(ctx, index)
	if err != nil || len(members) != 2 {
		t.Fatalf("the index holds %d members (%v), want 2", len(members), err)
	}
	for _, m := range members {
		if len(m) != 20 || strings.HasPrefix(m, "jeton:") {
			t.Fatalf("an index member is %d bytes, want the 20 of a keyed hash", len(m))
		}
	}
	// An earlier version indexed the third record under the old name.
	old, err := tokenizer.RecordKey(ctx, e.tz, toks[2])
	if err != nil {
		t.Fatal(err)
	}
	if err := e.mem.AddToSet(ctx, legacy, []string{old}, 0); err != nil {
		t.Fatal(err)
	}
	if n, err := e.tz.EraseSubject(ctx, "acme", "subject-9"); err != nil || n != 3 {
		t.Fatalf("EraseSubject = %d, %v; want 3", n, err)
	}
	for _, r := range reveal(t, e.tz, toks...) {
		wantNotFound(t, r)
	}
	for _, k := range []string{index, legacy} {
		if m, _ := e.mem.SetMembers(ctx, k); len(m) != 0 {
			t.Fatal("an index survived its subject's erasure")
		}
	}
}

// A call of deterministic items alone claims no idempotency entry: every
// attempt gets the same tokens anyway. A call with a random item does.
func TestIdempotencyEntryOnlyForRandomItems(t *testing.T) {
	e := newEnv(t, withDeterministic("email"))
	ctx := context.Background()
	entries := func() int {
		n := 0
		if err := e.mem.Scan(ctx, "jeton:i:acme:", func(keys []string) error { n += len(keys); return nil }); err != nil {
			t.Fatal(err)
		}
		return n
	}
	det := []tokenizer.Item{{Class: "email", Value: "only-det@example.org"}}
	first := tokenize(t, e.tz, "acme", det, "det-only")
	if again := tokenize(t, e.tz, "acme", det, "det-only"); again[0] != first[0] {
		t.Fatal("a deterministic retry got another token")
	}
	if n := entries(); n != 0 {
		t.Fatalf("a call of deterministic items claimed %d idempotency entries", n)
	}
	tokenize(t, e.tz, "acme", append(det, tokenizer.Item{Class: "name", Value: "Random Person"}), "mixed")
	if n := entries(); n != 1 {
		t.Fatalf("a call with a random item claimed %d entries, want 1", n)
	}
}

// An attempt of an unfinished call that writes its records late, after
// the call was completed by another attempt, one of its records erased and
// reminted by a third, takes back the record it wrote for the erased
// token: the erasure stays, and the item keeps one record, the reminted
// one, which every attempt returns.
func TestIdempotentLateWriterTakesBackStaleRecord(t *testing.T) {
	e := newEnv(t)
	ctx := context.Background()
	items := []tokenizer.Item{{Class: "name", Value: "Erased Twice"}, {Class: "text", Value: "kept fake note"}}
	tokenize(t, e.tz, "acme", []tokenizer.Item{{Class: "name", Value: "Fake Warm-up"}}, "")
	// The first attempt writes its records but never completes; then its
	// first record is lost (erased by subject, say).
	m := e.store.mark()
	e.store.fail("Swap", true)
	if _, err := e.tz.Tokenize(ctx, "acme", items, "late"); !errors.Is(err, tokenizer.ErrUnavailable) {
		t.Fatalf("the interrupted attempt: %v", err)
	}
	e.store.fail("Swap", false)
	if _, err := e.mem.Delete(ctx, e.store.recordKeysSince(m)[:1]); err != nil {
		t.Fatal(err)
	}
	erase := func(tok string) {
		t.Helper()
		parsed, _ := tokenizer.ParseToken(tok)
		if _, err := e.tz.EraseTokens(ctx, []tokenizer.Token{parsed}); err != nil {
			t.Fatal(err)
		}
	}
	// Attempt A finds the entry pending and the first record missing; it
	// is held just before it writes it again.
	held, release := make(chan struct{}), make(chan struct{})
	var first atomic.Bool
	e.store.mu.Lock()
	e.store.beforeWrite = func() error {
		if first.CompareAndSwap(false, true) { // A's write; the others pass
			close(held)
			<-release
		}
		return nil
	}
	e.store.mu.Unlock()
	var aToks []string
	done := make(chan struct{})
	a := e.newTokenizer(t)
	go func() {
		defer close(done)
		res, err := a.Tokenize(ctx, "acme", items, "late")
		if err != nil {
			t.Errorf("attempt A: %v", err)
			return
		}
		aToks = []string{res[0].Token, res[1].Token}
	}()
	select {
	case <-held:
	case <-time.After(10 * time.Second):
		t.Fatal("attempt A never reached its write")
	}
	// Attempt B completes the call; then the first record is erased and
	// attempt C, finding the call done and the record gone, remints it.
	b := tokenize(t, e.newTokenizer(t), "acme", items, "late")
	erase(b[0])
	c := tokenize(t, e.newTokenizer(t), "acme", items, "late")
	if c[0] == b[0] || c[1] != b[1] {
		t.Fatal("the retry after erasure did not remint the erased item alone")
	}
	close(release)
	<-done
	if t.Failed() {
		t.FailNow()
	}
	if !slices.Equal(aToks, c) {
		t.Fatal("the late attempt returned other tokens than the entry now holds")
	}
	wantNotFound(t, revealOne(t, e.tz, b[0]))
	wantValue(t, revealOne(t, e.tz, c[0]), "Erased Twice")
	if got := e.store.liveRecords(t); got != 3 {
		t.Fatalf("%d live records, want 3 (the warm-up and one per item): the late attempt left the erased record behind", got)
	}
}

// An attempt that finds the call claimed by another attempt still at work
// writes that attempt's records, under its tokens: it never mints tokens
// of its own, so the two return the same tokens and write one record per
// item between them.
func TestIdempotentAttemptJoinsAnUnfinishedOne(t *testing.T) {
	e := newEnv(t)
	ctx := context.Background()
	tokenize(t, e.tz, "acme", []tokenizer.Item{{Class: "name", Value: "Fake Warm-up"}}, "")
	items := []tokenizer.Item{{Class: "name", Value: "Joined Person"}, {Class: "text", Value: "joined fake note"}}
	held, release := make(chan struct{}), make(chan struct{})
	var first atomic.Bool
	e.store.mu.Lock()
	e.store.beforeWrite = func() error {
		if first.CompareAndSwap(false, true) { // attempt A's write
			close(held)
			<-release
		}
		return nil
	}
	e.store.mu.Unlock()
	m := e.store.mark()
	var aToks []string
	done := make(chan struct{})
	go func() {
		defer close(done)
		res, err := e.tz.Tokenize(ctx, "acme", items, "joined")
		if err != nil {
			t.Errorf("attempt A: %v", err)
			return
		}
		aToks = []string{res[0].Token, res[1].Token}
	}()
	select {
	case <-held:
	case <-time.After(10 * time.Second):
		t.Fatal("attempt A never reached its write")
	}
	// A has claimed and is about to write; B arrives on another replica.
	b := tokenize(t, e.newTokenizer(t), "acme", items, "joined")
	close(release)
	<-done
	if t.Failed() {
		t.FailNow()
	}
	if !slices.Equal(aToks, b) {
		t.Fatal("two attempts of one call returned different tokens")
	}
	if got := e.store.distinctRecordsSince(m); got != len(items) {
		t.Fatalf("the two attempts wrote %d distinct records, want %d: the second minted its own", got, len(items))
	}
	for i, r := range reveal(t, e.tz, b...) {
		wantValue(t, r, items[i].Value)
	}
}

// TestIdempotentRetryAfterGenerationDestroyed: a retry whose stored answer
// holds tokens of a generation destroyed since gets fresh tokens that
// reveal its values, never the dead ones, whether the dead records are
// still in the store (not yet swept) or gone; later retries keep the
// fresh tokens.
func TestIdempotentRetryAfterGenerationDestroyed(t *testing.T) {
	for _, swept := range []bool{false, true} {
		t.Run(map[bool]string{false: "records not swept", true: "records swept"}[swept], func(t *testing.T) {
			e := newEnv(t, withRefresh(testRefresh))
			ctx := context.Background()
			items := []tokenizer.Item{{Class: "name", Value: "Fake Retry One"}, {Class: "text", Value: "fake note two", Subject: "fake-subject-r"}}
			dead := tokenize(t, e.tz, "acme", items, "k-destroyed")
			if g, err := e.tz.RotateGeneration(ctx, "acme"); err != nil || g != 2 {
				t.Fatalf("RotateGeneration = %d, %v", g, err)
			}
			e.clock.Advance(2*testRefresh + time.Second)
			if err := e.tz.DestroyGeneration(ctx, "acme", 1); err != nil {
				t.Fatalf("DestroyGeneration: %v", err)
			}
			if swept {
				for _, tok := range dead {
					key, err := tokenizer.RecordKey(ctx, e.tz, tok)
					if err != nil {
						t.Fatal(err)
					}
					if _, err := e.mem.Delete(ctx, []string{key}); err != nil {
						t.Fatal(err)
					}
				}
			}
			var fresh []string
			for _, tz := range []*tokenizer.Tokenizer{e.tz, e.newTokenizer(t)} {
				again := tokenize(t, tz, "acme", items, "k-destroyed")
				for i, r := range reveal(t, e.tz, again...) {
					if again[i] == dead[i] {
						t.Fatalf("item %d: the retry returned the token of the destroyed generation", i)
					}
					if fresh != nil && again[i] != fresh[i] {
						t.Fatalf("item %d: a retry on another replica reminted the fresh token", i)
					}
					wantValue(t, r, items[i].Value)
					if r.Generation != 2 {
						t.Fatalf("item %d: the fresh token is in generation %d, want 2", i, r.Generation)
					}
				}
				if !slices.Equal(tokenize(t, tz, "acme", items, "k-destroyed"), again) {
					t.Fatal("a later retry did not keep the fresh tokens")
				}
				fresh = again
			}
			// The fresh record is in its subject's index (beside the dead
			// one, when it is not swept yet).
			want := map[bool]int{false: 2, true: 1}[swept]
			if n, err := e.tz.EraseSubject(ctx, "acme", "fake-subject-r"); err != nil || n != want {
				t.Fatalf("EraseSubject = %d, %v; want %d", n, err, want)
			}
			wantNotFound(t, reveal(t, e.tz, fresh[1])[0])
		})
	}
}
