package tokenizer_test

import (
	"bytes"
	"context"
	"encoding/base64"
	"errors"
	"strings"
	"testing"

	"github.com/jeton-dev/jeton/tokenizer"
	"github.com/jeton-dev/jeton/tokenizer/localkeys"
	"github.com/jeton-dev/jeton/tokenizer/memstore"
)

// putSpy remembers the entries put, to tamper with them.
type putSpy struct {
	tokenizer.Store
	puts []tokenizer.Entry
}

func (s *putSpy) Put(ctx context.Context, e []tokenizer.Entry) error {
	s.puts = append(s.puts, e...)
	return s.Store.Put(ctx, e)
}

func TestMintCanary(t *testing.T) {
	km, err := localkeys.New(true)
	if err != nil {
		t.Fatal(err)
	}
	spy := &putSpy{Store: memstore.New()}
	// No built-in class is deterministic; configure some, since a
	// deterministic canary's token must be the MAC of its value.
	classes := tokenizer.DefaultClasses()
	for i := range classes {
		if classes[i].Name == "email" || classes[i].Name == "phone" {
			classes[i].Kind = tokenizer.KindDeterministic
		}
	}
	tk, err := tokenizer.New(tokenizer.Config{Classes: classes, Keys: km, Store: spy})
	if err != nil {
		t.Fatal(err)
	}
	ctx := context.Background()
	deterministic := 0
	for _, c := range classes {
		for _, suspend := range []bool{false, true} {
			text, err := tk.MintCanary(ctx, "demo", c.Name, "", "", suspend)
			if err != nil {
				t.Fatalf("%s: MintCanary: %v", c.Name, err)
			}
			tok, err := tokenizer.ParseToken(text)
			if err != nil || tok.Class != c.Name || tok.Tenant != "demo" {
				t.Fatalf("%s: the canary token does not parse as a demo %s token", c.Name, c.Name)
			}
			got, err := tk.Reveal(ctx, []tokenizer.Token{tok})
			if err != nil || got[0].Err != nil {
				t.Fatalf("%s: Reveal: %v %v", c.Name, err, got[0].Err)
			}
			want := tokenizer.FlagCanary
			if suspend {
				want |= tokenizer.FlagCanarySuspend
			}
			if got[0].Flags != want {
				t.Fatalf("%s: flags %b, want %b", c.Name, got[0].Flags, want)
			}
			// The fake passes the class's own normalisation unchanged.
			if v, err := c.NormalizeValue(got[0].Value); err != nil || v != got[0].Value {
				t.Fatalf("%s: the canary value is not a normalised %s value", c.Name, c.Name)
			}
			if c.Kind == tokenizer.KindDeterministic {
				deterministic++
				res, err := tk.Tokenize(ctx, "demo", []tokenizer.Item{{Class: c.Name, Value: got[0].Value}}, "")
				if err != nil || res[0].Token != text {
					t.Fatalf("%s: a deterministic canary's token differs from tokenizing its value", c.Name)
				}
			}
		}
	}
	if deterministic == 0 {
		t.Fatal("no deterministic canary was checked")
	}
	if _, err := tk.MintCanary(ctx, "demo", "nope", "", "", false); !errors.Is(err, tokenizer.ErrUnknownClass) {
		t.Fatalf("unknown class: %v", err)
	}
	if _, err := tk.MintCanary(ctx, "Bad Tenant", "email", "", "", false); !tokenizer.IsUserError(err) {
		t.Fatalf("bad tenant: %v", err)
	}

	// Nothing in the store tells a canary from an ordinary record: the
	// same clear header (version, generation, class) and the same length
	// as an ordinary record of its class whose value has the canary
	// value's length. Only opening it shows the flags. (The built-in
	// classes, all random: tokenizing a deterministic canary's value
	// would give its token.)
	tk, err = tokenizer.New(tokenizer.Config{Classes: tokenizer.DefaultClasses(), Keys: km, Store: spy})
	if err != nil {
		t.Fatal(err)
	}
	for _, c := range tokenizer.DefaultClasses() {
		value, err := tokenizer.CanaryValue(strings.NewReader("fixed randomness"), c)
		if err != nil {
			t.Fatal(err)
		}
		canary, err := tk.MintCanary(ctx, "demo", c.Name, value, "", true)
		if err != nil {
			t.Fatalf("%s: %v", c.Name, err)
		}
		canaryBlob := spy.puts[len(spy.puts)-1]
		res, err := tk.Tokenize(ctx, "demo", []tokenizer.Item{{Class: c.Name, Value: value}}, "")
		if err != nil || res[0].Err != nil || res[0].Token == canary {
			t.Fatalf("%s: Tokenize: %v %v", c.Name, err, res[0].Err)
		}
		plainBlob := spy.puts[len(spy.puts)-1]
		if !strings.HasPrefix(canaryBlob.Key, "jeton:r:") || !strings.HasPrefix(plainBlob.Key, "jeton:r:") {
			t.Fatalf("%s: the last puts are not records", c.Name)
		}
		a, b := canaryBlob.Value, plainBlob.Value
		clear := 6 + len(c.Name) // version, generation, class
		if len(a) != len(b) || !bytes.Equal(a[:clear], b[:clear]) || canaryBlob.TTL != plainBlob.TTL {
			t.Errorf("%s: a canary's record differs in its clear part: %x (%d bytes) vs %x (%d bytes)",
				c.Name, a[:clear], len(a), b[:clear], len(b))
		}
	}

	// No byte after the clear header marks canaries either: across many
	// canaries every position past it takes several values, as random
	// nonces and ciphertext do (a constant byte would be a marker).
	var blobs [][]byte
	for range 16 {
		if _, err := tk.MintCanary(ctx, "demo", "text", "", "", true); err != nil {
			t.Fatal(err)
		}
		blobs = append(blobs, spy.puts[len(spy.puts)-1].Value)
	}
	const clearText = 6 + len("text")
	for i := clearText; i < len(blobs[0]); i++ {
		distinct := map[byte]bool{}
		for _, b := range blobs {
			if len(b) != len(blobs[0]) {
				t.Fatal("canaries of one class and bucket differ in size")
			}
			distinct[b[i]] = true
		}
		if len(distinct) == 1 {
			t.Errorf("byte %d is the same in 16 canaries: a clear marker", i)
		}
	}

	// Canaries sealed before version 3 kept their flags in the clear
	// header: they still alert, and that header is still authenticated.
	text, err := tk.MintCanary(ctx, "demo", "text", "", "", true)
	if err != nil {
		t.Fatal(err)
	}
	tok, _ := tokenizer.ParseToken(text)
	for _, version := range []byte{1, 2} {
		if err := tokenizer.ResealAs(ctx, tk, text, version); err != nil {
			t.Fatal(err)
		}
		got, err := tk.Reveal(ctx, []tokenizer.Token{tok})
		if err != nil || got[0].Err != nil || got[0].Flags != tokenizer.FlagCanary|tokenizer.FlagCanarySuspend {
			t.Fatalf("a v%d canary: flags %b, %v %v", version, got[0].Flags, err, got[0].Err)
		}
	}
	last := spy.puts[len(spy.puts)-1]
	if !strings.HasPrefix(last.Key, "jeton:r:") || last.Value[0] != 2 {
		t.Fatalf("last put is not a v2 record")
	}
	blob := append([]byte(nil), last.Value...)
	blob[1] &^= byte(tokenizer.FlagCanary | tokenizer.FlagCanarySuspend)
	if err := spy.Store.Put(ctx, []tokenizer.Entry{{Key: last.Key, Value: blob}}); err != nil {
		t.Fatal(err)
	}
	got, err := tk.Reveal(ctx, []tokenizer.Token{tok})
	if err != nil || !errors.Is(got[0].Err, tokenizer.ErrNotFound) {
		t.Fatalf("a v2 canary with its clear flags stripped: %v %v, want ErrNotFound", err, got[0].Err)
	}
}

// TestCanaryValuesSitInTypicalBuckets: a canary's record falls in the
// size bucket most real values of its class fall in, whatever the
// randomness, so its size does not single it out.
func TestCanaryValuesSitInTypicalBuckets(t *testing.T) {
	typical := map[string]int{"email": 32, "phone": 32, "name": 32, "passport": 32, "birthdate": 32, "address": 64, "text": 32}
	for _, c := range tokenizer.DefaultClasses() {
		want, ok := typical[c.Name]
		if !ok {
			t.Fatalf("no typical bucket for class %s", c.Name)
		}
		for i := range 200 {
			seed := strings.Repeat(string(rune('a'+i%26)), 4) + strings.Repeat(string(rune('A'+i/26)), 4)
			v, err := tokenizer.CanaryValue(strings.NewReader(seed), c)
			if err != nil {
				t.Fatal(err)
			}
			if _, err := c.NormalizeValue(v); err != nil {
				t.Fatalf("%s: canary value does not pass the class: %v", c.Name, err)
			}
			if got := tokenizer.PaddedSize(len(v)); got != want {
				t.Fatalf("%s: a canary value of %d bytes is in bucket %d, want %d", c.Name, len(v), got, want)
			}
		}
	}
}

// A canary is written as Tokenize writes a record sent with a subject: its
// record is a member of a subject index, the one named by the subject id
// it was minted under (erasing that subject erases it), or a fresh one of
// its own; and a bad subject id is refused as Tokenize refuses it.
func TestCanaryIsInASubjectIndex(t *testing.T) {
	e := newEnv(t)
	ctx := context.Background()
	person, err := e.tz.MintCanary(ctx, "demo", "name", "", "fake-subject-0001", false)
	if err != nil {
		t.Fatal(err)
	}
	alone, err := e.tz.MintCanary(ctx, "demo", "email", "", "", false)
	if err != nil {
		t.Fatal(err)
	}
	members := map[string]int{} // record key's hash -> subject indexes holding it
	err = e.mem.Scan(ctx, "jeton:s:demo:", func(keys []string) error {
		for _, k := range keys {
			ms, err := e.mem.SetMembers(ctx, k)
			if err != nil {
				return err
			}
			for _, m := range ms {
				// A member is the keyed hash of a record's name, as bytes.
				members[base64.RawURLEncoding.EncodeToString([]byte(m))]++
			}
		}
		return nil
	})
	if err != nil {
		t.Fatal(err)
	}
	for what, tok := range map[string]string{"with a subject": person, "without": alone} {
		key, err := tokenizer.RecordKey(ctx, e.tz, tok)
		if err != nil {
			t.Fatal(err)
		}
		if members[key[strings.LastIndexByte(key, ':')+1:]] != 1 {
			t.Errorf("a canary minted %s is in %d subject indexes, want 1", what, members[key])
		}
	}
	if n, err := e.tz.EraseSubject(ctx, "demo", "fake-subject-0001"); err != nil || n != 1 {
		t.Fatalf("EraseSubject of the canary's subject = %d, %v; want 1", n, err)
	}
	wantNotFound(t, revealOne(t, e.tz, person))
	for _, bad := range []string{strings.Repeat("s", tokenizer.MaxSubjectLen+1), "\xff"} {
		if _, err := e.tz.MintCanary(ctx, "demo", "name", "", bad, false); !tokenizer.IsUserError(err) {
			t.Errorf("MintCanary with a bad subject id: %v, want a UserError", err)
		}
	}
}
