package client

import (
	"context"
	"crypto/rand"
	"encoding/hex"
	"fmt"
	"strconv"

	"google.golang.org/grpc/codes"

	jetonv1 "github.com/jeton-dev/jeton/proto/jeton/v1"
)

// Item is one personal value to tokenize.
type Item struct {
	// Class names a field class configured on the server, e.g. "email".
	Class string
	Value string
	// Subject optionally names the data subject, so that the subject's
	// records can be erased together.
	Subject string
	// Ref is the caller's own reference, returned in the result and never
	// stored by the server.
	Ref string
}

// TokenResult is the outcome for one Item: either Token or Err is set.
type TokenResult struct {
	Ref   string
	Token string
	// Err is an *ItemError when the item could not be tokenized.
	Err error
}

// Tokenize turns items into tokens, one result per item, in input order. A
// failed item is reported in its result; the returned error is for a failed
// call, as an *Error.
//
// Each call gets a random idempotency key, so the retries of WithRetry return
// the same tokens instead of making a second set. Inputs longer than the
// batch size are sent in chunks, one after the other, each with its own key
// derived from the call's. When a chunk fails, Tokenize returns the results
// of the chunks before it together with the error: those items are
// tokenized and stored, and len(results) says how many there are.
func (c *Sponsor) Tokenize(ctx context.Context, items []Item) ([]TokenResult, error) {
	if len(items) == 0 {
		return nil, nil
	}
	key, err := newIdempotencyKey()
	if err != nil {
		return nil, err
	}
	return c.tokenize(ctx, key, items)
}

// TokenizeKeyed is Tokenize under the caller's own idempotency key, for
// work that must survive the caller's own crash: sending the same items
// under the same key again, even from a new process, returns the same
// tokens instead of minting a second set. The server scopes keys to the
// caller's identity and remembers them for 24 hours. Use a key with at
// least 128 random bits per job, and never reuse one for other items.
func (c *Sponsor) TokenizeKeyed(ctx context.Context, key string, items []Item) ([]TokenResult, error) {
	if key == "" {
		return nil, fmt.Errorf("client: TokenizeKeyed: key is empty: %w", ErrInvalidArgument)
	}
	if len(items) == 0 {
		return nil, nil
	}
	return c.tokenize(ctx, key, items)
}

func (c *Sponsor) tokenize(ctx context.Context, key string, items []Item) ([]TokenResult, error) {
	tc := jetonv1.NewTokenizerClient(c.conn)
	results := make([]TokenResult, 0, len(items))
	for chunk, start := 0, 0; start < len(items); chunk, start = chunk+1, start+c.batchSize {
		part := items[start:min(start+c.batchSize, len(items))]
		req := &jetonv1.TokenizeRequest{
			Items:          make([]*jetonv1.TokenizeItem, len(part)),
			IdempotencyKey: key + "/" + strconv.Itoa(chunk),
		}
		for i, it := range part {
			req.Items[i] = &jetonv1.TokenizeItem{
				FieldClass: it.Class,
				Value:      it.Value,
				SubjectId:  it.Subject,
				ClientRef:  it.Ref,
			}
		}
		resp, err := tc.Tokenize(ctx, req)
		if err != nil {
			return partial(results), callError(err)
		}
		if got := len(resp.GetResults()); got != len(part) {
			return partial(results), &Error{Code: codes.Internal, Message: fmt.Sprintf("server returned %d results for %d items", got, len(part))}
		}
		for i, r := range resp.GetResults() {
			// Results are positional, so the caller's Ref is taken from the
			// input rather than trusting the echo.
			res := TokenResult{Ref: part[i].Ref}
			if e := r.GetError(); e != nil {
				res.Err = itemError(start+i, e)
			} else {
				res.Token = r.GetToken()
			}
			results = append(results, res)
		}
	}
	return results, nil
}

// TokenizeValue tokenizes a single value of the given class. A failed item
// is returned as its *ItemError.
func (c *Sponsor) TokenizeValue(ctx context.Context, class, value string) (string, error) {
	res, err := c.Tokenize(ctx, []Item{{Class: class, Value: value}})
	if err != nil {
		return "", err
	}
	if res[0].Err != nil {
		return "", res[0].Err
	}
	return res[0].Token, nil
}

// newIdempotencyKey returns 128 random bits, hex-encoded.
func newIdempotencyKey() (string, error) {
	var b [16]byte
	if _, err := rand.Read(b[:]); err != nil {
		return "", fmt.Errorf("client: idempotency key: %w", err)
	}
	return hex.EncodeToString(b[:]), nil
}

func itemError(index int, e *jetonv1.ItemError) *ItemError {
	return &ItemError{Index: index, Code: codes.Code(e.GetCode()), Message: e.GetMessage()}
}
