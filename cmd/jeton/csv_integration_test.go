package main

// The CSV commands against a real jetond binary, on a real redis-server
// and a real Vault started by testenv.

import (
	"bytes"
	"context"
	"fmt"
	"io"
	"math/rand/v2"
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

	"github.com/jeton-dev/jeton/client"
	"github.com/jeton-dev/jeton/integration/testenv"
	"github.com/jeton-dev/jeton/server/devpki"
	"github.com/jeton-dev/jeton/tokenizer/vaultkeys"
)

// pacedSponsorID is a second sponsor of the same tenant, with a tight
// rate on deterministic classes, for the budget refusal test.
const pacedSponsorID = "spiffe://jeton.dev/sponsor/paced"

const csvPolicy = `identities:
  - {id: "` + devpki.SponsorID + `", tenants: [demo], roles: [sponsor-app]}
  - {id: "` + pacedSponsorID + `", tenants: [demo], roles: [paced-app]}
  - {id: "` + devpki.TTPID + `", tenants: [demo], roles: [migration]}
  - {id: "` + devpki.CustodianID + `", tenants: [demo], roles: [custodian]}
roles:
  sponsor-app: {tokenize: ["*"], budget: {max_batch: 10000, rate: 1000000, burst: 1000000, distinct: 1000000, window: 24h}}
  paced-app: {tokenize: ["*"], budget: {max_batch: 1000, rate: 500, burst: 1000, distinct: 1000000, window: 24h}}
  migration: {reveal: {"*": full}, purposes: [migration], budget: {max_batch: 10000, rate: 1000000, burst: 1000000, distinct: 1000000}}
  custodian: {admin: true}
purposes:
  - {code: migration, description: moving the accreditation file back, classes: ["*"]}
`

// realJetond is a production-mode jetond and the CLI environments of its
// parties.
type realJetond struct {
	sponsor, paced, ttp, custodian map[string]string
	cliBin                         string
	metrics                        string // host:port of /metrics
}

func buildBinary(t testing.TB, pkg, name string) string {
	t.Helper()
	bin := filepath.Join(t.TempDir(), name)
	out, err := exec.Command("go", "build", "-o", bin, pkg).CombinedOutput()
	if err != nil {
		t.Fatalf("building %s: %v\n%s", pkg, err, out)
	}
	return bin
}

func freeLoopback(t testing.TB) string {
	t.Helper()
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer l.Close()
	return l.Addr().String()
}

func startRealJetond(t *testing.T) *realJetond {
	t.Helper()
	if testing.Short() {
		t.Skip("starts Redis, Vault and jetond")
	}
	rd, v := testenv.StartRedis(t), testenv.StartVault(t)
	jetond := buildBinary(t, "github.com/jeton-dev/jeton/cmd/jetond", "jetond")
	cli := buildBinary(t, "github.com/jeton-dev/jeton/cmd/jeton", "jeton")
	root := v.Client(t)
	ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
	defer cancel()
	if _, err := vaultkeys.Setup(ctx, root, vaultkeys.SetupConfig{}); err != nil {
		t.Fatalf("vaultkeys.Setup: %v", err)
	}
	tok, err := root.Auth().Token().Create(&vaultapi.TokenCreateRequest{Policies: []string{vaultkeys.PolicyJetond}, NoDefaultPolicy: true, TTL: "1h"})
	if err != nil {
		t.Fatal(err)
	}
	dir := t.TempDir()
	pki, err := devpki.Generate(filepath.Join(dir, "pki"))
	if err != nil {
		t.Fatal(err)
	}
	leaf, err := pki.SponsorAuthority.Issue(devpki.LeafOptions{CommonName: "sponsor-paced", URI: pacedSponsorID})
	if err != nil {
		t.Fatal(err)
	}
	pacedCert, pacedKey, err := leaf.Write(filepath.Join(dir, "pki"), "paced")
	if err != nil {
		t.Fatal(err)
	}
	policy := filepath.Join(dir, "policy.yaml")
	if err := os.WriteFile(policy, []byte(csvPolicy), 0o600); err != nil {
		t.Fatal(err)
	}
	public, trusted, metrics := freeLoopback(t), freeLoopback(t), freeLoopback(t)
	cfg := fmt.Sprintf(`public: {addr: %q, tls: {cert: %q, key: %q, client_ca: %q}}
trusted: {addr: %q, tls: {cert: %q, key: %q, client_ca: %q}, allowed_cidrs: ["127.0.0.0/8"]}
max_batch: 10000
redis: {addrs: [%q], timeout: 5s}
vault: {mount: transit, key: jeton-kek}
policy_file: %q
audit: {dir: %q}
metrics: {addr: %q}
log: {level: warn, format: json}
classes:
  - {name: email, kind: deterministic, normalize: [trim, fold, email], mask: email, max_len: 320}
  - {name: phone, normalize: [phone], region: FR, mask: phone, max_len: 64}
  - {name: name, normalize: [nfc, trim, collapse-space], mask: initials, max_len: 256}
`, public, pki.ServerCert, pki.ServerKey, pki.SponsorCA, trusted, pki.ServerCert, pki.ServerKey, pki.TTPCA,
		rd.Addr, policy, filepath.Join(dir, "audit"), metrics)
	cfgPath := filepath.Join(dir, "jetond.yaml")
	if err := os.WriteFile(cfgPath, []byte(cfg), 0o600); err != nil {
		t.Fatal(err)
	}
	cmd := exec.Command(jetond, "--config", cfgPath)
	var env []string
	for _, kv := range os.Environ() {
		if !strings.HasPrefix(kv, "VAULT_") && !strings.HasPrefix(kv, "JETON_") {
			env = append(env, kv)
		}
	}
	cmd.Env = append(env, "VAULT_ADDR="+v.Addr, "VAULT_TOKEN="+tok.Auth.ClientToken)
	var logs bytes.Buffer
	cmd.Stdout, cmd.Stderr = &logs, &logs
	cmd.SysProcAttr = &syscall.SysProcAttr{Pdeathsig: syscall.SIGKILL}
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	exited := make(chan struct{})
	go func() { cmd.Wait(); close(exited) }()
	t.Cleanup(func() {
		cmd.Process.Signal(syscall.SIGTERM)
		select {
		case <-exited:
		case <-time.After(30 * time.Second):
			cmd.Process.Kill()
		}
	})
	deadline := time.Now().Add(90 * time.Second)
	for {
		resp, err := http.Get("http://" + metrics + "/readyz")
		if err == nil {
			resp.Body.Close()
			if resp.StatusCode == http.StatusOK {
				break
			}
		}
		select {
		case <-exited:
			t.Fatalf("jetond exited:\n%s", logs.String())
		default:
		}
		if time.Now().After(deadline) {
			t.Fatalf("jetond not ready within 90s:\n%s", logs.String())
		}
		time.Sleep(50 * time.Millisecond)
	}
	return &realJetond{
		metrics:   metrics,
		sponsor:   environFor(public, tlsFiles{pki.ServerCA, pki.SponsorCert, pki.SponsorKey}),
		paced:     environFor(public, tlsFiles{pki.ServerCA, pacedCert, pacedKey}),
		ttp:       environFor(trusted, tlsFiles{pki.ServerCA, pki.TTPCert, pki.TTPKey}),
		custodian: environFor(trusted, tlsFiles{pki.ServerCA, pki.CustodianCert, pki.CustodianKey}),
		cliBin:    cli,
	}
}

// generateCSV writes n rows of obviously fake people as real files come:
// a BOM, CRLF, quoted fields with commas, quotes and line breaks, accents
// (NFC and NFD), mixed-case e-mail addresses, phone numbers as people type
// them, and a subject column. Every row has a name.
func generateCSV(n int) []byte {
	rng := rand.New(rand.NewPCG(2031, 11))
	given := []string{"Anne", "Éloïse", "Zoë", "Jean-Luc", "Ñúñez", "Bjørn", "Renée", "Ole", "Maëlle"}
	family := []string{"Dupont", "Müller", "O'Brien", "García Márquez", "Łukasiewicz", "Nguyễn", "Test"}
	phones := []string{"+33 6 12 34 %02d %02d", "06 12 34 %02d %02d", "0033 6 12 34 %02d %02d", "+33 (0)6 12 34 %02d %02d", "+44 20 7946 %02d%02d"}
	var b bytes.Buffer
	b.WriteString("\xef\xbb\xbfid,email,tel,nom,note\r\n")
	for i := range n {
		g, f := given[rng.IntN(len(given))], family[rng.IntN(len(family))]
		email := fmt.Sprintf("%s.%s%d@Example.ORG", strings.ToLower(string([]rune(g)[:1])), strings.ReplaceAll(f, " ", ""), i)
		tel := ""
		if rng.IntN(5) > 0 {
			tel = fmt.Sprintf(phones[rng.IntN(len(phones))], rng.IntN(100), rng.IntN(100))
		}
		name := g + " " + f
		switch rng.IntN(6) {
		case 0:
			name = f + ", " + g // needs quotes
		case 1:
			name = "\u0045\u0301lodie " + f // NFD accent
		case 2:
			name = g + " \"Jo\" " + f // quotes inside
		}
		note := ""
		switch rng.IntN(8) {
		case 0:
			note = "VIP"
		case 1:
			note = "\"arrives late,\r\nneeds badge\""
		case 2:
			note = "\"\""
		}
		fmt.Fprintf(&b, "guest-%06d,%s,%s,%s,%s\r\n", i, csvQuote(email), csvQuote(tel), csvQuote(name), note)
	}
	return b.Bytes()
}

func csvQuote(v string) string {
	if strings.ContainsAny(v, ",\"\r\n") {
		return "\"" + strings.ReplaceAll(v, "\"", "\"\"") + "\""
	}
	return v
}

// firstDifference describes how two CSV files differ, by line and by
// column counts only: the files hold (fake) personal data.
func firstDifference(t testing.TB, a, b []byte) string {
	ra, _, _, _ := readAll(t, a, ',')
	rb, _, _, _ := readAll(t, b, ',')
	if len(ra) != len(rb) || len(ra) == 0 {
		return fmt.Sprintf("%d records against %d", len(ra), len(rb))
	}
	diff := make([]int, len(ra[0].spans))
	first := 0
	for i := range ra {
		if len(ra[i].spans) != len(rb[i].spans) {
			return fmt.Sprintf("record on line %d has %d fields against %d", ra[i].line, len(ra[i].spans), len(rb[i].spans))
		}
		for k := range ra[i].spans {
			if ra[i].field(k) != rb[i].field(k) {
				diff[k]++
				if first == 0 {
					first = ra[i].line
				}
			}
		}
	}
	var cols []string
	for k, n := range diff {
		cols = append(cols, fmt.Sprintf("%s: %d", ra[0].field(k), n))
	}
	return fmt.Sprintf("first on line %d; rows differing per column: %s", first, strings.Join(cols, ", "))
}

// TestCSVMigrationAgainstRealJetond: a 100,000-row file is tokenized by
// the jeton binary, killed halfway, resumed, and revealed back; the
// result is the input byte for byte, and the resume minted no second
// token for the rows in flight when the process died.
func TestCSVMigrationAgainstRealJetond(t *testing.T) {
	j := startRealJetond(t)
	dir := t.TempDir()
	const rows = 100000
	input := generateCSV(rows)
	in := filepath.Join(dir, "guests.csv")
	if err := os.WriteFile(in, input, 0o600); err != nil {
		t.Fatal(err)
	}
	tok, back := filepath.Join(dir, "guests.tok.csv"), filepath.Join(dir, "guests.back.csv")
	tokArgs := []string{"csv", "tokenize", "--map", "email=email,tel=phone,nom=name", "--subject-column", "id", "--batch", "1000", "-o", tok, in}

	custodian, err := client.NewCustodian(j.custodian["JETON_ADDR"], client.WithTLSFiles(j.custodian["JETON_CACERT"], j.custodian["JETON_CERT"], j.custodian["JETON_KEY"]))
	if err != nil {
		t.Fatal(err)
	}
	defer custodian.Close()
	nameRecords := func() int {
		st, err := custodian.Stats(context.Background())
		if err != nil {
			t.Fatal(err)
		}
		if len(st.Tenants) == 0 {
			return 0
		}
		return int(st.Tenants[0].RecordsByClass["name"])
	}

	// Start the binary and kill it once about half the rows are out, while
	// jetond holds records of rows the file does not: calls that reached
	// the server and whose answers the killed run never wrote. Without
	// such a call the resume would prove nothing about retries, so a kill
	// that lands between calls is followed by a resume killed again, a
	// few thousand rows on.
	target, inFlight := rows/2, 0
	for attempt := 0; inFlight == 0; attempt++ {
		if attempt == 8 {
			t.Fatalf("in %d kills, none landed while a call that reached jetond was unanswered", attempt)
		}
		args := tokArgs
		if attempt > 0 {
			args = append(append([]string{}, tokArgs[:len(tokArgs)-3]...), "--resume", "-o", tok, in)
		}
		cmd := exec.Command(j.cliBin, args...)
		for k, v := range j.sponsor {
			cmd.Env = append(cmd.Env, k+"="+v)
		}
		var stderr bytes.Buffer
		cmd.Stderr = &stderr
		if err := cmd.Start(); err != nil {
			t.Fatal(err)
		}
		exited := make(chan error, 1)
		go func() { exited <- cmd.Wait() }()
		for killed := false; !killed; {
			select {
			case err := <-exited:
				t.Fatalf("csv tokenize ended (%v) before it could be killed halfway:\n%s", err, stderr.String())
			case <-time.After(10 * time.Millisecond):
			}
			if b, err := os.ReadFile(tok); err == nil && bytes.Count(b, []byte("\r\n")) >= target {
				cmd.Process.Kill()
				<-exited
				killed = true
			}
		}
		if _, err := os.Stat(tok + ".jeton-run"); err != nil {
			t.Fatalf("no run state file after the kill: %v", err)
		}
		b, err := os.ReadFile(tok)
		if err != nil {
			t.Fatal(err)
		}
		written := bytes.Count(b, []byte("tok_name_demo_"))
		inFlight = nameRecords() - written
		t.Logf("kill %d: %d name tokens written, %d more name records in jetond", attempt+1, written, inFlight)
		target = bytes.Count(b, []byte("\r\n")) + 3000
	}

	// Resume in-process and finish.
	got := jeton(t, j.sponsor, "", append(tokArgs[:len(tokArgs)-3], "--resume", "-o", tok, in)...)
	if got.code != exitOK {
		t.Fatalf("resumed csv tokenize: exit %d, stderr %q", got.code, lastBytes(got.stderr))
	}
	checkNoValues(t, got.stderr, "@Example.ORG", "Dupont")
	tokenized, err := os.ReadFile(tok)
	if err != nil {
		t.Fatal(err)
	}
	if n := bytes.Count(tokenized, []byte("tok_name_demo_")); n != rows {
		t.Fatalf("the tokenized file holds %d name tokens, want one per row (%d)", n, rows)
	}

	// One name record per row: the batches cut by the kill got their
	// tokens again under the same idempotency keys, not new ones.
	st, err := custodian.Stats(context.Background())
	if err != nil {
		t.Fatal(err)
	}
	if len(st.Tenants) != 1 || st.Tenants[0].RecordsByClass["name"] != rows {
		// Invariant 7: retries never mint two random tokens for one item.
		t.Errorf("Stats = %+v; want exactly %d name records: the resume minted new tokens for items of the calls in flight at the kill", st.Tenants, rows)
	}

	// And back, as the TTP.
	got = jeton(t, j.ttp, "", "csv", "detokenize", "--map", "email=email,tel=phone,nom=name", "--purpose", "migration", "--batch", "1000", "-o", back, tok)
	if got.code != exitOK {
		t.Fatalf("csv detokenize: exit %d, stderr %q", got.code, lastBytes(got.stderr))
	}
	restored, err := os.ReadFile(back)
	if err != nil {
		t.Fatal(err)
	}
	if !bytes.Equal(restored, input) {
		t.Fatalf("tokenize then detokenize is not byte-identical: %s", firstDifference(t, restored, input))
	}
}

// TestCSVBudgetRefusalPaces: a sponsor whose deterministic-class rate is
// far below what the command sends gets refused mid-run; the server says
// when to come back (RetryInfo), the command waits, and every row is
// written, in order.
func TestCSVBudgetRefusalPaces(t *testing.T) {
	j := startRealJetond(t)
	dir := t.TempDir()
	const rows = 4000
	input := generateCSV(rows)
	in := filepath.Join(dir, "guests.csv")
	if err := os.WriteFile(in, input, 0o600); err != nil {
		t.Fatal(err)
	}
	tok := filepath.Join(dir, "guests.tok.csv")
	got := jeton(t, j.paced, "", "csv", "tokenize", "--map", "email=email,tel=phone,nom=name", "--subject-column", "id",
		"--batch", "900", "--concurrency", "4", "-o", tok, in)
	if strings.Contains(got.stderr, "no retry delay given") {
		t.Fatalf("the server refused a rate-limited call without google.rpc.RetryInfo, so the command could not pace: %q", lastBytes(got.stderr))
	}
	if n := refusals(t, j.metrics); n == 0 {
		t.Errorf("jetond refused no call: the test's budget is too loose to show pacing; stderr %q", lastBytes(got.stderr))
	}
	if got.code != exitOK {
		t.Fatalf("csv tokenize under a tight budget: exit %d, stderr %q", got.code, lastBytes(got.stderr))
	}
	tokenized, err := os.ReadFile(tok)
	if err != nil {
		t.Fatal(err)
	}
	if n := bytes.Count(tokenized, []byte("tok_name_demo_")); n != rows {
		t.Fatalf("%d rows tokenized, want all %d", n, rows)
	}
	back := filepath.Join(dir, "back.csv")
	if got := jeton(t, j.ttp, "", "csv", "detokenize", "--map", "email,tel,nom", "--purpose", "migration", "-o", back, tok); got.code != exitOK {
		t.Fatalf("csv detokenize: exit %d, stderr %q", got.code, lastBytes(got.stderr))
	}
	if restored, _ := os.ReadFile(back); !bytes.Equal(restored, input) {
		t.Fatalf("paced round trip is not byte-identical: %s", firstDifference(t, restored, input))
	}
}

// lastBytes keeps a failure message readable: a run that fails every row
// reports each by line number, and the end says how far it got.
func lastBytes(s string) string {
	const keep = 2000
	if len(s) <= keep {
		return s
	}
	return "..." + s[len(s)-keep:]
}

// refusals reads jetond's count of budget refusals of tokenize calls.
func refusals(t testing.TB, metrics string) float64 {
	t.Helper()
	resp, err := http.Get("http://" + metrics + "/metrics")
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	body, err := io.ReadAll(resp.Body)
	if err != nil {
		t.Fatal(err)
	}
	var n float64
	for _, line := range strings.Split(string(body), "\n") {
		if strings.HasPrefix(line, "jeton_budget_refusals_total{") && strings.Contains(line, `op="tokenize"`) {
			var v float64
			if _, err := fmt.Sscan(line[strings.LastIndexByte(line, ' ')+1:], &v); err == nil {
				n += v
			}
		}
	}
	return n
}
