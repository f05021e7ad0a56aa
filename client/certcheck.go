package client

import (
	"context"
	"crypto/tls"
	"errors"
	"net"
	"strings"
	"sync/atomic"
	"time"

	"google.golang.org/grpc"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/credentials"
	"google.golang.org/grpc/status"
)

// msgCertNotAccepted starts the message of a call refused because the
// server did not accept the client's certificate.
const msgCertNotAccepted = "certificate not accepted"

// verdictWait bounds how long a new connection waits for the server's
// first bytes after the TLS handshake. A gRPC server sends its HTTP/2
// settings at once, so a healthy connection waits one round trip; a server
// that sends nothing first only delays the connection by this much.
const verdictWait = 2 * time.Second

// certCheckCreds is TLS that tells a refused client certificate apart from
// a server that is down.
//
// In TLS 1.3 the client finishes its handshake before the server has
// checked the client's certificate; the server's verdict is the first
// thing it sends afterwards: an alert, or its first HTTP/2 frames. gRPC
// would only see the alert later, as a "broken pipe" or a reset while
// writing its preface, and report a retryable UNAVAILABLE. So the
// handshake here reads that first record itself: an alert about the
// certificate fails the connection as refused, and the calls it fails are
// reported as UNAUTHENTICATED ("certificate not accepted"), which is never
// retried. The bytes read are handed back to gRPC untouched.
type certCheckCreds struct {
	credentials.TransportCredentials
	// refused is the reason the last handshake was refused, or nil once
	// a handshake succeeded.
	refused *atomic.Pointer[string]
}

func newCertCheckCreds(cfg *tls.Config) *certCheckCreds {
	return &certCheckCreds{TransportCredentials: credentials.NewTLS(cfg), refused: &atomic.Pointer[string]{}}
}

func (c *certCheckCreds) ClientHandshake(ctx context.Context, authority string, raw net.Conn) (net.Conn, credentials.AuthInfo, error) {
	conn, info, err := c.TransportCredentials.ClientHandshake(ctx, authority, raw)
	if err != nil {
		c.note(err)
		return nil, nil, err
	}
	deadline := time.Now().Add(verdictWait)
	if d, ok := ctx.Deadline(); ok && d.Before(deadline) {
		deadline = d
	}
	if err := conn.SetReadDeadline(deadline); err != nil {
		conn.Close()
		return nil, nil, err
	}
	var first [1]byte
	n, err := conn.Read(first[:])
	if err != nil && !isTimeout(err) {
		conn.Close()
		c.note(err)
		return nil, nil, err
	}
	if err := conn.SetReadDeadline(time.Time{}); err != nil {
		conn.Close()
		return nil, nil, err
	}
	c.refused.Store(nil)
	return &peekedConn{Conn: conn, first: first[:n]}, info, nil
}

// note remembers err as the reason for refusal when it is the server's
// alert about the client's certificate.
func (c *certCheckCreds) note(err error) {
	if reason, ok := certRefusal(err); ok {
		c.refused.Store(&reason)
	}
}

func (c *certCheckCreds) Clone() credentials.TransportCredentials {
	return &certCheckCreds{TransportCredentials: c.TransportCredentials.Clone(), refused: c.refused}
}

// interceptor turns the UNAVAILABLE of a call that failed because the
// server refused the certificate into UNAUTHENTICATED. It runs inside the
// retry interceptor, so the refusal is not retried.
func (c *certCheckCreds) interceptor(ctx context.Context, method string, req, reply any, cc *grpc.ClientConn, invoker grpc.UnaryInvoker, opts ...grpc.CallOption) error {
	err := invoker(ctx, method, req, reply, cc, opts...)
	if status.Code(err) == codes.Unavailable {
		if reason := c.refused.Load(); reason != nil {
			return status.Error(codes.Unauthenticated, msgCertNotAccepted+" by the server ("+*reason+"): check that the certificate is issued by the CA this listener trusts, is valid, and names an identity of the policy")
		}
	}
	return err
}

// certRefusal reports whether err is a TLS alert from the server about the
// client's certificate, and returns the alert's text.
func certRefusal(err error) (string, bool) {
	var op *net.OpError
	if !errors.As(err, &op) || op.Op != "remote error" || op.Err == nil {
		return "", false
	}
	// crypto/tls reports received alerts as an OpError "remote error"
	// around an unexported alert type; its text names the alert.
	text := op.Err.Error()
	for _, s := range []string{"certificate", "access denied"} {
		if strings.Contains(text, s) {
			return text, true
		}
	}
	return "", false
}

func isTimeout(err error) bool {
	var ne net.Error
	return errors.As(err, &ne) && ne.Timeout()
}

// peekedConn gives back the bytes read to learn the server's verdict
// before reading on.
type peekedConn struct {
	net.Conn
	first []byte
}

func (p *peekedConn) Read(b []byte) (int, error) {
	if len(p.first) > 0 {
		n := copy(b, p.first)
		p.first = p.first[n:]
		return n, nil
	}
	return p.Conn.Read(b)
}
