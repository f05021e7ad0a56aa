package main

// Operations tests: they run the jetond binary (dev mode, or production
// mode on a real redis-server and a real Vault started by testenv) and
// drive it the way an operator does: scrape /metrics, watch readiness, send
// SIGTERM and SIGHUP.

import (
	"bytes"
	"context"
	"crypto/tls"
	"crypto/x509"
	"encoding/hex"
	"fmt"
	"io"
	"net"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"sync"
	"sync/atomic"
	"syscall"
	"testing"
	"time"

	vaultapi "github.com/hashicorp/vault/api"
	"google.golang.org/grpc"
	"google.golang.org/grpc/credentials"
	healthpb "google.golang.org/grpc/health/grpc_health_v1"

	"github.com/jeton-dev/jeton/client"
	"github.com/jeton-dev/jeton/integration/testenv"
	"github.com/jeton-dev/jeton/server/devpki"
	"github.com/jeton-dev/jeton/tokenizer/vaultkeys"
)

// Upper bounds on waits. They are limits for a broken run, not timing
// claims: a healthy run is far below them.
const (
	startLimit = 60 * time.Second
	flipLimit  = 10 * time.Second
	exitLimit  = 30 * time.Second
)

var (
	binOnce sync.Once
	binPath string
	binErr  error
	binDir  string
)

func TestMain(m *testing.M) {
	code := m.Run()
	if binDir != "" {
		os.RemoveAll(binDir)
	}
	os.Exit(code)
}

// jetondBinary builds jetond once for the package's tests.
func jetondBinary(t testing.TB) string {
	t.Helper()
	if testing.Short() {
		t.Skip("builds and runs binaries")
	}
	binOnce.Do(func() {
		if binDir, binErr = os.MkdirTemp("", "jetond-ops-test-"); binErr != nil {
			return
		}
		binPath = filepath.Join(binDir, "jetond")
		out, err := exec.Command("go", "build", "-o", binPath, ".").CombinedOutput()
		if err != nil {
			binErr = fmt.Errorf("%v\n%s", err, out)
		}
	})
	if binErr != nil {
		t.Fatalf("building jetond: %v", binErr)
	}
	return binPath
}

// freeAddr returns a loopback address that was free a moment ago.
func freeAddr(t testing.TB) string {
	t.Helper()
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer l.Close()
	return l.Addr().String()
}

// syncBuffer collects a process's output.
type syncBuffer struct {
	mu sync.Mutex
	b  bytes.Buffer
}

func (s *syncBuffer) Write(p []byte) (int, error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.b.Write(p)
}

func (s *syncBuffer) String() string {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.b.String()
}

// jetondProc is one running jetond.
type jetondProc struct {
	t       testing.TB
	cmd     *exec.Cmd
	out     *syncBuffer
	done    chan struct{}
	exitErr error
	metrics string // host:port of the metrics listener
}

func startJetond(t testing.TB, env []string, metricsAddr string, args ...string) *jetondProc {
	t.Helper()
	p := &jetondProc{t: t, out: &syncBuffer{}, done: make(chan struct{}), metrics: metricsAddr}
	p.cmd = exec.Command(jetondBinary(t), args...)
	p.cmd.Env = env
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

func tailLines(s string, n int) string {
	lines := strings.Split(strings.TrimRight(s, "\n"), "\n")
	return strings.Join(lines[max(0, len(lines)-n):], "\n")
}

func (p *jetondProc) exited() bool {
	select {
	case <-p.done:
		return true
	default:
		return false
	}
}

// get fetches a path of the metrics listener.
func (p *jetondProc) get(path string) (int, string, error) {
	c := &http.Client{Timeout: 2 * time.Second}
	resp, err := c.Get("http://" + p.metrics + path)
	if err != nil {
		return 0, "", err
	}
	defer resp.Body.Close()
	b, err := io.ReadAll(resp.Body)
	return resp.StatusCode, string(b), err
}

// waitReady polls /readyz, which is 200 only once both listeners serve and
// every dependency answered.
func (p *jetondProc) waitReady() {
	p.t.Helper()
	p.waitFor(startLimit, "/readyz 200", func() bool {
		code, _, err := p.get("/readyz")
		return err == nil && code == http.StatusOK
	})
}

// waitFor polls cond until it holds, failing the test at the deadline or
// if jetond exits.
func (p *jetondProc) waitFor(limit time.Duration, what string, cond func() bool) {
	p.t.Helper()
	deadline := time.Now().Add(limit)
	for !cond() {
		if p.exited() {
			p.t.Fatalf("jetond exited (%v) while waiting for %s", p.exitErr, what)
		}
		if time.Now().After(deadline) {
			p.t.Fatalf("no %s within %s", what, limit)
		}
		time.Sleep(20 * time.Millisecond)
	}
}

// signalAndWait sends sig and waits for the exit.
func (p *jetondProc) signalAndWait(sig os.Signal) error {
	p.t.Helper()
	if err := p.cmd.Process.Signal(sig); err != nil {
		p.t.Fatal(err)
	}
	select {
	case <-p.done:
		return p.exitErr
	case <-time.After(exitLimit):
		p.t.Fatalf("jetond did not exit within %s of %v", exitLimit, sig)
		return nil
	}
}

// ---- production deployment ------------------------------------------------

// prodEnv is a production-mode deployment: config and policy files, a
// PKI, a real Redis and a real Vault prepared by vaultkeys.Setup, and a
// Vault token limited to the jetond policy.
type prodEnv struct {
	redis      *testenv.Redis
	vault      *testenv.Vault
	token      string
	pki        *devpki.Bundle
	dir        string
	cfgPath    string
	policyPath string
	auditDir   string
	public     string
	trusted    string
	metrics    string
}

// prodPolicy lets the TTP reveal with purpose "support" only, or with
// purpose "vetting" too when withVetting is set (the SIGHUP test flips it).
func prodPolicy(withVetting bool) string {
	purposes := "[support]"
	if withVetting {
		purposes = "[support, vetting]"
	}
	return fmt.Sprintf(`identities:
  - {id: %q, tenants: [demo], roles: [sponsor-app]}
  - {id: %q, tenants: [demo], roles: [ttp-reader]}
roles:
  sponsor-app: {tokenize: ["*"], budget: {distinct: 1000000}}
  ttp-reader: {reveal: {"*": full}, purposes: %s}
purposes:
  - {code: support, description: answering a data subject, classes: ["*"]}
  - {code: vetting, description: background check, classes: ["*"]}
`, devpki.SponsorID, devpki.TTPID, purposes)
}

func newProdEnv(t testing.TB) *prodEnv {
	t.Helper()
	jetondBinary(t) // skip early under -short
	e := &prodEnv{redis: testenv.StartRedis(t), vault: testenv.StartVault(t), dir: t.TempDir()}
	root := e.vault.Client(t)
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	if _, err := vaultkeys.Setup(ctx, root, vaultkeys.SetupConfig{}); err != nil {
		t.Fatalf("vaultkeys.Setup: %v", err)
	}
	s, err := root.Auth().Token().Create(&vaultapi.TokenCreateRequest{
		Policies: []string{vaultkeys.PolicyJetond}, NoDefaultPolicy: true, TTL: "1h",
	})
	if err != nil {
		t.Fatalf("jetond Vault token: %v", err)
	}
	e.token = s.Auth.ClientToken
	if e.pki, err = devpki.Generate(filepath.Join(e.dir, "pki")); err != nil {
		t.Fatal(err)
	}
	e.policyPath = filepath.Join(e.dir, "policy.yaml")
	e.writePolicy(t, true)
	e.auditDir = filepath.Join(e.dir, "audit")
	e.public, e.trusted, e.metrics = freeAddr(t), freeAddr(t), freeAddr(t)
	cfg := fmt.Sprintf(`public:
  addr: %q
  tls: {cert: %q, key: %q, client_ca: %q}
trusted:
  addr: %q
  tls: {cert: %q, key: %q, client_ca: %q}
  allowed_cidrs: ["127.0.0.0/8"]
redis:
  addrs: [%q]
  timeout: 1s
vault: {mount: transit, key: jeton-kek}
policy_file: %q
audit: {dir: %q, replica: ops-0}
metrics: {addr: %q}
health: {interval: 100ms}
log: {level: info, format: json}
`, e.public, e.pki.ServerCert, e.pki.ServerKey, e.pki.SponsorCA,
		e.trusted, e.pki.ServerCert, e.pki.ServerKey, e.pki.TTPCA,
		e.redis.Addr, e.policyPath, e.auditDir, e.metrics)
	e.cfgPath = filepath.Join(e.dir, "jetond.yaml")
	if err := os.WriteFile(e.cfgPath, []byte(cfg), 0o600); err != nil {
		t.Fatal(err)
	}
	return e
}

func (e *prodEnv) writePolicy(t testing.TB, withVetting bool) {
	t.Helper()
	// Written to a temporary name and renamed, as a config tool would, so
	// a reload never reads half a file.
	tmp := e.policyPath + ".tmp"
	if err := os.WriteFile(tmp, []byte(prodPolicy(withVetting)), 0o600); err != nil {
		t.Fatal(err)
	}
	if err := os.Rename(tmp, e.policyPath); err != nil {
		t.Fatal(err)
	}
}

func (e *prodEnv) start(t testing.TB) *jetondProc {
	t.Helper()
	var env []string
	for _, kv := range os.Environ() {
		if !strings.HasPrefix(kv, "VAULT_") && !strings.HasPrefix(kv, "JETON_") {
			env = append(env, kv)
		}
	}
	env = append(env, "VAULT_ADDR="+e.vault.Addr, "VAULT_TOKEN="+e.token)
	return startJetond(t, env, e.metrics, "--config", e.cfgPath, "--drain-timeout", "20s")
}

func (e *prodEnv) sponsor(t testing.TB, opts ...client.Option) *client.Client {
	return newClient(t, e.public, e.pki.ServerCA, e.pki.SponsorCert, e.pki.SponsorKey, opts...)
}

func (e *prodEnv) ttp(t testing.TB, opts ...client.Option) *client.Client {
	return newClient(t, e.trusted, e.pki.ServerCA, e.pki.TTPCert, e.pki.TTPKey, opts...)
}

func newClient(t testing.TB, addr, ca, cert, key string, opts ...client.Option) *client.Client {
	t.Helper()
	c, err := client.New(addr, append([]client.Option{client.WithTLSFiles(ca, cert, key)}, opts...)...)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { c.Close() })
	return c
}

// healthConn is a raw connection for grpc.health.v1 on the trusted
// listener.
func healthConn(t testing.TB, addr, ca, cert, key string) healthpb.HealthClient {
	t.Helper()
	caPEM, err := os.ReadFile(ca)
	if err != nil {
		t.Fatal(err)
	}
	pool := x509.NewCertPool()
	pool.AppendCertsFromPEM(caPEM)
	pair, err := tls.LoadX509KeyPair(cert, key)
	if err != nil {
		t.Fatal(err)
	}
	cc, err := grpc.NewClient(addr, grpc.WithTransportCredentials(credentials.NewTLS(
		&tls.Config{RootCAs: pool, Certificates: []tls.Certificate{pair}, MinVersion: tls.VersionTLS13})))
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { cc.Close() })
	return healthpb.NewHealthClient(cc)
}

func healthStatus(hc healthpb.HealthClient) healthpb.HealthCheckResponse_ServingStatus {
	ctx, cancel := context.WithTimeout(context.Background(), 2*time.Second)
	defer cancel()
	r, err := hc.Check(ctx, &healthpb.HealthCheckRequest{})
	if err != nil {
		return healthpb.HealthCheckResponse_UNKNOWN
	}
	return r.GetStatus()
}

func testCtx(t testing.TB) context.Context {
	ctx, cancel := context.WithTimeout(context.Background(), 60*time.Second)
	t.Cleanup(cancel)
	return ctx
}

// ---- tests ----------------------------------------------------------------

// TestHealthFollowsRedis stops the real Redis under a running jetond and
// starts it again: the gRPC health status and /readyz follow, within a
// bounded time, both ways; /healthz (liveness) stays up throughout.
func TestHealthFollowsRedis(t *testing.T) {
	e := newProdEnv(t)
	p := e.start(t)
	hc := healthConn(t, e.trusted, e.pki.ServerCA, e.pki.TTPCert, e.pki.TTPKey)
	if st := healthStatus(hc); st != healthpb.HealthCheckResponse_SERVING {
		t.Fatalf("health is %v at start, want SERVING", st)
	}

	e.redis.Stop()
	p.waitFor(flipLimit, "NOT_SERVING after Redis stopped", func() bool {
		return healthStatus(hc) == healthpb.HealthCheckResponse_NOT_SERVING
	})
	code, body, err := p.get("/readyz")
	if err != nil || code != http.StatusServiceUnavailable || !strings.Contains(body, "redis") {
		t.Fatalf("/readyz with Redis down: %d %q %v; want 503 naming redis", code, body, err)
	}
	if code, _, err := p.get("/healthz"); err != nil || code != http.StatusOK {
		t.Fatalf("/healthz with Redis down: %d %v; liveness must not follow a dependency", code, err)
	}
	if v := scrape(t, p).value("jeton_backend_errors_total", map[string]string{"backend": "redis"}); v < 1 {
		t.Errorf("jeton_backend_errors_total{backend=redis} = %v with Redis down, want > 0", v)
	}

	e.redis.Start()
	p.waitFor(flipLimit, "SERVING after Redis returned", func() bool {
		return healthStatus(hc) == healthpb.HealthCheckResponse_SERVING
	})
	if code, body, err := p.get("/readyz"); err != nil || code != http.StatusOK {
		t.Fatalf("/readyz with Redis back: %d %q %v; want 200", code, body, err)
	}
	for _, want := range []string{`"msg":"not ready: a dependency is down; health is NOT_SERVING"`, `"check":"redis"`, `"msg":"ready: every dependency is up; health is SERVING"`} {
		if !strings.Contains(p.out.String(), want) {
			t.Errorf("the transitions are not logged: no %s", want)
		}
	}
}

// TestSIGTERMUnderLoad sends SIGTERM while 8 clients issue batch calls.
// jetond must exit 0, every Tokenize that got OK must have stored its
// records (a second jetond on the same Redis and Vault reveals them all),
// and every Detokenize that got OK must have its record in an audit log
// that verifies under the key derived from the same Vault and Redis.
func TestSIGTERMUnderLoad(t *testing.T) {
	e := newProdEnv(t)
	p := e.start(t)
	sponsor, ttp := e.sponsor(t), e.ttp(t)
	ctx := testCtx(t)

	// Tokens for the revealing clients to reveal during the load.
	var seedItems []client.Item
	for i := range 20 {
		seedItems = append(seedItems, client.Item{Class: "email", Value: fmt.Sprintf("seed-%d@example.test", i)})
	}
	seed, err := sponsor.Tokenize(ctx, seedItems)
	if err != nil {
		t.Fatal(err)
	}
	seedTokens := make([]string, len(seed))
	for i, r := range seed {
		if r.Err != nil {
			t.Fatalf("seed item %d: %v", i, r.Err)
		}
		seedTokens[i] = r.Token
	}

	const workers, maxCalls, batch = 8, 200, 50
	var (
		mu        sync.Mutex
		minted    = map[string]string{} // token -> value, from calls that got OK
		revealsOK atomic.Int64
		callsOK   atomic.Int64
		wg        sync.WaitGroup
	)
	for w := range workers {
		wg.Go(func() {
			for call := range maxCalls {
				if w%2 == 0 {
					items := make([]client.Item, batch)
					for i := range items {
						items[i] = client.Item{Class: "email", Value: fmt.Sprintf("load-%d-%d-%d@example.test", w, call, i)}
					}
					res, err := sponsor.Tokenize(ctx, items)
					if err != nil {
						return
					}
					mu.Lock()
					for i, r := range res {
						if r.Err == nil {
							minted[r.Token] = items[i].Value
						}
					}
					mu.Unlock()
				} else {
					if _, err := ttp.Detokenize(ctx, seedTokens, "support", ""); err != nil {
						return
					}
					revealsOK.Add(1)
				}
				callsOK.Add(1)
			}
		})
	}
	// SIGTERM once the load is well under way, not at a fixed time.
	p.waitFor(startLimit, "load under way", func() bool { return callsOK.Load() >= 40 })
	if err := p.signalAndWait(syscall.SIGTERM); err != nil {
		t.Fatalf("jetond exited with %v after SIGTERM, want status 0", err)
	}
	wg.Wait()
	if callsOK.Load() >= workers*maxCalls {
		t.Fatal("every call finished before SIGTERM: the test shut down an idle server")
	}
	t.Logf("%d calls got OK (%d reveals, %d tokens) before shutdown", callsOK.Load(), revealsOK.Load(), len(minted))

	// Every OK reveal has its record, in a log that verifies.
	key := auditKey(t, e)
	files, err := auditFiles(e.auditDir)
	if err != nil {
		t.Fatal(err)
	}
	recs := readAudit(t, e, files)
	var okReveals int64
	for _, r := range recs {
		if r.Method == "Detokenize" && r.Outcome == "ok" {
			okReveals++
		}
	}
	if okReveals != revealsOK.Load() {
		t.Errorf("audit log holds %d OK Detokenize records; clients got %d OK reveals", okReveals, revealsOK.Load())
	}

	// An investigator gets the token-hash key with jetond --audit-key-out.
	keyFile := filepath.Join(t.TempDir(), "audit.key")
	export := exec.Command(jetondBinary(t), "--config", e.cfgPath, "--audit-key-out", keyFile)
	export.Env = append(os.Environ(), "VAULT_ADDR="+e.vault.Addr, "VAULT_TOKEN="+e.token)
	out, err := export.CombinedOutput()
	if err != nil {
		t.Fatalf("jetond --audit-key-out: %v\n%s", err, out)
	}
	if b, err := os.ReadFile(keyFile); err != nil || strings.TrimSpace(string(b)) != hex.EncodeToString(key) {
		t.Fatalf("the exported audit key differs from the key hierarchy's: %v", err)
	}
	if st, _ := os.Stat(keyFile); st.Mode().Perm() != 0o600 {
		t.Errorf("audit key file mode %v, want 0600", st.Mode().Perm())
	}

	// Every token minted with an OK is stored: a new jetond reveals it.
	e.start(t)
	ttp2 := e.ttp(t)
	tokens := make([]string, 0, len(minted))
	for tok := range minted {
		tokens = append(tokens, tok)
	}
	got, err := ttp2.Detokenize(testCtx(t), tokens, "support", "")
	if err != nil {
		t.Fatal(err)
	}
	var missing int
	for _, r := range got {
		if r.Err != nil || r.Value != minted[r.Token] {
			missing++
		}
	}
	if missing > 0 {
		t.Errorf("%d of %d tokens that got OK before SIGTERM do not reveal their value after restart", missing, len(tokens))
	}
}

// TestSIGHUPReloadsOnOpenConnection changes the policy file and the server
// certificate, sends SIGHUP and checks, on the SAME client connection
// (dialled once, READY throughout), that the new policy applies; a new
// connection sees the new certificate.
func TestSIGHUPReloadsOnOpenConnection(t *testing.T) {
	e := newProdEnv(t)
	p := e.start(t)
	var dials atomic.Int32
	dialer := grpc.WithContextDialer(func(ctx context.Context, addr string) (net.Conn, error) {
		dials.Add(1)
		return (&net.Dialer{}).DialContext(ctx, "tcp", addr)
	})
	sponsor := e.sponsor(t)
	ttp := e.ttp(t, client.WithDialOptions(dialer))
	ctx := testCtx(t)

	res, err := sponsor.Tokenize(ctx, []client.Item{{Class: "name", Value: "Test Person Hup"}})
	if err != nil || res[0].Err != nil {
		t.Fatalf("tokenize: %v %v", err, res)
	}
	tok := res[0].Token
	if _, err := ttp.Detokenize(ctx, []string{tok}, "vetting", ""); err != nil {
		t.Fatalf("vetting before the reload: %v", err)
	}
	certBefore := serverCertSerial(t, e)

	// New policy: vetting is withdrawn. New server certificate, same CA.
	e.writePolicy(t, false)
	leaf, err := e.pki.ServerAuthority.Issue(devpki.LeafOptions{CommonName: "localhost", DNSNames: []string{"localhost"}, IPs: []net.IP{net.IPv4(127, 0, 0, 1)}, Server: true})
	if err != nil {
		t.Fatal(err)
	}
	writeAtomically(t, e.pki.ServerCert, leaf.CertPEM)
	writeAtomically(t, e.pki.ServerKey, leaf.KeyPEM)
	if err := p.cmd.Process.Signal(syscall.SIGHUP); err != nil {
		t.Fatal(err)
	}
	p.waitFor(flipLimit, "vetting refused after SIGHUP", func() bool {
		_, err := ttp.Detokenize(ctx, []string{tok}, "vetting", "")
		return errorsIsPermission(err)
	})
	if _, err := ttp.Detokenize(ctx, []string{tok}, "support", ""); err != nil {
		t.Fatalf("support after the reload: %v", err)
	}
	if n := dials.Load(); n != 1 {
		t.Errorf("the TTP client dialled %d times; the reload must keep its connection", n)
	}
	if p.exited() {
		t.Fatal("jetond exited on SIGHUP")
	}
	if serverCertSerial(t, e) == certBefore {
		t.Error("a new connection still gets the old server certificate after SIGHUP")
	}
	if !strings.Contains(p.out.String(), "reloaded TLS material and policy") {
		t.Error("the reload is not logged")
	}
}
