package tokenizer_test

import (
	"context"
	"errors"
	"fmt"
	"slices"
	"sync"
	"testing"
	"time"

	"github.com/jeton-dev/jeton/tokenizer"
)

// sweepEnv is acme with n records in generation 1 and n in generation 2
// (current, and old enough that generation 1 may be destroyed).
func sweepEnv(t *testing.T, n int) (e *env, gen1, gen2 []string) {
	t.Helper()
	e = newEnv(t, withRefresh(testRefresh))
	items := func(g int) []tokenizer.Item {
		out := make([]tokenizer.Item, n)
		for i := range out {
			out[i] = tokenizer.Item{Class: "name", Value: fmt.Sprintf("Fake Sweep%d Person%d", g, i)}
		}
		return out
	}
	gen1 = tokenize(t, e.tz, "acme", items(1), "")
	if _, err := e.tz.RotateGeneration(context.Background(), "acme"); err != nil {
		t.Fatal(err)
	}
	gen2 = tokenize(t, e.tz, "acme", items(2), "")
	e.clock.Advance(2*testRefresh + time.Second)
	return e, gen1, gen2
}

func TestSweepDestroyedDeletesOnlyDestroyedRecords(t *testing.T) {
	e, gen1, gen2 := sweepEnv(t, 7)
	ctx := context.Background()
	before, err := e.tz.Stats(ctx, []string{"acme"})
	if err != nil {
		t.Fatal(err)
	}
	if err := e.tz.DestroyGeneration(ctx, "acme", 1); err != nil {
		t.Fatal(err)
	}
	// Stats shows the generation destroyed, with its time and its dead
	// records until the sweep.
	st, err := e.tz.Stats(ctx, []string{"acme"})
	if err != nil {
		t.Fatal(err)
	}
	g1 := st[0].Generations[0]
	if !g1.Destroyed || !g1.DestroyedAt.Equal(e.clock.Now().Truncate(time.Second)) || g1.Records != 7 || before[0].Generations[0].Records != 7 {
		t.Fatalf("Stats after destroy: %+v", g1)
	}

	var seen []tokenizer.SweepProgress
	p, err := e.tz.SweepDestroyed(ctx, "acme", tokenizer.SweepOptions{Batch: 3}, func(p tokenizer.SweepProgress) { seen = append(seen, p) })
	if err != nil {
		t.Fatal(err)
	}
	if p.Deleted != g1.Records || p.Scanned != before[0].Records || len(p.Pending) != 0 {
		t.Fatalf("SweepDestroyed = %+v; want %d deleted of %d", p, g1.Records, before[0].Records)
	}
	if len(seen) < 2 || seen[len(seen)-1].Deleted != p.Deleted {
		t.Fatalf("progress %+v: want one report per batch of 3", seen)
	}
	for _, tok := range gen1 {
		key, err := tokenizer.RecordKey(ctx, e.tz, tok)
		if err != nil {
			t.Fatal(err)
		}
		if e.rawGet(t, key) != nil {
			t.Fatal("a destroyed generation's record survived the sweep")
		}
	}
	for _, r := range reveal(t, e.newTokenizer(t), gen2...) {
		if r.Err != nil {
			t.Fatal("the sweep deleted a live generation's record")
		}
	}
	st, err = e.tz.Stats(ctx, []string{"acme"})
	if err != nil || st[0].Generations[0].Records != 0 || !st[0].Generations[0].Destroyed {
		t.Fatalf("Stats after the sweep: %+v, %v", st, err)
	}
	// Again: nothing left to do.
	if p, err := e.tz.SweepDestroyed(ctx, "acme", tokenizer.SweepOptions{}, nil); err != nil || p.Deleted != 0 {
		t.Fatalf("second sweep = %+v, %v", p, err)
	}
}

// The store alone cannot make the sweep delete live records: a generation
// is swept only once its KEK is gone from the KeyManager.
func TestSweepNeedsTheKEKGone(t *testing.T) {
	e, _, gen2 := sweepEnv(t, 3)
	ctx := context.Background()
	// A destroy of generation 1 that stopped before its KEK.
	e.keys.fail("DestroyKEK", true)
	if err := e.tz.DestroyGeneration(ctx, "acme", 1); !errors.Is(err, tokenizer.ErrUnavailable) {
		t.Fatal(err)
	}
	e.keys.fail("DestroyKEK", false)
	// And a destroyed marker planted on the current generation.
	if err := e.mem.Put(ctx, []tokenizer.Entry{{Key: "jeton:k:acme:destroyed:2", Value: []byte{1, 0, 0, 0, 0, 0, 0, 0, 1}}}); err != nil {
		t.Fatal(err)
	}
	p, err := e.tz.SweepDestroyed(ctx, "acme", tokenizer.SweepOptions{}, nil)
	if err != nil || p.Deleted != 0 || !slices.Equal(p.Pending, []uint32{1, 2}) {
		t.Fatalf("SweepDestroyed = %+v, %v; want nothing deleted, generations 1 and 2 pending", p, err)
	}
	if _, err := e.mem.Delete(ctx, []string{"jeton:k:acme:destroyed:2"}); err != nil {
		t.Fatal(err)
	}
	for _, r := range reveal(t, e.newTokenizer(t), gen2...) {
		if r.Err != nil {
			t.Fatal("a live record is gone")
		}
	}
	// The destroy, finished, lets the sweep go.
	if err := e.tz.DestroyGeneration(ctx, "acme", 1); err != nil {
		t.Fatal(err)
	}
	if p, err := e.tz.SweepDestroyed(ctx, "acme", tokenizer.SweepOptions{}, nil); err != nil || p.Deleted == 0 || len(p.Pending) != 0 {
		t.Fatalf("SweepDestroyed after the destroy finished = %+v, %v", p, err)
	}
}

// Sweeps on several replicas at once delete each record once between
// them, and fail nothing.
func TestSweepOnSeveralReplicas(t *testing.T) {
	e, _, _ := sweepEnv(t, 40)
	ctx := context.Background()
	if err := e.tz.DestroyGeneration(ctx, "acme", 1); err != nil {
		t.Fatal(err)
	}
	st, err := e.tz.Stats(ctx, []string{"acme"})
	if err != nil {
		t.Fatal(err)
	}
	want := st[0].Generations[0].Records
	var (
		wg    sync.WaitGroup
		mu    sync.Mutex
		total int64
	)
	for range 3 {
		tz := e.newTokenizer(t)
		wg.Go(func() {
			p, err := tz.SweepDestroyed(ctx, "acme", tokenizer.SweepOptions{Batch: 4}, nil)
			if err != nil {
				t.Errorf("SweepDestroyed: %v", err)
			}
			mu.Lock()
			total += p.Deleted
			mu.Unlock()
		})
	}
	wg.Wait()
	if total != want {
		t.Fatalf("replicas deleted %d records between them, want %d", total, want)
	}
}

func TestSweepRefusals(t *testing.T) {
	e := newEnv(t)
	ctx := context.Background()
	if _, err := e.tz.SweepDestroyed(ctx, "Bad Tenant", tokenizer.SweepOptions{}, nil); !tokenizer.IsUserError(err) {
		t.Errorf("bad tenant name: %v", err)
	}
	if p, err := e.tz.SweepDestroyed(ctx, "nobody", tokenizer.SweepOptions{}, nil); err != nil || p.Scanned != 0 {
		t.Errorf("unknown tenant: %+v, %v", p, err)
	}
	g, _, _ := sweepEnv(t, 2)
	if err := g.tz.DestroyGeneration(ctx, "acme", 1); err != nil {
		t.Fatal(err)
	}
	canceled, cancel := context.WithCancel(ctx)
	cancel()
	if _, err := g.tz.SweepDestroyed(canceled, "acme", tokenizer.SweepOptions{}, nil); !errors.Is(err, context.Canceled) {
		t.Errorf("canceled sweep: %v, want context.Canceled", err)
	}
	g.store.fail("Delete", true)
	if _, err := g.tz.SweepDestroyed(ctx, "acme", tokenizer.SweepOptions{}, nil); !errors.Is(err, tokenizer.ErrUnavailable) {
		t.Errorf("sweep with a failing store: %v, want ErrUnavailable", err)
	}
}
