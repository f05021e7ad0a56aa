package server

import (
	"fmt"
	"maps"
	"slices"
	"time"

	"github.com/jeton-dev/jeton/tokenizer"
)

// Dual control defaults.
const (
	// DefaultApprovals is how many distinct custodians, the requester
	// included, must agree to destroy a generation or purge a tenant when
	// the policy does not say.
	DefaultApprovals = 2
	// DefaultApprovalExpiry is how long a request waits for approval.
	DefaultApprovalExpiry = 24 * time.Hour
)

// DualControlRule is the policy's dual_control section:
//
//	dual_control:
//	  approvals: 2            # custodians who must agree, the requester included
//	  tenants: {acme: 3}      # per-tenant overrides
//	  expiry: 24h             # how long a request waits for approval
//
// Destroying a generation and purging a tenant cannot be undone, so they
// take effect only once that many distinct custodians of the tenant agree.
// Outside dev mode jetond refuses a policy that lets one custodian act
// alone (Config.MinApprovals).
type DualControlRule struct {
	Approvals int            `yaml:"approvals"`
	Tenants   map[string]int `yaml:"tenants"`
	Expiry    time.Duration  `yaml:"expiry"`
}

// resolve validates r (nil means every default) and fills in defaults.
func (r *DualControlRule) resolve() (DualControlRule, error) {
	var out DualControlRule
	if r != nil {
		out = *r
	}
	if out.Approvals == 0 {
		out.Approvals = DefaultApprovals
	}
	if out.Expiry == 0 {
		out.Expiry = DefaultApprovalExpiry
	}
	const most = 16
	if out.Approvals < 1 || out.Approvals > most {
		return out, fmt.Errorf("server: policy: dual_control.approvals must be 1 to %d", most)
	}
	if out.Expiry < time.Minute || out.Expiry > 30*24*time.Hour {
		return out, fmt.Errorf("server: policy: dual_control.expiry must be between 1m and 720h")
	}
	for t, n := range out.Tenants {
		if !tokenizer.ValidName(t) {
			return out, fmt.Errorf("server: policy: dual_control.tenants: %q must be a-z, 0-9 and '-'", t)
		}
		if n < 1 || n > most {
			return out, fmt.Errorf("server: policy: dual_control.tenants.%s must be 1 to %d", t, most)
		}
	}
	return out, nil
}

// Approvals returns how many distinct custodians, the requester included,
// must agree to destroy a generation of tenant or purge it.
func (pol *Policy) Approvals(tenant string) int {
	if n, ok := pol.dual.Tenants[tenant]; ok {
		return n
	}
	return pol.dual.Approvals
}

// ApprovalExpiry is how long a destroy or purge request waits for
// approval.
func (pol *Policy) ApprovalExpiry() time.Duration { return pol.dual.Expiry }

// Custodians returns, sorted, the identities that administer tenant.
func (pol *Policy) Custodians(tenant string) []string {
	var out []string
	for id, p := range pol.principals {
		if p.Admin && p.HasTenant(tenant) {
			out = append(out, id)
		}
	}
	slices.Sort(out)
	return out
}

// checkDualControl refuses a policy that lets fewer than min custodians
// destroy or purge a tenant, naming the first such tenant.
func (pol *Policy) checkDualControl(min int) error {
	if pol.dual.Approvals < min {
		return fmt.Errorf("server: policy: dual_control.approvals is %d; at least %d custodians must agree outside dev mode", pol.dual.Approvals, min)
	}
	for _, t := range slices.Sorted(maps.Keys(pol.dual.Tenants)) {
		if n := pol.dual.Tenants[t]; n < min {
			return fmt.Errorf("server: policy: dual_control.tenants.%s is %d; at least %d custodians must agree outside dev mode", t, n, min)
		}
	}
	return nil
}

// understaffed returns the tenants that have fewer custodians than the
// approvals their requests need: nobody could ever destroy or purge them.
func (pol *Policy) understaffed() []string {
	var out []string
	for _, t := range pol.Tenants() {
		if len(pol.Custodians(t)) < pol.Approvals(t) {
			out = append(out, t)
		}
	}
	return out
}
