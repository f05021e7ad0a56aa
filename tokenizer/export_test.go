package tokenizer

import (
	"context"
	"errors"
)

// ResealAs rewrites the stored record of tokText as a version 1 or 2
// envelope, with the same value, generation and flags, as a record written
// before version 3 would be. It is for tests of how older records are
// opened, counted and flagged.
func ResealAs(ctx context.Context, t *Tokenizer, tokText string, version byte) error {
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
	dek, err := t.keys.dek(ctx, tk, h.gen)
	if err != nil {
		return err
	}
	v, flags, err := openRecordMAC(dek, tok, tokText, blobs[0])
	if err != nil {
		return err
	}
	var blob []byte
	switch version {
	case envelopeVersion1:
		blob, err = sealRecordV1MAC(dek, make([]byte, nonceSize), h.gen, flags, tok, tokText, v)
	case envelopeVersion2:
		blob, err = sealRecordV2MAC(dek, make([]byte, nonceSize), h.gen, flags, tok, tokText, v)
	default:
		err = errors.New("ResealAs writes versions 1 and 2 only")
	}
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

// PaddedSize is paddedSize, the size bucket of a v3 record's body.
var PaddedSize = paddedSize

// SubjectKeys returns the store keys of a subject's index, as this version
// writes it, and as versions before compact members wrote it.
func SubjectKeys(ctx context.Context, t *Tokenizer, tenant, subject string) (index, legacy string, err error) {
	tk, err := t.keys.tenant(ctx, tenant, false)
	if err != nil {
		return "", "", err
	}
	return subjectName(tk, subject), legacySubjectName(tk, subject), nil
}

// EmailTokenOf is the email-shaped token of payload under domain, as a
// deterministic email-shaped class writes it.
func EmailTokenOf(domain string, payload [16]byte) (string, error) {
	sh, err := Shape{Kind: ShapeEmail, Domain: domain}.compile()
	if err != nil {
		return "", err
	}
	return sh.(payloadShaper).fromPayload(payload), nil
}

// ShapeDomainBits is the lower bound of a shape's token domain, in bits.
func ShapeDomainBits(s Shape) (float64, error) {
	sh, err := s.compile()
	if err != nil {
		return 0, err
	}
	return sh.domainBits(), nil
}
