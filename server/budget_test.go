package server_test

import (
	"bufio"
	"bytes"
	"context"
	"crypto/hmac"
	"crypto/rand"
	"crypto/sha256"
	"encoding/hex"
	"encoding/json"
	"fmt"
	"log/slog"
	"net/netip"
	"reflect"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/redis/go-redis/v9"
	"google.golang.org/genproto/googleapis/rpc/errdetails"
	"google.golang.org/grpc"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/status"

	"github.com/jeton-dev/jeton/integration/testenv"
	jetonv1 "github.com/jeton-dev/jeton/proto/jeton/v1"
	"github.com/jeton-dev/jeton/server"
	"github.com/jeton-dev/jeton/server/audit"
	"github.com/jeton-dev/jeton/server/budget"
	"github.com/jeton-dev/jeton/server/devpki"
	"github.com/jeton-dev/jeton/tokenizer"
	"github.com/jeton-dev/jeton/tokenizer/localkeys"
	"github.com/jeton-dev/jeton/tokenizer/memstore"
	"github.com/jeton-dev/jeton/tokenizer/redisstore"
)

// budgetPolicy gives the TTP identity the budget under test; the custodian
// administers; "free" reveals with no budget at all.
const budgetPolicy = `
identities:
  - id: spiffe://jeton.dev/sponsor/demo
    tenants: [demo]
    roles: [sponsor-app]
  - id: spiffe://jeton.dev/ttp/demo
    tenants: [demo]
    roles: [reader]
  - id: spiffe://jeton.dev/ttp/free
    tenants: [demo]
    roles: [free-reader]
  - id: spiffe://jeton.dev/ttp/custodian
    tenants: [demo]
    roles: [custodian]
roles:
  sponsor-app:
    tokenize: ["*"]
    budget: {distinct: 100000}
  reader:
    reveal: {"*": full}
    purposes: [support]
    budget: BUDGET
  free-reader:
    reveal: {"*": full}
    purposes: [support]
  custodian:
    admin: true
purposes:
  - code: support
    description: answering a data subject's request
    classes: ["*"]
`

// keyedAudit is a memAudit whose token hash is keyed and distinct per
// token, as the real log's is: the budget counts records by it.
type keyedAudit struct{ *memAudit }

func (keyedAudit) TokenHash(tok string) string {
	m := hmac.New(sha256.New, []byte("test audit key"))
	m.Write([]byte(tok))
	return hex.EncodeToString(m.Sum(nil)[:16])
}

// countingStore counts record lookups, to show a refused call opens nothing.
type countingStore struct {
	tokenizer.Store
	gets atomic.Int64
}

func (c *countingStore) Get(ctx context.Context, keys []string) ([][]byte, error) {
	c.gets.Add(1)
	return c.Store.Get(ctx, keys)
}

// testClock is the servers' and limiters' shared, settable clock.
type testClock struct {
	mu sync.Mutex
	t  time.Time
}

func (c *testClock) Now() time.Time { c.mu.Lock(); defer c.mu.Unlock(); return c.t }

func (c *testClock) Advance(d time.Duration) { c.mu.Lock(); c.t = c.t.Add(d); c.mu.Unlock() }

// logCapture keeps one env's log lines, and copies them to the package's
// leak check.
type logCapture struct {
	mu  sync.Mutex
	buf bytes.Buffer
}

func (l *logCapture) Write(p []byte) (int, error) {
	lockedWriter{}.Write(p)
	l.mu.Lock()
	defer l.mu.Unlock()
	return l.buf.Write(p)
}

// alerts returns the "alert" events of a kind.
func (l *logCapture) alerts(t testing.TB, kind string) []map[string]any {
	t.Helper()
	l.mu.Lock()
	defer l.mu.Unlock()
	var out []map[string]any
	sc := bufio.NewScanner(bytes.NewReader(l.buf.Bytes()))
	sc.Buffer(nil, 1<<20)
	for sc.Scan() {
		var ev map[string]any
		if err := json.Unmarshal(sc.Bytes(), &ev); err != nil {
			t.Fatalf("a log line is not JSON: %v", err)
		}
		if ev["msg"] == "alert" && ev["kind"] == kind {
			out = append(out, ev)
		}
	}
	return out
}

// replica is one jetond: a server with its own registry, audit and budget
// client, over the tokenizer and budget store all replicas share.
type replica struct {
	srv   *server.Server
	reg   *prometheus.Registry
	audit keyedAudit
}

type guardEnv struct {
	bundle   *devpki.Bundle
	dir      string
	clock    *testClock
	store    *countingStore
	logs     *logCapture
	replicas []*replica
	redis    *testenv.Redis // nil with the memory limiter
	trips    *tripCounter   // set with guardOpts.redisStore
}

type guardOpts struct {
	budget string // the reader role's budget, YAML flow mapping
	policy string // the policy, with BUDGET for the reader's budget; budgetPolicy if empty
	// classes are the tokenizer's; tokenizer.DefaultClasses() if nil.
	classes []tokenizer.Class
	// realClock leaves the servers and limiters on the wall clock (and
	// Redis's), for clients that really wait.
	realClock bool
	replicas  int
	redis     bool // share a real Redis; else one memory limiter for all
	// redisStore keeps the records in the shared Redis too (it implies
	// redis), the limiters reading them as in production
	// (budget.Config.ReadsRecords), and counts what every client sends.
	redisStore bool
	// twoTrips, with redisStore, has the limiters not read records: a
	// reveal reserves, then reads, in two round trips.
	twoTrips  bool
	redisOpts []testenv.RedisOption
}

func startGuardEnv(t testing.TB, o guardOpts) *guardEnv {
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
	e := &guardEnv{
		bundle: b, dir: dir, logs: &logCapture{},
		clock: &testClock{t: time.Date(2026, 3, 1, 12, 0, 0, 0, time.UTC)},
		store: &countingStore{Store: memstore.New()},
	}
	classes := o.classes
	if classes == nil {
		classes = tokenizer.DefaultClasses()
	}
	if o.redisStore {
		e.redis = testenv.StartRedis(t, o.redisOpts...)
		e.trips = &tripCounter{}
		sc := e.redis.Client(t)
		sc.AddHook(e.trips)
		e.store = &countingStore{Store: redisstore.New(sc)}
	}
	tok, err := tokenizer.New(tokenizer.Config{Classes: classes, Keys: km, Store: e.store})
	if err != nil {
		t.Fatal(err)
	}
	var classNames []string
	for _, c := range tok.Classes() {
		classNames = append(classNames, c.Name)
	}
	polText := o.policy
	if polText == "" {
		polText = budgetPolicy
	}
	pol, err := server.ParsePolicy([]byte(strings.Replace(polText, "BUDGET", o.budget, 1)), classNames)
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
	now := e.clock.Now
	if o.realClock {
		now = nil
	}
	var shared *budget.Limiter
	if o.redis && !o.redisStore {
		e.redis = testenv.StartRedis(t, o.redisOpts...)
	} else if !o.redisStore {
		shared = budget.NewMemory(budget.Config{Now: now})
	}
	for range max(o.replicas, 1) {
		lim := shared
		if e.redis != nil {
			// Each replica its own client, as separate processes would have.
			c := redis.NewClient(&redis.Options{Addr: e.redis.Addr, MaxRetries: -1, DialTimeout: time.Second})
			t.Cleanup(func() { c.Close() })
			if e.trips != nil {
				c.AddHook(e.trips)
			}
			lim = budget.NewRedis(c, budget.Config{Now: now, ReadsRecords: o.redisStore && !o.twoTrips})
		}
		r := &replica{reg: prometheus.NewRegistry(), audit: keyedAudit{&memAudit{}}}
		r.srv, err = server.New(server.Config{
			Tokenizer: tok, Policy: pol, Audit: r.audit, Budgets: lim, Registry: r.reg, Now: now,
			Logger:  slog.New(slog.NewJSONHandler(e.logs, &slog.HandlerOptions{Level: slog.LevelDebug})),
			Public:  server.Listener{Addr: "127.0.0.1:0", TLS: pub},
			Trusted: server.Listener{Addr: "127.0.0.1:0", TLS: tru, Allowed: []netip.Prefix{netip.MustParsePrefix("127.0.0.0/8")}},
		})
		if err != nil {
			t.Fatal(err)
		}
		r.srv.Start()
		t.Cleanup(func() {
			ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
			defer cancel()
			r.srv.Stop(ctx)
		})
		e.replicas = append(e.replicas, r)
	}
	return e
}

func (e *guardEnv) conn(t testing.TB, i int, identity string) *grpc.ClientConn {
	t.Helper()
	r := e.replicas[i]
	switch identity {
	case devpki.SponsorID:
		return dial(t, r.srv.PublicAddr().String(), e.bundle.ServerCA, e.bundle.SponsorCert, e.bundle.SponsorKey)
	case devpki.TTPID:
		return dial(t, r.srv.TrustedAddr().String(), e.bundle.ServerCA, e.bundle.TTPCert, e.bundle.TTPKey)
	case devpki.CustodianID:
		return dial(t, r.srv.TrustedAddr().String(), e.bundle.ServerCA, e.bundle.CustodianCert, e.bundle.CustodianKey)
	}
	leaf, err := e.bundle.TTPAuthority.Issue(devpki.LeafOptions{URI: identity})
	if err != nil {
		t.Fatal(err)
	}
	cert, key, err := leaf.Write(e.dir, strings.ReplaceAll(strings.TrimPrefix(identity, "spiffe://"), "/", "-"))
	if err != nil {
		t.Fatal(err)
	}
	return dial(t, r.srv.TrustedAddr().String(), e.bundle.ServerCA, cert, key)
}

// counter sums a counter over the replicas' registries, for the series
// with the given label (none: the unlabelled counter).
func (e *guardEnv) counter(t testing.TB, name string, label ...string) float64 {
	t.Helper()
	var sum float64
	found := false
	for _, r := range e.replicas {
		mfs, err := r.reg.Gather()
		if err != nil {
			t.Fatal(err)
		}
		for _, mf := range mfs {
			if mf.GetName() != name {
				continue
			}
			for _, m := range mf.GetMetric() {
				match := len(label) == 0
				for _, lp := range m.GetLabel() {
					if len(label) == 2 && lp.GetName() == label[0] && lp.GetValue() == label[1] {
						match = true
					}
				}
				if match {
					sum += m.GetCounter().GetValue()
					found = true
				}
			}
		}
	}
	if !found {
		t.Fatalf("no series %s%v", name, label)
	}
	return sum
}

// fakeValues tokenizes n fake names and returns their tokens.
func (e *guardEnv) fakeTokens(t testing.TB, n int) []string {
	t.Helper()
	items := make([]*jetonv1.TokenizeItem, n)
	for i := range items {
		items[i] = &jetonv1.TokenizeItem{FieldClass: "name", Value: useValue("Budget Testperson " + strings.Repeat("x", i%7) + string(rune('a'+i%26)) + string(rune('a'+i/26)))}
	}
	res := tokenize(t, e.conn(t, 0, devpki.SponsorID), items...)
	out := make([]string, n)
	for i, r := range res {
		if out[i] = r.GetToken(); out[i] == "" {
			t.Fatalf("Tokenize item %d failed", i)
		}
	}
	return out
}

func detok(cc *grpc.ClientConn, toks []string) (*jetonv1.DetokenizeResponse, error) {
	c, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	return jetonv1.NewDetokenizerClient(cc).Detokenize(c, &jetonv1.DetokenizeRequest{Tokens: toks, Purpose: "support"})
}

func values(res *jetonv1.DetokenizeResponse) int {
	n := 0
	for _, r := range res.GetResults() {
		if r.GetValue() != "" {
			n++
		}
	}
	return n
}

// wantRefused checks a whole-call refusal with no value.
func wantRefused(t testing.TB, what string, res *jetonv1.DetokenizeResponse, err error, c codes.Code, msg string) {
	t.Helper()
	if res != nil {
		t.Fatalf("%s: a refused call returned %d results", what, len(res.GetResults()))
	}
	st, _ := status.FromError(err)
	if st.Code() != c || st.Message() != msg {
		t.Fatalf("%s: got %v %q, want %v %q", what, st.Code(), st.Message(), c, msg)
	}
}

// TestBulkExtractionAcrossReplicas: two replicas sharing one real Redis
// enforce one distinct budget against a loop of batch reveals alternating
// between them; the identity is suspended on both, reinstated by a
// custodian through Admin, and reveals again once its window allows.
func TestBulkExtractionAcrossReplicas(t *testing.T) {
	e := startGuardEnv(t, guardOpts{
		budget: "{max_batch: 10, distinct: 25, window: 1h, suspend_after: 2}", replicas: 2, redis: true,
	})
	toks := e.fakeTokens(t, 60)
	ttp := []*grpc.ClientConn{e.conn(t, 0, devpki.TTPID), e.conn(t, 1, devpki.TTPID)}

	// The extraction loop: batches of 10 new tokens, alternating replicas,
	// until cut off.
	revealed, call := 0, 0
	var lastErr error
	for ; call < 6; call++ {
		res, err := detok(ttp[call%2], toks[call*10:call*10+10])
		if err != nil {
			lastErr = err
			break
		}
		revealed += values(res)
	}
	if call != 2 || revealed != 20 {
		t.Fatalf("extraction revealed %d values in %d calls before the cut-off, want 20 in 2 (budget 25, batches of 10)", revealed, call)
	}
	if status.Code(lastErr) != codes.ResourceExhausted {
		t.Fatalf("cut-off call: got %v, want ResourceExhausted", lastErr)
	}
	if msg := status.Convert(lastErr).Message(); msg != "reveal budget of distinct records exhausted for this window" {
		t.Fatalf("cut-off call says %q, want the distinct budget named", msg)
	}
	// The second refusal, on the other replica, suspends, and says so.
	res, err := detok(ttp[1], toks[30:40])
	wantRefused(t, "second refusal", res, err, codes.PermissionDenied, "identity suspended; a custodian must reinstate it")
	for i, cc := range ttp {
		// Even records already read, which cost no distinct budget.
		res, err := detok(cc, toks[:1])
		wantRefused(t, "suspended identity on replica "+string(rune('A'+i)), res, err, codes.PermissionDenied, "identity suspended; a custodian must reinstate it")
	}
	if got := e.logs.alerts(t, server.AlertBudgetExceeded); len(got) != 2 || got[0]["identity"] != devpki.TTPID || got[0]["limit"] != "distinct" {
		t.Fatalf("budget alerts = %v, want 2 naming the identity and the distinct limit", got)
	}
	if got := e.logs.alerts(t, server.AlertIdentitySuspended); len(got) != 1 || got[0]["identity"] != devpki.TTPID {
		t.Fatalf("suspension alerts = %v, want one naming the identity", got)
	}
	if n := e.counter(t, "jeton_budget_refusals_total", "limit", "distinct"); n != 2 {
		t.Fatalf("jeton_budget_refusals_total{limit=distinct} = %v over both replicas, want 2", n)
	}
	if n := e.counter(t, "jeton_suspensions_total"); n != 1 {
		t.Fatalf("jeton_suspensions_total = %v, want 1", n)
	}
	if n := e.counter(t, "jeton_alerts_total", "kind", server.AlertBudgetExceeded); n != 2 {
		t.Fatalf("jeton_alerts_total{kind=budget_exceeded} = %v, want 2", n)
	}

	// Only a custodian reinstates, never the identity itself.
	admin := func(cc *grpc.ClientConn, id string) error {
		_, err := jetonv1.NewAdminClient(cc).ReinstateIdentity(ctx(t), &jetonv1.ReinstateIdentityRequest{Identity: id, Reason: "INC-1 reviewed"})
		return err
	}
	if err := admin(ttp[0], devpki.TTPID); status.Code(err) != codes.PermissionDenied {
		t.Fatalf("the suspended identity reinstating itself: got %v, want PermissionDenied", err)
	}
	cust := e.conn(t, 1, devpki.CustodianID)
	if err := admin(cust, devpki.CustodianID); status.Code(err) != codes.PermissionDenied {
		t.Fatalf("a custodian reinstating itself: got %v, want PermissionDenied", err)
	}
	if err := admin(cust, devpki.TTPID); err != nil {
		t.Fatalf("ReinstateIdentity: %v", err)
	}
	var reinstated bool
	for _, r := range e.replicas[1].audit.records() {
		reinstated = reinstated || r.Method == "ReinstateIdentity" && r.Identity == devpki.CustodianID &&
			r.Outcome == "ok" && r.Detail == "identity="+devpki.TTPID
	}
	if !reinstated {
		t.Fatal("no audit record of the reinstatement")
	}
	// Reinstated on both replicas: records already read within the window
	// are free; new ones still wait for the window.
	for i, cc := range ttp {
		res, err = detok(cc, toks[i*10:i*10+10])
		if err != nil || values(res) != 10 {
			t.Fatalf("re-reading after reinstatement: %v, %d values; want 10", err, values(res))
		}
	}
	res, err = detok(ttp[1], toks[40:50])
	wantRefused(t, "new records before the window slid", res, err, codes.ResourceExhausted, "reveal budget of distinct records exhausted for this window")
	e.clock.Advance(time.Hour + time.Second)
	res, err = detok(ttp[1], toks[40:50])
	if err != nil || values(res) != 10 {
		t.Fatalf("new records once the window slid: %v, %d values; want 10", err, values(res))
	}
}

// TestRetriedRefusalNotSuspended: a client that sends one over-budget
// reveal again and again, as a naive retry loop does, is refused every
// time, raises one alert, and is never suspended; a sweep, each call
// asking for new records, still is. Both over a real Redis.
func TestRetriedRefusalNotSuspended(t *testing.T) {
	e := startGuardEnv(t, guardOpts{budget: "{distinct: 5, window: 1h, suspend_after: 2}", redis: true})
	toks := e.fakeTokens(t, 20)
	cc := e.conn(t, 0, devpki.TTPID)
	if res, err := detok(cc, toks[:5]); err != nil || values(res) != 5 {
		t.Fatalf("within the budget: %v", err)
	}
	for i := range 10 {
		res, err := detok(cc, toks[5:10])
		wantRefused(t, fmt.Sprintf("retry %d of one over-budget call", i), res, err, codes.ResourceExhausted, "reveal budget of distinct records exhausted for this window")
	}
	if got := e.logs.alerts(t, server.AlertBudgetExceeded); len(got) != 1 {
		t.Fatalf("%d budget alerts for one call sent 10 times, want 1", len(got))
	}
	if n := e.counter(t, "jeton_budget_refusals_total", "limit", "distinct"); n != 10 {
		t.Fatalf("jeton_budget_refusals_total{limit=distinct} = %v, want every refusal counted (10)", n)
	}
	// The sweep's next call asks for records never refused: the second
	// counted refusal, which suspends.
	res, err := detok(cc, toks[10:15])
	wantRefused(t, "a sweep's next call", res, err, codes.PermissionDenied, "identity suspended; a custodian must reinstate it")
}

// TestSweepOfRandomTokens: 100,000 random well-formed tokens in batches of
// 1,000 reveal nothing; the sweep trips the distinct budget after 5,000
// lookups, and from then on every call is refused without a lookup.
func TestSweepOfRandomTokens(t *testing.T) {
	e := startGuardEnv(t, guardOpts{budget: "{distinct: 5000, window: 24h, suspend_after: 3}", redis: true})
	e.fakeTokens(t, 1) // the tenant exists, so lookups reach the store
	cc := e.conn(t, 0, devpki.TTPID)

	var payload [16]byte
	batch := make([]string, 1000)
	var refused, suspended int
	getsAtTrip := int64(-1)
	for call := range 100 {
		for i := range batch {
			rand.Read(payload[:])
			tok := tokenizer.Token{Class: "name", Tenant: "demo", Version: 1, Payload: payload}
			batch[i] = tok.String()
		}
		res, err := detok(cc, batch)
		switch status.Code(err) {
		case codes.OK:
			if refused > 0 {
				t.Fatalf("call %d admitted after the budget tripped", call)
			}
			if n := values(res); n != 0 {
				t.Fatalf("call %d revealed %d values from random tokens", call, n)
			}
			for _, r := range res.GetResults() {
				if r.GetError().GetCode() != int32(codes.NotFound) {
					t.Fatalf("call %d: a random token got %v, want NotFound", call, r.GetOutcome())
				}
			}
			continue
		case codes.ResourceExhausted:
			refused++
		case codes.PermissionDenied:
			suspended++
		default:
			t.Fatalf("call %d: %v", call, err)
		}
		if res != nil {
			t.Fatalf("call %d: a refused call returned results", call)
		}
		if getsAtTrip < 0 {
			if call != 5 {
				t.Fatalf("the budget tripped at call %d, want 5 (5,000 of 1,000 each)", call)
			}
			getsAtTrip = e.store.gets.Load()
		}
	}
	// The third refusal is the one that suspends, and says so.
	if refused != 2 || suspended != 93 {
		t.Fatalf("%d calls refused for budget and %d as suspended, want 2 and 93", refused, suspended)
	}
	if g := e.store.gets.Load(); g != getsAtTrip {
		t.Fatalf("refused calls did %d store lookups, want none", g-getsAtTrip)
	}
	if got := e.logs.alerts(t, server.AlertBudgetExceeded); len(got) != 3 || got[0]["identity"] != devpki.TTPID {
		t.Fatalf("budget alerts = %d, want 3 naming the identity", len(got))
	}
	if n := e.counter(t, "jeton_alerts_total", "kind", server.AlertBudgetExceeded); n != 3 {
		t.Fatalf("jeton_alerts_total{kind=budget_exceeded} = %v, want 3", n)
	}
	if n := e.counter(t, "jeton_suspensions_total"); n != 1 {
		t.Fatalf("jeton_suspensions_total = %v, want 1", n)
	}
}

// TestRateAndBatchLimits: max_batch refuses a call that is too large, and
// the token bucket refuses past its burst until time refills it (the
// clock is injected into the Lua script, so nothing sleeps).
func TestRateAndBatchLimits(t *testing.T) {
	e := startGuardEnv(t, guardOpts{budget: "{max_batch: 5, rate: 2, burst: 6}", redis: true})
	toks := e.fakeTokens(t, 8)
	cc := e.conn(t, 0, devpki.TTPID)

	res, err := detok(cc, toks[:6])
	wantRefused(t, "6 items under max_batch 5", res, err, codes.ResourceExhausted, "reveal budget: too many items in one call for this identity; at most 5")
	// The bound as a number, for a client to split its call by.
	var qv []int64
	for _, d := range status.Convert(err).Details() {
		if q, ok := d.(*errdetails.QuotaFailure); ok {
			for _, v := range q.GetViolations() {
				if v.GetQuotaId() == "max_batch" {
					qv = append(qv, v.GetQuotaValue())
				}
			}
		}
	}
	if len(qv) != 1 || qv[0] != 5 {
		t.Fatalf("the max_batch refusal's QuotaFailure quota values = %v, want [5]", qv)
	}
	if res, err = detok(cc, toks[:5]); err != nil || values(res) != 5 {
		t.Fatalf("5 items: %v, %d values", err, values(res))
	}
	res, err = detok(cc, toks[5:7])
	wantRefused(t, "2 items with 1 token left", res, err, codes.ResourceExhausted, "reveal rate limit reached; retry after 500ms")
	if d, ok := retryDelay(err); !ok || d != 500*time.Millisecond {
		t.Fatalf("the rate refusal's RetryInfo = %v, %v; want 500ms (one token at 2/s)", d, ok)
	}
	if res, err = detok(cc, toks[5:6]); err != nil || values(res) != 1 {
		t.Fatalf("the last token of the burst: %v", err)
	}
	e.clock.Advance(time.Second) // 2 items/s
	if res, err = detok(cc, toks[6:8]); err != nil || values(res) != 2 {
		t.Fatalf("after a second's refill: %v", err)
	}
	res, err = detok(cc, toks[:1])
	wantRefused(t, "an empty bucket", res, err, codes.ResourceExhausted, "reveal rate limit reached; retry after 500ms")
	for _, l := range []string{"max_batch", "rate"} {
		if n := e.counter(t, "jeton_budget_refusals_total", "limit", l); n == 0 {
			t.Errorf("jeton_budget_refusals_total{limit=%s} = 0", l)
		}
	}
	// Malformed tokens cost nothing, but the call's size still counts.
	e.clock.Advance(time.Hour)
	res, err = detok(cc, []string{"x", "y", "z", "w", "v", "u"})
	wantRefused(t, "6 malformed items", res, err, codes.ResourceExhausted, "reveal budget: too many items in one call for this identity; at most 5")
}

// TestBudgetStoreDownFailsClosed: with the budget's Redis killed, a reveal
// returns UNAVAILABLE and no value, for an identity without a budget too
// (its suspension cannot be checked); it recovers with Redis.
func TestBudgetStoreDownFailsClosed(t *testing.T) {
	e := startGuardEnv(t, guardOpts{budget: "{distinct: 100}", redis: true})
	toks := e.fakeTokens(t, 2)
	cc := e.conn(t, 0, devpki.TTPID)
	free := e.conn(t, 0, "spiffe://jeton.dev/ttp/free")
	if res, err := detok(cc, toks); err != nil || values(res) != 2 {
		t.Fatalf("before: %v", err)
	}
	e.redis.Kill()
	for name, c := range map[string]*grpc.ClientConn{"budgeted": cc, "unbudgeted": free} {
		res, err := detok(c, toks)
		wantRefused(t, name+" identity with Redis down", res, err, codes.Unavailable, "a backend is unavailable; retry later")
	}
	e.redis.Start()
	if res, err := detok(free, toks); err != nil || values(res) != 2 {
		t.Fatalf("after Redis came back: %v", err)
	}
}

// TestCanaryReveal: a custodian mints canaries that look like any token of
// their class; revealing one raises an alert naming the identity (log event
// and metrics) and, when so minted, suspends the identity. The canary's
// value is returned like any other, so the caller is not tipped off.
func TestCanaryReveal(t *testing.T) {
	e := startGuardEnv(t, guardOpts{budget: "{distinct: 100}"})
	real := e.fakeTokens(t, 1)[0]
	cust := jetonv1.NewAdminClient(e.conn(t, 0, devpki.CustodianID))
	ttp := e.conn(t, 0, devpki.TTPID)

	if _, err := jetonv1.NewAdminClient(ttp).MintCanary(ctx(t), &jetonv1.MintCanaryRequest{Tenant: "demo", FieldClass: "email"}); status.Code(err) != codes.PermissionDenied {
		t.Fatalf("MintCanary by a non-custodian: got %v, want PermissionDenied", err)
	}
	mint := func(class string, suspend bool) string {
		t.Helper()
		r, err := cust.MintCanary(ctx(t), &jetonv1.MintCanaryRequest{Tenant: "demo", FieldClass: class, Suspend: suspend})
		if err != nil {
			t.Fatalf("MintCanary: %v", err)
		}
		p, err := tokenizer.ParseToken(r.GetToken())
		if err != nil || p.Class != class || p.Tenant != "demo" {
			t.Fatalf("the canary token does not look like a %s token of demo", class)
		}
		return r.GetToken()
	}
	quiet := mint("email", false)
	loud := mint("name", true)
	minted := 0
	for _, r := range e.replicas[0].audit.records() {
		if r.Method == "MintCanary" && r.Identity == devpki.CustodianID && len(r.Items) == 1 && r.Items[0].TokenHash != "" {
			minted++
		}
	}
	if minted != 2 {
		t.Fatalf("%d MintCanary audit records with the token hash, want 2", minted)
	}

	if n := e.counter(t, "jeton_canary_reveals_total"); n != 0 {
		t.Fatalf("jeton_canary_reveals_total = %v before any reveal", n)
	}
	res, err := detok(ttp, []string{real, quiet})
	if err != nil || values(res) != 2 {
		t.Fatalf("revealing a canary among real tokens: %v, %d values; want both answered", err, values(res))
	}
	if v := useValue(res.GetResults()[1].GetValue()); !strings.HasSuffix(v, "@example.invalid") {
		t.Fatal("the email canary's value is not the documented fake")
	}
	ev := e.logs.alerts(t, server.AlertCanaryRevealed)
	if len(ev) != 1 || ev[0]["identity"] != devpki.TTPID || ev[0]["class"] != "email" || ev[0]["level"] != "ERROR" {
		t.Fatalf("canary alerts = %v, want one ERROR event naming the identity", ev)
	}
	if n := e.counter(t, "jeton_canary_reveals_total"); n != 1 {
		t.Fatalf("jeton_canary_reveals_total = %v, want 1", n)
	}
	if n := e.counter(t, "jeton_alerts_total", "kind", server.AlertCanaryRevealed); n != 1 {
		t.Fatalf("jeton_alerts_total{kind=canary_revealed} = %v, want 1", n)
	}
	var flagged bool
	for _, r := range e.replicas[0].audit.records() {
		flagged = flagged || r.Method == "Detokenize" && r.Detail == server.AlertCanaryRevealed && r.Items[1].Outcome == audit.OutcomeRevealed
	}
	if !flagged {
		t.Fatal("the reveal's audit record does not mark the canary")
	}
	// Not a suspending canary: the identity still reveals.
	if _, err := detok(ttp, []string{real}); err != nil {
		t.Fatalf("after a non-suspending canary: %v", err)
	}

	// A suspending canary, through Mask: answered, then suspended.
	mres, err := jetonv1.NewDetokenizerClient(ttp).Mask(ctx(t), &jetonv1.MaskRequest{Tokens: []string{loud}, Purpose: "support"})
	if err != nil || !mres.GetResults()[0].GetMasked() || mres.GetResults()[0].GetValue() == "" {
		t.Fatalf("masking the suspending canary: %v; want a masked value", err)
	}
	if n := e.counter(t, "jeton_canary_reveals_total"); n != 2 {
		t.Fatalf("jeton_canary_reveals_total = %v, want 2", n)
	}
	if n := e.counter(t, "jeton_suspensions_total"); n != 1 {
		t.Fatalf("jeton_suspensions_total = %v, want 1", n)
	}
	res, err = detok(ttp, []string{real})
	wantRefused(t, "after the suspending canary", res, err, codes.PermissionDenied, "identity suspended; a custodian must reinstate it")
	if ev := e.logs.alerts(t, server.AlertIdentitySuspended); len(ev) != 1 || ev[0]["identity"] != devpki.TTPID || ev[0]["reason"] != "canary" {
		t.Fatalf("suspension alerts = %v", ev)
	}
	// The log never carries a canary token.
	e.logs.mu.Lock()
	logs := e.logs.buf.String()
	e.logs.mu.Unlock()
	if strings.Contains(logs, quiet) || strings.Contains(logs, loud) {
		t.Fatal("a canary token appears in the logs")
	}
}

// TestPolicyBudgets: budget settings are validated with the field named,
// and an identity's budget is never looser than any of its roles', bound
// by bound: the example of the report, 1,000 per 24h and 10 per minute,
// stays both and never becomes 1,000 per minute.
func TestPolicyBudgets(t *testing.T) {
	classes := []string{"name"}
	for _, tt := range []struct{ budget, field string }{
		{"{rate: 5}", "roles.reader.budget: burst"},
		{"{max_batch: -1}", "roles.reader.budget: max_batch"},
		{"{distinct: 10, typo: 1}", "typo"},
	} {
		_, err := server.ParsePolicy([]byte(strings.Replace(budgetPolicy, "BUDGET", tt.budget, 1)), classes)
		if err == nil || !strings.Contains(err.Error(), tt.field) {
			t.Errorf("budget %s: got %v, want an error naming %s", tt.budget, err, tt.field)
		}
	}
	merged := func(t *testing.T, reader, other string) budget.Limits {
		t.Helper()
		pol := strings.Replace(budgetPolicy, "roles: [reader]", "roles: [reader, free-reader, other]", 1)
		pol = strings.Replace(pol, "  custodian:\n", "  other:\n    budget: "+other+"\n  custodian:\n", 1)
		p, err := server.ParsePolicy([]byte(strings.Replace(pol, "BUDGET", reader, 1)), classes)
		if err != nil {
			t.Fatal(err)
		}
		pr, _ := p.Principal(devpki.TTPID)
		return pr.Budget
	}
	t.Run("the example of the report", func(t *testing.T) {
		got := merged(t, "{distinct: 1000, window: 24h}", "{distinct: 10, window: 1m}")
		want := budget.Limits{Distinct: 1000, Window: 24 * time.Hour, Also: []budget.Bound{{Distinct: 10, Window: time.Minute}}}
		if !reflect.DeepEqual(got, want) {
			t.Fatalf("merged budget = %+v, want %+v: both bounds, never 1,000 per minute", got, want)
		}
	})
	t.Run("the tightest of each bound", func(t *testing.T) {
		got := merged(t, "{max_batch: 20, rate: 5, burst: 60, distinct: 500, window: 24h, suspend_after: 3}",
			"{max_batch: 50, rate: 50, burst: 100, distinct: 10, window: 1h, suspend_after: 1}")
		want := budget.Limits{MaxBatch: 20, Rate: 5, Burst: 60, Distinct: 500, Window: 24 * time.Hour,
			Also: []budget.Bound{{Distinct: 10, Window: time.Hour}}, SuspendAfter: 1}
		if !reflect.DeepEqual(got, want) {
			t.Fatalf("merged budget = %+v, want %+v", got, want)
		}
	})
	pol, err := server.ParsePolicy([]byte(strings.Replace(budgetPolicy, "BUDGET", "{distinct: 5}", 1)), classes)
	if err != nil {
		t.Fatal(err)
	}
	if f, _ := pol.Principal("spiffe://jeton.dev/ttp/free"); !f.Budget.IsZero() {
		t.Fatalf("an identity without a budget got %+v", f.Budget)
	}
}

// TestMergedBudgetEnforced: an identity whose roles allow 1,000 records a
// day and 10 a minute is refused the 11th record within a minute.
func TestMergedBudgetEnforced(t *testing.T) {
	pol := strings.Replace(budgetPolicy, "roles: [reader]", "roles: [reader, slow]", 1)
	pol = strings.Replace(pol, "  custodian:\n", "  slow:\n    budget: {distinct: 10, window: 1m}\n  custodian:\n", 1)
	e := startGuardEnv(t, guardOpts{budget: "{distinct: 1000, window: 24h}", policy: pol})
	toks := e.fakeTokens(t, 11)
	cc := e.conn(t, 0, devpki.TTPID)
	if res, err := detok(cc, toks[:10]); err != nil || values(res) != 10 {
		t.Fatalf("10 records in a minute: %v", err)
	}
	res, err := detok(cc, toks[10:])
	wantRefused(t, "an 11th record within the minute", res, err, codes.ResourceExhausted, "reveal budget of distinct records exhausted for this window")
	e.clock.Advance(time.Minute)
	if res, err := detok(cc, toks[10:]); err != nil || values(res) != 1 {
		t.Fatalf("the 11th record a minute later: %v", err)
	}
}

// retryDelay returns the RetryInfo delay of a status error.
func retryDelay(err error) (time.Duration, bool) {
	for _, d := range status.Convert(err).Details() {
		if ri, ok := d.(*errdetails.RetryInfo); ok {
			return ri.GetRetryDelay().AsDuration(), true
		}
	}
	return 0, false
}
