package server

import (
	"context"
	"errors"
	"log/slog"
	"unicode/utf8"

	jetonv1 "github.com/jeton-dev/jeton/proto/jeton/v1"
	"github.com/jeton-dev/jeton/server/audit"
	"github.com/jeton-dev/jeton/tokenizer"
)

// coversTenants reports whether custodian administers every tenant of
// target, so that lifting target's suspension is its business.
func coversTenants(custodian, target *Principal) bool {
	for _, t := range target.Tenants {
		if !custodian.HasTenant(t) {
			return false
		}
	}
	return true
}

// Item outcome of a MintCanary audit record.
const outcomeCanaryMinted = "canary_minted"

// ReinstateIdentity lifts a suspension, for custodians only. The record of
// it is durable before the suspension is lifted: a reinstatement is never
// unaudited. A custodian cannot reinstate itself, so lifting a suspension
// always takes a second person.
func (as *adminService) ReinstateIdentity(ctx context.Context, req *jetonv1.ReinstateIdentityRequest) (*jetonv1.ReinstateIdentityResponse, error) {
	s := as.s
	p, ok := principalFrom(ctx)
	if !ok || !p.Admin {
		return nil, rpcError(denied("identity may not administer"))
	}
	id := req.GetIdentity()
	target, known := s.policy().Principal(id)
	switch {
	case id == "":
		return nil, rpcError(invalid("identity is required"))
	case !known:
		// Only identities the policy names can be suspended; refusing the
		// others first keeps arbitrary request text out of the records.
		return nil, rpcError(invalid("identity is not in the policy"))
	case id == p.ID:
		return nil, rpcError(denied("an identity cannot reinstate itself"))
	case !coversTenants(p, target):
		return nil, rpcError(denied("identity reads tenants this custodian does not administer"))
	case req.GetReason() == "" || !utf8.ValidString(req.GetReason()):
		return nil, rpcError(invalid("reason is required"))
	}
	rec := audit.Record{
		Time: s.now(), Identity: p.ID, Peer: peerAddr(ctx), Method: "ReinstateIdentity",
		// Identities are certificate names, not personal data; the reason
		// is the custodian's justification, kept like a case reference.
		CaseRef: clipReason(req.GetReason()), Outcome: "ok", Detail: "identity=" + id,
	}
	if err := s.audit.Append(ctx, rec); err != nil {
		s.log.ErrorContext(ctx, "audit append failed; reinstatement refused", "identity", p.ID, "error", err)
		return nil, rpcError(errors.Join(tokenizer.ErrUnavailable, err))
	}
	was, err := s.budgets.Reinstate(ctx, id)
	if err != nil {
		rec.Time, rec.Outcome, rec.Detail = s.now(), "failed", "identity="+id+" "+toStatus(err).Code().String()
		if aerr := s.audit.Append(context.WithoutCancel(ctx), rec); aerr != nil {
			s.log.ErrorContext(ctx, "audit append failed", "method", "ReinstateIdentity", "error", aerr)
		}
		return nil, rpcError(err)
	}
	s.alerts.raise(ctx, slog.LevelWarn, AlertIdentityReinstated, id, "by", p.ID, "was_suspended", was)
	return &jetonv1.ReinstateIdentityResponse{}, nil
}

// MintCanary creates a canary token, for custodians only. The token is
// returned once and logged nowhere: the audit record holds its keyed hash,
// so an investigator can match later reveals.
func (as *adminService) MintCanary(ctx context.Context, req *jetonv1.MintCanaryRequest) (*jetonv1.MintCanaryResponse, error) {
	s := as.s
	c, err := as.admin(ctx, "MintCanary", "", req.GetTenant())
	if err != nil {
		return nil, err
	}
	p := c.p
	tok, err := s.tok.MintCanary(ctx, req.GetTenant(), req.GetFieldClass(), "", req.GetSubject(), req.GetSuspend())
	if err != nil {
		return nil, rpcError(err)
	}
	detail := "class=" + req.GetFieldClass() + " tenant=" + req.GetTenant()
	if req.GetSuspend() {
		detail += " suspend"
	}
	if req.GetSubject() != "" {
		detail += " subject_given" // the id itself is a caller's value: never logged
	}
	rec := audit.Record{
		Time: s.now(), Identity: p.ID, Peer: peerAddr(ctx), Method: "MintCanary",
		Items:   []audit.Item{{TokenHash: s.audit.TokenHash(tok), Outcome: outcomeCanaryMinted}},
		Outcome: "ok", Detail: detail,
	}
	if err := s.audit.Append(ctx, rec); err != nil {
		// The canary exists but nobody holds its token: harmless.
		s.log.ErrorContext(ctx, "audit append failed; canary withheld", "identity", p.ID, "error", err)
		return nil, rpcError(errors.Join(tokenizer.ErrUnavailable, err))
	}
	s.log.InfoContext(ctx, "canary minted", "identity", p.ID, "tenant", req.GetTenant(), "class", req.GetFieldClass(), "suspend", req.GetSuspend())
	return &jetonv1.MintCanaryResponse{Token: tok}, nil
}

// clipReason bounds a free-text reason, on a rune boundary.
func clipReason(s string) string {
	const n = 256
	if len(s) <= n {
		return s
	}
	s = s[:n]
	for len(s) > 0 && !utf8.ValidString(s) {
		s = s[:len(s)-1]
	}
	return s
}
