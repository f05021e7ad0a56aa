package server

import (
	"strconv"
	"testing"

	"google.golang.org/grpc/codes"
	"google.golang.org/protobuf/proto"

	jetonv1 "github.com/jeton-dev/jeton/proto/jeton/v1"
	"github.com/jeton-dev/jeton/tokenizer"
)

// Each item gets its own outcome and client ref: a token, its item error,
// or the refusal of a class the identity may not tokenize, which has no
// entry in the tokenizer's results.
func TestTokenizeResponse(t *testing.T) {
	items := []*jetonv1.TokenizeItem{
		{FieldClass: "name", ClientRef: "ref-0"},
		{FieldClass: "secret", ClientRef: "ref-1"},
		{FieldClass: "name", ClientRef: "ref-2"},
		{FieldClass: "name"},
		{FieldClass: "secret", ClientRef: "ref-4"},
		{FieldClass: "name", ClientRef: "ref-5"},
	}
	refused := []bool{false, true, false, false, true, false}
	res := []tokenizer.Result{
		{Token: "tok_name_fake0"},
		{Err: &tokenizer.UserError{Err: tokenizer.ErrInvalidValue}},
		{Token: "tok_name_fake3"},
		{Token: "tok_name_fake5"},
	}
	want := []*jetonv1.TokenizeResult{
		{ClientRef: "ref-0", Outcome: &jetonv1.TokenizeResult_Token{Token: "tok_name_fake0"}},
		{ClientRef: "ref-1", Outcome: &jetonv1.TokenizeResult_Error{Error: &jetonv1.ItemError{Code: int32(codes.PermissionDenied), Message: toStatus(denied("class not permitted for this identity")).Message()}}},
		{ClientRef: "ref-2", Outcome: &jetonv1.TokenizeResult_Error{Error: itemError(res[1].Err)}},
		{Outcome: &jetonv1.TokenizeResult_Token{Token: "tok_name_fake3"}},
		{ClientRef: "ref-4", Outcome: &jetonv1.TokenizeResult_Error{Error: &jetonv1.ItemError{Code: int32(codes.PermissionDenied), Message: toStatus(denied("class not permitted for this identity")).Message()}}},
		{ClientRef: "ref-5", Outcome: &jetonv1.TokenizeResult_Token{Token: "tok_name_fake5"}},
	}
	out, minted := tokenizeResponse(items, refused, res)
	if minted != 3 {
		t.Errorf("minted = %d, want 3", minted)
	}
	if len(out.Results) != len(want) {
		t.Fatalf("%d results, want %d", len(out.Results), len(want))
	}
	for i := range want {
		if !proto.Equal(out.Results[i], want[i]) {
			t.Errorf("result %d = %v, want %v", i, out.Results[i], want[i])
		}
	}
	if want[2].GetError().GetCode() != int32(codes.InvalidArgument) {
		t.Errorf("a bad value's item error has code %d, want InvalidArgument", want[2].GetError().GetCode())
	}
	// The response is a message like any other: it marshals and reads back.
	b, err := proto.Marshal(out)
	if err != nil {
		t.Fatal(err)
	}
	var back jetonv1.TokenizeResponse
	if err := proto.Unmarshal(b, &back); err != nil || !proto.Equal(&back, out) {
		t.Fatalf("the response does not round-trip: %v", err)
	}
}

// BenchmarkTokenizeResponse measures building the response of a batch of
// 1,000 minted items, and reports the cost per item.
func BenchmarkTokenizeResponse(b *testing.B) {
	const n = 1000
	items := make([]*jetonv1.TokenizeItem, n)
	res := make([]tokenizer.Result, n)
	for i := range items {
		items[i] = &jetonv1.TokenizeItem{FieldClass: "name", ClientRef: "ref-" + strconv.Itoa(i)}
		res[i].Token = "tok_name_fake" + strconv.Itoa(i)
	}
	refused := make([]bool, n)
	b.ReportAllocs()
	for b.Loop() {
		if out, minted := tokenizeResponse(items, refused, res); minted != n || len(out.Results) != n {
			b.Fatal("short response")
		}
	}
	b.ReportMetric(float64(b.Elapsed().Nanoseconds())/float64(b.N*n), "ns/item")
}
