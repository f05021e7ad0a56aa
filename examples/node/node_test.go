// Package node_test runs the Node.js example client against a real jetond,
// so that jeton's API stays usable from outside Go.
package node_test

import (
	"bufio"
	"context"
	"errors"
	"net"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/jeton-dev/jeton/client"
)

// need skips (or fails in CI) when node or the installed packages are
// missing; `make test` installs them with npm ci.
func need(t *testing.T) string {
	t.Helper()
	if testing.Short() {
		t.Skip("builds jetond and runs node")
	}
	node, err := exec.LookPath("node")
	if err == nil {
		_, err = os.Stat(filepath.Join("node_modules", "@grpc", "grpc-js"))
	}
	if err != nil {
		if os.Getenv("CI") == "true" {
			t.Fatalf("node or its packages are missing (run make node-deps): %v", err)
		}
		t.Skipf("node or its packages are missing (run make node-deps): %v", err)
	}
	return node
}

func freeAddr(t *testing.T) string {
	t.Helper()
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer l.Close()
	return l.Addr().String()
}

// startDevJetond builds jetond and runs it in dev mode on free ports.
func startDevJetond(t *testing.T) (dir, public, trusted string) {
	t.Helper()
	bin := filepath.Join(t.TempDir(), "jetond")
	if out, err := exec.Command("go", "build", "-o", bin, "github.com/jeton-dev/jeton/cmd/jetond").CombinedOutput(); err != nil {
		t.Fatalf("building jetond: %v\n%s", err, out)
	}
	dir = filepath.Join(t.TempDir(), "dev")
	public, trusted, metrics := freeAddr(t), freeAddr(t), freeAddr(t)
	cmd := exec.Command(bin, "--dev", "--dev-dir", dir, "--public-addr", public, "--trusted-addr", trusted, "--metrics-addr", metrics)
	cmd.SysProcAttr = &syscall.SysProcAttr{Pdeathsig: syscall.SIGKILL}
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { cmd.Process.Signal(syscall.SIGTERM); cmd.Wait() })
	deadline := time.Now().Add(60 * time.Second)
	for {
		if resp, err := http.Get("http://" + metrics + "/readyz"); err == nil {
			resp.Body.Close()
			if resp.StatusCode == http.StatusOK {
				return dir, public, trusted
			}
		}
		if time.Now().After(deadline) {
			t.Fatal("jetond not ready within 60s")
		}
		time.Sleep(50 * time.Millisecond)
	}
}

type result struct {
	code           int
	stdout, stderr string
}

func runNode(t *testing.T, node string, env []string, args ...string) result {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 60*time.Second)
	defer cancel()
	cmd := exec.CommandContext(ctx, node, append([]string{"detokenize.js"}, args...)...)
	cmd.Env = append(os.Environ(), env...)
	var out, errOut strings.Builder
	cmd.Stdout, cmd.Stderr = &out, &errOut
	err := cmd.Run()
	code := 0
	var ee *exec.ExitError
	if errors.As(err, &ee) {
		code = ee.ExitCode()
	} else if err != nil {
		t.Fatal(err)
	}
	return result{code, out.String(), errOut.String()}
}

func TestNodeClientReveals(t *testing.T) {
	node := need(t)
	dir, public, trusted := startDevJetond(t)
	f := func(n string) string { return filepath.Join(dir, n) }
	sponsor, err := client.NewSponsor(public, client.WithTLSFiles(f("ca.pem"), f("sponsor.pem"), f("sponsor-key.pem")))
	if err != nil {
		t.Fatal(err)
	}
	defer sponsor.Close()
	tok, err := sponsor.TokenizeValue(context.Background(), client.ClassName, "Éloïse Test-Person")
	if err != nil {
		t.Fatal(err)
	}
	env := []string{"JETON_ADDR=" + trusted, "JETON_CACERT=" + f("ca.pem"), "JETON_CERT=" + f("ttp.pem"), "JETON_KEY=" + f("ttp-key.pem")}

	got := runNode(t, node, env, "--purpose", "support", tok)
	if got.code != 0 || got.stdout != "Éloïse Test-Person\n" {
		t.Fatalf("reveal: exit %d, stdout %q, stderr %q", got.code, got.stdout, got.stderr)
	}

	// Per-item errors: an unknown token fails alone, by position.
	bad := tok[:len(tok)-1] + map[bool]string{true: "2", false: "3"}[strings.HasSuffix(tok, "3")]
	got = runNode(t, node, env, "--purpose", "support", tok, bad)
	if got.code != 1 || got.stdout != "Éloïse Test-Person\n\n" || !strings.Contains(got.stderr, "token 2: INVALID_ARGUMENT: malformed token") {
		t.Fatalf("per-item error: exit %d, stdout %q, stderr %q", got.code, got.stdout, got.stderr)
	}

	// Without a purpose the server refuses the call.
	got = runNode(t, node, env, tok)
	if got.code != 3 || got.stdout != "" || !strings.Contains(got.stderr, "INVALID_ARGUMENT: purpose is required") {
		t.Fatalf("no purpose: exit %d, stdout %q, stderr %q", got.code, got.stdout, got.stderr)
	}

	// The sponsor's certificate is refused on the trusted listener.
	spEnv := []string{"JETON_ADDR=" + trusted, "JETON_CACERT=" + f("ca.pem"), "JETON_CERT=" + f("sponsor.pem"), "JETON_KEY=" + f("sponsor-key.pem")}
	if got = runNode(t, node, spEnv, "--purpose", "support", tok); got.code != 3 || got.stdout != "" {
		t.Fatalf("sponsor certificate: exit %d, stdout %q, stderr %q", got.code, got.stdout, got.stderr)
	}
}

// The lockfile pins exact versions and names no registry host.
func TestLockfileHasNoRegistryURLs(t *testing.T) {
	b, err := os.ReadFile("package-lock.json")
	if err != nil {
		t.Fatal(err)
	}
	sc := bufio.NewScanner(strings.NewReader(string(b)))
	for n := 1; sc.Scan(); n++ {
		if l := sc.Text(); strings.Contains(l, `"resolved"`) || strings.Contains(l, "registry") {
			t.Errorf("package-lock.json line %d holds a download address", n)
		}
	}
	pkg, _ := os.ReadFile("package.json")
	for _, want := range []string{`"@grpc/grpc-js": "1.14.7"`, `"@grpc/proto-loader": "0.8.1"`} {
		if !strings.Contains(string(pkg), want) {
			t.Errorf("package.json does not pin %s", want)
		}
	}
}
