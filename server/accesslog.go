package server

import (
	"context"
	"log/slog"
	"strconv"
	"time"

	"github.com/grpc-ecosystem/go-grpc-middleware/v2/interceptors"
	"github.com/grpc-ecosystem/go-grpc-middleware/v2/interceptors/logging"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/status"
)

// accessLog is the per-call access log: one "finished call" line for each
// call, at DEBUG when it succeeded and otherwise at the level
// go-grpc-middleware gives its code (INFO for a caller's mistake or an
// unknown token, WARN for a refusal, a deadline or a backend down, ERROR
// for a failure of ours). At the default level, INFO, a successful call
// writes no line; every refused or failed one does. Log level debug lists
// every call. README "Logs" documents it for operators.
//
// The line names the listener, the method, the code, the duration, the
// peer address and the certificate's identity, and the log handler adds the
// request id; never a request or response field, and the error only as
// the status message the caller got, which never holds a value.
//
// It is a reporter on go-grpc-middleware's interceptors framework rather
// than that library's logging interceptor, because the latter builds its
// fields on every call (the start time formatted, the peer address, the
// fields injected into the context, several copies of the field list)
// before it knows whether the line is written. That was a fifth of the
// bytes a unary call allocated, for a line the default level then drops.
// This one pays for fields only when the line is written.
type accessLog struct {
	log      *slog.Logger
	listener string
}

func (a accessLog) ServerReporter(ctx context.Context, c interceptors.CallMeta) (interceptors.Reporter, context.Context) {
	return &accessReporter{a: a, ctx: ctx, meta: c}, ctx
}

type accessReporter struct {
	interceptors.NoopReporter
	a    accessLog
	ctx  context.Context
	meta interceptors.CallMeta
}

func (r *accessReporter) PostCall(err error, d time.Duration) {
	code := status.Code(err)
	lvl := accessLevel(code)
	if !r.a.log.Enabled(r.ctx, lvl) {
		return
	}
	attrs := make([]slog.Attr, 0, 9)
	attrs = append(attrs,
		slog.String("listener", r.a.listener),
		slog.String("grpc.service", r.meta.Service),
		slog.String("grpc.method", r.meta.Method),
		slog.String("grpc.method_type", string(r.meta.Typ)),
		slog.String("grpc.code", code.String()),
		slog.String("grpc.time_ms", strconv.FormatFloat(float64(d)/float64(time.Millisecond), 'f', 3, 64)),
	)
	if addr := peerAddr(r.ctx); addr != "" {
		attrs = append(attrs, slog.String("peer.address", addr))
	}
	// The certificate's identity: the principal is attached further in,
	// and a refused caller has none.
	if id, ok := certIdentity(r.ctx); ok {
		attrs = append(attrs, slog.String("identity", id))
	}
	if err != nil {
		// The caller's message: toStatus keeps values and internal
		// detail out of it.
		attrs = append(attrs, slog.String("grpc.error", status.Convert(err).Message()))
	}
	r.a.log.LogAttrs(r.ctx, lvl, "finished call", attrs...)
}

// accessLevel is the level of a finished call's line: DEBUG for success,
// go-grpc-middleware's server default for every other code.
func accessLevel(code codes.Code) slog.Level {
	if code == codes.OK {
		return slog.LevelDebug
	}
	return slog.Level(logging.DefaultServerCodeToLevel(code))
}
