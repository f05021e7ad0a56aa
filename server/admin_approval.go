package server

import (
	"context"
	"crypto/rand"
	"errors"
	"fmt"
	"log/slog"
	"slices"
	"strconv"
	"strings"
	"sync"
	"time"

	"google.golang.org/protobuf/types/known/timestamppb"

	jetonv1 "github.com/jeton-dev/jeton/proto/jeton/v1"
	"github.com/jeton-dev/jeton/server/approval"
	"github.com/jeton-dev/jeton/tokenizer"
	"github.com/jeton-dev/jeton/tokenizer/memstore"
)

// Dual control: DestroyGeneration and PurgeTenant cannot be undone, so
// they take effect only once enough distinct custodians of the tenant
// agree (Policy.Approvals, never fewer than Config.MinApprovals). The
// requester's call makes a pending request; each other custodian approves
// it with ApprovePendingRequest, and the approval that completes the count
// carries it out, in that call. A request expires (Policy.ApprovalExpiry),
// can be cancelled by any custodian of its tenant, and nobody can approve
// their own. Every step is audited through the same Append as every Admin
// call: the request ("requested"), each approval ("approved", written
// before it is stored), each cancel ("cancelled"), and the execution, as
// the DestroyGeneration or PurgeTenant intent and outcome records, naming
// the request and who approved it.
//
// Requests live in the shared store (approval.Book), each sealed with a
// key derived from the service's key hierarchy, so that a Redis reader
// learns neither who asked for what nor why, and a Redis writer can
// neither forge an approval nor change a request's requester or target.
// The requester counts as one of the custodians who agree only while the
// policy in force makes it one, as every approver does.

// AlertApprovalTampered is raised when a stored dual-control request or
// approval fails its integrity check: someone altered the store.
const AlertApprovalTampered = "approval_tampered"

// Outcomes of dual-control audit records.
const (
	outcomeRequested = "requested"
	outcomeApproved  = "approved"
	outcomeCancelled = "cancelled"
)

// dualControl is the server's dual-control state.
type dualControl struct {
	book *approval.Book
	min  int

	// Background sweeps of destroyed generations, one per tenant at a
	// time on this replica, stopped by Stop.
	mu      sync.Mutex
	ctx     context.Context
	cancel  context.CancelFunc
	wg      sync.WaitGroup
	running map[string]bool
}

// initDualControl sets up dual control from cfg, refusing a policy that
// lets fewer custodians act than cfg allows.
func (s *Server) initDualControl(cfg Config) error {
	d := &s.dual
	d.min = cfg.MinApprovals
	if d.min == 0 {
		d.min = DefaultApprovals
	}
	if d.min < 1 {
		return errors.New("server: config: min_approvals must be at least 1")
	}
	if err := cfg.Policy.checkDualControl(d.min); err != nil {
		return err
	}
	d.book = cfg.Approvals
	if d.book == nil {
		key := make([]byte, 32)
		if _, err := rand.Read(key); err != nil {
			return fmt.Errorf("server: approvals key: %w", err)
		}
		b, err := approval.New(memstore.New(memstore.WithClock(s.now)), key, approval.WithClock(s.now))
		if err != nil {
			return err
		}
		d.book = b
	}
	d.ctx, d.cancel = context.WithCancel(context.Background())
	d.running = map[string]bool{}
	s.warnDualControl(cfg.Policy)
	return nil
}

// warnDualControl says which tenants no one could destroy or purge, and
// whether a reloaded policy asks for fewer custodians than this server
// allows (it then requires its minimum anyway).
func (s *Server) warnDualControl(p *Policy) {
	if err := p.checkDualControl(s.dual.min); err != nil {
		s.log.Error("policy asks for fewer custodians than allowed; destroy and purge requests still need the minimum", "min_approvals", s.dual.min, "error", err)
	}
	if ts := p.understaffed(); len(ts) > 0 {
		s.log.Warn("tenants have fewer custodians than their destroy and purge requests need; no request of theirs can be approved", "tenants", ts)
	}
}

// required returns how many custodians must agree to a request on tenant
// under the policy in force.
func (s *Server) required(tenant string) int {
	return max(s.policy().Approvals(tenant), s.dual.min)
}

// stopSweeps stops this replica's background sweeps and waits for them.
func (d *dualControl) stopSweeps() {
	if d.cancel != nil {
		d.cancel()
	}
	d.wg.Wait()
}

// sweepInBackground deletes the records of tenant's destroyed generations,
// bounded (tokenizer.SweepOptions' defaults), unless this replica is
// already at it. A sweep cut short (shutdown, outage) is finished by the
// next one, or by SweepDestroyed.
func (s *Server) sweepInBackground(tenant string) {
	d := &s.dual
	d.mu.Lock()
	if d.running[tenant] || d.ctx.Err() != nil {
		d.mu.Unlock()
		return
	}
	d.running[tenant] = true
	d.wg.Add(1)
	d.mu.Unlock()
	go func() {
		defer func() {
			d.mu.Lock()
			delete(d.running, tenant)
			d.mu.Unlock()
			d.wg.Done()
		}()
		p, err := s.tok.SweepDestroyed(d.ctx, tenant, tokenizer.SweepOptions{}, nil)
		if err != nil {
			s.log.Warn("background sweep of destroyed generations stopped; run `jeton admin sweep` to finish it",
				"tenant", tenant, "deleted", p.Deleted, "error", err)
			return
		}
		s.log.Info("background sweep of destroyed generations done", "tenant", tenant, "scanned", p.Scanned, "deleted", p.Deleted, "pending", p.Pending)
	}()
}

// pendingProto converts a request for the API.
func pendingProto(r approval.Request) *jetonv1.PendingRequest {
	out := &jetonv1.PendingRequest{
		Id: r.ID, Tenant: r.Tenant, Generation: r.Generation, RequestedBy: r.Requester, Reason: r.Reason,
		ApprovalsRequired: uint32(r.Required), ApprovedBy: append([]string{r.Requester}, r.Approvers...),
	}
	switch r.Action {
	case approval.DestroyGeneration:
		out.Action = jetonv1.PendingAction_PENDING_ACTION_DESTROY_GENERATION
	case approval.PurgeTenant:
		out.Action = jetonv1.PendingAction_PENDING_ACTION_PURGE_TENANT
	}
	if !r.Created.IsZero() {
		out.Created = timestamppb.New(r.Created)
	}
	if !r.Expires.IsZero() {
		out.Expires = timestamppb.New(r.Expires)
	}
	return out
}

// requestDetail is the audit detail naming a request and its target.
func requestDetail(r approval.Request) string {
	d := "action=" + string(r.Action) + " tenant=" + r.Tenant
	if r.ID != "" {
		d = "request=" + r.ID + " " + d
	}
	if r.Action == approval.DestroyGeneration {
		d += " generation=" + strconv.FormatUint(uint64(r.Generation), 10)
	}
	return d
}

// request makes a pending request for r on behalf of c's custodian, or,
// when the tenant's policy needs one custodian only (dev mode), carries it
// out at once. The error is a gRPC status.
func (as *adminService) request(c *adminCall, r approval.Request) (*jetonv1.PendingRequest, bool, int64, error) {
	s := as.s
	r.Requester, r.Reason, r.Required = c.p.ID, c.reason, s.required(r.Tenant)
	if r.Required <= 1 {
		n, err := as.execute(c, r)
		return pendingProto(r), err == nil, n, err
	}
	created, err := s.dual.book.Create(c.ctx, r, s.policy().ApprovalExpiry())
	if err != nil {
		return nil, false, 0, c.refuse(err)
	}
	c.detail = requestDetail(created)
	// No audit record, no request: remove it if the record fails.
	if err := c.record(c.ctx, outcomeRequested, "approvals_required="+strconv.Itoa(created.Required)); err != nil {
		if rerr := s.dual.book.Remove(context.WithoutCancel(c.ctx), created.ID); rerr != nil {
			s.log.ErrorContext(c.ctx, "removing an unaudited request failed; it cannot be approved without an audit record either", "request", created.ID, "error", rerr)
		}
		return nil, false, 0, rpcError(errors.Join(tokenizer.ErrUnavailable, err))
	}
	s.log.InfoContext(c.ctx, "dual control: request made", "request", created.ID, "action", created.Action,
		"tenant", created.Tenant, "requester", c.p.ID, "approvals_required", created.Required)
	return pendingProto(created), false, 0, nil
}

// execute carries out an approved request, audited as its action's
// method (intent, then outcome). c is the call that completed it. The
// error is a gRPC status.
func (as *adminService) execute(c *adminCall, r approval.Request) (int64, error) {
	s := as.s
	x := &adminCall{s: s, ctx: c.ctx, p: c.p, reason: c.reason, detail: requestDetail(r)}
	if r.ID != "" { // else carried out at once: no request was made
		x.detail += " requested_by=" + r.Requester + " approved_by=" + strings.Join(r.Approvers, ",")
	}
	if err := x.intentAs(r.Action); err != nil {
		return 0, err
	}
	switch r.Action {
	case approval.DestroyGeneration:
		err := s.tok.DestroyGeneration(c.ctx, r.Tenant, r.Generation)
		if errors.Is(err, tokenizer.ErrNotFound) {
			// Not the "token not found" every reveal refusal shares.
			err = invalid("the tenant has no such generation")
		}
		if err := x.done(err, ""); err != nil {
			return 0, err
		}
		s.sweepInBackground(r.Tenant)
		return 0, nil
	case approval.PurgeTenant:
		n, err := s.tok.PurgeTenant(c.ctx, r.Tenant)
		if err := x.done(err, "erased="+strconv.Itoa(n)); err != nil {
			return 0, err
		}
		return int64(n), nil
	}
	return 0, x.done(fmt.Errorf("server: unknown pending action %q", r.Action), "")
}

// intentAs records the intent under the action's method name.
func (c *adminCall) intentAs(a approval.Action) error {
	switch a {
	case approval.DestroyGeneration:
		c.method = "DestroyGeneration"
	case approval.PurgeTenant:
		c.method = "PurgeTenant"
	}
	return c.intent()
}

// bookError turns an approval.Book error into the refusal a custodian
// sees, raising an alert for a tampered request.
func (c *adminCall) bookError(err error, r approval.Request) error {
	switch {
	case errors.Is(err, approval.ErrNotFound):
		return c.refuse(invalid("no such pending request: it was carried out, cancelled, or never made"))
	case errors.Is(err, approval.ErrExpired):
		return c.refuse(invalid("the request expired at " + r.Expires.Format(time.RFC3339) + "; make a new one"))
	case errors.Is(err, approval.ErrTampered):
		c.s.alerts.raise(c.ctx, slog.LevelError, AlertApprovalTampered, c.p.ID, "detail", c.detail)
		return c.refuse(denied("the stored request fails its integrity check: it was altered in storage and cannot be approved or cancelled; it lapses at its expiry"))
	case errors.Is(err, approval.ErrSelfApproval):
		return c.refuse(denied("a custodian cannot approve its own request"))
	}
	return c.refuse(err)
}

// requestID returns id for audit details, or a placeholder when it is not
// the shape of an id, so arbitrary request text stays out of the log.
func requestID(id string) string {
	if len(id) != 16 || strings.Trim(id, "abcdefghijklmnopqrstuvwxyz234567") != "" {
		return "(malformed)"
	}
	return id
}

// ListPendingRequests lists the pending requests of the caller's tenants,
// oldest first.
func (as *adminService) ListPendingRequests(ctx context.Context, _ *jetonv1.ListPendingRequestsRequest) (*jetonv1.ListPendingRequestsResponse, error) {
	c, err := as.admin(ctx, "ListPendingRequests", "")
	if err != nil {
		return nil, err
	}
	reqs, tampered, err := as.s.dual.book.List(ctx)
	if tampered > 0 {
		as.s.alerts.raise(ctx, slog.LevelError, AlertApprovalTampered, c.p.ID, "tampered_requests", tampered)
	}
	resp := &jetonv1.ListPendingRequestsResponse{}
	for _, r := range reqs {
		if c.p.HasTenant(r.Tenant) {
			r.Required = max(r.Required, as.s.required(r.Tenant))
			resp.Requests = append(resp.Requests, pendingProto(r))
		}
	}
	if err := c.done(err, "requests="+strconv.Itoa(len(resp.Requests))); err != nil {
		return nil, err
	}
	return resp, nil
}

// ApprovePendingRequest approves a pending request of the caller's
// tenants made by another custodian. When this approval completes the
// count, the request is carried out in this call.
func (as *adminService) ApprovePendingRequest(ctx context.Context, req *jetonv1.ApprovePendingRequestRequest) (*jetonv1.ApprovePendingRequestResponse, error) {
	s := as.s
	c, err := as.admin(ctx, "ApprovePendingRequest", req.GetReason())
	if err != nil {
		return nil, err
	}
	c.detail = "request=" + requestID(req.GetId())
	if err := c.requireReason(); err != nil {
		return nil, err
	}
	r, err := s.dual.book.Get(ctx, req.GetId())
	if err != nil {
		return nil, c.bookError(err, r)
	}
	c.detail = requestDetail(r)
	if !c.p.HasTenant(r.Tenant) {
		return nil, c.refuse(denied("tenant not administered by this identity"))
	}
	if r.Requester == c.p.ID {
		return nil, c.bookError(approval.ErrSelfApproval, r)
	}
	// The approval is on record before it counts.
	if !slices.Contains(r.Approvers, c.p.ID) {
		if err := c.record(ctx, outcomeApproved, ""); err != nil {
			return nil, rpcError(errors.Join(tokenizer.ErrUnavailable, err))
		}
	}
	if r, err = s.dual.book.Approve(ctx, r.ID, c.p.ID); err != nil {
		return nil, c.bookError(err, r)
	}
	// The policy in force decides: a raised count applies to pending
	// requests, and only approvers still custodians of the tenant count.
	r.Required = max(r.Required, s.required(r.Tenant))
	pol := s.policy()
	counts := func(id string) bool {
		p, ok := pol.Principal(id)
		return ok && p.Admin && p.HasTenant(r.Tenant)
	}
	if !r.Approved(counts) {
		s.log.InfoContext(ctx, "dual control: request approved, more approvals needed", "request", r.ID, "by", c.p.ID)
		return &jetonv1.ApprovePendingRequestResponse{Request: pendingProto(r)}, nil
	}
	n, err := as.execute(c, r)
	if err != nil {
		return nil, err
	}
	if err := s.dual.book.Remove(context.WithoutCancel(ctx), r.ID); err != nil {
		// Carried out all the same; a second execution would be a no-op.
		s.log.ErrorContext(ctx, "removing a carried-out request failed", "request", r.ID, "error", err)
	}
	return &jetonv1.ApprovePendingRequestResponse{Request: pendingProto(r), Done: true, Erased: n}, nil
}

// CancelPendingRequest withdraws (its requester) or rejects (another
// custodian of the tenant) a pending request. An expired one may be
// cancelled too.
func (as *adminService) CancelPendingRequest(ctx context.Context, req *jetonv1.CancelPendingRequestRequest) (*jetonv1.CancelPendingRequestResponse, error) {
	s := as.s
	c, err := as.admin(ctx, "CancelPendingRequest", req.GetReason())
	if err != nil {
		return nil, err
	}
	c.detail = "request=" + requestID(req.GetId())
	if err := c.requireReason(); err != nil {
		return nil, err
	}
	r, err := s.dual.book.Get(ctx, req.GetId())
	if err != nil && !errors.Is(err, approval.ErrExpired) {
		return nil, c.bookError(err, r)
	}
	c.detail = requestDetail(r)
	if !c.p.HasTenant(r.Tenant) {
		return nil, c.refuse(denied("tenant not administered by this identity"))
	}
	if err := c.record(ctx, outcomeCancelled, ""); err != nil {
		return nil, rpcError(errors.Join(tokenizer.ErrUnavailable, err))
	}
	if err := s.dual.book.Remove(ctx, r.ID); err != nil {
		return nil, c.done(err, "")
	}
	return &jetonv1.CancelPendingRequestResponse{}, nil
}

// SweepDestroyed deletes the records of a tenant's destroyed generations,
// bounded in rate and batch, sending progress after each batch. A sweep
// cut short (the client went away) is finished by running it again.
func (as *adminService) SweepDestroyed(req *jetonv1.SweepDestroyedRequest, stream jetonv1.Admin_SweepDestroyedServer) error {
	ctx := stream.Context()
	c, err := as.admin(ctx, "SweepDestroyed", "", req.GetTenant())
	if err != nil {
		return err
	}
	if err := c.intent(); err != nil {
		return err
	}
	var sendErr error
	sent := false
	send := func(p tokenizer.SweepProgress) {
		if sendErr == nil {
			sendErr = stream.Send(&jetonv1.SweepDestroyedResponse{Scanned: p.Scanned, Deleted: p.Deleted, Pending: p.Pending})
			sent = true
		}
	}
	p, err := as.s.tok.SweepDestroyed(ctx, req.GetTenant(), tokenizer.SweepOptions{}, send)
	if err == nil && !sent {
		send(p)
	}
	if err := c.done(err, fmt.Sprintf("scanned=%d deleted=%d pending=%v", p.Scanned, p.Deleted, p.Pending)); err != nil {
		return err
	}
	return sendErr
}
