package integration_test

import (
	"context"
	"encoding/base64"
	"fmt"
	"maps"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/redis/go-redis/v9"

	"github.com/jeton-dev/jeton/client"
	"github.com/jeton-dev/jeton/integration/testenv"
)

// asSentValues returns obviously fake values of every default class, of
// many lengths and written as people write them (spaces, capitals,
// decomposed accents, phone numbers in several forms): none is in its
// normalised form, so a reveal that normalised would be caught.
func asSentValues() []item {
	var out []item
	add := func(class, v string) { out = append(out, item{Class: class, Value: v}) }
	for n := 0; n <= 600; n += 3 {
		add("text", "Fake note"+strings.Repeat(" x", n/2)+strings.Repeat("e\u0301", n%2))
	}
	for n := 0; n < 290; n += 5 {
		add("email", fmt.Sprintf(" Anne.Test%d%s@Example.ORG", n, strings.Repeat("x", n)))
	}
	for n := 0; n < 220; n += 4 {
		add("name", fmt.Sprintf("E\u0301lodie  Testperson %d%s", n, strings.Repeat(" Y", n/2)))
	}
	for n := 0; n < 900; n += 9 {
		add("address", fmt.Sprintf("%d  rue de l'E\u0301glise,\n75000 Testville%s", n, strings.Repeat(" ", n)))
	}
	for i, f := range []string{"+44 20 7946 0%03d", "+44207946 0%03d", "tel:+44-20-7946-0%03d", "+44 (0)20 7946 0%03d", " +44 20 7946 0%03d "} {
		for j := range 20 {
			add("phone", fmt.Sprintf(f, 100*i+j))
		}
	}
	for i := range 40 {
		add("passport", fmt.Sprintf("tst-%0*d x", 2+i%10, i))
		add("birthdate", fmt.Sprintf("%s1984-01-%02d ", strings.Repeat(" ", i%20), 1+i%28))
	}
	return out
}

// recordBucket is the size bucket a value's record shows: the smallest of
// 32, 64, 128, ... that holds a flags byte, the value and one padding byte.
func recordBucket(n int) int {
	b := 32
	for b < n+2 {
		b *= 2
	}
	return b
}

// storedRecord is what a Redis reader sees of one record.
type storedRecord struct {
	key    string
	header string // version, generation, class length and class
	class  string
	size   int
	ttl    time.Duration
	body   []byte // the rest: nonce, ciphertext, tag
}

// scanRecords reads every jeton:r:* record as Redis holds it.
func scanRecords(t testing.TB, c *redis.Client) map[string]storedRecord {
	t.Helper()
	ctx := context.Background()
	out := map[string]storedRecord{}
	iter := c.Scan(ctx, 0, "jeton:r:*", 1000).Iterator()
	for iter.Next(ctx) {
		k := iter.Val()
		b, err := c.Get(ctx, k).Bytes()
		if err != nil {
			t.Fatalf("GET a record: %v", err)
		}
		ttl, err := c.PTTL(ctx, k).Result()
		if err != nil {
			t.Fatalf("PTTL a record: %v", err)
		}
		if len(b) < 6 || len(b) < 6+int(b[5]) {
			t.Fatalf("a record of %d bytes has no v3 header", len(b))
		}
		hs := 6 + int(b[5])
		out[k] = storedRecord{key: k, header: string(b[:hs]), class: string(b[6:hs]), size: len(b), ttl: ttl, body: b[hs:]}
	}
	if err := iter.Err(); err != nil {
		t.Fatalf("SCAN: %v", err)
	}
	return out
}

// recordClasses are the built-in classes with a retention on two of them,
// so that records' TTLs differ by class and a canary with the wrong TTL
// (or none) would show.
const recordClasses = `  - {name: email, normalize: [trim, fold, email], mask: email, max_len: 320, retention: 200h}
  - {name: phone, normalize: [phone], mask: phone, max_len: 64}
  - {name: name, normalize: [nfc, trim, collapse-space], mask: initials, max_len: 256}
  - {name: passport, normalize: [passport], mask: last3, max_len: 32}
  - {name: birthdate, normalize: [trim, date], mask: date, max_len: 32}
  - {name: address, normalize: [nfc, trim, collapse-space], mask: all, max_len: 1024}
  - {name: text, normalize: [nfc], mask: all, retention: 100h}
`

// perSubject is how many records the sponsor of the test indexes under
// each data subject; canaries are minted the same way.
const perSubject = 4

// ttlLook is what a reader sees of a TTL: none (-1), or whole hours.
func ttlLook(ttl time.Duration) int64 {
	if ttl < 0 {
		return -1
	}
	return int64(ttl.Round(time.Hour) / time.Hour)
}

// subjectIndex is what a Redis reader sees of the subject indexes: for
// each record key, the indexes (jeton:s:*) it is a member of, and each
// index's size and TTL.
type subjectIndex struct {
	of   map[string][]string // record key -> index keys
	size map[string]int
	ttl  map[string]int64
}

func scanSubjects(t testing.TB, c *redis.Client) subjectIndex {
	t.Helper()
	ctx := context.Background()
	x := subjectIndex{of: map[string][]string{}, size: map[string]int{}, ttl: map[string]int64{}}
	iter := c.Scan(ctx, 0, "jeton:s:*", 1000).Iterator()
	for iter.Next(ctx) {
		k := iter.Val()
		// An index is a hash whose fields are the keyed hashes of its
		// records' names, as bytes; one an earlier version wrote is a set
		// of whole record names.
		kind, err := c.Type(ctx, k).Result()
		if err != nil {
			t.Fatalf("TYPE a subject index: %v", err)
		}
		var members []string
		if kind == "set" {
			members, err = c.SMembers(ctx, k).Result()
		} else {
			var fields []string
			fields, err = c.HKeys(ctx, k).Result()
			tenant := strings.Split(k, ":")[2]
			for _, f := range fields {
				members = append(members, "jeton:r:"+tenant+":"+base64.RawURLEncoding.EncodeToString([]byte(f)))
			}
		}
		if err != nil {
			t.Fatalf("reading a subject index: %v", err)
		}
		ttl, err := c.PTTL(ctx, k).Result()
		if err != nil {
			t.Fatalf("PTTL a subject index: %v", err)
		}
		for _, m := range members {
			x.of[m] = append(x.of[m], k)
		}
		x.size[k], x.ttl[k] = len(members), ttlLook(ttl)
	}
	if err := iter.Err(); err != nil {
		t.Fatalf("SCAN: %v", err)
	}
	return x
}

// TestRedisRecordsHideCanariesAndLengths runs the real jetond on a real
// Redis and Vault. Values of every class and of many lengths are
// tokenized, each with a data subject (perSubject records per subject),
// then canaries of every class minted, perSubject under each fake
// subject; a scan of Redis then reads each record as an attacker with
// Redis access would (key, clear header, size, TTL, the subject indexes it
// is in). Every value comes back byte for byte as sent; record sizes take
// one value per size bucket; and every canary looks exactly like ordinary
// records of its class and bucket, in a subject index that looks like
// ordinary ones.
func TestRedisRecordsHideCanariesAndLengths(t *testing.T) {
	r := testenv.StartRedis(t)
	v := startVaultEnv(t, false)
	h := startJetond(t, jetondOpts{RedisAddrs: []string{r.Addr}, Vault: v, Token: v.token(t, "jeton-jetond"), Classes: recordClasses})
	c := r.Client(t)
	ctx := context.Background()

	its := asSentValues()
	vals := make([]string, len(its))
	in := make([]client.Item, len(its))
	for i, it := range its {
		vals[i] = it.Value
		in[i] = client.Item{Class: it.Class, Value: it.Value, Subject: fmt.Sprintf("fake-subject-%04d", i/perSubject)}
	}
	noteValues(t, vals...)
	res, err := h.Sponsor(t, "acme").Tokenize(ctx, in)
	if err != nil {
		t.Fatalf("Tokenize: %v", err)
	}
	for i, r := range res {
		if r.Err != nil {
			t.Fatalf("Tokenize item %d (%s): %v", i, its[i].Class, r.Err)
		}
		its[i].Token = r.Token
	}
	detokenizeAll(t, h, its) // byte for byte as sent

	ordinary := scanRecords(t, c)
	if len(ordinary) != len(its) {
		t.Fatalf("Redis holds %d records for %d distinct values", len(ordinary), len(its))
	}

	// Sizes: per class, exactly one record size per bucket the values
	// fall in, and that size is the bucket's.
	wantSizes := map[string]map[int]bool{}
	for _, it := range its {
		if wantSizes[it.Class] == nil {
			wantSizes[it.Class] = map[int]bool{}
		}
		wantSizes[it.Class][6+len(it.Class)+12+recordBucket(len(it.Value))+16] = true
	}
	gotSizes := map[string]map[int]bool{}
	headers := map[string]bool{}
	for _, rec := range ordinary {
		if gotSizes[rec.class] == nil {
			gotSizes[rec.class] = map[int]bool{}
		}
		gotSizes[rec.class][rec.size] = true
		headers[rec.header] = true
	}
	for class, want := range wantSizes {
		got := gotSizes[class]
		if !maps.Equal(got, want) {
			t.Errorf("%s: record sizes %v, want one per bucket: %v", class, slices.Sorted(maps.Keys(got)), slices.Sorted(maps.Keys(want)))
		}
	}
	if len(headers) != len(classes) {
		t.Errorf("%d distinct clear headers for %d classes: the header says more than version, generation and class", len(headers), len(classes))
	}
	if n := len(gotSizes["text"]); n >= 10 {
		t.Errorf("text values of 201 lengths show %d record sizes", n)
	}

	// What a reader sees of each ordinary record: header, size, TTL, and
	// the size and TTL of the one subject index it is in. The TTLs are
	// not all alike, or comparing them would prove nothing.
	type look struct {
		header      string
		size        int
		ttl         int64
		index, ittl int64 // the subject index's size and TTL
	}
	subjects := scanSubjects(t, c)
	lookOf := func(rec storedRecord) (look, bool) {
		in := subjects.of[rec.key]
		if len(in) != 1 {
			return look{}, false
		}
		return look{rec.header, rec.size, ttlLook(rec.ttl), int64(subjects.size[in[0]]), subjects.ttl[in[0]]}, true
	}
	seen := map[look]int{}
	ttls := map[int64]bool{}
	for _, rec := range ordinary {
		l, ok := lookOf(rec)
		if !ok {
			t.Fatalf("an ordinary record is in %d subject indexes, want 1", len(subjects.of[rec.key]))
		}
		seen[l]++
		ttls[l.ttl] = true
	}
	if !maps.Equal(ttls, map[int64]bool{-1: true, 100: true, 200: true}) {
		t.Fatalf("ordinary records' TTLs %v: want none, 100h and 200h by class", slices.Sorted(maps.Keys(ttls)))
	}

	// Canaries of every class, perSubject of a class under each fake
	// subject: a group without suspend, then a group with it, so each
	// group shares its flags.
	const perClass = 2 * perSubject
	custodian := h.newClient(t, h.TrustedAddr, h.pki.CustodianCert, h.pki.CustodianKey)
	before := ordinary
	for g, suspend := range []bool{false, true} {
		for _, class := range classes {
			for i := range perClass {
				subject := fmt.Sprintf("fake-canary-subject-%d-%s-%d", g, class, i/perSubject)
				if _, err := custodian.MintCanary(ctx, "acme", class, suspend, client.CanarySubject(subject)); err != nil {
					t.Fatalf("MintCanary %s: %v", class, err)
				}
			}
		}
		all := scanRecords(t, c)
		if len(all) != len(before)+perClass*len(classes) {
			t.Fatalf("%d records after minting %d canaries over %d", len(all), perClass*len(classes), len(before))
		}
		subjects = scanSubjects(t, c)
		bodies := map[string][][]byte{} // this group's canary bodies by class
		for k, rec := range all {
			if _, old := before[k]; old {
				continue
			}
			bodies[rec.class] = append(bodies[rec.class], rec.body)
			if !strings.HasPrefix(k, "jeton:r:acme:") || len(k) != len(anyKey(ordinary)) {
				t.Errorf("a canary's key has another shape than a record's")
			}
			l, ok := lookOf(rec)
			if !ok {
				t.Errorf("a %s canary is in %d subject indexes; every ordinary record is in one", rec.class, len(subjects.of[k]))
				continue
			}
			if seen[l] == 0 {
				t.Errorf("a %s canary (%d bytes, header %x, ttl %dh, in an index of %d with ttl %dh) looks like no ordinary record",
					rec.class, rec.size, rec.header, l.ttl, l.index, l.ittl)
			}
		}
		// Past the header, no byte is a marker: across the canaries of a
		// class every position takes several values (nonces and
		// ciphertext are random; eight equal random bytes happen once in
		// 2^56).
		for class, bs := range bodies {
			if len(bs) != perClass {
				t.Fatalf("%s: %d new canary records, want %d", class, len(bs), perClass)
			}
			for i := range bs[0] {
				distinct := map[byte]bool{}
				for _, b := range bs {
					if i < len(b) {
						distinct[b[i]] = true
					}
				}
				if len(distinct) == 1 {
					t.Errorf("%s canaries (suspend %t): byte %d after the header is the same in all %d", class, suspend, i, len(bs))
				}
			}
		}
		before = all
	}
}

func anyKey(m map[string]storedRecord) string {
	for k := range m {
		return k
	}
	return ""
}
