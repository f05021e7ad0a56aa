package client_test

import (
	"context"
	"errors"
	"strconv"
	"strings"
	"sync/atomic"
	"testing"

	"google.golang.org/grpc"
	"google.golang.org/grpc/codes"

	"github.com/jeton-dev/jeton/client"
	jetonv1 "github.com/jeton-dev/jeton/proto/jeton/v1"
)

type address struct {
	Street string `jeton:"address"`
	City   string // untagged: left alone
}

type guest struct {
	ID      string   `jeton:",subject"`
	Email   string   `jeton:"email"`
	Phone   *string  `jeton:"name,omitempty"`
	Aliases []string `jeton:"name,omitempty"`
	Home    address
	Work    *address
	Badge   int
	Skipped string `jeton:"-"`
}

// countCalls returns a dial option counting the client's RPC attempts.
func countCalls(n *atomic.Int64) client.Option {
	return client.WithDialOptions(grpc.WithChainUnaryInterceptor(
		func(ctx context.Context, method string, req, reply any, cc *grpc.ClientConn, invoker grpc.UnaryInvoker, opts ...grpc.CallOption) error {
			n.Add(1)
			return invoker(ctx, method, req, reply, cc, opts...)
		}))
}

func TestTokenizeStructReplacesTaggedFields(t *testing.T) {
	p := newTestPKI(t)
	s := newStub()
	c := newClient(t, startStub(t, s, p), p)
	phone := "Anne Phone"
	g := guest{
		ID: "guest-0001", Email: "anne@example.org", Phone: &phone, Aliases: []string{"Anne A", "", "Annie"},
		Home: address{Street: "1 Fake Street", City: "Lyon"}, Work: &address{Street: "2 Test Avenue"},
		Badge: 7, Skipped: "keep me",
	}
	if err := c.TokenizeStruct(context.Background(), &g); err != nil {
		t.Fatal(err)
	}
	if n := len(s.recorded("Tokenize")); n != 1 {
		t.Errorf("%d Tokenize calls, want 1 batched call", n)
	}
	req := s.recorded("Tokenize")[0].req.(*jetonv1.TokenizeRequest)
	var classes []string
	for _, it := range req.GetItems() {
		classes = append(classes, it.GetFieldClass())
		if it.GetSubjectId() != "guest-0001" {
			t.Errorf("item of class %s sent with subject %q, want the ID field", it.GetFieldClass(), it.GetSubjectId())
		}
	}
	if got := strings.Join(classes, ","); got != "email,name,name,name,address,address" {
		t.Errorf("sent classes %s", got)
	}
	check := func(field, got, class, want string) {
		t.Helper()
		v, ok := s.lookup(got)
		if !ok || v.class != class || v.value != want {
			t.Errorf("%s = %q, want the token of the %s value", field, got, class)
		}
	}
	check("Email", g.Email, "email", "anne@example.org")
	check("Phone", *g.Phone, "name", "Anne Phone")
	check("Aliases[0]", g.Aliases[0], "name", "Anne A")
	check("Aliases[2]", g.Aliases[2], "name", "Annie")
	check("Home.Street", g.Home.Street, "address", "1 Fake Street")
	check("Work.Street", g.Work.Street, "address", "2 Test Avenue")
	if g.ID != "guest-0001" || g.Aliases[1] != "" || g.Home.City != "Lyon" || g.Badge != 7 || g.Skipped != "keep me" {
		t.Errorf("untagged, omitted or skipped fields changed: %+v", g)
	}

	// And back, for a trusted caller with a purpose.
	if err := c.DetokenizeStruct(context.Background(), &g, "vetting", "case-1"); err != nil {
		t.Fatal(err)
	}
	if g.Email != "anne@example.org" || *g.Phone != "Anne Phone" || g.Aliases[2] != "Annie" || g.Work.Street != "2 Test Avenue" {
		t.Errorf("detokenized struct = %+v", g)
	}
}

// A field whose item fails keeps its value and is named in the error; the
// others are replaced.
func TestTokenizeStructsItemErrors(t *testing.T) {
	p := newTestPKI(t)
	s := newStub()
	s.itemCodes = map[string]codes.Code{"bad@example.org": codes.InvalidArgument}
	c := newClient(t, startStub(t, s, p), p)
	recs := []guest{{ID: "g1", Email: "anne@example.org", Home: address{Street: "1 Rue"}}, {ID: "g2", Email: "bad@example.org", Home: address{Street: "3 Rue"}}}
	err := c.TokenizeStructs(context.Background(), recs)
	var se *client.StructError
	if !errors.As(err, &se) || len(se.Fields) != 1 || se.Fields[0].Record != 1 || se.Fields[0].Field != "Email" {
		t.Fatalf("err = %v, want a StructError naming record 1 field Email", err)
	}
	if !errors.Is(err, client.ErrInvalidArgument) {
		t.Errorf("errors.Is(err, ErrInvalidArgument) = false for %v", err)
	}
	if strings.Contains(err.Error(), "bad@example.org") {
		t.Errorf("error quotes the value: %v", err)
	}
	if recs[1].Email != "bad@example.org" {
		t.Error("the failed field was changed")
	}
	if _, ok := s.lookup(recs[0].Email); !ok {
		t.Error("record 0 was not tokenized")
	}
	if _, ok := s.lookup(recs[1].Home.Street); !ok {
		t.Error("record 1's other field was not tokenized")
	}
}

// Detokenizing a token into a field of another class fails the field.
func TestDetokenizeStructClassMismatch(t *testing.T) {
	p := newTestPKI(t)
	s := newStub()
	c := newClient(t, startStub(t, s, p), p)
	tok, err := c.TokenizeValue(context.Background(), "passport", "X1234567")
	if err != nil {
		t.Fatal(err)
	}
	g := guest{Email: tok}
	err = c.DetokenizeStruct(context.Background(), &g, "vetting", "")
	var se *client.StructError
	if !errors.As(err, &se) || se.Fields[0].Field != "Email" || g.Email != tok {
		t.Fatalf("err = %v, field = %q; want the Email field refused and unchanged", err, g.Email)
	}
}

func TestStructTagErrorsNameTheField(t *testing.T) {
	p := newTestPKI(t)
	s := newStub()
	c := newClient(t, startStub(t, s, p), p)
	type badInt struct {
		Age int `jeton:"text"`
	}
	type badMap struct {
		Notes map[string]string `jeton:"text"`
	}
	type badOption struct {
		Email string `jeton:"email,sometimes"`
	}
	type noClass struct {
		Email string `jeton:""`
	}
	type twoSubjects struct {
		A string `jeton:",subject"`
		B string `jeton:",subject"`
	}
	type nested struct {
		Inner badInt
	}
	type taggedStruct struct {
		Home address `jeton:"address"`
	}
	tests := []struct {
		name string
		v    any
		want string
	}{
		{"int", &badInt{Age: 40}, "badInt.Age"},
		{"map", &badMap{}, "badMap.Notes"},
		{"option", &badOption{}, `"sometimes"`},
		{"no class", &noClass{}, "noClass.Email"},
		{"two subjects", &twoSubjects{}, "twoSubjects.B"},
		{"nested", &nested{}, "badInt.Age"},
		{"tagged struct", &taggedStruct{}, "taggedStruct.Home"},
		{"not a pointer", guest{}, "pointer to a struct"},
		{"nil pointer", (*guest)(nil), "nil pointer"},
		{"not a struct", new(string), "pointer to a struct"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			err := c.TokenizeStruct(context.Background(), tt.v)
			if err == nil || !strings.Contains(err.Error(), tt.want) {
				t.Fatalf("err = %v, want one naming %s", err, tt.want)
			}
		})
	}
	if n := len(s.recorded("Tokenize")); n != 0 {
		t.Errorf("%d calls were sent for bad structs", n)
	}
}

// TokenizeStructs makes one RPC per batch-size chunk of all the structs'
// fields together: ceil(items/limit) calls, counted on the wire.
func TestTokenizeStructsBatches(t *testing.T) {
	env, stop := startExampleServer()
	defer stop()
	type row struct {
		Email string `jeton:"email"`
	}
	type wide struct {
		Name  string `jeton:"name"`
		Email string `jeton:"email"`
		Phone string `jeton:"phone,omitempty"`
	}
	ctx := context.Background()
	for _, tt := range []struct {
		name      string
		limit     int
		fields    int
		wantCalls int64
	}{
		{"one field, limit 1000", 1000, 1, 10},
		{"one field, limit 3000", 3000, 1, 4},
		{"two fields, limit 1000", 1000, 2, 20},
	} {
		t.Run(tt.name, func(t *testing.T) {
			var calls atomic.Int64
			c, err := client.NewSponsor(env.publicAddr, client.WithTLSFiles(env.caFile, env.sponsorCert, env.sponsorKey),
				client.WithBatchSize(tt.limit), countCalls(&calls))
			if err != nil {
				t.Fatal(err)
			}
			defer c.Close()
			const n = 10000
			var err2 error
			if tt.fields == 1 {
				recs := make([]row, n)
				for i := range recs {
					recs[i].Email = "guest" + strconv.Itoa(i) + "@example.org"
				}
				err2 = c.TokenizeStructs(ctx, recs)
				if err2 == nil && (!strings.HasPrefix(recs[0].Email, "tok_email_") || !strings.HasPrefix(recs[n-1].Email, "tok_email_")) {
					t.Error("fields were not replaced by tokens")
				}
			} else {
				recs := make([]*wide, n)
				for i := range recs {
					recs[i] = &wide{Name: "Guest Number " + strconv.Itoa(i), Email: "guest" + strconv.Itoa(i) + "@example.org"}
				}
				err2 = c.TokenizeStructs(ctx, recs)
				if err2 == nil && (!strings.HasPrefix(recs[n-1].Name, "tok_name_") || recs[n-1].Phone != "") {
					t.Error("fields were not replaced by tokens")
				}
			}
			if err2 != nil {
				t.Fatal(err2)
			}
			if got := calls.Load(); got != tt.wantCalls {
				t.Errorf("%d RPCs, want exactly %d", got, tt.wantCalls)
			}
		})
	}
}
