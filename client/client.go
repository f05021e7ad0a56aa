// Package client is the Go library for calling jeton: sponsor applications
// tokenize personal fields with it, and TTP applications and state systems
// reveal them.
//
// Every connection uses TLS 1.3, and jeton's listeners require a client
// certificate, so New needs WithTLSFiles or WithTLSConfig. There is no
// insecure mode.
//
// Errors carry canonical gRPC codes. Branch on them with errors.Is and the
// sentinels (ErrNotFound, ErrUnavailable, ...), which match both a failed
// call (*Error) and a failed item inside a batch (*ItemError).
//
// The package never puts a value or a token into an error message it builds.
// Messages from the server are passed through unchanged; the server
// guarantees they hold no personal value.
package client

import (
	"context"
	"crypto/tls"
	"errors"
	"time"

	"google.golang.org/grpc"
	"google.golang.org/grpc/credentials"

	jetonv1 "github.com/jeton-dev/jeton/proto/jeton/v1"
)

// Defaults applied by New when the corresponding option is absent.
const (
	DefaultTimeout   = 10 * time.Second
	DefaultBatchSize = 1000
)

// Client calls a jeton server. It is safe for concurrent use; create one per
// server address and reuse it.
type Client struct {
	conn      *grpc.ClientConn
	tokenizer jetonv1.TokenizerClient
	revealer  jetonv1.DetokenizerClient
	batchSize int
}

// New returns a Client for addr ("host:port"). It does not connect: the
// connection is made on the first call, so a server that is down shows up as
// ErrUnavailable from that call, not from New. New fails when an option is
// invalid, e.g. a TLS file that cannot be read.
func New(addr string, opts ...Option) (*Client, error) {
	if addr == "" {
		return nil, errors.New("client: address is empty")
	}
	o := options{timeout: DefaultTimeout, batchSize: DefaultBatchSize}
	for _, opt := range opts {
		opt(&o)
		if o.err != nil {
			return nil, o.err
		}
	}
	if o.tls == nil {
		return nil, errors.New("client: no TLS configuration: use WithTLSFiles or WithTLSConfig")
	}

	// The deadline interceptor comes first so that it bounds all the
	// attempts of a call together, retries and backoff included.
	interceptors := []grpc.UnaryClientInterceptor{defaultDeadline(o.timeout)}
	if o.retries > 0 {
		interceptors = append(interceptors, retryInterceptor(o.retries, o.backoff))
	}
	dialOpts := []grpc.DialOption{
		grpc.WithTransportCredentials(credentials.NewTLS(o.tls)),
		grpc.WithChainUnaryInterceptor(interceptors...),
	}
	dialOpts = append(dialOpts, o.dialOpts...)

	conn, err := grpc.NewClient(addr, dialOpts...)
	if err != nil {
		return nil, errors.Join(errors.New("client: cannot set up connection"), err)
	}
	return &Client{
		conn:      conn,
		tokenizer: jetonv1.NewTokenizerClient(conn),
		revealer:  jetonv1.NewDetokenizerClient(conn),
		batchSize: o.batchSize,
	}, nil
}

// Close releases the connection. Calls in flight fail with codes.Canceled.
func (c *Client) Close() error {
	return c.conn.Close()
}

// defaultDeadline gives a call without a deadline one of d, so that a
// stalled server cannot hang the caller forever.
func defaultDeadline(d time.Duration) grpc.UnaryClientInterceptor {
	return func(ctx context.Context, method string, req, reply any, cc *grpc.ClientConn, invoker grpc.UnaryInvoker, opts ...grpc.CallOption) error {
		if _, ok := ctx.Deadline(); !ok {
			var cancel context.CancelFunc
			ctx, cancel = context.WithTimeout(ctx, d)
			defer cancel()
		}
		return invoker(ctx, method, req, reply, cc, opts...)
	}
}

// forceTLS13 returns a copy of cfg that cannot negotiate below TLS 1.3.
func forceTLS13(cfg *tls.Config) *tls.Config {
	cfg = cfg.Clone()
	cfg.MinVersion = tls.VersionTLS13
	if cfg.MaxVersion != 0 && cfg.MaxVersion < tls.VersionTLS13 {
		cfg.MaxVersion = 0
	}
	return cfg
}
