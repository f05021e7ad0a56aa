package server

import (
	"context"
	"log/slog"

	"google.golang.org/grpc/codes"

	jetonv1 "github.com/jeton-dev/jeton/proto/jeton/v1"
	"github.com/jeton-dev/jeton/tokenizer"
)

// tokenizerService serves Tokenize on the public listener.
type tokenizerService struct {
	jetonv1.UnimplementedTokenizerServer
	s *Server
}

func (ts *tokenizerService) Tokenize(ctx context.Context, req *jetonv1.TokenizeRequest) (*jetonv1.TokenizeResponse, error) {
	p, ok := principalFrom(ctx)
	if !ok || !p.Tokenizes() {
		return nil, rpcError(denied("identity may not tokenize"))
	}
	if n := len(req.GetItems()); n > ts.s.maxBatch {
		return nil, rpcError(invalid("too many items in one call"))
	}
	items := make([]tokenizer.Item, len(req.GetItems()))
	refused := make([]bool, len(items))
	allowed := make([]tokenizer.Item, 0, len(items))
	for i, it := range req.GetItems() {
		items[i] = tokenizer.Item{Class: it.GetFieldClass(), Value: it.GetValue(), Subject: it.GetSubjectId()}
		if !p.CanTokenize(it.GetFieldClass()) {
			refused[i] = true
			continue
		}
		allowed = append(allowed, items[i])
	}
	if err := ts.s.admitTokenize(ctx, p, p.Tenants[0], allowed); err != nil {
		return nil, rpcError(err)
	}
	// The idempotency key is scoped to the caller, so two callers can never
	// collide or read each other's tokens through it.
	var idem string
	if k := req.GetIdempotencyKey(); k != "" {
		idem = p.ID + "\x00" + k
	}
	res, err := ts.s.tok.Tokenize(ctx, p.Tenants[0], allowed, idem)
	if err != nil {
		return nil, rpcError(err)
	}
	out, minted := tokenizeResponse(req.GetItems(), refused, res)
	ts.s.metrics.countTokenized(req.GetItems(), out.Results)
	if ts.s.log.Enabled(ctx, slog.LevelDebug) {
		ts.s.log.DebugContext(ctx, "tokenized", "identity", p.ID, "items", len(items), "tokens", minted)
	}
	return out, nil
}

// tokenizeResponse gives each item its outcome: refused[i] marks an item
// the identity may not tokenize, and res holds the outcomes of the others,
// in order. It also returns how many tokens were minted. The results and
// their token outcomes are allocated together, two arrays per call rather
// than two objects per item: a batch's response is garbage as soon as it
// is sent.
func tokenizeResponse(items []*jetonv1.TokenizeItem, refused []bool, res []tokenizer.Result) (*jetonv1.TokenizeResponse, int) {
	out := &jetonv1.TokenizeResponse{Results: make([]*jetonv1.TokenizeResult, len(items))}
	results := make([]jetonv1.TokenizeResult, len(items))
	tokens := make([]jetonv1.TokenizeResult_Token, len(res))
	j := 0
	var minted int
	for i, it := range items {
		r := &results[i]
		r.ClientRef = it.GetClientRef()
		out.Results[i] = r
		if refused[i] {
			r.Outcome = &jetonv1.TokenizeResult_Error{Error: itemError(denied("class not permitted for this identity"))}
			continue
		}
		if res[j].Err != nil {
			r.Outcome = &jetonv1.TokenizeResult_Error{Error: itemError(res[j].Err)}
		} else {
			tokens[j].Token = res[j].Token
			r.Outcome = &tokens[j]
			minted++
		}
		j++
	}
	return out, minted
}

func itemError(err error) *jetonv1.ItemError {
	st := toStatus(err)
	if st.Code() == codes.OK {
		return nil
	}
	return &jetonv1.ItemError{Code: int32(st.Code()), Message: st.Message()}
}
