package server_test

import (
	"bytes"
	"context"
	"encoding/base64"
	"fmt"
	"net/netip"
	"slices"
	"strings"
	"sync"
	"testing"
	"time"

	"google.golang.org/grpc/codes"

	jetonv1 "github.com/jeton-dev/jeton/proto/jeton/v1"
	"github.com/jeton-dev/jeton/server"
	"github.com/jeton-dev/jeton/server/approval"
	"github.com/jeton-dev/jeton/server/devpki"
	"github.com/jeton-dev/jeton/tokenizer"
	"github.com/jeton-dev/jeton/tokenizer/memstore"
)

// adminAs connects to Admin as the custodian id.
func (e *env) adminAs(t testing.TB, id string) jetonv1.AdminClient {
	t.Helper()
	cert, key := e.issue(t, e.bundle.TTPAuthority, devpki.LeafOptions{URI: id})
	return jetonv1.NewAdminClient(dial(t, e.srv.TrustedAddr().String(), e.bundle.ServerCA, cert, key))
}

const (
	custodianA     = "spiffe://jeton.dev/ttp/custodian"
	custodianB     = "spiffe://jeton.dev/ttp/custodian-2"
	custodianC     = "spiffe://jeton.dev/ttp/custodian-3" // acme only
	custodianOther = "spiffe://jeton.dev/ttp/custodian-other"
)

// dualEnv is a server with a settable clock and an approval book whose
// store the test can reach, and tenant demo with two generations, each
// with a token.
type dualEnv struct {
	*env
	clock      *testClock
	book       *memstore.Store
	gen1, gen2 string
}

func startDualEnv(t *testing.T, o envOpts) dualEnv {
	t.Helper()
	clock := &testClock{t: time.Now()}
	store := memstore.New(memstore.WithClock(clock.Now))
	book, err := approval.New(store, bytes.Repeat([]byte{0x17}, 32), approval.WithClock(clock.Now))
	if err != nil {
		t.Fatal(err)
	}
	o.now, o.approvals, o.keyRefresh = clock.Now, book, time.Millisecond
	e := startEnv(t, o)
	gen1 := e.tokenizeIn(t, "demo", tokenizer.Item{Class: "name", Value: "Dual Generation-One"})[0]
	if _, err := e.tok.RotateGeneration(context.Background(), "demo"); err != nil {
		t.Fatal(err)
	}
	time.Sleep(5 * time.Millisecond) // twice KeyRefresh: generation 1 may be destroyed
	gen2 := e.tokenizeIn(t, "demo", tokenizer.Item{Class: "name", Value: "Dual Generation-Two"})[0]
	return dualEnv{env: e, clock: clock, book: store, gen1: gen1, gen2: gen2}
}

func destroyDemo1(t *testing.T, c jetonv1.AdminClient) *jetonv1.DestroyGenerationResponse {
	t.Helper()
	res, err := c.DestroyGeneration(ctx(t), &jetonv1.DestroyGenerationRequest{Tenant: "demo", Generation: 1,
		Confirm: server.DestroyConfirmation("demo", 1), Reason: "end of retention, TICKET-7"})
	if err != nil {
		t.Fatalf("DestroyGeneration: %v", err)
	}
	return res
}

func approve(c jetonv1.AdminClient, t *testing.T, id string) (*jetonv1.ApprovePendingRequestResponse, error) {
	return c.ApprovePendingRequest(ctx(t), &jetonv1.ApprovePendingRequestRequest{Id: id, Reason: "checked, TICKET-7"})
}

// The done-when of dual control: a destroy requested by one custodian
// stays pending until a different custodian of the tenant approves it.
// The requester cannot approve it, nor can a custodian of other tenants;
// each step is audited.
func TestDestroyNeedsASecondCustodian(t *testing.T) {
	e := startDualEnv(t, envOpts{})
	a, b, other := e.adminAs(t, custodianA), e.adminAs(t, custodianB), e.adminAs(t, custodianOther)
	n := len(e.audit.records())

	res := destroyDemo1(t, a)
	pr := res.GetRequest()
	if res.GetDone() || pr.GetId() == "" || pr.GetApprovalsRequired() != 2 || pr.GetRequestedBy() != custodianA ||
		pr.GetAction() != jetonv1.PendingAction_PENDING_ACTION_DESTROY_GENERATION || pr.GetGeneration() != 1 ||
		!slices.Equal(pr.GetApprovedBy(), []string{custodianA}) {
		t.Fatalf("DestroyGeneration = %v; want a pending request of custodian A needing 2", res)
	}
	wantOpens(t, e.env, true, "generation 1 while the request is pending", e.gen1)

	// Asking again makes another request; it does not count as approval.
	e.clock.Advance(time.Second)
	destroyDemo1(t, a)
	wantOpens(t, e.env, true, "generation 1 after the same custodian asked twice", e.gen1)

	if _, err := approve(a, t, pr.GetId()); code(err) != codes.PermissionDenied || !strings.Contains(err.Error(), "own request") {
		t.Fatalf("self-approval: %v; want PermissionDenied naming it", err)
	}
	if _, err := approve(other, t, pr.GetId()); code(err) != codes.PermissionDenied {
		t.Fatalf("approval by a custodian of another tenant: %v; want PermissionDenied", err)
	}
	reader := jetonv1.NewAdminClient(e.ttpConn(t))
	if _, err := approve(reader, t, pr.GetId()); code(err) != codes.PermissionDenied {
		t.Fatalf("approval by a reader: %v; want PermissionDenied", err)
	}
	wantOpens(t, e.env, true, "generation 1 after refused approvals", e.gen1)

	// The other tenant's custodian does not even see it.
	if l, err := other.ListPendingRequests(ctx(t), &jetonv1.ListPendingRequestsRequest{}); err != nil || len(l.GetRequests()) != 0 {
		t.Fatalf("another tenant's custodian lists %v, %v", l, err)
	}
	l, err := b.ListPendingRequests(ctx(t), &jetonv1.ListPendingRequestsRequest{})
	if err != nil || len(l.GetRequests()) != 2 || l.GetRequests()[0].GetId() != pr.GetId() {
		t.Fatalf("ListPendingRequests = %v, %v; want both requests, oldest first", l, err)
	}

	done, err := approve(b, t, pr.GetId())
	if err != nil || !done.GetDone() || !slices.Equal(done.GetRequest().GetApprovedBy(), []string{custodianA, custodianB}) {
		t.Fatalf("approval by B = %v, %v; want it carried out", done, err)
	}
	wantOpens(t, e.env, false, "generation 1 after the approval", e.gen1)
	wantOpens(t, e.env, true, "generation 2", e.gen2)
	// Carried out, it is gone; approving it again finds nothing.
	if _, err := approve(b, t, pr.GetId()); code(err) != codes.InvalidArgument {
		t.Fatalf("approving a carried-out request: %v; want InvalidArgument", err)
	}

	var got []string
	for _, r := range e.audit.records()[n:] {
		got = append(got, r.Method+":"+r.Outcome)
		if r.Method == "DestroyGeneration" && r.Outcome == "ok" &&
			(!strings.Contains(r.Detail, "request="+pr.GetId()) || !strings.Contains(r.Detail, "approved_by="+custodianB) || r.Identity != custodianB) {
			t.Errorf("execution record %+v does not name the request and its approver", r)
		}
	}
	want := []string{
		"DestroyGeneration:requested", "DestroyGeneration:requested",
		"ApprovePendingRequest:failed", "ApprovePendingRequest:failed", "ApprovePendingRequest:failed",
		"ListPendingRequests:ok", "ListPendingRequests:ok",
		"ApprovePendingRequest:approved", "DestroyGeneration:intent", "DestroyGeneration:ok",
		"ApprovePendingRequest:failed",
	}
	if !slices.Equal(got, want) {
		t.Errorf("audit records\n%q\nwant\n%q", got, want)
	}
}

// A request lapses: approving it after its expiry is refused and changes
// nothing; it may still be cancelled.
func TestApprovalAfterExpiryIsRefused(t *testing.T) {
	e := startDualEnv(t, envOpts{})
	a, b := e.adminAs(t, custodianA), e.adminAs(t, custodianB)
	pr := destroyDemo1(t, a).GetRequest()
	if got := pr.GetExpires().AsTime().Sub(pr.GetCreated().AsTime()); got != server.DefaultApprovalExpiry {
		t.Fatalf("request lives %v; want %v", got, server.DefaultApprovalExpiry)
	}
	e.clock.Advance(server.DefaultApprovalExpiry)
	if _, err := approve(b, t, pr.GetId()); code(err) != codes.InvalidArgument || !strings.Contains(err.Error(), "expired") {
		t.Fatalf("approval after expiry: %v; want InvalidArgument saying expired", err)
	}
	wantOpens(t, e.env, true, "generation 1 after a late approval", e.gen1)
	if l, err := b.ListPendingRequests(ctx(t), &jetonv1.ListPendingRequestsRequest{}); err != nil || len(l.GetRequests()) != 0 {
		t.Fatalf("an expired request is listed: %v, %v", l, err)
	}
	if _, err := b.CancelPendingRequest(ctx(t), &jetonv1.CancelPendingRequestRequest{Id: pr.GetId(), Reason: "lapsed"}); err != nil {
		t.Fatalf("cancelling an expired request: %v", err)
	}
}

// A pending request can be withdrawn by its requester or rejected by
// another custodian of the tenant, with a reason, and is then gone.
func TestCancelPendingRequest(t *testing.T) {
	e := startDualEnv(t, envOpts{})
	a, b, other := e.adminAs(t, custodianA), e.adminAs(t, custodianB), e.adminAs(t, custodianOther)
	first, second := destroyDemo1(t, a).GetRequest(), destroyDemo1(t, a).GetRequest()
	if _, err := b.CancelPendingRequest(ctx(t), &jetonv1.CancelPendingRequestRequest{Id: first.GetId()}); code(err) != codes.InvalidArgument {
		t.Fatalf("cancel without a reason: %v; want InvalidArgument", err)
	}
	if _, err := other.CancelPendingRequest(ctx(t), &jetonv1.CancelPendingRequestRequest{Id: first.GetId(), Reason: "no"}); code(err) != codes.PermissionDenied {
		t.Fatalf("cancel by another tenant's custodian: %v; want PermissionDenied", err)
	}
	n := len(e.audit.records())
	if _, err := b.CancelPendingRequest(ctx(t), &jetonv1.CancelPendingRequestRequest{Id: first.GetId(), Reason: "rejected: wrong generation"}); err != nil {
		t.Fatal(err)
	}
	if _, err := a.CancelPendingRequest(ctx(t), &jetonv1.CancelPendingRequestRequest{Id: second.GetId(), Reason: "withdrawn"}); err != nil {
		t.Fatal(err)
	}
	if got := methodsSince(e.audit, n); !slices.Equal(got, []string{"CancelPendingRequest:cancelled", "CancelPendingRequest:cancelled"}) {
		t.Errorf("audit records %q", got)
	}
	for _, id := range []string{first.GetId(), second.GetId()} {
		if _, err := approve(b, t, id); code(err) != codes.InvalidArgument {
			t.Errorf("approving a cancelled request: %v; want InvalidArgument", err)
		}
	}
	wantOpens(t, e.env, true, "generation 1 after cancelled requests", e.gen1)
	if _, err := b.CancelPendingRequest(ctx(t), &jetonv1.CancelPendingRequestRequest{Id: "not-an-id", Reason: "x"}); code(err) != codes.InvalidArgument {
		t.Errorf("cancel of a malformed id: %v; want InvalidArgument", err)
	}
}

// Whoever writes to Redis cannot forge an approval or retarget a request:
// both fail their MAC, the approval is refused, an alert is raised, and
// nothing is destroyed.
func TestTamperedRequestIsRefused(t *testing.T) {
	enc := base64.RawURLEncoding
	for _, tc := range []struct {
		name   string
		tamper func(t *testing.T, e dualEnv, id string)
	}{
		{"sealed request edited", func(t *testing.T, e dualEnv, id string) {
			editRequest(t, e.book, id, func(raw []byte) { raw[len(raw)/2] ^= 1 })
		}},
		{"request replaced by another's", func(t *testing.T, e dualEnv, id string) {
			other, err := e.adminAs(t, custodianA).PurgeTenant(ctx(t), &jetonv1.PurgeTenantRequest{Tenant: "acme", Confirm: "acme", Reason: "TICKET-8"})
			if err != nil {
				t.Fatal(err)
			}
			v, err := e.book.Get(context.Background(), []string{"jeton:a:req:" + other.GetRequest().GetId()})
			if err != nil || v[0] == nil {
				t.Fatal(err)
			}
			if err := e.book.Put(context.Background(), []tokenizer.Entry{{Key: "jeton:a:req:" + id, Value: v[0]}}); err != nil {
				t.Fatal(err)
			}
		}},
		{"forged approval", func(t *testing.T, e dualEnv, id string) {
			forged := "2." + enc.EncodeToString(make([]byte, 12+512+16))
			if err := e.book.AddToSet(context.Background(), "jeton:a:req:"+id+":approvals", []string{forged}, time.Hour); err != nil {
				t.Fatal(err)
			}
		}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			e := startDualEnv(t, envOpts{})
			a := e.adminAs(t, custodianA)
			id := destroyDemo1(t, a).GetRequest().GetId()
			tc.tamper(t, e, id)
			_, err := approve(e.adminAs(t, custodianB), t, id)
			if code(err) != codes.PermissionDenied || !strings.Contains(err.Error(), "integrity") {
				t.Fatalf("approving a tampered request: %v; want PermissionDenied naming its integrity", err)
			}
			wantOpens(t, e.env, true, "generation 1", e.gen1)
			wantOpens(t, e.env, true, "generation 2", e.gen2)
			logMu.Lock()
			alerted := strings.Contains(logBuf.String(), `"kind":"approval_tampered"`)
			logMu.Unlock()
			if !alerted {
				t.Error("no approval_tampered alert was raised")
			}
		})
	}
}

// editRequest changes the sealed bytes of request id's stored entry.
func editRequest(t *testing.T, store *memstore.Store, id string, f func(raw []byte)) {
	t.Helper()
	enc := base64.RawURLEncoding
	name := "jeton:a:req:" + id
	v, err := store.Get(context.Background(), []string{name})
	if err != nil || v[0] == nil {
		t.Fatalf("request %s not in the store: %v", id, err)
	}
	rest, ok := bytes.CutPrefix(v[0], []byte("2."))
	if !ok {
		t.Fatal("the stored request is not sealed")
	}
	raw, err := enc.DecodeString(string(rest))
	if err != nil {
		t.Fatal(err)
	}
	f(raw)
	if err := store.Put(context.Background(), []tokenizer.Entry{{Key: name, Value: []byte("2." + enc.EncodeToString(raw))}}); err != nil {
		t.Fatal(err)
	}
}

// M of N per tenant: with acme at 3, two approvals are not enough.
func TestThreeCustodians(t *testing.T) {
	e := startDualEnv(t, envOpts{policy: testPolicy + "dual_control:\n  tenants: {acme: 3}\n"})
	acme := e.tokenizeIn(t, "acme", tokenizer.Item{Class: "name", Value: "Three Custodians"})
	a := e.adminAs(t, custodianA)
	res, err := a.PurgeTenant(ctx(t), &jetonv1.PurgeTenantRequest{Tenant: "acme", Confirm: "acme", Reason: "TICKET-9"})
	if err != nil || res.GetDone() || res.GetRequest().GetApprovalsRequired() != 3 {
		t.Fatalf("PurgeTenant = %v, %v; want pending, 3 required", res, err)
	}
	id := res.GetRequest().GetId()
	if r, err := approve(e.adminAs(t, custodianB), t, id); err != nil || r.GetDone() {
		t.Fatalf("second of three = %v, %v; want still pending", r, err)
	}
	wantOpens(t, e.env, true, "acme after two of three", acme...)
	r, err := approve(e.adminAs(t, custodianC), t, id)
	if err != nil || !r.GetDone() || r.GetErased() != 1 {
		t.Fatalf("third of three = %v, %v; want the purge done, 1 erased", r, err)
	}
	wantOpens(t, e.env, false, "acme after three of three", acme...)
	// demo keeps the default of 2.
	if res := destroyDemo1(t, a); res.GetRequest().GetApprovalsRequired() != 2 {
		t.Errorf("demo requires %d approvals; want the default 2", res.GetRequest().GetApprovalsRequired())
	}
}

// An approver the policy no longer makes a custodian of the tenant does
// not count, even if it approved before the change.
func TestApprovalsOfFormerCustodiansDoNotCount(t *testing.T) {
	e := startDualEnv(t, envOpts{policy: testPolicy + "dual_control:\n  tenants: {acme: 3}\n"})
	acme := e.tokenizeIn(t, "acme", tokenizer.Item{Class: "name", Value: "Former Custodian"})
	id := func() string {
		res, err := e.adminAs(t, custodianA).PurgeTenant(ctx(t), &jetonv1.PurgeTenantRequest{Tenant: "acme", Confirm: "acme", Reason: "TICKET-10"})
		if err != nil {
			t.Fatal(err)
		}
		return res.GetRequest().GetId()
	}()
	if _, err := approve(e.adminAs(t, custodianC), t, id); err != nil {
		t.Fatal(err)
	}
	// custodian-3 loses acme.
	pol, err := server.ParsePolicy([]byte(strings.Replace(testPolicy, "tenants: [acme]\n    roles: [custodian]", "tenants: [demo]\n    roles: [custodian]", 1)+"dual_control:\n  tenants: {acme: 3}\n"), classNames(e.tok))
	if err != nil {
		t.Fatal(err)
	}
	e.srv.SetPolicy(pol)
	if r, err := approve(e.adminAs(t, custodianB), t, id); err != nil || r.GetDone() {
		t.Fatalf("approval with a former custodian's = %v, %v; want still pending", r, err)
	}
	wantOpens(t, e.env, true, "acme", acme...)
}

// A requester the policy no longer makes a custodian of the tenant does
// not count as an approval of its own request either.
func TestRequesterWhoIsNoLongerACustodianDoesNotCount(t *testing.T) {
	e := startDualEnv(t, envOpts{})
	acme := e.tokenizeIn(t, "acme", tokenizer.Item{Class: "name", Value: "Former Requester"})
	res, err := e.adminAs(t, custodianC).PurgeTenant(ctx(t), &jetonv1.PurgeTenantRequest{Tenant: "acme", Confirm: "acme", Reason: "TICKET-11"})
	if err != nil || res.GetDone() {
		t.Fatalf("PurgeTenant = %v, %v; want pending", res, err)
	}
	id := res.GetRequest().GetId()
	// custodian-3, the requester, loses acme.
	pol, err := server.ParsePolicy([]byte(strings.Replace(testPolicy, "tenants: [acme]\n    roles: [custodian]", "tenants: [demo]\n    roles: [custodian]", 1)), classNames(e.tok))
	if err != nil {
		t.Fatal(err)
	}
	e.srv.SetPolicy(pol)
	if r, err := approve(e.adminAs(t, custodianA), t, id); err != nil || r.GetDone() {
		t.Fatalf("one approval with a former custodian's request = %v, %v; want still pending", r, err)
	}
	wantOpens(t, e.env, true, "acme", acme...)
	if r, err := approve(e.adminAs(t, custodianB), t, id); err != nil || !r.GetDone() {
		t.Fatalf("two current custodians = %v, %v; want the purge done", r, err)
	}
	wantOpens(t, e.env, false, "acme after the purge", acme...)
}

func classNames(tok *tokenizer.Tokenizer) []string {
	var out []string
	for _, c := range tok.Classes() {
		out = append(out, c.Name)
	}
	return out
}

// Outside dev mode a policy may not let one custodian act alone; dev mode
// may, and then a destroy takes effect at once.
func TestSingleCustodianOnlyInDevMode(t *testing.T) {
	e := startDualEnv(t, envOpts{})
	for _, policy := range []string{
		testPolicy + "dual_control:\n  approvals: 1\n",
		testPolicy + "dual_control:\n  tenants: {demo: 1}\n",
	} {
		pol, err := server.ParsePolicy([]byte(policy), classNames(e.tok))
		if err != nil {
			t.Fatal(err)
		}
		tlsc, err := server.LoadTLS(server.TLSFiles{Cert: e.bundle.ServerCert, Key: e.bundle.ServerKey, ClientCA: e.bundle.TTPCA})
		if err != nil {
			t.Fatal(err)
		}
		srv, err := server.New(server.Config{Tokenizer: e.tok, Policy: pol, Audit: &memAudit{},
			Public:  server.Listener{Addr: "127.0.0.1:0", TLS: tlsc},
			Trusted: server.Listener{Addr: "127.0.0.1:0", TLS: tlsc, Allowed: []netip.Prefix{netip.MustParsePrefix("127.0.0.0/8")}}})
		if err == nil {
			srv.Stop(context.Background())
		}
		if err == nil || !strings.Contains(err.Error(), "dual_control") {
			t.Errorf("server.New with %q: %v; want a refusal naming dual_control", policy[len(testPolicy):], err)
		}
	}
	for _, bad := range []string{"approvals: 0\n  tenants: {demo: 0}", "approvals: 17", "expiry: 1s", "tenants: {Demo: 2}"} {
		if _, err := server.ParsePolicy([]byte(testPolicy+"dual_control:\n  "+bad+"\n"), classNames(e.tok)); err == nil {
			t.Errorf("ParsePolicy accepted dual_control %q", bad)
		}
	}

	dev := startDualEnv(t, envOpts{policy: testPolicy + "dual_control:\n  approvals: 1\n", minApprovals: 1})
	res := destroyDemo1(t, dev.adminAs(t, custodianA))
	if !res.GetDone() {
		t.Fatalf("dev mode, one custodian: %v; want done at once", res)
	}
	wantOpens(t, dev.env, false, "generation 1 in dev mode", dev.gen1)
}

// downKeys is a key manager whose unwraps can be made to fail, as when
// Vault is sealed or unreachable.
type downKeys struct {
	tokenizer.KeyManager
	mu   sync.Mutex
	down bool
}

func (k *downKeys) set(down bool) { k.mu.Lock(); k.down = down; k.mu.Unlock() }

func (k *downKeys) Unwrap(ctx context.Context, kek string, wrapped, ad []byte) ([]byte, error) {
	k.mu.Lock()
	down := k.down
	k.mu.Unlock()
	if down {
		return nil, fmt.Errorf("%w: vault sealed (test)", tokenizer.ErrUnavailable)
	}
	return k.KeyManager.Unwrap(ctx, kek, wrapped, ad)
}

// A warm replica whose DEK unwrap fails answers Detokenize UNAVAILABLE,
// never NOT_FOUND: the token exists, its key is just out of reach.
func TestWarmReplicaUnwrapFailureIsUnavailableOverGRPC(t *testing.T) {
	var dk *downKeys
	store := memstore.New()
	e := startEnv(t, envOpts{store: store, keys: func(k tokenizer.KeyManager) tokenizer.KeyManager {
		dk = &downKeys{KeyManager: k}
		return dk
	}})
	// Another replica on the same store and Vault makes generation 1's
	// record, then rotates.
	other, err := tokenizer.New(tokenizer.Config{Classes: tokenizer.DefaultClasses(), Keys: dk.KeyManager, Store: store})
	if err != nil {
		t.Fatal(err)
	}
	res, err := other.Tokenize(context.Background(), "demo", []tokenizer.Item{{Class: "name", Value: useValue("Warm Replica One")}}, "")
	if err != nil || res[0].Err != nil {
		t.Fatal(err)
	}
	gen1 := res[0].Token
	if _, err := other.RotateGeneration(context.Background(), "demo"); err != nil {
		t.Fatal(err)
	}
	// This server is warm: demo's root key and generation 2 are loaded.
	gen2 := tokenize(t, e.sponsorConn(t), &jetonv1.TokenizeItem{FieldClass: "name", Value: useValue("Warm Replica Two")})[0].GetToken()
	det := jetonv1.NewDetokenizerClient(e.ttpConn(t))

	dk.set(true)
	_, err = det.Detokenize(ctx(t), &jetonv1.DetokenizeRequest{Tokens: []string{gen1}, Purpose: "support"})
	if code(err) != codes.Unavailable {
		t.Fatalf("Detokenize of a generation whose key cannot be unwrapped: %v; want UNAVAILABLE", err)
	}
	out, err := det.Detokenize(ctx(t), &jetonv1.DetokenizeRequest{Tokens: []string{gen2}, Purpose: "support"})
	if err != nil || out.GetResults()[0].GetError() != nil {
		t.Fatalf("Detokenize of the loaded generation with unwraps failing: %v, %v", out, err)
	}
	dk.set(false)
	out, err = det.Detokenize(ctx(t), &jetonv1.DetokenizeRequest{Tokens: []string{gen1}, Purpose: "support"})
	if err != nil || out.GetResults()[0].GetError() != nil {
		t.Fatalf("Detokenize after recovery: %v, %v", out, err)
	}
}
