package redisstore_test

import (
	"context"
	"fmt"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/redis/go-redis/v9"

	"github.com/jeton-dev/jeton/integration/testenv"
	"github.com/jeton-dev/jeton/tokenizer"
	"github.com/jeton-dev/jeton/tokenizer/localkeys"
	"github.com/jeton-dev/jeton/tokenizer/redisstore"
)

// footprintValue is the n-th value of a class in the footprint workload:
// the values `make bench` sends, 19 to 42 bytes.
func footprintValue(class string, n int) string {
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

// footprint is what one workload left in Redis, per value tokenized.
type footprint struct {
	values int
	// perValue is the growth of used_memory (client and AOF buffers
	// excluded) plus 8 bytes per new key in each of Redis's key tables
	// (all keys, keys with a TTL), divided by the values stored: the
	// tables are grown beforehand so that none doubles during the
	// measurement, and a table sized to its keys costs one 8-byte slot
	// per key.
	perValue float64
	// byKind sums MEMORY USAGE over the new keys of each kind (record,
	// subject index, idempotency entry), per value; MEMORY USAGE counts a
	// key, its value and its entry in the key table, not its TTL entry
	// or its table slots.
	byKind map[string]float64
	keys   int64
}

// measureFootprint tokenizes calls of batch items in tenant, with an
// idempotency key and one data subject per four items if asked, and
// measures what they left in the Redis at addr.
func measureFootprint(t *testing.T, raw *redis.Client, tz *tokenizer.Tokenizer, tenant string, calls, batch int, idem, subjects bool) footprint {
	t.Helper()
	ctx := context.Background()
	classes := []string{"name", "email", "address", "text"}
	before := usedMemory(t, raw)
	keysBefore := dbKeys(t, raw)
	n := 0
	for c := range calls {
		items := make([]tokenizer.Item, batch)
		for i := range items {
			items[i] = tokenizer.Item{Class: classes[n%len(classes)], Value: footprintValue(classes[n%len(classes)], n)}
			if subjects {
				items[i].Subject = "fake-subject-" + strconv.Itoa(n/4)
			}
			n++
		}
		key := ""
		if idem {
			key = "caller\x00call-" + strconv.Itoa(c)
		}
		res, err := tz.Tokenize(ctx, tenant, items, key)
		if err != nil {
			t.Fatalf("Tokenize: %v", err)
		}
		for _, r := range res {
			if r.Err != nil {
				t.Fatalf("Tokenize: %v", r.Err)
			}
		}
	}
	after := usedMemory(t, raw)
	keysAfter := dbKeys(t, raw)
	fp := footprint{values: n, byKind: map[string]float64{}, keys: keysAfter[0] - keysBefore[0]}
	fp.perValue = float64(after-before+8*(keysAfter[0]-keysBefore[0]+keysAfter[1]-keysBefore[1])) / float64(n)
	// MEMORY USAGE of every key of the tenant, by kind.
	var cursor uint64
	for {
		ks, next, err := raw.Scan(ctx, cursor, "*", 1000).Result()
		if err != nil {
			t.Fatal(err)
		}
		for _, k := range ks {
			kind := keyKind(k, tenant)
			if kind == "" {
				continue
			}
			u, err := raw.MemoryUsage(ctx, k, 0).Result()
			if err != nil {
				t.Fatal(err)
			}
			fp.byKind[kind] += float64(u) / float64(n)
		}
		if cursor = next; cursor == 0 {
			break
		}
	}
	return fp
}

// keyKind names what a key of tenant holds, "" for another tenant's or a
// key of the keyring.
func keyKind(k, tenant string) string {
	for _, kind := range []struct{ prefix, name string }{
		{"jeton:r:" + tenant + ":", "records"},
		{"jeton:s:" + tenant + ":", "subject indexes"},
		{"jeton:i:" + tenant + ":", "idempotency entries"},
	} {
		if strings.HasPrefix(k, kind.prefix) {
			return kind.name
		}
	}
	return ""
}

func usedMemory(t testing.TB, c *redis.Client) int64 {
	t.Helper()
	info, err := c.InfoMap(context.Background(), "memory").Result()
	if err != nil {
		t.Fatal(err)
	}
	num := func(k string) int64 { n, _ := strconv.ParseInt(info["Memory"][k], 10, 64); return n }
	return num("used_memory") - num("mem_clients_normal") - num("mem_aof_buffer")
}

// dbKeys returns db0's count of keys and of keys with a TTL.
func dbKeys(t testing.TB, c *redis.Client) [2]int64 {
	t.Helper()
	info, err := c.InfoMap(context.Background(), "keyspace").Result()
	if err != nil {
		t.Fatal(err)
	}
	var out [2]int64
	for _, f := range strings.Split(info["Keyspace"]["db0"], ",") {
		k, v, _ := strings.Cut(f, "=")
		n, _ := strconv.ParseInt(v, 10, 64)
		switch k {
		case "keys":
			out[0] = n
		case "expires":
			out[1] = n
		}
	}
	return out
}

// growKeyTables makes Redis's key tables big enough for the workloads,
// and keeps them from shrinking, so that no measurement sees a table
// double or halve (see footprint.perValue).
func growKeyTables(t testing.TB, c *redis.Client, slots int) {
	t.Helper()
	ctx := context.Background()
	fill := func(prefix string, n int) {
		for lo := 0; lo < n; lo += 10000 {
			_, err := c.Pipelined(ctx, func(p redis.Pipeliner) error {
				for i := lo; i < min(lo+10000, n); i++ {
					p.Set(ctx, prefix+strconv.Itoa(i), "x", time.Hour)
				}
				return nil
			})
			if err != nil {
				t.Fatal(err)
			}
		}
	}
	// A tenth of the slots stays, the fill under which Redis shrinks.
	fill("footprint:floor:", slots/10+1000)
	fill("footprint:grow:", slots/2+1)
	for lo := 0; lo < slots/2+1; lo += 10000 {
		_, err := c.Pipelined(ctx, func(p redis.Pipeliner) error {
			for i := lo; i < min(lo+10000, slots/2+1); i++ {
				p.Del(ctx, "footprint:grow:"+strconv.Itoa(i))
			}
			return nil
		})
		if err != nil {
			t.Fatal(err)
		}
	}
}

// TestRedisFootprint measures the Redis memory a tokenized value costs,
// over 20,000 values per workload, with Redis's own accounting (INFO
// used_memory and MEMORY USAGE), and logs it. The workload `make bench`
// judges against the 200-byte target is the first: calls of 1,000 items
// with an idempotency key and one data subject per four items.
//
// It fails if that workload costs more than maxBytesPerValue, so that a
// change that fattens records, names, indexes or entries is seen; see
// BENCHMARKS.md for the floor Redis puts under a record of this size.
func TestRedisFootprint(t *testing.T) {
	const maxBytesPerValue = 330
	r := testenv.StartRedis(t, testenv.WithAppendFsync("everysec"))
	store := newStore(t, redisstore.Config{Addrs: []string{r.Addr}})
	raw := redis.NewClient(&redis.Options{Addr: r.Addr})
	t.Cleanup(func() { _ = raw.Close() })
	growKeyTables(t, raw, 1<<18)
	km, err := localkeys.New(true)
	if err != nil {
		t.Fatal(err)
	}
	var classes []tokenizer.Class
	for _, name := range []string{"name", "email", "address", "text"} {
		classes = append(classes, tokenizer.Class{Name: name, Retention: 4380 * time.Hour})
	}
	tz, err := tokenizer.New(tokenizer.Config{Keys: km, Store: store, Classes: classes})
	if err != nil {
		t.Fatal(err)
	}
	workloads := []struct {
		name           string
		tenant         string
		calls, batch   int
		idem, subjects bool
		limit          float64
	}{
		{"1,000/call, idempotency key, a subject per 4 items", "demo", 20, 1000, true, true, maxBytesPerValue},
		{"1,000/call, no key, no subject", "dem1", 20, 1000, false, false, 0},
		{"1/call, idempotency key, no subject", "dem2", 5000, 1, true, false, 0},
	}
	var report strings.Builder
	for _, w := range workloads {
		// Warm the tenant's keys outside the measurement.
		if _, err := tz.Tokenize(context.Background(), w.tenant, []tokenizer.Item{{Class: "name", Value: "Fake Warm-up"}}, ""); err != nil {
			t.Fatal(err)
		}
		fp := measureFootprint(t, raw, tz, w.tenant, w.calls, w.batch, w.idem, w.subjects)
		fmt.Fprintf(&report, "\n%-52s %6.1f B/value (%d values, %d keys); MEMORY USAGE per value:", w.name, fp.perValue, fp.values, fp.keys)
		for _, k := range []string{"records", "subject indexes", "idempotency entries"} {
			fmt.Fprintf(&report, " %s %.1f", k, fp.byKind[k])
		}
		if w.limit > 0 && fp.perValue > w.limit {
			t.Errorf("%s: %.1f B of Redis per value, more than %v", w.name, fp.perValue, w.limit)
		}
	}
	t.Log(report.String())
}
