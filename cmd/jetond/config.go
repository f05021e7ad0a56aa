package main

import (
	"bytes"
	"errors"
	"fmt"
	"net/netip"
	"os"
	"reflect"
	"strconv"
	"strings"
	"time"

	"gopkg.in/yaml.v3"

	"github.com/jeton-dev/jeton/server"
	"github.com/jeton-dev/jeton/server/audit"
	"github.com/jeton-dev/jeton/tokenizer"
)

// Config is jetond's production configuration: one YAML file, with the
// environment overrides listed in envOverrides. See jetond.example.yaml.
type Config struct {
	Public     ListenerConfig `yaml:"public"`
	Trusted    ListenerConfig `yaml:"trusted"`
	MaxBatch   int            `yaml:"max_batch"`
	Redis      RedisConfig    `yaml:"redis"`
	Vault      VaultConfig    `yaml:"vault"`
	Classes    []ClassConfig  `yaml:"classes"`
	PolicyFile string         `yaml:"policy_file"`
	Audit      AuditConfig    `yaml:"audit"`
	Log        LogConfig      `yaml:"log"`
	Metrics    MetricsConfig  `yaml:"metrics"`
	Health     HealthConfig   `yaml:"health"`
	Rotation   RotationConfig `yaml:"rotation"`
	// KeyRefresh bounds how stale a replica's view of key generations is.
	KeyRefresh time.Duration `yaml:"key_refresh"`
	// Tracing exports OpenTelemetry spans by OTLP; off when absent. See
	// TracingConfig in tracing.go.
	Tracing TracingConfig `yaml:"tracing"`
}

// ListenerConfig is one listener.
type ListenerConfig struct {
	Addr         string          `yaml:"addr"`
	TLS          server.TLSFiles `yaml:"tls"`
	AllowedCIDRs []string        `yaml:"allowed_cidrs"`
	// Connections bounds what clients hold before and after they
	// authenticate: caps per listener and per source, and the handshake
	// deadline. Zero fields take the defaults; jetond lowers the caps to
	// fit its file descriptor limit.
	Connections server.ConnLimits `yaml:"connections"`
}

// RedisConfig selects a single node, Sentinel (master_name) or a Cluster
// (several addrs).
type RedisConfig struct {
	Addrs      []string `yaml:"addrs"`
	MasterName string   `yaml:"master_name"`
	// Cluster selects Redis Cluster with a single seed address; two or
	// more addrs always mean a cluster.
	Cluster  bool          `yaml:"cluster"`
	Username string        `yaml:"username"`
	Password string        `yaml:"password"`
	DB       int           `yaml:"db"`
	TLS      ClientTLS     `yaml:"tls"`
	Timeout  time.Duration `yaml:"timeout"`
	// MinReplicaAcks is how many replicas must acknowledge every write of
	// records and keys (Redis WAIT) before a call succeeds; 0 waits for
	// none, and a failover can then lose acknowledged tokens. A write too
	// few replicas acknowledge within ReplicaAckTimeout fails the call with
	// UNAVAILABLE.
	MinReplicaAcks    int           `yaml:"min_replica_acks"`
	ReplicaAckTimeout time.Duration `yaml:"replica_ack_timeout"`
}

// ClientTLS is TLS towards a backend. Empty CA means no TLS.
type ClientTLS struct {
	CA         string `yaml:"ca"`
	Cert       string `yaml:"cert"`
	Key        string `yaml:"key"`
	ServerName string `yaml:"server_name"`
}

// VaultConfig names the Transit KEK and how jetond logs in. The Vault
// address, token and TLS settings come from the standard VAULT_* variables
// (VAULT_ADDR, VAULT_TOKEN, VAULT_CACERT, VAULT_CLIENT_CERT, ...).
type VaultConfig struct {
	Mount   string        `yaml:"mount"`
	Key     string        `yaml:"key"`
	AppRole AppRoleConfig `yaml:"approle"`
}

// AppRoleConfig is AppRole login; empty RoleID means token auth.
type AppRoleConfig struct {
	Mount        string `yaml:"mount"`
	RoleID       string `yaml:"role_id"`
	SecretIDFile string `yaml:"secret_id_file"`
}

// ClassConfig is a field class as written in YAML.
type ClassConfig struct {
	Name      string         `yaml:"name"`
	Kind      tokenizer.Kind `yaml:"kind"`
	Normalize []string       `yaml:"normalize"`
	Mask      string         `yaml:"mask"`
	Retention time.Duration  `yaml:"retention"`
	// RetainUntil is an absolute end of retention, e.g. 2031-03-31 (the
	// end of the event plus six months); records never outlive it, and
	// after it the class tokenizes nothing more.
	RetainUntil time.Time `yaml:"retention_until"`
	MaxLen      int       `yaml:"max_len"`
	// Region is the phone step's default region (ISO 3166-1 alpha-2,
	// e.g. FR): numbers written without a country code are read as
	// numbers of that region. Empty accepts international numbers only.
	Region string `yaml:"region"`
	// Shape is what the class's tokens look like; opaque when absent.
	Shape ShapeConfig `yaml:"shape"`
}

// ShapeConfig is a class's token shape as written in YAML (README "Token
// shapes"). Each type takes only its own parameters.
type ShapeConfig struct {
	// Type is opaque (the default), email, digits or date.
	Type tokenizer.ShapeKind `yaml:"type"`
	// Domain is the email type's reserved domain (default
	// tok.jeton.invalid), under .invalid, .test, .example, .localhost or
	// example.com/.net/.org.
	Domain string `yaml:"domain"`
	// KeepSuffix, Prefix and LuhnValues are the digits type's: how many
	// trailing digits a token keeps, the reserved leading digits no value
	// has (quote them: "0999"), and whether every value carries a Luhn
	// check digit. Prefix or luhn_values is required.
	KeepSuffix int    `yaml:"keep_suffix"`
	Prefix     string `yaml:"prefix"`
	LuhnValues bool   `yaml:"luhn_values"`
	// Layout, From and To are the date type's: the values' layout in Go's
	// notation ("2006-01-02 15:04"; it must write a time of day), and the
	// reserved range of days no value takes (default 3000-01-01 to
	// 9999-12-31).
	Layout string    `yaml:"layout"`
	From   time.Time `yaml:"from"`
	To     time.Time `yaml:"to"`
}

func (s ShapeConfig) shape() tokenizer.Shape {
	return tokenizer.Shape{Kind: s.Type, Domain: s.Domain, KeepSuffix: s.KeepSuffix, Prefix: s.Prefix,
		LuhnValues: s.LuhnValues, Layout: s.Layout, From: s.From, To: s.To}
}

// AuditConfig places the audit log and names this replica's chain.
type AuditConfig struct {
	Dir          string `yaml:"dir"`
	MaxFileBytes int64  `yaml:"max_file_bytes"`
	// Replica names this replica's chain in its signed checkpoints and
	// the checkpoint's path in Vault (KV jeton-audit, checkpoints/<replica>).
	// It must be stable and unique per audit directory: the host name by
	// default, which is a StatefulSet pod's stable name.
	Replica string `yaml:"replica"`
	// Checkpoint sets how often the log's head is signed and anchored.
	Checkpoint AuditCheckpointConfig `yaml:"checkpoint"`
}

// AuditCheckpointConfig: a checkpoint is signed (Vault Transit) and stored
// (Vault KV, check-and-set) once EveryRecords records are unanchored or
// Every after the first of them, and at shutdown. Records after the last
// checkpoint are the ones a verifier cannot yet vouch for.
type AuditCheckpointConfig struct {
	EveryRecords int           `yaml:"every_records"` // default 1000
	Every        time.Duration `yaml:"every"`         // default 10s
	// MaxUnanchored and MaxUnanchoredAge bound the records that may wait
	// for a checkpoint while Vault cannot sign or store one: how many, and
	// how long the oldest of them. Past either, reveals fail closed and
	// readiness goes down until Vault answers. Defaults 10000 and 5m (at
	// least three times Every): long enough to ride out a Vault leader
	// election with loaded tenants served.
	MaxUnanchored    int           `yaml:"max_unanchored"`
	MaxUnanchoredAge time.Duration `yaml:"max_unanchored_age"`
}

// MetricsConfig places the HTTP listener of /metrics, /healthz and
// /readyz. It serves plain HTTP: keep it on loopback or a management
// network.
type MetricsConfig struct {
	// Addr is host:port; 127.0.0.1:9090 when empty.
	Addr string `yaml:"addr"`
	// Pprof serves Go's profiler under /debug/pprof/ on this listener, to
	// see where CPU time and allocations go under load. Off by default,
	// and refused unless Addr is a loopback address: profiles show the
	// code's internals and cost CPU to take.
	Pprof bool `yaml:"pprof"`
}

// RotationConfig schedules new data-key generations: every tenant of the
// policy gets a new generation once its current one is Every old. Zero
// turns scheduled rotation off. Every replica may run it; one wins.
type RotationConfig struct {
	Every time.Duration `yaml:"every"`
	// Check is how often the age is checked; an hour if zero.
	Check time.Duration `yaml:"check"`
}

// HealthConfig sets how often readiness probes Redis, Vault and the audit
// log.
type HealthConfig struct {
	// Interval is 5s when zero.
	Interval time.Duration `yaml:"interval"`
}

// LogConfig sets the log level and format.
type LogConfig struct {
	Level  string `yaml:"level"`  // debug, info, warn, error
	Format string `yaml:"format"` // json or text
}

// envOverrides are the environment variables that override the file, so
// secrets and per-replica addresses need not be written into it.
var envOverrides = []struct {
	name  string
	apply func(c *Config, v string) error
}{
	{"JETON_PUBLIC_ADDR", func(c *Config, v string) error { c.Public.Addr = v; return nil }},
	{"JETON_TRUSTED_ADDR", func(c *Config, v string) error { c.Trusted.Addr = v; return nil }},
	{"JETON_TRUSTED_ALLOWED_CIDRS", func(c *Config, v string) error { c.Trusted.AllowedCIDRs = splitList(v); return nil }},
	{"JETON_REDIS_ADDRS", func(c *Config, v string) error { c.Redis.Addrs = splitList(v); return nil }},
	{"JETON_REDIS_USERNAME", func(c *Config, v string) error { c.Redis.Username = v; return nil }},
	{"JETON_REDIS_PASSWORD", func(c *Config, v string) error { c.Redis.Password = v; return nil }},
	{"JETON_VAULT_APPROLE_ROLE_ID", func(c *Config, v string) error { c.Vault.AppRole.RoleID = v; return nil }},
	{"JETON_VAULT_APPROLE_SECRET_ID_FILE", func(c *Config, v string) error { c.Vault.AppRole.SecretIDFile = v; return nil }},
	{"JETON_POLICY_FILE", func(c *Config, v string) error { c.PolicyFile = v; return nil }},
	{"JETON_AUDIT_DIR", func(c *Config, v string) error { c.Audit.Dir = v; return nil }},
	{"JETON_AUDIT_REPLICA", func(c *Config, v string) error { c.Audit.Replica = v; return nil }},
	{"JETON_LOG_LEVEL", func(c *Config, v string) error { c.Log.Level = v; return nil }},
	{"JETON_METRICS_ADDR", func(c *Config, v string) error { c.Metrics.Addr = v; return nil }},
	{"JETON_MAX_BATCH", func(c *Config, v string) (err error) { c.MaxBatch, err = strconv.Atoi(v); return err }},
}

func splitList(v string) []string {
	var out []string
	for _, s := range strings.Split(v, ",") {
		if s = strings.TrimSpace(s); s != "" {
			out = append(out, s)
		}
	}
	return out
}

// LoadConfig reads the file, applies environment overrides and validates.
func LoadConfig(path string, getenv func(string) string) (*Config, error) {
	b, err := os.ReadFile(path)
	if err != nil {
		return nil, fmt.Errorf("config: %w", err)
	}
	var doc yaml.Node
	if err := yaml.Unmarshal(b, &doc); err != nil {
		return nil, fmt.Errorf("config %s: %w", path, decodeError(err, nil))
	}
	if len(doc.Content) == 0 {
		return nil, fmt.Errorf("config %s is empty: it needs at least public, trusted, redis, policy_file and audit (see jetond.example.yaml)", path)
	}
	paths := map[int]string{}
	if err := checkKeys(doc.Content[0], reflect.TypeFor[Config](), "", paths); err != nil {
		return nil, fmt.Errorf("config %s: %w", path, err)
	}
	var c Config
	dec := yaml.NewDecoder(bytes.NewReader(b))
	dec.KnownFields(true)
	if err := dec.Decode(&c); err != nil {
		return nil, fmt.Errorf("config %s: %w", path, decodeError(err, paths))
	}
	for _, o := range envOverrides {
		if v := getenv(o.name); v != "" {
			if err := o.apply(&c, v); err != nil {
				return nil, fmt.Errorf("config: %s: %w", o.name, err)
			}
		}
	}
	if err := c.Validate(); err != nil {
		return nil, fmt.Errorf("config %s: %w", path, err)
	}
	return &c, nil
}

// Validate checks every field once, at start-up, and names the bad one.
func (c *Config) Validate() error {
	for _, l := range []struct {
		name string
		l    *ListenerConfig
	}{{"public", &c.Public}, {"trusted", &c.Trusted}} {
		if l.l.Addr == "" {
			return fmt.Errorf("%s.addr is required", l.name)
		}
		if l.l.TLS.Cert == "" || l.l.TLS.Key == "" || l.l.TLS.ClientCA == "" {
			return fmt.Errorf("%s.tls.cert, %s.tls.key and %s.tls.client_ca are required", l.name, l.name, l.name)
		}
		if _, err := parseCIDRs(l.l.AllowedCIDRs); err != nil {
			return fmt.Errorf("%s.allowed_cidrs: %w", l.name, err)
		}
		if err := l.l.Connections.Validate(); err != nil {
			return fmt.Errorf("%s.%w", l.name, err)
		}
	}
	if len(c.Trusted.AllowedCIDRs) == 0 {
		return errors.New("trusted.allowed_cidrs must name the TTP networks")
	}
	if c.Public.TLS.ClientCA == c.Trusted.TLS.ClientCA || sameContent(c.Public.TLS.ClientCA, c.Trusted.TLS.ClientCA) {
		return errors.New("trusted.tls.client_ca must differ from public.tls.client_ca: sponsor certificates must not pass the trusted handshake")
	}
	if c.MaxBatch < 0 {
		return errors.New("max_batch must not be negative")
	}
	if len(c.Redis.Addrs) == 0 {
		return errors.New("redis.addrs must name at least one address")
	}
	if c.Redis.MinReplicaAcks < 0 {
		return errors.New("redis.min_replica_acks must not be negative")
	}
	if c.Redis.MinReplicaAcks > 0 && c.Redis.ReplicaAckTimeout <= 0 {
		return errors.New("redis.replica_ack_timeout must be positive with redis.min_replica_acks")
	}
	if c.Redis.MinReplicaAcks > 0 && c.Redis.Timeout > 0 && c.Redis.ReplicaAckTimeout >= c.Redis.Timeout {
		return errors.New("redis.replica_ack_timeout must be shorter than redis.timeout, or jetond gives up before Redis answers")
	}
	if (c.Redis.TLS.Cert == "") != (c.Redis.TLS.Key == "") {
		return errors.New("redis.tls.cert and redis.tls.key go together")
	}
	if c.Vault.AppRole.RoleID != "" && c.Vault.AppRole.SecretIDFile == "" {
		return errors.New("vault.approle.secret_id_file is required with vault.approle.role_id")
	}
	if c.PolicyFile == "" {
		return errors.New("policy_file is required")
	}
	if c.Audit.Dir == "" {
		return errors.New("audit.dir is required")
	}
	if c.Audit.MaxFileBytes < 0 {
		return errors.New("audit.max_file_bytes must not be negative")
	}
	if c.Audit.Replica != "" && !audit.ValidReplica(c.Audit.Replica) {
		return fmt.Errorf("audit.replica %q must be 1-63 letters, digits, '.', '_' or '-', starting with a letter or digit", c.Audit.Replica)
	}
	if cp := c.Audit.Checkpoint; cp.EveryRecords < 0 || cp.Every < 0 || cp.MaxUnanchored < 0 || cp.MaxUnanchoredAge < 0 {
		return errors.New("audit.checkpoint.every_records, every, max_unanchored and max_unanchored_age must not be negative")
	}
	if c.Rotation.Every < 0 || c.Rotation.Check < 0 {
		return errors.New("rotation.every and rotation.check must not be negative")
	}
	if err := c.Metrics.validate(); err != nil {
		return err
	}
	if c.Health.Interval < 0 {
		return errors.New("health.interval must not be negative")
	}
	if err := c.Tracing.validate(); err != nil {
		return err
	}
	if _, err := c.classes(); err != nil {
		return fmt.Errorf("classes: %w", err)
	}
	if _, err := parseLevel(c.Log.Level); err != nil {
		return fmt.Errorf("log.level: %w", err)
	}
	switch c.Log.Format {
	case "", "json", "text":
	default:
		return fmt.Errorf("log.format %q must be json or text", c.Log.Format)
	}
	return nil
}

// classes returns the configured classes, or the defaults when none are.
func (c *Config) classes() ([]tokenizer.Class, error) {
	if len(c.Classes) == 0 {
		return tokenizer.DefaultClasses(), nil
	}
	out := make([]tokenizer.Class, 0, len(c.Classes))
	seen := map[string]bool{}
	for i, cc := range c.Classes {
		cl := tokenizer.Class{Name: cc.Name, Kind: cc.Kind, Normalize: cc.Normalize, Region: cc.Region, Mask: cc.Mask, Retention: cc.Retention, RetainUntil: cc.RetainUntil, MaxLen: cc.MaxLen, Shape: cc.Shape.shape()}
		if cl.Kind == "" {
			cl.Kind = tokenizer.KindRandom
		}
		if cl.Mask == "" {
			cl.Mask = "all"
		}
		if err := cl.Validate(); err != nil {
			return nil, fmt.Errorf("[%d]: %w", i, err)
		}
		if seen[cl.Name] {
			return nil, fmt.Errorf("[%d]: class %s is defined twice", i, cl.Name)
		}
		seen[cl.Name] = true
		out = append(out, cl)
	}
	if err := tokenizer.ValidateShapes(out); err != nil {
		return nil, err
	}
	return out, nil
}

func parseCIDRs(ss []string) ([]netip.Prefix, error) {
	var out []netip.Prefix
	for _, s := range ss {
		p, err := netip.ParsePrefix(s)
		if err != nil {
			return nil, fmt.Errorf("%q is not a CIDR prefix", s)
		}
		out = append(out, p)
	}
	return out, nil
}

// sameContent reports whether two files both read and hold the same bytes,
// so one CA copied under two names is still caught.
func sameContent(a, b string) bool {
	x, errA := os.ReadFile(a)
	y, errB := os.ReadFile(b)
	return errA == nil && errB == nil && bytes.Equal(x, y)
}
