package client_test

import (
	"context"
	"crypto/tls"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/status"

	"github.com/jeton-dev/jeton/client"
	jetonv1 "github.com/jeton-dev/jeton/proto/jeton/v1"
)

// newClient returns a client for addr with p's "app" identity, closed at the
// end of the test.
func newClient(t testing.TB, addr string, p *pki, opts ...client.Option) *client.Client {
	t.Helper()
	files := p.clients["app"]
	opts = append([]client.Option{client.WithTLSFiles(p.caFile, files[0], files[1])}, opts...)
	c, err := client.New(addr, opts...)
	if err != nil {
		t.Fatalf("New: %v", err)
	}
	t.Cleanup(func() { c.Close() })
	return c
}

func keys(calls []call) []string {
	var out []string
	for _, c := range calls {
		out = append(out, c.req.(*jetonv1.TokenizeRequest).GetIdempotencyKey())
	}
	return out
}

func TestTokenizeChunksInOrder(t *testing.T) {
	p := newTestPKI(t)
	s := newStub()
	addr := startStub(t, s, p)
	c := newClient(t, addr, p, client.WithBatchSize(1000))

	items := make([]client.Item, 2500)
	for i := range items {
		items[i] = client.Item{Class: "email", Value: fmt.Sprintf("guest%d@example.org", i), Ref: fmt.Sprintf("row-%d", i)}
	}
	got, err := c.Tokenize(context.Background(), items)
	if err != nil {
		t.Fatalf("Tokenize: %v", err)
	}
	if len(got) != len(items) {
		t.Fatalf("got %d results, want %d", len(got), len(items))
	}
	for i, r := range got {
		v, ok := s.lookup(r.Token)
		if r.Err != nil || r.Ref != items[i].Ref || !ok || v.value != items[i].Value {
			t.Fatalf("result %d: ref %q, err %v, token maps to item? %v; want ref %q and its own token", i, r.Ref, r.Err, ok && v.value == items[i].Value, items[i].Ref)
		}
	}

	calls := s.recorded("Tokenize")
	var sizes []int
	for _, c := range calls {
		sizes = append(sizes, len(c.req.(*jetonv1.TokenizeRequest).GetItems()))
	}
	if fmt.Sprint(sizes) != "[1000 1000 500]" {
		t.Errorf("chunk sizes = %v, want [1000 1000 500]", sizes)
	}
	k := keys(calls)
	base, _, _ := strings.Cut(k[0], "/")
	if len(base) != 32 { // 128 bits, hex
		t.Errorf("key base %q is not 128 bits in hex", base)
	}
	for i, key := range k {
		if want := fmt.Sprintf("%s/%d", base, i); key != want {
			t.Errorf("chunk %d key = %q, want %q", i, key, want)
		}
	}

	// A second call must not reuse the first call's keys, or the server
	// would replay the first call's tokens.
	if _, err := c.Tokenize(context.Background(), items[:1]); err != nil {
		t.Fatal(err)
	}
	k = keys(s.recorded("Tokenize"))
	if strings.HasPrefix(k[3], base) {
		t.Errorf("second call reused key base %q", base)
	}
}

func TestRetry(t *testing.T) {
	invalid := status.Error(codes.InvalidArgument, "bad request")
	tests := []struct {
		name      string
		opts      []client.Option
		failFirst int
		err       error
		wantCalls int
		wantErr   error
	}{
		{"unavailable once is retried", []client.Option{client.WithRetry(3, time.Millisecond)}, 1, errUnavailable, 2, nil},
		{"gives up after max retries", []client.Option{client.WithRetry(2, time.Millisecond)}, 100, errUnavailable, 3, client.ErrUnavailable},
		{"invalid argument is not retried", []client.Option{client.WithRetry(3, time.Millisecond)}, 1, invalid, 1, client.ErrInvalidArgument},
		{"resource exhausted is not retried", []client.Option{client.WithRetry(3, time.Millisecond)}, 1, status.Error(codes.ResourceExhausted, "budget"), 1, client.ErrResourceExhausted},
		{"no retry by default", nil, 1, errUnavailable, 1, client.ErrUnavailable},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			p := newTestPKI(t)
			s := newStub()
			s.before = failTimes(tt.failFirst, tt.err)
			c := newClient(t, startStub(t, s, p), p, tt.opts...)

			_, err := c.TokenizeValue(context.Background(), "email", "anne@example.org")
			if !errors.Is(err, tt.wantErr) || (tt.wantErr == nil) != (err == nil) {
				t.Errorf("err = %v, want %v", err, tt.wantErr)
			}
			k := keys(s.recorded("Tokenize"))
			if len(k) != tt.wantCalls {
				t.Fatalf("server saw %d calls, want %d", len(k), tt.wantCalls)
			}
			for _, key := range k {
				if key != k[0] {
					t.Errorf("retry sent key %q, first attempt sent %q", key, k[0])
				}
			}
		})
	}
}

// A retried chunk resends its own key; the other chunks keep theirs.
func TestRetryChunkKeepsKey(t *testing.T) {
	p := newTestPKI(t)
	s := newStub()
	s.before = func(_ context.Context, _ string, n int) error {
		if n == 2 { // first attempt of the second chunk
			return errUnavailable
		}
		return nil
	}
	c := newClient(t, startStub(t, s, p), p, client.WithBatchSize(2), client.WithRetry(1, time.Millisecond))
	items := []client.Item{
		{Class: "email", Value: "anne@example.org"}, {Class: "email", Value: "bob@example.org"},
		{Class: "email", Value: "carol@example.org"}, {Class: "email", Value: "dan@example.org"},
		{Class: "email", Value: "eve@example.org"},
	}
	if _, err := c.Tokenize(context.Background(), items); err != nil {
		t.Fatal(err)
	}
	k := keys(s.recorded("Tokenize"))
	base, _, _ := strings.Cut(k[0], "/")
	want := []string{base + "/0", base + "/1", base + "/1", base + "/2"}
	if fmt.Sprint(k) != fmt.Sprint(want) {
		t.Errorf("keys = %v, want %v", k, want)
	}
}

var allSentinels = map[codes.Code]error{
	codes.NotFound:          client.ErrNotFound,
	codes.InvalidArgument:   client.ErrInvalidArgument,
	codes.PermissionDenied:  client.ErrPermissionDenied,
	codes.Unavailable:       client.ErrUnavailable,
	codes.ResourceExhausted: client.ErrResourceExhausted,
	codes.Unauthenticated:   client.ErrUnauthenticated,
}

// checkSentinel fails unless err matches exactly the sentinel for code.
func checkSentinel(t testing.TB, err error, code codes.Code) {
	t.Helper()
	for c, sentinel := range allSentinels {
		if got := errors.Is(err, sentinel); got != (c == code) {
			t.Errorf("errors.Is(%v, %v) = %v, want %v", err, sentinel, got, c == code)
		}
	}
}

func TestCallErrors(t *testing.T) {
	for code := range allSentinels {
		t.Run(code.String(), func(t *testing.T) {
			p := newTestPKI(t)
			s := newStub()
			s.before = failTimes(1, status.Error(code, "server says no"))
			c := newClient(t, startStub(t, s, p), p)

			_, err := c.Detokenize(context.Background(), []string{"tk-1"}, "vetting", "case-1")
			checkSentinel(t, err, code)
			var e *client.Error
			if !errors.As(err, &e) || e.Code != code || e.Message != "server says no" {
				t.Errorf("err = %#v, want *client.Error{%v, server's message}", err, code)
			}
			if status.Code(err) != code {
				t.Errorf("status.Code(err) = %v, want %v", status.Code(err), code)
			}
		})
	}
}

func TestItemErrors(t *testing.T) {
	for code := range allSentinels {
		t.Run(code.String(), func(t *testing.T) {
			p := newTestPKI(t)
			s := newStub()
			s.itemCodes = map[string]codes.Code{"fail@example.org": code}
			c := newClient(t, startStub(t, s, p), p, client.WithBatchSize(2))
			items := []client.Item{
				{Class: "email", Value: "anne@example.org", Ref: "a"}, {Class: "email", Value: "bob@example.org", Ref: "b"},
				{Class: "email", Value: "carol@example.org", Ref: "c"}, {Class: "email", Value: "fail@example.org", Ref: "d"},
			}
			got, err := c.Tokenize(context.Background(), items)
			if err != nil {
				t.Fatal(err)
			}
			for i, r := range got[:3] {
				if r.Err != nil || r.Token == "" {
					t.Errorf("item %d: token %q, err %v; want a token", i, r.Token, r.Err)
				}
			}
			var ie *client.ItemError
			if !errors.As(got[3].Err, &ie) || ie.Index != 3 || ie.Code != code || ie.Message != "server says no" || got[3].Token != "" || got[3].Ref != "d" {
				t.Fatalf("item 3 = %+v, want *ItemError at index 3 (across chunks) with %v, ref d", got[3], code)
			}
			checkSentinel(t, got[3].Err, code)

			_, err = c.TokenizeValue(context.Background(), "email", "fail@example.org")
			if !errors.As(err, &ie) || ie.Index != 0 {
				t.Errorf("TokenizeValue err = %v, want the item's *ItemError", err)
			}
			checkSentinel(t, err, code)
		})
	}
}

func TestReveal(t *testing.T) {
	p := newTestPKI(t)
	s := newStub()
	c := newClient(t, startStub(t, s, p), p, client.WithBatchSize(2))
	ctx := context.Background()
	emailTok, err := c.TokenizeValue(ctx, "email", "anne@example.org")
	if err != nil {
		t.Fatal(err)
	}
	passTok, err := c.TokenizeValue(ctx, "passport", "X1234567")
	if err != nil {
		t.Fatal(err)
	}
	tokens := []string{emailTok, "tk-unknown", passTok}

	tests := []struct {
		name   string
		reveal func(context.Context, []string, string, string) ([]client.RevealResult, error)
		want   []client.RevealResult // Err compared by code only
	}{
		{"detokenize", c.Detokenize, []client.RevealResult{
			{Token: emailTok, Value: "anne@example.org", Class: "email"},
			{Token: "tk-unknown", Err: &client.ItemError{Index: 1, Code: codes.NotFound}},
			{Token: passTok, Value: "X***", Class: "passport", Masked: true},
		}},
		{"mask", c.Mask, []client.RevealResult{
			{Token: emailTok, Value: "a***", Class: "email", Masked: true},
			{Token: "tk-unknown", Err: &client.ItemError{Index: 1, Code: codes.NotFound}},
			{Token: passTok, Value: "X***", Class: "passport", Masked: true},
		}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			got, err := tt.reveal(ctx, tokens, "vetting", "case-2031-0042")
			if err != nil {
				t.Fatal(err)
			}
			if len(got) != len(tt.want) {
				t.Fatalf("got %d results, want %d", len(got), len(tt.want))
			}
			for i, w := range tt.want {
				g := got[i]
				var ie *client.ItemError
				if w.Err != nil {
					wantIE := w.Err.(*client.ItemError)
					if !errors.As(g.Err, &ie) || ie.Index != wantIE.Index || ie.Code != wantIE.Code || g.Value != "" {
						t.Errorf("result %d = %+v, want item error %v at index %d", i, g, wantIE.Code, wantIE.Index)
					}
					checkSentinel(t, g.Err, wantIE.Code)
					continue
				}
				if g != w {
					t.Errorf("result %d = %+v, want %+v", i, g, w)
				}
			}
		})
	}

	got, err := c.DetokenizeValue(ctx, emailTok, "vetting", "")
	if err != nil || got != "anne@example.org" {
		t.Errorf("DetokenizeValue = %q, %v; want the email", got, err)
	}
	if _, err := c.DetokenizeValue(ctx, "tk-unknown", "vetting", ""); !errors.Is(err, client.ErrNotFound) {
		t.Errorf("DetokenizeValue(unknown) err = %v, want ErrNotFound", err)
	}
	for _, r := range s.recorded("Detokenize") {
		if cr := r.req.(*jetonv1.DetokenizeRequest).GetCaseRef(); cr != "case-2031-0042" && cr != "" {
			t.Errorf("case ref sent = %q", cr)
		}
	}
}

// Inputs the client can judge itself never reach the server.
func TestNoCallNeeded(t *testing.T) {
	p := newTestPKI(t)
	s := newStub()
	c := newClient(t, startStub(t, s, p), p)
	ctx := context.Background()

	tests := []struct {
		name    string
		call    func() (int, error)
		wantErr error
	}{
		{"detokenize without purpose", func() (int, error) {
			r, err := c.Detokenize(ctx, []string{"tk-1"}, "", "case-1")
			return len(r), err
		}, client.ErrInvalidArgument},
		{"mask without purpose", func() (int, error) {
			r, err := c.Mask(ctx, []string{"tk-1"}, "", "case-1")
			return len(r), err
		}, client.ErrInvalidArgument},
		{"detokenize value without purpose", func() (int, error) {
			_, err := c.DetokenizeValue(ctx, "tk-1", "", "")
			return 0, err
		}, client.ErrInvalidArgument},
		{"tokenize nothing", func() (int, error) {
			r, err := c.Tokenize(ctx, nil)
			return len(r), err
		}, nil},
		{"detokenize nothing", func() (int, error) {
			r, err := c.Detokenize(ctx, nil, "vetting", "")
			return len(r), err
		}, nil},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			n, err := tt.call()
			if !errors.Is(err, tt.wantErr) || (tt.wantErr == nil) != (err == nil) {
				t.Errorf("err = %v, want %v", err, tt.wantErr)
			}
			if n != 0 {
				t.Errorf("got %d results, want none", n)
			}
		})
	}
	s.mu.Lock()
	defer s.mu.Unlock()
	if len(s.calls) != 0 {
		t.Errorf("server saw %d calls, want none", len(s.calls))
	}
}

func TestTLS(t *testing.T) {
	p := newTestPKI(t)
	other := newTestPKI(t) // a CA the server does not trust, and vice versa
	app, otherApp := p.clients["app"], other.clients["app"]
	tls12 := func(cfg *tls.Config) { cfg.MinVersion, cfg.MaxVersion = tls.VersionTLS12, tls.VersionTLS12 }
	tlsAny := func(cfg *tls.Config) { cfg.MinVersion = tls.VersionTLS12 }
	appConfig := func() *tls.Config {
		cfg := &tls.Config{MinVersion: tls.VersionTLS12}
		cert, err := tls.LoadX509KeyPair(app[0], app[1])
		if err != nil {
			t.Fatal(err)
		}
		cfg.Certificates = []tls.Certificate{cert}
		cfg.RootCAs = p.pool
		return cfg
	}

	tests := []struct {
		name    string
		server  func(*tls.Config)
		opt     client.Option
		wantErr error
	}{
		{"mutual TLS 1.3 works", nil, client.WithTLSFiles(p.caFile, app[0], app[1]), nil},
		{"caller config works", tlsAny, client.WithTLSConfig(appConfig()), nil},
		{"server limited to TLS 1.2", tls12, client.WithTLSFiles(p.caFile, app[0], app[1]), client.ErrUnavailable},
		{"caller config allowing TLS 1.2 is raised to 1.3", tls12, client.WithTLSConfig(appConfig()), client.ErrUnavailable},
		{"wrong CA", nil, client.WithTLSFiles(other.caFile, otherApp[0], otherApp[1]), client.ErrUnavailable},
		{"right CA but unknown client cert", nil, client.WithTLSFiles(p.caFile, otherApp[0], otherApp[1]), client.ErrCertificateNotAccepted},
		{"no client cert", nil, client.WithTLSConfig(&tls.Config{RootCAs: p.pool}), client.ErrCertificateNotAccepted},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			var adjust []func(*tls.Config)
			if tt.server != nil {
				adjust = append(adjust, tt.server)
			}
			s := newStub()
			addr := startStub(t, s, p, adjust...)
			c, err := client.New(addr, tt.opt)
			if err != nil {
				t.Fatalf("New: %v", err)
			}
			defer c.Close()
			_, err = c.TokenizeValue(context.Background(), "email", "anne@example.org")
			if !errors.Is(err, tt.wantErr) || (tt.wantErr == nil) != (err == nil) {
				t.Fatalf("err = %v, want %v", err, tt.wantErr)
			}
			if n := len(s.recorded("Tokenize")); (tt.wantErr == nil) != (n == 1) {
				t.Errorf("server handled %d calls", n)
			}
		})
	}

	cfg := appConfig()
	c, err := client.New("127.0.0.1:1", client.WithTLSConfig(cfg))
	if err != nil {
		t.Fatal(err)
	}
	c.Close()
	if cfg.MinVersion != tls.VersionTLS12 {
		t.Errorf("WithTLSConfig changed the caller's config: MinVersion = %x", cfg.MinVersion)
	}
}

func TestNewOptionErrors(t *testing.T) {
	p := newTestPKI(t)
	app := p.clients["app"]
	dir := t.TempDir()
	missing := filepath.Join(dir, "missing.pem")
	notPEM := filepath.Join(dir, "not-pem.pem")
	// Content that must never be echoed.
	if err := os.WriteFile(notPEM, []byte("anne@example.org secret"), 0o600); err != nil {
		t.Fatal(err)
	}

	tests := []struct {
		name     string
		opts     []client.Option
		wantText []string
	}{
		{"no TLS", nil, []string{"WithTLSFiles or WithTLSConfig"}},
		{"empty CA name", []client.Option{client.WithTLSFiles("", app[0], app[1])}, []string{"WithTLSFiles", "caFile"}},
		{"empty key name", []client.Option{client.WithTLSFiles(p.caFile, app[0], "")}, []string{"WithTLSFiles", "keyFile"}},
		{"missing CA", []client.Option{client.WithTLSFiles(missing, app[0], app[1])}, []string{"WithTLSFiles", missing}},
		{"missing cert", []client.Option{client.WithTLSFiles(p.caFile, missing, app[1])}, []string{"WithTLSFiles", missing}},
		{"missing key", []client.Option{client.WithTLSFiles(p.caFile, app[0], missing)}, []string{"WithTLSFiles", missing}},
		{"CA not PEM", []client.Option{client.WithTLSFiles(notPEM, app[0], app[1])}, []string{"WithTLSFiles", notPEM}},
		{"key not PEM", []client.Option{client.WithTLSFiles(p.caFile, app[0], notPEM)}, []string{"WithTLSFiles", notPEM}},
		{"nil config", []client.Option{client.WithTLSConfig(nil)}, []string{"WithTLSConfig"}},
		{"zero timeout", []client.Option{client.WithTLSFiles(p.caFile, app[0], app[1]), client.WithTimeout(0)}, []string{"WithTimeout"}},
		{"zero batch", []client.Option{client.WithTLSFiles(p.caFile, app[0], app[1]), client.WithBatchSize(0)}, []string{"WithBatchSize"}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			c, err := client.New("127.0.0.1:1", tt.opts...)
			if err == nil {
				c.Close()
				t.Fatal("New succeeded, want an error")
			}
			for _, w := range tt.wantText {
				if !strings.Contains(err.Error(), w) {
					t.Errorf("error %q does not name %q", err, w)
				}
			}
			if strings.Contains(err.Error(), "anne@example.org") {
				t.Errorf("error quotes the file's content: %q", err)
			}
		})
	}
}

func TestTimeout(t *testing.T) {
	p := newTestPKI(t)
	s := newStub()
	block := make(chan struct{})
	s.before = func(ctx context.Context, _ string, n int) error {
		if n == 1 {
			// A stalled server: only the deadline ends the call.
			select {
			case <-ctx.Done():
				// Whichever side notices the deadline first, the
				// call fails with DeadlineExceeded.
				return status.FromContextError(ctx.Err()).Err()
			case <-block:
			}
		}
		return nil
	}
	defer close(block)
	addr := startStub(t, s, p)

	short := newClient(t, addr, p, client.WithTimeout(100*time.Millisecond))
	_, err := short.TokenizeValue(context.Background(), "email", "anne@example.org")
	if !errors.Is(err, context.DeadlineExceeded) || status.Code(err) != codes.DeadlineExceeded {
		t.Errorf("stalled call err = %v, want DeadlineExceeded", err)
	}

	// The deadline the server sees: the option's when the caller has
	// none, the caller's own otherwise.
	ctx, cancel := context.WithTimeout(context.Background(), time.Hour)
	defer cancel()
	if _, err := short.TokenizeValue(ctx, "email", "anne@example.org"); err != nil {
		t.Fatal(err)
	}
	def := newClient(t, addr, p)
	if _, err := def.TokenizeValue(context.Background(), "email", "anne@example.org"); err != nil {
		t.Fatal(err)
	}
	calls := s.recorded("Tokenize")
	if d := calls[0].deadline; d <= 0 || d > 100*time.Millisecond {
		t.Errorf("with WithTimeout(100ms), server saw %v left", d)
	}
	if d := calls[1].deadline; d <= 100*time.Millisecond {
		t.Errorf("with the caller's 1h deadline, server saw %v left", d)
	}
	if d := calls[2].deadline; d <= 100*time.Millisecond || d > client.DefaultTimeout {
		t.Errorf("by default, server saw %v left, want at most %v", d, client.DefaultTimeout)
	}
}
