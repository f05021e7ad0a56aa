package integration_test

import (
	"bytes"
	"context"
	"crypto/sha256"
	"encoding/hex"
	"encoding/json"
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

	"github.com/jeton-dev/jeton/client"
	"github.com/jeton-dev/jeton/integration/testenv"
	"github.com/jeton-dev/jeton/tokenizer/vaultkeys"
)

// auditDeployment is one jetond with its own audit replica id, on a real
// Redis and a real Vault set up by jeton vault setup, and a Vault token
// that holds only the verifier's policy.
type auditDeployment struct {
	h        *jetond
	v        *vaultEnv
	dir      string // audit.dir
	replica  string
	verifier []string // environment of jeton audit verify --vault
}

// startAuditDeployment starts one jetond; checkpoint, if not empty, is
// YAML for audit.checkpoint (indented under it).
func startAuditDeployment(t *testing.T, replica string, checkpoint ...string) *auditDeployment {
	t.Helper()
	redis := testenv.StartRedis(t)
	v := startVaultEnv(t, false)
	h := newJetond(t, jetondOpts{RedisAddrs: []string{redis.Addr}, Vault: v, Token: v.token(t, vaultkeys.PolicyJetond)})
	h.env = append(h.env, "JETON_AUDIT_REPLICA="+replica)
	h.replica = replica
	if len(checkpoint) > 0 {
		cfg, err := os.ReadFile(h.cfgPath)
		if err != nil {
			t.Fatal(err)
		}
		at := bytes.Index(cfg, []byte("\naudit:\n  dir: "))
		end := at + 1 + bytes.IndexByte(cfg[at+1:], '\n') + 1 // after "audit:"
		end += bytes.IndexByte(cfg[end:], '\n') + 1           // after "  dir: ..."
		block := "  checkpoint:\n    " + strings.Join(checkpoint, "\n    ") + "\n"
		writeFile(t, h.cfgPath, string(cfg[:end])+block+string(cfg[end:]))
	}
	h.start(t)
	h.waitReady(t)
	return &auditDeployment{
		h: h, v: v, dir: filepath.Join(h.dir, "audit"), replica: replica,
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
	// reports it and passes, and jetond cuts it off and carries on. (After
	// a clean stop there is no write to tear: see
	// TestAuditForgedAfterCleanStop.)
	restore(t, d.dir, latest)
	d.h.start(t)
	d.h.waitReady(t)
	d.reveal(t, 7, 1)
	d.h.kill()
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
	if code, out, errOut := d.verify(t); code != 0 || strings.Contains(out, "torn") || !strings.Contains(out, "unclean stop before seq") {
		t.Errorf("after restart: verify exit %d, stdout %q, stderr %q; want ok, the crash on record", code, out, errOut)
	}
}

// forgeRecord appends to the replica's log a correctly chained record
// that jetond never wrote, as an operator with a shell on the audit host
// can (the chain is unkeyed): a reveal framing a TTP identity.
func forgeRecord(t *testing.T, dir string) {
	t.Helper()
	path := filepath.Join(dir, "audit-000001.jsonl")
	b, err := os.ReadFile(path)
	if err != nil {
		t.Fatal(err)
	}
	ls := bytes.Split(bytes.TrimSuffix(b, []byte("\n")), []byte("\n"))
	var last struct {
		Seq  uint64
		Hash string
	}
	if err := json.Unmarshal(ls[len(ls)-1], &last); err != nil {
		t.Fatal(err)
	}
	prev, _ := hex.DecodeString(last.Hash)
	rec := `{"time":"2026-01-01T00:00:00Z","identity":"spiffe://jeton.test/ttp-fake-officer","peer":"127.0.0.1:1","method":"/jeton.v1.Detokenizer/Detokenize",` +
		`"purpose":"curiosity","case_ref":"none","items":[{"token_hash":"00112233445566778899aabbccddeeff","outcome":"revealed"}],"outcome":"ok"}`
	seq := last.Seq + 1
	h := sha256.New()
	fmt.Fprintf(h, "jeton/audit/v2\x00%s{\"v\":2,\"seq\":%d,\"rec\":%s}", prev, seq, rec)
	line := fmt.Sprintf("{\"v\":2,\"seq\":%d,\"prev\":\"%x\",\"rec\":%s,\"hash\":\"%x\"}\n", seq, prev, rec, h.Sum(nil))
	if err := os.WriteFile(path, append(b, line...), 0o600); err != nil {
		t.Fatal(err)
	}
}

// TestAuditForgedAfterCleanStop: after a clean stop the chain's end is
// anchored as closed, so a correctly chained record appended afterwards
// is refused by jeton audit verify (public key only) and by jetond at
// start-up: the next checkpoint can never anchor it. After kill -9 the
// last records were not all covered by a checkpoint; jetond then says
// so on the record, and verify reports it.
func TestAuditForgedAfterCleanStop(t *testing.T) {
	d := startAuditDeployment(t, "it-forged")
	d.reveal(t, 0, 2)
	d.h.Stop(t)
	clean := snapshot(t, d.dir)
	forgeRecord(t, d.dir)
	if code, _, errOut := d.verify(t); code != 1 || !strings.Contains(errOut, "past closed checkpoint") {
		t.Fatalf("verify of a log with a record forged after a clean stop: exit %d, stderr %q", code, errOut)
	}
	before := len(d.h.Log())
	d.h.start(t)
	if code := d.h.waitExit(t, readyTimeout); code == 0 {
		t.Fatal("jetond continued a log with a record forged after its clean stop")
	}
	if refusal := d.h.Log()[before:]; !strings.Contains(refusal, "past closed checkpoint") {
		t.Fatalf("jetond's refusal does not name the cause:\n%s", tail(refusal, 5))
	}

	restore(t, d.dir, clean)
	d.h.start(t)
	d.h.waitReady(t)
	d.reveal(t, 2, 1)
	d.h.kill() // nothing anchors the last reveal now
	forgeRecord(t, d.dir)
	d.h.start(t)
	d.h.waitReady(t)
	if !strings.Contains(d.h.Log(), "continued the chain after an unclean stop") {
		t.Error("jetond did not log the unclean stop")
	}
	d.h.Stop(t)
	code, out, errOut := d.verify(t)
	if code != 0 || !strings.Contains(out, "unclean stop before seq") || !strings.Contains(out, "covered by no checkpoint") {
		t.Fatalf("verify after kill -9 and restart: exit %d, stdout %q, stderr %q; want ok, naming the uncovered records", code, out, errOut)
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
	if !strings.Contains(d.h.Log(), "the log file was replaced, moved, removed, truncated or written to") {
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

	// The recovery cannot hide an erasure. Wiping the live chain behind a
	// hand-written request that names the older chain's archive gives a
	// chain jetond starts, but whose history does not verify.
	archives, _ := filepath.Glob(filepath.Join(d.dir, "archived", "*"))
	if len(archives) != 1 {
		t.Fatalf("archives: %v, want one", archives)
	}
	live1, err := filepath.Glob(filepath.Join(d.dir, "audit-*.jsonl"))
	if err != nil || len(live1) == 0 {
		t.Fatalf("live files: %v %v", live1, err)
	}
	for _, f := range live1 {
		if err := os.Remove(f); err != nil {
			t.Fatal(err)
		}
	}
	rel, _ := filepath.Rel(d.dir, archives[0])
	req, _ := json.Marshal(map[string]any{"archive": rel, "reason": "routine", "time": time.Now().UTC()})
	writeFile(t, filepath.Join(d.dir, "NEW-CHAIN"), string(req))
	d.h.start(t)
	d.h.waitReady(t)
	d.h.Stop(t)
	code, out, errOut = d.verify(t)
	if code == 0 || !strings.Contains(errOut, "checkpoint mismatch") {
		t.Fatalf("verify of a chain wiped behind a request naming the older archive: exit %d, stdout %q, stderr %q; want a checkpoint mismatch", code, out, errOut)
	}

	// Erasing the archive the current chain names is caught too.
	if err := os.RemoveAll(archives[0]); err != nil {
		t.Fatal(err)
	}
	code, out, errOut = d.verify(t)
	if code == 0 || !strings.Contains(errOut, "missing file") {
		t.Fatalf("verify with the archive erased: exit %d, stdout %q, stderr %q; want a missing file", code, out, errOut)
	}
}

// TestAuditCopyTruncated: logrotate's copytruncate copies the live file
// and truncates it in place, keeping its inode. The next reveal fails
// closed and readiness goes down; the README's recovery (put the copy
// back, archive, start) brings jetond back with a history that verifies.
func TestAuditCopyTruncated(t *testing.T) {
	d := startAuditDeployment(t, "it-copytruncate")
	its := items(t, 0, 3)
	tokenize(t, d.h, "acme", its)
	detokenizeAll(t, d.h, its[:1])

	live := filepath.Join(d.dir, "audit-000001.jsonl")
	b, err := os.ReadFile(live)
	if err != nil {
		t.Fatal(err)
	}
	writeFile(t, live+".1", string(b))
	if err := os.Truncate(live, 0); err != nil {
		t.Fatal(err)
	}
	res, err := d.h.TTP(t).Detokenize(context.Background(), []string{its[1].Token}, purpose, caseRef)
	wantUnavailable(t, "Detokenize after copytruncate", res, err)
	eventually(t, "readiness to go down", func() error {
		if code, body := readyz(t, d.h); code != http.StatusServiceUnavailable || !strings.Contains(body, "audit") {
			return fmt.Errorf("/readyz = %d %q, want 503 naming audit", code, body)
		}
		return nil
	})
	if !strings.Contains(d.h.Log(), "the log file was replaced, moved, removed, truncated or written to") {
		t.Error("jetond did not log why reveals are refused")
	}

	d.h.Stop(t)
	if err := os.Rename(live+".1", live); err != nil {
		t.Fatal(err)
	}
	arch := exec.Command(jetonBin, "audit", "archive", "--dir", d.dir, "--reason", "copytruncate by logrotate")
	if out, err := arch.CombinedOutput(); err != nil {
		t.Fatalf("jeton audit archive: %v\n%s", err, out)
	}
	d.h.start(t)
	d.h.waitReady(t)
	detokenizeAll(t, d.h, its[1:])
	d.h.Stop(t)
	code, out, errOut := d.verify(t)
	if code != 0 || !strings.Contains(out, "ok: which follows chain") || !strings.Contains(out, "copytruncate by logrotate") {
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

// TestAuditAnchorOutageFailsClosed: an operator who blocks Vault (here it
// is sealed) leaves the records written meanwhile covered by no
// checkpoint, and could then kill jetond and rewrite them. Data keys are
// cached, so reveals go on, but only until the oldest uncovered record is
// audit.checkpoint.max_unanchored_age old: then they fail closed and
// readiness goes down, however few records wait. Both recover once Vault
// answers again, and the log verifies.
func TestAuditAnchorOutageFailsClosed(t *testing.T) {
	d := startAuditDeployment(t, "it-outage", "every: 200ms", "max_unanchored_age: 2s")
	its := items(t, 0, 2)
	tokenize(t, d.h, "acme", its)
	detokenizeAll(t, d.h, its)

	d.v.Seal()
	detokenizeAll(t, d.h, its[:1]) // cached keys: served, durable, uncovered
	eventually(t, "reveals to fail closed while Vault is sealed", func() error {
		res, err := d.h.TTP(t).Detokenize(context.Background(), []string{its[1].Token}, purpose, caseRef)
		if errors.Is(err, client.ErrUnavailable) && res == nil {
			return nil
		}
		return fmt.Errorf("Detokenize = %d results, %v; want UNAVAILABLE", len(res), err)
	})
	eventually(t, "readiness to go down", func() error {
		if code, body := readyz(t, d.h); code != http.StatusServiceUnavailable || !strings.Contains(body, "audit") {
			return fmt.Errorf("/readyz = %d %q, want 503 naming audit", code, body)
		}
		return nil
	})
	if !strings.Contains(d.h.Log(), "no checkpoint covers records written") {
		t.Error("jetond did not log why reveals are refused")
	}

	d.v.Unseal()
	eventually(t, "reveals after Vault came back", func() error { return tryDetokenize(t, d.h, its) })
	d.h.Stop(t)
	if code, out, errOut := d.verify(t); code != 0 {
		t.Fatalf("verify after the outage: exit %d, stdout %q, stderr %q", code, out, errOut)
	}
}

// TestAuditVerifyNamesReplica: two replicas anchor in one Vault. A
// directory swapped for the other replica's log verified ok against that
// replica's anchor when verify took the replica from the log; now the
// verifier must name it, and the log and checkpoint must be that
// replica's.
func TestAuditVerifyNamesReplica(t *testing.T) {
	d := startAuditDeployment(t, "it-rep-a")
	b := newJetond(t, jetondOpts{RedisAddrs: d.h.opts.RedisAddrs, Vault: d.v, Token: d.v.token(t, vaultkeys.PolicyJetond)})
	b.env = append(b.env, "JETON_AUDIT_REPLICA=it-rep-b")
	b.replica = "it-rep-b"
	b.start(t)
	b.waitReady(t)
	d.reveal(t, 0, 1)
	its := items(t, 10, 1)
	tokenize(t, b, "acme", its)
	detokenizeAll(t, b, its)
	d.h.Stop(t)
	b.Stop(t)

	run := func(args ...string) (int, string) {
		cmd := exec.Command(jetonBin, append([]string{"audit", "verify", "--vault"}, args...)...)
		cmd.Env = d.verifier
		out, err := cmd.CombinedOutput()
		var ee *exec.ExitError
		if errors.As(err, &ee) {
			return ee.ExitCode(), string(out)
		}
		if err != nil {
			t.Fatal(err)
		}
		return 0, string(out)
	}
	if code, out := run("--replica", "it-rep-b", b.AuditDir); code != 0 {
		t.Fatalf("replica b's own log: exit %d: %s", code, out)
	}
	if code, out := run("--replica", d.replica, b.AuditDir); code != 1 || !strings.Contains(out, "other replica") {
		t.Fatalf("replica b's log given as replica a's: exit %d: %s; want 1, other replica", code, out)
	}
	if code, out := run(b.AuditDir); code != 2 || !strings.Contains(out, "--vault needs --replica") {
		t.Fatalf("no --replica: exit %d: %s; want a usage error", code, out)
	}
}
