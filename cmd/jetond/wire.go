package main

import (
	"context"
	"crypto/tls"
	"crypto/x509"
	"encoding/hex"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"os"
	"time"

	vault "github.com/hashicorp/vault/api"
	"github.com/redis/go-redis/v9"
	sdktrace "go.opentelemetry.io/otel/sdk/trace"

	"github.com/jeton-dev/jeton/server"
	"github.com/jeton-dev/jeton/server/approval"
	"github.com/jeton-dev/jeton/server/audit"
	"github.com/jeton-dev/jeton/server/audit/vaultanchor"
	"github.com/jeton-dev/jeton/server/budget"
	"github.com/jeton-dev/jeton/tokenizer"
	"github.com/jeton-dev/jeton/tokenizer/redisstore"
	"github.com/jeton-dev/jeton/tokenizer/vaultkeys"
)

// startupTimeout bounds each dependency check at start-up.
const startupTimeout = 10 * time.Second

// wireConfig builds jetond from a production configuration file. It
// refuses to start when Redis or Vault cannot be reached, or when the KEK
// is exportable or allows a plaintext backup.
func wireConfig(ctx context.Context, path string, getenv func(string) string, stderr io.Writer) (*app, error) {
	return wireConfigSpans(ctx, path, getenv, stderr, nil)
}

// wireConfigSpans is wireConfig with the span exporter given: tests pass an
// in-memory one; nil builds the OTLP exporter the config asks for, if any.
func wireConfigSpans(ctx context.Context, path string, getenv func(string) string, stderr io.Writer, spans sdktrace.SpanExporter) (a *app, err error) {
	cfg, err := LoadConfig(path, getenv)
	if err != nil {
		return nil, err
	}
	// Local files first: a wrong path fails now, not after the backends.
	if err := checkLocal(cfg); err != nil {
		return nil, fmt.Errorf("config %s: %w", path, err)
	}
	log, err := newLogger(stderr, cfg.Log.Level, cfg.Log.Format)
	if err != nil {
		return nil, err
	}
	obs, err := newObservability()
	if err != nil {
		return nil, err
	}
	var closers []func() error
	defer func() {
		if err != nil {
			for i := len(closers) - 1; i >= 0; i-- {
				_ = closers[i]()
			}
		}
	}()

	tr, err := newTracing(ctx, cfg.Tracing, getenv, spans, log)
	if err != nil {
		return nil, err
	}
	// Registered first, so it runs last: spans of the drained calls and of
	// the shutdown itself are flushed.
	closers = append(closers, tr.shutdown)

	b, err := openBackends(ctx, cfg, log, obs.metrics, tr)
	if err != nil {
		return nil, err
	}
	closers = append(closers, b.closers...)
	rc, store, km, tok := b.rc, b.store, b.km, b.tok
	names := classNames(tok)
	pol, err := server.LoadPolicy(cfg.PolicyFile, names)
	if err != nil {
		return nil, err
	}
	pub, err := server.LoadTLS(cfg.Public.TLS)
	if err != nil {
		return nil, fmt.Errorf("public.tls: %w", err)
	}
	tru, err := server.LoadTLS(cfg.Trusted.TLS)
	if err != nil {
		return nil, fmt.Errorf("trusted.tls: %w", err)
	}
	pubAllowed, _ := parseCIDRs(cfg.Public.AllowedCIDRs)
	truAllowed, _ := parseCIDRs(cfg.Trusted.AllowedCIDRs)
	pubConns, truConns := cfg.Public.Connections, cfg.Trusted.Connections
	fitConnections(&pubConns, &truConns, log)

	kctx, cancel := context.WithTimeout(ctx, startupTimeout)
	auditKey, err := tok.DeriveKey(kctx, "audit")
	var oracleKey []byte
	if err == nil {
		oracleKey, err = tok.DeriveKey(kctx, server.OracleKeyLabel)
	}
	cancel()
	if err != nil {
		return nil, fmt.Errorf("deriving the audit and oracle-budget keys: %w", err)
	}
	// Pending dual-control requests live in Redis beside the data, MACed
	// under a key of the service's key hierarchy, so any replica can
	// approve them and no Redis writer can forge an approval.
	kctx, cancel = context.WithTimeout(ctx, startupTimeout)
	approvalKey, err := tok.DeriveKey(kctx, "approvals")
	cancel()
	if err != nil {
		return nil, fmt.Errorf("deriving the approvals key: %w", err)
	}
	approvals, err := approval.New(store, approvalKey)
	if err != nil {
		return nil, err
	}
	alog, err := openAudit(ctx, cfg, b.vc, auditKey, log)
	if err != nil {
		return nil, err
	}
	closers = append(closers, alog.Close)
	if err := registerAuditMetrics(obs.reg, alog); err != nil {
		return nil, err
	}

	srv, err := server.New(server.Config{
		Tokenizer: tok, Policy: pol, Audit: alog, Logger: log, MaxBatch: cfg.MaxBatch, OracleKey: oracleKey,
		// Budgets and suspensions live in Redis so every replica enforces one.
		// A call spending nothing (random classes only) asks Redis whether
		// its identity is suspended at most once a second: a round trip
		// per call was a fifth of a unary Tokenize's cost. The records live
		// in the same Redis, so a reveal reserves its budget and reads its
		// records in one round trip.
		Budgets:   budget.NewRedis(rc, budget.Config{Recheck: time.Second, ReadsRecords: true}),
		Approvals: approvals,
		Public:    server.Listener{Addr: cfg.Public.Addr, TLS: pub, Allowed: pubAllowed, Conns: pubConns, StatsHandler: tr.grpcHandler(true)},
		Trusted:   server.Listener{Addr: cfg.Trusted.Addr, TLS: tru, Allowed: truAllowed, Conns: truConns, StatsHandler: tr.grpcHandler(false)},
		Registry:  obs.reg, Metrics: obs.metrics, CheckInterval: cfg.Health.Interval,
		Checks: []server.Check{
			{Name: server.BackendRedis, Probe: store.Ping},
			// Vault is not on the per-item path: while it is down, the
			// tenants whose keys are loaded are still served, so it takes
			// readiness down only for a replica that has none loaded.
			{Name: server.BackendVault, Probe: km.Check, ServesWithout: func() bool { return len(tok.LoadedTenants()) > 0 }},
			{Name: server.BackendAudit, Probe: func(context.Context) error { return alog.Healthy() }, Listener: server.ListenerTrusted},
		},
	})
	if err != nil {
		return nil, err
	}
	maddr := cfg.Metrics.Addr
	if maddr == "" {
		maddr = defaultMetricsAddr
	}
	ml, err := listenMetrics(maddr, obs, srv, log)
	if err != nil {
		return nil, err
	}
	if cfg.Metrics.Pprof {
		if err := ml.enablePprof(log); err != nil {
			_ = ml.lis.Close()
			return nil, err
		}
	}
	ml.serve(log)
	closers = append(closers, ml.close)
	closers = append(closers, startRotation(tok, func() []string { return srv.Policy().Tenants() },
		cfg.Rotation.Every, cfg.Rotation.Check, log))
	a = &app{srv: srv, tok: tok, log: log, closers: closers}
	a.reload = func() error {
		p, err := server.LoadPolicy(cfg.PolicyFile, names)
		if err != nil {
			return err
		}
		if err := errors.Join(pub.Reload(), tru.Reload()); err != nil {
			return err
		}
		return srv.SetPolicy(p)
	}
	return a, nil
}

// config builds a client TLS configuration; nil when no CA is set.
func (c ClientTLS) config() (*tls.Config, error) {
	if c.CA == "" {
		return nil, nil
	}
	caPEM, err := os.ReadFile(c.CA)
	if err != nil {
		return nil, err
	}
	pool := x509.NewCertPool()
	if !pool.AppendCertsFromPEM(caPEM) {
		return nil, fmt.Errorf("ca %s holds no PEM certificate", c.CA)
	}
	cfg := &tls.Config{RootCAs: pool, ServerName: c.ServerName, MinVersion: tls.VersionTLS13}
	if c.Cert != "" {
		pair, err := tls.LoadX509KeyPair(c.Cert, c.Key)
		if err != nil {
			return nil, err
		}
		cfg.Certificates = []tls.Certificate{pair}
	}
	return cfg, nil
}

// backends are what jetond reaches over the network: Redis and Vault, and
// the tokenizer built on them.
type backends struct {
	vc      *vault.Client // shared with vaultkeys, which keeps its token fresh
	rc      redis.UniversalClient
	store   *redisstore.Store
	km      *vaultkeys.Manager
	tok     *tokenizer.Tokenizer
	closers []func() error
}

// openBackends connects to Redis and Vault and checks both, so jetond
// refuses to start rather than serve without them.
func openBackends(ctx context.Context, cfg *Config, log *slog.Logger, metrics *server.Metrics, tr *tracing) (_ *backends, err error) {
	b := &backends{}
	defer func() {
		if err != nil {
			for i := len(b.closers) - 1; i >= 0; i-- {
				_ = b.closers[i]()
			}
		}
	}()
	classes, err := cfg.classes()
	if err != nil {
		return nil, err
	}
	// Redis.
	redisTLS, err := cfg.Redis.TLS.config()
	if err != nil {
		return nil, fmt.Errorf("redis.tls: %w", err)
	}
	rc, err := redisstore.NewClient(redisstore.Config{
		Addrs: cfg.Redis.Addrs, MasterName: cfg.Redis.MasterName, Cluster: cfg.Redis.Cluster,
		Username: cfg.Redis.Username, Password: cfg.Redis.Password, DB: cfg.Redis.DB, TLS: redisTLS,
		DialTimeout: cfg.Redis.Timeout, ReadTimeout: cfg.Redis.Timeout, WriteTimeout: cfg.Redis.Timeout,
		MinReplicaAcks: cfg.Redis.MinReplicaAcks, ReplicaAckTimeout: cfg.Redis.ReplicaAckTimeout,
	})
	if err != nil {
		return nil, fmt.Errorf("redis: %w", err)
	}
	b.closers = append(b.closers, rc.Close)
	if err := tr.instrumentRedis(rc); err != nil {
		return nil, fmt.Errorf("redis: tracing: %w", err)
	}
	store := redisstore.New(rc)
	pctx, cancel := context.WithTimeout(ctx, startupTimeout)
	err = store.Ping(pctx)
	cancel()
	if err != nil {
		return nil, fmt.Errorf("redis at %v is unreachable, refusing to start: %w", cfg.Redis.Addrs, err)
	}

	// Vault: address, token and TLS come from the standard VAULT_*
	// variables, read by the Vault client itself.
	vcfg := vault.DefaultConfig()
	vc, err := vault.NewClient(vcfg)
	if err != nil {
		return nil, fmt.Errorf("vault client: %w", err)
	}
	tr.instrumentVault(vcfg)
	var ar *vaultkeys.AppRole
	if cfg.Vault.AppRole.RoleID != "" {
		ar = &vaultkeys.AppRole{MountPath: cfg.Vault.AppRole.Mount, RoleID: cfg.Vault.AppRole.RoleID, SecretIDFile: cfg.Vault.AppRole.SecretIDFile}
	}
	vctx, cancel := context.WithTimeout(ctx, startupTimeout)
	km, err := vaultkeys.New(vctx, vc, vaultkeys.Config{Mount: cfg.Vault.Mount, Key: cfg.Vault.Key, AppRole: ar, Logger: log})
	cancel()
	if err != nil {
		return nil, fmt.Errorf("vault, refusing to start: %w", err)
	}
	b.closers = append(b.closers, func() error { km.Close(); return nil })

	tcfg := tokenizer.Config{Classes: classes, Keys: km, Store: store, KeyRefresh: cfg.KeyRefresh}
	if metrics != nil {
		// Failures on the request path count, not only the health probes'.
		tcfg.Keys, tcfg.Store, tcfg.Observer = metrics.MeterKeys(km), metrics.MeterStore(store), metrics
	}
	tok, err := tokenizer.New(tcfg)
	if err != nil {
		return nil, err
	}
	b.vc, b.rc, b.store, b.km, b.tok = vc, rc, store, km, tok
	return b, nil
}

// openAudit opens the audit log anchored in Vault: checkpoints signed by
// the Transit key jeton-audit-checkpoints on vault.mount, stored in KV
// jeton-audit/checkpoints/<replica>. audit.Open refuses a log that is
// behind its checkpoint or missing.
func openAudit(ctx context.Context, cfg *Config, vc *vault.Client, key []byte, log *slog.Logger) (*audit.Log, error) {
	replica := cfg.Audit.Replica
	if replica == "" {
		host, err := os.Hostname()
		if err != nil || !audit.ValidReplica(host) {
			return nil, fmt.Errorf("audit.replica is not set and the host name %q cannot name a replica; set audit.replica", host)
		}
		replica = host
	}
	actx, cancel := context.WithTimeout(ctx, startupTimeout)
	defer cancel()
	anchor, err := vaultanchor.New(actx, vc, vaultanchor.Config{TransitMount: cfg.Vault.Mount, Replica: replica})
	if err != nil {
		return nil, fmt.Errorf("audit anchor, refusing to start: %w", err)
	}
	cp := cfg.Audit.Checkpoint
	return audit.Open(audit.Config{
		Dir: cfg.Audit.Dir, Key: key, MaxFileBytes: cfg.Audit.MaxFileBytes, Logger: log,
		Anchor: anchor, Replica: replica, AnchorTimeout: startupTimeout,
		CheckpointEvery: cp.EveryRecords, CheckpointInterval: cp.Every, MaxUnanchored: cp.MaxUnanchored, MaxUnanchoredAge: cp.MaxUnanchoredAge,
	})
}

// exportAuditKey writes the key of the audit log's token hashes, in hex,
// to path (mode 0600): with it an investigator holding a token finds its
// reveals. Verifying the log needs no key, only the anchor's public key. The key is derived from the
// key hierarchy, so this takes jetond's own Redis and Vault access.
func exportAuditKey(ctx context.Context, configPath, path string, getenv func(string) string, stderr io.Writer) error {
	cfg, err := LoadConfig(configPath, getenv)
	if err != nil {
		return err
	}
	log, err := newLogger(stderr, cfg.Log.Level, cfg.Log.Format)
	if err != nil {
		return err
	}
	b, err := openBackends(ctx, cfg, log, nil, nil)
	if err != nil {
		return err
	}
	defer func() {
		for i := len(b.closers) - 1; i >= 0; i-- {
			_ = b.closers[i]()
		}
	}()
	kctx, cancel := context.WithTimeout(ctx, startupTimeout)
	defer cancel()
	key, err := b.tok.DeriveKey(kctx, "audit")
	if err != nil {
		return fmt.Errorf("deriving the audit key: %w", err)
	}
	return os.WriteFile(path, []byte(hex.EncodeToString(key)+"\n"), 0o600)
}
