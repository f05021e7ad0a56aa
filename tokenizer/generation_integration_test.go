package tokenizer_test

// End-to-end key generations on a real redis-server and a real Vault dev
// server (integration/testenv): the Tokenizer runs as jetond does, through
// redisstore and vaultkeys with a token holding only the jeton-jetond
// policy, never root.

import (
	"context"
	"errors"
	"fmt"
	"io"
	"os"
	"path/filepath"
	"strings"
	"sync/atomic"
	"testing"
	"time"

	vaultapi "github.com/hashicorp/vault/api"
	"github.com/redis/go-redis/v9"

	"github.com/jeton-dev/jeton/integration/testenv"
	"github.com/jeton-dev/jeton/tokenizer"
	"github.com/jeton-dev/jeton/tokenizer/redisstore"
	"github.com/jeton-dev/jeton/tokenizer/vaultkeys"
)

// realEnv is one Vault with jeton's setup done, and tokens for jetond and
// for a custodian.
type realEnv struct {
	vault                   *testenv.Vault
	root                    *vaultapi.Client
	jetondToken, custodianT string
	// offset shifts every replica's clock, so a test can let days pass.
	offset atomic.Int64
}

func startRealEnv(t *testing.T) *realEnv {
	t.Helper()
	ctx := ctxTimeout(t)
	v := testenv.StartVault(t)
	root := v.Client(t)
	if _, err := vaultkeys.Setup(ctx, root, vaultkeys.SetupConfig{}); err != nil {
		t.Fatalf("vaultkeys.Setup: %v", err)
	}
	e := &realEnv{vault: v, root: root}
	e.jetondToken = policyToken(t, root, vaultkeys.PolicyJetond)
	e.custodianT = policyToken(t, root, vaultkeys.PolicyCustodian)
	return e
}

func ctxTimeout(t testing.TB) context.Context {
	ctx, cancel := context.WithTimeout(t.Context(), time.Minute)
	t.Cleanup(cancel)
	return ctx
}

// policyToken makes a token with exactly one policy, without "default".
func policyToken(t testing.TB, root *vaultapi.Client, policy string) string {
	t.Helper()
	s, err := root.Auth().Token().CreateWithContext(ctxTimeout(t), &vaultapi.TokenCreateRequest{
		Policies: []string{policy}, NoDefaultPolicy: true, TTL: "1h",
	})
	if err != nil {
		t.Fatalf("create %s token: %v", policy, err)
	}
	return s.Auth.ClientToken
}

func (e *realEnv) client(t testing.TB, token string) *vaultapi.Client {
	t.Helper()
	cfg := vaultapi.DefaultConfig()
	cfg.Address = e.vault.Addr
	c, err := vaultapi.NewClient(cfg)
	if err != nil {
		t.Fatal(err)
	}
	c.ClearNamespace()
	c.SetToken(token)
	return c
}

// keys is a vaultkeys.Manager with jetond's token.
func (e *realEnv) keys(t testing.TB) *vaultkeys.Manager {
	t.Helper()
	m, err := vaultkeys.New(ctxTimeout(t), e.client(t, e.jetondToken), vaultkeys.Config{})
	if err != nil {
		t.Fatalf("vaultkeys.New: %v", err)
	}
	t.Cleanup(m.Close)
	return m
}

// replica is a fresh Tokenizer, with cold caches, on r and the Vault.
func (e *realEnv) replica(t testing.TB, r *testenv.Redis) *tokenizer.Tokenizer {
	t.Helper()
	return e.replicaClasses(t, r, tokenizer.DefaultClasses())
}

func (e *realEnv) replicaClasses(t testing.TB, r *testenv.Redis, classes []tokenizer.Class) *tokenizer.Tokenizer {
	t.Helper()
	rc, err := redisstore.NewClient(redisstore.Config{Addrs: []string{r.Addr}})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = rc.Close() })
	tz, err := tokenizer.New(tokenizer.Config{
		Classes:    classes,
		Keys:       e.keys(t),
		Store:      redisstore.New(rc),
		KeyRefresh: time.Second,
		Now:        func() time.Time { return time.Now().Add(time.Duration(e.offset.Load())) },
	})
	if err != nil {
		t.Fatal(err)
	}
	return tz
}

func (e *realEnv) custodian(t testing.TB, path string, data map[string]any) {
	t.Helper()
	if _, err := e.client(t, e.custodianT).Logical().WriteWithContext(ctxTimeout(t), path, data); err != nil {
		t.Fatalf("custodian write %s: %v", path, err)
	}
}

func fakeItems(prefix string, n int) []tokenizer.Item {
	items := make([]tokenizer.Item, n)
	for i := range items {
		if i%2 == 0 {
			items[i] = tokenizer.Item{Class: "name", Value: fmt.Sprintf("Fake %s Person%d", prefix, i)}
		} else {
			items[i] = tokenizer.Item{Class: "email", Value: fmt.Sprintf("fake.%s.%d@example.org", strings.ToLower(prefix), i)}
		}
	}
	return items
}

// wantAll checks every token reveals its item's value (normalised as the
// class does) on tz.
func wantAll(t *testing.T, tz *tokenizer.Tokenizer, what string, toks []string, items []tokenizer.Item) {
	t.Helper()
	got := reveal(t, tz, toks...)
	for i, r := range got {
		c, _ := tz.Class(items[i].Class)
		want, _ := c.NormalizeValue(items[i].Value)
		if r.Err != nil || r.Value != want {
			t.Errorf("%s: token %d does not reveal its value (err %v)", what, i, r.Err)
		}
	}
}

func wantNone(t *testing.T, tz *tokenizer.Tokenizer, what string, toks []string) {
	t.Helper()
	for i, r := range reveal(t, tz, toks...) {
		if !errors.Is(r.Err, tokenizer.ErrNotFound) || r.Value != "" {
			t.Errorf("%s: token %d revealed or failed oddly (err %v)", what, i, r.Err)
		}
	}
}

// backupRedis snapshots r's data files as an operator's backup would: it
// has Redis rewrite its AOF, waits for the rewrite, then copies Dir.
func backupRedis(t *testing.T, r *testenv.Redis) string {
	t.Helper()
	ctx := ctxTimeout(t)
	c := r.Client(t)
	if err := c.BgRewriteAOF(ctx).Err(); err != nil {
		t.Fatalf("BGREWRITEAOF: %v", err)
	}
	deadline := time.Now().Add(30 * time.Second)
	for {
		info, err := c.Info(ctx, "persistence").Result()
		if err != nil {
			t.Fatal(err)
		}
		if strings.Contains(info, "aof_rewrite_in_progress:0") && strings.Contains(info, "aof_rewrite_scheduled:0") {
			break
		}
		if time.Now().After(deadline) {
			t.Fatal("AOF rewrite did not finish")
		}
		time.Sleep(20 * time.Millisecond)
	}
	dst := t.TempDir()
	copyTree(t, r.Dir, dst)
	return dst
}

// restoreRedis starts a fresh redis-server whose data directory holds only
// the backup's files.
func restoreRedis(t *testing.T, backup string) *testenv.Redis {
	t.Helper()
	r := testenv.StartRedis(t)
	r.Kill()
	entries, err := os.ReadDir(r.Dir)
	if err != nil {
		t.Fatal(err)
	}
	for _, de := range entries {
		if err := os.RemoveAll(filepath.Join(r.Dir, de.Name())); err != nil {
			t.Fatal(err)
		}
	}
	copyTree(t, backup, r.Dir)
	r.Start()
	return r
}

func copyTree(t *testing.T, src, dst string) {
	t.Helper()
	err := filepath.WalkDir(src, func(path string, d os.DirEntry, err error) error {
		if err != nil {
			return err
		}
		rel, err := filepath.Rel(src, path)
		if err != nil {
			return err
		}
		target := filepath.Join(dst, rel)
		if d.IsDir() {
			return os.MkdirAll(target, 0o700)
		}
		in, err := os.Open(path)
		if err != nil {
			return err
		}
		defer in.Close()
		out, err := os.OpenFile(target, os.O_CREATE|os.O_WRONLY|os.O_TRUNC, 0o600)
		if err != nil {
			return err
		}
		if _, err := io.Copy(out, in); err != nil {
			out.Close()
			return err
		}
		return out.Close()
	})
	if err != nil {
		t.Fatalf("copy %s to %s: %v", src, dst, err)
	}
}

func rawGet(t *testing.T, r *testenv.Redis, key string) []byte {
	t.Helper()
	b, err := r.Client(t).Get(ctxTimeout(t), key).Bytes()
	if errors.Is(err, redis.Nil) {
		return nil
	}
	if err != nil {
		t.Fatal(err)
	}
	return b
}

// TestDestroyGenerationEndToEnd is issue 5's "DestroyGeneration, end to
// end": tokenize under generation 1, copy the Redis data files, rotate to
// generation 2, tokenize more, destroy generation 1, then restore the
// copied data into a fresh Redis. Generation 1 tokens stay unrecoverable,
// because the Vault key that wrapped their DEK is gone; generation 2 tokens
// work.
func TestDestroyGenerationEndToEnd(t *testing.T) {
	e := startRealEnv(t)
	live := testenv.StartRedis(t)
	ctx := ctxTimeout(t)
	tz := e.replica(t, live)

	items1 := fakeItems("GenOne", 20)
	toks1 := tokenize(t, tz, "acme", items1, "")
	backup := backupRedis(t, live)

	if g, err := tz.RotateGeneration(ctx, "acme"); err != nil || g != 2 {
		t.Fatalf("RotateGeneration = %d, %v", g, err)
	}
	items2 := fakeItems("GenTwo", 20)
	toks2 := tokenize(t, tz, "acme", items2, "")
	for _, r := range reveal(t, tz, toks2...) {
		if r.Generation != 2 {
			t.Fatalf("token tokenized after the rotation is in generation %d", r.Generation)
		}
	}

	// Control: before the destroy, the backup restores generation 1, so
	// what follows fails only because of the destroy.
	wantAll(t, e.replica(t, restoreRedis(t, backup)), "backup before the destroy", toks1, items1)

	e.offset.Store(int64(24 * time.Hour)) // a day later, replicas long on generation 2
	if err := tz.DestroyGeneration(ctx, "acme", 1); err != nil {
		t.Fatalf("DestroyGeneration(1): %v", err)
	}
	if s, err := e.root.Logical().ReadWithContext(ctx, "transit/keys/jeton-kek-acme-g1"); err != nil || s != nil {
		t.Fatalf("generation 1's Vault key survived the destroy: %v, %v", s != nil, err)
	}

	// The live Redis: generation 1 is gone, generation 2 works, on this
	// replica and on a fresh one.
	if rawGet(t, live, "jeton:k:acme:gen:1") != nil {
		t.Error("live Redis still holds generation 1's wrapped DEK")
	}
	for name, r := range map[string]*tokenizer.Tokenizer{"same replica": tz, "fresh replica": e.replica(t, live)} {
		wantNone(t, r, name+", live, generation 1", toks1)
		wantAll(t, r, name+", live, generation 2", toks2, items2)
	}

	// The backup, restored into a fresh Redis, still holds generation 1's
	// records and wrapped DEK, but nothing can open them.
	restored := restoreRedis(t, backup)
	blob := rawGet(t, restored, "jeton:k:acme:gen:1")
	if blob == nil {
		t.Fatal("the restored backup lacks generation 1's wrapped DEK; the test proves nothing")
	}
	fresh := e.replica(t, restored)
	wantNone(t, fresh, "restored backup, generation 1", toks1)
	// Generation 2 came after the backup: not in it.
	wantNone(t, fresh, "restored backup, generation 2", toks2)
	// It is Vault that refuses: the wrapped DEK names a KEK that is gone.
	kek, ad := tokenizer.KeyIdentity("acme", 1, blob)
	if _, err := e.keys(t).Unwrap(ctx, kek, wrappedOf(t, blob), ad); !errors.Is(err, tokenizer.ErrKeyDestroyed) {
		t.Fatalf("Unwrap of the backed-up DEK: %v, want ErrKeyDestroyed", err)
	}
	// In the restored data generation 1 is still current, and it fails
	// closed: no new record is sealed under a key that cannot be opened.
	if _, err := fresh.Tokenize(ctx, "acme", fakeItems("AfterRestore", 1), ""); !errors.Is(err, tokenizer.ErrKeyDestroyed) {
		t.Fatalf("Tokenize on the restored backup: %v, want ErrKeyDestroyed", err)
	}
}

// TestRewrapAfterKEKRotationEndToEnd is issue 5's "Rewrap after a Vault
// KEK rotation leaves every token detokenizable, and progress is
// reported".
func TestRewrapAfterKEKRotationEndToEnd(t *testing.T) {
	e := startRealEnv(t)
	r := testenv.StartRedis(t)
	ctx := ctxTimeout(t)
	tz := e.replica(t, r)

	auditKey, err := tz.DeriveKey(ctx, "audit")
	if err != nil {
		t.Fatal(err)
	}
	acme1, beta1 := fakeItems("AcmeOne", 6), fakeItems("BetaOne", 6)
	tAcme1, tBeta1 := tokenize(t, tz, "acme", acme1, ""), tokenize(t, tz, "beta", beta1, "")
	if _, err := tz.RotateGeneration(ctx, "acme"); err != nil {
		t.Fatal(err)
	}
	acme2 := fakeItems("AcmeTwo", 6)
	tAcme2 := tokenize(t, tz, "acme", acme2, "")
	oldRoot := rawGet(t, r, "jeton:k:acme:root")
	oldGen := rawGet(t, r, "jeton:k:acme:gen:1")

	// Custodians rotate the main KEK and every generation KEK.
	keks := []string{"jeton-kek", "jeton-kek-acme-g1", "jeton-kek-acme-g2", "jeton-kek-beta-g1"}
	for _, k := range keks {
		e.custodian(t, "transit/keys/"+k+"/rotate", nil)
	}

	var seen []tokenizer.RewrapProgress
	p, err := tz.Rewrap(ctx, []string{"acme", "beta"}, func(p tokenizer.RewrapProgress) { seen = append(seen, p) })
	// _system root; acme root, g1, g2; beta root, g1.
	want := tokenizer.RewrapProgress{Done: 6, Total: 6, Rewrapped: 6}
	if err != nil || p != want {
		t.Fatalf("Rewrap = %+v, %v; want %+v", p, err, want)
	}
	if len(seen) != want.Total {
		t.Fatalf("progress reported %d times, want once per key", len(seen))
	}
	for i, s := range seen {
		if s.Total != want.Total || s.Done != i+1 {
			t.Errorf("progress report %d = %+v, want Done %d of %d", i, s, i+1, want.Total)
		}
	}
	for _, key := range []string{"jeton:k:_system:root", "jeton:k:acme:root", "jeton:k:acme:gen:1", "jeton:k:acme:gen:2", "jeton:k:beta:root", "jeton:k:beta:gen:1"} {
		if wrapped := wrappedOf(t, rawGet(t, r, key)); !strings.HasPrefix(string(wrapped), "vault:v2:") {
			t.Errorf("%s is not wrapped under KEK version 2 after Rewrap", key)
		}
	}

	// Custodians retire version 1 everywhere: only rewrapped keys open.
	for _, k := range keks {
		e.custodian(t, "transit/keys/"+k+"/config", map[string]any{"min_decryption_version": 2})
	}
	m := e.keys(t)
	for gen, blob := range map[uint32][]byte{0: oldRoot, 1: oldGen} {
		kek, ad := tokenizer.KeyIdentity("acme", gen, blob)
		if _, err := m.Unwrap(ctx, kek, wrappedOf(t, blob), ad); !errors.Is(err, tokenizer.ErrKeyDestroyed) {
			t.Errorf("pre-rewrap key of generation %d (0: root) after min_decryption_version=2: %v, want ErrKeyDestroyed", gen, err)
		}
	}
	fresh := e.replica(t, r)
	wantAll(t, fresh, "acme generation 1", tAcme1, acme1)
	wantAll(t, fresh, "acme generation 2", tAcme2, acme2)
	wantAll(t, fresh, "beta generation 1", tBeta1, beta1)
	if k, err := fresh.DeriveKey(ctx, "audit"); err != nil || string(k) != string(auditKey) {
		t.Errorf("DeriveKey after rewrap: same key %t, %v", string(k) == string(auditKey), err)
	}
}

// TestIdempotentRetryAfterDestroyAgainstRealStore: against a real Redis
// and Vault, a retry of a call whose tokens' generation was destroyed
// since gets fresh tokens that reveal its values, on the replica that
// destroyed it and on a fresh one, and never a dead token.
func TestIdempotentRetryAfterDestroyAgainstRealStore(t *testing.T) {
	e := startRealEnv(t)
	r := testenv.StartRedis(t)
	ctx := ctxTimeout(t)
	tz := e.replica(t, r)
	items := fakeItems("Retry", 5)
	dead := tokenize(t, tz, "acme", items, "k-destroyed")
	if g, err := tz.RotateGeneration(ctx, "acme"); err != nil || g != 2 {
		t.Fatalf("RotateGeneration = %d, %v", g, err)
	}
	e.offset.Store(int64(24 * time.Hour))
	if err := tz.DestroyGeneration(ctx, "acme", 1); err != nil {
		t.Fatalf("DestroyGeneration(1): %v", err)
	}
	var fresh []string
	for _, rep := range []*tokenizer.Tokenizer{tz, e.replica(t, r)} {
		again := tokenize(t, rep, "acme", items, "k-destroyed")
		for i, rv := range reveal(t, rep, again...) {
			if again[i] == dead[i] {
				t.Fatalf("item %d: the retry returned the token of the destroyed generation", i)
			}
			if fresh != nil && again[i] != fresh[i] {
				t.Fatalf("item %d: a retry on another replica reminted the fresh token", i)
			}
			wantValue(t, rv, items[i].Value)
		}
		fresh = again
	}
}
