package main

import (
	"bufio"
	"bytes"
	"context"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"syscall"
	"testing"
	"time"
)

// repoRoot is where `make run` runs jetond from.
func repoRoot(t testing.TB) string {
	t.Helper()
	wd, err := os.Getwd()
	if err != nil {
		t.Fatal(err)
	}
	return filepath.Clean(filepath.Join(wd, "..", ".."))
}

// buildJetond compiles jetond into a temporary directory.
func buildJetond(t testing.TB) string {
	t.Helper()
	bin := filepath.Join(t.TempDir(), "jetond")
	cmd := exec.Command("go", "build", "-o", bin, ".")
	if out, err := cmd.CombinedOutput(); err != nil {
		t.Fatalf("building jetond: %v\n%s", err, out)
	}
	return bin
}

// TestDevModeCommandsWorkAsPrinted starts jetond --dev the way `make run`
// does, runs the commands it prints exactly as printed, and checks that
// they tokenize and then reveal the value. It then stops jetond with
// SIGTERM and expects a clean exit.
func TestDevModeCommandsWorkAsPrinted(t *testing.T) {
	if testing.Short() {
		t.Skip("builds and runs binaries")
	}
	root := repoRoot(t)
	bin := buildJetond(t)
	devDir := t.TempDir()

	ctx, cancel := context.WithTimeout(context.Background(), 3*time.Minute)
	defer cancel()
	// Free ports only: `make run` may hold the defaults meanwhile.
	cmd := exec.CommandContext(ctx, bin, "--dev", "--dev-dir", devDir, "--public-addr", "127.0.0.1:0", "--trusted-addr", "127.0.0.1:0", "--metrics-addr", "127.0.0.1:0")
	cmd.Dir = root
	var stderr bytes.Buffer
	cmd.Stderr = &stderr
	stdout, err := cmd.StdoutPipe()
	if err != nil {
		t.Fatal(err)
	}
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = cmd.Process.Kill() })

	block, err := readCommands(stdout)
	if err != nil {
		t.Fatalf("reading printed commands: %v\nstderr:\n%s", err, stderr.String())
	}
	if !strings.Contains(block, "go run ./cmd/jeton tokenize") || !strings.Contains(block, "detokenize") {
		t.Fatalf("printed commands do not tokenize and detokenize:\n%s", block)
	}

	sh := exec.CommandContext(ctx, "bash", "-euo", "pipefail", "-c", block)
	sh.Dir = root
	out, err := sh.CombinedOutput()
	if err != nil {
		t.Fatalf("printed commands failed: %v\n%s\njetond stderr:\n%s", err, out, stderr.String())
	}
	lines := strings.Split(strings.TrimSpace(string(out)), "\n")
	if len(lines) != 3 || !strings.HasPrefix(lines[0], "tok_email_demo_") || lines[1] != "anne.dupont@example.org" ||
		!strings.HasPrefix(lines[2], "ok: ") {
		t.Fatalf("printed commands printed %d lines; want a token, the value back, then a verified audit log", len(lines))
	}

	if err := cmd.Process.Signal(syscall.SIGTERM); err != nil {
		t.Fatal(err)
	}
	if err := cmd.Wait(); err != nil {
		t.Fatalf("jetond did not exit cleanly on SIGTERM: %v", err)
	}
	if !strings.Contains(stderr.String(), "DEV MODE") {
		t.Error("dev mode did not warn")
	}
	if strings.Contains(stderr.String(), "anne.dupont") {
		t.Error("the value appears in jetond's logs")
	}
	// The reveal reached the audit log, and the log holds no value.
	logs, _ := filepath.Glob(filepath.Join(devDir, "audit", "audit-*.jsonl"))
	var auditText []byte
	for _, f := range logs {
		b, _ := os.ReadFile(f)
		auditText = append(auditText, b...)
	}
	if !bytes.Contains(auditText, []byte(`"purpose":"support"`)) {
		t.Error("the reveal is not in the audit log")
	}
	if bytes.Contains(auditText, []byte("anne.dupont")) || bytes.Contains(auditText, []byte(lines[0])) {
		t.Error("the audit log holds the value or the token")
	}
}

func readCommands(r interface{ Read([]byte) (int, error) }) (string, error) {
	sc := bufio.NewScanner(r)
	var b strings.Builder
	in := false
	for sc.Scan() {
		line := sc.Text()
		switch {
		case line == commandsBegin:
			in = true
		case line == commandsEnd:
			return b.String(), nil
		case in:
			b.WriteString(line + "\n")
		}
	}
	if err := sc.Err(); err != nil {
		return "", err
	}
	return "", os.ErrNotExist
}
