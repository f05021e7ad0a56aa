package main

import (
	"bytes"
	"context"
	"crypto/sha256"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/jeton-dev/jeton/client"
	"github.com/jeton-dev/jeton/server/devpki"
)

func jetond(t testing.TB, env map[string]string, args ...string) (int, string, string) {
	t.Helper()
	var out, errOut bytes.Buffer
	code := run(args, func(k string) string { return env[k] }, &out, &errOut)
	return code, out.String(), errOut.String()
}

func TestJetondHelpAndVersion(t *testing.T) {
	for _, args := range [][]string{{"--help"}, {"-h"}} {
		code, out, errOut := jetond(t, nil, args...)
		if text := out + errOut; code != 0 || !strings.Contains(text, "jetond is the jeton tokenization server") || !strings.Contains(text, "--check-config") {
			t.Errorf("jetond %v: exit %d, output %q", args, code, text)
		}
	}
	code, out, _ := jetond(t, nil, "--version")
	if code != 0 || !strings.HasPrefix(out, "jetond ") || !strings.Contains(out, "\ngo go1.") {
		t.Errorf("jetond --version: exit %d, %q", code, out)
	}
}

func TestInapplicableFlagsRefused(t *testing.T) {
	for _, flag := range []string{"--public-addr", "--trusted-addr", "--metrics-addr", "--dev-dir"} {
		code, _, errOut := jetond(t, nil, "--config", "jetond.example.yaml", flag, "127.0.0.1:1")
		if code != 2 || !strings.Contains(errOut, flag+" applies to --dev only") {
			t.Errorf("%s with --config: exit %d, %q", flag, code, errOut)
		}
	}
	if code, _, errOut := jetond(t, nil, "--dev", "--check-config", "x.yaml"); code != 2 || !strings.Contains(errOut, "--check-config FILE goes alone") {
		t.Errorf("--check-config with --dev: exit %d, %q", code, errOut)
	}
	if code, _, errOut := jetond(t, nil, "--dev", "stray"); code != 2 || !strings.Contains(errOut, `unexpected argument "stray"`) {
		t.Errorf("stray argument: exit %d, %q", code, errOut)
	}
}

// validConfig writes a configuration whose every file exists, and
// returns its path and the PKI.
func validConfig(t *testing.T) (string, *devpki.Bundle) {
	t.Helper()
	dir := t.TempDir()
	pki, err := devpki.Generate(filepath.Join(dir, "pki"))
	if err != nil {
		t.Fatal(err)
	}
	policy := filepath.Join(dir, "policy.yaml")
	if err := os.WriteFile(policy, []byte(prodPolicy(true)), 0o600); err != nil {
		t.Fatal(err)
	}
	cfg := fmt.Sprintf(`public:
  addr: 127.0.0.1:1
  tls: {cert: %q, key: %q, client_ca: %q}
trusted:
  addr: 127.0.0.1:2
  tls: {cert: %q, key: %q, client_ca: %q}
  allowed_cidrs: ["127.0.0.0/8"]
max_batch: 1000
redis: {addrs: ["127.0.0.1:3"]}
vault: {mount: transit, key: jeton-kek}
policy_file: %q
audit: {dir: %q}
`, pki.ServerCert, pki.ServerKey, pki.SponsorCA, pki.ServerCert, pki.ServerKey, pki.TTPCA, policy, filepath.Join(dir, "audit"))
	p := filepath.Join(dir, "jetond.yaml")
	if err := os.WriteFile(p, []byte(cfg), 0o600); err != nil {
		t.Fatal(err)
	}
	return p, pki
}

// --check-config validates everything local and nothing remote (the
// config names Redis and Vault addresses where nothing listens), and its
// errors name the key or the file, never a Go type.
func TestCheckConfig(t *testing.T) {
	good, pki := validConfig(t)
	base, err := os.ReadFile(good)
	if err != nil {
		t.Fatal(err)
	}
	code, out, errOut := jetond(t, nil, "--check-config", good)
	if code != 0 || !strings.Contains(out, "is valid") {
		t.Fatalf("valid config: exit %d, stdout %q, stderr %q", code, out, errOut)
	}
	missing := filepath.Join(t.TempDir(), "nope.pem")
	tests := []struct {
		name     string
		from, to string
		want     []string
	}{
		{"typo'd key", "allowed_cidrs:", "alowed_cidrs:", []string{"line 7: unknown key trusted.alowed_cidrs (did you mean allowed_cidrs?)"}},
		{"unknown top-level key", "max_batch:", "max_batches:", []string{"unknown key max_batches (did you mean max_batch?)"}},
		{"wrong type", "max_batch: 1000", "max_batch: lots", []string{"line 8: max_batch: want a whole number"}},
		{"list for a mapping", "vault: {mount: transit, key: jeton-kek}", "vault: [transit]", []string{"vault: want a mapping of keys"}},
		{"missing certificate file", pki.SponsorCA, missing, []string{"public.tls", missing}},
		{"missing policy file", "policy.yaml", "nope.yaml", []string{"policy_file", "nope.yaml"}},
		{"empty file", string(base), "", []string{"is empty"}},
		{"comments only", string(base), "# nothing yet\n", []string{"is empty"}},
		{"not YAML", "max_batch: 1000", "max_batch: [1000", []string{"not valid YAML"}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			if !bytes.Contains(base, []byte(tt.from)) {
				t.Fatalf("config lacks %q", tt.from)
			}
			p := filepath.Join(t.TempDir(), "jetond.yaml")
			if err := os.WriteFile(p, bytes.Replace(base, []byte(tt.from), []byte(tt.to), 1), 0o600); err != nil {
				t.Fatal(err)
			}
			code, _, errOut := jetond(t, nil, "--check-config", p)
			if code == 0 {
				t.Fatal("accepted")
			}
			for _, w := range append(tt.want, p) {
				if !strings.Contains(errOut, w) {
					t.Errorf("error %q does not name %q", errOut, w)
				}
			}
			for _, goType := range []string{"main.", "!!", "int", "unmarshal", "EOF"} {
				if strings.Contains(errOut, goType) {
					t.Errorf("error %q speaks of Go or YAML internals (%s)", errOut, goType)
				}
			}
		})
	}
}

// A normal start checks local files before contacting backends: with a
// missing certificate it fails naming the file, although Redis and Vault
// are not there either.
func TestStartChecksLocalFilesFirst(t *testing.T) {
	good, pki := validConfig(t)
	b, _ := os.ReadFile(good)
	missing := filepath.Join(t.TempDir(), "gone.pem")
	p := filepath.Join(t.TempDir(), "jetond.yaml")
	if err := os.WriteFile(p, bytes.Replace(b, []byte(pki.ServerKey), []byte(missing), 2), 0o600); err != nil {
		t.Fatal(err)
	}
	code, _, errOut := jetond(t, nil, "--config", p)
	if code == 0 || !strings.Contains(errOut, missing) || strings.Contains(errOut, "redis") {
		t.Fatalf("exit %d, %q; want the missing key named before any backend", code, errOut)
	}
}

func fileSums(t testing.TB, dir string) map[string][32]byte {
	t.Helper()
	out := map[string][32]byte{}
	filepath.Walk(dir, func(p string, fi os.FileInfo, err error) error {
		if err == nil && !fi.IsDir() && filepath.Base(p) != "jetond.lock" {
			b, _ := os.ReadFile(p)
			out[p] = sha256.Sum256(b)
		}
		return nil
	})
	return out
}

// A second dev jetond on the same directory (a second `make run`) refuses
// to start and touches nothing: the first keeps its certificates, audit
// key and audit log, and keeps working.
func TestSecondDevInstanceLeavesTheFirstWorking(t *testing.T) {
	dir := filepath.Join(t.TempDir(), "dev")
	pub, tru, metrics := freeAddr(t), freeAddr(t), freeAddr(t)
	startJetond(t, os.Environ(), metrics, "--dev", "--dev-dir", dir, "--public-addr", pub, "--trusted-addr", tru, "--metrics-addr", metrics)
	before := fileSums(t, dir)
	if len(before) < 5 {
		t.Fatalf("the first instance wrote only %d files", len(before))
	}

	ctx, cancel := context.WithTimeout(context.Background(), startLimit)
	defer cancel()
	second := exec.CommandContext(ctx, jetondBinary(t), "--dev", "--dev-dir", dir,
		"--public-addr", freeAddr(t), "--trusted-addr", freeAddr(t), "--metrics-addr", freeAddr(t))
	out, err := second.CombinedOutput()
	if err == nil || !strings.Contains(string(out), "is in use by a running jetond") {
		t.Fatalf("second instance: %v\n%s", err, out)
	}

	after := fileSums(t, dir)
	if len(after) != len(before) {
		t.Errorf("files in the dev dir: %d before, %d after", len(before), len(after))
	}
	for p, sum := range before {
		if after[p] != sum {
			t.Errorf("%s changed", p)
		}
	}

	// And the first still tokenizes and reveals with its certificates.
	sponsor, err := client.NewSponsor(pub, client.WithTLSFiles(filepath.Join(dir, "ca.pem"), filepath.Join(dir, "sponsor.pem"), filepath.Join(dir, "sponsor-key.pem")))
	if err != nil {
		t.Fatal(err)
	}
	defer sponsor.Close()
	tok, err := sponsor.TokenizeValue(ctx, client.ClassEmail, "anne@example.org")
	if err != nil {
		t.Fatal(err)
	}
	ttp, err := client.NewRevealer(tru, client.WithTLSFiles(filepath.Join(dir, "ca.pem"), filepath.Join(dir, "ttp.pem"), filepath.Join(dir, "ttp-key.pem")))
	if err != nil {
		t.Fatal(err)
	}
	defer ttp.Close()
	if v, err := ttp.DetokenizeValue(ctx, tok, "support", ""); err != nil || v != "anne@example.org" {
		t.Fatalf("the first instance no longer reveals: %v", err)
	}
	_ = time.Second
}
