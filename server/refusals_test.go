package server_test

import (
	"strings"
	"sync"
	"testing"
	"time"

	"google.golang.org/grpc"
	"google.golang.org/grpc/codes"
	healthpb "google.golang.org/grpc/health/grpc_health_v1"
	"google.golang.org/grpc/mem"
	"google.golang.org/protobuf/encoding/protowire"
	"google.golang.org/protobuf/proto"

	jetonv1 "github.com/jeton-dev/jeton/proto/jeton/v1"
	"github.com/jeton-dev/jeton/server/devpki"
)

// TestBlankCaseReference: a case reference of blanks (spaces of any
// script, zero-width and other invisible characters) does not satisfy a
// purpose that requires one, and the refusal is audited.
func TestBlankCaseReference(t *testing.T) {
	// A minute passes between calls: each refusal is written on its own,
	// not counted into an aggregate (refusalgate.go).
	var mu sync.Mutex
	clock := time.Now()
	now := func() time.Time { mu.Lock(); defer mu.Unlock(); return clock }
	e := startEnv(t, envOpts{now: now})
	tok := tokenize(t, e.sponsorConn(t), &jetonv1.TokenizeItem{FieldClass: "name", Value: useValue("Case Person")})[0].GetToken()
	dc := jetonv1.NewDetokenizerClient(e.ttpConn(t))
	blanks := []string{" ", "\t", " \n\t ",
		"\u00a0", "\u2003", "\u3000", "\u0085", "\u2028", "\u200b", "\ufeff", "\u2060", "\u200b\u00a0\u202f",
		"\u3164", "\u2800", "\x00"}
	for _, ref := range blanks {
		mu.Lock()
		clock = clock.Add(time.Minute)
		mu.Unlock()
		before := len(e.audit.records())
		out, err := dc.Detokenize(ctx(t), &jetonv1.DetokenizeRequest{Tokens: []string{tok}, Purpose: "vetting", CaseRef: ref})
		if code(err) != codes.InvalidArgument || out != nil {
			t.Fatalf("case reference %q: got %v, want InvalidArgument and nothing revealed", ref, code(err))
		}
		recs := e.audit.records()
		if len(recs) != before+1 || recs[len(recs)-1].Outcome != "failed" {
			t.Fatalf("case reference %q: the refusal was not audited once", ref)
		}
	}
	out, err := dc.Detokenize(ctx(t), &jetonv1.DetokenizeRequest{Tokens: []string{tok}, Purpose: "vetting", CaseRef: " CASE-9 "})
	if err != nil || out.Results[0].GetValue() != "Case Person" {
		t.Fatalf("a real case reference with blanks around it: %v", err)
	}
}

// TestRefusalsBeforeTheHandlerAreAudited: a reveal refused by the
// validator, the auth step or the decoder is audited like one the handler
// refuses: identity, purpose and case reference as sent, outcome failed.
func TestRefusalsBeforeTheHandlerAreAudited(t *testing.T) {
	e := startEnv(t, envOpts{})
	ttp := e.ttpConn(t)
	stranger := func() *grpc.ClientConn {
		cert, key := e.issue(t, e.bundle.TTPAuthority, devpki.LeafOptions{URI: "spiffe://jeton.dev/ttp/stranger"})
		return dial(t, e.srv.TrustedAddr().String(), e.bundle.ServerCA, cert, key)
	}()
	rogue := func() *grpc.ClientConn {
		cert, key := e.issue(t, e.bundle.TTPAuthority, devpki.LeafOptions{URI: "spiffe://jeton.dev/sponsor/rogue-on-ttp-ca"})
		return dial(t, e.srv.TrustedAddr().String(), e.bundle.ServerCA, cert, key)
	}()
	many := make([]string, jetonv1.MaxItems+1)
	for i := range many {
		many[i] = "x"
	}
	tests := []struct {
		name     string
		cc       *grpc.ClientConn
		mask     bool
		req      *jetonv1.DetokenizeRequest
		want     codes.Code
		identity string
		purpose  string
	}{
		{"no purpose (validator)", ttp, false, &jetonv1.DetokenizeRequest{Tokens: []string{"x"}, CaseRef: "CASE-1"}, codes.InvalidArgument, devpki.TTPID, ""},
		{"no purpose, Mask (validator)", ttp, true, &jetonv1.DetokenizeRequest{Tokens: []string{"x"}}, codes.InvalidArgument, devpki.TTPID, ""},
		{"too many tokens (validator)", ttp, false, &jetonv1.DetokenizeRequest{Tokens: many, Purpose: "support"}, codes.InvalidArgument, devpki.TTPID, "support"},
		{"purpose too long (validator)", ttp, false, &jetonv1.DetokenizeRequest{Tokens: []string{"x"}, Purpose: strings.Repeat("p", 100)}, codes.InvalidArgument, devpki.TTPID, strings.Repeat("p", 64)},
		{"unknown identity (auth)", stranger, false, &jetonv1.DetokenizeRequest{Tokens: []string{"x"}, Purpose: "support"}, codes.PermissionDenied, "spiffe://jeton.dev/ttp/stranger", "support"},
		{"sponsor identity (auth)", rogue, false, &jetonv1.DetokenizeRequest{Tokens: []string{"x"}, Purpose: "support"}, codes.PermissionDenied, "spiffe://jeton.dev/sponsor/rogue-on-ttp-ca", "support"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			before := len(e.audit.records())
			dc := jetonv1.NewDetokenizerClient(tt.cc)
			var err error
			if tt.mask {
				_, err = dc.Mask(ctx(t), &jetonv1.MaskRequest{Tokens: tt.req.Tokens, Purpose: tt.req.Purpose, CaseRef: tt.req.CaseRef})
			} else {
				_, err = dc.Detokenize(ctx(t), tt.req)
			}
			if code(err) != tt.want {
				t.Fatalf("got %v, want %v", code(err), tt.want)
			}
			recs := e.audit.records()
			if len(recs) != before+1 {
				t.Fatalf("%d audit records for the refused call, want 1", len(recs)-before)
			}
			r := recs[len(recs)-1]
			method := "Detokenize"
			if tt.mask {
				method = "Mask"
			}
			if r.Outcome != "failed" || r.Identity != tt.identity || r.Method != method || r.Purpose != tt.purpose ||
				r.CaseRef != tt.req.CaseRef || r.Detail != tt.want.String() || r.Peer == "" {
				t.Fatalf("audit record = %+v", r)
			}
		})
	}
	// Calls the handler audits are audited once, not twice.
	before := len(e.audit.records())
	if _, err := jetonv1.NewDetokenizerClient(ttp).Detokenize(ctx(t), &jetonv1.DetokenizeRequest{Tokens: []string{"x"}, Purpose: "curiosity"}); code(err) != codes.PermissionDenied {
		t.Fatalf("unknown purpose: %v", err)
	}
	if _, err := jetonv1.NewDetokenizerClient(ttp).Detokenize(ctx(t), &jetonv1.DetokenizeRequest{Tokens: []string{"x"}, Purpose: "support"}); err != nil {
		t.Fatal(err)
	}
	if n := len(e.audit.records()) - before; n != 2 {
		t.Fatalf("two calls audited by the handler left %d records, want 2", n)
	}
}

// rawCodec sends bytes as they are, so a test can send what the proto
// codec of a well-behaved client never would.
type rawCodec struct{}

func (rawCodec) Marshal(v any) (mem.BufferSlice, error) {
	return mem.BufferSlice{mem.SliceBuffer(v.([]byte))}, nil
}
func (rawCodec) Unmarshal(data mem.BufferSlice, v any) error {
	*(v.(*[]byte)) = data.Materialize()
	return nil
}
func (rawCodec) Name() string { return "proto" }

// invalidUTF8 returns m's wire form with the bytes of marker replaced by
// bytes that are not UTF-8.
func invalidUTF8(t testing.TB, m proto.Message, marker string) []byte {
	t.Helper()
	b, err := proto.Marshal(m)
	if err != nil {
		t.Fatal(err)
	}
	i := strings.Index(string(b), marker)
	if i < 0 {
		t.Fatal("marker not in the message")
	}
	for j := range len(marker) {
		b[i+j] = 0xff
	}
	return b
}

// TestInvalidUTF8IsInvalidArgument: a request whose strings are not UTF-8
// is the caller's mistake, INVALID_ARGUMENT, on every listener and
// service, never INTERNAL; a message that is not protobuf at all too. A
// reveal refused so is audited, its case reference made valid.
func TestInvalidUTF8IsInvalidArgument(t *testing.T) {
	e := startEnv(t, envOpts{})
	sc, tc := e.sponsorConn(t), e.ttpConn(t)
	call := func(cc *grpc.ClientConn, method string, body []byte) error {
		var reply []byte
		return cc.Invoke(ctx(t), method, body, &reply, grpc.ForceCodecV2(rawCodec{}))
	}
	tests := []struct {
		name, method string
		cc           *grpc.ClientConn
		body         []byte
		msg          string
	}{
		{"Tokenize value", "/jeton.v1.Tokenizer/Tokenize", sc, invalidUTF8(t, &jetonv1.TokenizeRequest{Items: []*jetonv1.TokenizeItem{{FieldClass: "name", Value: "BADBYTES"}}}, "BADBYTES"),
			"the request holds a string that is not valid UTF-8"},
		{"Tokenize class", "/jeton.v1.Tokenizer/Tokenize", sc, invalidUTF8(t, &jetonv1.TokenizeRequest{Items: []*jetonv1.TokenizeItem{{FieldClass: "BADBYTES", Value: "x"}}}, "BADBYTES"),
			"the request holds a string that is not valid UTF-8"},
		{"Detokenize token", "/jeton.v1.Detokenizer/Detokenize", tc, invalidUTF8(t, &jetonv1.DetokenizeRequest{Tokens: []string{"BADBYTES"}, Purpose: "support"}, "BADBYTES"),
			"the request holds a string that is not valid UTF-8"},
		{"Detokenize case reference", "/jeton.v1.Detokenizer/Detokenize", tc, invalidUTF8(t, &jetonv1.DetokenizeRequest{Tokens: []string{"x"}, Purpose: "support", CaseRef: "CASE-BADBYTES"}, "BADBYTES"),
			"the request holds a string that is not valid UTF-8"},
		{"health service name", "/grpc.health.v1.Health/Check", tc, invalidUTF8(t, &healthpb.HealthCheckRequest{Service: "BADBYTES"}, "BADBYTES"),
			"the request holds a string that is not valid UTF-8"},
		{"not protobuf", "/jeton.v1.Tokenizer/Tokenize", sc, []byte{0x0a, 0xff, 0xff, 0xff},
			"the request is not a valid protobuf message of its type"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			before := len(e.audit.records())
			err := call(tt.cc, tt.method, tt.body)
			if code(err) != codes.InvalidArgument || !strings.Contains(err.Error(), tt.msg) {
				t.Fatalf("got %v, want InvalidArgument %q", err, tt.msg)
			}
			if strings.HasPrefix(tt.method, "/jeton.v1.Detokenizer/") {
				recs := e.audit.records()
				if len(recs) != before+1 || recs[len(recs)-1].Detail != "InvalidArgument" || recs[len(recs)-1].Identity != devpki.TTPID {
					t.Fatal("the refused reveal was not audited")
				}
				if r := recs[len(recs)-1]; r.CaseRef != "" && r.CaseRef != "CASE-\uFFFD" {
					t.Fatalf("audited case reference %q, want the bad bytes replaced", r.CaseRef)
				}
			}
		})
	}
	// The same calls, well-formed, work: the codec changes nothing else.
	ok, err := proto.Marshal(&jetonv1.TokenizeRequest{Items: []*jetonv1.TokenizeItem{{FieldClass: "name", Value: useValue("Good Bytes")}}})
	if err != nil {
		t.Fatal(err)
	}
	if err := call(sc, "/jeton.v1.Tokenizer/Tokenize", ok); err != nil {
		t.Fatalf("a well-formed request: %v", err)
	}
	// A client may not smuggle the marker in: it is refused, not trusted.
	smuggled := protowire.AppendVarint(protowire.AppendTag(ok, protowire.MaxValidNumber, protowire.VarintType), 1)
	if err := call(sc, "/jeton.v1.Tokenizer/Tokenize", smuggled); code(err) != codes.InvalidArgument {
		t.Fatalf("a request carrying the marker: %v", err)
	}
}

// TestHealthListsOnlyServedServices: each listener's health service names
// the services that listener serves and no other.
func TestHealthListsOnlyServedServices(t *testing.T) {
	e := startEnv(t, envOpts{})
	for _, tt := range []struct {
		name      string
		cc        *grpc.ClientConn
		want      []string
		notServed []string
	}{
		{"public", e.sponsorConn(t), []string{"", "jeton.v1.Tokenizer"}, []string{"jeton.v1.Detokenizer", "jeton.v1.Admin"}},
		{"trusted", e.ttpConn(t), []string{"", "jeton.v1.Detokenizer", "jeton.v1.Admin"}, []string{"jeton.v1.Tokenizer"}},
	} {
		t.Run(tt.name, func(t *testing.T) {
			hc := healthpb.NewHealthClient(tt.cc)
			list, err := hc.List(ctx(t), &healthpb.HealthListRequest{})
			if err != nil {
				t.Fatal(err)
			}
			if len(list.GetStatuses()) != len(tt.want) {
				t.Fatalf("List = %v, want exactly %q", list.GetStatuses(), tt.want)
			}
			for _, svc := range tt.want {
				if st, ok := list.GetStatuses()[svc]; !ok || st.GetStatus() != healthpb.HealthCheckResponse_SERVING {
					t.Fatalf("List = %v: %q is not SERVING", list.GetStatuses(), svc)
				}
			}
			for _, svc := range tt.notServed {
				if _, err := hc.Check(ctx(t), &healthpb.HealthCheckRequest{Service: svc}); code(err) != codes.NotFound {
					t.Fatalf("Check(%q) on the %s listener: %v, want NotFound", svc, tt.name, err)
				}
			}
		})
	}
}
