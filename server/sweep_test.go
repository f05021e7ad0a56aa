package server_test

import (
	"context"
	"io"
	"slices"
	"testing"
	"time"

	jetonv1 "github.com/jeton-dev/jeton/proto/jeton/v1"
	"github.com/jeton-dev/jeton/tokenizer"
)

// generationStats returns demo's generations as Stats reports them.
func generationStats(t *testing.T, c jetonv1.AdminClient, tenant string) []*jetonv1.GenerationStats {
	t.Helper()
	res, err := c.Stats(ctx(t), &jetonv1.StatsRequest{})
	if err != nil {
		t.Fatalf("Stats: %v", err)
	}
	for _, ts := range res.GetTenants() {
		if ts.GetTenant() == tenant {
			return ts.GetGenerations()
		}
	}
	t.Fatalf("Stats has no tenant %s", tenant)
	return nil
}

// Stats shows a destroyed generation as destroyed, with its destroy time
// and its dead records; SweepDestroyed deletes those, reporting progress,
// and is audited.
func TestStatsAndSweepOfADestroyedGeneration(t *testing.T) {
	e := startEnv(t, envOpts{keyRefresh: time.Millisecond})
	for i := range 5 {
		e.tokenizeIn(t, "demo", tokenizer.Item{Class: "name", Value: useValue("Sweep Testperson " + string(rune('A'+i)))})
	}
	if _, err := e.tok.RotateGeneration(context.Background(), "demo"); err != nil {
		t.Fatal(err)
	}
	live := e.tokenizeIn(t, "demo", tokenizer.Item{Class: "name", Value: useValue("Sweep Keeper")})
	time.Sleep(5 * time.Millisecond) // twice KeyRefresh
	before := time.Now().Truncate(time.Second)
	// Destroyed behind the server's back: no background sweep runs.
	if err := e.tok.DestroyGeneration(context.Background(), "demo", 1); err != nil {
		t.Fatal(err)
	}
	admin := jetonv1.NewAdminClient(e.custodianConn(t))
	gens := generationStats(t, admin, "demo")
	g1 := gens[0]
	if !g1.GetDestroyed() || g1.GetRecords() != 5 || g1.GetDestroyedAt().AsTime().Before(before) || gens[1].GetDestroyed() || !gens[1].GetCurrent() {
		t.Fatalf("Stats generations = %v; want generation 1 destroyed now with 5 records", gens)
	}

	n := len(e.audit.records())
	st, err := admin.SweepDestroyed(ctx(t), &jetonv1.SweepDestroyedRequest{Tenant: "demo"})
	if err != nil {
		t.Fatal(err)
	}
	var last *jetonv1.SweepDestroyedResponse
	for {
		m, err := st.Recv()
		if err == io.EOF {
			break
		}
		if err != nil {
			t.Fatalf("Recv: %v", err)
		}
		last = m
	}
	if last == nil || last.GetDeleted() != 5 || last.GetScanned() != 6 || len(last.GetPending()) != 0 {
		t.Fatalf("last progress %v; want 5 deleted of 6 scanned", last)
	}
	if got := methodsSince(e.audit, n); !slices.Equal(got, []string{"SweepDestroyed:intent", "SweepDestroyed:ok"}) {
		t.Errorf("audit records %q", got)
	}
	if g := generationStats(t, admin, "demo")[0]; !g.GetDestroyed() || g.GetRecords() != 0 {
		t.Errorf("Stats after the sweep: %v", g)
	}
	wantOpens(t, e, true, "the live generation after the sweep", live...)
}

// A destroy that takes effect through dual control sweeps its records in
// the background, with no further call.
func TestApprovedDestroySweepsInTheBackground(t *testing.T) {
	e := startDualEnv(t, envOpts{})
	id := destroyDemo1(t, e.adminAs(t, custodianA)).GetRequest().GetId()
	if r, err := approve(e.adminAs(t, custodianB), t, id); err != nil || !r.GetDone() {
		t.Fatalf("approve = %v, %v", r, err)
	}
	admin := e.adminAs(t, custodianA)
	for deadline := time.Now().Add(20 * time.Second); ; time.Sleep(20 * time.Millisecond) {
		g := generationStats(t, admin, "demo")[0]
		if !g.GetDestroyed() {
			t.Fatalf("generation 1 not destroyed: %v", g)
		}
		if g.GetRecords() == 0 {
			break
		}
		if time.Now().After(deadline) {
			t.Fatalf("the background sweep left %d records", g.GetRecords())
		}
	}
}
