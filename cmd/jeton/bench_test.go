package main

import (
	"regexp"
	"strconv"
	"testing"
)

func TestBenchAgainstARealServer(t *testing.T) {
	_, _, _, sponsor := realServerWithSponsor(t)
	r := jeton(t, sponsor, "", "bench", "--calls", "300", "--concurrency", "8")
	if r.code != exitOK {
		t.Fatalf("exit %d: %s", r.code, r.stderr)
	}
	for _, line := range []string{`health check\s+\d+ calls/s\s+p50 \S+\s+p99 \S+\s+\(300 calls\)`,
		`tokenize \(1\)\s+\d+ calls/s\s+p50 \S+\s+p99 \S+\s+\(300 calls\)`} {
		if !regexp.MustCompile(line).MatchString(r.stdout) {
			t.Errorf("output lacks %q:\n%s", line, r.stdout)
		}
	}
	m := regexp.MustCompile(`tokenize/health ratio ([0-9.]+)`).FindStringSubmatch(r.stdout)
	if m == nil {
		t.Fatalf("no ratio:\n%s", r.stdout)
	}
	if v, err := strconv.ParseFloat(m[1], 64); err != nil || v <= 0 {
		t.Errorf("ratio %q", m[1])
	}
}

func TestBenchRefusesRemoteAddresses(t *testing.T) {
	for _, addr := range []string{"10.1.2.3:7443", "192.0.2.7:7443", "example.org:7443", "[2001:db8::1]:7443"} {
		r := jeton(t, map[string]string{"JETON_ADDR": addr, "JETON_CACERT": "x", "JETON_CERT": "x", "JETON_KEY": "x"}, "", "bench")
		if r.code != exitUsage {
			t.Errorf("%s: exit %d, want a usage refusal", addr, r.code)
		}
	}
	if err := loopbackOnly("[::1]:7443"); err != nil {
		t.Errorf("::1 refused: %v", err)
	}
	if err := loopbackOnly("127.0.0.5:7443"); err != nil {
		t.Errorf("127.0.0.5 refused: %v", err)
	}
}
