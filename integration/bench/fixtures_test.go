package bench_test

import (
	"context"
	"crypto/rand"
	"encoding/base64"
	"fmt"
	"strconv"
	"strings"
	"sync/atomic"
	"testing"
	"time"

	"github.com/redis/go-redis/v9"

	jetonv1 "github.com/jeton-dev/jeton/proto/jeton/v1"
	"github.com/jeton-dev/jeton/tokenizer"
)

// valuesPerClass is the size of each class's pool of fake values.
const valuesPerClass = 4096

// fixtures are the data the workloads draw on, prepared once per run.
type fixtures struct {
	values map[string][]string // fake values by batch class
	tokens []string            // tokens of jetond's tenant, for Detokenize
	// A jeton record's key and value sizes, measured on records jetond
	// wrote, so the raw Redis baselines store records of the same size.
	recordKeyLen, recordValueLen int
	rawValue                     []byte
	rawKeys                      []string // stored raw records, for GET
	vaultField                   []map[string]any
	vaultBatch                   map[int]map[string]any // batch_input bodies by size
	// next numbers calls, keys and values across the whole run, so no two
	// calls share an idempotency key, a subject or a deterministic value.
	next atomic.Int64
	// keep is the keyspace after set-up; clean deletes everything else.
	keep map[string]bool
}

func fakeValue(class string, n int) string {
	switch class {
	case "name":
		return fmt.Sprintf("Fake Person %07d", n)
	case "email":
		return fmt.Sprintf("fake.person.%07d@example.test", n)
	case "address":
		return fmt.Sprintf("%d Fake Street, 00000 Nowhere", n)
	default:
		return fmt.Sprintf("fake note %07d written by the benchmark", n)
	}
}

// prepare creates both tenants' keys, measures jeton's record size, stores
// pool records for the reads, sizes Redis's key tables if asked to, and
// notes the keyspace.
func prepare(t *testing.T, d *deployment, pool int, presizeTables bool) *fixtures {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Minute)
	defer cancel()
	f := &fixtures{values: map[string][]string{}, vaultBatch: map[int]map[string]any{}}
	for _, c := range batchClasses {
		for i := range valuesPerClass {
			f.values[c] = append(f.values[c], fakeValue(c, i))
		}
	}
	// Keys of both tenants, created on first use.
	if _, err := f.tokenize(ctx, d, 1, false, false); err != nil {
		t.Fatalf("first Tokenize: %v", err)
	}
	if _, err := d.inproc.Tokenize(ctx, inprocTenant, []tokenizer.Item{{Class: "name", Value: fakeValue("name", 0)}}, ""); err != nil {
		t.Fatalf("first in-process Tokenize: %v", err)
	}

	// Records alone (random classes, no idempotency key, no subject) make
	// all the new keys of this call.
	before := scanAll(ctx, t, d.rdb)
	if _, err := f.tokenize(ctx, d, 200, false, false); err != nil {
		t.Fatalf("Tokenize: %v", err)
	}
	var keyLen, valLen, n int
	for k := range scanAll(ctx, t, d.rdb) {
		if before[k] {
			continue
		}
		l, err := d.rdb.StrLen(ctx, k).Result()
		if err != nil {
			continue // not a string: not a record
		}
		keyLen, valLen, n = keyLen+len(k), valLen+int(l), n+1
	}
	if n == 0 {
		t.Fatal("Tokenize of 200 items stored no record")
	}
	f.recordKeyLen, f.recordValueLen = keyLen/n, valLen/n
	f.rawValue = make([]byte, f.recordValueLen)
	_, _ = rand.Read(f.rawValue)

	for len(f.tokens) < pool {
		toks, err := f.tokenize(ctx, d, min(1000, pool-len(f.tokens)), false, false)
		if err != nil {
			t.Fatalf("Tokenize: %v", err)
		}
		f.tokens = append(f.tokens, toks...)
	}
	for i := range pool {
		f.rawKeys = append(f.rawKeys, f.rawKey("bench:get:", int64(i)))
	}
	for lo := 0; lo < pool; lo += 1000 {
		_, err := d.rdb.Pipelined(ctx, func(p redis.Pipeliner) error {
			for _, k := range f.rawKeys[lo:min(lo+1000, pool)] {
				p.Set(ctx, k, f.rawValue, retention)
			}
			return nil
		})
		if err != nil {
			t.Fatalf("storing raw records: %v", err)
		}
	}

	for i := range 1000 {
		f.vaultField = append(f.vaultField, map[string]any{"plaintext": base64.StdEncoding.EncodeToString([]byte(fakeValue(batchClasses[i%len(batchClasses)], i)))})
	}
	for _, n := range []int{100, 1000} {
		in := make([]map[string]any, n)
		copy(in, f.vaultField)
		f.vaultBatch[n] = map[string]any{"batch_input": in}
	}
	if presizeTables {
		f.presize(ctx, t, d.rdb)
	}
	f.keep = scanAll(ctx, t, d.rdb)
	return f
}

// Key-table sizing; see presize.
const (
	tableSlots = 1 << 19
	// tableFloor keeps each table at least 10% full, the fill below which
	// Redis shrinks it.
	tableFloor = tableSlots/10 + 5000
)

// presize grows Redis's two key tables (all keys, and keys with a TTL) to
// tableSlots slots and keeps enough keys that Redis never shrinks them,
// so no measurement sees a table double or halve: a step of megabytes
// that would otherwise land in whichever workload crossed a power of two,
// or, as a shrink after the previous workload's keys were deleted, be
// subtracted from the next one's memory. The default -jeton.bench.maxitems
// keeps every workload
// below the size that would grow them again: at most 2.25 keys per item
// (a record, an idempotency entry, a quarter of a subject index) on top
// of tableFloor. The slots a workload's keys
// would need are counted instead at 8 bytes per key and table (see
// sample.bytesPerValue): what a table sized exactly to its keys costs.
func (f *fixtures) presize(ctx context.Context, t *testing.T, rdb *redis.Client) {
	t.Helper()
	store := func(prefix string, from, to int64) {
		for lo := from; lo < to; lo += 10000 {
			_, err := rdb.Pipelined(ctx, func(p redis.Pipeliner) error {
				for i := lo; i < min(lo+10000, to); i++ {
					p.Set(ctx, f.rawKey(prefix, i), "x", retention)
				}
				return nil
			})
			if err != nil {
				t.Fatalf("sizing Redis's key tables: %v", err)
			}
		}
	}
	n, err := rdb.DBSize(ctx).Result()
	if err != nil {
		t.Fatal(err)
	}
	store("bench:floor:", 0, max(0, tableFloor-n))
	// Past half the slots, the tables double to tableSlots.
	store("bench:grow:", 0, tableSlots/2+1)
	for lo := int64(0); lo < tableSlots/2+1; lo += 10000 {
		_, err := rdb.Pipelined(ctx, func(p redis.Pipeliner) error {
			for i := lo; i < min(lo+10000, tableSlots/2+1); i++ {
				p.Del(ctx, f.rawKey("bench:grow:", i))
			}
			return nil
		})
		if err != nil {
			t.Fatal(err)
		}
	}
}

// tokenize sends n batch items through jetond and returns their tokens.
func (f *fixtures) tokenize(ctx context.Context, d *deployment, n int, idem, subjects bool) ([]string, error) {
	resp, err := d.tok.Tokenize(ctx, f.tokenizeRequest(int(f.next.Add(1)), n, idem, subjects))
	if err != nil {
		return nil, err
	}
	out := make([]string, 0, n)
	for i, r := range resp.GetResults() {
		if r.GetError() != nil {
			return nil, fmt.Errorf("item %d: %s", i, r.GetError().GetMessage())
		}
		out = append(out, r.GetToken())
	}
	return out, nil
}

// tokenizeRequest builds call number id: n items cycling over the batch
// classes. With subjects, every four consecutive items (one of each class)
// belong to one data subject of their own, as a person's fields would.
func (f *fixtures) tokenizeRequest(id, n int, idem, subjects bool) *jetonv1.TokenizeRequest {
	req := &jetonv1.TokenizeRequest{Items: make([]*jetonv1.TokenizeItem, n)}
	for i := range req.Items {
		c := batchClasses[i%len(batchClasses)]
		it := &jetonv1.TokenizeItem{FieldClass: c, Value: f.values[c][(id*n+i)%valuesPerClass]}
		if subjects {
			it.SubjectId = "subject-" + strconv.Itoa(id) + "-" + strconv.Itoa(i/len(batchClasses))
		}
		req.Items[i] = it
	}
	if idem {
		req.IdempotencyKey = "call-" + strconv.Itoa(id)
	}
	return req
}

// items is tokenizeRequest for the in-process tokenizer.
func (f *fixtures) items(id, n int, subjects bool) []tokenizer.Item {
	out := make([]tokenizer.Item, n)
	for i := range out {
		c := batchClasses[i%len(batchClasses)]
		out[i] = tokenizer.Item{Class: c, Value: f.values[c][(id*n+i)%valuesPerClass]}
		if subjects {
			out[i].Subject = "subject-" + strconv.Itoa(id) + "-" + strconv.Itoa(i/len(batchClasses))
		}
	}
	return out
}

// rawKey returns a key of a jeton record's length: prefix, zeros, n.
func (f *fixtures) rawKey(prefix string, n int64) string {
	num := strconv.FormatInt(n, 10)
	if pad := f.recordKeyLen - len(prefix) - len(num); pad > 0 {
		return prefix + strings.Repeat("0", pad) + num
	}
	return prefix + num
}

// clean deletes every key that was not there after set-up (the records,
// idempotency entries, subject indexes, budget counters and raw keys of
// the last workload), so Redis's memory stays bounded however long the run.
// DEL, not UNLINK: memory must be freed before the next measurement starts.
func (f *fixtures) clean(ctx context.Context, rdb *redis.Client) error {
	var doomed []string
	var cursor uint64
	for {
		keys, next, err := rdb.Scan(ctx, cursor, "*", 10000).Result()
		if err != nil {
			return err
		}
		for _, k := range keys {
			if !f.keep[k] {
				doomed = append(doomed, k)
			}
		}
		if cursor = next; cursor == 0 {
			break
		}
	}
	_, err := rdb.Pipelined(ctx, func(p redis.Pipeliner) error {
		for lo := 0; lo < len(doomed); lo += 1000 {
			p.Del(ctx, doomed[lo:min(lo+1000, len(doomed))]...)
		}
		return nil
	})
	return err
}

func scanAll(ctx context.Context, t *testing.T, rdb *redis.Client) map[string]bool {
	t.Helper()
	out := map[string]bool{}
	iter := rdb.Scan(ctx, 0, "*", 10000).Iterator()
	for iter.Next(ctx) {
		out[iter.Val()] = true
	}
	if err := iter.Err(); err != nil {
		t.Fatalf("SCAN: %v", err)
	}
	return out
}
