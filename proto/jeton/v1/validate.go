package jetonv1

import "errors"

// Bounds checked before any handler runs, by the validator interceptor.
// Messages never quote the offending input.
const (
	// MaxItems is the hard cap of items in one call; servers may set a
	// lower one.
	MaxItems          = 100000
	maxIdempotencyKey = 128
	maxRef            = 256
	maxPurpose        = 64
	maxTenant         = 32
)

// Validate checks the request's shape.
func (r *TokenizeRequest) Validate() error {
	if len(r.GetItems()) > MaxItems {
		return errors.New("too many items in one call")
	}
	if len(r.GetIdempotencyKey()) > maxIdempotencyKey {
		return errors.New("idempotency_key is too long")
	}
	for _, it := range r.GetItems() {
		if it.GetFieldClass() == "" {
			return errors.New("every item needs a field_class")
		}
		if len(it.GetClientRef()) > maxRef {
			return errors.New("client_ref is too long")
		}
	}
	return nil
}

// Validate checks the request's shape.
func (r *DetokenizeRequest) Validate() error {
	return validateReveal(len(r.GetTokens()), r.GetPurpose(), r.GetCaseRef(), r.GetTenant())
}

// Validate checks the request's shape.
func (r *MaskRequest) Validate() error {
	return validateReveal(len(r.GetTokens()), r.GetPurpose(), r.GetCaseRef(), r.GetTenant())
}

func validateReveal(n int, purpose, caseRef, tenant string) error {
	switch {
	case len(tenant) > maxTenant:
		return errors.New("tenant is too long")
	case n > MaxItems:
		return errors.New("too many tokens in one call")
	case purpose == "":
		return errors.New("purpose is required")
	case len(purpose) > maxPurpose:
		return errors.New("purpose is too long")
	case len(caseRef) > maxRef:
		return errors.New("case_ref is too long")
	}
	return nil
}
