// Package testenv starts real redis-server and Vault processes for
// integration tests: on loopback, on free ports, one set of instances per
// test, all stopped by t.Cleanup.
//
// Binaries are found through JETON_REDIS_SERVER (default: redis-server on
// PATH, then /usr/bin/redis-server) and JETON_VAULT_BIN (default:
// <repo root>/.tools/bin/vault, built by `make testenv`). When one is
// missing the test skips with the reason, except under CI=true, where it
// fails so a broken CI image can never pass by skipping everything.
//
// The methods that restart or stop a server call t.Fatal on failure, so call
// them from the test's own goroutine.
package testenv

import (
	"bufio"
	"errors"
	"fmt"
	"net"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"
)

// modulePath identifies the repository root among the go.mod files above
// the working directory (integration/vaultserver has its own go.mod).
const modulePath = "github.com/jeton-dev/jeton"

// logTailLines is how much of a server's log a failed test prints.
const logTailLines = 60

// missing reports an absent binary: fatal in CI, a skip elsewhere.
func missing(t testing.TB, what, reason string) {
	t.Helper()
	if os.Getenv("CI") == "true" {
		t.Fatalf("testenv: %s not available: %s; install it with `make testenv`", what, reason)
	}
	t.Skipf("testenv: %s not available: %s (run `make testenv` to install it)", what, reason)
}

// redisServerBin returns the redis-server binary to run.
func redisServerBin(t testing.TB) string {
	t.Helper()
	if p := os.Getenv("JETON_REDIS_SERVER"); p != "" {
		if err := executable(p); err != nil {
			missing(t, "redis-server", fmt.Sprintf("JETON_REDIS_SERVER=%s: %v", p, err))
		}
		return p
	}
	if p, err := exec.LookPath("redis-server"); err == nil {
		return p
	}
	const fallback = "/usr/bin/redis-server"
	if err := executable(fallback); err != nil {
		missing(t, "redis-server", "not on PATH and not at "+fallback)
	}
	return fallback
}

// vaultBin returns the Vault server binary to run.
func vaultBin(t testing.TB) string {
	t.Helper()
	if p := os.Getenv("JETON_VAULT_BIN"); p != "" {
		if err := executable(p); err != nil {
			missing(t, "vault", fmt.Sprintf("JETON_VAULT_BIN=%s: %v", p, err))
		}
		return p
	}
	root, err := repoRoot()
	if err != nil {
		missing(t, "vault", err.Error())
	}
	p := filepath.Join(root, ".tools", "bin", "vault")
	if err := executable(p); err != nil {
		missing(t, "vault", err.Error())
	}
	return p
}

func executable(path string) error {
	fi, err := os.Stat(path)
	if err != nil {
		return err
	}
	if fi.IsDir() || fi.Mode().Perm()&0o111 == 0 {
		return fmt.Errorf("%s is not an executable file", path)
	}
	return nil
}

// repoRoot walks up from the working directory to the go.mod of the jeton
// module.
func repoRoot() (string, error) {
	dir, err := os.Getwd()
	if err != nil {
		return "", err
	}
	for {
		if mod, err := moduleOf(filepath.Join(dir, "go.mod")); err == nil && mod == modulePath {
			return dir, nil
		}
		parent := filepath.Dir(dir)
		if parent == dir {
			return "", fmt.Errorf("no go.mod for module %s above the working directory", modulePath)
		}
		dir = parent
	}
}

// moduleOf returns the module path declared in a go.mod file.
func moduleOf(gomod string) (string, error) {
	f, err := os.Open(gomod)
	if err != nil {
		return "", err
	}
	defer f.Close()
	sc := bufio.NewScanner(f)
	for sc.Scan() {
		line := strings.TrimSpace(sc.Text())
		if rest, ok := strings.CutPrefix(line, "module"); ok && rest != "" && (rest[0] == ' ' || rest[0] == '\t') {
			rest, _, _ = strings.Cut(rest, "//")
			return strings.Trim(strings.TrimSpace(rest), "\"`"), nil
		}
	}
	if err := sc.Err(); err != nil {
		return "", err
	}
	return "", errors.New("no module line")
}

// freePort returns a loopback TCP port that was free a moment ago. Another
// process may take it before the server binds it; tests accept that small
// race rather than parsing the port back out of each server's log.
func freePort(t testing.TB) int {
	t.Helper()
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatalf("testenv: find a free port: %v", err)
	}
	defer l.Close()
	return l.Addr().(*net.TCPAddr).Port
}

// proc is one server process that can be stopped and started again with the
// same arguments. Its output is appended to one log file across restarts.
type proc struct {
	name    string
	bin     string
	args    []string
	env     []string // nil: inherit
	logPath string

	mu   sync.Mutex
	cmd  *exec.Cmd
	done chan struct{} // closed when cmd has exited
}

func newProc(t testing.TB, name, bin string, args []string) *proc {
	t.Helper()
	p := &proc{
		name:    name,
		bin:     bin,
		args:    args,
		logPath: filepath.Join(t.TempDir(), name+".log"),
	}
	// Registered after t.TempDir, so it runs before the directories are
	// removed: the process must be gone before its files are.
	t.Cleanup(func() {
		p.kill()
		if t.Failed() {
			t.Logf("testenv: last lines of the %s log (%s):\n%s", p.name, p.logPath, p.logTail(logTailLines))
		}
	})
	return p
}

func (p *proc) start(t testing.TB) {
	t.Helper()
	p.mu.Lock()
	defer p.mu.Unlock()
	if p.cmd != nil && !closed(p.done) {
		t.Fatalf("testenv: %s is already running", p.name)
	}
	logf, err := os.OpenFile(p.logPath, os.O_CREATE|os.O_WRONLY|os.O_APPEND, 0o600)
	if err != nil {
		t.Fatalf("testenv: open %s log: %v", p.name, err)
	}
	fmt.Fprintf(logf, "==== testenv: starting %s at %s\n", p.name, time.Now().Format(time.RFC3339Nano))
	cmd := exec.Command(p.bin, p.args...)
	cmd.Stdout = logf
	cmd.Stderr = logf
	cmd.Env = p.env
	cmd.SysProcAttr = sysProcAttr()
	if err := cmd.Start(); err != nil {
		logf.Close()
		t.Fatalf("testenv: start %s (%s): %v", p.name, p.bin, err)
	}
	done := make(chan struct{})
	go func() {
		err := cmd.Wait()
		fmt.Fprintf(logf, "==== testenv: %s exited: %v\n", p.name, err)
		logf.Close()
		close(done)
	}()
	p.cmd, p.done = cmd, done
}

// exited reports whether the process was started and has since exited.
func (p *proc) exited() bool {
	p.mu.Lock()
	defer p.mu.Unlock()
	return p.cmd != nil && closed(p.done)
}

// signal sends sig and waits up to timeout for the exit. It reports whether
// the process is gone.
func (p *proc) signal(sig os.Signal, timeout time.Duration) bool {
	p.mu.Lock()
	cmd, done := p.cmd, p.done
	p.mu.Unlock()
	if cmd == nil || closed(done) {
		return true
	}
	_ = cmd.Process.Signal(sig)
	return p.waitExit(timeout)
}

// sendSignal sends sig to the running process, if any, without waiting.
func (p *proc) sendSignal(sig os.Signal) {
	p.mu.Lock()
	cmd, done := p.cmd, p.done
	p.mu.Unlock()
	if cmd != nil && !closed(done) {
		_ = cmd.Process.Signal(sig)
	}
}

// waitExit waits up to timeout for the process to exit.
func (p *proc) waitExit(timeout time.Duration) bool {
	p.mu.Lock()
	cmd, done := p.cmd, p.done
	p.mu.Unlock()
	if cmd == nil {
		return true
	}
	select {
	case <-done:
		return true
	case <-time.After(timeout):
		return false
	}
}

// kill sends SIGKILL and waits for the exit; SIGKILL cannot be ignored, so
// the wait is bounded only as a guard against a zombie the kernel keeps.
func (p *proc) kill() { p.signal(syscall.SIGKILL, 30*time.Second) }

// logTail returns the last n lines of the log.
func (p *proc) logTail(n int) string {
	b, err := os.ReadFile(p.logPath)
	if err != nil {
		return fmt.Sprintf("(no log: %v)", err)
	}
	lines := strings.Split(strings.TrimRight(string(b), "\n"), "\n")
	if len(lines) > n {
		lines = lines[len(lines)-n:]
	}
	return strings.Join(lines, "\n")
}

// waitFor polls ready until it succeeds, the process exits or timeout
// passes; the last two fail the test with the log tail.
func (p *proc) waitFor(t testing.TB, what string, timeout time.Duration, ready func() error) {
	t.Helper()
	deadline := time.Now().Add(timeout)
	var last error
	for {
		if last = ready(); last == nil {
			return
		}
		if p.exited() {
			t.Fatalf("testenv: %s exited while waiting for %s (last error: %v); log tail:\n%s",
				p.name, what, last, p.logTail(logTailLines))
		}
		if time.Now().After(deadline) {
			t.Fatalf("testenv: %s: no %s after %s (last error: %v); log tail:\n%s",
				p.name, what, timeout, last, p.logTail(logTailLines))
		}
		time.Sleep(25 * time.Millisecond)
	}
}

func closed(c chan struct{}) bool {
	select {
	case <-c:
		return true
	default:
		return false
	}
}

func hostPort(port int) string { return net.JoinHostPort("127.0.0.1", strconv.Itoa(port)) }

// pid is the running process's id, 0 when it is not running.
func (p *proc) pid() int {
	p.mu.Lock()
	defer p.mu.Unlock()
	if p.cmd == nil || p.cmd.Process == nil || closed(p.done) {
		return 0
	}
	return p.cmd.Process.Pid
}
