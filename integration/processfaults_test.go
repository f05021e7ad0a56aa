package integration_test

import (
	"context"
	"errors"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"

	"github.com/jeton-dev/jeton/client"
	"github.com/jeton-dev/jeton/integration/testenv"
)

// TestJetondKilledMidBatch: jetond is killed (SIGKILL) while batched
// Tokenize and Detokenize calls are in flight, then started again on the
// same Redis, Vault and audit directory. Every batch acknowledged before
// the kill reveals in full, with every value right (none half-written);
// the audit chain verifies. A crash can also leave a partial last line in
// the audit log (a group commit torn mid-write): one is added, as such a
// crash would leave it, and `jeton audit verify` must name it; jetond cuts
// it off when it starts, and the log then verifies whole.
func TestJetondKilledMidBatch(t *testing.T) {
	r := testenv.StartRedis(t)
	v := startVaultEnv(t, false)
	h := startJetond(t, jetondOpts{RedisAddrs: []string{r.Addr}, Vault: v, Token: v.token(t, "jeton-jetond")})
	warm := items(t, 0, 200)
	tokenize(t, h, "acme", warm)
	sponsor, ttp := h.Sponsor(t, "acme"), h.TTP(t)

	var (
		mu       sync.Mutex
		acked    []item
		inFlight int
		reveals  int
	)
	ctx, stop := context.WithCancel(context.Background())
	var wg sync.WaitGroup
	t.Cleanup(func() { stop(); wg.Wait() })
	for w := range 2 {
		wg.Go(func() {
			for n := 100_000 * (w + 1); ctx.Err() == nil; n += 500 {
				its := items(t, n, 500)
				err := tryTokenizeWith(sponsor, "acme", its)
				mu.Lock()
				if err == nil {
					acked = append(acked, its...)
				} else {
					inFlight++
				}
				mu.Unlock()
			}
		})
	}
	wg.Go(func() {
		for n := 0; ctx.Err() == nil; n++ {
			if tryDetokenizeWith(ttp, warm[n%4*50:n%4*50+50]) == nil {
				mu.Lock()
				reveals++
				mu.Unlock()
			}
		}
	})
	eventually(t, "some batches acknowledged before the kill", func() error {
		mu.Lock()
		defer mu.Unlock()
		if len(acked) < 2000 || reveals < 5 {
			return errors.New("not yet")
		}
		return nil
	})
	h.kill()
	stop()
	wg.Wait()
	t.Logf("killed with %d tokens acknowledged in %d-item batches, %d reveals answered; %d calls cut off",
		len(acked), 500, reveals, inFlight)

	if code, out := verifyAudit(t, h); code != 0 {
		t.Fatalf("audit log right after the kill: jeton audit verify exit %d: %s", code, out)
	}
	// A torn group commit: the start of a next record, without its end.
	files, _ := filepath.Glob(filepath.Join(h.AuditDir, "audit-*.jsonl"))
	last := files[len(files)-1]
	f, err := os.OpenFile(last, os.O_WRONLY|os.O_APPEND, 0)
	if err != nil {
		t.Fatal(err)
	}
	if _, err := f.WriteString(`{"v":1,"seq":`); err != nil {
		t.Fatal(err)
	}
	f.Close()
	code, out := verifyAudit(t, h)
	if code != 0 || !strings.Contains(out, "torn final record") {
		t.Fatalf("jeton audit verify on a log with a partial last record: exit %d, want 0 with the torn final record reported: %s", code, out)
	}
	t.Logf("jeton audit verify on the torn log: exit %d: %s", code, strings.TrimSpace(out))

	h.start(t)
	h.waitReady(t)
	if !strings.Contains(h.Log(), "cut off a partial last line") {
		t.Error("jetond did not say it cut off the partial last line")
	}
	if code, out := verifyAudit(t, h); code != 0 {
		t.Fatalf("audit log after the restart: jeton audit verify exit %d: %s", code, out)
	}
	// Every acknowledged batch reveals whole and right.
	for lo := 0; lo < len(acked); lo += 1000 {
		detokenizeAll(t, h, acked[lo:min(lo+1000, len(acked))])
	}
	detokenizeAll(t, h, warm)
}

// TestAuditDiskFull: the audit log sits on a small filesystem of its own
// (tmpfs, mounted by the test), which is then filled. Reveals fail closed
// (UNAVAILABLE, no value) and readiness goes down naming the audit log;
// once space comes back both recover without a restart, and the log
// verifies.
func TestAuditDiskFull(t *testing.T) {
	mnt := mountSmallFS(t, "2m")
	r := testenv.StartRedis(t)
	v := startVaultEnv(t, false)
	h := startJetond(t, jetondOpts{RedisAddrs: []string{r.Addr}, Vault: v, Token: v.token(t, "jeton-jetond"),
		AuditDir: filepath.Join(mnt, "audit"), HealthInterval: 500 * time.Millisecond})
	its := items(t, 0, 20)
	tokenize(t, h, "acme", its)
	detokenizeAll(t, h, its)
	pid := h.Pid()

	filler := filepath.Join(mnt, "filler")
	fill(t, filler)
	full := time.Now()
	toks := []string{its[0].Token, its[1].Token}
	// The audit file's last page may still have room for a few records: a
	// full disk shows at the first record that needs a new block. Every
	// reveal before that one is durable; that one, and each after it, must
	// fail closed.
	var res []client.RevealResult
	var err error
	fit := 0
	for ; fit < 200; fit++ {
		if res, err = h.TTP(t).Detokenize(context.Background(), toks, purpose, caseRef); err != nil {
			break
		}
	}
	wantUnavailable(t, "Detokenize with the audit disk full", res, err)
	t.Logf("with the disk full, %d reveals fit in the audit file's last block before one failed", fit)
	body := waitReadiness(t, h, 503)
	if !strings.Contains(body, "audit") {
		t.Errorf("/readyz with the audit disk full says %q; want it to name the audit log", body)
	}
	t.Logf("audit disk full: a reveal failed UNAVAILABLE, /readyz %q %s after the disk filled", body, time.Since(full).Round(time.Millisecond))
	// Tokenize writes no audit record and keeps working.
	tokenize(t, h, "acme", items(t, 100, 5))

	if err := os.Remove(filler); err != nil {
		t.Fatal(err)
	}
	freed := time.Now()
	waitReadiness(t, h, 200)
	eventually(t, "Detokenize once space is back", func() error { return tryDetokenize(t, h, its) })
	t.Logf("space back: ready and revealing again %s after", time.Since(freed).Round(time.Millisecond))
	if h.Pid() != pid {
		t.Fatal("jetond was restarted")
	}
	if code, out := verifyAudit(t, h); code != 0 {
		t.Fatalf("audit log after the disk was full: jeton audit verify exit %d: %s", code, out)
	}
}

// mountSmallFS mounts a tmpfs of size (mount's syntax, e.g. "2m") on a new
// directory and unmounts it when the test ends, after the processes that
// use it are gone. It needs root; without it the test skips (fails in CI,
// which runs as root).
func mountSmallFS(t *testing.T, size string) string {
	t.Helper()
	dir := filepath.Join(t.TempDir(), "small")
	if err := os.Mkdir(dir, 0o700); err != nil {
		t.Fatal(err)
	}
	out, err := exec.Command("mount", "-t", "tmpfs", "-o", "size="+size+",mode=0700", "tmpfs", dir).CombinedOutput()
	if err != nil {
		if os.Getenv("CI") == "true" {
			t.Fatalf("mount a %s tmpfs: %v: %s", size, err, out)
		}
		t.Skipf("cannot mount a small filesystem (needs root): %v: %s", err, out)
	}
	// Registered before jetond starts, so it runs after jetond is killed.
	t.Cleanup(func() {
		if out, err := exec.Command("umount", "-l", dir).CombinedOutput(); err != nil {
			t.Errorf("umount %s: %v: %s", dir, err, out)
		}
	})
	return dir
}

// fill writes path until the filesystem is full.
func fill(t *testing.T, path string) {
	t.Helper()
	f, err := os.Create(path)
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	chunk := make([]byte, 64<<10)
	for {
		if _, err := f.Write(chunk); err != nil {
			if errors.Is(err, syscall.ENOSPC) {
				return
			}
			t.Fatalf("fill %s: %v", path, err)
		}
	}
}
