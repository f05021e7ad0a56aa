package redisstore_test

import (
	"context"
	"errors"
	"testing"
	"time"

	"github.com/redis/go-redis/v9"

	"github.com/jeton-dev/jeton/integration/testenv"
	"github.com/jeton-dev/jeton/tokenizer"
	"github.com/jeton-dev/jeton/tokenizer/localkeys"
	"github.com/jeton-dev/jeton/tokenizer/redisstore"
)

// redisKeys lists the keys of a real Redis that match pattern.
func redisKeys(t testing.TB, c *redis.Client, pattern string) []string {
	t.Helper()
	ks, err := c.Keys(context.Background(), pattern).Result()
	if err != nil {
		t.Fatalf("KEYS %s: %v", pattern, err)
	}
	return ks
}

// A record of a class whose end date has come is deleted by Redis itself,
// not just hidden, and reveals as unknown. The end date is set a moment
// ahead, so the test waits about a second and a half, with a bound.
func TestRetentionEndDateExpiresInRedis(t *testing.T) {
	r := testenv.StartRedis(t)
	store := newStore(t, redisstore.Config{Addrs: []string{r.Addr}})
	raw := redis.NewClient(&redis.Options{Addr: r.Addr})
	t.Cleanup(func() { _ = raw.Close() })
	km, err := localkeys.New(true)
	if err != nil {
		t.Fatal(err)
	}
	until := time.Now().Add(1500 * time.Millisecond)
	tz, err := tokenizer.New(tokenizer.Config{Keys: km, Store: store, Classes: []tokenizer.Class{
		{Name: "name", RetainUntil: until, Retention: time.Hour},
		{Name: "text"},
	}})
	if err != nil {
		t.Fatal(err)
	}
	ctx := context.Background()
	res, err := tz.Tokenize(ctx, "acme", []tokenizer.Item{
		{Class: "name", Value: "Anne Testperson", Subject: "guest-0001"},
		{Class: "text", Value: "kept fake note"},
	}, "")
	if err != nil || res[0].Err != nil || res[1].Err != nil {
		t.Fatalf("Tokenize: %v %v", err, res)
	}
	toks := make([]tokenizer.Token, 2)
	for i, r := range res {
		if toks[i], err = tokenizer.ParseToken(r.Token); err != nil {
			t.Fatal(err)
		}
	}
	records := redisKeys(t, raw, "jeton:r:acme:*")
	if len(records) != 2 {
		t.Fatalf("Redis holds %d records of the tenant; want 2", len(records))
	}
	var expiring string
	for _, k := range records {
		ttl, err := raw.PTTL(ctx, k).Result()
		if err != nil {
			t.Fatal(err)
		}
		if ttl > 0 {
			expiring = k
			// The TTL counts from when Redis got the write, a moment
			// after the tokenizer computed it.
			if left := time.Until(until); ttl > left+100*time.Millisecond {
				t.Errorf("record TTL %v outlives the end date, %v away", ttl, left)
			}
		}
	}
	if expiring == "" {
		t.Fatal("no record has a TTL in Redis")
	}

	deadline := time.Now().Add(10 * time.Second)
	for {
		n, err := raw.Exists(ctx, expiring).Result()
		if err != nil {
			t.Fatal(err)
		}
		if n == 0 {
			break
		}
		if time.Now().After(deadline) {
			t.Fatal("the record is still in Redis 10s after its end date")
		}
		time.Sleep(50 * time.Millisecond)
	}
	if ks := redisKeys(t, raw, "jeton:s:acme:*"); len(ks) != 0 {
		t.Errorf("the subject index outlived its only record: %d left", len(ks))
	}
	out, err := tz.Reveal(ctx, toks)
	if err != nil {
		t.Fatal(err)
	}
	if !errors.Is(out[0].Err, tokenizer.ErrNotFound) {
		t.Errorf("expired token: %v; want ErrNotFound", out[0].Err)
	}
	if out[1].Err != nil || out[1].Value != "kept fake note" {
		t.Errorf("token without retention: %v; want its value", out[1].Err)
	}
}
