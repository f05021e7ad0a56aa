package integration_test

import (
	"context"
	"errors"
	"fmt"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/jeton-dev/jeton/client"
	"github.com/jeton-dev/jeton/integration/testenv"
)

// replicaKeyRefresh is key_refresh in the multi-replica tests: how stale a
// replica's view of generations may be, and so the documented bound on
// how long a destroy on one replica takes to be honoured by the others.
const replicaKeyRefresh = 2 * time.Second

// boundSlack is what a bound measured across processes may exceed the
// documented one by: a refresh in flight when the destroy lands, and the
// scheduling of three jetond, three Redis and a Vault on two shared cores.
const boundSlack = 5 * time.Second

// TestReplicasShareState: three jetond processes on one Redis Cluster and
// one Vault, each with its own audit directory, behind a round_robin
// client. Every replica serves and audits its share; a budget of distinct
// records is one budget across replicas, not one per replica; the
// suspension it triggers and a custodian's reinstatement hold on every
// replica; a rotation made on one replica is used by all; and a destroy
// made on one is honoured by every other within key_refresh.
func TestReplicasShareState(t *testing.T) {
	cl := testenv.StartRedisCluster(t)
	v := startVaultEnv(t, false)
	d := startDeployment(t, 3, jetondOpts{RedisAddrs: cl.Addrs, Vault: v, Token: v.token(t, "jeton-jetond"), KeyRefresh: replicaKeyRefresh})
	ctx := context.Background()
	sponsor, ttp := d.Sponsor(t, "acme"), d.TTP(t)

	// Calls spread: 30 small calls each way, round robin over 3 replicas.
	gen1 := items(t, 0, 90)
	for i := 0; i < len(gen1); i += 3 {
		if err := tryTokenizeWith(sponsor, "acme", gen1[i:i+3]); err != nil {
			t.Fatalf("Tokenize through the round_robin client: %v", err)
		}
	}
	for i := 0; i < len(gen1); i += 3 {
		if err := tryDetokenizeWith(ttp, gen1[i:i+3]); err != nil {
			t.Fatalf("Detokenize through the round_robin client: %v", err)
		}
	}
	for i, h := range d.Replicas {
		if n := auditRecords(t, h.AuditDir); n < 5 {
			t.Errorf("replica %d audited %d records of 30 reveals spread over 3; want its share", i, n)
		}
		if code, out := verifyAudit(t, h); code != 0 {
			t.Errorf("replica %d: jeton audit verify exit %d: %s", i, code, out)
		}
	}

	t.Run("budget-and-suspension", func(t *testing.T) {
		limited := d.Limited(t)
		// One distinct record per call, so the calls go round the replicas.
		accepted, refusals := 0, 0
		for _, it := range gen1[:limitedDistinct+10] {
			_, err := limited.Detokenize(ctx, []string{it.Token}, purpose, caseRef)
			switch {
			case err == nil:
				accepted++
			case errors.Is(err, client.ErrResourceExhausted) || errors.Is(err, client.ErrPermissionDenied):
				refusals++
			default:
				t.Fatalf("a reveal over budget: %v; want RESOURCE_EXHAUSTED or PERMISSION_DENIED", err)
			}
		}
		t.Logf("limited identity: %d reveals accepted, %d refused, over 3 replicas", accepted, refusals)
		if accepted != limitedDistinct {
			t.Fatalf("%d distinct records revealed over 3 replicas; the budget is %d across all of them", accepted, limitedDistinct)
		}
		stats, err := d.Custodian(t, d.Replicas[2]).Stats(ctx)
		if err != nil {
			t.Fatal(err)
		}
		if !slices.Contains(stats.SuspendedIdentities, limitedID) {
			t.Fatalf("suspended identities %v; want %s after a sweep past its budget", stats.SuspendedIdentities, limitedID)
		}
		// Suspended everywhere, even for a record it has already seen.
		for i, h := range d.Replicas {
			if _, err := d.Limited(t, h).Detokenize(ctx, []string{gen1[0].Token}, purpose, caseRef); err == nil {
				t.Errorf("replica %d revealed to a suspended identity", i)
			}
		}
		if err := d.Custodian(t, d.Replicas[0]).ReinstateIdentity(ctx, limitedID, "IT-REINSTATE"); err != nil {
			t.Fatalf("ReinstateIdentity: %v", err)
		}
		for i, h := range d.Replicas {
			eventually(t, fmt.Sprintf("replica %d honouring the reinstatement", i), func() error {
				_, err := d.Limited(t, h).Detokenize(ctx, []string{gen1[0].Token}, purpose, caseRef)
				return err
			})
		}
	})

	t.Run("rotation-and-destroy", func(t *testing.T) {
		gen, err := d.Custodian(t, d.Replicas[0]).RotateGeneration(ctx, "acme")
		if err != nil || gen != 2 {
			t.Fatalf("RotateGeneration on replica 0 = %d, %v; want 2", gen, err)
		}
		// A generation may be destroyed once no replica can still be
		// writing to it: twice key_refresh after its successor began.
		time.Sleep(2*replicaKeyRefresh + 500*time.Millisecond)
		gen2 := items(t, 1000, 30)
		for i := 0; i < len(gen2); i += 3 {
			if err := tryTokenizeWith(sponsor, "acme", gen2[i:i+3]); err != nil {
				t.Fatalf("Tokenize after the rotation: %v", err)
			}
		}
		// Every replica has gen1's key cached: each reveals a gen1 token.
		for i, h := range d.Replicas {
			detokenizeAll(t, h, gen1[i:i+1])
		}

		destroyedAt := time.Now()
		if err := destroyGeneration(ctx, t, d, d.Replicas[1], "acme", 1); err != nil {
			t.Fatalf("DestroyGeneration on replica 1: %v", err)
		}
		// The destroying replica refuses at once; the others within
		// key_refresh.
		for _, i := range []int{1, 0, 2} {
			h := d.Replicas[i]
			var took time.Duration
			for {
				res, err := h.TTP(t).Detokenize(ctx, []string{gen1[i].Token}, purpose, caseRef)
				if err != nil {
					t.Fatalf("replica %d: Detokenize after the destroy: %v", i, err)
				}
				if errors.Is(res[0].Err, client.ErrNotFound) && res[0].Value == "" {
					took = time.Since(destroyedAt)
					break
				}
				if res[0].Value != "" && res[0].Value != gen1[i].Value {
					t.Fatalf("replica %d revealed a wrong value", i)
				}
				if i == 1 {
					t.Fatal("the replica that destroyed generation 1 still reveals its tokens")
				}
				if time.Since(destroyedAt) > replicaKeyRefresh+boundSlack {
					t.Fatalf("replica %d still reveals a destroyed generation's token %s after the destroy; the bound is key_refresh (%s)",
						i, time.Since(destroyedAt).Round(time.Millisecond), replicaKeyRefresh)
				}
				time.Sleep(50 * time.Millisecond)
			}
			t.Logf("replica %d refuses generation 1 %s after the destroy returned (key_refresh %s)", i, took.Round(time.Millisecond), replicaKeyRefresh)
		}
		// Generation 2 was used by every replica: all its tokens still
		// reveal, on every replica.
		for _, h := range d.Replicas {
			detokenizeAll(t, h, gen2)
		}
	})
}

// tryTokenizeWith tokenizes its through c and fills in the tokens.
func tryTokenizeWith(c *client.Client, tenant string, its []item) error {
	in := make([]client.Item, len(its))
	for i, it := range its {
		in[i] = client.Item{Class: it.Class, Value: it.Value}
	}
	res, err := c.Tokenize(context.Background(), in)
	if err != nil {
		return err
	}
	for i, r := range res {
		if r.Err != nil {
			return r.Err
		}
		if !strings.HasPrefix(r.Token, "tok_"+its[i].Class+"_"+tenant+"_") {
			return fmt.Errorf("item %d: token of the wrong shape", i)
		}
		its[i].Token = r.Token
	}
	return nil
}

// tryDetokenizeWith reveals its through c and reports the first problem,
// naming no value.
func tryDetokenizeWith(c *client.Client, its []item) error {
	toks := make([]string, len(its))
	for i, it := range its {
		toks[i] = it.Token
	}
	res, err := c.Detokenize(context.Background(), toks, purpose, caseRef)
	if err != nil {
		return err
	}
	for i, r := range res {
		if r.Err != nil {
			return fmt.Errorf("item %d: %w", i, r.Err)
		}
		if r.Value != its[i].Value {
			return fmt.Errorf("%w: item %d", errPartial, i)
		}
	}
	return nil
}
