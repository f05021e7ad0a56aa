package integration_test

import (
	"context"
	"encoding/base64"
	"fmt"
	"testing"
	"time"

	"github.com/redis/go-redis/v9"

	"github.com/jeton-dev/jeton/integration/testenv"
	"github.com/jeton-dev/jeton/tokenizer"
	"github.com/jeton-dev/jeton/tokenizer/redisstore"
	"github.com/jeton-dev/jeton/tokenizer/vaultkeys"
)

// BenchmarkTokenizeVsBaselines measures batched tokenization on a real
// Redis and a real Vault against the baselines DESIGN §10 names, each run
// in the same iteration on the same servers, and reports ratios rather than
// absolute speeds (the machines are shared and noisy):
//
//   - x_raw_redis: tokenize items/s over raw pipelined SETs of the same
//     number and size (target >= 0.5);
//   - x_vault_batch: over Vault Transit encrypt with batch_input, which
//     stores nothing (target >= 1);
//   - x_vault_per_field: over one Vault Transit encrypt call per field, the
//     design jeton replaces (target >= 25).
//
// It runs once with appendfsync always and once with everysec, which is the
// cost of never losing an acknowledged token.
func BenchmarkTokenizeVsBaselines(b *testing.B) {
	const batch = 1000
	const perFieldSample = 50 // per-field Vault calls are slow; sample them
	v := startVaultEnv(b, false)
	if _, err := v.Root.Logical().Write("transit/keys/bench-baseline", map[string]any{"type": "aes256-gcm96"}); err != nil {
		b.Fatal(err)
	}
	for _, fsync := range []string{"always", "everysec"} {
		b.Run("appendfsync="+fsync, func(b *testing.B) {
			r := testenv.StartRedis(b, testenv.WithAppendFsync(fsync))
			rc, err := redisstore.NewClient(redisstore.Config{Addrs: []string{r.Addr}})
			if err != nil {
				b.Fatal(err)
			}
			defer rc.Close()
			ctx := context.Background()
			km, err := vaultkeys.New(ctx, v.client(b, v.token(b, vaultkeys.PolicyJetond)), vaultkeys.Config{})
			if err != nil {
				b.Fatal(err)
			}
			defer km.Close()
			tz, err := tokenizer.New(tokenizer.Config{Classes: tokenizer.DefaultClasses(), Keys: km, Store: redisstore.New(rc)})
			if err != nil {
				b.Fatal(err)
			}
			raw := r.Client(b)
			items := make([]tokenizer.Item, batch)
			batchInput := make([]map[string]any, batch)
			for i := range items {
				items[i] = tokenizer.Item{Class: "name", Value: fmt.Sprintf("Bench Person %06d", i)}
				batchInput[i] = map[string]any{"plaintext": base64.StdEncoding.EncodeToString([]byte(items[i].Value))}
			}
			// Warm the tenant's keys: the first call creates and unwraps them.
			if _, err := tz.Tokenize(ctx, "bench", items[:1], ""); err != nil {
				b.Fatal(err)
			}
			value := make([]byte, 64) // about a sealed record's size
			var tTok, tRaw, tBatch, tField time.Duration
			b.ResetTimer()
			for n := 0; n < b.N; n++ {
				start := time.Now()
				res, err := tz.Tokenize(ctx, "bench", items, "")
				tTok += time.Since(start)
				if err != nil || res[batch-1].Err != nil {
					b.Fatalf("tokenize: %v", err)
				}

				start = time.Now()
				_, err = raw.Pipelined(ctx, func(p redis.Pipeliner) error {
					for i := 0; i < batch; i++ {
						p.Set(ctx, fmt.Sprintf("bench:raw:%d:%d", n, i), value, 0)
					}
					return nil
				})
				tRaw += time.Since(start)
				if err != nil {
					b.Fatal(err)
				}

				start = time.Now()
				_, err = v.Root.Logical().Write("transit/encrypt/bench-baseline", map[string]any{"batch_input": batchInput})
				tBatch += time.Since(start)
				if err != nil {
					b.Fatal(err)
				}

				start = time.Now()
				for i := 0; i < perFieldSample; i++ {
					if _, err := v.Root.Logical().Write("transit/encrypt/bench-baseline", batchInput[i]); err != nil {
						b.Fatal(err)
					}
				}
				tField += time.Since(start)
			}
			b.StopTimer()
			rate := func(items int, d time.Duration) float64 { return float64(items) * float64(b.N) / d.Seconds() }
			tok := rate(batch, tTok)
			b.ReportMetric(tok, "tokenize_items/s")
			b.ReportMetric(rate(batch, tRaw), "raw_redis_items/s")
			b.ReportMetric(tok/rate(batch, tRaw), "x_raw_redis")
			b.ReportMetric(tok/rate(batch, tBatch), "x_vault_batch")
			b.ReportMetric(tok/rate(perFieldSample, tField), "x_vault_per_field")
		})
	}
}
