package server_test

import (
	"bufio"
	"bytes"
	"encoding/json"
	"log/slog"
	"strings"
	"sync"
	"testing"

	"google.golang.org/grpc/codes"
	healthpb "google.golang.org/grpc/health/grpc_health_v1"

	jetonv1 "github.com/jeton-dev/jeton/proto/jeton/v1"
	"github.com/jeton-dev/jeton/server"
	"github.com/jeton-dev/jeton/server/devpki"
)

// syncBuffer is a log sink tests read while servers write to it.
type syncBuffer struct {
	mu  sync.Mutex
	buf bytes.Buffer
}

func (b *syncBuffer) Write(p []byte) (int, error) {
	b.mu.Lock()
	defer b.mu.Unlock()
	return b.buf.Write(p)
}

func (b *syncBuffer) String() string {
	b.mu.Lock()
	defer b.mu.Unlock()
	return b.buf.String()
}

// finishedCalls returns the access log's lines in JSON logs.
func finishedCalls(t testing.TB, logs string) []map[string]any {
	t.Helper()
	var out []map[string]any
	sc := bufio.NewScanner(strings.NewReader(logs))
	sc.Buffer(nil, 1<<20)
	for sc.Scan() {
		var ev map[string]any
		if err := json.Unmarshal(sc.Bytes(), &ev); err != nil {
			t.Fatalf("a log line is not JSON: %v", err)
		}
		if ev["msg"] == "finished call" {
			out = append(out, ev)
		}
	}
	return out
}

// TestAccessLog: at the default level (info) a successful call writes no
// line and a refused one writes one, naming the call and never a value; at
// debug every call has its line.
func TestAccessLog(t *testing.T) {
	const value = "access.log.test@example.org" // checked here, not by TestMain
	tests := []struct {
		level slog.Level
		// want are the lines expected, as method and code, in order.
		want []string
	}{
		{slog.LevelInfo, []string{"Detokenize PermissionDenied"}},
		{slog.LevelDebug, []string{"Tokenize OK", "Check OK", "Detokenize PermissionDenied"}},
	}
	for _, tt := range tests {
		t.Run(tt.level.String(), func(t *testing.T) {
			logs := &syncBuffer{}
			e := startEnv(t, envOpts{tune: func(c *server.Config, _ *devpki.Bundle) {
				c.Logger = slog.New(slog.NewJSONHandler(logs, &slog.HandlerOptions{Level: tt.level}))
			}})
			sc := e.sponsorConn(t)
			res, err := jetonv1.NewTokenizerClient(sc).Tokenize(ctx(t), &jetonv1.TokenizeRequest{
				Items: []*jetonv1.TokenizeItem{{FieldClass: "email", Value: value}},
			})
			if err != nil {
				t.Fatal(err)
			}
			if _, err := healthpb.NewHealthClient(sc).Check(ctx(t), &healthpb.HealthCheckRequest{}); err != nil {
				t.Fatal(err)
			}
			_, err = jetonv1.NewDetokenizerClient(e.ttpConn(t)).Detokenize(ctx(t), &jetonv1.DetokenizeRequest{
				Tokens: []string{res.GetResults()[0].GetToken()}, Purpose: "no-such-purpose",
			})
			if code(err) != codes.PermissionDenied {
				t.Fatalf("Detokenize with an unknown purpose: %v, want PermissionDenied", err)
			}

			text := logs.String()
			if strings.Contains(text, value) {
				t.Fatal("the value reached the log")
			}
			lines := finishedCalls(t, text)
			var got []string
			for _, l := range lines {
				got = append(got, l["grpc.method"].(string)+" "+l["grpc.code"].(string))
			}
			if strings.Join(got, ", ") != strings.Join(tt.want, ", ") {
				t.Fatalf("access log lines %q, want %q", got, tt.want)
			}
			refused := lines[len(lines)-1]
			for k, want := range map[string]any{
				"level": "WARN", "listener": "trusted", "grpc.service": "jeton.v1.Detokenizer",
				"grpc.method_type": "unary", "identity": devpki.TTPID,
				"grpc.error": "purpose not permitted for this identity",
			} {
				if refused[k] != want {
					t.Errorf("refused call's line: %s = %v, want %v", k, refused[k], want)
				}
			}
			for _, k := range []string{"peer.address", "request_id", "grpc.time_ms"} {
				if s, _ := refused[k].(string); s == "" {
					t.Errorf("refused call's line has no %s", k)
				}
			}
			if tt.level == slog.LevelDebug {
				if ok := lines[0]; ok["level"] != "DEBUG" || ok["listener"] != "public" || ok["identity"] != devpki.SponsorID {
					t.Errorf("successful call's line: %v", ok)
				}
			}
		})
	}
}
