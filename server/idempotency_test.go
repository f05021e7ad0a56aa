package server_test

import (
	"slices"
	"strings"
	"testing"

	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/status"

	jetonv1 "github.com/jeton-dev/jeton/proto/jeton/v1"
)

// TestIdempotencyKeyReusedIsRefused: over gRPC, a retry under the same
// idempotency key gets the same tokens, and the same key with other items
// is refused with INVALID_ARGUMENT, a message that names the key's reuse
// and no value, and no token.
func TestIdempotencyKeyReusedIsRefused(t *testing.T) {
	e := startEnv(t, envOpts{})
	cc := jetonv1.NewTokenizerClient(e.sponsorConn(t))
	items := func(values ...string) []*jetonv1.TokenizeItem {
		var out []*jetonv1.TokenizeItem
		for _, v := range values {
			out = append(out, &jetonv1.TokenizeItem{FieldClass: "name", Value: useValue(v), SubjectId: "guest-0001"})
		}
		return out
	}
	call := func(key string, it []*jetonv1.TokenizeItem) ([]string, error) {
		res, err := cc.Tokenize(ctx(t), &jetonv1.TokenizeRequest{Items: it, IdempotencyKey: key})
		if err != nil {
			return nil, err
		}
		var toks []string
		for _, r := range res.GetResults() {
			if r.GetToken() == "" {
				t.Fatalf("an item failed: %v", r.GetError())
			}
			toks = append(toks, r.GetToken())
		}
		return toks, nil
	}
	first, err := call("csv-run-0001/0", items("Anne Testperson", "Bob Example"))
	if err != nil {
		t.Fatal(err)
	}
	again, err := call("csv-run-0001/0", items("Anne Testperson", "Bob Example"))
	if err != nil || !slices.Equal(again, first) {
		t.Fatalf("a retry under the same key: %v; want the same tokens", err)
	}
	for _, changed := range [][]*jetonv1.TokenizeItem{
		items("Anne Testperson", "Carol Example"),
		items("Bob Example", "Anne Testperson"),
		items("Anne Testperson"),
	} {
		res, err := cc.Tokenize(ctx(t), &jetonv1.TokenizeRequest{Items: changed, IdempotencyKey: "csv-run-0001/0"})
		if status.Code(err) != codes.InvalidArgument || res != nil {
			t.Fatalf("the same key with other items: %v; want INVALID_ARGUMENT", err)
		}
		msg := status.Convert(err).Message()
		if !strings.Contains(msg, "idempotency key already used") || !strings.Contains(msg, "send new items under a new idempotency key") {
			t.Errorf("the refusal does not say the key was reused and what to do: %q", msg)
		}
		for _, v := range []string{"Anne", "Bob", "Carol", "guest-0001", "csv-run"} {
			if strings.Contains(msg, v) {
				t.Fatalf("the refusal quotes the request (%d-byte string)", len(v))
			}
		}
	}
	// A new key serves the new items.
	if _, err := call("csv-run-0001/1", items("Anne Testperson", "Carol Example")); err != nil {
		t.Fatalf("new items under a new key: %v", err)
	}
}
