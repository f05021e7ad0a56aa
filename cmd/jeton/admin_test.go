package main

import (
	"context"
	"encoding/json"
	"fmt"
	"io"
	"log/slog"
	"net/netip"
	"regexp"
	"strings"
	"testing"
	"time"

	"github.com/jeton-dev/jeton/server"
	"github.com/jeton-dev/jeton/server/audit"
	"github.com/jeton-dev/jeton/server/devpki"
	"github.com/jeton-dev/jeton/tokenizer"
	"github.com/jeton-dev/jeton/tokenizer/localkeys"
	"github.com/jeton-dev/jeton/tokenizer/memstore"
)

const adminTestPolicy = `
identities:
  - id: spiffe://jeton.dev/sponsor/demo
    tenants: [demo]
    roles: [sponsor]
  - id: spiffe://jeton.dev/ttp/demo
    tenants: [demo]
    roles: [reader]
  - id: spiffe://jeton.dev/ttp/custodian
    tenants: [demo]
    roles: [custodian]
  - id: spiffe://jeton.dev/ttp/custodian-2
    tenants: [demo]
    roles: [custodian]
roles:
  sponsor:
    tokenize: ["*"]
    budget: {distinct: 1000000}
  reader:
    reveal: {"*": full}
    purposes: [support]
    budget: {distinct: 100}
  custodian:
    admin: true
purposes:
  - code: support
    description: answering a data subject's request
    classes: ["*"]
`

// nopAudit accepts every record: the server's audit is tested in server.
type nopAudit struct{}

func (nopAudit) Append(context.Context, audit.Record) error { return nil }
func (nopAudit) TokenHash(tok string) string                { return fmt.Sprint(len(tok)) }

// realServer runs a real jetond server in-process, on loopback, and returns
// it with its tokenizer and the environment of the custodian and of a
// reader on the trusted listener.
func realServer(t *testing.T) (*tokenizer.Tokenizer, map[string]string, map[string]string) {
	tz, custodian, reader, _ := realServerWithSponsor(t)
	return tz, custodian, reader
}

// realServerWithSponsor is realServer that also returns the environment of
// a sponsor on the public listener.
func realServerWithSponsor(t *testing.T) (*tokenizer.Tokenizer, map[string]string, map[string]string, map[string]string) {
	t.Helper()
	s := startRealServer(t)
	return s.tz, s.custodian, s.reader, s.sponsor
}

// realEnvs are the environments of a real in-process server's callers.
type realEnvs struct {
	tz                                     *tokenizer.Tokenizer
	custodian, custodian2, reader, sponsor map[string]string
}

func startRealServer(t *testing.T) realEnvs {
	t.Helper()
	b, err := devpki.Generate(t.TempDir())
	if err != nil {
		t.Fatal(err)
	}
	km, err := localkeys.New(true)
	if err != nil {
		t.Fatal(err)
	}
	// The built-in classes and two with format-preserving token shapes.
	classes := append(tokenizer.DefaultClasses(),
		tokenizer.Class{Name: "contact-email", Normalize: []string{"trim", "fold", "email"}, Mask: "email", Shape: tokenizer.Shape{Kind: tokenizer.ShapeEmail}},
		tokenizer.Class{Name: "badge", Mask: "last3", Shape: tokenizer.Shape{Kind: tokenizer.ShapeDigits, Prefix: "9", KeepSuffix: 2}})
	tz, err := tokenizer.New(tokenizer.Config{Classes: classes, Keys: km, Store: memstore.New(), KeyRefresh: time.Millisecond})
	if err != nil {
		t.Fatal(err)
	}
	var names []string
	for _, c := range tz.Classes() {
		names = append(names, c.Name)
	}
	pol, err := server.ParsePolicy([]byte(adminTestPolicy), names)
	if err != nil {
		t.Fatal(err)
	}
	pub, err := server.LoadTLS(server.TLSFiles{Cert: b.ServerCert, Key: b.ServerKey, ClientCA: b.SponsorCA})
	if err != nil {
		t.Fatal(err)
	}
	tru, err := server.LoadTLS(server.TLSFiles{Cert: b.ServerCert, Key: b.ServerKey, ClientCA: b.TTPCA})
	if err != nil {
		t.Fatal(err)
	}
	srv, err := server.New(server.Config{
		Tokenizer: tz, Policy: pol, Audit: nopAudit{},
		Logger:  slog.New(slog.NewTextHandler(io.Discard, nil)),
		Public:  server.Listener{Addr: "127.0.0.1:0", TLS: pub},
		Trusted: server.Listener{Addr: "127.0.0.1:0", TLS: tru, Allowed: []netip.Prefix{netip.MustParsePrefix("127.0.0.0/8")}},
	})
	if err != nil {
		t.Fatal(err)
	}
	srv.Start()
	t.Cleanup(func() {
		ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
		defer cancel()
		srv.Stop(ctx)
	})
	addr := srv.TrustedAddr().String()
	second, err := b.TTPAuthority.Issue(devpki.LeafOptions{URI: "spiffe://jeton.dev/ttp/custodian-2"})
	if err != nil {
		t.Fatal(err)
	}
	cert2, key2, err := second.Write(t.TempDir(), "custodian-2")
	if err != nil {
		t.Fatal(err)
	}
	return realEnvs{
		tz:         tz,
		custodian:  environFor(addr, tlsFiles{b.ServerCA, b.CustodianCert, b.CustodianKey}),
		custodian2: environFor(addr, tlsFiles{b.ServerCA, cert2, key2}),
		reader:     environFor(addr, tlsFiles{b.ServerCA, b.TTPCert, b.TTPKey}),
		sponsor:    environFor(srv.PublicAddr().String(), tlsFiles{b.ServerCA, b.SponsorCert, b.SponsorKey}),
	}
}

func mustTokenize(t *testing.T, tz *tokenizer.Tokenizer, items ...tokenizer.Item) []string {
	t.Helper()
	res, err := tz.Tokenize(context.Background(), "demo", items, "")
	if err != nil {
		t.Fatal(err)
	}
	var out []string
	for _, r := range res {
		if r.Err != nil {
			t.Fatal(r.Err)
		}
		out = append(out, r.Token)
	}
	return out
}

// opens reports whether each token still reveals.
func opens(t *testing.T, tz *tokenizer.Tokenizer, texts ...string) []bool {
	t.Helper()
	var toks []tokenizer.Token
	for _, s := range texts {
		tok, err := tokenizer.ParseToken(s)
		if err != nil {
			t.Fatal(err)
		}
		toks = append(toks, tok)
	}
	res, err := tz.Reveal(context.Background(), toks)
	if err != nil {
		t.Fatal(err)
	}
	var out []bool
	for _, r := range res {
		out = append(out, r.Err == nil)
	}
	return out
}

func TestAdminCommands(t *testing.T) {
	tz, custodian, reader := realServer(t)
	toks := mustTokenize(t, tz,
		tokenizer.Item{Class: "name", Value: "Cli Testperson", Subject: "guest-0001"},
		tokenizer.Item{Class: "email", Value: "cli.test@example.org", Subject: "guest-0001"},
		tokenizer.Item{Class: "name", Value: "Cli Other"},
		tokenizer.Item{Class: "name", Value: "Cli Third"},
	)
	tests := []struct {
		name     string
		environ  map[string]string
		stdin    string
		args     []string
		wantCode int
		wantOut  string   // exact stdout, unless wantIn is set
		wantIn   []string // substrings of stdout
		wantErr  string
	}{
		{"stats", custodian, "", []string{"stats"}, exitOK, "tenant demo generation 1 records 4 current\n" +
			"tenant demo class email records 1\ntenant demo class name records 3\n" +
			"budget spiffe://jeton.dev/sponsor/demo distinct 0 of 1000000 refusals 0\n" +
			"budget spiffe://jeton.dev/ttp/demo distinct 0 of 100 refusals 0\n", nil, ""},
		{"not a custodian", reader, "", []string{"stats"}, exitRPC, "", nil, "jeton: admin stats: client: PermissionDenied: identity may not administer"},
		{"erase tokens from args", custodian, "", []string{"erase-tokens", "--reason", "ticket-1", toks[2]}, exitOK, "1\n", nil, ""},
		{"erase tokens from stdin", custodian, toks[2] + "\n" + toks[3] + "\n\n", []string{"erase-tokens", "--reason", "ticket-1"}, exitOK, "1\n", nil, ""},
		{"erase tokens without reason", custodian, "", []string{"erase-tokens", toks[0]}, exitUsage, "", nil, "--reason is required"},
		{"erase subject", custodian, "", []string{"erase-subject", "--tenant", "demo", "--subject", "guest-0001", "--reason", "ticket-2"}, exitOK, "2\n", nil, ""},
		{"rotate", custodian, "", []string{"rotate", "--tenant", "demo"}, exitOK, "2\n", nil, ""},
		{"rotate another tenant", custodian, "", []string{"rotate", "--tenant", "other"}, exitRPC, "", nil, "PermissionDenied"},
		{"destroy without exact confirmation", custodian, "", []string{"destroy-generation", "--tenant", "demo", "--generation", "1", "--confirm", "destroy demo generation 2", "--reason", "r"},
			exitUsage, "", nil, `--confirm must read exactly "destroy demo generation 1"`},
		{"destroy the current generation", custodian, "", []string{"destroy-generation", "--tenant", "demo", "--generation", "2", "--confirm", "destroy demo generation 2", "--reason", "r"},
			exitRPC, "", nil, "InvalidArgument"},
		{"destroy", custodian, "", []string{"destroy-generation", "--tenant", "demo", "--generation", "1", "--confirm", "destroy demo generation 1", "--reason", "end of retention"},
			exitOK, "", []string{"requested destroy-generation of demo generation 1; request ", "needs 2 custodians in all (1 so far)", "jeton admin approve --id "}, ""},
		{"rewrap", custodian, "", []string{"rewrap"}, exitOK, "", []string{"1/", "\n"}, ""},
		{"mint canary", custodian, "", []string{"mint-canary", "--tenant", "demo", "--class", "name"}, exitOK, "", []string{"tok_name_"}, ""},
		{"reinstate", custodian, "", []string{"reinstate", "--identity", "spiffe://jeton.dev/ttp/demo", "--reason", "ticket-3"}, exitOK, "reinstated spiffe://jeton.dev/ttp/demo\n", nil, ""},
		{"purge without exact confirmation", custodian, "", []string{"purge-tenant", "--tenant", "demo", "--confirm", "Demo", "--reason", "r"},
			exitUsage, "", nil, "--confirm must repeat the tenant name exactly"},
		{"purge", custodian, "", []string{"purge-tenant", "--tenant", "demo", "--confirm", "demo", "--reason", "ticket-4"},
			exitOK, "", []string{"requested purge-tenant of demo; request "}, ""},
		// Both are pending: nothing is destroyed or purged. The canary is
		// the only record left.
		{"stats with pending requests", custodian, "", []string{"stats"}, exitOK, "tenant demo generation 1 records 0\n" +
			"tenant demo generation 2 records 1 current\ntenant demo class name records 1\n" +
			"budget spiffe://jeton.dev/sponsor/demo distinct 0 of 1000000 refusals 0\n" +
			"budget spiffe://jeton.dev/ttp/demo distinct 0 of 100 refusals 0\n", nil, ""},
		{"approve without id", custodian, "", []string{"approve", "--reason", "r"}, exitUsage, "", nil, "--id is required"},
		{"unknown subcommand", custodian, "", []string{"erase-everything"}, exitUsage, "", nil, `unknown subcommand "erase-everything"`},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			if tt.name == "destroy" {
				time.Sleep(5 * time.Millisecond) // past twice KeyRefresh since the rotation
			}
			got := jeton(t, tt.environ, tt.stdin, append([]string{"admin"}, tt.args...)...)
			if got.code != tt.wantCode {
				t.Errorf("exit %d; want %d (stdout %q, stderr %q)", got.code, tt.wantCode, got.stdout, got.stderr)
			}
			if tt.wantIn == nil && got.stdout != tt.wantOut {
				t.Errorf("stdout %q; want %q", got.stdout, tt.wantOut)
			}
			for _, w := range tt.wantIn {
				if !strings.Contains(got.stdout, w) {
					t.Errorf("stdout %q lacks %q", got.stdout, w)
				}
			}
			if tt.wantErr != "" && !strings.Contains(got.stderr, tt.wantErr) {
				t.Errorf("stderr %q lacks %q", got.stderr, tt.wantErr)
			}
			checkNoValues(t, got.stdout+got.stderr, "Cli Testperson", "cli.test@example.org", "Cli Other", "Cli Third")
		})
	}
	if ok := opens(t, tz, toks...); ok[0] || ok[1] || ok[2] || ok[3] {
		t.Errorf("tokens open after erasure and purge: %v", ok)
	}
}

// requestID finds the request id in a requester's output.
func requestID(t *testing.T, stdout string) string {
	t.Helper()
	_, rest, ok := strings.Cut(stdout, "; request ")
	id, _, _ := strings.Cut(rest, " ")
	if !ok || len(id) != 16 {
		t.Fatalf("no request id in %q", stdout)
	}
	return id
}

// Dual control from the command line: one custodian requests, the other
// lists and approves; self-approval is refused, cancelled requests are
// gone, stats shows the destroy and sweep deletes its records.
func TestAdminDualControlCommands(t *testing.T) {
	s := startRealServer(t)
	mustTokenize(t, s.tz, tokenizer.Item{Class: "name", Value: "Dual Cli One"})
	if _, err := s.tz.RotateGeneration(context.Background(), "demo"); err != nil {
		t.Fatal(err)
	}
	time.Sleep(5 * time.Millisecond) // past twice KeyRefresh since the rotation
	run := func(environ map[string]string, args ...string) result {
		t.Helper()
		got := jeton(t, environ, "", append([]string{"admin"}, args...)...)
		checkNoValues(t, got.stdout+got.stderr, "Dual Cli One")
		return got
	}
	got := run(s.custodian, "destroy-generation", "--tenant", "demo", "--generation", "1", "--confirm", "destroy demo generation 1", "--reason", "TICKET-1")
	if got.code != exitOK {
		t.Fatalf("destroy-generation: exit %d, %q", got.code, got.stderr)
	}
	id := requestID(t, got.stdout)
	if got := run(s.custodian, "approve", "--id", id, "--reason", "mine"); got.code != exitRPC || !strings.Contains(got.stderr, "own request") {
		t.Errorf("self-approval: exit %d, stderr %q; want refused", got.code, got.stderr)
	}
	got = run(s.custodian2, "pending")
	if got.code != exitOK || !strings.Contains(got.stdout, "request "+id+" action destroy-generation tenant demo generation 1 requested-by spiffe://jeton.dev/ttp/custodian approvals 1/2 expires ") ||
		!strings.Contains(got.stdout, `reason "TICKET-1"`) {
		t.Fatalf("pending: exit %d, stdout %q", got.code, got.stdout)
	}
	got = run(s.custodian2, "approve", "--id", id, "--reason", "TICKET-1 checked")
	if want := "approved request " + id + " (2 of 2): done, destroy-generation of demo generation 1\n"; got.code != exitOK || got.stdout != want {
		t.Fatalf("approve: exit %d, stdout %q; want %q", got.code, got.stdout, want)
	}
	if got := run(s.custodian, "stats"); !regexp.MustCompile(`tenant demo generation 1 records \d+ destroyed \d{4}-\d\d-\d\dT`).MatchString(got.stdout) {
		t.Errorf("stats does not show generation 1 destroyed: %q", got.stdout)
	}
	if got := run(s.custodian, "sweep", "--tenant", "demo"); got.code != exitOK || !strings.HasPrefix(got.stdout, "scanned ") {
		t.Errorf("sweep: exit %d, stdout %q, stderr %q", got.code, got.stdout, got.stderr)
	}
	if got := run(s.custodian, "stats"); !strings.Contains(got.stdout, "tenant demo generation 1 records 0 destroyed ") {
		t.Errorf("stats after sweep: %q", got.stdout)
	}

	got = run(s.custodian, "purge-tenant", "--tenant", "demo", "--confirm", "demo", "--reason", "TICKET-2")
	purge := requestID(t, got.stdout)
	if got := run(s.custodian2, "cancel", "--id", purge, "--reason", "rejected"); got.code != exitOK || got.stdout != "cancelled request "+purge+"\n" {
		t.Errorf("cancel: exit %d, stdout %q, stderr %q", got.code, got.stdout, got.stderr)
	}
	if got := run(s.custodian2, "pending", "--json"); got.code != exitOK || strings.TrimSpace(got.stdout) != "[]" {
		t.Errorf("pending --json after cancel: %q", got.stdout)
	}
	if got := run(s.custodian2, "approve", "--id", purge, "--reason", "late"); got.code != exitRPC || !strings.Contains(got.stderr, "InvalidArgument") {
		t.Errorf("approving a cancelled request: exit %d, stderr %q", got.code, got.stderr)
	}
}

// Rewrap prints one DONE/TOTAL line per key, ending at TOTAL/TOTAL.
func TestAdminRewrapProgress(t *testing.T) {
	tz, custodian, _ := realServer(t)
	mustTokenize(t, tz, tokenizer.Item{Class: "name", Value: "Rewrap Cli"})
	got := jeton(t, custodian, "", "admin", "rewrap")
	lines := strings.Split(strings.TrimSuffix(got.stdout, "\n"), "\n")
	if got.code != exitOK || len(lines) < 2 {
		t.Fatalf("exit %d, stdout %q; want several progress lines", got.code, got.stdout)
	}
	for i, l := range lines {
		if want := fmt.Sprintf("%d/%d", i+1, len(lines)); l != want {
			t.Errorf("line %d = %q; want %q", i+1, l, want)
		}
	}
}

func TestAdminStatsJSON(t *testing.T) {
	tz, custodian, _ := realServer(t)
	mustTokenize(t, tz, tokenizer.Item{Class: "name", Value: "Json Cli"}, tokenizer.Item{Class: "name", Value: "Json Cli Two"})
	got := jeton(t, custodian, "", "admin", "stats", "--json")
	var st struct {
		Tenants []struct {
			Tenant         string
			RecordsByClass map[string]int64
			Generations    []struct {
				Generation uint32
				Records    int64
				Current    bool
			}
		}
		Budgets []struct {
			Identity      string
			Distinct      int64
			DistinctLimit int64
		}
	}
	if err := json.Unmarshal([]byte(got.stdout), &st); err != nil {
		t.Fatalf("stdout is not JSON (%v): %q", err, got.stdout)
	}
	if len(st.Tenants) != 1 || st.Tenants[0].Tenant != "demo" || len(st.Tenants[0].Generations) != 1 ||
		st.Tenants[0].Generations[0].Records != 2 || !st.Tenants[0].Generations[0].Current {
		t.Errorf("stats = %+v; want demo with 2 records in current generation 1", st)
	}
	if len(st.Tenants) == 1 && (len(st.Tenants[0].RecordsByClass) != 1 || st.Tenants[0].RecordsByClass["name"] != 2) {
		t.Errorf("records by class = %v; want name: 2", st.Tenants[0].RecordsByClass)
	}
	// The sponsor's budget of distinct deterministic values comes first.
	if len(st.Budgets) != 2 || st.Budgets[1].Identity != "spiffe://jeton.dev/ttp/demo" || st.Budgets[1].DistinctLimit != 100 {
		t.Errorf("budgets = %+v; want the sponsor's and the reader's, limit 100", st.Budgets)
	}
}
