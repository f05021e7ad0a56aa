package tokenizer

import (
	"context"
	"errors"
)

// ResealAsV1 rewrites the stored record of tokText as a version 1
// envelope, with the same value, generation and flags, as a record written
// before v2 would be. It is for tests of how v1 records are opened and
// counted.
func ResealAsV1(ctx context.Context, t *Tokenizer, tokText string) error {
	tok, err := ParseToken(tokText)
	if err != nil {
		return err
	}
	tk, err := t.keys.tenant(ctx, tok.Tenant, false)
	if err != nil {
		return err
	}
	name := recordName(tk, tokText)
	blobs, err := t.store.Get(ctx, []string{name})
	if err != nil {
		return err
	}
	if blobs[0] == nil {
		return ErrNotFound
	}
	h, err := parseEnvelopeHeader(blobs[0])
	if err != nil {
		return err
	}
	if h.version != envelopeVersion2 {
		return errors.New("record is not v2")
	}
	dek, err := t.keys.dek(ctx, tk, h.gen)
	if err != nil {
		return err
	}
	v, err := openRecordMAC(dek, tok, tokText, blobs[0])
	if err != nil {
		return err
	}
	blob, err := sealRecordV1MAC(dek, make([]byte, nonceSize), h.gen, h.flags, tok, tokText, v)
	if err != nil {
		return err
	}
	return t.store.Put(ctx, []Entry{{Key: name, Value: blob}})
}

// RecordKey returns the store key of tokText's record.
func RecordKey(ctx context.Context, t *Tokenizer, tokText string) (string, error) {
	tok, err := ParseToken(tokText)
	if err != nil {
		return "", err
	}
	tk, err := t.keys.tenant(ctx, tok.Tenant, false)
	if err != nil {
		return "", err
	}
	return recordName(tk, tokText), nil
}
