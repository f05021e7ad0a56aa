package server

import (
	"context"
	"crypto/rand"
	"encoding/hex"
	"log/slog"

	middleware "github.com/grpc-ecosystem/go-grpc-middleware/v2"
	"google.golang.org/grpc"
	"google.golang.org/grpc/metadata"
)

// RequestIDHeader is the metadata key that carries a call's request id, in
// both directions: a caller may send one, and every answer carries the one
// used.
const RequestIDHeader = "x-request-id"

// maxRequestIDLen bounds a caller's request id.
const maxRequestIDLen = 64

type requestIDKey struct{}

// RequestID returns the request id of the call ctx belongs to, or "".
func RequestID(ctx context.Context) string {
	id, _ := ctx.Value(requestIDKey{}).(string)
	return id
}

// validRequestID accepts [A-Za-z0-9._-]{1,64}. Anything else is replaced,
// not cleaned up: a request id goes into every log line of the call, so it
// must not be a way to inject text (or a value) into the logs.
func validRequestID(s string) bool {
	if len(s) == 0 || len(s) > maxRequestIDLen {
		return false
	}
	for i := 0; i < len(s); i++ {
		c := s[i]
		if !('a' <= c && c <= 'z' || 'A' <= c && c <= 'Z' || '0' <= c && c <= '9' || c == '-' || c == '_' || c == '.') {
			return false
		}
	}
	return true
}

// newRequestID returns 96 random bits in hex.
func newRequestID() string {
	var b [12]byte
	_, _ = rand.Read(b[:]) // crypto/rand.Read never fails
	return hex.EncodeToString(b[:])
}

// requestIDFor takes the caller's id when it is valid, or makes one.
func requestIDFor(ctx context.Context) string {
	// One key's values, not FromIncomingContext's copy of every header.
	if v := metadata.ValueFromIncomingContext(ctx, RequestIDHeader); len(v) == 1 && validRequestID(v[0]) {
		return v[0]
	}
	return newRequestID()
}

func requestIDUnary(ctx context.Context, req any, _ *grpc.UnaryServerInfo, handler grpc.UnaryHandler) (any, error) {
	id := requestIDFor(ctx)
	ctx = context.WithValue(ctx, requestIDKey{}, id)
	// Sent with the response headers (or with the status if the call
	// fails first), so a caller can quote it to an operator.
	_ = grpc.SetHeader(ctx, metadata.MD{RequestIDHeader: {id}})
	return handler(ctx, req)
}

func requestIDStream(srv any, ss grpc.ServerStream, _ *grpc.StreamServerInfo, handler grpc.StreamHandler) error {
	id := requestIDFor(ss.Context())
	_ = ss.SetHeader(metadata.MD{RequestIDHeader: {id}})
	w := middleware.WrapServerStream(ss)
	w.WrappedContext = context.WithValue(ss.Context(), requestIDKey{}, id)
	return handler(srv, w)
}

// requestIDHandler adds the call's request id to every record logged with
// the call's context: the logging interceptor's line and the handlers' own
// lines alike, so one id ties them together.
type requestIDHandler struct{ slog.Handler }

func (h requestIDHandler) Handle(ctx context.Context, r slog.Record) error {
	if id := RequestID(ctx); id != "" {
		r.AddAttrs(slog.String("request_id", id))
	}
	return h.Handler.Handle(ctx, r)
}

func (h requestIDHandler) WithAttrs(as []slog.Attr) slog.Handler {
	return requestIDHandler{h.Handler.WithAttrs(as)}
}

func (h requestIDHandler) WithGroup(name string) slog.Handler {
	return requestIDHandler{h.Handler.WithGroup(name)}
}
