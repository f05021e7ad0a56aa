//go:build linux

package main

import (
	"bufio"
	"fmt"
	"io"
	"net"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/jeton-dev/jeton/client"
	"github.com/jeton-dev/jeton/server"
)

// The flood: connections that open and never send a byte. 20,000, as in
// the report that found them exhausting jetond's descriptors.
const (
	floodConns = 20000
	// jetond runs with this many descriptors, far fewer than the flood:
	// without its caps the flood would exhaust them. (This limit is the
	// child's own, set with ulimit, so the test does not depend on the
	// machine's.)
	floodNofile = 4096
)

// Environment of TestFloodProcess, the test binary run as a flooding
// process.
const (
	envFloodAddr    = "JETON_TEST_FLOOD_ADDR"
	envFloodSources = "JETON_TEST_FLOOD_SOURCES"
	envFloodConns   = "JETON_TEST_FLOOD_CONNS"
)

// TestFloodProcess is not a test: run by TestIdleFloodLeavesServiceUp in a
// child process, it opens connections to $JETON_TEST_FLOOD_ADDR from the
// loopback sources in $JETON_TEST_FLOOD_SOURCES, in turn, holds them
// without a byte, prints how many it made, and waits for stdin to close.
// Several processes share the flood, so no descriptor limit of one of
// them (this machine's hard limit may be 20,000) caps it.
func TestFloodProcess(t *testing.T) {
	addr := os.Getenv(envFloodAddr)
	if addr == "" {
		t.Skip("run by TestIdleFloodLeavesServiceUp")
	}
	n, _ := strconv.Atoi(os.Getenv(envFloodConns))
	sources := strings.Split(os.Getenv(envFloodSources), ",")
	held := make([]net.Conn, 0, n)
	made, reset := 0, 0
	for i := range n {
		d := net.Dialer{
			LocalAddr: &net.TCPAddr{IP: net.ParseIP(sources[i%len(sources)])},
			Timeout:   30 * time.Second,
			// IP_BIND_ADDRESS_NO_PORT: pick the port at connect, per
			// source address, so the flood shares the ephemeral range
			// across sources instead of taking 20,000 ports from every
			// other test on the machine.
			Control: func(_, _ string, c syscall.RawConn) error {
				return c.Control(func(fd uintptr) { _ = syscall.SetsockoptInt(int(fd), syscall.IPPROTO_IP, 24, 1) })
			},
		}
		c, err := d.Dial("tcp", addr)
		switch {
		case err == nil:
			held = append(held, c)
			made++
		case strings.Contains(err.Error(), "reset by peer"):
			reset++ // refused before the dial returned: made all the same
			made++
		default:
			fmt.Printf("error after %d: %v\n", made, err)
			os.Exit(1)
		}
	}
	fmt.Printf("held %d\n", made)
	io.Copy(io.Discard, os.Stdin)
	for _, c := range held {
		c.Close()
	}
}

// flood runs n idle connections from sources in child processes and
// returns once all are made; they are held until the test ends.
func flood(t *testing.T, addr string, sources []string, n int) {
	t.Helper()
	var rl syscall.Rlimit
	if err := syscall.Getrlimit(syscall.RLIMIT_NOFILE, &rl); err != nil {
		t.Fatal(err)
	}
	// Each child holds what its own limit allows, with room to spare.
	per := min(5000, int(rl.Max)-200)
	if per < 100 {
		t.Skipf("the descriptor limit (%d) cannot hold a flood", rl.Max)
	}
	type child struct {
		cmd   *exec.Cmd
		stdin io.Closer
		out   *bufio.Reader
	}
	var children []child
	for done := 0; done < n; done += per {
		k := min(per, n-done)
		cmd := exec.Command(os.Args[0], "-test.run=^TestFloodProcess$")
		cmd.Env = append(os.Environ(), envFloodAddr+"="+addr, envFloodSources+"="+strings.Join(sources, ","), envFloodConns+"="+strconv.Itoa(k))
		cmd.SysProcAttr = &syscall.SysProcAttr{Pdeathsig: syscall.SIGKILL}
		stdin, err := cmd.StdinPipe()
		if err != nil {
			t.Fatal(err)
		}
		stdout, err := cmd.StdoutPipe()
		if err != nil {
			t.Fatal(err)
		}
		if err := cmd.Start(); err != nil {
			t.Fatal(err)
		}
		t.Cleanup(func() { stdin.Close(); _ = cmd.Wait() })
		children = append(children, child{cmd, stdin, bufio.NewReader(stdout)})
	}
	total := 0
	for _, c := range children {
		for {
			line, err := c.out.ReadString('\n')
			if err != nil {
				t.Fatalf("a flooding process ended: %v", err)
			}
			if m, ok := strings.CutPrefix(strings.TrimSpace(line), "held "); ok {
				k, _ := strconv.Atoi(m)
				total += k
				break
			}
			if strings.HasPrefix(line, "error") {
				t.Fatalf("a flooding process: %s", line)
			}
		}
	}
	if total != n {
		t.Fatalf("the flood made %d connections, want %d", total, n)
	}
	t.Logf("%d idle connections held by %d processes", total, len(children))
}

// loopbacks returns n addresses of 127.0.<third>.0/24.
func loopbacks(third, n int) []string {
	out := make([]string, n)
	for i := range out {
		out[i] = fmt.Sprintf("127.0.%d.%d", third, i+1)
	}
	return out
}

// TestIdleFloodLeavesServiceUp holds 20,000 idle TCP connections open on
// jetond's public port, jetond running with 4,096 file descriptors. While
// they are held, /healthz and /metrics answer, Detokenize works on the
// trusted port, Tokenize on a connection made before, and a new Tokenize
// connection at once: it takes the place of the oldest idle handshake. A
// second flood from few sources, each over its share of handshakes, also
// leaves a new connection from another source served at once. Evictions
// and timeouts are counted, and logged at a bounded rate.
func TestIdleFloodLeavesServiceUp(t *testing.T) {
	if testing.Short() {
		t.Skip("floods a listener with 30,000 connections")
	}
	bin := jetondBinary(t)
	dir := t.TempDir()
	public, trusted, metrics := freeAddr(t), freeAddr(t), freeAddr(t)
	var hard syscall.Rlimit
	if err := syscall.Getrlimit(syscall.RLIMIT_NOFILE, &hard); err != nil {
		t.Fatal(err)
	}
	nofile := min(floodNofile, hard.Max)
	// ulimit sets the child's soft and hard limits: the Go runtime's raise
	// of the soft limit to the hard one cannot undo it.
	p := startJetondCmd(t, exec.Command("bash", "-c", `ulimit -n "$1" && shift && exec "$@"`, "bash",
		strconv.FormatUint(nofile, 10), bin, "--dev", "--dev-dir", dir,
		"--public-addr", public, "--trusted-addr", trusted, "--metrics-addr", metrics), metrics)

	files := func(name string) (string, string) {
		return filepath.Join(dir, name+".pem"), filepath.Join(dir, name+"-key.pem")
	}
	sponsorCert, sponsorKey := files("sponsor")
	ttpCert, ttpKey := files("ttp")
	ca := filepath.Join(dir, "ca.pem")
	sponsor := func(opts ...client.Option) *client.Client {
		return newClient(t, public, ca, sponsorCert, sponsorKey, opts...)
	}
	ctx := testCtx(t)
	start := time.Now()
	early := sponsor()
	tok, err := early.TokenizeValue(ctx, "name", "Flood Testperson")
	if err != nil {
		t.Fatal(err)
	}

	// The flood: 40 sources, 500 each; far more than the public
	// listener's cap, which the per-source caps do not keep it under.
	flood(t, public, loopbacks(2, 40), floodConns)
	if code, body, err := p.get("/healthz"); err != nil || code != http.StatusOK {
		t.Fatalf("/healthz under the flood: %d %q %v", code, body, err)
	}
	during := scrape(t, p)
	if v, err := newClient(t, trusted, ca, ttpCert, ttpKey).DetokenizeValue(ctx, tok, "support", ""); err != nil || v != "Flood Testperson" {
		t.Fatalf("Detokenize on the trusted port under the flood: %v", err)
	}
	if _, err := early.TokenizeValue(ctx, "name", "Flood Testperson Two"); err != nil {
		t.Fatalf("Tokenize on a connection made before the flood: %v", err)
	}
	if _, err := sponsor().TokenizeValue(ctx, "name", "Flood Testperson Three"); err != nil {
		t.Fatalf("Tokenize on a new connection under the flood: %v", err)
	}
	open := during.value("jeton_connections_open", map[string]string{"listener": "public"})
	evicted := during.value("jeton_connections_evicted_total", map[string]string{"listener": "public"})
	if open <= 0 || open > floodNofile/2 || evicted <= 0 {
		t.Fatalf("under the flood: %v open public connections, %v evicted; want the caps held and evictions counted", open, evicted)
	}
	p.waitFor(flipLimit, "idle connections timed out", func() bool {
		return scrape(t, p).value("jeton_handshakes_failed_total", map[string]string{"listener": "public", "reason": "timeout"}) > 0
	})

	// A second flood from 4 sources, each far over its share of
	// handshakes: they evict their own, and a new connection from another
	// source is served at once.
	before := scrape(t, p).value("jeton_connections_evicted_total", map[string]string{"listener": "public"})
	flood(t, public, loopbacks(3, 4), 10000)
	if _, err := sponsor().TokenizeValue(ctx, "name", "Flood Testperson Four"); err != nil {
		t.Fatalf("Tokenize on a new connection from another source while 4 sources flood: %v", err)
	}
	if v := scrape(t, p).value("jeton_connections_evicted_total", map[string]string{"listener": "public"}); v < before+10000-4*server.DefaultMaxHandshakingPerSource {
		t.Fatalf("jeton_connections_evicted_total{listener=public} went from %v to %v; want each source's surplus evicted", before, v)
	}
	// Tens of thousands of evictions and timeouts, a bounded number of log
	// lines: the public listener's sampled log writes its burst, then at
	// most one line a second (an upper bound that grows with the time the
	// test took, never a deadline).
	lines := 0
	for _, l := range strings.Split(p.out.String(), "\n") {
		if strings.Contains(l, "listener=public") && (strings.Contains(l, "connection evicted: ") ||
			strings.Contains(l, "connection refused: ") || strings.Contains(l, "TLS handshake failed")) {
			lines++
		}
	}
	if limit := 10 + int(time.Since(start).Seconds()) + 1; lines == 0 || lines > limit {
		t.Fatalf("%d log lines for 30,000 evicted or timed-out connections; want some, and at most %d", lines, limit)
	}
}

// startJetondCmd starts cmd (a jetond, perhaps behind a wrapper) like
// startJetond.
func startJetondCmd(t testing.TB, cmd *exec.Cmd, metricsAddr string) *jetondProc {
	t.Helper()
	p := &jetondProc{t: t, out: &syncBuffer{}, done: make(chan struct{}), metrics: metricsAddr, cmd: cmd}
	p.cmd.Stdout, p.cmd.Stderr = p.out, p.out
	p.cmd.SysProcAttr = &syscall.SysProcAttr{Pdeathsig: syscall.SIGKILL}
	if err := p.cmd.Start(); err != nil {
		t.Fatal(err)
	}
	go func() { p.exitErr = p.cmd.Wait(); close(p.done) }()
	t.Cleanup(func() {
		_ = p.cmd.Process.Kill()
		<-p.done
		if t.Failed() {
			t.Logf("jetond output:\n%s", tailLines(p.out.String(), 40))
		}
	})
	p.waitReady()
	return p
}

// TestMetricsFloodLeavesProbesServed holds 3,000 idle connections open on
// the metrics listener, which the Helm chart binds to every interface,
// jetond running with 1,024 file descriptors. The listener keeps at most
// its caps of them, so descriptors are left: /healthz, /readyz and
// /metrics answer (each new request takes the place of the oldest idle
// connection), and a new Tokenize connection is served.
func TestMetricsFloodLeavesProbesServed(t *testing.T) {
	if testing.Short() {
		t.Skip("floods a listener with 3,000 connections")
	}
	bin := jetondBinary(t)
	dir := t.TempDir()
	public, trusted, metrics := freeAddr(t), freeAddr(t), freeAddr(t)
	const nofile = 1024
	p := startJetondCmd(t, exec.Command("bash", "-c", `ulimit -n "$1" && shift && exec "$@"`, "bash",
		strconv.Itoa(nofile), bin, "--dev", "--dev-dir", dir,
		"--public-addr", public, "--trusted-addr", trusted, "--metrics-addr", metrics), metrics)

	flood(t, metrics, loopbacks(4, 10), 3000)
	for _, path := range []string{"/healthz", "/readyz", "/metrics"} {
		if code, _, err := p.get(path); err != nil || code != http.StatusOK {
			t.Fatalf("%s under a flood of the metrics listener: %d %v", path, code, err)
		}
	}
	sponsor := newClient(t, public, filepath.Join(dir, "ca.pem"), filepath.Join(dir, "sponsor.pem"), filepath.Join(dir, "sponsor-key.pem"))
	if _, err := sponsor.TokenizeValue(testCtx(t), "name", "Metrics Flood Testperson"); err != nil {
		t.Fatalf("Tokenize on a new connection under a flood of the metrics listener: %v", err)
	}
	x := scrape(t, p)
	open := x.value("jeton_connections_open", map[string]string{"listener": "metrics"})
	evicted := x.value("jeton_connections_evicted_total", map[string]string{"listener": "metrics"})
	if open <= 0 || open > float64(metricsDescriptors) || evicted <= 0 {
		t.Fatalf("metrics listener under the flood: %v open, %v evicted; want at most %d open, and evictions counted", open, evicted, metricsDescriptors)
	}
}
