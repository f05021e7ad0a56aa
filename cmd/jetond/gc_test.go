package main

import (
	"os"
	"strings"
	"testing"
)

// TestGCTarget runs jetond --dev with and without GOGC and reads the
// collector's target from /metrics: jetond's own default when the operator
// set none, the operator's when they did.
func TestGCTarget(t *testing.T) {
	var env []string
	for _, kv := range os.Environ() {
		if !strings.HasPrefix(kv, "GOGC=") {
			env = append(env, kv)
		}
	}
	for _, c := range []struct {
		name string
		env  []string
		want float64
	}{
		{"default", env, defaultGCPercent},
		{"GOGC set", append(env[:len(env):len(env)], "GOGC=150"), 150},
	} {
		t.Run(c.name, func(t *testing.T) {
			dir := t.TempDir()
			metrics, public, trusted := freeAddr(t), freeAddr(t), freeAddr(t)
			p := startJetond(t, c.env, metrics, "--dev", "--dev-dir", dir,
				"--public-addr", public, "--trusted-addr", trusted, "--metrics-addr", metrics)
			p.waitReady()
			if got := scrape(t, p).value("go_gc_gogc_percent", nil); got != c.want {
				t.Fatalf("go_gc_gogc_percent = %v, want %v", got, c.want)
			}
		})
	}
}
