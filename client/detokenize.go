package client

import (
	"context"
	"fmt"

	"google.golang.org/grpc/codes"

	jetonv1 "github.com/jeton-dev/jeton/proto/jeton/v1"
)

// RevealResult is the outcome for one token: either Value or Err is set.
type RevealResult struct {
	Token string
	// Value is the full value, or its masked form when Masked is true.
	Value  string
	Class  string
	Masked bool
	// Err is an *ItemError when the token could not be revealed.
	// ErrNotFound covers both an unknown token and one the caller may not
	// reveal; ErrFailedPrecondition, a format-preserving token held by
	// several of the caller's tenants (see WithTenant).
	Err error
}

// Detokenize reveals the values behind tokens, one result per token, in
// input order. Each value is full or masked, as the caller's policy allows.
// purpose is required and must be one the server knows; caseRef ties the
// reveal to a case in the audit log. A failed item is reported in its
// result; the returned error is for a failed call, as an *Error.
//
// Inputs longer than the batch size are sent in chunks, one after the
// other. When a chunk fails, Detokenize returns the results of the chunks
// before it together with the error (they were revealed and audited), and
// len(results) says how many there are.
func (c *Revealer) Detokenize(ctx context.Context, tokens []string, purpose, caseRef string) ([]RevealResult, error) {
	return c.reveal(ctx, tokens, purpose, func(ctx context.Context, part []string) ([]*jetonv1.RevealResult, error) {
		resp, err := jetonv1.NewDetokenizerClient(c.conn).Detokenize(ctx, &jetonv1.DetokenizeRequest{Tokens: part, Purpose: purpose, CaseRef: caseRef, Tenant: c.tenant})
		return resp.GetResults(), err
	})
}

// Mask is Detokenize restricted to masked forms, whatever the caller's
// policy allows.
func (c *Revealer) Mask(ctx context.Context, tokens []string, purpose, caseRef string) ([]RevealResult, error) {
	return c.reveal(ctx, tokens, purpose, func(ctx context.Context, part []string) ([]*jetonv1.RevealResult, error) {
		resp, err := jetonv1.NewDetokenizerClient(c.conn).Mask(ctx, &jetonv1.MaskRequest{Tokens: part, Purpose: purpose, CaseRef: caseRef, Tenant: c.tenant})
		return resp.GetResults(), err
	})
}

// DetokenizeValue reveals a single token. A failed item is returned as its
// *ItemError. The value may be a masked form if that is all the caller's
// policy allows; use Detokenize to tell.
func (c *Revealer) DetokenizeValue(ctx context.Context, token, purpose, caseRef string) (string, error) {
	res, err := c.Detokenize(ctx, []string{token}, purpose, caseRef)
	if err != nil {
		return "", err
	}
	if res[0].Err != nil {
		return "", res[0].Err
	}
	return res[0].Value, nil
}

func (c *Revealer) reveal(ctx context.Context, tokens []string, purpose string, call func(context.Context, []string) ([]*jetonv1.RevealResult, error)) ([]RevealResult, error) {
	// Checked here too, so that a missing purpose costs no round trip and
	// no audit record.
	if purpose == "" {
		return nil, fmt.Errorf("client: purpose is required: %w", ErrInvalidArgument)
	}
	if len(tokens) == 0 {
		return nil, nil
	}
	results := make([]RevealResult, 0, len(tokens))
	size := c.batchSize
	for start := 0; start < len(tokens); {
		end := min(start+size, len(tokens))
		part := tokens[start:end]
		got, err := call(ctx, part)
		if n, ok := MaxBatch(err); ok && n < len(part) {
			// Refused before anything was looked up or revealed: the
			// identity's max_batch is smaller. Send the rest in calls of
			// that size (size only ever shrinks, so this ends).
			size = n
			continue
		}
		if err != nil {
			return partial(results), callError(err)
		}
		if len(got) != len(part) {
			return partial(results), &Error{Code: codes.Internal, Message: fmt.Sprintf("server returned %d results for %d tokens", len(got), len(part))}
		}
		for i, r := range got {
			res := RevealResult{Token: part[i], Class: r.GetFieldClass(), Masked: r.GetMasked()}
			if e := r.GetError(); e != nil {
				res.Err = itemError(start+i, e)
			} else {
				res.Value = r.GetValue()
			}
			results = append(results, res)
		}
		start = end
	}
	return results, nil
}
