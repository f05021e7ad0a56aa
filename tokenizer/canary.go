package tokenizer

import (
	"context"
	"encoding/binary"
	"encoding/hex"
	"fmt"
	"io"
	"strings"
	"unicode/utf8"
)

// FlagCanarySuspend marks a canary whose reveal must also suspend the
// revealing identity. It is only meaningful with FlagCanary. Like every
// flag it is sealed in the record's encrypted body (envelope version 3),
// so the store can neither see nor flip it. (FlagCanary is bit 0, in
// envelope.go; this is bit 1.)
const FlagCanarySuspend Flags = 1 << 1

// MintCanary stores a canary record in tenant under class and returns its
// token. A canary looks like any other token of its class: same format,
// same kind of payload (random, or the keyed MAC of its value for a
// deterministic class), same retention, same clear header and the same
// size bucket as a value of its length. It is also written the way
// Tokenize writes a record sent with a subject: the record, then the
// record added to the subject's index, so that where sponsors always send
// subjects, a record in no index does not single it out. Only the sealed
// flags tell it apart, so an attacker holding tokens or the Redis data
// cannot pick out the canaries. With suspend set, revealing it should also
// suspend the revealing identity; the caller of Reveal sees both flags in
// Revealed.Flags and acts on them.
//
// value is the canary's stored value, kept as given like any value; empty
// makes a plausible fake for the class (see CanaryValue). It must pass the
// class's normalisation. subject is the data-subject id it is indexed
// under; empty gives it a fresh random one, an index of one record. To
// look like a sponsor's people, mint the canaries of one fake person (a
// name, an e-mail, a phone) under one subject id of the sponsor's shape.
func (t *Tokenizer) MintCanary(ctx context.Context, tenant, class, value, subject string, suspend bool) (string, error) {
	if err := validateName("tenant", tenant); err != nil {
		return "", &UserError{err}
	}
	c, ok := t.classes[class]
	if !ok {
		return "", &UserError{ErrUnknownClass}
	}
	if len(subject) > MaxSubjectLen || !utf8.ValidString(subject) {
		return "", &UserError{fmt.Errorf("%w: subject id is too long or not UTF-8", ErrInvalidValue)}
	}
	if subject == "" {
		var b [16]byte
		if _, err := io.ReadFull(t.rand, b[:]); err != nil {
			return "", fmt.Errorf("tokenizer: reading randomness: %w", err)
		}
		subject = hex.EncodeToString(b[:])
	}
	if value == "" {
		var err error
		if value, err = CanaryValue(t.rand, *c); err != nil {
			return "", err
		}
	}
	n, err := c.NormalizeValue(value)
	if err != nil {
		return "", err
	}
	ttl, err := c.RecordTTL(t.now())
	if err != nil {
		return "", err
	}
	tk, cur, err := t.currentGen(ctx, tenant)
	if err != nil {
		return "", err
	}
	flags := FlagCanary
	if suspend {
		flags |= FlagCanarySuspend
	}
	seal := func(tok Token) ([]byte, error) {
		var nonce [nonceSize]byte
		if _, err := io.ReadFull(t.rand, nonce[:]); err != nil {
			return nil, fmt.Errorf("tokenizer: reading nonce: %w", err)
		}
		return sealRecordMAC(cur.dek, nonce[:], cur.gen, flags, tok, tok.String(), value)
	}
	if c.Kind == KindRandom && c.shapeOf() != nil {
		// Its record is its claim, as for any random shaped token.
		return t.putNewShaped(ctx, tk, c, value, ttl, seal)
	}
	var payload [tokenPayloadLen]byte
	if c.Kind == KindDeterministic {
		// The same derivation as Tokenize, so the token is what tokenizing
		// the fake value would give.
		payload = deterministicPayload(cur.det, c.Name, n)
	} else if _, err := io.ReadFull(t.rand, payload[:]); err != nil {
		return "", fmt.Errorf("tokenizer: reading randomness: %w", err)
	}
	tok := newToken(c, tenant, payload)
	text := tok.String()
	blob, err := seal(tok)
	if err != nil {
		return "", err
	}
	name := recordName(tk, text)
	if err := t.store.Put(ctx, []Entry{{Key: name, Value: blob, TTL: ttl}}); err != nil {
		return "", unavailable("store", err)
	}
	if err := t.store.AddToSet(ctx, subjectName(tk, subject), []string{subjectMember(tk, name)}, ttl); err != nil {
		return "", unavailable("store", err)
	}
	return text, nil
}

// CanaryValue returns a plausible fake value for class c, drawn from rand,
// chosen by the class's normalisation (then its name):
//
//	email      <10 hex>@example.invalid          (RFC 2606: never delivered)
//	phone      +44 20 7946 0<3 digits>           (Ofcom's London range for drama)
//	date       a date from 1950 to 1999
//	passport   ZZ<7 digits>                      (ZZ is no issuing state)
//	name       a given name and a family name from short fixed lists
//	digits     random digits, as many as the shape's shortest value or 10
//	date       a time from 1950 to 1999 in the shape's layout
//	address    <number> rue des Canaris, 99<3 digits> Villefictive
//	other      canary-<12 hex>
//
// The values are fake by construction: a canary must never hold, or be
// mistaken for, a real person's data. Their lengths put their records in
// the size bucket most values of their class fall in (32 bytes; 64 for an
// address), so a record's size does not single a canary out.
func CanaryValue(rand io.Reader, c Class) (string, error) {
	var b [8]byte
	if _, err := io.ReadFull(rand, b[:]); err != nil {
		return "", fmt.Errorf("tokenizer: reading randomness: %w", err)
	}
	n := binary.BigEndian.Uint64(b[:])
	switch sh := c.shapeOf().(type) {
	case *digitsShape:
		return sh.canaryValue(rand)
	case *dateShape:
		return sh.canaryValue(n)
	}
	has := func(step string) bool {
		for _, s := range c.Normalize {
			if s == step {
				return true
			}
		}
		return false
	}
	switch {
	case has("email"):
		// 40 random bits, as a deterministic canary's token must not be
		// found by tokenizing guesses, in 26 bytes: the size bucket of
		// most real addresses.
		return fmt.Sprintf("%010x@example.invalid", n&0xffffffffff), nil
	case has("phone"):
		return fmt.Sprintf("+442079460%03d", n%1000), nil
	case has("date"):
		// Day 1 to 28 exists in every month.
		return fmt.Sprintf("%04d-%02d-%02d", 1950+n%50, 1+(n/50)%12, 1+(n/600)%28), nil
	case has("passport"):
		return fmt.Sprintf("ZZ%07d", n%10000000), nil
	case c.Name == "name":
		given := []string{"Alex", "Camille", "Dominique", "Sacha", "Morgan", "Lou", "Robin", "Noa"}
		family := []string{"Verdier", "Lambrecht", "Ostrander", "Quillet", "Marchetti", "Haldane", "Brisset", "Tamsin"}
		return given[n%8] + " " + family[(n/8)%8], nil
	case c.Name == "address":
		// No French postcode starts with 99.
		return fmt.Sprintf("%d rue des Canaris, 99%03d Villefictive", 1+n%99, (n/99)%1000), nil
	}
	v := fmt.Sprintf("canary-%012x", n&0xffffffffffff)
	if has("upper") {
		v = strings.ToUpper(v)
	}
	return v, nil
}
