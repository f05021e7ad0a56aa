package tokenizer_test

import (
	"context"
	"errors"
	"fmt"
	"io"
	"math"
	"math/rand/v2"
	"net/mail"
	"slices"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/jeton-dev/jeton/tokenizer"
	"github.com/jeton-dev/jeton/tokenizer/localkeys"
	"github.com/jeton-dev/jeton/tokenizer/memstore"
)

// The shaped classes the tests configure, beside the built-in ones.
const (
	arrivalLayout = "2006-01-02 15:04"
	// hourLayout's tokens come from a domain of about 1.3 million, so that
	// collisions show at 10^5 items.
	hourLayout = "2006-01-02 15h"
	// birthLayout is date-only: its tokens are the days of 3000 to 9999
	// with an odd Luhn sum, about 1.28 million.
	birthLayout = "2006-01-02"
)

func shapedClasses() []tokenizer.Class {
	return []tokenizer.Class{
		{Name: "work-email", Normalize: []string{"trim", "fold", "email"}, Mask: "email", Shape: tokenizer.Shape{Kind: tokenizer.ShapeEmail}},
		{Name: "det-email", Kind: tokenizer.KindDeterministic, Normalize: []string{"trim", "fold", "email"}, Mask: "email",
			Shape: tokenizer.Shape{Kind: tokenizer.ShapeEmail, Domain: "det.jeton.test"}},
		// Ten-digit phone numbers, none starting with 9: six random digits,
		// a domain of exactly 10^6.
		{Name: "mobile", Shape: tokenizer.Shape{Kind: tokenizer.ShapeDigits, Prefix: "9", KeepSuffix: 2}},
		{Name: "card", Shape: tokenizer.Shape{Kind: tokenizer.ShapeDigits, LuhnValues: true, KeepSuffix: 4}},
		{Name: "arrival", Shape: tokenizer.Shape{Kind: tokenizer.ShapeDate, Layout: arrivalLayout}},
		{Name: "slot", Shape: tokenizer.Shape{Kind: tokenizer.ShapeDate, Layout: hourLayout,
			From: time.Date(3000, 1, 1, 0, 0, 0, 0, time.UTC), To: time.Date(4499, 12, 31, 0, 0, 0, 0, time.UTC)}},
		{Name: "birth", Shape: tokenizer.Shape{Kind: tokenizer.ShapeDate, Layout: birthLayout}},
	}
}

// sampleShaped are obviously fake values of the shaped classes.
var sampleShaped = map[string][]string{
	"work-email": {"anne.test@example.org", "Bob.Test@Example.NET"},
	"det-email":  {"carol.test@example.org"},
	"mobile":     {"0600000001", "0600000099"},
	"card":       {"4111111111111111", "4000000000000002"},
	"arrival":    {"2026-07-14 09:30", "1999-12-31 23:59"},
	"slot":       {"2026-07-14 09h"},
	"birth":      {"1970-01-01", "1999-12-31"},
}

func newShapedEnv(tb testing.TB, opts ...envOption) *env {
	return newEnv(tb, append([]envOption{withClasses(shapedClasses()...)}, opts...)...)
}

// shapeOf returns the shape of one of shapedClasses.
func shapeOf(tb testing.TB, class string) tokenizer.Shape {
	for _, c := range shapedClasses() {
		if c.Name == class {
			return c.Shape
		}
	}
	tb.Fatalf("no shaped class %s", class)
	return tokenizer.Shape{}
}

// checkFormat fails unless tok is in the format of the value it stands
// for: the format's own validator accepts it.
func checkFormat(tb testing.TB, class, value, tok string) {
	tb.Helper()
	sh := shapeOf(tb, class)
	switch sh.Kind {
	case tokenizer.ShapeEmail:
		addr, err := mail.ParseAddress(tok)
		domain := sh.Domain
		if domain == "" {
			domain = tokenizer.DefaultEmailDomain
		}
		if err != nil || addr.Address != tok || !strings.HasSuffix(tok, "@"+domain) {
			tb.Errorf("%s: token is not an address under %s (net/mail: %v)", class, domain, err)
		}
	case tokenizer.ShapeDigits:
		if len(tok) != len(value) || strings.Trim(tok, "0123456789") != "" {
			tb.Errorf("%s: token is not %d digits", class, len(value))
		}
		if keep := sh.KeepSuffix; tok[len(tok)-keep:] != value[len(value)-keep:] {
			tb.Errorf("%s: token does not keep the last %d digits", class, keep)
		}
	case tokenizer.ShapeDate:
		at, err := time.Parse(sh.Layout, tok)
		if err != nil {
			tb.Errorf("%s: token does not parse in layout %q: %v", class, sh.Layout, err)
		}
		from, to := sh.From, sh.To
		if from.IsZero() {
			from, to = tokenizer.DefaultDateFrom, tokenizer.DefaultDateTo
		}
		if at.Before(from) || !at.Before(to.AddDate(0, 0, 1)) {
			tb.Errorf("%s: token is outside the reserved range", class)
		}
	default:
		tb.Fatalf("%s is not shaped", class)
	}
}

// TestShapedTokensPassTheirFormat: each shape's tokens pass the format's
// validator, pass the shape's check (Recognize), and reveal the value as
// sent; the real values fail the check; and a token sent back as a value
// is refused, so no stored value ever passes the check.
func TestShapedTokensPassTheirFormat(t *testing.T) {
	e := newShapedEnv(t)
	ctx := context.Background()
	for class, values := range sampleShaped {
		for _, v := range values {
			for range 20 { // many tokens per value: random ones differ
				toks := tokenize(t, e.tz, "demo", []tokenizer.Item{{Class: class, Value: v}}, "")
				checkFormat(t, class, v, toks[0])
				tok, classes, err := e.tz.Recognize(toks[0])
				if err != nil || tok.Shaped != toks[0] || !slices.Contains(classes, class) {
					t.Fatalf("%s: Recognize(token) = %v, %v; want the token and its class", class, classes, err)
				}
				got, err := e.tz.RevealShaped(ctx, []tokenizer.ShapedLookup{{Token: tok, Tenants: []string{"demo"}, Classes: classes}})
				if err != nil || got[0].Err != nil || got[0].Value != v || got[0].Token.Class != class || got[0].Token.Tenant != "demo" {
					t.Fatalf("%s: RevealShaped = %v, %v; want the value as sent", class, got, err)
				}
				// The token as a value would read as a token: refused.
				res, err := e.tz.Tokenize(ctx, "demo", []tokenizer.Item{{Class: class, Value: toks[0]}}, "")
				if err != nil || !errors.Is(res[0].Err, tokenizer.ErrInvalidValue) {
					t.Fatalf("%s: tokenizing a token: %v, %v; want ErrInvalidValue", class, res, err)
				}
			}
			if _, _, err := e.tz.Recognize(v); !errors.Is(err, tokenizer.ErrInvalidToken) {
				t.Errorf("%s: a real value passes the token check: %v", class, err)
			}
		}
	}
}

// TestShapedValuesThatLookLikeTokens: a value that passes its class's
// documented check is refused, so the check tells every stored value from
// every token.
func TestShapedValuesThatLookLikeTokens(t *testing.T) {
	e := newShapedEnv(t)
	tests := []struct{ name, class, value string }{
		{"under the token domain", "work-email", "someone@tok.jeton.invalid"},
		{"under the token domain, upper case", "work-email", "someone@TOK.Jeton.Invalid"},
		{"under a subdomain of it", "work-email", "someone@a.tok.jeton.invalid"},
		{"starts with the reserved prefix", "mobile", "9600000001"},
		{"fails the Luhn check the class's values carry", "card", "4111111111111112"},
		{"in the reserved range", "arrival", "3001-01-01 00:00"},
		{"last day of the reserved range", "arrival", "9999-12-31 23:59"},
		{"not digits", "mobile", "06 00 00 00 01"},
		{"too short for 10^6 tokens", "mobile", "060000001"},
		{"card too short for 10^6 tokens", "card", "4242424242"},
		{"not in the layout", "arrival", "2026-07-14"},
		{"birth date in the reserved range", "birth", "3000-01-02"},
		{"birth date in the reserved range, even Luhn sum", "birth", "3000-01-01"},
		{"birth date with a time", "birth", "1970-01-01 00:00"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			res, err := e.tz.Tokenize(context.Background(), "demo", []tokenizer.Item{{Class: tt.class, Value: useFake(tt.value)}}, "")
			if err != nil || !errors.Is(res[0].Err, tokenizer.ErrInvalidValue) || !tokenizer.IsUserError(res[0].Err) {
				t.Fatalf("Tokenize = %v, %v; want a UserError wrapping ErrInvalidValue", res, err)
			}
			if strings.Contains(res[0].Err.Error(), tt.value) {
				t.Errorf("the refusal quotes the value")
			}
		})
	}
	// The shortest accepted mobile value leaves exactly six random digits
	// beside the prefix, the check digit and the kept suffix.
	if res, err := e.tz.Tokenize(context.Background(), "demo", []tokenizer.Item{{Class: "mobile", Value: "0000000000"}}, ""); err != nil || res[0].Err != nil {
		t.Errorf("a 10-digit mobile value (10^6 tokens) is refused: %v %v", res, err)
	}
}

func useFake(v string) string { return v }

// mistypes returns every string that differs from s in one character
// drawn from alphabet, leaving out changes of letter case, which name the
// same token.
func mistypes(s, alphabet string) []string {
	var out []string
	for i := 0; i < len(s); i++ {
		for j := 0; j < len(alphabet); j++ {
			c := alphabet[j]
			if c == s[i] || strings.EqualFold(string(c), string(s[i])) {
				continue
			}
			out = append(out, s[:i]+string(c)+s[i+1:])
		}
	}
	return out
}

// TestShapedTokenMistypes: every single-character change of a shaped token
// fails its check, except, in a date-only token, a digit changed for one
// that keeps the parity of the Luhn sum: at least 5 of the 9 wrong digits
// in each place are caught, as documented. Recognize has no store to look
// anything up in; the server test TestDetokenizeShapedMistypeTouchesNoStore
// shows the call as a whole makes no lookup.
func TestShapedTokenMistypes(t *testing.T) {
	e := newShapedEnv(t)
	alphabet := "0123456789abcdefghijklmnopqrstuvwxyzABCXYZ-_.@:/ +"
	checked, passed := 0, 0
	for class, values := range sampleShaped {
		dateOnly := shapeOf(t, class).Layout == birthLayout
		for _, v := range values {
			for range 5 {
				tok := tokenize(t, e.tz, "demo", []tokenizer.Item{{Class: class, Value: v}}, "")[0]
				kept := make([]int, len(tok)) // digits per place that keep the parity
				for _, m := range mistypes(tok, alphabet) {
					checked++
					if _, _, err := e.tz.Recognize(m); err != nil {
						continue
					}
					at := 0
					for m[at] == tok[at] {
						at++
					}
					if !dateOnly || strings.Trim(m[at:at+1], "0123456789") != "" {
						t.Fatalf("%s: a token with one character changed passes the check", class)
					}
					if kept[at]++; kept[at] > 4 {
						t.Fatalf("%s: more than 4 of the 9 wrong digits in place %d pass the check", class, at)
					}
					passed++
				}
			}
		}
	}
	t.Logf("%d mistyped tokens refused, %d date-only ones with the parity kept left to the lookup", checked-passed, passed)
}

// TestDateOnlyTokenCheck: a date-only token's digits have an odd Luhn sum,
// and an in-range date with an even sum, or a date outside the range, is
// no token.
func TestDateOnlyTokenCheck(t *testing.T) {
	e := newShapedEnv(t)
	for range 200 {
		tok := tokenize(t, e.tz, "demo", []tokenizer.Item{{Class: "birth", Value: "1970-01-01"}}, "")[0]
		if sum := luhnSum(tok); sum%2 != 1 {
			t.Fatalf("a birth-date token has the Luhn sum %d; want an odd one", sum)
		}
	}
	tests := []struct {
		date  string
		token bool
	}{
		{"3000-01-02", true},  // sum 9, the range's second day
		{"3000-01-01", false}, // sum 8
		{"9999-12-31", true},  // sum 7, the range's last day
		{"9999-12-30", false}, // sum 6
		{"2999-12-30", false}, // sum 1, before the range
		{"1970-01-02", false}, // sum 9, a real date
		{"3000-02-29", false}, // sum 1, no such day
		{"3000-02-31", false}, // sum 5, no such day
	}
	for _, tt := range tests {
		_, classes, err := e.tz.Recognize(tt.date)
		if got := err == nil && slices.Contains(classes, "birth"); got != tt.token {
			t.Errorf("%s (Luhn sum %d): read as a token %v, want %v (%v)", tt.date, luhnSum(tt.date), got, tt.token, err)
		}
	}
}

// luhnSum is the Luhn sum, mod 10, of the digits of s.
func luhnSum(s string) int {
	sum, pos := 0, 0
	for i := len(s) - 1; i >= 0; i-- {
		if s[i] < '0' || s[i] > '9' {
			continue
		}
		d := int(s[i] - '0')
		if pos%2 == 1 {
			if d *= 2; d > 9 {
				d -= 9
			}
		}
		sum, pos = sum+d, pos+1
	}
	return sum % 10
}

// countingStore counts what the shape claim does with record keys: the
// PutNew refusals (collisions), the records stored, and any Put of one,
// which would overwrite.
type countingStore struct {
	tokenizer.Store
	mu        sync.Mutex
	refused   int
	claimed   int
	putRecord int
}

func (s *countingStore) PutNew(ctx context.Context, entries []tokenizer.Entry) ([]bool, error) {
	won, err := s.Store.PutNew(ctx, entries)
	s.mu.Lock()
	defer s.mu.Unlock()
	for i, ok := range won {
		if strings.HasPrefix(entries[i].Key, "jeton:r:") {
			if ok {
				s.claimed++
			} else {
				s.refused++
			}
		}
	}
	return won, err
}

func (s *countingStore) Put(ctx context.Context, entries []tokenizer.Entry) error {
	s.mu.Lock()
	for _, e := range entries {
		if strings.HasPrefix(e.Key, "jeton:r:") {
			s.putRecord++
		}
	}
	s.mu.Unlock()
	return s.Store.Put(ctx, entries)
}

// TestShapedCollisionsAt1e5 mints 10^5 tokens of each shape in one tenant
// and reports how many collided. What it asserts holds whatever the draw:
// every token is unique, every collision (a PutNew refused) was minted
// again, no record was written with Put (which would overwrite), and the
// tenant holds exactly one record per item.
func TestShapedCollisionsAt1e5(t *testing.T) {
	if testing.Short() {
		t.Skip("mints 4 * 10^5 tokens")
	}
	const n = 100_000
	tests := []struct {
		class  string
		value  func(i int) string
		domain string
		size   float64 // tokens in the domain
	}{
		{"work-email", func(i int) string { return fmt.Sprintf("user%d.test@example.org", i) }, "2^128", math.Pow(2, 128)},
		{"mobile", func(i int) string { return fmt.Sprintf("06%06d%02d", i%1_000_000, 42) }, "10^6 (6 random digits)", 1e6},
		{"slot", func(int) string { return "2026-07-14 09h" }, "about 1.3 * 10^6 hours in 3000-4499", 1.3e6},
		{"birth", func(int) string { return "1970-01-01" }, "about 1.28 * 10^6 days in 3000-9999", 1_278_345},
	}
	for _, tt := range tests {
		t.Run(tt.class, func(t *testing.T) {
			km, err := localkeys.New(true)
			if err != nil {
				t.Fatal(err)
			}
			store := &countingStore{Store: memstore.New()}
			tz, err := tokenizer.New(tokenizer.Config{Classes: shapedClasses(), Keys: km, Store: store})
			if err != nil {
				t.Fatal(err)
			}
			seen := make(map[string]bool, n)
			const batch = 5000
			for lo := 0; lo < n; lo += batch {
				items := make([]tokenizer.Item, batch)
				for i := range items {
					items[i] = tokenizer.Item{Class: tt.class, Value: tt.value(lo + i)}
				}
				for i, tok := range tokenize(t, tz, "demo", items, "") {
					if seen[tok] {
						t.Fatalf("item %d got a token already issued", lo+i)
					}
					seen[tok] = true
				}
			}
			if store.claimed != n || store.putRecord != 0 {
				t.Errorf("%d records claimed and %d put for %d items; want %d and 0", store.claimed, store.putRecord, n, n)
			}
			records := 0
			if err := store.Scan(context.Background(), "jeton:r:", func(keys []string) error { records += len(keys); return nil }); err != nil {
				t.Fatal(err)
			}
			if records != n {
				t.Errorf("the tenant holds %d records for %d items", records, n)
			}
			t.Logf("shape %s, domain %s: %d collisions in %d mints (%.3f%%), each minted again", tt.class, tt.domain, store.refused, n, 100*float64(store.refused)/n)
			// Drawn uniformly, the k-th mint meets one of the k tokens
			// issued with probability k/size: about n^2/(2 size) in all.
			// Far fewer means the draw skips part of the domain's
			// collisions (or the count is wrong); far more, a draw that
			// is not uniform over the domain.
			want := float64(n) * float64(n) / (2 * tt.size)
			if got := float64(store.refused); (want >= 1 && got < 0.7*want) || got > 1.3*want+1 {
				t.Errorf("%d collisions; a uniform draw over %s gives about %.0f", store.refused, tt.domain, want)
			}
		})
	}
}

// replayReader records what it reads from inner; after replay, it hands
// the recorded bytes out again, as one stream, before reading on.
type replayReader struct {
	mu     sync.Mutex
	inner  io.Reader
	log    []byte
	replay []byte
}

func (r *replayReader) Read(p []byte) (int, error) {
	r.mu.Lock()
	defer r.mu.Unlock()
	n := copy(p, r.replay)
	r.replay = r.replay[n:]
	if n < len(p) {
		m, err := io.ReadFull(r.inner, p[n:])
		if n += m; err != nil {
			return n, err
		}
	}
	r.log = append(r.log, p[:n]...)
	return n, nil
}

// again makes the reader hand out what it handed out since the last call.
func (r *replayReader) again() {
	r.mu.Lock()
	r.replay, r.log = r.log, nil
	r.mu.Unlock()
}

// TestShapedCollisionMintedAgain forces a collision: the second value's
// Tokenize draws exactly the bytes the first one's did, so it mints the
// first value's token, unless the claim catches it and mints again. Each
// token must then reveal its own value.
func TestShapedCollisionMintedAgain(t *testing.T) {
	for _, tc := range []struct{ class, key string }{{"work-email", ""}, {"mobile", ""}, {"arrival", ""}, {"work-email", "k-coll"}, {"mobile", "k-coll"}} {
		class := tc.class
		t.Run(class+"/key="+tc.key, func(t *testing.T) {
			km, err := localkeys.New(true)
			if err != nil {
				t.Fatal(err)
			}
			store := &countingStore{Store: memstore.New()}
			rr := &replayReader{inner: newSeeded(7)}
			tz, err := tokenizer.New(tokenizer.Config{Classes: append(tokenizer.DefaultClasses(), shapedClasses()...), Keys: km, Store: store, Rand: rr})
			if err != nil {
				t.Fatal(err)
			}
			a, b := sampleShaped[class][0], sampleShaped[class][1]
			if class == "mobile" {
				b = "07" + a[2:] // the same kept suffix, or the tokens differ anyway
			}
			tokenize(t, tz, "demo", []tokenizer.Item{{Class: "name", Value: "Key Maker"}}, "") // creates the tenant's keys
			rr.again()
			rr.again() // forget the keys' bytes
			ta := tokenize(t, tz, "demo", []tokenizer.Item{{Class: class, Value: a}}, "")[0]
			rr.again()
			tb := tokenize(t, tz, "demo", []tokenizer.Item{{Class: class, Value: b}}, tc.key)[0]
			if store.refused != 1 {
				t.Fatalf("%d collisions; the replayed draw should collide once", store.refused)
			}
			if ta == tb {
				t.Fatalf("two values share one token")
			}
			if tc.key != "" {
				// The token minted again after the collision is the one the
				// call's entry holds: a retry, on another replica, gets it.
				other, err := tokenizer.New(tokenizer.Config{Classes: append(tokenizer.DefaultClasses(), shapedClasses()...), Keys: km, Store: store})
				if err != nil {
					t.Fatal(err)
				}
				if again := tokenize(t, other, "demo", []tokenizer.Item{{Class: class, Value: b}}, tc.key)[0]; again != tb {
					t.Fatalf("a retry after a collision got another token")
				}
			}
			for tok, want := range map[string]string{ta: a, tb: b} {
				rt, classes, err := tz.Recognize(tok)
				if err != nil {
					t.Fatal(err)
				}
				got, err := tz.RevealShaped(context.Background(), []tokenizer.ShapedLookup{{Token: rt, Tenants: []string{"demo"}, Classes: classes}})
				if err != nil || got[0].Value != want {
					t.Fatalf("a token reveals another value after a collision")
				}
			}
		})
	}
}

// newSeeded is a reproducible byte stream, for tests that replay draws.
func newSeeded(seed byte) io.Reader {
	var s [32]byte
	s[0] = seed
	return rand.NewChaCha8(s)
}

// fullStore refuses every new record, as a store whose shaped domain is
// full would.
type fullStore struct{ tokenizer.Store }

func (s fullStore) PutNew(ctx context.Context, entries []tokenizer.Entry) ([]bool, error) {
	won := make([]bool, len(entries))
	var rest []tokenizer.Entry
	var at []int
	for i, e := range entries {
		if !strings.HasPrefix(e.Key, "jeton:r:") {
			rest, at = append(rest, e), append(at, i)
		}
	}
	got, err := s.Store.PutNew(ctx, rest)
	for k, i := range at {
		won[i] = got[k]
	}
	return won, err
}

// TestShapedDomainFull: a value that finds no free token fails alone, with
// ErrShapeExhausted, and the rest of the batch is stored.
func TestShapedDomainFull(t *testing.T) {
	km, err := localkeys.New(true)
	if err != nil {
		t.Fatal(err)
	}
	tz, err := tokenizer.New(tokenizer.Config{Classes: append(tokenizer.DefaultClasses(), shapedClasses()...), Keys: km, Store: fullStore{memstore.New()}})
	if err != nil {
		t.Fatal(err)
	}
	res, err := tz.Tokenize(context.Background(), "demo", []tokenizer.Item{{Class: "mobile", Value: "0600000001"}, {Class: "name", Value: "Anne Testperson"}}, "key-1")
	if err != nil {
		t.Fatal(err)
	}
	if !errors.Is(res[0].Err, tokenizer.ErrShapeExhausted) || res[0].Token != "" {
		t.Errorf("the shaped item: %v; want ErrShapeExhausted and no token", res[0].Err)
	}
	if res[1].Err != nil || reveal(t, tz, res[1].Token)[0].Value != "Anne Testperson" {
		t.Errorf("the rest of the batch was not stored: %v", res[1].Err)
	}
}
