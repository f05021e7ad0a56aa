package server

import (
	"context"
	"errors"
	"fmt"
	"maps"
	"slices"
	"strconv"
	"unicode/utf8"

	"google.golang.org/protobuf/types/known/timestamppb"

	jetonv1 "github.com/jeton-dev/jeton/proto/jeton/v1"
	"github.com/jeton-dev/jeton/server/approval"
	"github.com/jeton-dev/jeton/server/audit"
	"github.com/jeton-dev/jeton/tokenizer"
)

// adminService serves Admin on the trusted listener, to custodians only.
//
// Access: the caller must be a custodian (a role with admin: true), and a
// custodian administers only the tenants its identity is bound to in the
// policy; anything else is PERMISSION_DENIED. Rewrap is the exception: the
// KEK is shared, so it rewraps the keys of every tenant the policy names.
//
// Audit: every call is recorded before its result is returned, and a call
// whose record cannot be written fails UNAVAILABLE. A call that changes
// something writes two records: an "intent" record before it acts (if that
// fails, nothing is done), then an "ok" or "failed" record with the
// outcome. A call cut short between the two leaves its intent in the log,
// so a custodian can never act unaudited. Refusals are recorded on a best
// effort basis, as they change nothing. The reason a custodian gives is
// kept as the record's case reference; records hold tenant names,
// generation numbers, counts and keyed hashes of tokens and subject ids,
// never a value, a token or a subject id.
//
// DestroyGeneration and PurgeTenant are under dual control: the call
// makes a pending request, audited as "requested", that takes effect when
// other custodians approve it; the dual-control calls, and the records of
// each step, are in admin_approval.go. ReinstateIdentity and MintCanary
// are in admin_identity.go.
type adminService struct {
	jetonv1.UnimplementedAdminServer
	s *Server
}

// Outcomes of Admin audit records.
const (
	outcomeIntent = "intent"
	outcomeOK     = "ok"
	outcomeFailed = "failed"

	// Item outcomes of EraseTokens and EraseSubject records.
	outcomeErase = "erase"
)

// adminCall is one Admin call under way.
type adminCall struct {
	s      *Server
	ctx    context.Context
	p      *Principal
	method string
	reason string
	detail string
	items  []audit.Item
}

// admin authorises a call: the caller must be a custodian bound to every
// tenant given. Refusals are audited, best effort.
func (as *adminService) admin(ctx context.Context, method, reason string, tenants ...string) (*adminCall, error) {
	p, ok := principalFrom(ctx)
	if !ok {
		return nil, rpcError(denied("identity may not administer"))
	}
	c := &adminCall{s: as.s, ctx: ctx, p: p, method: method, reason: clipReason(reason)}
	if !p.Admin {
		return nil, c.refuse(denied("identity may not administer"))
	}
	for _, t := range tenants {
		if !tokenizer.ValidName(t) {
			return nil, c.refuse(invalid("tenant must be a-z, 0-9 and '-'"))
		}
		c.detail = "tenant=" + t
		if !p.HasTenant(t) {
			return nil, c.refuse(denied("tenant not administered by this identity"))
		}
	}
	return c, nil
}

// requireReason refuses a destructive call that states no reason.
func (c *adminCall) requireReason() error {
	if c.reason == "" {
		return c.refuse(invalid("reason is required"))
	}
	if !utf8.ValidString(c.reason) {
		return c.refuse(invalid("reason must be UTF-8"))
	}
	return nil
}

// refuse records a refused call, best effort, and returns err as a status.
func (c *adminCall) refuse(err error) error {
	c.record(context.WithoutCancel(c.ctx), outcomeFailed, toStatus(err).Code().String())
	return rpcError(err)
}

func (c *adminCall) record(ctx context.Context, outcome, note string) error {
	detail := c.detail
	if note != "" {
		if detail != "" {
			detail += " "
		}
		detail += note
	}
	err := c.s.audit.Append(ctx, audit.Record{
		Time: c.s.now(), Identity: c.p.ID, Peer: peerAddr(c.ctx), Method: c.method,
		CaseRef: c.reason, Items: c.items, Outcome: outcome, Detail: detail,
	})
	if err != nil {
		c.s.log.ErrorContext(c.ctx, "audit append failed", "method", c.method, "identity", c.p.ID, "outcome", outcome, "error", err)
	}
	return err
}

// intent records the call before it acts; no record, no action.
func (c *adminCall) intent() error {
	if err := c.record(c.ctx, outcomeIntent, ""); err != nil {
		return rpcError(errors.Join(tokenizer.ErrUnavailable, err))
	}
	return nil
}

// done records the outcome of a call that acted, or of a read-only call,
// and returns the error the caller gets: the action's, else UNAVAILABLE
// when the record could not be written. The record is written even when
// the caller has gone away meanwhile.
func (c *adminCall) done(actErr error, note string) error {
	outcome := outcomeOK
	if actErr != nil {
		outcome, note = outcomeFailed, toStatus(actErr).Code().String()
	}
	err := c.record(context.WithoutCancel(c.ctx), outcome, note)
	switch {
	case actErr != nil:
		return rpcError(actErr)
	case err != nil:
		return rpcError(errors.Join(tokenizer.ErrUnavailable, err))
	}
	c.s.log.InfoContext(c.ctx, "admin call", "method", c.method, "identity", c.p.ID, "detail", c.detail, "result", note)
	return nil
}

// EraseTokens erases the records behind tokens of the custodian's tenants.
// A token of another tenant is left alone and not counted, like an unknown
// one. A malformed token fails the whole call before anything is erased,
// so a typo in a list is never half applied.
//
// A format-preserving token names no tenant: it is erased in the one of
// the custodian's tenants (or the tenant named) that holds it, and a token
// held in several fails the call before anything is erased.
func (as *adminService) EraseTokens(ctx context.Context, req *jetonv1.EraseTokensRequest) (*jetonv1.EraseTokensResponse, error) {
	var named []string
	if req.GetTenant() != "" {
		named = []string{req.GetTenant()}
	}
	c, err := as.admin(ctx, "EraseTokens", req.GetReason(), named...)
	if err != nil {
		return nil, err
	}
	if err := c.requireReason(); err != nil {
		return nil, err
	}
	texts := req.GetTokens()
	if len(texts) > as.s.maxBatch {
		return nil, c.refuse(invalid("too many tokens in one call"))
	}
	var toks, shaped []tokenizer.Token
	var shapedIdx []int
	c.items = make([]audit.Item, len(texts))
	for i, text := range texts {
		tok, _, err := as.s.tok.Recognize(text)
		if err != nil {
			c.items = nil
			return nil, c.refuse(invalid(fmt.Sprintf("token %d is malformed", i+1)))
		}
		if tok.Shaped != "" {
			text = tok.Shaped // canonical, as Detokenize hashes it
		}
		c.items[i] = audit.Item{TokenHash: as.s.audit.TokenHash(text), Outcome: outcomeErase}
		if tok.Shaped != "" {
			shaped, shapedIdx = append(shaped, tok), append(shapedIdx, i)
			continue
		}
		if !c.p.HasTenant(tok.Tenant) || len(named) > 0 && tok.Tenant != named[0] {
			c.items[i].Outcome = audit.OutcomeDenied
			continue
		}
		toks = append(toks, tok)
	}
	if len(shaped) > 0 {
		tenants := c.p.Tenants
		if len(named) > 0 {
			tenants = named
		}
		where, err := as.s.tok.LocateShaped(ctx, shaped, tenants)
		if err != nil {
			return nil, c.refuse(err)
		}
		for j, w := range where {
			switch len(w) {
			case 0: // unknown: nothing to erase, like an unknown opaque token
			case 1:
				shaped[j].Tenant = w[0]
				toks = append(toks, shaped[j])
			default:
				c.items = nil
				return nil, c.refuse(fmt.Errorf("token %d: %w", shapedIdx[j]+1, tokenizer.ErrAmbiguous))
			}
		}
	}
	c.detail = "tokens=" + strconv.Itoa(len(texts))
	if err := c.intent(); err != nil {
		return nil, err
	}
	n, err := as.s.tok.EraseTokens(ctx, toks)
	if err := c.done(err, "erased="+strconv.Itoa(n)); err != nil {
		return nil, err
	}
	return &jetonv1.EraseTokensResponse{Erased: int64(n)}, nil
}

// EraseSubject erases every record indexed under a data subject.
func (as *adminService) EraseSubject(ctx context.Context, req *jetonv1.EraseSubjectRequest) (*jetonv1.EraseSubjectResponse, error) {
	c, err := as.admin(ctx, "EraseSubject", req.GetReason(), req.GetTenant())
	if err != nil {
		return nil, err
	}
	if err := c.requireReason(); err != nil {
		return nil, err
	}
	subject := req.GetSubjectId()
	if subject == "" || len(subject) > tokenizer.MaxSubjectLen || !utf8.ValidString(subject) {
		return nil, c.refuse(invalid("subject id is empty, too long or not UTF-8"))
	}
	// A subject id may identify a person: the log keeps its keyed hash,
	// scoped to the tenant, so whoever holds the id can find the erasure.
	c.items = []audit.Item{{TokenHash: as.s.audit.TokenHash("subject:" + req.GetTenant() + ":" + subject), Outcome: outcomeErase}}
	if err := c.intent(); err != nil {
		return nil, err
	}
	n, err := as.s.tok.EraseSubject(ctx, req.GetTenant(), subject)
	if err := c.done(err, "erased="+strconv.Itoa(n)); err != nil {
		return nil, err
	}
	return &jetonv1.EraseSubjectResponse{Erased: int64(n)}, nil
}

// PurgeTenant requests that a whole tenant be crypto-shredded and
// deleted; confirm must repeat the tenant name. It takes effect once
// enough custodians approve (dual control, admin_approval.go).
func (as *adminService) PurgeTenant(ctx context.Context, req *jetonv1.PurgeTenantRequest) (*jetonv1.PurgeTenantResponse, error) {
	c, err := as.admin(ctx, "PurgeTenant", req.GetReason(), req.GetTenant())
	if err != nil {
		return nil, err
	}
	if err := c.requireReason(); err != nil {
		return nil, err
	}
	if req.GetConfirm() != req.GetTenant() {
		return nil, c.refuse(invalid("confirm must repeat the tenant name"))
	}
	pr, done, n, err := as.request(c, approval.Request{Action: approval.PurgeTenant, Tenant: req.GetTenant()})
	if err != nil {
		return nil, err
	}
	return &jetonv1.PurgeTenantResponse{Erased: n, Request: pr, Done: done}, nil
}

// RotateGeneration starts a new data-key generation for a tenant.
func (as *adminService) RotateGeneration(ctx context.Context, req *jetonv1.RotateGenerationRequest) (*jetonv1.RotateGenerationResponse, error) {
	c, err := as.admin(ctx, "RotateGeneration", "", req.GetTenant())
	if err != nil {
		return nil, err
	}
	if err := c.intent(); err != nil {
		return nil, err
	}
	gen, err := as.s.tok.RotateGeneration(ctx, req.GetTenant())
	if err := c.done(err, "generation="+strconv.FormatUint(uint64(gen), 10)); err != nil {
		return nil, err
	}
	return &jetonv1.RotateGenerationResponse{Generation: gen}, nil
}

// DestroyConfirmation is the confirm text DestroyGeneration requires.
func DestroyConfirmation(tenant string, gen uint32) string {
	return fmt.Sprintf("destroy %s generation %d", tenant, gen)
}

// DestroyGeneration requests that a generation be crypto-shredded.
// confirm must read DestroyConfirmation(tenant, generation); an unknown
// generation and the current one are refused before any request is made.
// It takes effect once enough custodians approve (dual control,
// admin_approval.go).
func (as *adminService) DestroyGeneration(ctx context.Context, req *jetonv1.DestroyGenerationRequest) (*jetonv1.DestroyGenerationResponse, error) {
	c, err := as.admin(ctx, "DestroyGeneration", req.GetReason(), req.GetTenant())
	if err != nil {
		return nil, err
	}
	gen := req.GetGeneration()
	c.detail += " generation=" + strconv.FormatUint(uint64(gen), 10)
	if err := c.requireReason(); err != nil {
		return nil, err
	}
	if gen == 0 {
		return nil, c.refuse(invalid("generation is required"))
	}
	if req.GetConfirm() != DestroyConfirmation(req.GetTenant(), gen) {
		return nil, c.refuse(invalid(`confirm must read "destroy <tenant> generation <n>"`))
	}
	gens, err := as.s.tok.Generations(ctx, req.GetTenant())
	switch {
	case errors.Is(err, tokenizer.ErrNotFound) || err == nil && (gen > uint32(len(gens))):
		return nil, c.refuse(invalid("the tenant has no such generation"))
	case err != nil:
		return nil, c.refuse(err)
	case gens[gen-1].Current:
		return nil, c.refuse(invalid("the generation is the tenant's current one; rotate first"))
	}
	pr, done, _, err := as.request(c, approval.Request{Action: approval.DestroyGeneration, Tenant: req.GetTenant(), Generation: gen})
	if err != nil {
		return nil, err
	}
	return &jetonv1.DestroyGenerationResponse{Request: pr, Done: done}, nil
}

// Rewrap re-wraps the stored keys of every tenant the policy names, and
// the service's own, under the newest KEK versions, sending progress after
// each key. The last message has done == total. A client that goes away
// does not stop it half way: rewrapping is safe to finish, and the
// outcome is audited either way.
func (as *adminService) Rewrap(_ *jetonv1.RewrapRequest, stream jetonv1.Admin_RewrapServer) error {
	ctx := stream.Context()
	c, err := as.admin(ctx, "Rewrap", "")
	if err != nil {
		return err
	}
	tenants := as.s.policy().Tenants()
	c.detail = "tenants=" + strconv.Itoa(len(tenants))
	if err := c.intent(); err != nil {
		return err
	}
	var sendErr error
	sent := false
	send := func(p tokenizer.RewrapProgress) {
		if sendErr == nil {
			sendErr = stream.Send(&jetonv1.RewrapResponse{Done: int64(p.Done), Total: int64(p.Total), Upgraded: int64(p.Upgraded)})
			sent = true
		}
	}
	p, err := as.s.tok.Rewrap(context.WithoutCancel(ctx), tenants, send)
	if err == nil && !sent {
		send(p)
	}
	note := fmt.Sprintf("done=%d total=%d rewrapped=%d upgraded=%d skipped=%d", p.Done, p.Total, p.Rewrapped, p.Upgraded, p.Skipped)
	if err := c.done(err, note); err != nil {
		return err
	}
	return sendErr
}

// Stats reports, for each tenant the custodian administers, its record
// count per generation (destroyed generations shown as such, with when,
// and their records until swept) and per field class, the suspended identities, and
// the budget use of every identity with a budget that reads one of those
// tenants. It never reports a value or a token: the class of a record is
// read from its envelope's clear header (see tokenizer.Stats), and records
// sealed before the header carried it count as "unknown". Its cost grows
// with the tenants' data: it runs under the caller's deadline.
func (as *adminService) Stats(ctx context.Context, _ *jetonv1.StatsRequest) (*jetonv1.StatsResponse, error) {
	c, err := as.admin(ctx, "Stats", "")
	if err != nil {
		return nil, err
	}
	tenants := slices.Sorted(slices.Values(c.p.Tenants))
	c.detail = "tenants=" + strconv.Itoa(len(tenants))
	stats, err := as.s.tok.Stats(ctx, tenants)
	var (
		suspended []string
		budgets   []*jetonv1.BudgetUsage
	)
	if err == nil {
		suspended, err = as.s.suspendedIdentities(ctx)
	}
	if err == nil {
		budgets, err = as.s.budgetUsage(ctx, c.p)
	}
	if err := c.done(err, ""); err != nil {
		return nil, err
	}
	resp := &jetonv1.StatsResponse{SuspendedIdentities: suspended, Budgets: budgets}
	for _, st := range stats {
		ts := &jetonv1.TenantStats{Tenant: st.Tenant, RecordsByClass: st.RecordsByClass}
		for _, g := range st.Generations {
			gs := &jetonv1.GenerationStats{Generation: g.Generation, Records: g.Records, Current: g.Current, Destroyed: g.Destroyed}
			if !g.DestroyedAt.IsZero() {
				gs.DestroyedAt = timestamppb.New(g.DestroyedAt)
			}
			if !g.Created.IsZero() {
				gs.Created = timestamppb.New(g.Created)
			}
			ts.Generations = append(ts.Generations, gs)
		}
		resp.Tenants = append(resp.Tenants, ts)
	}
	return resp, nil
}

// suspendedIdentities lists the identities the budget limiter has
// suspended, sorted.
func (s *Server) suspendedIdentities(ctx context.Context) ([]string, error) {
	if s.budgets == nil {
		return nil, nil
	}
	ids, err := s.budgets.Suspended(ctx)
	if err != nil {
		return nil, err
	}
	slices.Sort(ids)
	return ids, nil
}

// budgetUsage reports, sorted by identity, the budget use of every
// identity of the policy that has a budget and shares a tenant with
// custodian: one read of the limiter per identity.
func (s *Server) budgetUsage(ctx context.Context, custodian *Principal) ([]*jetonv1.BudgetUsage, error) {
	if s.budgets == nil {
		return nil, nil
	}
	pol := s.policy()
	var out []*jetonv1.BudgetUsage
	for _, id := range slices.Sorted(maps.Keys(pol.principals)) {
		p := pol.principals[id]
		if p.Budget.IsZero() || !slices.ContainsFunc(p.Tenants, custodian.HasTenant) {
			continue
		}
		u, err := s.budgets.Usage(ctx, id, p.Budget)
		if err != nil {
			return nil, err
		}
		out = append(out, &jetonv1.BudgetUsage{
			Identity: id, Distinct: int64(u.Distinct), DistinctLimit: int64(u.DistinctLimit),
			Refusals: int64(u.Refusals), Suspended: u.Suspended,
		})
	}
	return out, nil
}
