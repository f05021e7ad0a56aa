package main

import (
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/jeton-dev/jeton/server"
	"github.com/jeton-dev/jeton/tokenizer"
)

func TestExampleConfigAndPolicyAreValid(t *testing.T) {
	env := map[string]string{"JETON_REDIS_ADDRS": "127.0.0.1:1,127.0.0.1:2", "JETON_MAX_BATCH": "500"}
	c, err := LoadConfig("jetond.example.yaml", func(k string) string { return env[k] })
	if err != nil {
		t.Fatal(err)
	}
	if len(c.Redis.Addrs) != 2 || c.Redis.Addrs[0] != "127.0.0.1:1" || c.MaxBatch != 500 {
		t.Errorf("environment overrides not applied: %v %d", c.Redis.Addrs, c.MaxBatch)
	}
	classes, err := c.classes()
	if err != nil {
		t.Fatal(err)
	}
	var names []string
	for _, cl := range classes {
		names = append(names, cl.Name)
	}
	pol, err := server.LoadPolicy("policy.example.yaml", names)
	if err != nil {
		t.Fatalf("example policy: %v", err)
	}
	// The example's classes include deterministic ones: every role that
	// may tokenize them has a distinct budget.
	if err := pol.CheckOracles(classes); err != nil {
		t.Fatalf("example policy: %v", err)
	}
}

func TestConfigErrorsNameTheField(t *testing.T) {
	base, err := os.ReadFile("jetond.example.yaml")
	if err != nil {
		t.Fatal(err)
	}
	tests := []struct {
		name, from, to, want string
	}{
		{"no trusted allowlist", `allowed_cidrs: ["10.20.0.0/16"]`, `allowed_cidrs: []`, "trusted.allowed_cidrs"},
		{"bad cidr", `"10.20.0.0/16"`, `"10.20.0.0/99"`, "trusted.allowed_cidrs"},
		{"same client CA", "ttp-ca.pem", "sponsor-ca.pem", "trusted.tls.client_ca"},
		{"no redis", `addrs: ["10.20.0.21:6379", "10.20.0.22:6379", "10.20.0.23:6379"]`, `addrs: []`, "redis.addrs"},
		{"bad class kind", "kind: random, normalize: [phone]", "kind: sometimes, normalize: [phone]", "classes"},
		{"unknown region", "region: FR", "region: XX", "region"},
		{"region without phone step", "normalize: [passport], mask", "normalize: [passport], region: FR, mask", "region"},
		{"bad normalize", "normalize: [passport]", "normalize: [shout]", "normalize"},
		{"no policy", "policy_file: /etc/jeton/policy.yaml", `policy_file: ""`, "policy_file"},
		{"no audit dir", "dir: /var/lib/jeton/audit", `dir: ""`, "audit.dir"},
		{"bad audit replica", "replica: jetond-0", `replica: "jetond/0"`, "audit.replica"},
		{"negative checkpoint interval", "every: 10s", "every: -1s", "audit.checkpoint"},
		{"unknown field", "max_batch: 10000", "max_batches: 10000", "max_batches"},
		{"bad level", "level: info", "level: loud", "log.level"},
		{"per-source cap over the listener's", "max: 1024, max_per_source: 64", "max: 1024, max_per_source: 4096", "trusted.connections.max_per_source"},
		{"negative handshake timeout", "handshake_timeout: 5s\n", "handshake_timeout: -1s\n", "public.connections.handshake_timeout"},
		{"per-source handshakes over the pool", "max_handshaking: 256, max_handshaking_per_source: 16", "max_handshaking: 256, max_handshaking_per_source: 300", "trusted.connections.max_handshaking_per_source"},
		{"negative idle timeout", "idle_timeout: 5m\n", "idle_timeout: -1s\n", "public.connections.idle_timeout"},
		{"negative replica acks", "min_replica_acks: 1", "min_replica_acks: -1", "redis.min_replica_acks"},
		{"replica acks without timeout", "replica_ack_timeout: 500ms", "replica_ack_timeout: 0s", "redis.replica_ack_timeout"},
		{"replica ack timeout past the redis timeout", "replica_ack_timeout: 500ms", "replica_ack_timeout: 2s", "redis.replica_ack_timeout must be shorter"},
		{"approle without secret", "secret_id_file: /run/secrets/jetond-secret-id", `secret_id_file: ""`, "vault.approle.secret_id_file"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			if !strings.Contains(string(base), tt.from) {
				t.Fatalf("example config lacks %q", tt.from)
			}
			p := filepath.Join(t.TempDir(), "c.yaml")
			if err := os.WriteFile(p, []byte(strings.Replace(string(base), tt.from, tt.to, 1)), 0o600); err != nil {
				t.Fatal(err)
			}
			_, err := LoadConfig(p, func(string) string { return "" })
			if err == nil || !strings.Contains(err.Error(), tt.want) {
				t.Fatalf("got %v, want an error naming %s", err, tt.want)
			}
		})
	}
}

// The example's phone class reads national numbers in its region, and no
// class of the example, or of the defaults, is deterministic: that is
// opt-in.
func TestExampleClasses(t *testing.T) {
	c, err := LoadConfig("jetond.example.yaml", func(string) string { return "" })
	if err != nil {
		t.Fatal(err)
	}
	classes, err := c.classes()
	if err != nil {
		t.Fatal(err)
	}
	for _, cl := range classes {
		if cl.Kind != tokenizer.KindRandom {
			t.Errorf("example class %s is %s", cl.Name, cl.Kind)
		}
		if cl.Name == "phone" {
			if n, err := cl.NormalizeValue("06 12 34 56 78"); err != nil || n != "+33612345678" {
				t.Errorf("example phone class: %q, %v", n, err)
			}
		}
	}
}

func TestDefaultClassesWhenNoneConfigured(t *testing.T) {
	c := &Config{}
	cl, err := c.classes()
	if err != nil || len(cl) != len(tokenizer.DefaultClasses()) {
		t.Fatalf("got %d classes, %v", len(cl), err)
	}
}

func TestSameClientCAUnderTwoNamesRefused(t *testing.T) {
	dir := t.TempDir()
	a, b := filepath.Join(dir, "a.pem"), filepath.Join(dir, "b.pem")
	for _, p := range []string{a, b} {
		if err := os.WriteFile(p, []byte("-----BEGIN CERTIFICATE-----\nsame\n"), 0o600); err != nil {
			t.Fatal(err)
		}
	}
	base, err := os.ReadFile("jetond.example.yaml")
	if err != nil {
		t.Fatal(err)
	}
	cfg := strings.Replace(string(base), "/etc/jeton/tls/sponsor-ca.pem", a, 1)
	cfg = strings.Replace(cfg, "/etc/jeton/tls/ttp-ca.pem", b, 1)
	p := filepath.Join(dir, "c.yaml")
	if err := os.WriteFile(p, []byte(cfg), 0o600); err != nil {
		t.Fatal(err)
	}
	if _, err := LoadConfig(p, func(string) string { return "" }); err == nil || !strings.Contains(err.Error(), "trusted.tls.client_ca") {
		t.Fatalf("got %v, want the copied CA refused", err)
	}
}
