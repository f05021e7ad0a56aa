package server

import (
	"context"
	"errors"
	"log/slog"
	"strings"

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
	res, err := ds.s.reveal(ctx, "Detokenize", req.GetTokens(), req.GetPurpose(), req.GetCaseRef(), false)
	if err != nil {
		return nil, err
	}
	return &jetonv1.DetokenizeResponse{Results: res}, nil
}

func (ds *detokenizerService) Mask(ctx context.Context, req *jetonv1.MaskRequest) (*jetonv1.MaskResponse, error) {
	res, err := ds.s.reveal(ctx, "Mask", req.GetTokens(), req.GetPurpose(), req.GetCaseRef(), true)
	if err != nil {
		return nil, err
	}
	return &jetonv1.MaskResponse{Results: res}, nil
}

// reveal authorises, opens, audits and only then returns values. Every
// token the caller may not see gets exactly the answer of an unknown token.
func (s *Server) reveal(ctx context.Context, method string, texts []string, purpose, caseRef string, maskOnly bool) ([]*jetonv1.RevealResult, error) {
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
	if pr.CaseRefRequired && strings.TrimSpace(caseRef) == "" {
		// A space or a tab is no reference to a case.
		return refuse(invalid("case reference is required for this purpose"))
	}
	if len(texts) > s.maxBatch {
		return refuse(invalid("too many tokens in one call"))
	}

	results := make([]*jetonv1.RevealResult, len(texts))
	items := make([]audit.Item, len(texts))
	levels := make([]Reveal, len(texts))
	var toOpen []tokenizer.Token
	var idx []int
	for i, text := range texts {
		results[i] = &jetonv1.RevealResult{Token: text}
		tok, err := tokenizer.ParseToken(text)
		if err != nil {
			results[i].Outcome = &jetonv1.RevealResult_Error{Error: itemError(err)}
			items[i] = audit.Item{Outcome: audit.OutcomeInvalid}
			continue
		}
		items[i].TokenHash = s.audit.TokenHash(text)
		lvl := p.RevealLevel(tok.Class)
		if maskOnly && lvl != RevealNone {
			lvl = RevealMasked
		}
		if lvl == RevealNone || !p.HasTenant(tok.Tenant) || !pr.Covers(tok.Class) {
			results[i].Outcome = &jetonv1.RevealResult_Error{Error: itemError(tokenizer.ErrNotFound)}
			items[i].Outcome = audit.OutcomeDenied
			continue
		}
		levels[i] = lvl
		toOpen = append(toOpen, tok)
		idx = append(idx, i)
	}

	// The budget is spent before any record is opened, on every
	// well-formed token: a refused call opens nothing.
	if err := s.admit(ctx, p, method, len(texts), lookups(items)); err != nil {
		s.auditFailure(ctx, p, method, purpose, caseRef, err)
		return nil, rpcError(err)
	}

	var opened []tokenizer.Revealed
	if len(toOpen) > 0 {
		var err error
		if opened, err = s.tok.Reveal(ctx, toOpen); err != nil {
			s.auditFailure(ctx, p, method, purpose, caseRef, err)
			return nil, rpcError(err)
		}
	}
	canary, err := s.canaries(ctx, p, method, opened)
	if err != nil {
		s.auditFailure(ctx, p, method, purpose, caseRef, err)
		return nil, rpcError(err)
	}
	revealed := 0
	for j, i := range idx {
		o := opened[j]
		if o.Err != nil {
			results[i].Outcome = &jetonv1.RevealResult_Error{Error: itemError(tokenizer.ErrNotFound)}
			items[i].Outcome = audit.OutcomeNotFound
			continue
		}
		class, _ := s.tok.Class(o.Token.Class)
		results[i].FieldClass = class.Name
		if levels[i] == RevealFull {
			results[i].Outcome = &jetonv1.RevealResult_Value{Value: o.Value}
			items[i].Outcome = audit.OutcomeRevealed
		} else {
			results[i].Outcome = &jetonv1.RevealResult_Value{Value: class.MaskValue(o.Value)}
			results[i].Masked = true
			items[i].Outcome = audit.OutcomeMasked
		}
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

// auditFailure records a reveal that failed as a whole, best effort: the
// caller gets no value either way.
func (s *Server) auditFailure(ctx context.Context, p *Principal, method, purpose, caseRef string, cause error) {
	markAudited(ctx)
	rec := audit.Record{
		Time: s.now(), Identity: p.ID, Peer: peerAddr(ctx), Method: method,
		Purpose: purpose, CaseRef: caseRef, Outcome: "failed", Detail: toStatus(cause).Code().String(),
	}
	if err := s.audit.Append(context.WithoutCancel(ctx), rec); err != nil {
		s.log.ErrorContext(ctx, "audit append failed", "method", method, "error", err)
	}
}
