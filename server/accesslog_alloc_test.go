package server

import (
	"context"
	"io"
	"log/slog"
	"testing"
	"time"

	"github.com/grpc-ecosystem/go-grpc-middleware/v2/interceptors"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/status"
)

// TestAccessLogCostsNothingUnwritten: a call whose line the level drops
// (a success at INFO) costs the access log its reporter and nothing more:
// no field is built for a line not written. A line that is written builds
// its fields, which this measures too, so that the first bound means
// something.
func TestAccessLogCostsNothingUnwritten(t *testing.T) {
	a := accessLog{log: slog.New(slog.NewJSONHandler(io.Discard, &slog.HandlerOptions{Level: slog.LevelInfo})), listener: "public"}
	meta := interceptors.NewServerCallMeta("/jeton.v1.Tokenizer/Tokenize", nil, nil)
	ctx := context.Background()
	call := func(err error) func() {
		return func() {
			r, _ := a.ServerReporter(ctx, meta)
			r.PostMsgReceive(nil, nil, 0)
			r.PostCall(err, time.Millisecond)
		}
	}
	if n := testing.AllocsPerRun(200, call(nil)); n > 1 {
		t.Errorf("a successful call at INFO allocates %v times in the access log, want at most 1 (its reporter)", n)
	}
	if n := testing.AllocsPerRun(200, call(status.Error(codes.PermissionDenied, "no"))); n <= 2 {
		t.Errorf("a refused call's written line allocates %v times; the measure sees no fields built", n)
	}
}
