// Package server runs jeton's two gRPC listeners. The public listener
// serves only Tokenizer (and health) to sponsor applications; the trusted
// listener serves Detokenizer and Admin (and health and reflection) to TTP
// systems, from allowlisted networks only. Both require mutual TLS 1.3.
//
// Detokenizer and Admin are never registered on the public listener: no
// policy mistake can expose them there.
package server

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"net"
	"net/netip"
	"sync"
	"sync/atomic"
	"time"

	grpcprom "github.com/grpc-ecosystem/go-grpc-middleware/providers/prometheus"
	"github.com/grpc-ecosystem/go-grpc-middleware/v2/interceptors"
	"github.com/grpc-ecosystem/go-grpc-middleware/v2/interceptors/auth"
	"github.com/grpc-ecosystem/go-grpc-middleware/v2/interceptors/recovery"
	"github.com/grpc-ecosystem/go-grpc-middleware/v2/interceptors/selector"
	"github.com/grpc-ecosystem/go-grpc-middleware/v2/interceptors/validator"
	"github.com/prometheus/client_golang/prometheus"
	"google.golang.org/grpc"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/credentials"
	"google.golang.org/grpc/health"
	healthpb "google.golang.org/grpc/health/grpc_health_v1"
	"google.golang.org/grpc/keepalive"
	"google.golang.org/grpc/reflection"
	"google.golang.org/grpc/stats"
	"google.golang.org/grpc/status"

	jetonv1 "github.com/jeton-dev/jeton/proto/jeton/v1"
	"github.com/jeton-dev/jeton/server/approval"
	"github.com/jeton-dev/jeton/server/budget"
	"github.com/jeton-dev/jeton/tokenizer"
)

// Connection bounds on both listeners.
const (
	maxConcurrentStreams = 64
	maxConnectionAge     = 30 * time.Minute
	// The server pings a connection idle for keepaliveTime and closes it
	// when no answer comes within keepaliveTimeout.
	keepaliveTime    = 2 * time.Minute
	keepaliveTimeout = 20 * time.Second
	// streamWorkers serve calls from goroutines kept between calls: a
	// goroutine per call grew its stack through the interceptors, the
	// handler and the Redis client, about 10% of a Detokenize's CPU.
	// Calls beyond them get a goroutine of their own, as without.
	streamWorkers = 64
)

// keepalivePolicy is what the server asks of clients' pings: no faster
// than every 10s, between calls too. It is part of the contract with the
// client library, whose keepalive is 30s with a 10s timeout; a client
// pinging faster is sent GOAWAY.
var keepalivePolicy = keepalive.EnforcementPolicy{MinTime: 10 * time.Second, PermitWithoutStream: true}

// DefaultMaxBatch bounds the items of one call when the config sets none.
const DefaultMaxBatch = 10000

// Listener configures one listener.
type Listener struct {
	// Addr is host:port; port 0 picks a free one.
	Addr string
	TLS  *ReloadableTLS
	// Allowed lists the source networks that may connect. Empty allows any
	// source; the trusted listener requires at least one.
	Allowed []netip.Prefix
	// Conns bounds the connections clients hold, before and after they
	// authenticate; zero fields take their defaults.
	Conns ConnLimits
	// StatsHandler, when not nil, sees every call on this listener, outside
	// all interceptors: cmd/jetond gives it the tracing handler.
	StatsHandler stats.Handler
}

// Config configures a Server. It is validated once by New.
type Config struct {
	Tokenizer *tokenizer.Tokenizer
	Policy    *Policy
	Audit     Auditor
	Logger    *slog.Logger
	Public    Listener
	Trusted   Listener
	// MaxBatch bounds the items of one call; DefaultMaxBatch if zero.
	MaxBatch int
	// Now is the clock; time.Now if nil.
	Now func() time.Time
	// Registry is where the server registers its metrics: the gRPC
	// series, and jeton's own unless Metrics is given. Nil: a private
	// registry that nobody scrapes.
	Registry prometheus.Registerer
	// Metrics are jeton's own series when the caller built them first, to
	// share them with the tokenizer (as its Observer). Nil: New registers
	// them on Registry.
	Metrics *Metrics
	// Checks are the dependencies that readiness reflects: while one
	// fails, the health status of the listeners it affects (see
	// Check.Listener) is NOT_SERVING.
	Checks []Check
	// CheckInterval is how often Checks run; DefaultCheckInterval if zero.
	CheckInterval time.Duration
	// OracleKey names deterministic values in the sponsors' distinct
	// budgets: derive it with tokenizer.DeriveKey(ctx, OracleKeyLabel),
	// like every replica. Nil: derived on first use, which then needs the
	// KeyManager.
	OracleKey []byte
	// Budgets enforces the policy's reveal budgets and suspensions. Give
	// every replica the Redis one (budget.NewRedis) so they share one
	// budget; nil counts in memory, for this replica only.
	Budgets *budget.Limiter
	// Approvals keeps the pending destroy and purge requests of dual
	// control. Give every replica one over the shared store, keyed with
	// Tokenizer.DeriveKey, so that any replica can approve; nil keeps them
	// in memory, for this replica only.
	Approvals *approval.Book
	// MinApprovals is the fewest custodians the policy may require to
	// destroy or purge (dual_control); DefaultApprovals if zero. Only dev
	// mode sets 1.
	MinApprovals int
}

// Server is a running pair of listeners.
type Server struct {
	tok      *tokenizer.Tokenizer
	pol      atomic.Pointer[Policy]
	audit    Auditor
	log      *slog.Logger
	maxBatch int
	now      func() time.Time

	registry      prometheus.Registerer
	metrics       *Metrics
	grpcMetrics   *grpcprom.ServerMetrics
	checks        []Check
	checkInterval time.Duration
	ready         readiness
	budgets       *budget.Limiter
	alerts        *alerts
	dual          dualControl
	oracleKey     lazyKey
	detClasses    []string // the deterministic classes' names

	public, trusted *grpc.Server
	// publicTLS and trustedTLS are the listeners' material; their client
	// CAs are the sponsor's and the TTP's, to which identities are bound.
	publicTLS, trustedTLS *ReloadableTLS
	health                *health.Server
	trustedHealth         *health.Server
	lis                   [2]net.Listener
	refusals              refusals
	conns                 *connMetrics
	listenerReady         *prometheus.GaugeVec
	wg                    sync.WaitGroup
	serveErr              chan error
}

// New validates cfg and builds the server; Start binds it.
func New(cfg Config) (*Server, error) {
	switch {
	case cfg.Tokenizer == nil:
		return nil, errors.New("server: config: tokenizer is required")
	case cfg.Policy == nil:
		return nil, errors.New("server: config: policy is required")
	case cfg.Audit == nil:
		return nil, errors.New("server: config: audit is required")
	case cfg.Public.TLS == nil:
		return nil, errors.New("server: config: public.tls is required")
	case cfg.Trusted.TLS == nil:
		return nil, errors.New("server: config: trusted.tls is required")
	case len(cfg.Trusted.Allowed) == 0:
		return nil, errors.New("server: config: trusted.allowed_cidrs must name at least one network")
	case cfg.MaxBatch < 0:
		return nil, errors.New("server: config: max_batch must not be negative")
	case cfg.CheckInterval < 0:
		return nil, errors.New("server: config: check_interval must not be negative")
	}
	for i, c := range cfg.Checks {
		if c.Name == "" || c.Probe == nil {
			return nil, fmt.Errorf("server: config: checks[%d] needs a name and a probe", i)
		}
		if c.Listener != "" && c.Listener != ListenerPublic && c.Listener != ListenerTrusted {
			return nil, fmt.Errorf("server: config: checks[%d].listener must be %q, %q or empty", i, ListenerPublic, ListenerTrusted)
		}
	}
	for _, l := range []struct {
		name string
		l    Listener
	}{{"public", cfg.Public}, {"trusted", cfg.Trusted}} {
		if err := l.l.Conns.Validate(); err != nil {
			return nil, fmt.Errorf("server: config: %s.%w", l.name, err)
		}
	}
	s := &Server{
		tok: cfg.Tokenizer, audit: cfg.Audit, log: cfg.Logger, maxBatch: cfg.MaxBatch, now: cfg.Now,
		serveErr: make(chan error, 2),
		registry: cfg.Registry, metrics: cfg.Metrics, checks: cfg.Checks, checkInterval: cfg.CheckInterval,
	}
	if s.log == nil {
		s.log = slog.Default()
	}
	s.log = slog.New(requestIDHandler{s.log.Handler()})
	if s.registry == nil {
		s.registry = prometheus.NewRegistry()
	}
	if s.metrics == nil {
		m, err := NewMetrics(s.registry)
		if err != nil {
			return nil, err
		}
		s.metrics = m
	}
	s.metrics.initClasses(cfg.Tokenizer.Classes())
	s.audit = meteredAuditor{Auditor: s.audit, m: s.metrics}
	s.grpcMetrics = grpcprom.NewServerMetrics(grpcprom.WithServerHandlingTimeHistogram())
	if err := s.registry.Register(s.grpcMetrics); err != nil {
		return nil, fmt.Errorf("server: metrics: %w", err)
	}
	if s.checkInterval == 0 {
		s.checkInterval = DefaultCheckInterval
	}
	if s.maxBatch == 0 {
		s.maxBatch = DefaultMaxBatch
	}
	if s.now == nil {
		s.now = time.Now
	}
	s.refusals.audit, s.refusals.log = newRefusalGate(s.now), newRefusalGate(s.now)
	if err := s.initGuard(cfg); err != nil {
		return nil, err
	}
	if err := s.initDualControl(cfg); err != nil {
		return nil, err
	}
	if err := cfg.Policy.CheckOracles(cfg.Tokenizer.Classes()); err != nil {
		return nil, err
	}
	s.pol.Store(cfg.Policy)
	s.warnUnbounded(cfg.Policy)
	s.publicTLS, s.trustedTLS = cfg.Public.TLS, cfg.Trusted.TLS
	s.publicTLS.setLogger(s.log)
	s.trustedTLS.setLogger(s.log)
	if n := s.publicTLS.shared(s.trustedTLS); n > 0 {
		s.log.Warn("client CA certificates trusted by both listeners authenticate no identity: each must be the sponsor's or the TTP's", "shared", n)
	}

	cm, err := newConnMetrics(s.registry)
	if err != nil {
		return nil, fmt.Errorf("server: metrics: %w", err)
	}
	s.conns = cm
	if s.listenerReady, err = newListenerReady(s.registry); err != nil {
		return nil, fmt.Errorf("server: metrics: %w", err)
	}
	pubLimits, truLimits := cfg.Public.Conns.withDefaults(), cfg.Trusted.Conns.withDefaults()
	pubLog, truLog := newSampledLog(s.log), newSampledLog(s.log)

	s.health = health.NewServer()
	s.public = grpc.NewServer(withStats(s.serverOptions(cfg.Public.TLS, "public", pubLimits, cm, pubLog), cfg.Public.StatsHandler)...)
	jetonv1.RegisterTokenizerServer(s.public, &tokenizerService{s: s})
	healthpb.RegisterHealthServer(s.public, s.health)

	s.trustedHealth = health.NewServer()
	s.trusted = grpc.NewServer(withStats(s.serverOptions(cfg.Trusted.TLS, "trusted", truLimits, cm, truLog), cfg.Trusted.StatsHandler)...)
	jetonv1.RegisterDetokenizerServer(s.trusted, &detokenizerService{s: s})
	jetonv1.RegisterAdminServer(s.trusted, &adminService{s: s})
	healthpb.RegisterHealthServer(s.trusted, s.trustedHealth)
	reflection.Register(s.trusted)
	// Every method's series exist at zero from the start.
	s.grpcMetrics.InitializeMetrics(s.public)
	s.grpcMetrics.InitializeMetrics(s.trusted)

	pl, err := net.Listen("tcp", cfg.Public.Addr)
	if err != nil {
		return nil, fmt.Errorf("server: public listener: %w", err)
	}
	s.lis[0] = newGuardedListener(pl, "public", cfg.Public.Allowed, pubLimits, cm, pubLog)
	tl, err := net.Listen("tcp", cfg.Trusted.Addr)
	if err != nil {
		pl.Close()
		return nil, fmt.Errorf("server: trusted listener: %w", err)
	}
	s.lis[1] = newGuardedListener(tl, "trusted", cfg.Trusted.Allowed, truLimits, cm, truLog)
	return s, nil
}

// PublicAddr and TrustedAddr return the bound addresses.
func (s *Server) PublicAddr() net.Addr { return s.lis[0].Addr() }

// TrustedAddr returns the trusted listener's bound address.
func (s *Server) TrustedAddr() net.Addr { return s.lis[1].Addr() }

// Start serves both listeners in the background.
func (s *Server) Start() {
	for i, g := range []*grpc.Server{s.public, s.trusted} {
		s.wg.Add(1)
		go func() {
			defer s.wg.Done()
			if err := g.Serve(s.lis[i]); err != nil && !errors.Is(err, grpc.ErrServerStopped) {
				s.serveErr <- err
			}
		}()
	}
	s.SetServing(true)
	s.startProber()
	s.startRefusalFlush()
}

// Err delivers a listener's fatal serve error.
func (s *Server) Err() <-chan error { return s.serveErr }

// SetServing sets both listeners' health status.
func (s *Server) SetServing(ok bool) {
	s.setServing(ListenerPublic, ok)
	s.setServing(ListenerTrusted, ok)
}

// setServing sets one listener's health status. Each listener's health
// service lists the services it serves, and only those: the public one
// never names the Detokenizer or Admin.
func (s *Server) setServing(listener string, ok bool) {
	st := healthpb.HealthCheckResponse_NOT_SERVING
	if ok {
		st = healthpb.HealthCheckResponse_SERVING
	}
	h, services := s.health, publicServices
	if listener == ListenerTrusted {
		h, services = s.trustedHealth, trustedServices
	}
	h.SetServingStatus("", st)
	for _, name := range services {
		h.SetServingStatus(name, st)
	}
	up := 0.0
	if ok {
		up = 1
	}
	s.listenerReady.WithLabelValues(listener).Set(up)
}

// The services each listener serves, as its health service lists them.
var (
	publicServices  = []string{jetonv1.Tokenizer_ServiceDesc.ServiceName}
	trustedServices = []string{jetonv1.Detokenizer_ServiceDesc.ServiceName, jetonv1.Admin_ServiceDesc.ServiceName}
)

// Stop stops accepting calls and drains the in-flight ones; when ctx ends
// first, it cuts the remaining ones off.
func (s *Server) Stop(ctx context.Context) {
	s.stopProber()
	s.SetServing(false)
	done := make(chan struct{})
	go func() {
		var wg sync.WaitGroup
		for _, g := range []*grpc.Server{s.public, s.trusted} {
			wg.Add(1)
			go func() { defer wg.Done(); g.GracefulStop() }()
		}
		wg.Wait()
		close(done)
	}()
	select {
	case <-done:
	case <-ctx.Done():
		s.public.Stop()
		s.trusted.Stop()
		<-done
	}
	s.wg.Wait()
	s.dual.stopSweeps()
	// Every call has ended: the last aggregates of refusals are final.
	s.stopRefusalFlush()
}

// SetPolicy swaps the policy; calls already authorised finish under the old
// one. A policy that CheckOracles refuses is not applied: the old one
// stays, and the error says why.
func (s *Server) SetPolicy(p *Policy) error {
	if err := p.CheckOracles(s.tok.Classes()); err != nil {
		return err
	}
	s.warnUnbounded(p)
	s.warnDualControl(p)
	s.pol.Store(p)
	return nil
}

// warnUnbounded says loudly which identities may reveal without a budget.
func (s *Server) warnUnbounded(p *Policy) {
	if ids := p.Unbounded(); len(ids) > 0 {
		s.log.Warn("identities may reveal with no distinct-records budget: bulk extraction is bounded only by max_batch", "identities", ids)
	}
}

func (s *Server) policy() *Policy { return s.pol.Load() }

// Policy returns the policy in force.
func (s *Server) Policy() *Policy { return s.pol.Load() }

// serverOptions builds one listener's interceptor chain, outermost first:
// metrics (so that calls refused by any later step, or that panic, are
// counted too), recovery, request id (so that the logs carry it), the access log,
// on the trusted listener the audit of refused reveals, the refusal of
// requests that did not decode, auth (skipped for health and reflection),
// validation.
func (s *Server) serverOptions(t *ReloadableTLS, listener string, lim ConnLimits, cm *connMetrics, log *sampledLog) []grpc.ServerOption {
	recoveryOpt := recovery.WithRecoveryHandlerContext(func(ctx context.Context, p any) error {
		// The panic value may hold request data: log only that it happened.
		s.log.ErrorContext(ctx, "panic recovered", "listener", listener)
		return status.Error(codes.Internal, msgInternal)
	})
	// The request id is not a field of the access log: s.log's handler
	// adds it to every record logged with the call's context.
	access := accessLog{log: s.log, listener: listener}
	authFn := s.authFunc(listener == "trusted")
	open := selector.MatchFunc(func(_ context.Context, c interceptors.CallMeta) bool {
		return c.Service != healthpb.Health_ServiceDesc.ServiceName &&
			c.Service != "grpc.reflection.v1.ServerReflection" &&
			c.Service != "grpc.reflection.v1alpha.ServerReflection"
	})
	unary := []grpc.UnaryServerInterceptor{
		s.grpcMetrics.UnaryServerInterceptor(),
		recovery.UnaryServerInterceptor(recoveryOpt),
		requestIDUnary,
		interceptors.UnaryServerInterceptor(access),
	}
	if listener == "trusted" {
		// Before everything that can refuse a reveal: decoding, auth and
		// the validator.
		unary = append(unary, s.auditRefusals)
	}
	unary = append(unary,
		refuseUndecodable,
		selector.UnaryServerInterceptor(auth.UnaryServerInterceptor(authFn), open),
		validator.UnaryServerInterceptor(),
	)
	return []grpc.ServerOption{
		grpc.Creds(countingCreds{TransportCredentials: credentials.NewTLS(t.Config()), name: listener, m: cm, log: log}),
		// Before authentication a client holds a slot of the listener
		// (guardedListener) for this long at most: the TLS handshake and
		// the HTTP/2 preface must be done by then.
		grpc.ConnectionTimeout(lim.HandshakeTimeout),
		grpc.ForceServerCodecV2(newLenientCodec()),
		// Bound what one connection can hold open, and make connections
		// end, so that reloaded TLS material and a removed client CA apply
		// to every caller within MaxConnectionAge.
		grpc.MaxConcurrentStreams(maxConcurrentStreams),
		grpc.NumStreamWorkers(streamWorkers),
		// Pings find dead peers, whose slots would otherwise stay taken;
		// an authenticated connection with no call for IdleTimeout gives
		// its place back (a certificate the policy refuses included).
		grpc.KeepaliveParams(keepalive.ServerParameters{
			MaxConnectionIdle: lim.IdleTimeout,
			MaxConnectionAge:  maxConnectionAge, MaxConnectionAgeGrace: time.Minute,
			Time: keepaliveTime, Timeout: keepaliveTimeout,
		}),
		grpc.KeepaliveEnforcementPolicy(keepalivePolicy),
		// Stop, even after the drain times out, returns only once every
		// handler has: the audit log is closed after Stop, and a handler
		// still appending to it would have its reveal refused.
		grpc.WaitForHandlers(true),
		grpc.ChainUnaryInterceptor(unary...),
		grpc.ChainStreamInterceptor(
			s.grpcMetrics.StreamServerInterceptor(),
			recovery.StreamServerInterceptor(recoveryOpt),
			requestIDStream,
			interceptors.StreamServerInterceptor(access),
			refuseUndecodableStream,
			selector.StreamServerInterceptor(auth.StreamServerInterceptor(authFn), open),
			validator.StreamServerInterceptor(),
		),
	}
}

func withStats(opts []grpc.ServerOption, h stats.Handler) []grpc.ServerOption {
	if h == nil {
		return opts
	}
	return append(opts, grpc.StatsHandler(h))
}

// authFunc resolves the caller's certificate identity to a principal. On
// the trusted listener, an identity with no trusted-side right (a sponsor
// identity, whatever CA signed it) is refused.
func (s *Server) authFunc(trusted bool) auth.AuthFunc {
	listener, mine := ListenerPublic, s.publicTLS
	if trusted {
		listener, mine = ListenerTrusted, s.trustedTLS
	}
	return func(ctx context.Context) (context.Context, error) {
		id, ok := certIdentity(ctx)
		if !ok {
			return nil, status.Error(codes.Unauthenticated, "a verified client certificate is required")
		}
		chains := verifiedChains(ctx)
		// A connection opened before its certificate was revoked.
		// Refusals are logged at a bounded pace per identity (warnRefused).
		if mine.revoked(chains) {
			s.warnRefused(ctx, listener, id, "revoked certificate refused")
			return nil, status.Error(codes.Unauthenticated, "client certificate revoked")
		}
		p, ok := s.policy().Principal(id)
		if !ok {
			s.warnRefused(ctx, listener, id, "unknown identity refused")
			return nil, status.Error(codes.PermissionDenied, "identity not permitted")
		}
		if trusted && !p.Trusted() || !trusted && !p.Tokenizes() {
			s.warnRefused(ctx, listener, id, "identity refused on this listener")
			return nil, status.Error(codes.PermissionDenied, "identity not permitted")
		}
		// The identity's certificate must come from the CA the policy
		// binds it to: a name is only as good as the authority that
		// issued it.
		ca, other := s.publicTLS, s.trustedTLS
		if p.CA == CATTP {
			ca, other = other, ca
		}
		if !ca.anchoredIn(chains, other) {
			s.warnRefused(ctx, listener, id, "identity refused: its certificate is not from the CA the policy names", "ca", p.CA)
			return nil, status.Error(codes.PermissionDenied, "identity not permitted")
		}
		return withPrincipal(ctx, p), nil
	}
}
