package testenv_test

import (
	"bytes"
	"context"
	"encoding/base64"
	"fmt"
	"os"
	"path/filepath"
	"runtime"
	"strings"
	"sync"
	"testing"

	vaultapi "github.com/hashicorp/vault/api"
	"github.com/redis/go-redis/v9"

	"github.com/jeton-dev/jeton/integration/testenv"
)

func TestRedisKillStartKeepsAcknowledgedWrites(t *testing.T) {
	r := testenv.StartRedis(t)
	ctx := context.Background()
	c := r.Client(t)
	const n = 200
	for i := range n {
		if err := c.Set(ctx, fmt.Sprintf("k%d", i), fmt.Sprintf("anne%d@example.org", i), 0).Err(); err != nil {
			t.Fatalf("SET: %v", err)
		}
	}

	r.Kill()
	if err := c.Ping(ctx).Err(); err == nil {
		t.Fatal("PING succeeded after Kill; the server is still running")
	}
	r.Start()

	for i := range n {
		got, err := c.Get(ctx, fmt.Sprintf("k%d", i)).Result()
		if want := fmt.Sprintf("anne%d@example.org", i); err != nil || got != want {
			t.Fatalf("GET k%d after kill -9 and restart = %q, %v; want %q", i, got, err, want)
		}
	}
	if !grepFiles(t, r.DataFiles(), "anne7@example.org") {
		t.Errorf("DataFiles %v: no file holds a written value", r.DataFiles())
	}
}

func TestRedisStopStart(t *testing.T) {
	r := testenv.StartRedis(t)
	ctx := context.Background()
	c := r.Client(t)
	if err := c.Set(ctx, "k", "bob@example.org", 0).Err(); err != nil {
		t.Fatal(err)
	}
	r.Stop()
	var rdb bool
	for _, f := range r.DataFiles() {
		rdb = rdb || filepath.Base(f) == "dump.rdb"
	}
	if !rdb {
		t.Errorf("DataFiles after Stop = %v; want a dump.rdb from SHUTDOWN SAVE", r.DataFiles())
	}
	r.Start()
	if got, err := c.Get(ctx, "k").Result(); err != nil || got != "bob@example.org" {
		t.Fatalf("GET after Stop and Start = %q, %v", got, err)
	}
}

func TestRedisConfig(t *testing.T) {
	tests := []struct {
		name string
		opts []testenv.RedisOption
		want map[string]string
	}{
		{"defaults", nil, map[string]string{
			"appendonly": "yes", "appendfsync": "always", "bind": "127.0.0.1",
			"protected-mode": "no", "rdbcompression": "no",
		}},
		{"everysec", []testenv.RedisOption{testenv.WithAppendFsync("everysec")}, map[string]string{
			"appendfsync": "everysec",
		}},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			t.Parallel()
			r := testenv.StartRedis(t, tc.opts...)
			c := r.Client(t)
			for k, want := range tc.want {
				got, err := c.ConfigGet(context.Background(), k).Result()
				if err != nil || got[k] != want {
					t.Errorf("CONFIG GET %s = %v, %v; want %q", k, got, err, want)
				}
			}
			if got, _ := c.ConfigGet(context.Background(), "dir").Result(); !sameDir(got["dir"], r.Dir) {
				t.Errorf("dir = %q; want %q", got["dir"], r.Dir)
			}
		})
	}
}

func TestRedisInstancesAreSeparate(t *testing.T) {
	a, b := testenv.StartRedis(t), testenv.StartRedis(t)
	if a.Addr == b.Addr || a.Dir == b.Dir {
		t.Fatalf("two instances share an address or dir: %+v %+v", a, b)
	}
	ctx := context.Background()
	if err := a.Client(t).Set(ctx, "k", "v", 0).Err(); err != nil {
		t.Fatal(err)
	}
	if n, err := b.Client(t).Exists(ctx, "k").Result(); err != nil || n != 0 {
		t.Fatalf("EXISTS on the other instance = %d, %v; want 0", n, err)
	}
}

func TestRedisClusterSpreadsKeysOverAllMasters(t *testing.T) {
	cl := testenv.StartRedisCluster(t)
	if len(cl.Addrs) != 3 {
		t.Fatalf("Addrs = %v; want 3 masters", cl.Addrs)
	}
	ctx := context.Background()
	c := cl.Client(t)
	const n = 300
	for i := range n {
		if err := c.Set(ctx, fmt.Sprintf("jeton:r:t1:%d", i), "x", 0).Err(); err != nil {
			t.Fatalf("SET on the cluster: %v", err)
		}
	}
	total := int64(0)
	for _, addr := range cl.Addrs {
		node := redis.NewClient(&redis.Options{Addr: addr})
		defer node.Close()
		size, err := node.DBSize(ctx).Result()
		if err != nil {
			t.Fatal(err)
		}
		if size == 0 {
			t.Errorf("master %s holds no keys; want keys on every master", addr)
		}
		role, err := node.Do(ctx, "role").Slice()
		if err != nil || len(role) == 0 || role[0] != "master" {
			t.Errorf("ROLE on %s = %v, %v; want master", addr, role, err)
		}
		total += size
	}
	if total != n {
		t.Errorf("the masters hold %d keys in all; want %d", total, n)
	}
}

func TestVaultSealUnseal(t *testing.T) {
	v := testenv.StartVault(t)
	c := v.Client(t)
	if !strings.HasPrefix(v.Addr, "http://127.0.0.1:") {
		t.Errorf("Addr = %q; want a loopback URL", v.Addr)
	}
	if _, err := c.Auth().Token().LookupSelf(); err != nil {
		t.Fatalf("root token lookup: %v", err)
	}
	if st, err := c.Sys().SealStatus(); err != nil || st.Sealed || st.N != 1 || st.T != 1 {
		t.Fatalf("seal status = %+v, %v; want unsealed with 1 of 1 key shares", st, err)
	}

	v.Seal()
	if _, err := c.Auth().Token().LookupSelf(); err == nil {
		t.Fatal("token lookup succeeded on a sealed Vault")
	}
	if st, err := c.Sys().SealStatus(); err != nil || !st.Sealed {
		t.Fatalf("seal status after Seal = %+v, %v; want sealed", st, err)
	}

	v.Unseal()
	if _, err := c.Auth().Token().LookupSelf(); err != nil {
		t.Fatalf("token lookup after Unseal: %v", err)
	}
}

func TestVaultStopStartKeepsTransitKey(t *testing.T) {
	v := testenv.StartVault(t)
	c := v.Client(t)
	if err := c.Sys().Mount("transit", &vaultapi.MountInput{Type: "transit"}); err != nil {
		t.Fatalf("mount transit: %v", err)
	}
	if _, err := c.Logical().Write("transit/keys/jeton-test", nil); err != nil {
		t.Fatalf("create key: %v", err)
	}
	plain := base64.StdEncoding.EncodeToString([]byte("anne@example.org"))
	enc, err := c.Logical().Write("transit/encrypt/jeton-test", map[string]any{"plaintext": plain})
	if err != nil {
		t.Fatalf("encrypt: %v", err)
	}
	ciphertext, _ := enc.Data["ciphertext"].(string)

	addr := v.Addr
	v.Stop()
	if _, err := c.Sys().Health(); err == nil {
		t.Fatal("sys/health answered after Stop")
	}
	v.Start()
	if v.Addr != addr {
		t.Fatalf("Addr changed across restart: %s -> %s", addr, v.Addr)
	}

	key, err := c.Logical().Read("transit/keys/jeton-test")
	if err != nil || key == nil {
		t.Fatalf("read key after restart = %v, %v; want the key", key, err)
	}
	// Decrypting what was encrypted before the restart proves the key
	// material survived, not just a key of the same name.
	dec, err := c.Logical().Write("transit/decrypt/jeton-test", map[string]any{"ciphertext": ciphertext})
	if err != nil {
		t.Fatalf("decrypt after restart: %v", err)
	}
	if got, _ := dec.Data["plaintext"].(string); got != plain {
		t.Fatalf("decrypt after restart = %q; want %q", got, plain)
	}
}

// fakeTB records Skipf and Fatalf instead of acting on a real test, so the
// missing-binary policy can be checked both ways.
type fakeTB struct {
	testing.TB
	skipped, fatal string
}

func (f *fakeTB) Helper() {}
func (f *fakeTB) Skipf(format string, args ...any) {
	f.skipped = fmt.Sprintf(format, args...)
	runtime.Goexit()
}
func (f *fakeTB) Fatalf(format string, args ...any) {
	f.fatal = fmt.Sprintf(format, args...)
	runtime.Goexit()
}

func TestMissingBinary(t *testing.T) {
	tests := []struct {
		name, ci     string
		wantSkip     bool
		wantInReason []string
	}{
		{"skips outside CI", "", true, []string{"/nonexistent/redis-server"}},
		{"fails in CI", "true", false, []string{"/nonexistent/redis-server", "make testenv"}},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			t.Setenv("CI", tc.ci)
			t.Setenv("JETON_REDIS_SERVER", "/nonexistent/redis-server")
			f := &fakeTB{TB: t}
			var wg sync.WaitGroup
			wg.Go(func() { testenv.StartRedis(f) })
			wg.Wait()
			reason := f.fatal
			if tc.wantSkip {
				reason = f.skipped
			}
			if (f.skipped != "") != tc.wantSkip || (f.fatal != "") == tc.wantSkip {
				t.Fatalf("skipped=%q fatal=%q; want skip=%t", f.skipped, f.fatal, tc.wantSkip)
			}
			for _, w := range tc.wantInReason {
				if !strings.Contains(reason, w) {
					t.Errorf("reason %q lacks %q", reason, w)
				}
			}
		})
	}
}

func grepFiles(t testing.TB, files []string, s string) bool {
	t.Helper()
	for _, f := range files {
		b, err := os.ReadFile(f)
		if err != nil {
			t.Fatal(err)
		}
		if bytes.Contains(b, []byte(s)) {
			return true
		}
	}
	return false
}

func sameDir(a, b string) bool {
	ai, err1 := os.Stat(a)
	bi, err2 := os.Stat(b)
	return err1 == nil && err2 == nil && os.SameFile(ai, bi)
}
