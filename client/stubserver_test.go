package client_test

import (
	"context"
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/tls"
	"crypto/x509"
	"crypto/x509/pkix"
	"encoding/pem"
	"fmt"
	"math/big"
	"net"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"testing"
	"time"

	"google.golang.org/grpc"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/credentials"
	"google.golang.org/grpc/status"
	"google.golang.org/protobuf/proto"

	jetonv1 "github.com/jeton-dev/jeton/proto/jeton/v1"
)

// pki is a throwaway CA with a server certificate for 127.0.0.1 and client
// certificates, written as PEM files the way operators receive them.
type pki struct {
	caFile     string
	pool       *x509.CertPool
	serverCert tls.Certificate
	// clients maps a client name to its certificate and key files.
	clients map[string][2]string
}

func newPKI(dir string, clientNames ...string) (*pki, error) {
	caKey, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	if err != nil {
		return nil, err
	}
	caTmpl := &x509.Certificate{
		SerialNumber:          big.NewInt(1),
		Subject:               pkix.Name{CommonName: "jeton test CA"},
		NotBefore:             time.Now().Add(-time.Hour),
		NotAfter:              time.Now().Add(24 * time.Hour),
		IsCA:                  true,
		BasicConstraintsValid: true,
		KeyUsage:              x509.KeyUsageCertSign,
	}
	caDER, err := x509.CreateCertificate(rand.Reader, caTmpl, caTmpl, &caKey.PublicKey, caKey)
	if err != nil {
		return nil, err
	}
	ca, _ := x509.ParseCertificate(caDER)
	p := &pki{caFile: filepath.Join(dir, "ca.pem"), pool: x509.NewCertPool(), clients: map[string][2]string{}}
	p.pool.AddCert(ca)
	if err := writePEM(p.caFile, "CERTIFICATE", caDER); err != nil {
		return nil, err
	}

	issue := func(serial int64, cn string, usage x509.ExtKeyUsage) ([]byte, *ecdsa.PrivateKey, error) {
		key, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
		if err != nil {
			return nil, nil, err
		}
		tmpl := &x509.Certificate{
			SerialNumber: big.NewInt(serial),
			Subject:      pkix.Name{CommonName: cn},
			NotBefore:    time.Now().Add(-time.Hour),
			NotAfter:     time.Now().Add(24 * time.Hour),
			KeyUsage:     x509.KeyUsageDigitalSignature,
			ExtKeyUsage:  []x509.ExtKeyUsage{usage},
			IPAddresses:  []net.IP{net.IPv4(127, 0, 0, 1)},
		}
		der, err := x509.CreateCertificate(rand.Reader, tmpl, ca, &key.PublicKey, caKey)
		return der, key, err
	}
	der, key, err := issue(2, "jetond", x509.ExtKeyUsageServerAuth)
	if err != nil {
		return nil, err
	}
	p.serverCert = tls.Certificate{Certificate: [][]byte{der}, PrivateKey: key}
	for i, name := range clientNames {
		der, key, err := issue(int64(10+i), name, x509.ExtKeyUsageClientAuth)
		if err != nil {
			return nil, err
		}
		keyDER, err := x509.MarshalPKCS8PrivateKey(key)
		if err != nil {
			return nil, err
		}
		certFile, keyFile := filepath.Join(dir, name+".pem"), filepath.Join(dir, name+"-key.pem")
		if err := writePEM(certFile, "CERTIFICATE", der); err != nil {
			return nil, err
		}
		if err := writePEM(keyFile, "PRIVATE KEY", keyDER); err != nil {
			return nil, err
		}
		p.clients[name] = [2]string{certFile, keyFile}
	}
	return p, nil
}

func writePEM(path, blockType string, der []byte) error {
	return os.WriteFile(path, pem.EncodeToMemory(&pem.Block{Type: blockType, Bytes: der}), 0o600)
}

// serverTLS is what jetond requires: TLS 1.3 and a client certificate from
// the CA.
func (p *pki) serverTLS() *tls.Config {
	return &tls.Config{
		MinVersion:   tls.VersionTLS13,
		Certificates: []tls.Certificate{p.serverCert},
		ClientCAs:    p.pool,
		ClientAuth:   tls.RequireAndVerifyClientCert,
	}
}

// newTestPKI returns a pki with one client, "app".
func newTestPKI(t testing.TB) *pki {
	t.Helper()
	p, err := newPKI(t.TempDir(), "app")
	if err != nil {
		t.Fatalf("newPKI: %v", err)
	}
	return p
}

// call is one RPC as the stub received it.
type call struct {
	method   string
	req      proto.Message
	deadline time.Duration // time left when it arrived; 0 if none
}

// stub is a small in-memory implementation of jeton's own API:
//   - a token is "tk-<n>"; the same idempotency key gets the same response;
//   - classes "email", "name" and "passport" exist; passports reveal masked;
//   - the only purpose is "vetting", others get PERMISSION_DENIED;
//   - an empty value or an unknown class is an INVALID_ARGUMENT item error,
//     an unknown token a NOT_FOUND one.
type stub struct {
	jetonv1.UnimplementedTokenizerServer
	jetonv1.UnimplementedDetokenizerServer

	// before, when set, runs first on every call; an error it returns is
	// the call's result. n counts the calls so far, this one included.
	before func(ctx context.Context, method string, n int) error
	// itemCodes makes Tokenize fail the items with these values with the
	// given code.
	itemCodes map[string]codes.Code

	mu     sync.Mutex
	calls  []call
	values map[string]stored
	byKey  map[string]*jetonv1.TokenizeResponse
}

type stored struct{ class, value string }

func newStub() *stub {
	return &stub{values: map[string]stored{}, byKey: map[string]*jetonv1.TokenizeResponse{}}
}

// serve starts a TLS server for s on 127.0.0.1 and returns its address.
func (s *stub) serve(cfg *tls.Config, services ...func(grpc.ServiceRegistrar)) (addr string, stop func(), err error) {
	lis, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		return "", nil, err
	}
	srv := grpc.NewServer(grpc.Creds(credentials.NewTLS(cfg)), grpc.UnaryInterceptor(s.intercept))
	for _, register := range services {
		register(srv)
	}
	go srv.Serve(lis)
	return lis.Addr().String(), srv.Stop, nil
}

func (s *stub) tokenizer(r grpc.ServiceRegistrar)   { jetonv1.RegisterTokenizerServer(r, s) }
func (s *stub) detokenizer(r grpc.ServiceRegistrar) { jetonv1.RegisterDetokenizerServer(r, s) }

// startStub serves s with both services over TLS built from p; adjust can
// change the server's TLS config.
func startStub(t testing.TB, s *stub, p *pki, adjust ...func(*tls.Config)) string {
	t.Helper()
	cfg := p.serverTLS()
	for _, f := range adjust {
		f(cfg)
	}
	addr, stop, err := s.serve(cfg, s.tokenizer, s.detokenizer)
	if err != nil {
		t.Fatalf("serve: %v", err)
	}
	t.Cleanup(stop)
	return addr
}

func (s *stub) intercept(ctx context.Context, req any, info *grpc.UnaryServerInfo, handler grpc.UnaryHandler) (any, error) {
	c := call{method: info.FullMethod, req: proto.Clone(req.(proto.Message))}
	if d, ok := ctx.Deadline(); ok {
		c.deadline = time.Until(d)
	}
	s.mu.Lock()
	s.calls = append(s.calls, c)
	n := len(s.calls)
	s.mu.Unlock()
	if s.before != nil {
		if err := s.before(ctx, info.FullMethod, n); err != nil {
			return nil, err
		}
	}
	return handler(ctx, req)
}

// recorded returns the calls of one method (e.g. "Tokenize") so far.
func (s *stub) recorded(method string) []call {
	s.mu.Lock()
	defer s.mu.Unlock()
	var out []call
	for _, c := range s.calls {
		if strings.HasSuffix(c.method, "/"+method) {
			out = append(out, c)
		}
	}
	return out
}

// lookup returns what the stub stored under token.
func (s *stub) lookup(token string) (stored, bool) {
	s.mu.Lock()
	defer s.mu.Unlock()
	v, ok := s.values[token]
	return v, ok
}

var stubClasses = map[string]bool{"email": true, "name": true, "passport": true, "address": true}

func (s *stub) Tokenize(_ context.Context, req *jetonv1.TokenizeRequest) (*jetonv1.TokenizeResponse, error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	if resp, ok := s.byKey[req.GetIdempotencyKey()]; ok && req.GetIdempotencyKey() != "" {
		return resp, nil
	}
	resp := &jetonv1.TokenizeResponse{}
	for _, it := range req.GetItems() {
		r := &jetonv1.TokenizeResult{ClientRef: it.GetClientRef()}
		switch code, ok := s.itemCodes[it.GetValue()]; {
		case ok:
			r.Outcome = itemErr(code, "server says no")
		case !stubClasses[it.GetFieldClass()]:
			r.Outcome = itemErr(codes.InvalidArgument, "unknown field class")
		case it.GetValue() == "":
			r.Outcome = itemErr(codes.InvalidArgument, "value is empty")
		default:
			tok := fmt.Sprintf("tk-%d", len(s.values)+1)
			s.values[tok] = stored{it.GetFieldClass(), it.GetValue()}
			r.Outcome = &jetonv1.TokenizeResult_Token{Token: tok}
		}
		resp.Results = append(resp.Results, r)
	}
	s.byKey[req.GetIdempotencyKey()] = resp
	return resp, nil
}

func itemErr(c codes.Code, msg string) *jetonv1.TokenizeResult_Error {
	return &jetonv1.TokenizeResult_Error{Error: &jetonv1.ItemError{Code: int32(c), Message: msg}}
}

func (s *stub) Detokenize(_ context.Context, req *jetonv1.DetokenizeRequest) (*jetonv1.DetokenizeResponse, error) {
	res, err := s.reveal(req.GetTokens(), req.GetPurpose(), false)
	return &jetonv1.DetokenizeResponse{Results: res}, err
}

func (s *stub) Mask(_ context.Context, req *jetonv1.MaskRequest) (*jetonv1.MaskResponse, error) {
	res, err := s.reveal(req.GetTokens(), req.GetPurpose(), true)
	return &jetonv1.MaskResponse{Results: res}, err
}

func (s *stub) reveal(tokens []string, purpose string, mask bool) ([]*jetonv1.RevealResult, error) {
	if purpose != "vetting" {
		return nil, status.Error(codes.PermissionDenied, "purpose not allowed")
	}
	s.mu.Lock()
	defer s.mu.Unlock()
	var out []*jetonv1.RevealResult
	for _, tok := range tokens {
		r := &jetonv1.RevealResult{Token: tok}
		v, ok := s.values[tok]
		if !ok {
			r.Outcome = &jetonv1.RevealResult_Error{Error: &jetonv1.ItemError{Code: int32(codes.NotFound), Message: "token not found"}}
			out = append(out, r)
			continue
		}
		r.FieldClass = v.class
		value := v.value
		if mask || v.class == "passport" {
			value = value[:1] + "***"
			r.Masked = true
		}
		r.Outcome = &jetonv1.RevealResult_Value{Value: value}
		out = append(out, r)
	}
	return out, nil
}

// exampleEnv is what the examples need to reach jeton the way production
// callers do: a sponsor app on the public listener and a TTP app on the
// trusted one, each with its own client certificate.
// errUnavailable is what a server returns when a backend is down.
var errUnavailable = status.Error(codes.Unavailable, "backend down")

// failTimes makes the first n calls fail with err.
func failTimes(n int, err error) func(context.Context, string, int) error {
	return func(_ context.Context, _ string, i int) error {
		if i <= n {
			return err
		}
		return nil
	}
}
