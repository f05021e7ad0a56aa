package integration_test

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"
	"time"

	healthpb "google.golang.org/grpc/health/grpc_health_v1"

	"github.com/jeton-dev/jeton/integration/testenv"
	"github.com/jeton-dev/jeton/tokenizer/vaultkeys"
)

// auditDeployment is one jetond with its own audit replica id, on a real
// Redis and a real Vault set up by jeton vault setup, and a Vault token
// that holds only the verifier's policy.
type auditDeployment struct {
	h        *jetond
	dir      string // audit.dir
	replica  string
	verifier []string // environment of jeton audit verify --vault
}

func startAuditDeployment(t *testing.T, replica string) *auditDeployment {
	t.Helper()
	redis := testenv.StartRedis(t)
	v := startVaultEnv(t, false)
	h := newJetond(t, jetondOpts{RedisAddrs: []string{redis.Addr}, Vault: v, Token: v.token(t, vaultkeys.PolicyJetond)})
	h.env = append(h.env, "JETON_AUDIT_REPLICA="+replica)
	h.replica = replica
	h.start(t)
	h.waitReady(t)
	return &auditDeployment{
		h: h, dir: filepath.Join(h.dir, "audit"), replica: replica,
		verifier: append(envWithout(os.Environ(), "VAULT_", "JETON_"),
			"VAULT_ADDR="+v.Addr, "VAULT_TOKEN="+v.token(t, vaultkeys.PolicyAuditVerifier)),
	}
}

// verify runs jeton audit verify with only the verifier's Vault token: the
// public key and the checkpoint, nothing secret.
func (d *auditDeployment) verify(t *testing.T) (code int, stdout, stderr string) {
	t.Helper()
	cmd := exec.Command(jetonBin, "audit", "verify", "--vault", "--replica", d.replica, d.dir)
	cmd.Env = d.verifier
	var out, errOut bytes.Buffer
	cmd.Stdout, cmd.Stderr = &out, &errOut
	err := cmd.Run()
	var ee *exec.ExitError
	switch {
	case err == nil:
	case errors.As(err, &ee):
		code = ee.ExitCode()
	default:
		t.Fatal(err)
	}
	return code, out.String(), errOut.String()
}

// reveal tokenizes n values and reveals them one call each: n records in
// the audit log.
func (d *auditDeployment) reveal(t *testing.T, first, n int) {
	t.Helper()
	its := items(t, first, n)
	tokenize(t, d.h, "acme", its)
	for i := range its {
		detokenizeAll(t, d.h, its[i:i+1])
	}
}

// snapshot copies the audit log files; restore puts a copy back, as an
// operator restoring a backup would.
func snapshot(t *testing.T, dir string) map[string][]byte {
	t.Helper()
	files, _ := filepath.Glob(filepath.Join(dir, "audit-*.jsonl"))
	out := map[string][]byte{}
	for _, f := range files {
		b, err := os.ReadFile(f)
		if err != nil {
			t.Fatal(err)
		}
		out[filepath.Base(f)] = b
	}
	if len(out) == 0 {
		t.Fatal("no audit log files")
	}
	return out
}

func restore(t *testing.T, dir string, files map[string][]byte) {
	t.Helper()
	old, _ := filepath.Glob(filepath.Join(dir, "audit-*.jsonl"))
	for _, f := range old {
		if err := os.Remove(f); err != nil {
			t.Fatal(err)
		}
	}
	for name, b := range files {
		if err := os.WriteFile(filepath.Join(dir, name), b, 0o600); err != nil {
			t.Fatal(err)
		}
	}
}

// TestAuditTamperDetected: restoring an older copy of the audit directory,
// wiping it, deleting its last record and reordering two records are each
// caught by jeton audit verify with the public key only, and jetond
// refuses to continue that log at start-up, saying what to do. With the
// real log put back, jetond starts again: the refusals were the
// tampering's doing; and a torn last line, as kill -9 mid-write leaves,
// is reported by verify and cut off by jetond, not called tampering.
func TestAuditTamperDetected(t *testing.T) {
	d := startAuditDeployment(t, "it-tamper")
	d.reveal(t, 0, 3)
	d.h.Stop(t) // a clean stop anchors the head
	older := snapshot(t, d.dir)
	d.h.start(t)
	d.h.waitReady(t)
	d.reveal(t, 3, 3)
	d.h.Stop(t)
	latest := snapshot(t, d.dir)
	if code, out, errOut := d.verify(t); code != 0 || !strings.Contains(out, "signed checkpoint at seq") {
		t.Fatalf("untouched log: verify exit %d, stdout %q, stderr %q", code, out, errOut)
	}
	// Offline: export the public key and the checkpoint, verify from files.
	pub, cp := filepath.Join(t.TempDir(), "audit.pub"), filepath.Join(t.TempDir(), "replica.checkpoint")
	for path, args := range map[string][]string{pub: {"audit", "public-key"}, cp: {"audit", "checkpoint", "--replica", d.replica}} {
		cmd := exec.Command(jetonBin, args...)
		cmd.Env = d.verifier
		out, err := cmd.Output()
		if err != nil {
			t.Fatalf("jeton %v: %v", args, err)
		}
		writeFile(t, path, string(out))
	}
	offline := exec.Command(jetonBin, "audit", "verify", "--public-key", pub, "--checkpoint", cp, d.dir)
	offline.Env = envWithout(os.Environ(), "VAULT_")
	if out, err := offline.CombinedOutput(); err != nil || !strings.Contains(string(out), "signed checkpoint at seq") {
		t.Fatalf("offline verify: %v\n%s", err, out)
	}

	lines := func(files map[string][]byte) [][]byte {
		return bytes.SplitAfter(bytes.TrimSuffix(files["audit-000001.jsonl"], []byte("\n")), []byte("\n"))
	}
	withLines := func(ls [][]byte) map[string][]byte {
		return map[string][]byte{"audit-000001.jsonl": bytes.Join(ls, nil)}
	}
	for _, tc := range []struct {
		name       string
		files      map[string][]byte
		wantVerify string // in jeton audit verify's stderr
		wantStart  string // in jetond's refusal
	}{
		{"older copy restored", older, "behind checkpoint", "behind checkpoint"},
		{"wiped", map[string][]byte{}, "behind checkpoint", "is missing or empty"},
		{"last record deleted", withLines(lines(latest)[:len(lines(latest))-1]), "behind checkpoint", "behind checkpoint"},
		{"two records reordered", func() map[string][]byte {
			ls := lines(latest)
			ls[2], ls[3] = ls[3], ls[2]
			return withLines(ls)
		}(), "seq out of order", "seq out of order"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			restore(t, d.dir, tc.files)
			code, _, errOut := d.verify(t)
			if code != 1 || !strings.Contains(errOut, tc.wantVerify) {
				t.Errorf("jeton audit verify: exit %d, stderr %q; want 1 and %q", code, errOut, tc.wantVerify)
			}
			before := len(d.h.Log())
			d.h.start(t)
			if code := d.h.waitExit(t, readyTimeout); code == 0 {
				t.Fatal("jetond exited 0 on a tampered audit log")
			}
			refusal := d.h.Log()[before:]
			if !strings.Contains(refusal, tc.wantStart) || !strings.Contains(refusal, "jeton audit archive --dir "+d.dir) {
				t.Errorf("jetond's refusal does not say what is wrong (%q) and what to do:\n%s", tc.wantStart, tail(refusal, 5))
			}
		})
	}

	// A crash mid-write (kill -9) leaves a partial last line: verify
	// reports it and passes, and jetond cuts it off and carries on.
	restore(t, d.dir, latest)
	f, err := os.OpenFile(filepath.Join(d.dir, "audit-000001.jsonl"), os.O_WRONLY|os.O_APPEND, 0)
	if err != nil {
		t.Fatal(err)
	}
	f.WriteString(`{"v":2,"seq":99,"prev":"0123`)
	f.Close()
	if code, out, errOut := d.verify(t); code != 0 || !strings.Contains(out, "torn final record") {
		t.Errorf("torn last line: verify exit %d, stdout %q, stderr %q; want 0 and the torn record reported", code, out, errOut)
	}
	d.h.start(t)
	d.h.waitReady(t)
	d.reveal(t, 6, 1)
	if !strings.Contains(d.h.Log(), "cut off a partial last line") {
		t.Error("jetond did not report cutting off the partial line")
	}
	d.h.Stop(t)
	if code, out, errOut := d.verify(t); code != 0 || strings.Contains(out, "torn") {
		t.Errorf("after restart: verify exit %d, stdout %q, stderr %q", code, out, errOut)
	}
}

// TestAuditReplacedFile replaces the live audit file as sed -i does (a copy
// renamed over it). The next reveal fails closed and readiness goes down;
// the documented recovery (stop, jeton audit archive, start) brings jetond
// back with a chain that verifies across the break.
func TestAuditReplacedFile(t *testing.T) {
	d := startAuditDeployment(t, "it-replaced")
	its := items(t, 0, 4)
	tokenize(t, d.h, "acme", its)
	detokenizeAll(t, d.h, its[:2])

	live := filepath.Join(d.dir, "audit-000001.jsonl")
	b, err := os.ReadFile(live)
	if err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(live+".sed", b, 0o600); err != nil {
		t.Fatal(err)
	}
	if err := os.Rename(live+".sed", live); err != nil {
		t.Fatal(err)
	}

	res, err := d.h.TTP(t).Detokenize(context.Background(), []string{its[2].Token}, purpose, caseRef)
	wantUnavailable(t, "Detokenize after the audit file was replaced", res, err)
	eventually(t, "readiness to go down", func() error {
		conn := d.h.dial(t, d.h.TrustedAddr, d.h.pki.TTPCert, d.h.pki.TTPKey)
		defer conn.Close()
		ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
		defer cancel()
		r, err := healthpb.NewHealthClient(conn).Check(ctx, &healthpb.HealthCheckRequest{})
		if err != nil || r.GetStatus() != healthpb.HealthCheckResponse_NOT_SERVING {
			return fmt.Errorf("health %v, %v; want NOT_SERVING", r.GetStatus(), err)
		}
		return nil
	})
	if code, body := readyz(t, d.h); code != http.StatusServiceUnavailable || !strings.Contains(body, "audit") {
		t.Errorf("/readyz = %d %q, want 503 naming audit", code, body)
	}
	// Still refused later: this does not heal by itself.
	res, err = d.h.TTP(t).Detokenize(context.Background(), []string{its[3].Token}, purpose, caseRef)
	wantUnavailable(t, "second Detokenize after the audit file was replaced", res, err)
	if !strings.Contains(d.h.Log(), "was replaced, moved or removed") {
		t.Error("jetond did not log why reveals are refused")
	}

	// The documented recovery.
	d.h.Stop(t)
	arch := exec.Command(jetonBin, "audit", "archive", "--dir", d.dir, "--reason", "audit file replaced by an editor")
	if out, err := arch.CombinedOutput(); err != nil {
		t.Fatalf("jeton audit archive: %v\n%s", err, out)
	}
	d.h.start(t)
	d.h.waitReady(t)
	detokenizeAll(t, d.h, its[2:])
	d.h.Stop(t)

	code, out, errOut := d.verify(t)
	if code != 0 || !strings.Contains(out, "ok: which follows chain") || !strings.Contains(out, "audit file replaced by an editor") {
		t.Fatalf("verify across the break: exit %d, stdout %q, stderr %q", code, out, errOut)
	}
}

// readyz fetches jetond's /readyz.
func readyz(t *testing.T, h *jetond) (int, string) {
	t.Helper()
	var addr string
	for _, kv := range h.env {
		if v, ok := strings.CutPrefix(kv, "JETON_METRICS_ADDR="); ok {
			addr = v
		}
	}
	resp, err := http.Get("http://" + addr + "/readyz")
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	var b bytes.Buffer
	b.ReadFrom(resp.Body)
	return resp.StatusCode, b.String()
}
