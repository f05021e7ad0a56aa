package integration_test

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"io"
	"slices"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/jeton-dev/jeton/client"
	"github.com/jeton-dev/jeton/integration/testenv"
	jetonv1 "github.com/jeton-dev/jeton/proto/jeton/v1"
	"github.com/jeton-dev/jeton/tokenizer"
	"github.com/jeton-dev/jeton/tokenizer/redisstore"
	"github.com/jeton-dev/jeton/tokenizer/vaultkeys"
)

const kekPath = "transit/keys/" + vaultkeys.DefaultKey

// TestKEKRotationRewrapRetire: a custodian rotates jeton's KEKs in Vault
// (the main KEK and any per-generation KEK), the stored keys are
// rewrapped, and the custodian then retires the old versions
// (min_decryption_version = latest). Old and new tokens still detokenize
// after restarts, which empty jetond's key cache and force fresh unwraps;
// and Vault really refuses the old version, so the test is not vacuous.
func TestKEKRotationRewrapRetire(t *testing.T) {
	r := testenv.StartRedis(t)
	v := startVaultEnv(t, false)
	jetondToken := v.token(t, vaultkeys.PolicyJetond)
	custodian := v.client(t, v.token(t, vaultkeys.PolicyCustodian))
	h := startJetond(t, jetondOpts{RedisAddrs: []string{r.Addr}, Vault: v, Token: jetondToken, Tenants: []string{"acme", "beta"}})
	ctx := context.Background()

	old := items(t, 0, 700)
	tokenize(t, h, "acme", old)
	oldRoots := rootKeys(t, r)
	if len(oldRoots) != 2 { // the system keyring's and acme's
		t.Fatalf("Redis holds %d wrapped root keys, want 2", len(oldRoots))
	}
	wantKEKVersion(t, oldRoots, 1)

	rotated := jetonKEKs(t, v)
	for _, k := range rotated {
		if _, err := custodian.Logical().Write("transit/keys/"+k+"/rotate", nil); err != nil {
			t.Fatalf("custodian: rotate %s: %v", k, err)
		}
	}
	t.Logf("custodian rotated %v", rotated)
	rewrap(t, h)
	wantKEKVersion(t, rootKeys(t, r), 2)

	h.Restart(t)
	newer := items(t, 700, 700)
	tokenize(t, h, "acme", newer[:350])
	tokenize(t, h, "beta", newer[350:]) // a tenant born after the rotation
	detokenizeAll(t, h, old)

	for _, k := range jetonKEKs(t, v) {
		s, err := custodian.Logical().Read("transit/keys/" + k)
		if err != nil || s == nil {
			t.Fatalf("custodian: read %s: %v", k, err)
		}
		latest, err := s.Data["latest_version"].(json.Number).Int64()
		if err != nil {
			t.Fatalf("%s: latest_version: %v", k, err)
		}
		if slices.Contains(rotated, k) && latest < 2 {
			t.Fatalf("%s: latest_version %d after a rotation", k, latest)
		}
		if _, err := custodian.Logical().Write("transit/keys/"+k+"/config", map[string]any{"min_decryption_version": latest}); err != nil {
			t.Fatalf("custodian: raise min_decryption_version of %s: %v", k, err)
		}
	}
	// Vault now refuses what was wrapped under version 1: jetond's own
	// key, which it needs to start, included.
	jc := v.client(t, jetondToken)
	for name, w := range oldRoots {
		_, err := jc.Logical().WriteWithContext(ctx, "transit/decrypt/"+vaultkeys.DefaultKey, map[string]any{"ciphertext": w})
		if err == nil || !strings.Contains(err.Error(), "too old") {
			t.Fatalf("Vault decrypted the pre-rotation wrapping of %s after min_decryption_version=2 (err %v)", name, err)
		}
	}

	h.Restart(t)
	detokenizeAll(t, h, old)
	detokenizeAll(t, h, newer)
	wantKEKVersion(t, rootKeys(t, r), 2)
}

// TestKEKRetiredWithoutRewrap is the control: without a rewrap, retiring
// the old KEK version loses the keys wrapped under it. jetond fails closed:
// it refuses to start when its own system key is gone, and a tenant whose
// keys are gone gets UNAVAILABLE, never a value.
func TestKEKRetiredWithoutRewrap(t *testing.T) {
	r := testenv.StartRedis(t)
	v := startVaultEnv(t, false)
	jetondToken := v.token(t, vaultkeys.PolicyJetond)
	custodian := v.client(t, v.token(t, vaultkeys.PolicyCustodian))
	h := startJetond(t, jetondOpts{RedisAddrs: []string{r.Addr}, Vault: v, Token: jetondToken})
	old := items(t, 0, 50)
	tokenize(t, h, "acme", old)
	h.Stop(t)

	if _, err := custodian.Logical().Write(kekPath+"/rotate", nil); err != nil {
		t.Fatal(err)
	}
	minVersion := func(t *testing.T, ver int) {
		t.Helper()
		if _, err := custodian.Logical().Write(kekPath+"/config", map[string]any{"min_decryption_version": ver}); err != nil {
			t.Fatalf("custodian: min_decryption_version=%d: %v", ver, err)
		}
	}

	t.Run("nothing-rewrapped", func(t *testing.T) {
		// The audit key derives from the system root key, wrapped under
		// version 1: jetond cannot start, and says why.
		minVersion(t, 2)
		h.start(t)
		if code := h.waitExit(t, exitTimeout); code == 0 {
			t.Fatal("jetond exited 0; want a refusal to start")
		}
		out := h.Log()
		for _, want := range []string{"jetond: ", "min_decryption_version"} {
			if !strings.Contains(out, want) {
				t.Errorf("jetond's output lacks %q:\n%s", want, tail(out, 10))
			}
		}
		minVersion(t, 1) // nothing was trimmed: version 1 can come back
	})

	t.Run("tenant-keys-lost", func(t *testing.T) {
		// Rewrap only the system keyring (no tenant), then retire version
		// 1: jetond starts, but acme's keys are lost with it.
		tz := replica(t, r, v, jetondToken)
		if _, err := tz.Rewrap(context.Background(), nil, nil); err != nil {
			t.Fatalf("Rewrap(no tenant): %v", err)
		}
		roots := rootKeys(t, r)
		wantKEKVersion(t, map[string]string{"system": roots["jeton:k:_system:root"]}, 2)
		wantKEKVersion(t, map[string]string{"acme": roots["jeton:k:acme:root"]}, 1)
		minVersion(t, 2)
		h.start(t)
		h.waitReady(t)
		ctx := context.Background()
		toks := []string{old[0].Token, old[1].Token}
		res, err := h.TTP(t).Detokenize(ctx, toks, purpose, caseRef)
		if err == nil {
			// Also fail-closed: each token as unknown, with no value.
			for i, r := range res {
				if !errors.Is(r.Err, client.ErrNotFound) || r.Value != "" {
					t.Fatalf("Detokenize of a token whose keys were retired: item %d err = %v, value set = %t", i, r.Err, r.Value != "")
				}
			}
			t.Log("Detokenize: each token NOT_FOUND")
		} else {
			wantUnavailable(t, "Detokenize of tokens whose keys were retired", res, err)
			t.Log("Detokenize: UNAVAILABLE")
		}
		in := items(t, 1000, 1)
		tres, err := h.Sponsor(t, "acme").Tokenize(ctx, []client.Item{{Class: in[0].Class, Value: in[0].Value}})
		wantUnavailable(t, "Tokenize for a tenant whose keys were retired", tres, err)
	})
}

// jetonKEKs lists jeton's Transit keys, the main KEK and the
// per-generation ones named after it, as an operator with a broader token
// than the custodian's would.
func jetonKEKs(t testing.TB, v *vaultEnv) []string {
	t.Helper()
	s, err := v.Root.Logical().List("transit/keys")
	if err != nil || s == nil {
		t.Fatalf("list Transit keys: %v", err)
	}
	keys, _ := s.Data["keys"].([]any)
	var out []string
	for _, k := range keys {
		name, _ := k.(string)
		if name == vaultkeys.DefaultKey || strings.HasPrefix(name, vaultkeys.DefaultKey+"-") {
			out = append(out, name)
		}
	}
	slices.Sort(out)
	return out
}

// rewrap rewraps every stored key under the newest KEK versions through
// Admin.Rewrap, as a custodian, and requires the last progress message to
// say every key was done.
func rewrap(t testing.TB, h *jetond) {
	t.Helper()
	conn := h.dial(t, h.TrustedAddr, h.pki.CustodianCert, h.pki.CustodianKey)
	defer conn.Close()
	ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
	defer cancel()
	stream, err := jetonv1.NewAdminClient(conn).Rewrap(ctx, &jetonv1.RewrapRequest{})
	if err != nil {
		t.Fatalf("Admin.Rewrap: %v", err)
	}
	var last *jetonv1.RewrapResponse
	for {
		m, err := stream.Recv()
		if errors.Is(err, io.EOF) {
			break
		}
		if err != nil {
			t.Fatalf("Admin.Rewrap: %v", err)
		}
		last = m
	}
	if last == nil || last.GetTotal() == 0 || last.GetDone() != last.GetTotal() {
		t.Fatalf("Admin.Rewrap ended with progress %v; want done == total > 0", last)
	}
	t.Logf("Admin.Rewrap: %d of %d keys", last.GetDone(), last.GetTotal())
}

// replica is a second jeton replica in this process: a Tokenizer on the
// same Redis and Vault, authenticated with jetond's token.
func replica(t testing.TB, r *testenv.Redis, v *vaultEnv, token string) *tokenizer.Tokenizer {
	t.Helper()
	rc, err := redisstore.NewClient(redisstore.Config{Addrs: []string{r.Addr}})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = rc.Close() })
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	km, err := vaultkeys.New(ctx, v.client(t, token), vaultkeys.Config{})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(km.Close)
	tz, err := tokenizer.New(tokenizer.Config{Classes: tokenizer.DefaultClasses(), Keys: km, Store: redisstore.New(rc)})
	if err != nil {
		t.Fatal(err)
	}
	return tz
}

// rootKeys returns the Vault ciphertext of every root key jeton keeps in
// Redis (jeton:k:<keyring>:root), by key name. Root keys are wrapped by the
// main KEK; the ciphertext is found by its "vault:v" prefix, whatever the
// blob's own version.
func rootKeys(t testing.TB, r *testenv.Redis) map[string]string {
	t.Helper()
	ctx := context.Background()
	c := r.Client(t)
	keys, err := c.Keys(ctx, "jeton:k:*:root").Result()
	if err != nil {
		t.Fatal(err)
	}
	out := map[string]string{}
	for _, k := range keys {
		b, err := c.Get(ctx, k).Bytes()
		if err != nil {
			t.Fatal(err)
		}
		i := bytes.Index(b, []byte("vault:v"))
		if i < 0 {
			t.Fatalf("%s holds no Vault ciphertext", k)
		}
		out[k] = string(b[i:])
	}
	return out
}

// wantKEKVersion requires every wrapped key to be wrapped under KEK
// version ver.
func wantKEKVersion(t testing.TB, wrapped map[string]string, ver int) {
	t.Helper()
	prefix := "vault:v" + strconv.Itoa(ver) + ":"
	for k, w := range wrapped {
		if !strings.HasPrefix(w, prefix) {
			got, _, _ := strings.Cut(strings.TrimPrefix(w, "vault:"), ":")
			t.Errorf("%s is wrapped under KEK %s, want v%d", k, got, ver)
		}
	}
	if t.Failed() {
		t.FailNow()
	}
}
