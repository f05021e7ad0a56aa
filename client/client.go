// Package client is the Go library for calling jeton: sponsor applications
// tokenize personal fields with it, and TTP applications and state systems
// reveal them.
//
// Each party gets a type with only the calls it may make:
//
//   - Sponsor (NewSponsor), on the public listener: Tokenize and the
//     struct helpers. It has no reveal and no admin method.
//   - Revealer (NewRevealer), on the trusted listener: Detokenize, Mask and
//     the struct helpers, each with a stated purpose.
//   - Custodian (NewCustodian), on the trusted listener: erasure, purges,
//     key generations, stats.
//
// The server enforces the same split whatever the client does: the public
// listener has no Detokenizer or Admin service at all. Client bundles all
// three for tools and tests that act as several parties.
//
// Every connection uses TLS 1.3, and jeton's listeners require a client
// certificate, so the constructors need WithTLSFiles or WithTLSConfig. There
// is no insecure mode. A target is "host:port" or any gRPC target, such as
// "dns:///jeton.example:7443": every address it resolves to is used, round
// robin, so calls spread over all jetond replicas.
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
	"google.golang.org/grpc/keepalive"
)

// Defaults applied by the constructors when the corresponding option is
// absent.
const (
	DefaultTimeout   = 10 * time.Second
	DefaultBatchSize = 1000
)

// Keepalive pings an idle connection every KeepaliveTime and drops it when
// no answer comes within KeepaliveTimeout, so a replica that vanished
// (a network partition, a killed pod) is noticed without waiting for TCP.
// jetond refuses pings more frequent than every 10s (its enforcement
// MinTime), so KeepaliveTime must stay above that; pings are sent only
// while calls are in flight, as jetond does not permit them otherwise.
const (
	KeepaliveTime    = 30 * time.Second
	KeepaliveTimeout = 10 * time.Second
)

// roundRobin spreads calls over every address the target resolves to.
const roundRobin = `{"loadBalancingConfig":[{"round_robin":{}}]}`

// core is what every role shares: one gRPC connection (to every resolved
// address) and the batch size.
type core struct {
	conn      *grpc.ClientConn
	batchSize int
	// tenant limits reveals and erasures to one tenant; see WithTenant.
	tenant string
}

// Close releases the connection. Calls in flight fail with codes.Canceled.
func (c *core) Close() error {
	return c.conn.Close()
}

// dial checks the options and sets up a connection to target. It does not
// connect: the connection is made on the first call, so a server that is
// down shows up as ErrUnavailable from that call.
func dial(target string, opts []Option) (*core, error) {
	if target == "" {
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
	creds := newCertCheckCreds(o.tls)

	// The deadline interceptor comes first so that it bounds all the
	// attempts of a call together, retries and backoff included. The
	// certificate check comes last, inside the retries, so that a refused
	// certificate is never retried.
	interceptors := []grpc.UnaryClientInterceptor{defaultDeadline(o.timeout)}
	if o.retries > 0 {
		interceptors = append(interceptors, retryInterceptor(o.retries, o.backoff))
	}
	interceptors = append(interceptors, creds.interceptor)
	dialOpts := []grpc.DialOption{
		grpc.WithTransportCredentials(creds),
		grpc.WithChainUnaryInterceptor(interceptors...),
		grpc.WithDefaultServiceConfig(roundRobin),
		grpc.WithKeepaliveParams(keepalive.ClientParameters{Time: KeepaliveTime, Timeout: KeepaliveTimeout}),
	}
	dialOpts = append(dialOpts, o.dialOpts...)

	cc, err := grpc.NewClient(target, dialOpts...)
	if err != nil {
		return nil, errors.Join(errors.New("client: cannot set up connection"), err)
	}
	return &core{conn: cc, batchSize: o.batchSize, tenant: o.tenant}, nil
}

// Client bundles the three roles on one connection, for tools and tests
// that act as several parties. Applications use the role they are: a
// sponsor application NewSponsor, a state system NewRevealer, a custodian
// tool NewCustodian.
type Client struct {
	*Sponsor
	*Revealer
	*Custodian
	c *core
}

// New returns a Client for target with every role's calls. The server
// still refuses whatever the certificate's identity may not do.
func New(target string, opts ...Option) (*Client, error) {
	c, err := dial(target, opts)
	if err != nil {
		return nil, err
	}
	return &Client{Sponsor: &Sponsor{c}, Revealer: &Revealer{c}, Custodian: &Custodian{c}, c: c}, nil
}

// Close releases the connection.
func (c *Client) Close() error { return c.c.Close() }

// Ping asks the server's grpc.health.v1 service whether it is serving.
func (c *Client) Ping(ctx context.Context) error { return c.c.Ping(ctx) }

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
