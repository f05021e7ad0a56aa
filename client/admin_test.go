package client_test

import (
	"context"
	"errors"
	"maps"
	"slices"
	"sync"
	"testing"
	"time"

	"google.golang.org/grpc"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/status"

	"github.com/jeton-dev/jeton/client"
	jetonv1 "github.com/jeton-dev/jeton/proto/jeton/v1"
	"github.com/jeton-dev/jeton/server"
)

// adminStub answers Admin calls: EraseTokens erases every token it is
// sent, the methods named in fail fail UNAVAILABLE, and it counts calls.
type adminStub struct {
	jetonv1.UnimplementedAdminServer
	fail map[string]bool

	mu    sync.Mutex
	calls map[string]int
	sent  [][]string
}

func (a *adminStub) enter(method string) error {
	a.mu.Lock()
	defer a.mu.Unlock()
	a.calls[method]++
	if a.fail[method] {
		return status.Error(codes.Unavailable, "audit sink down")
	}
	return nil
}

func (a *adminStub) count(method string) int {
	a.mu.Lock()
	defer a.mu.Unlock()
	return a.calls[method]
}

func (a *adminStub) EraseTokens(_ context.Context, req *jetonv1.EraseTokensRequest) (*jetonv1.EraseTokensResponse, error) {
	if err := a.enter("EraseTokens"); err != nil {
		return nil, err
	}
	a.mu.Lock()
	a.sent = append(a.sent, req.GetTokens())
	a.mu.Unlock()
	return &jetonv1.EraseTokensResponse{Erased: int64(len(req.GetTokens()))}, nil
}

func (a *adminStub) EraseSubject(context.Context, *jetonv1.EraseSubjectRequest) (*jetonv1.EraseSubjectResponse, error) {
	return &jetonv1.EraseSubjectResponse{Erased: 2}, a.enter("EraseSubject")
}

func (a *adminStub) RotateGeneration(context.Context, *jetonv1.RotateGenerationRequest) (*jetonv1.RotateGenerationResponse, error) {
	return &jetonv1.RotateGenerationResponse{Generation: 2}, a.enter("RotateGeneration")
}

func (a *adminStub) Rewrap(_ *jetonv1.RewrapRequest, st jetonv1.Admin_RewrapServer) error {
	if err := a.enter("Rewrap"); err != nil {
		return err
	}
	for i := int64(1); i <= 3; i++ {
		if err := st.Send(&jetonv1.RewrapResponse{Done: i, Total: 3}); err != nil {
			return err
		}
	}
	return nil
}

func (a *adminStub) Stats(context.Context, *jetonv1.StatsRequest) (*jetonv1.StatsResponse, error) {
	return &jetonv1.StatsResponse{
		Tenants: []*jetonv1.TenantStats{{Tenant: "demo", Generations: []*jetonv1.GenerationStats{
			{Generation: 1, Records: 3}, {Generation: 2, Records: 1, Current: true}},
			RecordsByClass: map[string]int64{"name": 3, "unknown": 1}}},
		SuspendedIdentities: []string{"spiffe://jeton.dev/ttp/greedy"},
		Budgets: []*jetonv1.BudgetUsage{
			{Identity: "spiffe://jeton.dev/ttp/greedy", Distinct: 7, DistinctLimit: 7, Refusals: 2, Suspended: true},
			{Identity: "spiffe://jeton.dev/ttp/modest", Distinct: 1, DistinctLimit: 0}},
	}, a.enter("Stats")
}

func startAdminStub(t *testing.T, fail ...string) (*adminStub, *client.Client) {
	t.Helper()
	a := &adminStub{fail: map[string]bool{}, calls: map[string]int{}}
	for _, m := range fail {
		a.fail[m] = true
	}
	p := newTestPKI(t)
	addr, stop, err := newStub().serve(p.serverTLS(), func(r grpc.ServiceRegistrar) { jetonv1.RegisterAdminServer(r, a) })
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(stop)
	return a, newClient(t, addr, p, client.WithBatchSize(2), client.WithRetry(2, time.Millisecond))
}

func TestAdminCalls(t *testing.T) {
	a, c := startAdminStub(t)
	ctx := context.Background()
	n, err := c.EraseTokens(ctx, []string{"t1", "t2", "t3", "t4", "t5"}, "ticket-1")
	if err != nil || n != 5 {
		t.Errorf("EraseTokens = %d, %v; want 5", n, err)
	}
	if want := [][]string{{"t1", "t2"}, {"t3", "t4"}, {"t5"}}; !slices.EqualFunc(a.sent, want, slices.Equal) {
		t.Errorf("EraseTokens sent %q; want batches %q", a.sent, want)
	}
	var seen [][2]int64
	done, total, err := c.Rewrap(ctx, func(d, t int64) { seen = append(seen, [2]int64{d, t}) })
	if err != nil || done != 3 || total != 3 || !slices.Equal(seen, [][2]int64{{1, 3}, {2, 3}, {3, 3}}) {
		t.Errorf("Rewrap = %d/%d, %v, progress %v; want 3/3 reported step by step", done, total, err, seen)
	}
	st, err := c.Stats(ctx)
	if err != nil || len(st.Tenants) != 1 || len(st.Tenants[0].Generations) != 2 ||
		st.Tenants[0].Generations[1] != (client.GenerationStats{Generation: 2, Records: 1, Current: true}) ||
		!slices.Equal(st.SuspendedIdentities, []string{"spiffe://jeton.dev/ttp/greedy"}) {
		t.Errorf("Stats = %+v, %v", st, err)
	}
	if st != nil && len(st.Tenants) == 1 && !maps.Equal(st.Tenants[0].RecordsByClass, map[string]int64{"name": 3, "unknown": 1}) {
		t.Errorf("Stats records by class = %v", st.Tenants[0].RecordsByClass)
	}
	wantBudgets := []client.BudgetUsage{
		{Identity: "spiffe://jeton.dev/ttp/greedy", Distinct: 7, DistinctLimit: 7, Refusals: 2, Suspended: true},
		{Identity: "spiffe://jeton.dev/ttp/modest", Distinct: 1},
	}
	if st != nil && !slices.Equal(st.Budgets, wantBudgets) {
		t.Errorf("Stats budgets = %+v; want %+v", st.Budgets, wantBudgets)
	}
	if g, err := c.RotateGeneration(ctx, "demo"); err != nil || g != 2 {
		t.Errorf("RotateGeneration = %d, %v; want 2", g, err)
	}
}

// A rotation whose reply is lost must not be retried: the retry would
// rotate again. Erasures are safe to retry, and are.
func TestAdminRetries(t *testing.T) {
	a, c := startAdminStub(t, "RotateGeneration", "EraseSubject")
	ctx := context.Background()
	if _, err := c.RotateGeneration(ctx, "demo"); !errors.Is(err, client.ErrUnavailable) || a.count("RotateGeneration") != 1 {
		t.Errorf("RotateGeneration = %v after %d calls; want ErrUnavailable after 1", err, a.count("RotateGeneration"))
	}
	if _, err := c.EraseSubject(ctx, "demo", "guest-0001", "ticket-1"); !errors.Is(err, client.ErrUnavailable) || a.count("EraseSubject") != 3 {
		t.Errorf("EraseSubject = %v after %d calls; want ErrUnavailable after 3", err, a.count("EraseSubject"))
	}
}

// The client and the server agree on the confirmation text.
func TestDestroyConfirmation(t *testing.T) {
	if c, s := client.DestroyConfirmation("acme-2", 12), server.DestroyConfirmation("acme-2", 12); c != s || c != "destroy acme-2 generation 12" {
		t.Errorf("client %q, server %q; want both %q", c, s, "destroy acme-2 generation 12")
	}
}
