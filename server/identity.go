package server

import (
	"context"
	"crypto/x509"
	"strings"

	"google.golang.org/grpc/credentials"
	"google.golang.org/grpc/peer"
)

// certIdentity names the caller of a verified mTLS connection: the leaf
// certificate's first URI SAN (e.g. a SPIFFE ID), else its subject CN.
func certIdentity(ctx context.Context) (string, bool) {
	chains := verifiedChains(ctx)
	if len(chains) == 0 || len(chains[0]) == 0 {
		return "", false
	}
	return leafIdentity(chains[0][0])
}

// verifiedChains returns the chains the handshake verified the caller's
// certificate by, leaf first, anchor last.
func verifiedChains(ctx context.Context) [][]*x509.Certificate {
	p, ok := peer.FromContext(ctx)
	if !ok {
		return nil
	}
	info, ok := p.AuthInfo.(credentials.TLSInfo)
	if !ok {
		return nil
	}
	return info.State.VerifiedChains
}

// A CN that looks like a URI is refused: URI identities (SPIFFE IDs) must
// come from a URI SAN, so a certificate cannot borrow one through its CN.
func leafIdentity(c *x509.Certificate) (string, bool) {
	if len(c.URIs) > 0 {
		return c.URIs[0].String(), true
	}
	if cn := c.Subject.CommonName; cn != "" && !strings.Contains(cn, ":") {
		return cn, true
	}
	return "", false
}

// peerAddr returns the caller's network address for the audit log.
func peerAddr(ctx context.Context) string {
	if p, ok := peer.FromContext(ctx); ok && p.Addr != nil {
		return p.Addr.String()
	}
	return ""
}

type principalKey struct{}

func withPrincipal(ctx context.Context, p *Principal) context.Context {
	return context.WithValue(ctx, principalKey{}, p)
}

// principalFrom returns the principal the auth interceptor attached.
func principalFrom(ctx context.Context) (*Principal, bool) {
	p, ok := ctx.Value(principalKey{}).(*Principal)
	return p, ok
}
