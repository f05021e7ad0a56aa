package bench_test

import (
	"cmp"
	"context"
	"crypto/tls"
	"crypto/x509"
	"fmt"
	"net"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"syscall"
	"testing"
	"time"

	vaultapi "github.com/hashicorp/vault/api"
	"github.com/redis/go-redis/v9"
	"google.golang.org/grpc"
	"google.golang.org/grpc/credentials"
	healthpb "google.golang.org/grpc/health/grpc_health_v1"

	"github.com/jeton-dev/jeton/integration/testenv"
	jetonv1 "github.com/jeton-dev/jeton/proto/jeton/v1"
	"github.com/jeton-dev/jeton/server/devpki"
	"github.com/jeton-dev/jeton/tokenizer"
	"github.com/jeton-dev/jeton/tokenizer/redisstore"
	"github.com/jeton-dev/jeton/tokenizer/vaultkeys"
)

const (
	tenant       = "bench"  // jetond's tenant
	inprocTenant = "inproc" // the in-process tokenizer's
	purpose      = "benchmark"
	caseRef      = "BENCH-0001"
	retention    = 4380 * time.Hour // every class's, as in jetond.example.yaml
	baselineKey  = "bench-baseline" // Vault Transit key of the encryption baselines
	readyLimit   = 60 * time.Second // a bound for a broken start, not a timing claim
)

// benchClass is a field class configured in jetond and in the in-process
// tokenizer alike. Built-in classes are not relied on: which of them are
// deterministic is a product decision, and the benchmark needs one of each
// kind.
type benchClass struct {
	name      string
	kind      tokenizer.Kind
	normalize []string
	mask      string
	maxLen    int
}

var classes = []benchClass{
	{"name", tokenizer.KindRandom, []string{"trim", "collapse-space"}, "initials", 256},
	{"email", tokenizer.KindRandom, []string{"trim", "lower", "email"}, "email", 320},
	{"address", tokenizer.KindRandom, []string{"trim", "collapse-space"}, "all", 1024},
	{"text", tokenizer.KindRandom, nil, "all", 0},
	{"email-det", tokenizer.KindDeterministic, []string{"trim", "lower", "email"}, "email", 320},
}

// batchClasses are the classes of batched items, in turn.
var batchClasses = []string{"name", "email", "address", "text"}

func classesYAML() string {
	var b strings.Builder
	b.WriteString("classes:\n")
	for _, c := range classes {
		fmt.Fprintf(&b, "  - {name: %s, kind: %s, normalize: [%s], mask: %s, max_len: %d, retention: %s}\n",
			c.name, c.kind, strings.Join(c.normalize, ", "), c.mask, c.maxLen, retention)
	}
	return b.String()
}

func tokenizerClasses() []tokenizer.Class {
	out := make([]tokenizer.Class, len(classes))
	for i, c := range classes {
		out[i] = tokenizer.Class{Name: c.name, Kind: c.kind, Normalize: c.normalize, Mask: c.mask, MaxLen: c.maxLen, Retention: retention}
	}
	return out
}

// budgetNote says, in the output, why no budget refuses a call.
const budgetNote = "budgets on (the Redis budget script runs on every Detokenize and every deterministic Tokenize) but set far above the load: " +
	"sponsor rate and burst 1e9, deterministic distinct values 1e9 per 24h; reveal rate and burst 1e9, distinct 1e9 per 24h, max_batch 10,000"

func policyYAML() string {
	return fmt.Sprintf(`identities:
  - {id: %q, tenants: [%s], roles: [sponsor]}
  - {id: %q, tenants: [%s], roles: [reveal]}
roles:
  sponsor:
    tokenize: ["*"]
    budget: {max_batch: 10000, rate: 1000000000, burst: 1000000000, distinct: 1000000000, window: 24h}
  reveal:
    reveal: {"*": full}
    purposes: [%s]
    budget: {max_batch: 10000, rate: 1000000000, burst: 1000000000, distinct: 1000000000, window: 24h, suspend_after: 1000000}
purposes:
  - {code: %s, description: load test on loopback, classes: ["*"], case_ref_required: true}
`, devpki.SponsorID, tenant, devpki.TTPID, tenant, purpose, purpose)
}

// deployment is everything one benchmark run talks to.
type deployment struct {
	redis *testenv.Redis
	rdb   *redis.Client // raw baseline client
	vault *testenv.Vault
	vroot *vaultapi.Client // root token: the encryption baselines
	pki   *devpki.Bundle
	dir   string

	jetond      *exec.Cmd
	jetondBin   string // the binary jetond runs; jetondBin if empty
	jetondToken string // its Vault token
	jetondLog   string
	replica     string // its audit chain's replica name; "bench" if empty
	metricsAddr string
	pprof       bool

	addrs map[string]string // listener addresses, chosen once

	public, trusted      *grpc.ClientConn
	tok                  jetonv1.TokenizerClient
	detok                jetonv1.DetokenizerClient
	pubHealth, truHealth healthpb.HealthClient
	inproc               *tokenizer.Tokenizer
	vaultVersion         string
}

// deploy starts Redis, Vault and jetond, and connects to them.
func deploy(t *testing.T, pprof bool) *deployment {
	t.Helper()
	d := &deployment{dir: t.TempDir(), pprof: pprof, addrs: map[string]string{}}
	d.redis = testenv.StartRedis(t, testenv.WithAppendFsync("everysec"))
	// A pool as large as the highest concurrency, so the raw baselines
	// measure Redis rather than waiting for a connection.
	d.rdb = redis.NewClient(&redis.Options{Addr: d.redis.Addr, PoolSize: 128, MinIdleConns: 64})
	t.Cleanup(func() { _ = d.rdb.Close() })
	// The benchmark writes and deletes millions of keys, so the AOF grows
	// far faster than the data and Redis would fork a rewrite every few
	// seconds, each landing in whichever measurement is running. A
	// production AOF grows with its data, and rewrites are rare.
	if err := d.rdb.ConfigSet(context.Background(), "auto-aof-rewrite-percentage", "0").Err(); err != nil {
		t.Fatalf("turning off automatic AOF rewrites: %v", err)
	}

	d.vault = testenv.StartVault(t)
	ctx, cancel := context.WithTimeout(context.Background(), readyLimit)
	defer cancel()
	root := d.vault.Client(t)
	if _, err := vaultkeys.Setup(ctx, root, vaultkeys.SetupConfig{}); err != nil {
		t.Fatalf("vaultkeys.Setup: %v", err)
	}
	if _, err := root.Logical().WriteWithContext(ctx, "transit/keys/"+baselineKey, map[string]any{"type": "aes256-gcm96"}); err != nil {
		t.Fatalf("creating the baseline Transit key: %v", err)
	}
	if h, err := root.Sys().HealthWithContext(ctx); err == nil {
		d.vaultVersion = h.Version
	}
	d.vroot = d.vaultClient(t, d.vault.RootToken)
	s, err := root.Auth().Token().CreateWithContext(ctx, &vaultapi.TokenCreateRequest{
		Policies: []string{vaultkeys.PolicyJetond}, NoDefaultPolicy: true, TTL: "2h",
	})
	if err != nil || s == nil || s.Auth == nil {
		t.Fatalf("jetond's Vault token: %v", err)
	}
	d.jetondToken = s.Auth.ClientToken

	if d.pki, err = devpki.Generate(filepath.Join(d.dir, "pki")); err != nil {
		t.Fatal(err)
	}
	d.startJetond(t, d.jetondToken)
	d.connect(t)
	d.inproc = d.inprocTokenizer(t, d.jetondToken)
	return d
}

// connect opens the connections to jetond's listeners.
func (d *deployment) connect(t *testing.T) {
	t.Helper()
	d.public = d.dial(t, d.publicAddr(t), d.pki.SponsorCert, d.pki.SponsorKey)
	d.trusted = d.dial(t, d.trustedAddr(t), d.pki.TTPCert, d.pki.TTPKey)
	d.tok = jetonv1.NewTokenizerClient(d.public)
	d.detok = jetonv1.NewDetokenizerClient(d.trusted)
	d.pubHealth = healthpb.NewHealthClient(d.public)
	d.truHealth = healthpb.NewHealthClient(d.trusted)
}

// vaultClient returns a Vault client with token whose HTTP pool keeps
// enough connections open for the highest concurrency.
func (d *deployment) vaultClient(t *testing.T, token string) *vaultapi.Client {
	t.Helper()
	cfg := vaultapi.DefaultConfig()
	cfg.Address = d.vault.Addr
	cfg.MaxRetries = 0
	if tr, ok := cfg.HttpClient.Transport.(*http.Transport); ok {
		tr.MaxIdleConnsPerHost = 128
	}
	c, err := vaultapi.NewClient(cfg)
	if err != nil {
		t.Fatal(err)
	}
	c.ClearNamespace()
	c.SetToken(token)
	return c
}

func (d *deployment) publicAddr(t *testing.T) string  { return d.addr(t, "public") }
func (d *deployment) trustedAddr(t *testing.T) string { return d.addr(t, "trusted") }

// addr returns the loopback address of a listener: a port that was free
// when first asked for.
func (d *deployment) addr(t *testing.T, which string) string {
	t.Helper()
	if a, ok := d.addrs[which]; ok {
		return a
	}
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer l.Close()
	d.addrs[which] = l.Addr().String()
	return d.addrs[which]
}

// startJetond writes a production configuration and runs the jetond
// binary on it until the test ends.
func (d *deployment) startJetond(t *testing.T, vaultToken string) {
	t.Helper()
	policy := filepath.Join(d.dir, "policy.yaml")
	writeFile(t, policy, policyYAML())
	d.metricsAddr = d.addr(t, "metrics")
	cfg := fmt.Sprintf(`public:
  addr: %q
  tls: {cert: %q, key: %q, client_ca: %q}
trusted:
  addr: %q
  tls: {cert: %q, key: %q, client_ca: %q}
  allowed_cidrs: ["127.0.0.0/8"]
max_batch: 10000
redis:
  addrs: [%q]
  timeout: 2s
vault: {mount: transit, key: %s}
%spolicy_file: %q
audit: {dir: %q, replica: %s}
log: {level: info, format: json}
metrics: {addr: %q, pprof: %t}
`, d.publicAddr(t), d.pki.ServerCert, d.pki.ServerKey, d.pki.SponsorCA,
		d.trustedAddr(t), d.pki.ServerCert, d.pki.ServerKey, d.pki.TTPCA,
		d.redis.Addr, vaultkeys.DefaultKey, classesYAML(), policy, filepath.Join(d.dir, "audit"), cmp.Or(d.replica, "bench"), d.metricsAddr, d.pprof)
	cfgPath := filepath.Join(d.dir, "jetond.yaml")
	writeFile(t, cfgPath, cfg)

	d.jetondLog = filepath.Join(d.dir, "jetond.log")
	logf, err := os.Create(d.jetondLog)
	if err != nil {
		t.Fatal(err)
	}
	var env []string
	for _, kv := range os.Environ() {
		if !strings.HasPrefix(kv, "VAULT_") && !strings.HasPrefix(kv, "JETON_") {
			env = append(env, kv)
		}
	}
	bin := d.jetondBin
	if bin == "" {
		bin = jetondBin
	}
	cmd := exec.Command(bin, "--config", cfgPath, "--drain-timeout", "5s")
	cmd.Env = append(env, "HOME="+d.dir, "VAULT_ADDR="+d.vault.Addr, "VAULT_TOKEN="+vaultToken)
	cmd.Stdout, cmd.Stderr = logf, logf
	cmd.SysProcAttr = &syscall.SysProcAttr{Pdeathsig: syscall.SIGKILL}
	if err := cmd.Start(); err != nil {
		logf.Close()
		t.Fatalf("start jetond: %v", err)
	}
	done := make(chan struct{})
	go func() { _ = cmd.Wait(); logf.Close(); close(done) }()
	d.jetond = cmd
	t.Cleanup(func() {
		_ = cmd.Process.Kill()
		<-done
		if t.Failed() {
			t.Logf("jetond output (last lines):\n%s", tail(d.jetondLog, 30))
		}
	})

	hc := &http.Client{Timeout: time.Second}
	deadline := time.Now().Add(readyLimit)
	for {
		resp, err := hc.Get("http://" + d.metricsAddr + "/readyz")
		if err == nil {
			resp.Body.Close()
			if resp.StatusCode == http.StatusOK {
				return
			}
		}
		select {
		case <-done:
			t.Fatalf("jetond exited during start-up; output:\n%s", tail(d.jetondLog, 30))
		default:
		}
		if time.Now().After(deadline) {
			t.Fatalf("jetond not ready after %s; output:\n%s", readyLimit, tail(d.jetondLog, 30))
		}
		time.Sleep(50 * time.Millisecond)
	}
}

// dial opens one mutual-TLS connection; every call of a listener's
// workloads, health checks included, shares it.
func (d *deployment) dial(t *testing.T, addr, cert, key string) *grpc.ClientConn {
	t.Helper()
	caPEM, err := os.ReadFile(d.pki.ServerCA)
	if err != nil {
		t.Fatal(err)
	}
	pool := x509.NewCertPool()
	pool.AppendCertsFromPEM(caPEM)
	pair, err := tls.LoadX509KeyPair(cert, key)
	if err != nil {
		t.Fatal(err)
	}
	conn, err := grpc.NewClient(addr, grpc.WithTransportCredentials(credentials.NewTLS(
		&tls.Config{RootCAs: pool, Certificates: []tls.Certificate{pair}, MinVersion: tls.VersionTLS13})))
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = conn.Close() })
	ctx, cancel := context.WithTimeout(context.Background(), readyLimit)
	defer cancel()
	if r, err := healthpb.NewHealthClient(conn).Check(ctx, &healthpb.HealthCheckRequest{}); err != nil || r.GetStatus() != healthpb.HealthCheckResponse_SERVING {
		t.Fatalf("health check of %s: %v %v", addr, r.GetStatus(), err)
	}
	return conn
}

// inprocTokenizer is the tokenizer without gRPC: the same classes, on the
// same Redis and Vault, with jetond's Vault policy, under its own tenant.
func (d *deployment) inprocTokenizer(t *testing.T, vaultToken string) *tokenizer.Tokenizer {
	t.Helper()
	rc, err := redisstore.NewClient(redisstore.Config{Addrs: []string{d.redis.Addr}, DialTimeout: 2 * time.Second, ReadTimeout: 2 * time.Second, WriteTimeout: 2 * time.Second})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = rc.Close() })
	ctx, cancel := context.WithTimeout(context.Background(), readyLimit)
	defer cancel()
	km, err := vaultkeys.New(ctx, d.vaultClient(t, vaultToken), vaultkeys.Config{Mount: "transit", Key: vaultkeys.DefaultKey})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(km.Close)
	tz, err := tokenizer.New(tokenizer.Config{Classes: tokenizerClasses(), Keys: km, Store: redisstore.New(rc)})
	if err != nil {
		t.Fatal(err)
	}
	return tz
}

func writeFile(t *testing.T, path, content string) {
	t.Helper()
	if err := os.WriteFile(path, []byte(content), 0o600); err != nil {
		t.Fatal(err)
	}
}

func tail(path string, n int) string {
	b, _ := os.ReadFile(path)
	lines := strings.Split(strings.TrimRight(string(b), "\n"), "\n")
	return strings.Join(lines[max(0, len(lines)-n):], "\n")
}
