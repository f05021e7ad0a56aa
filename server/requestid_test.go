package server

import (
	"bytes"
	"context"
	"encoding/json"
	"log/slog"
	"strings"
	"testing"

	"google.golang.org/grpc"
	"google.golang.org/grpc/metadata"
)

// headerStream captures what grpc.SetHeader sends.
type headerStream struct {
	grpc.ServerTransportStream
	md metadata.MD
}

func (h *headerStream) Method() string                  { return "/jeton.v1.Tokenizer/Tokenize" }
func (h *headerStream) SetHeader(md metadata.MD) error  { h.md = metadata.Join(h.md, md); return nil }
func (h *headerStream) SendHeader(md metadata.MD) error { return h.SetHeader(md) }
func (h *headerStream) SetTrailer(metadata.MD) error    { return nil }

func TestRequestID(t *testing.T) {
	tests := []struct {
		name string
		sent []string
		keep bool // the caller's id is used
	}{
		{"none sent", nil, false},
		{"valid", []string{"req-1_A.b"}, true},
		{"64 chars", []string{strings.Repeat("a", 64)}, true},
		{"65 chars", []string{strings.Repeat("a", 65)}, false},
		{"log injection", []string{"x\n{\"msg\":\"forged\"}"}, false},
		{"space", []string{"a b"}, false},
		{"empty", []string{""}, false},
		{"two values", []string{"a", "b"}, false},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			var buf bytes.Buffer
			log := slog.New(requestIDHandler{slog.NewJSONHandler(&buf, nil)})
			ctx := context.Background()
			if tt.sent != nil {
				md := metadata.MD{}
				md[RequestIDHeader] = tt.sent
				ctx = metadata.NewIncomingContext(ctx, md)
			}
			hs := &headerStream{}
			ctx = grpc.NewContextWithServerTransportStream(ctx, hs)
			var seen string
			_, err := requestIDUnary(ctx, nil, &grpc.UnaryServerInfo{}, func(ctx context.Context, _ any) (any, error) {
				seen = RequestID(ctx)
				log.InfoContext(ctx, "handled")
				return nil, nil
			})
			if err != nil {
				t.Fatal(err)
			}
			if tt.keep && seen != tt.sent[0] {
				t.Fatalf("request id %q, want the caller's", seen)
			}
			if !tt.keep && (len(seen) != 24 || !validRequestID(seen) || tt.sent != nil && seen == tt.sent[0]) {
				t.Fatalf("request id %q, want a fresh 24-hex-digit one", seen)
			}
			if got := hs.md.Get(RequestIDHeader); len(got) != 1 || got[0] != seen {
				t.Errorf("response header %v, want [%s]", got, seen)
			}
			var line map[string]any
			if err := json.Unmarshal(buf.Bytes(), &line); err != nil {
				t.Fatalf("one JSON log line expected: %v", err)
			}
			if line["request_id"] != seen {
				t.Errorf("log line request_id %v, want %s", line["request_id"], seen)
			}
		})
	}
}
