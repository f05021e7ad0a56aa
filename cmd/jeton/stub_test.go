package main

import (
	"context"
	"crypto/tls"
	"crypto/x509"
	"net"
	"os"
	"strings"
	"sync"
	"testing"

	"google.golang.org/grpc"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/credentials"
	"google.golang.org/grpc/status"

	jetonv1 "github.com/jeton-dev/jeton/proto/jeton/v1"
	"github.com/jeton-dev/jeton/server/devpki"
)

// tlsFiles are the PEM files a CLI user is given.
type tlsFiles struct{ ca, cert, key string }

// startStub starts an in-process stub of jeton's API over mutual TLS 1.3 on
// 127.0.0.1, with throwaway certificates from devpki, and returns its address and the client's
// files. The stub:
//   - tokenizes value v of class "email" or "name" as "tk-" + v; other
//     classes and empty values are INVALID_ARGUMENT items;
//   - reveals "tk-" + v as v, masked as its first byte + "***" with Mask;
//     other tokens are NOT_FOUND items;
//   - allows only the purpose "vetting" (else PERMISSION_DENIED);
//   - fails every call with fail, when set.
func startStub(t testing.TB, fail error) (string, tlsFiles, *stub) {
	t.Helper()
	b, err := devpki.Generate(t.TempDir())
	if err != nil {
		t.Fatal(err)
	}
	cert, err := tls.LoadX509KeyPair(b.ServerCert, b.ServerKey)
	if err != nil {
		t.Fatal(err)
	}
	caPEM, err := os.ReadFile(b.SponsorCA)
	if err != nil {
		t.Fatal(err)
	}
	pool := x509.NewCertPool()
	pool.AppendCertsFromPEM(caPEM)
	creds := credentials.NewTLS(&tls.Config{
		MinVersion:   tls.VersionTLS13,
		Certificates: []tls.Certificate{cert},
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
	return lis.Addr().String(), tlsFiles{b.ServerCA, b.SponsorCert, b.SponsorKey}, s
}

type stub struct {
	jetonv1.UnimplementedTokenizerServer
	jetonv1.UnimplementedDetokenizerServer
	fail error
	// before, when set, runs first on every call with the call's number
	// (1-based); an error it returns is the call's result.
	before func(n int, req any) error

	mu    sync.Mutex
	calls int
	last  any // the last request
}

func (s *stub) record(req any) error {
	s.mu.Lock()
	s.calls++
	s.last = req
	n, before := s.calls, s.before
	s.mu.Unlock()
	if before != nil {
		if err := before(n, req); err != nil {
			return err
		}
	}
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
