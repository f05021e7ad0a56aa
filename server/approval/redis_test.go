package approval_test

import (
	"context"
	"errors"
	"testing"
	"time"

	"github.com/jeton-dev/jeton/integration/testenv"
	"github.com/jeton-dev/jeton/server/approval"
	"github.com/jeton-dev/jeton/tokenizer/redisstore"
)

// Two replicas' books over one real Redis: a request made on one is
// listed, approved and removed on the other, and its entries expire in
// Redis after its expiry.
func TestBooksShareARealRedis(t *testing.T) {
	r := testenv.StartRedis(t)
	ctx := context.Background()
	book := func() *approval.Book {
		c, err := redisstore.NewClient(redisstore.Config{Addrs: []string{r.Addr}})
		if err != nil {
			t.Fatal(err)
		}
		t.Cleanup(func() { _ = c.Close() })
		b, err := approval.New(redisstore.New(c), key)
		if err != nil {
			t.Fatal(err)
		}
		return b
	}
	one, two := book(), book()
	req, err := one.Create(ctx, destroyRequest(), time.Hour)
	if err != nil {
		t.Fatal(err)
	}
	list, tampered, err := two.List(ctx)
	if err != nil || tampered != 0 || len(list) != 1 || list[0].ID != req.ID {
		t.Fatalf("List on the other replica = %+v, %d, %v", list, tampered, err)
	}
	got, err := two.Approve(ctx, req.ID, "spiffe://ttp/custodian-b")
	if err != nil || !got.Approved(all) {
		t.Fatalf("Approve on the other replica = %+v, %v", got, err)
	}
	if got, err := one.Get(ctx, req.ID); err != nil || len(got.Approvers) != 1 {
		t.Fatalf("Get on the first replica = %+v, %v", got, err)
	}
	rc := r.Client(t)
	for _, name := range []string{"jeton:a:req:" + req.ID, "jeton:a:req:" + req.ID + ":approvals", "jeton:a:index"} {
		ttl, err := rc.PTTL(ctx, name).Result()
		if err != nil || ttl <= time.Hour || ttl > 26*time.Hour {
			t.Errorf("%s expires in %v (%v); want a little over the request's life plus a day", name, ttl, err)
		}
	}
	if err := one.Remove(ctx, req.ID); err != nil {
		t.Fatal(err)
	}
	if _, err := two.Get(ctx, req.ID); !errors.Is(err, approval.ErrNotFound) {
		t.Fatalf("Get after Remove on the other replica: %v", err)
	}
}
