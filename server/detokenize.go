package server

import (
	"context"
	"errors"
	"log/slog"
	"strings"
	"unicode"

	jetonv1 "github.com/jeton-dev/jeton/proto/jeton/v1"
	"github.com/jeton-dev/jeton/server/audit"
	"github.com/jeton-dev/jeton/tokenizer"
)

// detokenizerService serves Detokenize and Mask on the trusted listener.
type detokenizerService struct {
	jetonv1.UnimplementedDetokenizerServer
	s *Server
}

func (ds *detokenizerService) Detokenize(ctx context.Context, req *jetonv1.DetokenizeRequest) (*jetonv1.DetokenizeResponse, error) {
	res, err := ds.s.reveal(ctx, "Detokenize", req.GetTokens(), req.GetPurpose(), req.GetCaseRef(), req.GetTenant(), false)
	if err != nil {
		return nil, err
	}
	return &jetonv1.DetokenizeResponse{Results: res}, nil
}

func (ds *detokenizerService) Mask(ctx context.Context, req *jetonv1.MaskRequest) (*jetonv1.MaskResponse, error) {
	res, err := ds.s.reveal(ctx, "Mask", req.GetTokens(), req.GetPurpose(), req.GetCaseRef(), req.GetTenant(), true)
	if err != nil {
		return nil, err
	}
	return &jetonv1.MaskResponse{Results: res}, nil
}

// reveal authorises, opens, audits and only then returns values. Every
// token the caller may not see gets exactly the answer of an unknown token.
// A non-empty tenant limits the call to that one of the caller's tenants.
func (s *Server) reveal(ctx context.Context, method string, texts []string, purpose, caseRef, tenant string, maskOnly bool) ([]*jetonv1.RevealResult, error) {
	p, ok := principalFrom(ctx)
	if !ok || len(p.reveal) == 0 {
		return nil, rpcError(denied("identity may not reveal"))
	}
	// A refused call is audited too: an identity probing purposes or
	// batch sizes leaves a trail, not only one that gets values.
	refuse := func(err error) ([]*jetonv1.RevealResult, error) {
		s.auditFailure(ctx, p, method, purpose, caseRef, err)
		return nil, rpcError(err)
	}
	if purpose == "" {
		return refuse(invalid("purpose is required"))
	}
	pr, ok := s.policy().Purpose(purpose)
	if !ok || !p.MayUsePurpose(purpose) {
		return refuse(denied("purpose not permitted for this identity"))
	}
	if pr.CaseRefRequired && blank(caseRef) {
		// Spaces, tabs and invisible characters are no reference to a case.
		return refuse(invalid("case reference is required for this purpose"))
	}
	if len(texts) > s.maxBatch {
		return refuse(invalid("too many tokens in one call"))
	}
	if tenant != "" && !tokenizer.ValidName(tenant) {
		return refuse(invalid("tenant is not a valid tenant name"))
	}
	level := func(class string) Reveal {
		lvl := p.RevealLevel(class)
		if maskOnly && lvl != RevealNone {
			lvl = RevealMasked
		}
		if !pr.Covers(class) {
			lvl = RevealNone
		}
		return lvl
	}

	// The results, and below their values, are allocated in one go each,
	// not one by one: a batch's allocations do not grow with its size.
	slab := make([]jetonv1.RevealResult, len(texts))
	results := make([]*jetonv1.RevealResult, len(texts))
	items := make([]audit.Item, len(texts))
	levels := make([]Reveal, len(texts))
	var toOpen []tokenizer.Token
	var idx []int
	var shaped []tokenizer.ShapedLookup
	var shapedIdx []int
	for i, text := range texts {
		slab[i].Token = text
		results[i] = &slab[i]
		tok, classes, err := s.tok.Recognize(text)
		if err != nil {
			results[i].Outcome = &jetonv1.RevealResult_Error{Error: itemError(err)}
			items[i] = audit.Item{Outcome: audit.OutcomeInvalid}
			continue
		}
		if tok.Shaped != "" {
			text = tok.Shaped // canonical: an email token's case is no part of it
		}
		items[i].TokenHash = s.audit.TokenHash(text)
		if tok.Shaped != "" {
			// A shaped token names neither tenant nor class: it is looked
			// up in the caller's tenants, and opened only if its record's
			// class is one the caller may see (shaped.go).
			if l, ok := shapedLookup(p, tok, classes, tenant, level); ok {
				shaped = append(shaped, l)
				shapedIdx = append(shapedIdx, i)
				continue
			}
		} else if lvl := level(tok.Class); lvl != RevealNone && p.HasTenant(tok.Tenant) && (tenant == "" || tok.Tenant == tenant) {
			levels[i] = lvl
			toOpen = append(toOpen, tok)
			idx = append(idx, i)
			continue
		}
		results[i].Outcome = &jetonv1.RevealResult_Error{Error: itemError(tokenizer.ErrNotFound)}
		items[i].Outcome = audit.OutcomeDenied
	}

	// The budget is spent before any record is opened, on every
	// well-formed token: a refused call opens nothing.
	opened, err := s.admitOpen(ctx, p, method, len(texts), lookups(items), toOpen)
	if err != nil {
		s.auditFailure(ctx, p, method, purpose, caseRef, err)
		return nil, rpcError(err)
	}
	if len(shaped) > 0 {
		got, err := s.tok.RevealShaped(ctx, shaped)
		if err != nil {
			s.auditFailure(ctx, p, method, purpose, caseRef, err)
			return nil, rpcError(err)
		}
		for j, o := range got {
			if o.Err == nil {
				levels[shapedIdx[j]] = level(o.Token.Class)
			}
		}
		opened, idx = append(opened, got...), append(idx, shapedIdx...)
	}
	canary, err := s.canaries(ctx, p, method, opened)
	if err != nil {
		s.auditFailure(ctx, p, method, purpose, caseRef, err)
		return nil, rpcError(err)
	}
	revealed := 0
	outcomes := make([]jetonv1.RevealResult_Value, len(idx))
	for j, i := range idx {
		o := opened[j]
		if o.Err != nil {
			items[i].Outcome = audit.OutcomeNotFound
			switch {
			case errors.Is(o.Err, tokenizer.ErrAmbiguous):
				items[i].Outcome = audit.OutcomeAmbiguous
			case errors.Is(o.Err, tokenizer.ErrNotPermitted):
				items[i].Outcome = audit.OutcomeDenied
			default:
				o.Err = tokenizer.ErrNotFound
			}
			results[i].Outcome = &jetonv1.RevealResult_Error{Error: itemError(o.Err)}
			continue
		}
		if levels[i] == RevealNone {
			// RevealShaped opens only the classes it was given; never let
			// a value out without a level all the same.
			results[i].Outcome = &jetonv1.RevealResult_Error{Error: itemError(tokenizer.ErrNotFound)}
			items[i].Outcome = audit.OutcomeDenied
			continue
		}
		class, _ := s.tok.Class(o.Token.Class)
		results[i].FieldClass = class.Name
		if levels[i] == RevealFull {
			outcomes[j].Value = o.Value
			items[i].Outcome = audit.OutcomeRevealed
		} else {
			outcomes[j].Value = class.MaskValue(o.Value)
			results[i].Masked = true
			items[i].Outcome = audit.OutcomeMasked
		}
		results[i].Outcome = &outcomes[j]
		revealed++
	}

	// No value leaves before its audit record is durable.
	markAudited(ctx)
	rec := audit.Record{
		Time: s.now(), Identity: p.ID, Peer: peerAddr(ctx), Method: method,
		Purpose: purpose, CaseRef: caseRef, Items: items, Outcome: "ok",
	}
	if canary {
		rec.Detail = AlertCanaryRevealed
	}
	if err := s.audit.Append(ctx, rec); err != nil {
		s.log.ErrorContext(ctx, "audit append failed; reveal refused", "method", method, "identity", p.ID, "error", err)
		return nil, rpcError(errors.Join(tokenizer.ErrUnavailable, err))
	}
	s.metrics.countRevealed(results) // after the audit record: only values that leave count
	// The audit log is the record of every reveal; this line is for
	// debugging only, like the access log of successful calls.
	if s.log.Enabled(ctx, slog.LevelDebug) {
		s.log.DebugContext(ctx, "revealed", "method", method, "identity", p.ID, "purpose", purpose,
			"tokens", len(texts), "opened", revealed)
	}
	return results, nil
}

// admitOpen reserves the call's budget (admit) and opens the records of
// toOpen, only once the call is admitted. Where the limiter can read
// records, the reservation and the records' reads share one round trip:
// ciphertext fetched before the budget answers is opened only if it
// admits the call, and dropped if it refuses.
func (s *Server) admitOpen(ctx context.Context, p *Principal, method string, items int, lookups []string, toOpen []tokenizer.Token) ([]tokenizer.Revealed, error) {
	if len(toOpen) == 0 || !s.budgets.Reads() {
		if err := s.admit(ctx, p, method, items, lookups); err != nil {
			return nil, err
		}
		if len(toOpen) == 0 {
			return nil, nil
		}
		return s.tok.Reveal(ctx, toOpen)
	}
	admitted := false
	opened, err := s.tok.RevealWith(ctx, toOpen, func(ctx context.Context, names []string) ([][]byte, error) {
		admitted = true
		return s.admitRead(ctx, p, method, items, lookups, names)
	})
	if err != nil || admitted {
		return opened, err
	}
	// No token named a record that could exist, so nothing was read or
	// opened; the call spends its budget all the same.
	if err := s.admit(ctx, p, method, items, lookups); err != nil {
		return nil, err
	}
	return opened, nil
}

// auditFailure records a reveal that failed as a whole, best effort: the
// caller gets no value either way. Past a bounded pace per identity,
// method and code, refusals are counted into aggregate records
// (auditRefusal).
func (s *Server) auditFailure(ctx context.Context, p *Principal, method, purpose, caseRef string, cause error) {
	markAudited(ctx)
	s.auditRefusal(ctx, audit.Record{
		Time: s.now(), Identity: p.ID, Peer: peerAddr(ctx), Method: method,
		Purpose: purpose, CaseRef: caseRef, Outcome: "failed", Detail: toStatus(cause).Code().String(),
	})
}

// blank reports whether s shows nothing: every rune a space of any script
// (U+00A0, U+2003, U+3000, ...), a format or control character (U+200B
// zero-width space, U+FEFF, U+2060 word joiner, ...) or one of the letters
// and symbols drawn as nothing (Hangul fillers, the blank Braille cell).
func blank(s string) bool {
	return strings.IndexFunc(s, func(r rune) bool {
		switch r {
		case '\u115f', '\u1160', '\u3164', '\uffa0', '\u2800':
			return false
		}
		return unicode.IsGraphic(r) && !unicode.IsSpace(r)
	}) < 0
}
