package main

import (
	"os"
	"path/filepath"
	"regexp"
	"strconv"
	"strings"
	"testing"

	"github.com/jeton-dev/jeton/tokenizer/vaultkeys"
)

// auditREADME returns the README's section for operators on the audit log.
func auditREADME(t *testing.T) string {
	t.Helper()
	b, err := os.ReadFile(filepath.Join("..", "..", "README.md"))
	if err != nil {
		t.Fatal(err)
	}
	s := string(b)
	start := strings.Index(s, "### The audit log")
	if start < 0 {
		t.Fatal("README has no section \"### The audit log\"")
	}
	end := strings.Index(s[start+1:], "\n### ")
	if end < 0 {
		t.Fatal("the audit section of the README has no end")
	}
	return s[start : start+1+end]
}

var codeBlock = regexp.MustCompile("(?s)```sh\n(.*?)```")

// TestREADMEAuditCommands: every jeton audit command the README gives
// operators parses with today's flags (it fails for want of a Vault token,
// a directory or an exported file here, never for a flag or argument).
func TestREADMEAuditCommands(t *testing.T) {
	sec := auditREADME(t)
	t.Setenv("VAULT_TOKEN", "")
	t.Setenv("VAULT_ADDR", "http://127.0.0.1:1") // never reached: no token
	dir := filepath.Join(t.TempDir(), "absent")
	n := 0
	for _, m := range codeBlock.FindAllStringSubmatch(sec, -1) {
		for _, line := range strings.Split(m[1], "\n") {
			line = strings.TrimSpace(line)
			if !strings.HasPrefix(line, "jeton audit ") {
				continue
			}
			if i := strings.Index(line, " #"); i >= 0 {
				line = line[:i]
			}
			if i := strings.Index(line, " >"); i >= 0 {
				line = line[:i]
			}
			args := shellWords(t, strings.ReplaceAll(line, "/var/lib/jeton/audit", dir))[1:]
			got := jeton(t, nil, "", args...)
			// A file the example reads (exported by an earlier line) is
			// absent here; anything else at exit 2 is a stale example.
			absent := strings.Contains(got.stderr, "no such file or directory")
			if (got.code == exitUsage && !absent) || strings.Contains(got.stderr, "flag provided but not defined") {
				t.Errorf("README command %q: exit %d: %s", line, got.code, got.stderr)
			}
			n++
		}
	}
	if n < 5 {
		t.Fatalf("found %d jeton audit commands in the README's audit section, want at least 5", n)
	}
}

// shellWords splits a command line as sh would, for the simple quoting the
// README uses (double quotes, no escapes).
func shellWords(t *testing.T, line string) []string {
	var out []string
	var cur strings.Builder
	quoted, in := false, false
	for _, r := range line {
		switch {
		case r == '"':
			quoted, in = !quoted, true
		case r == ' ' && !quoted:
			if in {
				out = append(out, cur.String())
				cur.Reset()
				in = false
			}
		default:
			cur.WriteRune(r)
			in = true
		}
	}
	if quoted {
		t.Fatalf("unbalanced quote in %q", line)
	}
	if in {
		out = append(out, cur.String())
	}
	return out
}

// TestREADMEAuditFacts: what the README's audit section quotes from jetond
// and jeton, and the anchor's history it promises, are what the code
// says and does.
func TestREADMEAuditFacts(t *testing.T) {
	sec := codeBlock.ReplaceAllString(auditREADME(t), "")
	var src strings.Builder
	for _, glob := range []string{"../../server/audit/*.go", "audit.go"} {
		files, _ := filepath.Glob(glob)
		for _, f := range files {
			if strings.HasSuffix(f, "_test.go") {
				continue
			}
			b, err := os.ReadFile(f)
			if err != nil {
				t.Fatal(err)
			}
			src.Write(b)
		}
	}
	code := src.String()
	// Quoted messages: placeholders (N, A, B) stand for numbers.
	quotes := regexp.MustCompile(`"([^"]+)"`).FindAllStringSubmatch(sec, -1)
	if len(quotes) < 3 {
		t.Fatalf("found %d quoted messages in the README's audit section, want at least 3", len(quotes))
	}
	for _, q := range quotes {
		msg := strings.Join(strings.Fields(q[1]), " ")
		for _, part := range regexp.MustCompile(`\b[NAB]\b`).Split(msg, -1) {
			if len(part) >= 10 && !strings.Contains(code, part) {
				t.Errorf("the README quotes %q, but no message of server/audit or jeton audit says %q", msg, part)
			}
		}
	}
	if want := "last " + strconv.Itoa(vaultkeys.AuditKVMaxVersions) + " versions"; !strings.Contains(strings.Join(strings.Fields(sec), " "), want) {
		t.Errorf("the README does not say the anchor keeps the %s of each checkpoint", want)
	}
}
