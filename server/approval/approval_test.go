package approval_test

import (
	"bytes"
	"context"
	"encoding/base64"
	"errors"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/jeton-dev/jeton/server/approval"
	"github.com/jeton-dev/jeton/tokenizer"
	"github.com/jeton-dev/jeton/tokenizer/memstore"
)

type clock struct {
	mu  sync.Mutex
	now time.Time
}

func (c *clock) Now() time.Time { c.mu.Lock(); defer c.mu.Unlock(); return c.now }
func (c *clock) Advance(d time.Duration) {
	c.mu.Lock()
	c.now = c.now.Add(d)
	c.mu.Unlock()
}

var key = bytes.Repeat([]byte{0x42}, 32)

func newBook(t *testing.T) (*approval.Book, *memstore.Store, *clock) {
	t.Helper()
	c := &clock{now: time.Date(2030, 5, 6, 7, 8, 9, 0, time.UTC)}
	store := memstore.New(memstore.WithClock(c.Now))
	b, err := approval.New(store, key, approval.WithClock(c.Now))
	if err != nil {
		t.Fatal(err)
	}
	return b, store, c
}

func destroyRequest() approval.Request {
	return approval.Request{Action: approval.DestroyGeneration, Tenant: "acme", Generation: 3,
		Requester: "spiffe://ttp/custodian-a", Reason: "TICKET-1", Required: 2}
}

func all(string) bool { return true }

func TestRequestLifecycle(t *testing.T) {
	b, _, c := newBook(t)
	ctx := context.Background()
	r, err := b.Create(ctx, destroyRequest(), time.Hour)
	if err != nil {
		t.Fatal(err)
	}
	if len(r.ID) != 16 || !r.Expires.Equal(r.Created.Add(time.Hour)) {
		t.Fatalf("Create = %+v", r)
	}
	got, err := b.Get(ctx, r.ID)
	if err != nil || got.Requester != r.Requester || got.Generation != 3 || got.Approved(all) {
		t.Fatalf("Get = %+v, %v; want pending", got, err)
	}
	if _, err := b.Approve(ctx, r.ID, r.Requester); !errors.Is(err, approval.ErrSelfApproval) {
		t.Fatalf("self-approval: %v, want ErrSelfApproval", err)
	}
	c.Advance(time.Minute)
	got, err = b.Approve(ctx, r.ID, "spiffe://ttp/custodian-b")
	if err != nil || !got.Approved(all) || len(got.Approvers) != 1 {
		t.Fatalf("Approve = %+v, %v; want approved by b", got, err)
	}
	if got.Approved(func(id string) bool { return id != "spiffe://ttp/custodian-b" }) {
		t.Fatal("an approver the caller does not count was counted")
	}
	if again, err := b.Approve(ctx, r.ID, "spiffe://ttp/custodian-b"); err != nil || len(again.Approvers) != 1 {
		t.Fatalf("approving twice = %+v, %v", again, err)
	}
	list, tampered, err := b.List(ctx)
	if err != nil || tampered != 0 || len(list) != 1 || list[0].ID != r.ID {
		t.Fatalf("List = %+v, %d, %v", list, tampered, err)
	}
	if err := b.Remove(ctx, r.ID); err != nil {
		t.Fatal(err)
	}
	if _, err := b.Get(ctx, r.ID); !errors.Is(err, approval.ErrNotFound) {
		t.Fatalf("Get after Remove: %v", err)
	}
	if list, _, _ := b.List(ctx); len(list) != 0 {
		t.Fatalf("List after Remove = %+v", list)
	}
	for _, bad := range []string{"", "../x", strings.Repeat("a", 17), "AAAAAAAAAAAAAAAA"} {
		if _, err := b.Get(ctx, bad); !errors.Is(err, approval.ErrNotFound) {
			t.Errorf("Get(%q): %v", bad, err)
		}
	}
}

func TestThreeOfN(t *testing.T) {
	b, _, _ := newBook(t)
	ctx := context.Background()
	req := destroyRequest()
	req.Required = 3
	r, err := b.Create(ctx, req, time.Hour)
	if err != nil {
		t.Fatal(err)
	}
	if got, _ := b.Approve(ctx, r.ID, "b"); got.Approved(all) {
		t.Fatal("two of three approved")
	}
	if got, _ := b.Approve(ctx, r.ID, "c"); !got.Approved(all) || got.Approvers[0] != "b" {
		t.Fatalf("three of three: %+v", got)
	}
}

func TestExpiry(t *testing.T) {
	b, _, c := newBook(t)
	ctx := context.Background()
	r, err := b.Create(ctx, destroyRequest(), time.Hour)
	if err != nil {
		t.Fatal(err)
	}
	c.Advance(time.Hour)
	if _, err := b.Approve(ctx, r.ID, "b"); !errors.Is(err, approval.ErrExpired) {
		t.Fatalf("Approve after expiry: %v, want ErrExpired", err)
	}
	if list, _, _ := b.List(ctx); len(list) != 0 {
		t.Fatal("List shows an expired request")
	}
	if _, err := b.Create(ctx, destroyRequest(), 0); err == nil {
		t.Fatal("Create accepted a zero ttl")
	}
}

// Whoever writes to the store cannot forge an approval, nor change a
// request's requester, target or expiry, nor move either to another
// request: in the sealed format, and in the format of earlier releases,
// still read for requests pending across an upgrade.
func TestTamperedRequestsAndApprovalsAreRefused(t *testing.T) {
	ctx := context.Background()
	enc := base64.RawURLEncoding
	// flip changes one byte of the sealed entry at name: of its nonce,
	// its ciphertext or its tag.
	flip := func(at func(n int) int) func(t *testing.T, _ *approval.Book, store *memstore.Store, r, _ approval.Request) {
		return func(t *testing.T, _ *approval.Book, store *memstore.Store, r, _ approval.Request) {
			name := "jeton:a:req:" + r.ID
			v, err := store.Get(ctx, []string{name})
			if err != nil || v[0] == nil || !bytes.HasPrefix(v[0], []byte("2.")) {
				t.Fatal("no sealed entry", err)
			}
			raw, err := enc.DecodeString(string(v[0][2:]))
			if err != nil {
				t.Fatal(err)
			}
			raw[at(len(raw))] ^= 1
			if err := store.Put(ctx, []tokenizer.Entry{{Key: name, Value: []byte("2." + enc.EncodeToString(raw))}}); err != nil {
				t.Fatal(err)
			}
		}
	}
	// editLegacy rewrites the request as an earlier release stored it,
	// then edits its readable payload, keeping the MAC.
	editLegacy := func(f func(payload []byte) []byte) func(t *testing.T, b *approval.Book, store *memstore.Store, r, _ approval.Request) {
		return func(t *testing.T, b *approval.Book, store *memstore.Store, r, _ approval.Request) {
			if err := approval.AsLegacy(ctx, b, r.ID); err != nil {
				t.Fatal(err)
			}
			if _, err := b.Get(ctx, r.ID); err != nil {
				t.Fatalf("an untouched entry of an earlier release does not read: %v", err)
			}
			name := "jeton:a:req:" + r.ID
			v, err := store.Get(ctx, []string{name})
			if err != nil || v[0] == nil {
				t.Fatal("no such entry", err)
			}
			p, m, _ := strings.Cut(string(v[0]), ".")
			payload, _ := enc.DecodeString(p)
			edited := f(payload)
			if bytes.Equal(edited, payload) {
				t.Fatal("the edit changed nothing")
			}
			if err := store.Put(ctx, []tokenizer.Entry{{Key: name, Value: []byte(enc.EncodeToString(edited) + "." + m)}}); err != nil {
				t.Fatal(err)
			}
		}
	}
	for _, tc := range []struct {
		name   string
		attack func(t *testing.T, b *approval.Book, store *memstore.Store, r, other approval.Request)
	}{
		{"nonce edited", flip(func(int) int { return 0 })},
		{"ciphertext edited", flip(func(n int) int { return 20 })},
		{"tag edited", flip(func(n int) int { return n - 1 })},
		{"earlier release's entry, requester changed", editLegacy(func(p []byte) []byte {
			return bytes.Replace(p, []byte("custodian-a"), []byte("custodian-z"), 1)
		})},
		{"earlier release's entry, target changed", editLegacy(func(p []byte) []byte {
			return bytes.Replace(p, []byte(`"tenant":"acme"`), []byte(`"tenant":"beta"`), 1)
		})},
		{"earlier release's entry, approvals required lowered", editLegacy(func(p []byte) []byte {
			return bytes.Replace(p, []byte(`"required":2`), []byte(`"required":1`), 1)
		})},
		{"forged approval", func(t *testing.T, _ *approval.Book, store *memstore.Store, r, _ approval.Request) {
			forged := []string{
				"2." + enc.EncodeToString(make([]byte, 12+64+16)),
				enc.EncodeToString([]byte(`{"by":"spiffe://ttp/custodian-b","at":"2030-05-06T07:09:00Z"}`)) + "." + enc.EncodeToString(make([]byte, 32)),
			}
			if err := store.AddToSet(ctx, "jeton:a:req:"+r.ID+":approvals", forged[:1], time.Hour); err != nil {
				t.Fatal(err)
			}
			if err := store.AddToSet(ctx, "jeton:a:req:"+r.ID+":approvals", forged[1:], time.Hour); err != nil {
				t.Fatal(err)
			}
		}},
		{"approval moved from another request", func(t *testing.T, b *approval.Book, store *memstore.Store, r, other approval.Request) {
			if _, err := b.Approve(ctx, other.ID, "spiffe://ttp/custodian-b"); err != nil {
				t.Fatal(err)
			}
			m, err := store.SetMembers(ctx, "jeton:a:req:"+other.ID+":approvals")
			if err != nil || len(m) != 1 {
				t.Fatal(m, err)
			}
			if err := store.AddToSet(ctx, "jeton:a:req:"+r.ID+":approvals", m, time.Hour); err != nil {
				t.Fatal(err)
			}
		}},
		{"request moved from another id", func(t *testing.T, _ *approval.Book, store *memstore.Store, r, other approval.Request) {
			v, _ := store.Get(ctx, []string{"jeton:a:req:" + other.ID})
			if err := store.Put(ctx, []tokenizer.Entry{{Key: "jeton:a:req:" + r.ID, Value: v[0]}}); err != nil {
				t.Fatal(err)
			}
		}},
		{"request stored as an approval", func(t *testing.T, _ *approval.Book, store *memstore.Store, r, _ approval.Request) {
			v, _ := store.Get(ctx, []string{"jeton:a:req:" + r.ID})
			if err := store.AddToSet(ctx, "jeton:a:req:"+r.ID+":approvals", []string{string(v[0])}, time.Hour); err != nil {
				t.Fatal(err)
			}
		}},
		{"approval stored as the request", func(t *testing.T, b *approval.Book, store *memstore.Store, r, _ approval.Request) {
			if _, err := b.Approve(ctx, r.ID, "spiffe://ttp/custodian-b"); err != nil {
				t.Fatal(err)
			}
			m, err := store.SetMembers(ctx, "jeton:a:req:"+r.ID+":approvals")
			if err != nil || len(m) != 1 {
				t.Fatal(m, err)
			}
			if err := store.Put(ctx, []tokenizer.Entry{{Key: "jeton:a:req:" + r.ID, Value: []byte(m[0])}}); err != nil {
				t.Fatal(err)
			}
		}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			b, store, _ := newBook(t)
			r, err := b.Create(ctx, destroyRequest(), time.Hour)
			if err != nil {
				t.Fatal(err)
			}
			otherReq := destroyRequest()
			otherReq.Tenant = "beta"
			other, err := b.Create(ctx, otherReq, time.Hour)
			if err != nil {
				t.Fatal(err)
			}
			tc.attack(t, b, store, r, other)
			if _, err := b.Get(ctx, r.ID); !errors.Is(err, approval.ErrTampered) {
				t.Errorf("Get: %v, want ErrTampered", err)
			}
			if _, err := b.Approve(ctx, r.ID, "spiffe://ttp/custodian-c"); !errors.Is(err, approval.ErrTampered) {
				t.Errorf("Approve: %v, want ErrTampered", err)
			}
			if _, tampered, err := b.List(ctx); err != nil || tampered != 1 {
				t.Errorf("List: %d tampered, %v; want 1", tampered, err)
			}
		})
	}
	// Another key (another deployment, or a guess) opens nothing.
	b, store, c := newBook(t)
	r, err := b.Create(ctx, destroyRequest(), time.Hour)
	if err != nil {
		t.Fatal(err)
	}
	stranger, err := approval.New(store, bytes.Repeat([]byte{0x43}, 32), approval.WithClock(c.Now))
	if err != nil {
		t.Fatal(err)
	}
	if _, err := stranger.Get(ctx, r.ID); !errors.Is(err, approval.ErrTampered) {
		t.Errorf("Get under another key: %v, want ErrTampered", err)
	}
}

// What the store holds of a request says nothing of who asked for what
// and why: no requester, approver, tenant, action or reason, in the clear
// or base64-encoded, and a reason's length only to within a padding
// block.
func TestStoredRequestsAreSealed(t *testing.T) {
	b, store, _ := newBook(t)
	ctx := context.Background()
	secrets := []string{"custodian-a", "custodian-b", "acme", "destroy_generation", "Fakeperson", "TICKET-1"}
	req := destroyRequest()
	req.Reason = "Fakeperson Testname asked for it, TICKET-1"
	r, err := b.Create(ctx, req, time.Hour)
	if err != nil {
		t.Fatal(err)
	}
	if _, err := b.Approve(ctx, r.ID, "spiffe://ttp/custodian-b"); err != nil {
		t.Fatal(err)
	}
	short := destroyRequest()
	short.Reason = "x"
	rs, err := b.Create(ctx, short, time.Hour)
	if err != nil {
		t.Fatal(err)
	}
	var stored [][]byte
	err = store.Scan(ctx, "jeton:a:", func(keys []string) error {
		for _, k := range keys {
			vals, err := store.Get(ctx, []string{k})
			if err == nil && vals[0] != nil {
				stored = append(stored, vals[0])
				continue
			}
			members, err := store.SetMembers(ctx, k)
			if err != nil {
				return err
			}
			for _, m := range members {
				stored = append(stored, []byte(m))
			}
		}
		return nil
	})
	if err != nil || len(stored) < 4 { // two requests, an approval, the index
		t.Fatalf("scanned %d entries: %v", len(stored), err)
	}
	enc := base64.RawURLEncoding
	for _, v := range stored {
		views := [][]byte{v}
		for _, part := range strings.Split(strings.TrimPrefix(string(v), "2."), ".") {
			if d, err := enc.DecodeString(part); err == nil {
				views = append(views, d)
			}
		}
		for _, view := range views {
			for _, s := range secrets {
				if bytes.Contains(view, []byte(s)) {
					t.Errorf("a stored entry shows %q", s)
				}
			}
		}
	}
	long, _ := store.Get(ctx, []string{"jeton:a:req:" + r.ID})
	small, _ := store.Get(ctx, []string{"jeton:a:req:" + rs.ID})
	if len(long[0]) != len(small[0]) {
		t.Errorf("requests whose reasons are 1 and %d bytes are stored as %d and %d bytes", len(req.Reason), len(small[0]), len(long[0]))
	}
	if got, err := b.Get(ctx, r.ID); err != nil || got.Reason != req.Reason || got.Requester != req.Requester {
		t.Errorf("Get = %+v, %v; want the request as made", got, err)
	}
}

// The requester counts as one approval only while counts says so (a
// custodian of the tenant under the policy in force), like any approver.
func TestRequesterCountsOnlyWhileACustodian(t *testing.T) {
	b, _, _ := newBook(t)
	ctx := context.Background()
	r, err := b.Create(ctx, destroyRequest(), time.Hour)
	if err != nil {
		t.Fatal(err)
	}
	got, err := b.Approve(ctx, r.ID, "spiffe://ttp/custodian-b")
	if err != nil || !got.Approved(all) {
		t.Fatalf("Approve = %+v, %v; want approved", got, err)
	}
	notRequester := func(id string) bool { return id != got.Requester }
	if got.Approved(notRequester) {
		t.Error("a requester that no longer counts was counted")
	}
	if got.Approved(func(string) bool { return false }) {
		t.Error("approved with nobody counting")
	}
}

func TestNewValidates(t *testing.T) {
	if _, err := approval.New(nil, key); err == nil {
		t.Error("New accepted a nil store")
	}
	if _, err := approval.New(memstore.New(), key[:16]); err == nil {
		t.Error("New accepted a short key")
	}
}
