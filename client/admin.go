package client

import (
	"context"
	"errors"
	"fmt"
	"io"
	"time"

	"github.com/grpc-ecosystem/go-grpc-middleware/v2/interceptors/retry"

	jetonv1 "github.com/jeton-dev/jeton/proto/jeton/v1"
)

// The Admin methods below are for key custodians, on the trusted listener.
// The server refuses them to any other identity (ErrPermissionDenied), and
// a custodian acts only on the tenants it is bound to. Every call is
// audited; reason is written to the audit log as the call's case
// reference, so give a ticket or case number, never personal data.
//
// WithRetry applies to the Admin calls that are safe to repeat (erasures
// erase nothing twice, Stats changes nothing). RotateGeneration,
// MintCanary and the dual-control calls (DestroyGeneration, PurgeTenant,
// ApproveRequest, CancelRequest) are never retried: a retry after a lost
// reply would rotate twice, mint a second canary, make a second pending
// request, or report as missing a request the first try carried out.
//
// Dual control: DestroyGeneration and PurgeTenant cannot be undone, so
// the server makes them pending requests that take effect only when
// enough other custodians of the tenant approve them (ApproveRequest).
// PendingRequests lists them; CancelRequest withdraws or rejects one.

func (c *Custodian) admin() jetonv1.AdminClient { return jetonv1.NewAdminClient(c.conn) }

// EraseTokens erases the records behind tokens and returns how many
// existed. Tokens of tenants the caller does not administer, and unknown
// tokens, are left alone and not counted. A malformed token fails the call
// (ErrInvalidArgument) before anything is erased, and so does a
// format-preserving token held by several of the caller's tenants
// (ErrFailedPrecondition; see WithTenant). Inputs longer than the
// batch size are sent in chunks; when one fails, the earlier ones stay
// erased and the count so far is returned with the error.
func (c *Custodian) EraseTokens(ctx context.Context, tokens []string, reason string) (int64, error) {
	var erased int64
	for start := 0; start < len(tokens); start += c.batchSize {
		part := tokens[start:min(start+c.batchSize, len(tokens))]
		resp, err := c.admin().EraseTokens(ctx, &jetonv1.EraseTokensRequest{Tokens: part, Reason: reason, Tenant: c.tenant})
		if err != nil {
			return erased, callError(err)
		}
		erased += resp.GetErased()
	}
	return erased, nil
}

// EraseSubject erases every record of tenant indexed under the data
// subject and returns how many existed.
func (c *Custodian) EraseSubject(ctx context.Context, tenant, subject, reason string) (int64, error) {
	resp, err := c.admin().EraseSubject(ctx, &jetonv1.EraseSubjectRequest{Tenant: tenant, SubjectId: subject, Reason: reason})
	if err != nil {
		return 0, callError(err)
	}
	return resp.GetErased(), nil
}

// PendingRequest is a destroy or purge under dual control.
type PendingRequest struct {
	ID string
	// Action is "destroy-generation" or "purge-tenant".
	Action     string
	Tenant     string
	Generation uint32 // destroy-generation only
	// RequestedBy is the requesting custodian; Reason is theirs.
	RequestedBy string
	Reason      string
	// Created and Expires bound the request's life; zero when it took
	// effect at once.
	Created, Expires time.Time
	// ApprovalsRequired counts distinct custodians, the requester
	// included; ApprovedBy lists those who agreed, the requester first.
	ApprovalsRequired int
	ApprovedBy        []string
	// Done is true once the request took effect.
	Done bool
	// Erased counts the records of a purge that took effect.
	Erased int64
}

func pendingFrom(r *jetonv1.PendingRequest, done bool, erased int64) *PendingRequest {
	out := &PendingRequest{
		ID: r.GetId(), Tenant: r.GetTenant(), Generation: r.GetGeneration(),
		RequestedBy: r.GetRequestedBy(), Reason: r.GetReason(),
		ApprovalsRequired: int(r.GetApprovalsRequired()), ApprovedBy: r.GetApprovedBy(),
		Done: done, Erased: erased,
	}
	switch r.GetAction() {
	case jetonv1.PendingAction_PENDING_ACTION_DESTROY_GENERATION:
		out.Action = "destroy-generation"
	case jetonv1.PendingAction_PENDING_ACTION_PURGE_TENANT:
		out.Action = "purge-tenant"
	}
	if r.GetCreated() != nil {
		out.Created = r.GetCreated().AsTime()
	}
	if r.GetExpires() != nil {
		out.Expires = r.GetExpires().AsTime()
	}
	return out
}

// PurgeTenant asks for tenant to be crypto-shredded and every record and
// key of it deleted. confirm must repeat the tenant name. It returns the
// pending request; Done is true, with the count of records that existed
// in Erased, only when the tenant's policy lets one custodian act alone
// (dev mode).
func (c *Custodian) PurgeTenant(ctx context.Context, tenant, confirm, reason string) (*PendingRequest, error) {
	resp, err := c.admin().PurgeTenant(ctx, &jetonv1.PurgeTenantRequest{Tenant: tenant, Confirm: confirm, Reason: reason}, retry.Disable())
	if err != nil {
		return nil, callError(err)
	}
	return pendingFrom(resp.GetRequest(), resp.GetDone(), resp.GetErased()), nil
}

// RotateGeneration starts a new data-key generation for tenant and returns
// its number.
func (c *Custodian) RotateGeneration(ctx context.Context, tenant string) (uint32, error) {
	resp, err := c.admin().RotateGeneration(ctx, &jetonv1.RotateGenerationRequest{Tenant: tenant}, retry.Disable())
	if err != nil {
		return 0, callError(err)
	}
	return resp.GetGeneration(), nil
}

// DestroyConfirmation is the confirm text DestroyGeneration requires.
func DestroyConfirmation(tenant string, generation uint32) string {
	return fmt.Sprintf("destroy %s generation %d", tenant, generation)
}

// DestroyGeneration asks for generation of tenant to be crypto-shredded:
// every record under it becomes unrecoverable, backups included, and its
// deterministic tokens can no longer be matched. confirm must equal
// DestroyConfirmation(tenant, generation); the server refuses the current
// generation and unknown ones (ErrInvalidArgument). It returns the
// pending request, which other custodians approve with ApproveRequest;
// Done is true only when the tenant's policy lets one custodian act alone
// (dev mode).
func (c *Custodian) DestroyGeneration(ctx context.Context, tenant string, generation uint32, confirm, reason string) (*PendingRequest, error) {
	resp, err := c.admin().DestroyGeneration(ctx, &jetonv1.DestroyGenerationRequest{
		Tenant: tenant, Generation: generation, Confirm: confirm, Reason: reason,
	}, retry.Disable())
	if err != nil {
		return nil, callError(err)
	}
	return pendingFrom(resp.GetRequest(), resp.GetDone(), 0), nil
}

// PendingRequests lists the pending destroy and purge requests of the
// caller's tenants, oldest first.
func (c *Custodian) PendingRequests(ctx context.Context) ([]*PendingRequest, error) {
	resp, err := c.admin().ListPendingRequests(ctx, &jetonv1.ListPendingRequestsRequest{})
	if err != nil {
		return nil, callError(err)
	}
	out := make([]*PendingRequest, 0, len(resp.GetRequests()))
	for _, r := range resp.GetRequests() {
		out = append(out, pendingFrom(r, false, 0))
	}
	return out, nil
}

// ApproveRequest approves another custodian's pending request. When this
// approval completes the count the request takes effect in this call, and
// the result has Done set (and Erased for a purge). The requester cannot
// approve its own request, and an expired one is refused
// (ErrPermissionDenied, ErrInvalidArgument).
func (c *Custodian) ApproveRequest(ctx context.Context, id, reason string) (*PendingRequest, error) {
	resp, err := c.admin().ApprovePendingRequest(ctx, &jetonv1.ApprovePendingRequestRequest{Id: id, Reason: reason}, retry.Disable())
	if err != nil {
		return nil, callError(err)
	}
	return pendingFrom(resp.GetRequest(), resp.GetDone(), resp.GetErased()), nil
}

// CancelRequest withdraws (its requester) or rejects (another custodian
// of the tenant) a pending request.
func (c *Custodian) CancelRequest(ctx context.Context, id, reason string) error {
	_, err := c.admin().CancelPendingRequest(ctx, &jetonv1.CancelPendingRequestRequest{Id: id, Reason: reason}, retry.Disable())
	return callError(err)
}

// SweepProgress is what SweepDestroyed reports.
type SweepProgress struct {
	// Scanned records were examined; Deleted of them belonged to a
	// destroyed generation.
	Scanned, Deleted int64
	// Pending lists destroyed generations whose key still exists in
	// Vault (a destroy cut short): destroy them again, then sweep again.
	Pending []uint32
}

// SweepDestroyed deletes the records of tenant's destroyed generations,
// calling progress (if not nil) after each batch, and returns the last
// report. The server bounds its rate; only ctx's deadline applies. A
// sweep cut short is finished by running it again.
func (c *Custodian) SweepDestroyed(ctx context.Context, tenant string, progress func(SweepProgress)) (SweepProgress, error) {
	var last SweepProgress
	st, err := c.admin().SweepDestroyed(ctx, &jetonv1.SweepDestroyedRequest{Tenant: tenant})
	if err != nil {
		return last, callError(err)
	}
	for {
		m, err := st.Recv()
		if errors.Is(err, io.EOF) {
			return last, nil
		}
		if err != nil {
			return last, callError(err)
		}
		last = SweepProgress{Scanned: m.GetScanned(), Deleted: m.GetDeleted(), Pending: m.GetPending()}
		if progress != nil {
			progress(last)
		}
	}
}

// Rewrap re-wraps every stored data key under the newest KEK versions,
// calling progress (if not nil) as the server reports it, and returns the
// last report. Rewrap can take long: the client's default timeout does
// not apply, only ctx's deadline.
func (c *Custodian) Rewrap(ctx context.Context, progress func(done, total int64)) (done, total int64, err error) {
	st, err := c.admin().Rewrap(ctx, &jetonv1.RewrapRequest{})
	if err != nil {
		return 0, 0, callError(err)
	}
	for {
		m, err := st.Recv()
		if errors.Is(err, io.EOF) {
			return done, total, nil
		}
		if err != nil {
			return done, total, callError(err)
		}
		done, total = m.GetDone(), m.GetTotal()
		if progress != nil {
			progress(done, total)
		}
	}
}

// Stats is what the server reports about the caller's tenants. It holds
// counts and names, never a value or a token.
type Stats struct {
	Tenants []TenantStats
	// SuspendedIdentities are the identities suspended by their budgets
	// or by a canary.
	SuspendedIdentities []string
	// Budgets is the budget use of each identity with a budget that reads
	// one of the caller's tenants, sorted by identity.
	Budgets []BudgetUsage
}

// BudgetUsage is one identity's use of its budget in its current window.
type BudgetUsage struct {
	Identity string
	// Distinct is the distinct records the identity looked up within its
	// window; DistinctLimit its budget of them, zero if unbounded.
	Distinct      int64
	DistinctLimit int64
	// Refusals counts its refused calls in the current refusal window.
	Refusals  int64
	Suspended bool
}

// TenantStats counts one tenant's records.
type TenantStats struct {
	Tenant string
	// RecordsByClass counts the records by field class; records stored
	// before the server recorded their class count under "unknown".
	RecordsByClass map[string]int64
	Generations    []GenerationStats
}

// GenerationStats is one key generation and its record count.
type GenerationStats struct {
	Generation uint32
	// Records counts the generation's records; those of a destroyed
	// generation are unreadable, left until swept (SweepDestroyed).
	Records int64
	// Current is the generation new records use.
	Current bool
	// Destroyed is true once the generation was destroyed, at
	// DestroyedAt (zero if unknown).
	Destroyed   bool
	DestroyedAt time.Time
	// Created is when the generation was made, zero if unknown.
	Created time.Time
}

// Stats returns record counts for the tenants the caller administers.
func (c *Custodian) Stats(ctx context.Context) (*Stats, error) {
	resp, err := c.admin().Stats(ctx, &jetonv1.StatsRequest{})
	if err != nil {
		return nil, callError(err)
	}
	out := &Stats{SuspendedIdentities: resp.GetSuspendedIdentities()}
	for _, t := range resp.GetTenants() {
		ts := TenantStats{Tenant: t.GetTenant(), RecordsByClass: t.GetRecordsByClass()}
		for _, g := range t.GetGenerations() {
			gs := GenerationStats{Generation: g.GetGeneration(), Records: g.GetRecords(), Current: g.GetCurrent(), Destroyed: g.GetDestroyed()}
			if g.GetDestroyedAt() != nil {
				gs.DestroyedAt = g.GetDestroyedAt().AsTime()
			}
			if g.GetCreated() != nil {
				gs.Created = g.GetCreated().AsTime()
			}
			ts.Generations = append(ts.Generations, gs)
		}
		out.Tenants = append(out.Tenants, ts)
	}
	for _, b := range resp.GetBudgets() {
		out.Budgets = append(out.Budgets, BudgetUsage{
			Identity: b.GetIdentity(), Distinct: b.GetDistinct(), DistinctLimit: b.GetDistinctLimit(),
			Refusals: b.GetRefusals(), Suspended: b.GetSuspended(),
		})
	}
	return out, nil
}

// ReinstateIdentity lifts the suspension of identity. A custodian cannot
// reinstate itself.
func (c *Custodian) ReinstateIdentity(ctx context.Context, identity, reason string) error {
	_, err := c.admin().ReinstateIdentity(ctx, &jetonv1.ReinstateIdentityRequest{Identity: identity, Reason: reason})
	return callError(err)
}

// CanaryOption configures MintCanary.
type CanaryOption func(*jetonv1.MintCanaryRequest)

// CanarySubject indexes the canary under the data-subject id subject, as
// Tokenize indexes an item sent with a Subject. Without it the canary gets
// a fresh random subject of its own. Mint the canaries of one fake person
// under one subject id shaped like the sponsor's.
func CanarySubject(subject string) CanaryOption {
	return func(r *jetonv1.MintCanaryRequest) { r.Subject = subject }
}

// MintCanary creates a canary token of class in tenant: it looks like any
// other token, and revealing it raises an alert (and, with suspend, also
// suspends the revealing identity). The token is returned only here.
func (c *Custodian) MintCanary(ctx context.Context, tenant, class string, suspend bool, opts ...CanaryOption) (string, error) {
	req := &jetonv1.MintCanaryRequest{Tenant: tenant, FieldClass: class, Suspend: suspend}
	for _, o := range opts {
		o(req)
	}
	resp, err := c.admin().MintCanary(ctx, req, retry.Disable())
	if err != nil {
		return "", callError(err)
	}
	return resp.GetToken(), nil
}
