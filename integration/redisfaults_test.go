package integration_test

import (
	"context"
	"slices"
	"testing"

	"github.com/jeton-dev/jeton/client"
	"github.com/jeton-dev/jeton/integration/testenv"
)

// TestRedisKilled: with Redis killed (kill -9), Tokenize and Detokenize
// fail with UNAVAILABLE and return no result at all; once Redis is back
// (replaying its AOF) both work again in the same jetond process, and every
// token acknowledged before the kill still detokenizes.
func TestRedisKilled(t *testing.T) {
	r := testenv.StartRedis(t)
	v := startVaultEnv(t, false)
	h := startJetond(t, jetondOpts{RedisAddrs: []string{r.Addr}, Vault: v, Token: v.token(t, "jeton-jetond")})
	ctx := context.Background()
	before := items(t, 0, 70)
	tokenize(t, h, "acme", before)
	detokenizeAll(t, h, before) // keys cached: only Redis is missing below
	pid := h.Pid()

	r.Kill()
	fresh := items(t, 100, 7)
	in := make([]client.Item, len(fresh))
	for i, it := range fresh {
		in[i] = client.Item{Class: it.Class, Value: it.Value}
	}
	tres, err := h.Sponsor(t, "acme").Tokenize(ctx, in)
	wantUnavailable(t, "Tokenize with Redis down", tres, err)
	toks := make([]string, len(before))
	for i, it := range before {
		toks[i] = it.Token
	}
	res, err := h.TTP(t).Detokenize(ctx, toks, purpose, caseRef)
	wantUnavailable(t, "Detokenize with Redis down", res, err)

	r.Start()
	eventually(t, "Tokenize after Redis is back", func() error { return tryTokenize(t, h, "acme", fresh) })
	eventually(t, "Detokenize after Redis is back", func() error { return tryDetokenize(t, h, before) })
	detokenizeAll(t, h, append(slices.Clone(before), fresh...))
	if h.Pid() != pid {
		t.Fatal("jetond was restarted")
	}
}
