package integration_test

import (
	"bytes"
	"context"
	"crypto/sha256"
	"encoding/base64"
	"encoding/hex"
	"fmt"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/redis/go-redis/v9"

	"github.com/jeton-dev/jeton/client"
	"github.com/jeton-dev/jeton/integration/testenv"
	"github.com/jeton-dev/jeton/tokenizer"
)

// TestRedisFilesHoldNoValueNoToken tokenizes known values through jetond
// (with data-subject ids), reveals them, and greps what Redis keeps on
// disk (the AOF as written, then the rewritten AOF and an RDB snapshot) for
// every value, subject id and token in raw, base64, hex and unkeyed SHA-256
// forms. Control strings written with a plain SET must be found, so the
// grep is known to see what Redis stores.
func TestRedisFilesHoldNoValueNoToken(t *testing.T) {
	r := testenv.StartRedis(t)
	v := startVaultEnv(t, false)
	h := startJetond(t, jetondOpts{RedisAddrs: []string{r.Addr}, Vault: v, Token: v.token(t, "jeton-jetond")})
	ctx := context.Background()

	its := items(t, 0, 140)
	in := make([]client.Item, len(its))
	var subjects []string
	for i, it := range its {
		s := fmt.Sprintf("subject-anne-test-%04d", i/7)
		if i%7 == 0 {
			subjects = append(subjects, s)
		}
		in[i] = client.Item{Class: it.Class, Value: it.Value, Subject: s}
	}
	noteValues(t, subjects...)
	res, err := h.Sponsor(t, "acme").Tokenize(ctx, in)
	if err != nil {
		t.Fatal(err)
	}
	for i, r := range res {
		if r.Err != nil {
			t.Fatalf("item %d: %v", i, r.Err)
		}
		its[i].Token = r.Token
	}
	detokenizeAll(t, h, its)

	var secrets [][]byte
	for _, it := range its {
		secrets = append(secrets, []byte(it.Value), []byte(it.Token))
		tok, err := tokenizer.ParseToken(it.Token)
		if err != nil {
			t.Fatal(err)
		}
		secrets = append(secrets, tok.Payload[:])
	}
	for _, s := range subjects {
		secrets = append(secrets, []byte(s))
	}
	needles := forms(secrets)
	t.Logf("searching for %d secrets in %d forms", len(secrets), len(needles))

	c := r.Client(t)
	control := []byte("jeton-grep-control-7f3a9c")
	if err := c.Set(ctx, "integration:control", control, 0).Err(); err != nil {
		t.Fatal(err)
	}

	t.Run("aof-as-written", func(t *testing.T) {
		files := r.DataFiles()
		wantIn(t, files, control, func(f string) bool { return strings.Contains(f, "appendonly") })
		grepNone(t, files, needles)
	})

	t.Run("rewritten-aof-and-rdb", func(t *testing.T) {
		if err := c.BgRewriteAOF(ctx).Err(); err != nil {
			t.Fatal(err)
		}
		waitPersistence(t, c, "aof_rewrite_in_progress:0", "aof_rewrite_scheduled:0")
		if err := c.Save(ctx).Err(); err != nil {
			t.Fatal(err)
		}
		// Written after the rewrite, so it is in the incremental AOF.
		control2 := []byte("jeton-grep-control-after-rewrite-51be0d")
		if err := c.Set(ctx, "integration:control2", control2, 0).Err(); err != nil {
			t.Fatal(err)
		}
		files := r.DataFiles()
		wantIn(t, files, control, func(f string) bool { return filepath.Base(f) == "dump.rdb" })
		wantIn(t, files, control, func(f string) bool { return strings.Contains(f, ".base.") })
		wantIn(t, files, control2, func(f string) bool { return strings.Contains(f, ".incr.") })
		grepNone(t, files, needles)
	})
}

// forms returns each secret in raw, base64 (standard and URL alphabets,
// padded or not, at each of the three byte alignments), hex (lower and
// upper case) and unkeyed SHA-256 (raw, hex, base64) forms.
func forms(secrets [][]byte) [][]byte {
	var out [][]byte
	add := func(b []byte) { out = append(out, b) }
	for _, s := range secrets {
		sum := sha256.Sum256(s)
		for _, b := range [][]byte{s, sum[:]} {
			add(b)
			add([]byte(hex.EncodeToString(b)))
			add([]byte(strings.ToUpper(hex.EncodeToString(b))))
			for _, enc := range []*base64.Encoding{base64.StdEncoding, base64.URLEncoding} {
				add([]byte(enc.EncodeToString(b)))
				add([]byte(enc.WithPadding(base64.NoPadding).EncodeToString(b)))
				// Inside a longer base64 string, b may start at byte 0, 1 or
				// 2 of a 3-byte group: encode it behind that many filler
				// bytes and keep only the characters that depend on b alone.
				for shift := 0; shift <= 2; shift++ {
					e := enc.WithPadding(base64.NoPadding).EncodeToString(append(make([]byte, shift), b...))
					lo, hi := (shift*8+5)/6, len(e)
					if (len(b)+shift)%3 != 0 {
						hi-- // the last character also holds bits of what follows
					}
					if hi-lo >= 8 {
						add([]byte(e[lo:hi]))
					}
				}
			}
		}
	}
	return out
}

// grepNone fails when any file holds any needle; it never prints one.
func grepNone(t testing.TB, files []string, needles [][]byte) {
	t.Helper()
	var total int
	for _, f := range files {
		b, err := os.ReadFile(f)
		if err != nil {
			t.Fatal(err)
		}
		total += len(b)
		hits := 0
		for _, n := range needles {
			if bytes.Contains(b, n) {
				hits++
			}
		}
		if hits > 0 {
			t.Errorf("%s holds %d of the searched forms of values, subject ids or tokens", filepath.Base(f), hits)
		}
	}
	t.Logf("searched %d files, %d bytes", len(files), total)
}

// wantIn requires control in at least one of the files that match.
func wantIn(t testing.TB, files []string, control []byte, match func(string) bool) {
	t.Helper()
	var seen []string
	for _, f := range files {
		if !match(f) {
			continue
		}
		seen = append(seen, filepath.Base(f))
		b, err := os.ReadFile(f)
		if err != nil {
			t.Fatal(err)
		}
		if bytes.Contains(b, control) {
			return
		}
	}
	t.Fatalf("control string %q is in none of %v: the grep cannot see what Redis stores", control, seen)
}

// waitPersistence polls INFO persistence until every want line is there.
func waitPersistence(t testing.TB, c *redis.Client, want ...string) {
	t.Helper()
	deadline := time.Now().Add(30 * time.Second)
	for {
		info, err := c.Info(context.Background(), "persistence").Result()
		if err != nil {
			t.Fatal(err)
		}
		ok := true
		for _, w := range want {
			ok = ok && strings.Contains(info, w)
		}
		if ok {
			return
		}
		if time.Now().After(deadline) {
			t.Fatalf("Redis persistence never reached %v", want)
		}
		time.Sleep(50 * time.Millisecond)
	}
}
