// Package integration_test runs the real jetond binary, both listeners with
// mutual TLS, against a real redis-server (single node or a 3-master
// cluster) and a real Vault server, all started on loopback by testenv.
//
// jetond authenticates to Vault with a token limited to the jeton-jetond
// policy, or with AppRole; never with the root token. Every byte jetond
// writes to stdout or stderr is kept and, when the test ends, searched for
// every personal value the test used.
package integration_test

import (
	"context"
	"crypto/tls"
	"crypto/x509"
	"errors"
	"fmt"
	"maps"
	"net"
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

// Bounds on waiting for processes. They are limits, not timing claims: a
// healthy run is far below them.
const (
	readyTimeout = 60 * time.Second // jetond start-up, Vault log-in included
	exitTimeout  = 30 * time.Second // SIGTERM until exit (drain is 5 s)
	recoverLimit = 30 * time.Second // a backend is back until calls work
)

// Paths of the binaries built once by TestMain.
var jetondBin, jetonBin string

func TestMain(m *testing.M) {
	dir, err := os.MkdirTemp("", "jeton-integration-bin-")
	if err != nil {
		fmt.Fprintln(os.Stderr, "integration: temp dir:", err)
		os.Exit(1)
	}
	code := func() int {
		defer os.RemoveAll(dir)
		cmd := exec.Command("go", "build", "-o", dir+string(filepath.Separator),
			"github.com/jeton-dev/jeton/cmd/jetond", "github.com/jeton-dev/jeton/cmd/jeton")
		cmd.Stdout, cmd.Stderr = os.Stderr, os.Stderr
		if err := cmd.Run(); err != nil {
			fmt.Fprintln(os.Stderr, "integration: go build ./cmd/jetond ./cmd/jeton:", err)
			return 1
		}
		jetondBin, jetonBin = filepath.Join(dir, "jetond"), filepath.Join(dir, "jeton")
		return m.Run()
	}()
	os.Exit(code)
}

// ---- Vault ----------------------------------------------------------------

// vaultEnv is a real Vault prepared by vaultkeys.Setup: Transit, the KEK
// "jeton-kek", the jeton-jetond and jeton-custodian policies and, with
// AppRole, the "jetond" role.
type vaultEnv struct {
	*testenv.Vault
	Root  *vaultapi.Client
	Setup *vaultkeys.SetupResult
}

func startVaultEnv(t testing.TB, appRole bool) *vaultEnv {
	t.Helper()
	v := testenv.StartVault(t)
	root := v.Client(t)
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	res, err := vaultkeys.Setup(ctx, root, vaultkeys.SetupConfig{AppRole: appRole})
	if err != nil {
		t.Fatalf("vaultkeys.Setup: %v", err)
	}
	return &vaultEnv{Vault: v, Root: root, Setup: res}
}

// token creates a child of the root token carrying only the given
// policies: no "default" policy, renewable, one hour.
func (e *vaultEnv) token(t testing.TB, policies ...string) string {
	t.Helper()
	s, err := e.Root.Auth().Token().Create(&vaultapi.TokenCreateRequest{
		Policies:        policies,
		NoDefaultPolicy: true,
		TTL:             "1h",
		DisplayName:     "integration-" + strings.Join(policies, "-"),
	})
	if err != nil || s == nil || s.Auth == nil {
		t.Fatalf("create Vault token with %v: %v", policies, err)
	}
	return s.Auth.ClientToken
}

// client returns a Vault client that uses token and nothing from the
// test process's environment.
func (e *vaultEnv) client(t testing.TB, token string) *vaultapi.Client {
	t.Helper()
	cfg := vaultapi.DefaultConfig()
	cfg.Address = e.Addr
	cfg.MaxRetries = 0
	c, err := vaultapi.NewClient(cfg)
	if err != nil {
		t.Fatal(err)
	}
	c.ClearNamespace()
	c.SetToken(token)
	return c
}

// ---- jetond ---------------------------------------------------------------

// jetondOpts describes one jetond deployment.
type jetondOpts struct {
	RedisAddrs []string
	Vault      *vaultEnv
	// VaultKey is the KEK name; "jeton-kek" when empty.
	VaultKey string
	// Token is VAULT_TOKEN. When empty, AppRole is used with the role_id
	// and secret_id from Vault.Setup.
	Token string
	// Tenants get one sponsor identity each, spiffe://jeton.test/sponsor/<t>;
	// the TTP and custodian identities may read them all. ["acme"] if nil.
	Tenants []string

	// PKI is shared by the replicas of one deployment, so one client
	// certificate works on all of them; nil generates one for this jetond.
	PKI *devpki.Bundle
	// VaultAddr is VAULT_ADDR; Vault.Addr when empty.
	VaultAddr string
	// MasterName is redis.master_name: RedisAddrs are then sentinels.
	MasterName string
	// MinReplicaAcks and ReplicaAckTimeout are redis.min_replica_acks and
	// redis.replica_ack_timeout.
	MinReplicaAcks    int
	ReplicaAckTimeout time.Duration
	// RedisTimeout is redis.timeout; 2s when zero.
	RedisTimeout time.Duration
	// KeyRefresh is key_refresh; jetond's default when zero.
	KeyRefresh time.Duration
	// HealthInterval is health.interval; jetond's default when zero.
	HealthInterval time.Duration
	// AuditDir is audit.dir; a directory of its own when empty.
	AuditDir string
	// CheckpointEvery is audit.checkpoint.every; jetond's default when zero.
	CheckpointEvery time.Duration
	// Classes, if set, is the YAML list of the config's field classes;
	// the built-in ones if empty.
	Classes string
}

// jetond is a jetond process, restartable with the same configuration,
// ports and certificates. Its methods take the calling test, which may be a
// subtest of the one that started it.
type jetond struct {
	opts    jetondOpts
	dir     string
	cfgPath string
	env     []string
	logPath string // stdout and stderr of every run, appended
	pki     *devpki.Bundle
	sponsor map[string][2]string // tenant -> cert, key

	PublicAddr, TrustedAddr string
	// MetricsAddr serves /metrics, /healthz and /readyz over HTTP.
	MetricsAddr string
	// AuditDir is the replica's own audit directory, and replica the id
	// its checkpoints are anchored under in Vault.
	AuditDir string
	replica  string

	mu      sync.Mutex
	cmd     *exec.Cmd
	done    chan struct{}
	exitErr error
	clients map[string]*client.Client // by address and certificate
}

// replicaSeq numbers the jetond processes of the test binary, for their
// audit replica ids.
var replicaSeq atomic.Int64

// startJetond writes the configuration, starts jetond and waits until both
// listeners report SERVING over mutual TLS. When the test ends jetond is
// killed if still running, and its output is searched for the test's
// values (see noteValues).
func startJetond(t testing.TB, o jetondOpts) *jetond {
	t.Helper()
	h := newJetond(t, o)
	h.start(t)
	h.waitReady(t)
	return h
}

// newJetond prepares a deployment without starting it.
func newJetond(t testing.TB, o jetondOpts) *jetond {
	t.Helper()
	if len(o.Tenants) == 0 {
		o.Tenants = []string{"acme"}
	}
	if o.VaultKey == "" {
		o.VaultKey = vaultkeys.DefaultKey
	}
	dir := t.TempDir()
	pki := o.PKI
	if pki == nil {
		var err error
		if pki, err = devpki.Generate(filepath.Join(dir, "pki")); err != nil {
			t.Fatal(err)
		}
	}
	if o.AuditDir == "" {
		o.AuditDir = filepath.Join(dir, "audit")
	}
	if o.VaultAddr == "" {
		o.VaultAddr = o.Vault.Addr
	}
	if o.RedisTimeout == 0 {
		o.RedisTimeout = 2 * time.Second
	}
	h := &jetond{
		opts: o, dir: dir, pki: pki,
		cfgPath:     filepath.Join(dir, "jetond.yaml"),
		logPath:     filepath.Join(dir, "jetond.log"),
		sponsor:     map[string][2]string{},
		PublicAddr:  freeAddr(t),
		TrustedAddr: freeAddr(t),
		MetricsAddr: freeAddr(t),
		AuditDir:    o.AuditDir,
		replica:     fmt.Sprintf("it-%d", replicaSeq.Add(1)),
	}
	for _, tn := range o.Tenants {
		leaf, err := pki.SponsorAuthority.Issue(devpki.LeafOptions{CommonName: "sponsor-" + tn, URI: sponsorID(tn)})
		if err != nil {
			t.Fatal(err)
		}
		cert, key, err := leaf.Write(dir, "sponsor-"+tn)
		if err != nil {
			t.Fatal(err)
		}
		h.sponsor[tn] = [2]string{cert, key}
	}
	writeFile(t, filepath.Join(dir, "policy.yaml"), policyYAML(o.Tenants))

	var approle string
	h.env = append(envWithout(os.Environ(), "VAULT_", "JETON_"), "HOME="+dir, "VAULT_ADDR="+o.VaultAddr,
		"JETON_METRICS_ADDR="+h.MetricsAddr, // the default port would collide
		// Replicas sharing a Vault anchor their audit logs under ids of
		// their own; the default, the host name, is the same for all.
		"JETON_AUDIT_REPLICA="+h.replica)
	if o.Token != "" {
		h.env = append(h.env, "VAULT_TOKEN="+o.Token)
	} else {
		if o.Vault.Setup.RoleID == "" {
			t.Fatal("jetondOpts: no Token and Vault was set up without AppRole")
		}
		secretFile := filepath.Join(dir, "secret-id")
		writeFile(t, secretFile, o.Vault.Setup.SecretID)
		approle = fmt.Sprintf("\n  approle:\n    role_id: %q\n    secret_id_file: %q", o.Vault.Setup.RoleID, secretFile)
	}
	var addrs []string
	for _, a := range o.RedisAddrs {
		addrs = append(addrs, fmt.Sprintf("%q", a))
	}
	var extra, redisExtra strings.Builder
	auditExtra := ""
	if o.CheckpointEvery > 0 {
		auditExtra = fmt.Sprintf("  checkpoint:\n    every: %s\n", o.CheckpointEvery)
	}
	if o.KeyRefresh > 0 {
		fmt.Fprintf(&extra, "key_refresh: %s\n", o.KeyRefresh)
	}
	if o.HealthInterval > 0 {
		fmt.Fprintf(&extra, "health:\n  interval: %s\n", o.HealthInterval)
	}
	if o.MasterName != "" {
		fmt.Fprintf(&redisExtra, "  master_name: %q\n", o.MasterName)
	}
	if o.MinReplicaAcks > 0 {
		fmt.Fprintf(&redisExtra, "  min_replica_acks: %d\n  replica_ack_timeout: %s\n", o.MinReplicaAcks, o.ReplicaAckTimeout)
	}
	cfg := fmt.Sprintf(`public:
  addr: %q
  tls: {cert: %q, key: %q, client_ca: %q}
trusted:
  addr: %q
  tls: {cert: %q, key: %q, client_ca: %q}
  allowed_cidrs: ["127.0.0.0/8"]
max_batch: 10000
redis:
  addrs: [%s]
  timeout: %s
%svault:
  mount: transit
  key: %q%s
policy_file: %q
audit:
  dir: %q
%slog:
  level: debug
  format: json
%s`, h.PublicAddr, pki.ServerCert, pki.ServerKey, pki.SponsorCA,
		h.TrustedAddr, pki.ServerCert, pki.ServerKey, pki.TTPCA,
		strings.Join(addrs, ", "), o.RedisTimeout, redisExtra.String(), o.VaultKey, approle,
		filepath.Join(dir, "policy.yaml"), o.AuditDir, auditExtra, extra.String())
	if o.Classes != "" {
		cfg += "classes:\n" + o.Classes
	}
	writeFile(t, h.cfgPath, cfg)

	// Registered after t.TempDir: runs before the files are removed.
	t.Cleanup(func() {
		h.closeClients()
		h.kill()
		checkNoValues(t, h.logPath)
		if t.Failed() {
			t.Logf("jetond output (%s):\n%s", h.logPath, tail(h.Log(), 40))
		}
	})
	return h
}

func sponsorID(tenant string) string { return "spiffe://jeton.test/sponsor/" + tenant }

// limitedID is a TTP identity with a small budget of distinct records,
// limitedDistinct an hour.
const (
	limitedID = "spiffe://jeton.test/ttp/limited"
	// secondCustodianID approves what the custodian requests: destroys and
	// purges take two custodians (dual control).
	secondCustodianID = "spiffe://jeton.test/ttp/custodian-2"
	limitedDistinct   = 20
)

// policyYAML gives each tenant a sponsor identity, and the TTP identity
// full reveal of every class of every tenant.
func policyYAML(tenants []string) string {
	var b strings.Builder
	b.WriteString("identities:\n")
	for _, tn := range tenants {
		fmt.Fprintf(&b, "  - {id: %q, tenants: [%s], roles: [sponsor]}\n", sponsorID(tn), tn)
	}
	all := strings.Join(tenants, ", ")
	fmt.Fprintf(&b, "  - {id: %q, tenants: [%s], roles: [reveal]}\n", devpki.TTPID, all)
	fmt.Fprintf(&b, "  - {id: %q, tenants: [%s], roles: [custodian]}\n", devpki.CustodianID, all)
	fmt.Fprintf(&b, "  - {id: %q, tenants: [%s], roles: [limited]}\n", limitedID, all)
	fmt.Fprintf(&b, "  - {id: %q, tenants: [%s], roles: [custodian]}\n", secondCustodianID, all)
	fmt.Fprintf(&b, "roles:\n  limited:\n    reveal: {\"*\": full}\n    purposes: [integration-test]\n"+
		"    budget: {max_batch: 100, rate: 1000, burst: 1000, distinct: %d, window: 1h, suspend_after: 2}\n", limitedDistinct)
	b.WriteString(`  sponsor: {tokenize: ["*"], budget: {distinct: 1000000}}
  reveal: {reveal: {"*": full}, purposes: [integration-test]}
  custodian: {admin: true}
purposes:
  - {code: integration-test, description: integration test, classes: ["*"], case_ref_required: true}
`)
	return b.String()
}

// start starts the process; it does not wait for readiness.
func (h *jetond) start(t testing.TB) {
	t.Helper()
	h.mu.Lock()
	defer h.mu.Unlock()
	if h.cmd != nil && !isClosed(h.done) {
		t.Fatal("jetond is already running")
	}
	logf, err := os.OpenFile(h.logPath, os.O_CREATE|os.O_WRONLY|os.O_APPEND, 0o600)
	if err != nil {
		t.Fatal(err)
	}
	cmd := exec.Command(jetondBin, "--config", h.cfgPath, "--drain-timeout", "5s")
	cmd.Env = h.env
	cmd.Stdout, cmd.Stderr = logf, logf
	cmd.SysProcAttr = &syscall.SysProcAttr{Pdeathsig: syscall.SIGKILL}
	if err := cmd.Start(); err != nil {
		logf.Close()
		t.Fatalf("start jetond: %v", err)
	}
	done := make(chan struct{})
	go func() {
		err := cmd.Wait()
		logf.Close()
		h.mu.Lock()
		h.exitErr = err
		h.mu.Unlock()
		close(done)
	}()
	h.cmd, h.done, h.exitErr = cmd, done, nil
}

// waitReady waits until both listeners answer health checks with SERVING.
func (h *jetond) waitReady(t testing.TB) {
	t.Helper()
	deadline := time.Now().Add(readyTimeout)
	for _, l := range []struct{ addr, cert, key string }{
		{h.TrustedAddr, h.pki.TTPCert, h.pki.TTPKey},
		{h.PublicAddr, h.sponsor[h.opts.Tenants[0]][0], h.sponsor[h.opts.Tenants[0]][1]},
	} {
		conn := h.dial(t, l.addr, l.cert, l.key)
		hc := healthpb.NewHealthClient(conn)
		for {
			ctx, cancel := context.WithTimeout(context.Background(), time.Second)
			resp, err := hc.Check(ctx, &healthpb.HealthCheckRequest{})
			cancel()
			if err == nil && resp.GetStatus() == healthpb.HealthCheckResponse_SERVING {
				break
			}
			if h.exited() {
				conn.Close()
				t.Fatalf("jetond exited during start-up (%v); output:\n%s", h.exitError(), tail(h.Log(), 40))
			}
			if time.Now().After(deadline) {
				conn.Close()
				t.Fatalf("jetond %s not SERVING after %s (last: %v, %v); output:\n%s",
					l.addr, readyTimeout, resp.GetStatus(), err, tail(h.Log(), 40))
			}
			time.Sleep(50 * time.Millisecond)
		}
		conn.Close()
	}
}

// dial returns a raw gRPC connection with the given client certificate.
func (h *jetond) dial(t testing.TB, addr, cert, key string) *grpc.ClientConn {
	t.Helper()
	conn, err := grpc.NewClient(addr, grpc.WithTransportCredentials(credentials.NewTLS(h.tlsConfig(t, cert, key))))
	if err != nil {
		t.Fatal(err)
	}
	return conn
}

func (h *jetond) tlsConfig(t testing.TB, cert, key string) *tls.Config {
	t.Helper()
	caPEM, err := os.ReadFile(h.pki.ServerCA)
	if err != nil {
		t.Fatal(err)
	}
	pool := x509.NewCertPool()
	pool.AppendCertsFromPEM(caPEM)
	pair, err := tls.LoadX509KeyPair(cert, key)
	if err != nil {
		t.Fatal(err)
	}
	return &tls.Config{RootCAs: pool, Certificates: []tls.Certificate{pair}, MinVersion: tls.VersionTLS13}
}

// Stop sends SIGTERM and requires a clean exit (status 0).
func (h *jetond) Stop(t testing.TB) {
	t.Helper()
	h.closeClients()
	h.mu.Lock()
	cmd, done := h.cmd, h.done
	h.mu.Unlock()
	if cmd == nil || isClosed(done) {
		t.Fatalf("Stop: jetond is not running (%v)", h.exitError())
	}
	_ = cmd.Process.Signal(syscall.SIGTERM)
	select {
	case <-done:
	case <-time.After(exitTimeout):
		h.kill()
		t.Fatalf("jetond did not exit within %s of SIGTERM; killed it", exitTimeout)
	}
	if err := h.exitError(); err != nil {
		t.Fatalf("jetond exited with %v after SIGTERM, want status 0; output:\n%s", err, tail(h.Log(), 40))
	}
}

// Restart stops jetond cleanly and starts it again, with empty key caches.
func (h *jetond) Restart(t testing.TB) {
	t.Helper()
	h.Stop(t)
	h.start(t)
	h.waitReady(t)
}

// kill sends SIGKILL and waits for the exit.
func (h *jetond) kill() {
	h.mu.Lock()
	cmd, done := h.cmd, h.done
	h.mu.Unlock()
	if cmd == nil || isClosed(done) {
		return
	}
	_ = cmd.Process.Kill()
	<-done
}

// Pid is the running process's id, to prove a recovery needed no restart.
func (h *jetond) Pid() int {
	h.mu.Lock()
	defer h.mu.Unlock()
	return h.cmd.Process.Pid
}

func (h *jetond) exited() bool {
	h.mu.Lock()
	defer h.mu.Unlock()
	return h.cmd != nil && isClosed(h.done)
}

func (h *jetond) exitError() error {
	h.mu.Lock()
	defer h.mu.Unlock()
	return h.exitErr
}

// waitExit waits for jetond to exit on its own and returns its exit code.
func (h *jetond) waitExit(t testing.TB, limit time.Duration) int {
	t.Helper()
	select {
	case <-h.done:
	case <-time.After(limit):
		h.kill()
		t.Fatalf("jetond still running after %s; output:\n%s", limit, tail(h.Log(), 40))
	}
	var ee *exec.ExitError
	switch err := h.exitError(); {
	case err == nil:
		return 0
	case errors.As(err, &ee):
		return ee.ExitCode()
	default:
		t.Fatalf("jetond: %v", err)
		return -1
	}
}

// Log returns everything jetond wrote so far, over all runs.
func (h *jetond) Log() string {
	b, _ := os.ReadFile(h.logPath)
	return string(b)
}

// Sponsor returns a client of the public listener with tenant's sponsor
// identity. Clients are closed by Stop and when the test ends.
func (h *jetond) Sponsor(t testing.TB, tenant string) *client.Client {
	t.Helper()
	f, ok := h.sponsor[tenant]
	if !ok {
		t.Fatalf("no sponsor identity for tenant %s", tenant)
	}
	return h.newClient(t, h.PublicAddr, f[0], f[1])
}

// TTP returns a client of the trusted listener with the TTP identity.
func (h *jetond) TTP(t testing.TB) *client.Client {
	t.Helper()
	return h.newClient(t, h.TrustedAddr, h.pki.TTPCert, h.pki.TTPKey)
}

func (h *jetond) newClient(t testing.TB, addr, cert, key string) *client.Client {
	t.Helper()
	h.mu.Lock()
	defer h.mu.Unlock()
	if c := h.clients[addr+" "+cert]; c != nil {
		return c
	}
	c, err := client.New(addr,
		client.WithTLSFiles(h.pki.ServerCA, cert, key),
		client.WithBatchSize(10000),
		client.WithTimeout(60*time.Second))
	if err != nil {
		t.Fatal(err)
	}
	if h.clients == nil {
		h.clients = map[string]*client.Client{}
	}
	h.clients[addr+" "+cert] = c
	return c
}

func (h *jetond) closeClients() {
	h.mu.Lock()
	cs := h.clients
	h.clients = nil
	h.mu.Unlock()
	for _, c := range cs {
		_ = c.Close()
	}
}

// ---- values and leak checks -----------------------------------------------

// classes are jetond's default field classes; sample makes a value of each.
var classes = []string{"email", "phone", "name", "passport", "birthdate", "address", "text"}

// sample returns an obviously fake value of class, distinct for each n, in
// its normalised form (so the stored value equals it).
func sample(class string, n int) string {
	switch class {
	case "email":
		return fmt.Sprintf("anne.test.%07d@example.org", n)
	case "phone":
		return fmt.Sprintf("+3360%07d", n%10_000_000)
	case "name":
		return fmt.Sprintf("Anne Testperson %07d", n)
	case "passport":
		return fmt.Sprintf("TST%07dX", n)
	case "birthdate":
		return time.Date(1900, 1, 1, 0, 0, 0, 0, time.UTC).AddDate(0, 0, n%40000).Format(time.DateOnly)
	case "address":
		return fmt.Sprintf("%d rue de l'Exemple, 99999 Testville", n)
	default:
		return fmt.Sprintf("fake note %07d written by the jeton integration test", n)
	}
}

// item is a test value and, once tokenized, its token.
type item struct {
	Class, Value, Token string
}

// items makes n items of mixed classes numbered from first, and notes
// their values for the leak check.
func items(t testing.TB, first, n int) []item {
	t.Helper()
	out := make([]item, n)
	vals := make([]string, n)
	for i := range out {
		c := classes[(first+i)%len(classes)]
		out[i] = item{Class: c, Value: sample(c, first+i)}
		vals[i] = out[i].Value
	}
	noteValues(t, vals...)
	return out
}

var (
	valuesMu sync.Mutex
	values   = map[string]map[string]bool{} // test name -> values
)

// noteValues records personal values used by t: jetond's output must never
// contain them.
func noteValues(t testing.TB, vs ...string) {
	valuesMu.Lock()
	defer valuesMu.Unlock()
	name := topTest(t)
	if values[name] == nil {
		values[name] = map[string]bool{}
	}
	for _, v := range vs {
		values[name][v] = true
	}
}

// topTest names the top-level test, so a subtest's values are checked
// against the logs of a jetond its parent started.
func topTest(t testing.TB) string {
	name, _, _ := strings.Cut(t.Name(), "/")
	return name
}

// checkNoValues fails t if the file holds any value noted by t's test.
func checkNoValues(t testing.TB, path string) {
	t.Helper()
	b, err := os.ReadFile(path)
	if err != nil {
		if errors.Is(err, os.ErrNotExist) {
			return
		}
		t.Errorf("leak check: %v", err)
		return
	}
	valuesMu.Lock()
	// A copy: load goroutines of a failed test may still be noting values.
	vals := maps.Clone(values[topTest(t)])
	valuesMu.Unlock()
	hits := countValues(b, vals)
	if hits > 0 {
		// Never print the values themselves.
		t.Errorf("leak check: jetond's output %s contains %d of the test's personal values", path, hits)
	}
	if hits == 0 && len(vals) > 0 {
		t.Logf("leak check: %d values, none in %d bytes of jetond output", len(vals), len(b))
	}
}

// countValues counts the values found in b. Values are grouped by length
// and every window of b of each length is looked up, so the cost is the
// size of b times the number of distinct lengths, not times the number of
// values: a soak notes millions.
func countValues(b []byte, vals map[string]bool) int {
	byLen := map[int]map[string]bool{}
	for v := range vals {
		if byLen[len(v)] == nil {
			byLen[len(v)] = map[string]bool{}
		}
		byLen[len(v)][v] = true
	}
	found := map[string]bool{}
	for n, set := range byLen {
		for i := 0; i+n <= len(b); i++ {
			if set[string(b[i:i+n])] {
				found[string(b[i:i+n])] = true
			}
		}
	}
	return len(found)
}

// ---- small helpers --------------------------------------------------------

// freeAddr returns a loopback address whose port was free a moment ago.
func freeAddr(t testing.TB) string {
	t.Helper()
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer l.Close()
	return l.Addr().String()
}

func writeFile(t testing.TB, path, content string) {
	t.Helper()
	if err := os.WriteFile(path, []byte(content), 0o600); err != nil {
		t.Fatal(err)
	}
}

func envWithout(env []string, prefixes ...string) []string {
	var out []string
next:
	for _, kv := range env {
		for _, p := range prefixes {
			if strings.HasPrefix(kv, p) {
				continue next
			}
		}
		out = append(out, kv)
	}
	return out
}

func isClosed(c chan struct{}) bool {
	select {
	case <-c:
		return true
	default:
		return false
	}
}

func tail(s string, n int) string {
	lines := strings.Split(strings.TrimRight(s, "\n"), "\n")
	if len(lines) > n {
		lines = lines[len(lines)-n:]
	}
	return strings.Join(lines, "\n")
}

// ---- calls ----------------------------------------------------------------

const purpose, caseRef = "integration-test", "IT-0001"

// tokenize tokenizes its through tenant's sponsor client and fills in the
// tokens; every item must succeed.
func tokenize(t testing.TB, h *jetond, tenant string, its []item) {
	t.Helper()
	in := make([]client.Item, len(its))
	for i, it := range its {
		in[i] = client.Item{Class: it.Class, Value: it.Value}
	}
	res, err := h.Sponsor(t, tenant).Tokenize(context.Background(), in)
	if err != nil {
		t.Fatalf("Tokenize %d items for %s: %v", len(its), tenant, err)
	}
	if len(res) != len(its) {
		t.Fatalf("Tokenize: %d results for %d items", len(res), len(its))
	}
	for i, r := range res {
		if r.Err != nil {
			t.Fatalf("Tokenize item %d (%s): %v", i, its[i].Class, r.Err)
		}
		if want := "tok_" + its[i].Class + "_" + tenant + "_"; !strings.HasPrefix(r.Token, want) {
			t.Fatalf("Tokenize item %d: token does not start with %s", i, want)
		}
		its[i].Token = r.Token
	}
}

// detokenizeAll reveals every item's token through the TTP client and
// requires the full original value back.
func detokenizeAll(t testing.TB, h *jetond, its []item) {
	t.Helper()
	toks := make([]string, len(its))
	for i, it := range its {
		toks[i] = it.Token
	}
	res, err := h.TTP(t).Detokenize(context.Background(), toks, purpose, caseRef)
	if err != nil {
		t.Fatalf("Detokenize %d tokens: %v", len(toks), err)
	}
	if len(res) != len(its) {
		t.Fatalf("Detokenize: %d results for %d tokens", len(res), len(toks))
	}
	bad := 0
	for i, r := range res {
		if r.Err != nil || r.Masked || r.Value != its[i].Value || r.Class != its[i].Class {
			if bad < 3 {
				// Say what went wrong without printing either value.
				t.Errorf("Detokenize item %d (%s): err=%v masked=%t class=%s value matches=%t",
					i, its[i].Class, r.Err, r.Masked, r.Class, r.Value == its[i].Value)
			}
			bad++
		}
	}
	if bad > 0 {
		t.Fatalf("Detokenize: %d of %d tokens did not give back their value", bad, len(its))
	}
}

// wantUnavailable requires err to be an UNAVAILABLE call error and that no
// result came with it.
func wantUnavailable[R any](t testing.TB, what string, res []R, err error) {
	t.Helper()
	if !errors.Is(err, client.ErrUnavailable) {
		t.Fatalf("%s: err = %v, want UNAVAILABLE", what, err)
	}
	if res != nil {
		t.Fatalf("%s: %d results came back with the error", what, len(res))
	}
	var ce *client.Error
	if errors.As(err, &ce) {
		valuesMu.Lock()
		defer valuesMu.Unlock()
		for v := range values[topTest(t)] {
			if strings.Contains(ce.Message, v) {
				t.Fatalf("%s: the error message holds a personal value", what)
			}
		}
	}
}

// eventually retries f until it returns nil or recoverLimit passes.
func eventually(t testing.TB, what string, f func() error) {
	t.Helper()
	deadline := time.Now().Add(recoverLimit)
	for {
		err := f()
		if err == nil {
			return
		}
		if time.Now().After(deadline) {
			t.Fatalf("%s: still failing after %s: %v", what, recoverLimit, err)
		}
		time.Sleep(200 * time.Millisecond)
	}
}

// tryTokenize is tokenize returning the error instead of failing.
func tryTokenize(t testing.TB, h *jetond, tenant string, its []item) error {
	in := make([]client.Item, len(its))
	for i, it := range its {
		in[i] = client.Item{Class: it.Class, Value: it.Value}
	}
	res, err := h.Sponsor(t, tenant).Tokenize(context.Background(), in)
	if err != nil {
		return err
	}
	for i, r := range res {
		if r.Err != nil {
			return r.Err
		}
		its[i].Token = r.Token
	}
	return nil
}

// tryDetokenize reveals its and reports the first problem.
func tryDetokenize(t testing.TB, h *jetond, its []item) error {
	toks := make([]string, len(its))
	for i, it := range its {
		toks[i] = it.Token
	}
	res, err := h.TTP(t).Detokenize(context.Background(), toks, purpose, caseRef)
	if err != nil {
		return err
	}
	for i, r := range res {
		if r.Err != nil {
			return r.Err
		}
		if r.Value != its[i].Value {
			return fmt.Errorf("item %d: wrong value", i)
		}
	}
	return nil
}
