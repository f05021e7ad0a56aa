package integration_test

import (
	"bufio"
	"context"
	"errors"
	"fmt"
	"io"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"sync"
	"testing"
	"time"

	"google.golang.org/grpc"
	"google.golang.org/grpc/resolver"
	"google.golang.org/grpc/resolver/manual"

	"github.com/jeton-dev/jeton/client"
	"github.com/jeton-dev/jeton/server/devpki"
	"github.com/jeton-dev/jeton/tokenizer/vaultkeys"
)

// deployment is several jetond replicas, separate processes, with one PKI
// and one Redis and Vault, each replica with its own audit directory: the
// shape of a production deployment.
type deployment struct {
	Replicas []*jetond
	pki      *devpki.Bundle
	dir      string
	limited  [2]string // cert, key of limitedID
	second   [2]string // cert, key of secondCustodianID

	mu      sync.Mutex
	clients []*client.Client
}

// startDeployment starts n replicas of o (o.PKI and o.AuditDir are set
// per deployment and per replica) and waits until all are ready.
func startDeployment(t testing.TB, n int, o jetondOpts) *deployment {
	t.Helper()
	dir := t.TempDir()
	pki, err := devpki.Generate(filepath.Join(dir, "pki"))
	if err != nil {
		t.Fatal(err)
	}
	d := &deployment{pki: pki, dir: dir}
	d.limited = issueTTP(t, pki, dir, "limited", limitedID)
	d.second = issueTTP(t, pki, dir, "custodian-2", secondCustodianID)
	o.PKI, o.AuditDir = pki, ""
	for range n {
		d.Replicas = append(d.Replicas, newJetond(t, o))
	}
	t.Cleanup(d.closeClients)
	for _, h := range d.Replicas {
		h.start(t)
	}
	for _, h := range d.Replicas {
		h.waitReady(t)
	}
	return d
}

// issueTTP issues a client certificate of the TTP CA for uri.
func issueTTP(t testing.TB, pki *devpki.Bundle, dir, name, uri string) [2]string {
	t.Helper()
	leaf, err := pki.TTPAuthority.Issue(devpki.LeafOptions{CommonName: name, URI: uri})
	if err != nil {
		t.Fatal(err)
	}
	cert, key, err := leaf.Write(dir, name)
	if err != nil {
		t.Fatal(err)
	}
	return [2]string{cert, key}
}

// roundRobin returns a client that spreads its calls over addrs with
// gRPC's round_robin balancer, through a manual resolver that names the
// replicas (a "dns:///" target naming them all would do the same in
// production). The server name checked is "localhost", which the test
// server certificate carries.
func (d *deployment) roundRobin(t testing.TB, addrs []string, cert, key string, opts ...client.Option) *client.Client {
	t.Helper()
	r := manual.NewBuilderWithScheme("jetontest")
	var state resolver.State
	for _, a := range addrs {
		state.Addresses = append(state.Addresses, resolver.Address{Addr: a})
	}
	r.InitialState(state)
	c, err := client.New("jetontest:///replicas", append([]client.Option{
		client.WithTLSFiles(d.pki.ServerCA, cert, key),
		client.WithBatchSize(10000),
		client.WithTimeout(30 * time.Second),
		client.WithDialOptions(
			grpc.WithResolvers(r),
			grpc.WithAuthority("localhost"),
			grpc.WithDefaultServiceConfig(`{"loadBalancingConfig": [{"round_robin": {}}]}`),
		)}, opts...)...)
	if err != nil {
		t.Fatal(err)
	}
	d.mu.Lock()
	d.clients = append(d.clients, c)
	d.mu.Unlock()
	return c
}

func (d *deployment) closeClients() {
	d.mu.Lock()
	cs := d.clients
	d.clients = nil
	d.mu.Unlock()
	for _, c := range cs {
		_ = c.Close()
	}
}

func (d *deployment) publicAddrs() []string {
	var out []string
	for _, h := range d.Replicas {
		out = append(out, h.PublicAddr)
	}
	return out
}

func (d *deployment) trustedAddrs() []string {
	var out []string
	for _, h := range d.Replicas {
		out = append(out, h.TrustedAddr)
	}
	return out
}

// Sponsor is tenant's sponsor identity over every replica.
func (d *deployment) Sponsor(t testing.TB, tenant string) *client.Client {
	t.Helper()
	f := d.Replicas[0].sponsor[tenant]
	return d.roundRobin(t, d.publicAddrs(), f[0], f[1])
}

// TTP is the TTP identity over every replica.
func (d *deployment) TTP(t testing.TB) *client.Client {
	t.Helper()
	return d.roundRobin(t, d.trustedAddrs(), d.pki.TTPCert, d.pki.TTPKey)
}

// Limited is limitedID over every replica, or over the replicas given.
func (d *deployment) Limited(t testing.TB, only ...*jetond) *client.Client {
	t.Helper()
	addrs := d.trustedAddrs()
	if len(only) > 0 {
		addrs = nil
		for _, h := range only {
			addrs = append(addrs, h.TrustedAddr)
		}
	}
	return d.roundRobin(t, addrs, d.limited[0], d.limited[1])
}

// Custodian is the custodian identity on one replica.
func (d *deployment) Custodian(t testing.TB, h *jetond) *client.Client {
	t.Helper()
	return h.newClient(t, h.TrustedAddr, d.pki.CustodianCert, d.pki.CustodianKey)
}

// destroyGeneration destroys generation gen of tenant through replica h,
// as custodians do: one requests it, a second approves it (dual control),
// and the approval carries it out.
func destroyGeneration(ctx context.Context, t testing.TB, d *deployment, h *jetond, tenant string, gen uint32) error {
	t.Helper()
	req, err := d.Custodian(t, h).DestroyGeneration(ctx, tenant, gen, client.DestroyConfirmation(tenant, gen), "IT-DESTROY")
	if err != nil {
		return err
	}
	if req.Done {
		t.Fatalf("destroy of %s generation %d took effect on one custodian's word", tenant, gen)
	}
	second := h.newClient(t, h.TrustedAddr, d.second[0], d.second[1])
	done, err := second.ApproveRequest(ctx, req.ID, "IT-DESTROY-APPROVE")
	if err != nil {
		return err
	}
	if !done.Done {
		t.Fatalf("destroy of %s generation %d still pending after the second custodian approved", tenant, gen)
	}
	return nil
}

// ---- what a replica reports over HTTP ---------------------------------------

// metric returns the value of an unlabelled metric from h's /metrics.
func metric(t testing.TB, h *jetond, name string) float64 {
	t.Helper()
	resp, err := http.Get("http://" + h.MetricsAddr + "/metrics")
	if err != nil {
		t.Fatalf("GET /metrics: %v", err)
	}
	defer resp.Body.Close()
	sc := bufio.NewScanner(resp.Body)
	sc.Buffer(make([]byte, 0, 64<<10), 1<<20)
	for sc.Scan() {
		if v, ok := strings.CutPrefix(sc.Text(), name+" "); ok {
			f, err := strconv.ParseFloat(strings.TrimSpace(v), 64)
			if err != nil {
				t.Fatalf("metric %s: %v", name, err)
			}
			return f
		}
	}
	t.Fatalf("/metrics has no %s", name)
	return 0
}

// readiness returns /readyz's status code and body.
func readiness(h *jetond) (int, string) {
	c := http.Client{Timeout: 5 * time.Second}
	resp, err := c.Get("http://" + h.MetricsAddr + "/readyz")
	if err != nil {
		return 0, err.Error()
	}
	defer resp.Body.Close()
	b, _ := io.ReadAll(resp.Body)
	return resp.StatusCode, strings.TrimSpace(string(b))
}

// waitReadiness polls /readyz until its status is want (200 or 503).
func waitReadiness(t testing.TB, h *jetond, want int) string {
	t.Helper()
	var body string
	eventually(t, fmt.Sprintf("/readyz answering %d", want), func() error {
		var code int
		code, body = readiness(h)
		if code != want {
			return fmt.Errorf("/readyz = %d %q", code, body)
		}
		return nil
	})
	return body
}

// ---- audit ------------------------------------------------------------------

// verifyAudit runs `jeton audit verify` on h's audit directory as an
// auditor would: with only the verifier's Vault token, so it checks the
// chain against the replica's signed checkpoint with the public key alone.
// It returns the exit code and the combined output.
func verifyAudit(t testing.TB, h *jetond) (int, string) {
	t.Helper()
	v := h.opts.Vault
	cmd := exec.Command(jetonBin, "audit", "verify", "--vault", "--replica", h.replica, h.AuditDir)
	cmd.Env = append(envWithout(os.Environ(), "JETON_", "VAULT_"),
		"VAULT_ADDR="+h.opts.VaultAddr, "VAULT_TOKEN="+v.token(t, vaultkeys.PolicyAuditVerifier))
	out, err := cmd.CombinedOutput()
	var ee *exec.ExitError
	switch {
	case err == nil:
		return 0, string(out)
	case errors.As(err, &ee):
		return ee.ExitCode(), string(out)
	default:
		t.Fatalf("jeton audit verify: %v", err)
		return -1, ""
	}
}

// auditRecords counts the complete lines of every audit file in dir.
func auditRecords(t testing.TB, dir string) int {
	t.Helper()
	files, err := filepath.Glob(filepath.Join(dir, "audit-*.jsonl"))
	if err != nil {
		t.Fatal(err)
	}
	n := 0
	for _, f := range files {
		b, err := os.ReadFile(f)
		if err != nil {
			t.Fatal(err)
		}
		n += strings.Count(string(b), "\n")
	}
	return n
}

// TestCountValues: the leak check finds values anywhere in the output,
// each counted once, whatever their lengths.
func TestCountValues(t *testing.T) {
	vals := map[string]bool{"anne@example.org": true, "Bob Test": true, "+33600000001": true, "absent": true}
	out := []byte(`{"msg":"x","v":"anne@example.org"} Bob Test Bob Test` + "\n+33600000001")
	if got := countValues(out, vals); got != 3 {
		t.Fatalf("countValues = %d; want 3", got)
	}
	if got := countValues([]byte("nothing here"), vals); got != 0 {
		t.Fatalf("countValues on clean output = %d; want 0", got)
	}
}
