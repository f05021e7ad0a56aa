package client

import (
	"crypto/tls"
	"crypto/x509"
	"errors"
	"fmt"
	"os"
	"time"

	"go.opentelemetry.io/contrib/instrumentation/google.golang.org/grpc/otelgrpc"
	"google.golang.org/grpc"
)

// Option configures a Client in New.
type Option func(*options)

type options struct {
	tls       *tls.Config
	timeout   time.Duration
	retries   uint
	backoff   time.Duration
	batchSize int
	tenant    string
	dialOpts  []grpc.DialOption
	// err is the first invalid option; New returns it.
	err error
}

func (o *options) fail(err error) {
	if o.err == nil {
		o.err = err
	}
}

// WithTLSFiles sets up mutual TLS from PEM files: caFile holds the CA that
// signed the server's certificate, certFile and keyFile the client's own
// certificate and key. New fails with an error naming the file that is
// missing or unusable; the error never quotes the file's content.
// WithTLSFiles and WithTLSConfig replace each other; the last one wins.
func WithTLSFiles(caFile, certFile, keyFile string) Option {
	return func(o *options) {
		for _, f := range []struct{ name, path string }{
			{"caFile", caFile}, {"certFile", certFile}, {"keyFile", keyFile},
		} {
			if f.path == "" {
				o.fail(fmt.Errorf("client: WithTLSFiles: %s is empty", f.name))
				return
			}
		}
		caPEM, err := os.ReadFile(caFile)
		if err != nil {
			o.fail(fmt.Errorf("client: WithTLSFiles: reading CA file: %w", err))
			return
		}
		pool := x509.NewCertPool()
		if !pool.AppendCertsFromPEM(caPEM) {
			o.fail(fmt.Errorf("client: WithTLSFiles: CA file %q holds no PEM certificate", caFile))
			return
		}
		// LoadX509KeyPair's own errors can quote PEM block types but never
		// key material; add the file names it leaves out.
		cert, err := tls.LoadX509KeyPair(certFile, keyFile)
		if err != nil {
			o.fail(fmt.Errorf("client: WithTLSFiles: loading certificate %q and key %q: %w", certFile, keyFile, err))
			return
		}
		o.tls = &tls.Config{
			MinVersion:   tls.VersionTLS13,
			RootCAs:      pool,
			Certificates: []tls.Certificate{cert},
		}
	}
}

// WithTLSConfig uses a TLS configuration built by the caller, e.g. one whose
// certificate comes from a SPIFFE workload API. The Client uses a copy with
// MinVersion forced to TLS 1.3; cfg itself is not modified.
// WithTLSFiles and WithTLSConfig replace each other; the last one wins.
func WithTLSConfig(cfg *tls.Config) Option {
	return func(o *options) {
		if cfg == nil {
			o.fail(errors.New("client: WithTLSConfig: config is nil"))
			return
		}
		o.tls = forceTLS13(cfg)
	}
}

// WithTimeout sets the deadline given to each call whose context has none
// (default DefaultTimeout). A call split into chunks gets it per chunk, and
// it covers the retries of that chunk.
func WithTimeout(d time.Duration) Option {
	return func(o *options) {
		if d <= 0 {
			o.fail(fmt.Errorf("client: WithTimeout: %v is not positive", d))
			return
		}
		o.timeout = d
	}
}

// WithRetry retries a call that fails with UNAVAILABLE up to retries times
// after the first attempt, waiting backoff, then twice as long, and so on
// (with jitter). Other codes are never retried. Retrying Tokenize is safe: every
// attempt resends the same idempotency key, so the server returns the same
// tokens. The default is no retry.
func WithRetry(retries uint, backoff time.Duration) Option {
	return func(o *options) {
		if backoff < 0 {
			o.fail(fmt.Errorf("client: WithRetry: backoff %v is negative", backoff))
			return
		}
		o.retries = retries
		o.backoff = backoff
	}
}

// WithBatchSize makes Tokenize, Detokenize and Mask send at most n items per
// call (default DefaultBatchSize). Larger inputs are sent in chunks, one
// after the other, and the results are put back in input order.
func WithBatchSize(n int) Option {
	return func(o *options) {
		if n <= 0 {
			o.fail(fmt.Errorf("client: WithBatchSize: %d is not positive", n))
			return
		}
		o.batchSize = n
	}
}

// WithDialOptions adds gRPC dial options after the client's own, e.g. a
// context dialer for an in-memory listener in tests. Options that replace the
// transport credentials defeat the TLS 1.3 guarantee; don't pass them.
func WithDialOptions(opts ...grpc.DialOption) Option {
	return func(o *options) {
		o.dialOpts = append(o.dialOpts, opts...)
	}
}

// WithOpenTelemetry traces and measures every call with OpenTelemetry's
// gRPC stats handler (otelgrpc), under the global tracer and meter
// providers unless opts name others. Spans and metrics carry the method
// and status code, never a request's content: no value, no token.
func WithOpenTelemetry(opts ...otelgrpc.Option) Option {
	return func(o *options) {
		o.dialOpts = append(o.dialOpts, grpc.WithStatsHandler(otelgrpc.NewClientHandler(opts...)))
	}
}
