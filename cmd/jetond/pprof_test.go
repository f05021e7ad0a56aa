package main

import (
	"bytes"
	"compress/gzip"
	"errors"
	"io"
	"log/slog"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"
	"time"
)

// exampleWithMetrics returns the example config with its metrics block
// replaced by block, written to a temporary file.
func exampleWithMetrics(t *testing.T, block string) string {
	t.Helper()
	base, err := os.ReadFile("jetond.example.yaml")
	if err != nil {
		t.Fatal(err)
	}
	const from = "metrics:\n  addr: \"127.0.0.1:9090\"                      # JETON_METRICS_ADDR\n"
	if !bytes.Contains(base, []byte(from)) {
		t.Fatalf("example config lacks %q", from)
	}
	s := strings.Replace(string(base), from, block+"\n", 1)
	s = strings.Replace(s, "  pprof: false\n", "", 1)
	p := filepath.Join(t.TempDir(), "jetond.yaml")
	if err := os.WriteFile(p, []byte(s), 0o600); err != nil {
		t.Fatal(err)
	}
	return p
}

func TestPprofOffByDefault(t *testing.T) {
	c, err := LoadConfig("jetond.example.yaml", func(string) string { return "" })
	if err != nil {
		t.Fatal(err)
	}
	if c.Metrics.Pprof {
		t.Fatal("the example config turns pprof on")
	}
	p := exampleWithMetrics(t, `metrics: {addr: "127.0.0.1:9090"}`)
	if c, err = LoadConfig(p, func(string) string { return "" }); err != nil {
		t.Fatal(err)
	}
	if c.Metrics.Pprof {
		t.Fatal("pprof is on without being asked for")
	}
}

// The profiler is refused in configuration unless the metrics listener is
// on loopback, whether the address comes from the file or the environment.
func TestPprofConfigNeedsLoopback(t *testing.T) {
	tests := []struct {
		name  string
		block string
		env   string // JETON_METRICS_ADDR
		ok    bool
	}{
		{"ipv4 loopback", `metrics: {addr: "127.0.0.1:9090", pprof: true}`, "", true},
		{"other 127/8 address", `metrics: {addr: "127.0.0.2:9090", pprof: true}`, "", true},
		{"ipv6 loopback", `metrics: {addr: "[::1]:9090", pprof: true}`, "", true},
		{"localhost", `metrics: {addr: "localhost:9090", pprof: true}`, "", true},
		{"default address", `metrics: {pprof: true}`, "", true},
		{"all interfaces", `metrics: {addr: "0.0.0.0:9090", pprof: true}`, "", false},
		{"empty host", `metrics: {addr: ":9090", pprof: true}`, "", false},
		{"ipv6 any", `metrics: {addr: "[::]:9090", pprof: true}`, "", false},
		{"private address", `metrics: {addr: "10.20.0.10:9090", pprof: true}`, "", false},
		{"host name", `metrics: {addr: "metrics.example.test:9090", pprof: true}`, "", false},
		{"no port", `metrics: {addr: "127.0.0.1", pprof: true}`, "", false},
		{"environment moves it off loopback", `metrics: {addr: "127.0.0.1:9090", pprof: true}`, "0.0.0.0:9090", false},
		{"non-loopback without pprof", `metrics: {addr: "0.0.0.0:9090"}`, "", true},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			p := exampleWithMetrics(t, tt.block)
			env := map[string]string{"JETON_METRICS_ADDR": tt.env}
			_, err := LoadConfig(p, func(k string) string { return env[k] })
			switch {
			case tt.ok && err != nil:
				t.Fatalf("refused: %v", err)
			case !tt.ok && err == nil:
				t.Fatal("accepted pprof on a non-loopback metrics address")
			case !tt.ok && !strings.Contains(err.Error(), "metrics.pprof"):
				t.Fatalf("error %q does not name metrics.pprof", err)
			}
		})
	}
}

// get fetches url and returns the status and body.
func get(t *testing.T, url string) (int, []byte) {
	t.Helper()
	c := &http.Client{Timeout: 30 * time.Second}
	resp, err := c.Get(url)
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	b, err := io.ReadAll(resp.Body)
	if err != nil {
		t.Fatal(err)
	}
	return resp.StatusCode, b
}

// wantProfile checks that b is a gzipped protobuf profile, as pprof
// serves them.
func wantProfile(t *testing.T, what string, b []byte) {
	t.Helper()
	zr, err := gzip.NewReader(bytes.NewReader(b))
	if err != nil {
		t.Fatalf("%s: not gzip: %v", what, err)
	}
	raw, err := io.ReadAll(zr)
	if err != nil || len(raw) == 0 {
		t.Fatalf("%s: empty or broken profile (%d bytes, %v)", what, len(raw), err)
	}
}

func TestPprofOnAndOff(t *testing.T) {
	for _, on := range []bool{false, true} {
		name := map[bool]string{false: "off", true: "on"}[on]
		t.Run(name, func(t *testing.T) {
			obs, err := newObservability()
			if err != nil {
				t.Fatal(err)
			}
			log := slog.New(slog.NewTextHandler(io.Discard, nil))
			ml, err := listenMetrics("127.0.0.1:0", obs, nil, log)
			if err != nil {
				t.Fatal(err)
			}
			if on {
				if err := ml.enablePprof(log); err != nil {
					t.Fatal(err)
				}
			}
			ml.serve(log)
			t.Cleanup(func() { _ = ml.close() })
			base := "http://" + ml.lis.Addr().String()

			if code, _ := get(t, base+"/metrics"); code != http.StatusOK {
				t.Fatalf("/metrics: %d", code)
			}
			paths := []string{"/debug/pprof/", "/debug/pprof/heap", "/debug/pprof/allocs", "/debug/pprof/goroutine", "/debug/pprof/cmdline", "/debug/pprof/profile?seconds=1"}
			for _, path := range paths {
				code, body := get(t, base+path)
				if !on {
					if code != http.StatusNotFound {
						t.Errorf("%s with pprof off: %d, want 404", path, code)
					}
					continue
				}
				if code != http.StatusOK {
					t.Errorf("%s with pprof on: %d, want 200", path, code)
					continue
				}
				switch path {
				case "/debug/pprof/":
					if !bytes.Contains(body, []byte("goroutine")) {
						t.Errorf("%s: no profile index", path)
					}
				case "/debug/pprof/heap", "/debug/pprof/allocs", "/debug/pprof/profile?seconds=1":
					wantProfile(t, path, body)
				}
			}
		})
	}
}

// Even when the configuration check is bypassed, the listener refuses to
// serve the profiler on an address that is not loopback.
func TestPprofRefusedOnNonLoopbackListener(t *testing.T) {
	obs, err := newObservability()
	if err != nil {
		t.Fatal(err)
	}
	log := slog.New(slog.NewTextHandler(io.Discard, nil))
	ml, err := listenMetrics("0.0.0.0:0", obs, nil, log)
	if err != nil {
		t.Fatal(err)
	}
	defer ml.lis.Close()
	if err := ml.enablePprof(log); err == nil || !strings.Contains(err.Error(), "metrics.pprof") {
		t.Fatalf("enablePprof on 0.0.0.0: %v, want a refusal naming metrics.pprof", err)
	}
}

// jetond itself refuses to start with the profiler on a non-loopback
// metrics address, before it connects to anything.
func TestJetondRefusesPprofOffLoopback(t *testing.T) {
	bin := jetondBinary(t)
	p := exampleWithMetrics(t, `metrics: {addr: "0.0.0.0:9090", pprof: true}`)
	var out bytes.Buffer
	cmd := exec.Command(bin, "--config", p)
	cmd.Stdout, cmd.Stderr = &out, &out
	err := cmd.Run()
	var ee *exec.ExitError
	if err == nil || !errors.As(err, &ee) || ee.ExitCode() != 1 {
		t.Fatalf("jetond: %v, want exit status 1; output:\n%s", err, out.String())
	}
	if !strings.Contains(out.String(), "metrics.pprof") {
		t.Fatalf("jetond's refusal does not name metrics.pprof:\n%s", out.String())
	}
}
