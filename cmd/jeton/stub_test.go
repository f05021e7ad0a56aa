package main

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

	jetonv1 "github.com/jeton-dev/jeton/proto/jeton/v1"
)

// tlsFiles are the PEM files a CLI user is given.
type tlsFiles struct{ ca, cert, key string }

// startStub starts an in-process stub of jeton's API over mutual TLS 1.3 on
// 127.0.0.1, with a throwaway CA, and returns its address and the client's
// files. The stub:
//   - tokenizes value v of class "email" or "name" as "tk-" + v; other
//     classes and empty values are INVALID_ARGUMENT items;
//   - reveals "tk-" + v as v, masked as its first byte + "***" with Mask;
//     other tokens are NOT_FOUND items;
//   - allows only the purpose "vetting" (else PERMISSION_DENIED);
//   - fails every call with fail, when set.
func startStub(t testing.TB, fail error) (string, tlsFiles, *stub) {
	t.Helper()
	dir := t.TempDir()
	caKey := newKey(t)
	caTmpl := &x509.Certificate{
		SerialNumber: big.NewInt(1), Subject: pkix.Name{CommonName: "jeton test CA"},
		NotBefore: time.Now().Add(-time.Hour), NotAfter: time.Now().Add(time.Hour),
		IsCA: true, BasicConstraintsValid: true, KeyUsage: x509.KeyUsageCertSign,
	}
	caDER, err := x509.CreateCertificate(rand.Reader, caTmpl, caTmpl, &caKey.PublicKey, caKey)
	if err != nil {
		t.Fatal(err)
	}
	ca, _ := x509.ParseCertificate(caDER)
	issue := func(serial int64, usage x509.ExtKeyUsage) ([]byte, *ecdsa.PrivateKey) {
		key := newKey(t)
		der, err := x509.CreateCertificate(rand.Reader, &x509.Certificate{
			SerialNumber: big.NewInt(serial), Subject: pkix.Name{CommonName: fmt.Sprint("test-", serial)},
			NotBefore: time.Now().Add(-time.Hour), NotAfter: time.Now().Add(time.Hour),
			KeyUsage: x509.KeyUsageDigitalSignature, ExtKeyUsage: []x509.ExtKeyUsage{usage},
			IPAddresses: []net.IP{net.IPv4(127, 0, 0, 1)},
		}, ca, &key.PublicKey, caKey)
		if err != nil {
			t.Fatal(err)
		}
		return der, key
	}
	srvDER, srvKey := issue(2, x509.ExtKeyUsageServerAuth)
	cliDER, cliKey := issue(3, x509.ExtKeyUsageClientAuth)
	cliKeyDER, err := x509.MarshalPKCS8PrivateKey(cliKey)
	if err != nil {
		t.Fatal(err)
	}
	files := tlsFiles{filepath.Join(dir, "ca.pem"), filepath.Join(dir, "cli.pem"), filepath.Join(dir, "cli-key.pem")}
	writePEM(t, files.ca, "CERTIFICATE", caDER)
	writePEM(t, files.cert, "CERTIFICATE", cliDER)
	writePEM(t, files.key, "PRIVATE KEY", cliKeyDER)

	pool := x509.NewCertPool()
	pool.AddCert(ca)
	creds := credentials.NewTLS(&tls.Config{
		MinVersion:   tls.VersionTLS13,
		Certificates: []tls.Certificate{{Certificate: [][]byte{srvDER}, PrivateKey: srvKey}},
		ClientCAs:    pool,
		ClientAuth:   tls.RequireAndVerifyClientCert,
	})
	lis, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	s := &stub{fail: fail}
	srv := grpc.NewServer(grpc.Creds(creds))
	jetonv1.RegisterTokenizerServer(srv, s)
	jetonv1.RegisterDetokenizerServer(srv, s)
	go srv.Serve(lis)
	t.Cleanup(srv.Stop)
	return lis.Addr().String(), files, s
}

func newKey(t testing.TB) *ecdsa.PrivateKey {
	t.Helper()
	k, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	if err != nil {
		t.Fatal(err)
	}
	return k
}

func writePEM(t testing.TB, path, blockType string, der []byte) {
	t.Helper()
	if err := os.WriteFile(path, pem.EncodeToMemory(&pem.Block{Type: blockType, Bytes: der}), 0o600); err != nil {
		t.Fatal(err)
	}
}

type stub struct {
	jetonv1.UnimplementedTokenizerServer
	jetonv1.UnimplementedDetokenizerServer
	fail error

	mu    sync.Mutex
	calls int
	last  any // the last request
}

func (s *stub) record(req any) error {
	s.mu.Lock()
	defer s.mu.Unlock()
	s.calls++
	s.last = req
	return s.fail
}

func (s *stub) lastRequest() any {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.last
}

func (s *stub) Tokenize(_ context.Context, req *jetonv1.TokenizeRequest) (*jetonv1.TokenizeResponse, error) {
	if err := s.record(req); err != nil {
		return nil, err
	}
	resp := &jetonv1.TokenizeResponse{}
	for _, it := range req.GetItems() {
		r := &jetonv1.TokenizeResult{ClientRef: it.GetClientRef()}
		switch c := it.GetFieldClass(); {
		case c != "email" && c != "name":
			r.Outcome = &jetonv1.TokenizeResult_Error{Error: &jetonv1.ItemError{Code: int32(codes.InvalidArgument), Message: "unknown field class"}}
		case it.GetValue() == "":
			r.Outcome = &jetonv1.TokenizeResult_Error{Error: &jetonv1.ItemError{Code: int32(codes.InvalidArgument), Message: "value is empty"}}
		default:
			r.Outcome = &jetonv1.TokenizeResult_Token{Token: "tk-" + it.GetValue()}
		}
		resp.Results = append(resp.Results, r)
	}
	return resp, nil
}

func (s *stub) Detokenize(_ context.Context, req *jetonv1.DetokenizeRequest) (*jetonv1.DetokenizeResponse, error) {
	if err := s.record(req); err != nil {
		return nil, err
	}
	res, err := reveal(req.GetTokens(), req.GetPurpose(), false)
	return &jetonv1.DetokenizeResponse{Results: res}, err
}

func (s *stub) Mask(_ context.Context, req *jetonv1.MaskRequest) (*jetonv1.MaskResponse, error) {
	if err := s.record(req); err != nil {
		return nil, err
	}
	res, err := reveal(req.GetTokens(), req.GetPurpose(), true)
	return &jetonv1.MaskResponse{Results: res}, err
}

func reveal(tokens []string, purpose string, mask bool) ([]*jetonv1.RevealResult, error) {
	if purpose != "vetting" {
		return nil, status.Error(codes.PermissionDenied, "purpose not allowed")
	}
	var out []*jetonv1.RevealResult
	for _, tok := range tokens {
		r := &jetonv1.RevealResult{Token: tok}
		v, ok := strings.CutPrefix(tok, "tk-")
		switch {
		case !ok || v == "":
			r.Outcome = &jetonv1.RevealResult_Error{Error: &jetonv1.ItemError{Code: int32(codes.NotFound), Message: "token not found"}}
		case mask:
			r.Outcome, r.Masked, r.FieldClass = &jetonv1.RevealResult_Value{Value: v[:1] + "***"}, true, "email"
		default:
			r.Outcome, r.FieldClass = &jetonv1.RevealResult_Value{Value: v}, "email"
		}
		out = append(out, r)
	}
	return out, nil
}
