package main

import (
	"os"
	"path/filepath"
	"strings"
	"testing"
)

// TestShapedTokensThroughCLI: the CLI carries format-preserving tokens like
// any other: tokenize, detokenize (with --tenant limiting it), csv both
// ways, and erase-tokens.
func TestShapedTokensThroughCLI(t *testing.T) {
	s := startRealServer(t)
	got := jeton(t, s.sponsor, "anne.test@example.org\n", "tokenize", "--class", "contact-email")
	email := strings.TrimSpace(got.stdout)
	if got.code != exitOK || !strings.HasSuffix(email, "@tok.jeton.invalid") {
		t.Fatalf("tokenize: exit %d, stderr %q; want an email-shaped token", got.code, got.stderr)
	}
	got = jeton(t, s.sponsor, "", "tokenize", "--class", "badge", "0600000042")
	badge := strings.TrimSpace(got.stdout)
	if got.code != exitOK || len(badge) != 10 || !strings.HasSuffix(badge, "42") {
		t.Fatalf("tokenize: exit %d, stderr %q; want a 10-digit token", got.code, got.stderr)
	}

	for _, args := range [][]string{{}, {"--tenant", "demo"}} {
		got = jeton(t, s.reader, email+"\n"+badge+"\n", append([]string{"detokenize", "--purpose", "support"}, args...)...)
		if got.code != exitOK || got.stdout != "anne.test@example.org\n0600000042\n" {
			t.Errorf("detokenize %v: exit %d, stderr %q", args, got.code, got.stderr)
		}
	}
	got = jeton(t, s.reader, "", "detokenize", "--purpose", "support", "--tenant", "other", email)
	if got.code != exitItem || !strings.Contains(got.stderr, "NotFound") {
		t.Errorf("detokenize --tenant other: exit %d, stderr %q; want the token unknown there", got.code, got.stderr)
	}
	mistyped := badge[:3] + string('0'+(badge[3]-'0'+1)%10) + badge[4:]
	got = jeton(t, s.reader, "", "detokenize", "--purpose", "support", mistyped)
	if got.code != exitItem || !strings.Contains(got.stderr, "InvalidArgument") {
		t.Errorf("a mistyped shaped token: exit %d, stderr %q; want InvalidArgument", got.code, got.stderr)
	}

	dir := t.TempDir()
	in, tok, back := filepath.Join(dir, "in.csv"), filepath.Join(dir, "tok.csv"), filepath.Join(dir, "back.csv")
	input := "id,mail,badge\r\n1,bob.test@example.org,0600000077\r\n2,carol.test@example.org,0700000088\r\n"
	if err := os.WriteFile(in, []byte(input), 0o600); err != nil {
		t.Fatal(err)
	}
	if got = jeton(t, s.sponsor, "", "csv", "tokenize", "--map", "mail=contact-email,badge=badge", "-o", tok, in); got.code != exitOK {
		t.Fatalf("csv tokenize: exit %d, stderr %q", got.code, got.stderr)
	}
	if got = jeton(t, s.reader, "", "csv", "detokenize", "--map", "mail=contact-email,badge=badge", "--purpose", "support", "--tenant", "demo", "-o", back, tok); got.code != exitOK {
		t.Fatalf("csv detokenize: exit %d, stderr %q", got.code, got.stderr)
	}
	if b, _ := os.ReadFile(back); string(b) != input {
		t.Errorf("the csv round trip changed the file")
	}
	if got = jeton(t, s.sponsor, "", "csv", "tokenize", "--map", "mail=contact-email", "--tenant", "demo", "-o", filepath.Join(dir, "x.csv"), in); got.code != exitUsage {
		t.Errorf("csv tokenize --tenant: exit %d; want a usage error", got.code)
	}

	got = jeton(t, s.custodian, "", "admin", "erase-tokens", "--reason", "ticket-1", "--tenant", "demo", badge)
	if got.code != exitOK || got.stdout != "1\n" {
		t.Fatalf("erase-tokens --tenant demo: exit %d, stdout %q, stderr %q", got.code, got.stdout, got.stderr)
	}
	if got = jeton(t, s.reader, "", "detokenize", "--purpose", "support", badge); got.code != exitItem {
		t.Errorf("an erased shaped token still reveals")
	}
}
