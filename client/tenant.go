package client

// WithTenant limits a Revealer's or Custodian's calls to one of its
// identity's tenants: Detokenize, Mask and the struct helpers answer a
// token of any other tenant as unknown, and EraseTokens erases nothing
// outside it. An identity bound to one tenant never needs it.
//
// Format-preserving tokens (a class with an email, digits or date token
// shape) do not name their tenant, and are unique only within one. An
// identity that reads several tenants gets ErrFailedPrecondition for such
// a token when more than one of its tenants holds it; naming the tenant
// resolves it. InTenant does the same for one call site.
func WithTenant(tenant string) Option {
	return func(o *options) { o.tenant = tenant }
}

// InTenant returns a Revealer limited to tenant, as WithTenant does, on the
// same connection: closing either closes both.
func (c *Revealer) InTenant(tenant string) *Revealer {
	cc := *c.core
	cc.tenant = tenant
	return &Revealer{&cc}
}

// InTenant returns a Custodian limited to tenant, as WithTenant does, on
// the same connection: closing either closes both.
func (c *Custodian) InTenant(tenant string) *Custodian {
	cc := *c.core
	cc.tenant = tenant
	return &Custodian{&cc}
}
