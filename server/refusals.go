package server

import (
	"context"
	"strings"
	"sync/atomic"
	"unicode/utf8"

	"google.golang.org/grpc"
	"google.golang.org/grpc/status"

	jetonv1 "github.com/jeton-dev/jeton/proto/jeton/v1"
	"github.com/jeton-dev/jeton/server/audit"
)

// revealMethods are the trusted listener's calls that can return a value,
// by full gRPC method name: every one of them is audited, refused or not.
var revealMethods = map[string]string{
	"/" + jetonv1.Detokenizer_ServiceDesc.ServiceName + "/Detokenize": "Detokenize",
	"/" + jetonv1.Detokenizer_ServiceDesc.ServiceName + "/Mask":       "Mask",
}

type auditMarkKey struct{}

// markAudited records that the call wrote (or tried to write) its own
// audit record, so that auditRefusals does not write a second one.
func markAudited(ctx context.Context) {
	if m, ok := ctx.Value(auditMarkKey{}).(*atomic.Bool); ok {
		m.Store(true)
	}
}

// auditRefusals audits a reveal call that was refused before its handler
// could: a request that does not decode (not valid UTF-8, say), the auth
// step (an identity the policy does not know, or with no right on this
// listener), the validator (no purpose, too many tokens, a field too
// long), or a panic. The
// handler audits everything it refuses itself; a probe of purposes or
// batch sizes leaves a trail either way. The record names the certificate
// identity, and the purpose and case reference as sent, made valid UTF-8
// and clipped. Like every refused reveal, it is written one by one only at
// a bounded pace per identity, method and code, and counted in an
// aggregate record past it (auditRefusal).
func (s *Server) auditRefusals(ctx context.Context, req any, info *grpc.UnaryServerInfo, handler grpc.UnaryHandler) (resp any, err error) {
	method, ok := revealMethods[info.FullMethod]
	if !ok {
		return handler(ctx, req)
	}
	mark := new(atomic.Bool)
	defer func() {
		if p := recover(); p != nil {
			s.auditRefused(ctx, method, req, "Internal", mark)
			panic(p)
		}
		if err != nil {
			s.auditRefused(ctx, method, req, status.Code(err).String(), mark)
		}
	}()
	return handler(context.WithValue(ctx, auditMarkKey{}, mark), req)
}

func (s *Server) auditRefused(ctx context.Context, method string, req any, code string, mark *atomic.Bool) {
	if mark.Load() {
		return
	}
	r, _ := req.(interface {
		GetPurpose() string
		GetCaseRef() string
	})
	var purpose, caseRef string
	if r != nil {
		purpose, caseRef = clip(r.GetPurpose(), 64), clip(r.GetCaseRef(), 256)
	}
	id, _ := certIdentity(ctx)
	s.auditRefusal(ctx, audit.Record{
		Time: s.now(), Identity: clip(id, 1024), Peer: peerAddr(ctx), Method: method,
		Purpose: purpose, CaseRef: caseRef, Outcome: "failed", Detail: code,
	})
}

// clip makes s valid UTF-8 and at most n bytes, cut on a rune boundary.
func clip(s string, n int) string {
	s = strings.ToValidUTF8(s, "\uFFFD")
	if len(s) <= n {
		return s
	}
	s = s[:n]
	for len(s) > 0 && !utf8.ValidString(s) {
		s = s[:len(s)-1]
	}
	return s
}
