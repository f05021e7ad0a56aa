package main

import (
	"bytes"
	"context"
	"encoding/hex"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/jeton-dev/jeton/server/audit"
)

var auditTestKey = bytes.Repeat([]byte{'k'}, audit.KeySize)

// writeAuditLog writes n records to a new log and returns its directory.
func writeAuditLog(t testing.TB, n int) string {
	t.Helper()
	dir := t.TempDir()
	l, err := audit.Open(audit.Config{Dir: dir, Key: auditTestKey})
	if err != nil {
		t.Fatal(err)
	}
	defer l.Close()
	for range n {
		rec := audit.Record{Time: time.Unix(0, 0).UTC(), Identity: "svc-test", Method: "Detokenize", Purpose: "vetting", Outcome: "ok"}
		if err := l.Append(context.Background(), rec); err != nil {
			t.Fatal(err)
		}
	}
	return dir
}

func TestAuditVerify(t *testing.T) {
	keyHex := hex.EncodeToString(auditTestKey)
	keyFile := filepath.Join(t.TempDir(), "audit.key")
	if err := os.WriteFile(keyFile, []byte(keyHex+"\n"), 0o600); err != nil {
		t.Fatal(err)
	}
	withKey := map[string]string{"JETON_AUDIT_KEY": keyHex}
	wrongKey := map[string]string{"JETON_AUDIT_KEY": strings.Repeat("4b", audit.KeySize)}

	good := writeAuditLog(t, 5)
	tampered := writeAuditLog(t, 5)
	p := filepath.Join(tampered, "audit-000001.jsonl")
	b, _ := os.ReadFile(p)
	lines := bytes.SplitAfter(b, []byte("\n"))
	lines[2] = bytes.Replace(lines[2], []byte("vetting"), []byte("payroll"), 1)
	os.WriteFile(p, bytes.Join(lines, nil), 0o600)
	truncated := writeAuditLog(t, 5)
	p = filepath.Join(truncated, "audit-000001.jsonl")
	b, _ = os.ReadFile(p)
	os.WriteFile(p, bytes.Join(bytes.SplitAfter(b, []byte("\n"))[:4], nil), 0o600)

	tests := []struct {
		name       string
		environ    map[string]string
		args       []string
		wantCode   int
		wantStdout string
		wantStderr string // a substring
	}{
		{"good dir, key from env", withKey, []string{"audit", "verify", good}, 0, "ok: 5 records, last seq 5\n", ""},
		{"good dir, key from file", nil, []string{"audit", "verify", "--key-file", keyFile, good}, 0, "ok: 5 records, last seq 5\n", ""},
		{"good files with head", withKey, []string{"audit", "verify", "--head", filepath.Join(good, "HEAD"), filepath.Join(good, "audit-000001.jsonl")}, 0, "ok: 5 records, last seq 5\n", ""},
		{"tampered", withKey, []string{"audit", "verify", tampered}, 1, "",
			"audit: " + filepath.Join(tampered, "audit-000001.jsonl") + ":3: seq 3: bad MAC"},
		{"truncated, caught by HEAD", withKey, []string{"audit", "verify", truncated}, 1, "",
			"audit-000001.jsonl:5: seq 5: truncated"},
		{"truncated, files only", withKey, []string{"audit", "verify", filepath.Join(truncated, "audit-000001.jsonl")}, 0, "ok: 4 records, last seq 4\n", ""},
		{"wrong key", wrongKey, []string{"audit", "verify", good}, 1, "", "HEAD:0: seq 0: bad HEAD"},
		{"wrong key, no HEAD", wrongKey, []string{"audit", "verify", filepath.Join(good, "audit-000001.jsonl")}, 1, "", "audit-000001.jsonl:1: seq 1: bad MAC"},
		{"no key", nil, []string{"audit", "verify", good}, exitUsage, "", "no key"},
		{"malformed key", map[string]string{"JETON_AUDIT_KEY": "not-hex-secret"}, []string{"audit", "verify", good}, exitUsage, "", "JETON_AUDIT_KEY: want 32 bytes"},
		{"no files", withKey, []string{"audit", "verify"}, exitUsage, "", "no log files"},
		{"no verb", withKey, []string{"audit"}, exitUsage, "", "usage"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			r := jeton(t, tt.environ, "", tt.args...)
			if r.code != tt.wantCode || r.stdout != tt.wantStdout || !strings.Contains(r.stderr, tt.wantStderr) {
				t.Errorf("code %d, stdout %q, stderr %q; want %d, %q, stderr containing %q",
					r.code, r.stdout, r.stderr, tt.wantCode, tt.wantStdout, tt.wantStderr)
			}
			if strings.Contains(r.stderr, "not-hex-secret") {
				t.Errorf("stderr echoes the key text")
			}
		})
	}
}

func TestAuditVerifyPartial(t *testing.T) {
	dir := t.TempDir()
	l, err := audit.Open(audit.Config{Dir: dir, Key: auditTestKey, MaxFileBytes: 1})
	if err != nil {
		t.Fatal(err)
	}
	for range 3 {
		if err := l.Append(context.Background(), audit.Record{Identity: "svc-test", Outcome: "ok"}); err != nil {
			t.Fatal(err)
		}
	}
	l.Close()
	os.Remove(filepath.Join(dir, "audit-000001.jsonl"))
	environ := map[string]string{"JETON_AUDIT_KEY": hex.EncodeToString(auditTestKey)}

	r := jeton(t, environ, "", "audit", "verify", dir)
	if r.code != 1 || !strings.Contains(r.stderr, "audit-000002.jsonl:1: seq 2: missing file") {
		t.Errorf("without --partial: code %d, stderr %q; want 1 and a missing file", r.code, r.stderr)
	}
	r = jeton(t, environ, "", "audit", "verify", "--partial", dir)
	if r.code != 0 || r.stdout != "ok: 2 records, last seq 3\n" {
		t.Errorf("with --partial: code %d, stdout %q, stderr %q", r.code, r.stdout, r.stderr)
	}
}
