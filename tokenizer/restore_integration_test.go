package tokenizer_test

// What a Redis writer can do to replicas that already hold keys, against
// a real redis-server and a real Vault (integration/testenv).

import (
	"slices"
	"testing"
	"time"

	"github.com/jeton-dev/jeton/integration/testenv"
	"github.com/jeton-dev/jeton/tokenizer"
)

// A destroyed generation stays destroyed on a warm replica even when its
// wrapped key and records come back into Redis and its destroyed marker
// goes (a Redis writer, or an operator restoring a pre-destroy backup while
// replicas run): within KeyRefresh of its next use the replica asks Vault
// again, finds the generation's KEK gone and drops the keys it cached. Its
// records reveal nothing, its deterministic tokens are not recomputed,
// Stats shows it destroyed, and the sweep deletes its records.
func TestWarmReplicaForgetsRestoredDestroyedGeneration(t *testing.T) {
	e := startRealEnv(t)
	r := testenv.StartRedis(t)
	ctx := ctxTimeout(t)
	admin := e.replicaWith(t, r, memberID)
	items := fakeItems("Restored", 4)
	old := tokenize(t, admin, "acme", items, "")
	value := member("fake-member-0777")
	oldDet := tokenize(t, admin, "acme", value, "")[0]
	if _, err := admin.RotateGeneration(ctx, "acme"); err != nil {
		t.Fatal(err)
	}
	e.offset.Store(int64(24 * time.Hour)) // replicas long on generation 2

	// The warm replica has generation 1 loaded: it reveals its records and
	// keeps the deterministic token stable across the rotation.
	warm := e.replicaWith(t, r, memberID)
	wantAll(t, warm, "warm replica before the destroy", old, items)
	if got := tokenize(t, warm, "acme", value, "")[0]; got != oldDet {
		t.Fatal("the value got a new token across the rotation")
	}

	blob := rawGet(t, r, "jeton:k:acme:gen:1")
	if err := admin.DestroyGeneration(ctx, "acme", 1); err != nil {
		t.Fatalf("DestroyGeneration: %v", err)
	}
	// Redis is put back as it was before the destroy, before the warm
	// replica looked again.
	rawPut(t, r, "jeton:k:acme:gen:1", blob)
	if err := r.Client(t).Del(ctx, "jeton:k:acme:destroyed:1").Err(); err != nil {
		t.Fatal(err)
	}
	e.offset.Add(int64(2 * time.Second)) // past the replicas' KeyRefresh (1s)

	wantNone(t, warm, "warm replica after the restore", old)
	wantNone(t, warm, "warm replica after the restore, deterministic token", []string{oldDet})
	if got := tokenize(t, warm, "acme", value, "")[0]; got == oldDet {
		t.Error("the warm replica recomputed a destroyed generation's deterministic token")
	}

	st, err := admin.Stats(ctx, []string{"acme"})
	if err != nil {
		t.Fatal(err)
	}
	i := slices.IndexFunc(st[0].Generations, func(g tokenizer.GenerationStats) bool { return g.Generation == 1 })
	if i < 0 || !st[0].Generations[i].Destroyed {
		t.Errorf("Stats shows generation 1 as %+v; want destroyed (its Vault key is gone, whatever Redis says)", st[0].Generations)
	}
	p, err := admin.SweepDestroyed(ctx, "acme", tokenizer.SweepOptions{}, nil)
	if err != nil {
		t.Fatal(err)
	}
	if p.Deleted != int64(len(old)+1) {
		t.Errorf("the sweep deleted %d records of the restored destroyed generation, want %d", p.Deleted, len(old)+1)
	}
}
