package server_test

import (
	"bytes"
	"context"
	"crypto/tls"
	"crypto/x509"
	"errors"
	"fmt"
	"log/slog"
	"net/netip"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	"google.golang.org/grpc"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/credentials"
	"google.golang.org/grpc/status"

	jetonv1 "github.com/jeton-dev/jeton/proto/jeton/v1"
	"github.com/jeton-dev/jeton/server"
	"github.com/jeton-dev/jeton/server/approval"
	"github.com/jeton-dev/jeton/server/audit"
	"github.com/jeton-dev/jeton/server/devpki"
	"github.com/jeton-dev/jeton/tokenizer"
	"github.com/jeton-dev/jeton/tokenizer/localkeys"
	"github.com/jeton-dev/jeton/tokenizer/memstore"
)

// logs collects every log line the servers under test write, so TestMain
// can check that no test value ever reached a log.
var (
	logMu  sync.Mutex
	logBuf bytes.Buffer
	// usedValues are the personal-looking values the tests send.
	usedValues = map[string]bool{}
)

type lockedWriter struct{}

func (lockedWriter) Write(p []byte) (int, error) {
	logMu.Lock()
	defer logMu.Unlock()
	return logBuf.Write(p)
}

func useValue(v string) string {
	logMu.Lock()
	usedValues[v] = true
	logMu.Unlock()
	return v
}

func TestMain(m *testing.M) {
	code := m.Run()
	logMu.Lock()
	logs := logBuf.String()
	for v := range usedValues {
		if strings.Contains(logs, v) {
			// Do not print the value itself: say which test data leaked by length.
			fmt.Fprintf(os.Stderr, "a test value (%d bytes) appears in the server logs\n", len(v))
			code = 1
		}
	}
	// The check only means something if the servers' logs were captured:
	// every server under test logs at DEBUG, so any call it served wrote
	// a line here. Values put in straight through the tokenizer
	// (tokenizeIn) count as sent, so a run of one test that only reveals
	// them must still see the reveal's lines; a run that sent no value
	// (-run selecting policy tests only) has nothing to check.
	if len(usedValues) > 0 && !strings.Contains(logs, `"msg":`) {
		fmt.Fprintln(os.Stderr, "values were sent but the log capture saw no server line: the leak check checked nothing")
		code = 1
	}
	logMu.Unlock()
	os.Exit(code)
}

// memAudit is an in-memory Auditor whose sink can be made to fail.
type memAudit struct {
	mu   sync.Mutex
	recs []audit.Record
	fail bool
}

func (a *memAudit) Append(_ context.Context, r audit.Record) error {
	a.mu.Lock()
	defer a.mu.Unlock()
	if a.fail {
		return errors.New("sink down")
	}
	a.recs = append(a.recs, r)
	return nil
}

func (a *memAudit) TokenHash(tok string) string { return fmt.Sprintf("h%x", len(tok)) }

func (a *memAudit) setFail(f bool) { a.mu.Lock(); a.fail = f; a.mu.Unlock() }

func (a *memAudit) records() []audit.Record {
	a.mu.Lock()
	defer a.mu.Unlock()
	return append([]audit.Record(nil), a.recs...)
}

const testPolicy = `
identities:
  - id: spiffe://jeton.dev/sponsor/demo
    tenants: [demo]
    roles: [sponsor-app]
  - id: spiffe://jeton.dev/sponsor/other
    tenants: [other]
    roles: [sponsor-app]
  - id: spiffe://jeton.dev/sponsor/limited
    tenants: [demo]
    roles: [sponsor-limited]
  - id: spiffe://jeton.dev/ttp/demo
    tenants: [demo]
    roles: [reader]
  - id: spiffe://jeton.dev/ttp/masked
    tenants: [demo]
    roles: [masked-reader]
  - id: spiffe://jeton.dev/ttp/custodian
    tenants: [demo, acme, acme-2]
    roles: [custodian]
  - id: spiffe://jeton.dev/ttp/custodian-2
    tenants: [demo, acme, acme-2]
    roles: [custodian]
  - id: spiffe://jeton.dev/ttp/custodian-3
    tenants: [acme]
    roles: [custodian]
  - id: spiffe://jeton.dev/ttp/custodian-other
    tenants: [other]
    roles: [custodian]
  - id: spiffe://jeton.dev/sponsor/rogue-on-ttp-ca
    tenants: [demo]
    roles: [sponsor-app]
  - id: spiffe://jeton.dev/ttp/email-only
    tenants: [demo]
    roles: [email-reader]
  - id: spiffe://jeton.dev/sponsor/ttp-issued
    tenants: [demo]
    roles: [sponsor-app]
    ca: ttp
roles:
  sponsor-app:
    tokenize: ["*"]
    budget: {distinct: 100000}
  sponsor-limited:
    tokenize: ["*"]
    budget: {max_batch: 20, rate: 1, burst: 20, distinct: 1000}
  reader:
    reveal: {"*": full}
    purposes: [support, vetting]
  masked-reader:
    reveal: {"*": masked}
    purposes: [support]
  email-reader:
    reveal: {email: full}
    purposes: [support]
  custodian:
    admin: true
purposes:
  - code: support
    description: answering a data subject's request
    classes: ["*"]
  - code: vetting
    description: background check
    classes: [name, birthdate]
    case_ref_required: true
  - code: unused
    description: configured but granted to nobody
    classes: ["*"]
`

type env struct {
	srv *server.Server
	// pubTLS and truTLS are the listeners' TLS material, to reload.
	pubTLS, truTLS *server.ReloadableTLS
	bundle         *devpki.Bundle
	audit          *memAudit
	dir            string
	tok            *tokenizer.Tokenizer
}

type envOpts struct {
	trustedAllowed []netip.Prefix
	// store is the tokenizer's store; a fresh memstore if nil.
	store tokenizer.Store
	// keyRefresh is the tokenizer's KeyRefresh; its default if zero.
	keyRefresh time.Duration
	// classes are the tokenizer's classes; the built-in ones (all random)
	// if nil.
	classes []tokenizer.Class
	// auditor is behind the server; an in-memory memAudit (env.audit) if
	// nil.
	auditor server.Auditor
	// policy replaces testPolicy when set.
	policy string
	// now is the server's clock; time.Now if nil.
	now func() time.Time
	// approvals and minApprovals are the server's dual-control settings.
	approvals    *approval.Book
	minApprovals int
	// keys wraps the tokenizer's key manager, when set.
	keys func(tokenizer.KeyManager) tokenizer.KeyManager
	// checks are the readiness checks, probed every checkInterval.
	checks        []server.Check
	checkInterval time.Duration
	// registry receives the server's metrics; a private one if nil.
	registry *prometheus.Registry
	// tune adjusts the config before New.
	tune func(*server.Config, *devpki.Bundle)
	// crls, when set, gives each listener an empty CRL of its client CA,
	// in dir/sponsor.crl and dir/ttp.crl, for a test to fill and reload.
	crls bool
}

func startEnv(t testing.TB, o envOpts) *env {
	t.Helper()
	dir := t.TempDir()
	b, err := devpki.Generate(dir)
	if err != nil {
		t.Fatal(err)
	}
	km, err := localkeys.New(true)
	if err != nil {
		t.Fatal(err)
	}
	store := o.store
	if store == nil {
		store = memstore.New()
	}
	classes := o.classes
	if classes == nil {
		classes = tokenizer.DefaultClasses()
	}
	var keys tokenizer.KeyManager = km
	if o.keys != nil {
		keys = o.keys(km)
	}
	tok, err := tokenizer.New(tokenizer.Config{Classes: classes, Keys: keys, Store: store, KeyRefresh: o.keyRefresh})
	if err != nil {
		t.Fatal(err)
	}
	var names []string
	for _, c := range tok.Classes() {
		names = append(names, c.Name)
	}
	policy := testPolicy
	if o.policy != "" {
		policy = o.policy
	}
	pol, err := server.ParsePolicy([]byte(policy), names)
	if err != nil {
		t.Fatal(err)
	}
	pubFiles := server.TLSFiles{Cert: b.ServerCert, Key: b.ServerKey, ClientCA: b.SponsorCA}
	truFiles := server.TLSFiles{Cert: b.ServerCert, Key: b.ServerKey, ClientCA: b.TTPCA}
	if o.crls {
		pubFiles.CRLs, truFiles.CRLs = []string{filepath.Join(dir, "sponsor.crl")}, []string{filepath.Join(dir, "ttp.crl")}
		if err := b.SponsorAuthority.WriteCRL(pubFiles.CRLs[0], 1); err != nil {
			t.Fatal(err)
		}
		if err := b.TTPAuthority.WriteCRL(truFiles.CRLs[0], 1); err != nil {
			t.Fatal(err)
		}
	}
	pub, err := server.LoadTLS(pubFiles)
	if err != nil {
		t.Fatal(err)
	}
	tru, err := server.LoadTLS(truFiles)
	if err != nil {
		t.Fatal(err)
	}
	allowed := o.trustedAllowed
	if allowed == nil {
		allowed = []netip.Prefix{netip.MustParsePrefix("127.0.0.0/8")}
	}
	a := &memAudit{}
	var auditor server.Auditor = a
	if o.auditor != nil {
		auditor, a = o.auditor, nil
	}
	cfg := server.Config{
		Tokenizer: tok, Policy: pol, Audit: auditor,
		Logger:  slog.New(slog.NewJSONHandler(lockedWriter{}, &slog.HandlerOptions{Level: slog.LevelDebug})),
		Public:  server.Listener{Addr: "127.0.0.1:0", TLS: pub},
		Trusted: server.Listener{Addr: "127.0.0.1:0", TLS: tru, Allowed: allowed},
		Now:     o.now, Approvals: o.approvals, MinApprovals: o.minApprovals,
		Checks: o.checks, CheckInterval: o.checkInterval,
	}
	if o.registry != nil {
		cfg.Registry = o.registry
	}
	if o.tune != nil {
		o.tune(&cfg, b)
	}
	srv, err := server.New(cfg)
	if err != nil {
		t.Fatal(err)
	}
	srv.Start()
	t.Cleanup(func() {
		ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
		defer cancel()
		srv.Stop(ctx)
	})
	return &env{srv: srv, bundle: b, audit: a, dir: dir, tok: tok, pubTLS: cfg.Public.TLS, truTLS: cfg.Trusted.TLS}
}

// dial connects to addr presenting the given client certificate files;
// empty cert means no client certificate.
func dial(t testing.TB, addr, caFile, cert, key string) *grpc.ClientConn {
	t.Helper()
	caPEM, err := os.ReadFile(caFile)
	if err != nil {
		t.Fatal(err)
	}
	pool := x509.NewCertPool()
	pool.AppendCertsFromPEM(caPEM)
	cfg := &tls.Config{RootCAs: pool, MinVersion: tls.VersionTLS13}
	if cert != "" {
		pair, err := tls.LoadX509KeyPair(cert, key)
		if err != nil {
			t.Fatal(err)
		}
		cfg.Certificates = []tls.Certificate{pair}
	}
	cc, err := grpc.NewClient(addr, grpc.WithTransportCredentials(credentials.NewTLS(cfg)))
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { cc.Close() })
	return cc
}

func (e *env) sponsorConn(t testing.TB) *grpc.ClientConn {
	return dial(t, e.srv.PublicAddr().String(), e.bundle.ServerCA, e.bundle.SponsorCert, e.bundle.SponsorKey)
}

func (e *env) ttpConn(t testing.TB) *grpc.ClientConn {
	return dial(t, e.srv.TrustedAddr().String(), e.bundle.ServerCA, e.bundle.TTPCert, e.bundle.TTPKey)
}

// issue writes a client certificate from ca into the env's directory.
func (e *env) issue(t testing.TB, ca *devpki.CA, o devpki.LeafOptions) (cert, key string) {
	t.Helper()
	leaf, err := ca.Issue(o)
	if err != nil {
		t.Fatal(err)
	}
	cert, key, err = leaf.Write(e.dir, fmt.Sprintf("extra-%d", time.Now().UnixNano()))
	if err != nil {
		t.Fatal(err)
	}
	return cert, key
}

func ctx(t testing.TB) context.Context {
	c, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	t.Cleanup(cancel)
	return c
}

func tokenize(t testing.TB, cc *grpc.ClientConn, items ...*jetonv1.TokenizeItem) []*jetonv1.TokenizeResult {
	t.Helper()
	for _, it := range items {
		useValue(it.Value)
	}
	res, err := jetonv1.NewTokenizerClient(cc).Tokenize(ctx(t), &jetonv1.TokenizeRequest{Items: items})
	if err != nil {
		t.Fatalf("Tokenize: %v", err)
	}
	if len(res.Results) != len(items) {
		t.Fatalf("Tokenize returned %d results for %d items", len(res.Results), len(items))
	}
	return res.Results
}

func code(err error) codes.Code { return status.Code(err) }

var sampleValues = map[string][]string{
	"email":     {"anne.test@example.org", "bob.test@example.net"},
	"phone":     {"+33 6 00 00 00 01", "+33600000002"},
	"name":      {"Anne Testperson", "Bob Example"},
	"passport":  {"XX0000001", "XX0000002"},
	"birthdate": {"1984-01-02", "1990-12-31"},
	"address":   {"1 rue de l'Exemple, 75000 Paris", "2 Example Street"},
	"text":      {"free text for tests", "another fake note"},
}

func TestRoundTripEveryClass(t *testing.T) {
	e := startEnv(t, envOpts{})
	var items []*jetonv1.TokenizeItem
	for class, vals := range sampleValues {
		for _, v := range vals {
			items = append(items, &jetonv1.TokenizeItem{FieldClass: class, Value: v})
		}
	}
	res := tokenize(t, e.sponsorConn(t), items...)
	var toks []string
	for i, r := range res {
		if r.GetError() != nil {
			t.Fatalf("item %d (%s): %v", i, items[i].FieldClass, r.GetError())
		}
		toks = append(toks, r.GetToken())
	}
	out, err := jetonv1.NewDetokenizerClient(e.ttpConn(t)).Detokenize(ctx(t), &jetonv1.DetokenizeRequest{Tokens: toks, Purpose: "support"})
	if err != nil {
		t.Fatal(err)
	}
	for i, r := range out.Results {
		if r.GetValue() != items[i].Value || r.Masked || r.FieldClass != items[i].FieldClass {
			t.Errorf("item %d (%s): round trip gave a different value or class (masked=%v)", i, items[i].FieldClass, r.Masked)
		}
	}
}

func TestRoundTripBatches(t *testing.T) {
	e := startEnv(t, envOpts{})
	sc, tc := e.sponsorConn(t), e.ttpConn(t)
	for _, n := range []int{1, 100, 10000} {
		t.Run(fmt.Sprint(n), func(t *testing.T) {
			items := make([]*jetonv1.TokenizeItem, n)
			for i := range items {
				items[i] = &jetonv1.TokenizeItem{FieldClass: "name", Value: fmt.Sprintf("Test Person %d", i)}
			}
			res := tokenize(t, sc, items...)
			toks := make([]string, n)
			seen := map[string]bool{}
			for i, r := range res {
				toks[i] = r.GetToken()
				if toks[i] == "" || seen[toks[i]] {
					t.Fatalf("item %d: missing or repeated token", i)
				}
				seen[toks[i]] = true
			}
			out, err := jetonv1.NewDetokenizerClient(tc).Detokenize(ctx(t), &jetonv1.DetokenizeRequest{Tokens: toks, Purpose: "support"})
			if err != nil {
				t.Fatal(err)
			}
			for i, r := range out.Results {
				if r.GetValue() != items[i].Value {
					t.Fatalf("item %d: round trip gave a different value", i)
				}
			}
		})
	}
}

func TestTokenKinds(t *testing.T) {
	// No built-in class is deterministic: configure one.
	e := startEnv(t, envOpts{classes: deterministic("", "email", "address")})
	sc := e.sponsorConn(t)
	res := tokenize(t, sc,
		&jetonv1.TokenizeItem{FieldClass: "name", Value: "Same Name"},
		&jetonv1.TokenizeItem{FieldClass: "name", Value: "Same Name"},
		&jetonv1.TokenizeItem{FieldClass: "email", Value: "Same.Person@Example.org "},
		&jetonv1.TokenizeItem{FieldClass: "email", Value: "same.person@example.org"},
		&jetonv1.TokenizeItem{FieldClass: "text", Value: "same.person@example.org"},
		&jetonv1.TokenizeItem{FieldClass: "email", Value: "other.person@example.org"},
		&jetonv1.TokenizeItem{FieldClass: "address", Value: "same.person@example.org"},
	)
	// Token texts name their class and tenant, so texts of two classes or
	// tenants always differ: compare the payloads, which carry the kind.
	p := make([][16]byte, len(res))
	for i, r := range res {
		tok, err := tokenizer.ParseToken(r.GetToken())
		if err != nil {
			t.Fatalf("item %d: no token (%v)", i, r.GetError())
		}
		p[i] = tok.Payload
	}
	if p[0] == p[1] {
		t.Error("random tokens of equal values are equal")
	}
	if res[2].GetToken() != res[3].GetToken() {
		t.Error("deterministic tokens of equal normalised values differ")
	}
	if p[3] == p[5] {
		t.Error("deterministic tokens of different values are equal")
	}
	if p[3] == p[6] {
		t.Error("one value in two deterministic classes shares a payload")
	}
	// The same value in a random class gets no payload derived from it.
	if p[4] == p[3] {
		t.Error("a random class's payload equals the deterministic one of the same value")
	}
	again := tokenize(t, sc, &jetonv1.TokenizeItem{FieldClass: "text", Value: "same.person@example.org"})
	if again[0].GetToken() == res[4].GetToken() {
		t.Error("a random class minted the same token twice for one value")
	}

	// Another tenant's deterministic token for the same value differs, in
	// its payload, not only in the tenant its text names.
	cert, key := e.issue(t, e.bundle.SponsorAuthority, devpki.LeafOptions{URI: "spiffe://jeton.dev/sponsor/other"})
	oc := dial(t, e.srv.PublicAddr().String(), e.bundle.ServerCA, cert, key)
	ores := tokenize(t, oc, &jetonv1.TokenizeItem{FieldClass: "email", Value: "same.person@example.org"})
	otok, err := tokenizer.ParseToken(ores[0].GetToken())
	if err != nil {
		t.Fatalf("other tenant: no token (%v)", ores[0].GetError())
	}
	if otok.Tenant != "other" || otok.Payload == p[3] {
		t.Error("deterministic tokens of one value in two tenants share a payload")
	}
}

func logSnapshot() string {
	logMu.Lock()
	defer logMu.Unlock()
	return logBuf.String()
}

// reissue returns a well-formed token of the same class and tenant as tok
// whose record does not exist.
func reissue(t testing.TB, tok string) string {
	t.Helper()
	p, err := tokenizer.ParseToken(tok)
	if err != nil {
		t.Fatal(err)
	}
	p.Payload[0] ^= 0xff
	return p.String()
}
