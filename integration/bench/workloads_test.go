package bench_test

import (
	"context"
	"encoding/binary"
	"errors"
	"fmt"
	"strconv"
	"strings"
	"testing"

	"github.com/redis/go-redis/v9"
	healthpb "google.golang.org/grpc/health/grpc_health_v1"

	jetonv1 "github.com/jeton-dev/jeton/proto/jeton/v1"
)

// Workload keys that the ratios name.
const (
	kHealthPub16 = "health-public-c16"
	kHealthPub64 = "health-public-c64"
	kHealthTru64 = "health-trusted-c64"
	kTokRand16   = "tokenize-1-random-c16"
	kTokRand64   = "tokenize-1-random-c64"
	kTokDet16    = "tokenize-1-deterministic-c16"
	kTokDet64    = "tokenize-1-deterministic-c64"
	kRawSet64    = "redis-set-c64"
	kInprocUnary = "inprocess-tokenize-1-c64"
	kRawPipe1000 = "redis-set-pipelined-1000-c4"
	// kRawPipeSmallest stores records of the smallest size jeton could write.
	kRawPipeSmallest = "redis-set-pipelined-smallest-1000-c4"
	kInprocBatch     = "inprocess-tokenize-1000-idem-c4"
	kVaultBatch100   = "vault-batch-100-c4"
	kVaultBatch1k    = "vault-batch-1000-c4"
	kVaultField      = "vault-encrypt-1-c64"
	kDetok64         = "detokenize-1-c64"
	kRawGet100       = "redis-get-pipelined-100-c8"
	kDetok100        = "detokenize-100-c8"
	kMixed           = "mixed-80-20-c64"
	kAlways          = "-always" // suffix of the appendfsync always pass
)

// smallestRecord is the length of the smallest v3 envelope: its fixed
// header, a one-letter class, the nonce, the smallest padded body and the
// tag (tokenizer/envelope.go).
const smallestRecord = 6 + 1 + 12 + 32 + 16

// kBatch names batched Tokenize of n items at concurrency c.
func kBatch(n, c int, idem bool) string {
	k := fmt.Sprintf("tokenize-%d-c%d", n, c)
	if idem {
		k += "-idem"
	}
	return k
}

// workloads returns one round's workloads in the order they run: each of
// jeton's next to the baselines it is compared with, then the
// appendfsync always pass.
func workloads(d *deployment, f *fixtures) []workload {
	var ws []workload
	add := func(w workload) { ws = append(ws, w) }

	health := func(hc healthpb.HealthClient) callFunc {
		return func(ctx context.Context, _ int) (int, int, error) {
			r, err := hc.Check(ctx, &healthpb.HealthCheckRequest{})
			if err == nil && r.GetStatus() != healthpb.HealthCheckResponse_SERVING {
				err = errors.New("not SERVING")
			}
			return ok1(err)
		}
	}
	unary := func(class string) callFunc {
		return func(ctx context.Context, _ int) (int, int, error) {
			id := int(f.next.Add(1))
			v := f.values["name"][id%valuesPerClass]
			if class != "name" {
				v = "lookup." + strconv.Itoa(id) + "@example.test" // a new value each call
			}
			// The client library sends an idempotency key with every call.
			resp, err := d.tok.Tokenize(ctx, &jetonv1.TokenizeRequest{
				Items:          []*jetonv1.TokenizeItem{{FieldClass: class, Value: v}},
				IdempotencyKey: "call-" + strconv.Itoa(id),
			})
			return tokenized(resp, err)
		}
	}
	batch := func(n int, idem bool) callFunc {
		return func(ctx context.Context, _ int) (int, int, error) {
			return tokenized(d.tok.Tokenize(ctx, f.tokenizeRequest(int(f.next.Add(1)), n, idem, true)))
		}
	}
	detok := func(n int) callFunc {
		return func(ctx context.Context, seq int) (int, int, error) {
			toks := make([]string, n)
			for i := range toks {
				toks[i] = f.tokens[(seq*n+i)%len(f.tokens)]
			}
			resp, err := d.detok.Detokenize(ctx, &jetonv1.DetokenizeRequest{Tokens: toks, Purpose: purpose, CaseRef: caseRef})
			if err != nil {
				return 0, n, err
			}
			ok := 0
			for _, r := range resp.GetResults() {
				if r.GetError() == nil && r.GetValue() != "" {
					ok++
				}
			}
			return ok, n - ok, nil
		}
	}
	rawSet := func(ctx context.Context, _ int) (int, int, error) {
		return ok1(d.rdb.Set(ctx, f.rawKey("bench:raw:", f.next.Add(1)), f.rawValue, retention).Err())
	}
	rawPipe := func(n int) callFunc {
		return func(ctx context.Context, _ int) (int, int, error) {
			id := f.next.Add(1) * int64(n)
			_, err := d.rdb.Pipelined(ctx, func(p redis.Pipeliner) error {
				for i := range int64(n) {
					p.Set(ctx, f.rawKey("bench:raw:", id+i), f.rawValue, retention)
				}
				return nil
			})
			return okN(n, err)
		}
	}
	// rawPipeSmallest stores the smallest record jeton could write as a
	// Redis key with a TTL, as the memory target needs one per
	// value (DESIGN: retention is a Redis TTL per record): the smallest v3
	// envelope (a one-letter class, a nonce, the smallest padded body and
	// a tag) under a bare 16-byte name, 128 bits and no prefix. Its bytes
	// per value are the floor of any record encoding and naming.
	smallest := make([]byte, smallestRecord)
	rawPipeSmallest := func(n int) callFunc {
		return func(ctx context.Context, _ int) (int, int, error) {
			id := f.next.Add(1) * int64(n)
			_, err := d.rdb.Pipelined(ctx, func(p redis.Pipeliner) error {
				for i := range int64(n) {
					var k [16]byte
					binary.BigEndian.PutUint64(k[8:], uint64(id+i))
					p.Set(ctx, string(k[:]), smallest, retention)
				}
				return nil
			})
			return okN(n, err)
		}
	}
	rawGet := func(n int) callFunc {
		return func(ctx context.Context, seq int) (int, int, error) {
			cmds, err := d.rdb.Pipelined(ctx, func(p redis.Pipeliner) error {
				for i := range n {
					p.Get(ctx, f.rawKeys[(seq*n+i)%len(f.rawKeys)])
				}
				return nil
			})
			if err != nil {
				return 0, n, err
			}
			ok := 0
			for _, c := range cmds {
				if b, err := c.(*redis.StringCmd).Bytes(); err == nil && len(b) == len(f.rawValue) {
					ok++
				}
			}
			return ok, n - ok, nil
		}
	}
	vaultField := func(ctx context.Context, seq int) (int, int, error) {
		_, err := d.vroot.Logical().WriteWithContext(ctx, "transit/encrypt/"+baselineKey, f.vaultField[seq%len(f.vaultField)])
		return ok1(err)
	}
	vaultBatch := func(n int) callFunc {
		return func(ctx context.Context, _ int) (int, int, error) {
			s, err := d.vroot.Logical().WriteWithContext(ctx, "transit/encrypt/"+baselineKey, f.vaultBatch[n])
			if err == nil {
				if res, _ := s.Data["batch_results"].([]any); len(res) != n {
					err = fmt.Errorf("%d batch results for %d", len(res), n)
				}
			}
			return okN(n, err)
		}
	}
	inprocUnary := func(ctx context.Context, _ int) (int, int, error) {
		id := int(f.next.Add(1))
		res, err := d.inproc.Tokenize(ctx, inprocTenant, f.items(id, 1, false), "call-"+strconv.Itoa(id))
		if err != nil {
			return 0, 1, err
		}
		return ok1(res[0].Err)
	}
	inprocBatch := func(n int) callFunc {
		return func(ctx context.Context, _ int) (int, int, error) {
			id := int(f.next.Add(1))
			res, err := d.inproc.Tokenize(ctx, inprocTenant, f.items(id, n, true), "call-"+strconv.Itoa(id))
			if err != nil {
				return 0, n, err
			}
			ok := 0
			for _, r := range res {
				if r.Err == nil {
					ok++
				}
			}
			return ok, n - ok, nil
		}
	}
	mixedTok, mixedDetok := unary("name"), detok(1)
	mixed := func(ctx context.Context, seq int) (int, int, error) {
		if seq%5 == 4 {
			return mixedDetok(ctx, seq/5)
		}
		return mixedTok(ctx, seq)
	}

	jeton := func(key, name string, conc, per int, stores bool, call callFunc) workload {
		return workload{key: key, name: name, conc: conc, perCall: per, cpu: cpuJetond, redis: true, stores: stores, profile: true, call: call}
	}
	// Unary calls against the transport floor and a raw Redis write.
	add(workload{key: kHealthPub16, name: "baseline: gRPC health Check, public listener", conc: 16, perCall: 1, cpu: cpuJetond, call: health(d.pubHealth)})
	add(jeton(kTokRand16, "Tokenize 1 item, random class", 16, 1, true, unary("name")))
	add(jeton(kTokDet16, "Tokenize 1 item, deterministic class", 16, 1, true, unary("email-det")))
	add(workload{key: kHealthPub64, name: "baseline: gRPC health Check, public listener", conc: 64, perCall: 1, cpu: cpuJetond, call: health(d.pubHealth)})
	add(jeton(kTokRand64, "Tokenize 1 item, random class", 64, 1, true, unary("name")))
	add(jeton(kTokDet64, "Tokenize 1 item, deterministic class", 64, 1, true, unary("email-det")))
	add(workload{key: kRawSet64, name: "baseline: Redis SET, one per call", conc: 64, perCall: 1, redis: true, stores: true, call: rawSet})
	add(workload{key: kInprocUnary, name: "baseline: tokenizer in process, 1 item", conc: 64, perCall: 1, cpu: cpuSelf, redis: true, stores: true, call: inprocUnary})
	// Batches against pipelined Redis and Vault's batch encryption.
	for _, n := range []int{100, 1000} {
		if n == 1000 {
			add(workload{key: kRawPipe1000, name: "baseline: Redis SET pipelined", conc: 4, perCall: 1000, redis: true, stores: true, call: rawPipe(1000)})
			add(workload{key: kRawPipeSmallest, name: "baseline: Redis SET pipelined, the smallest possible record (16 B key, 67 B value)", conc: 4, perCall: 1000, redis: true, stores: true, call: rawPipeSmallest(1000)})
		}
		for _, c := range []int{4, 8} {
			for _, idem := range []bool{true, false} {
				name := "Tokenize " + fmtInt(float64(n)) + " items"
				if idem {
					name += ", idempotency key"
				}
				add(jeton(kBatch(n, c, idem), name, c, n, true, batch(n, idem)))
			}
		}
	}
	add(workload{key: kInprocBatch, name: "baseline: tokenizer in process, idempotency key", conc: 4, perCall: 1000, cpu: cpuSelf, redis: true, stores: true, call: inprocBatch(1000)})
	add(workload{key: kVaultBatch1k, name: "baseline: Vault Transit encrypt, batch_input", conc: 4, perCall: 1000, call: vaultBatch(1000)})
	add(workload{key: kVaultBatch100, name: "baseline: Vault Transit encrypt, batch_input", conc: 4, perCall: 100, call: vaultBatch(100)})
	add(workload{key: kVaultField, name: "baseline: Vault Transit encrypt, one field per call", conc: 64, perCall: 1, call: vaultField})
	// Reveals, with audit, against the trusted listener's floor and raw reads.
	add(workload{key: kHealthTru64, name: "baseline: gRPC health Check, trusted listener", conc: 64, perCall: 1, cpu: cpuJetond, call: health(d.truHealth)})
	add(jeton(kDetok64, "Detokenize 1 token", 64, 1, false, detok(1)))
	add(workload{key: kRawGet100, name: "baseline: Redis GET pipelined", conc: 8, perCall: 100, redis: true, call: rawGet(100)})
	add(jeton(kDetok100, "Detokenize 100 tokens", 8, 100, false, detok(100)))
	add(jeton(kMixed, "mixed: 80% Tokenize 1, 20% Detokenize 1", 64, 1, false, mixed))
	// What never losing an acknowledged token costs.
	for _, w := range []workload{ws[indexOf(ws, kRawSet64)], ws[indexOf(ws, kTokRand64)], ws[indexOf(ws, kRawPipe1000)], ws[indexOf(ws, kBatch(1000, 4, true))]} {
		w.key += kAlways
		w.name += " [appendfsync always]"
		w.always = true
		w.profile = false
		add(w)
	}
	return ws
}

func indexOf(ws []workload, key string) int {
	for i, w := range ws {
		if w.key == key {
			return i
		}
	}
	panic("no workload " + key)
}

// tokenized counts a Tokenize response's tokens and item errors.
func tokenized(resp *jetonv1.TokenizeResponse, err error) (int, int, error) {
	if err != nil {
		return 0, 0, err
	}
	ok := 0
	for _, r := range resp.GetResults() {
		if r.GetError() == nil && r.GetToken() != "" {
			ok++
		}
	}
	return ok, len(resp.GetResults()) - ok, nil
}

func ok1(err error) (int, int, error) { return okN(1, err) }

func okN(n int, err error) (int, int, error) {
	if err != nil {
		return 0, n, err
	}
	return n, 0, nil
}

// onlyWorkloads keeps the workloads of ws named in keys (comma-separated),
// in their order; a name that is no workload fails the run.
func onlyWorkloads(t *testing.T, ws []workload, keys string) []workload {
	t.Helper()
	want := map[string]bool{}
	for _, k := range strings.Split(keys, ",") {
		if k = strings.TrimSpace(k); k != "" {
			want[k] = true
		}
	}
	var out []workload
	for _, w := range ws {
		if want[w.key] {
			out = append(out, w)
			delete(want, w.key)
		}
	}
	for k := range want {
		t.Fatalf("-jeton.bench.only: no workload %q", k)
	}
	return out
}
