package testenv

import (
	"context"
	"io/fs"
	"path/filepath"
	"slices"
	"strconv"
	"syscall"
	"testing"
	"time"

	"github.com/redis/go-redis/v9"
)

// redisStartTimeout bounds the wait for a redis-server to answer PING,
// including replaying its AOF after a restart, which takes a while for the
// data a long fault test writes on a loaded machine.
const redisStartTimeout = 60 * time.Second

// Redis is a redis-server process owned by one test.
type Redis struct {
	// Addr is host:port on 127.0.0.1.
	Addr string
	// Dir is the data directory: the AOF directory, dump.rdb and, for a
	// cluster node, nodes.conf.
	Dir string

	t testing.TB
	p *proc
}

type redisConfig struct {
	appendFsync string
	extraArgs   []string
}

// RedisOption configures StartRedis.
type RedisOption func(*redisConfig)

// WithAppendFsync sets the AOF fsync policy: "always" (the default, so an
// acknowledged write survives kill -9), "everysec" or "no".
func WithAppendFsync(policy string) RedisOption {
	return func(c *redisConfig) { c.appendFsync = policy }
}

// withArgs appends raw redis-server arguments; the cluster uses it.
func withArgs(args ...string) RedisOption {
	return func(c *redisConfig) { c.extraArgs = append(c.extraArgs, args...) }
}

// StartRedis starts a redis-server on a free loopback port with its data in
// t.TempDir(), AOF on with appendfsync always, and waits until it answers
// PING. The server is killed when the test ends.
//
// RDB compression is off so that a test grepping the data files for a
// plaintext sees it if it is there; with LZF compression a long value could
// hide from grep and such a test would pass for the wrong reason.
func StartRedis(t testing.TB, opts ...RedisOption) *Redis {
	t.Helper()
	cfg := redisConfig{appendFsync: "always"}
	for _, o := range opts {
		o(&cfg)
	}
	switch cfg.appendFsync {
	case "always", "everysec", "no":
	default:
		t.Fatalf("testenv: WithAppendFsync(%q): want always, everysec or no", cfg.appendFsync)
	}
	bin := redisServerBin(t)
	port := freePort(t)
	dir := t.TempDir()
	args := []string{
		"--port", strconv.Itoa(port),
		"--bind", "127.0.0.1",
		"--protected-mode", "no",
		"--daemonize", "no",
		"--dir", dir,
		"--appendonly", "yes",
		"--appendfsync", cfg.appendFsync,
		// Only the AOF makes writes durable, so a test that survives
		// kill -9 proves the AOF works rather than a lucky background save.
		"--save", "",
		"--rdbcompression", "no",
		"--logfile", "", // stdout, which goes to the log file
	}
	args = append(args, cfg.extraArgs...)
	r := &Redis{
		Addr: hostPort(port),
		Dir:  dir,
		t:    t,
		p:    newProc(t, "redis-server-"+strconv.Itoa(port), bin, args),
	}
	r.Start()
	return r
}

// Start starts the server again on the same port and data directory, after
// Kill or Stop, and waits until it answers PING.
func (r *Redis) Start() {
	r.t.Helper()
	r.p.start(r.t)
	c := redis.NewClient(&redis.Options{
		Addr:        r.Addr,
		DialTimeout: time.Second,
		ReadTimeout: time.Second,
		MaxRetries:  -1,
	})
	defer c.Close()
	// PING answers LOADING while the AOF replays; only PONG means ready.
	r.p.waitFor(r.t, "PING", redisStartTimeout, func() error {
		return c.Ping(context.Background()).Err()
	})
}

// Kill sends SIGKILL, as kill -9 does, and waits for the exit.
func (r *Redis) Kill() {
	r.t.Helper()
	r.p.kill()
}

// Stop shuts the server down gracefully (SHUTDOWN SAVE, which writes
// dump.rdb and flushes the AOF) and waits for the exit.
func (r *Redis) Stop() {
	r.t.Helper()
	c := redis.NewClient(&redis.Options{Addr: r.Addr, MaxRetries: -1})
	defer c.Close()
	ctx, cancel := context.WithTimeout(context.Background(), redisStartTimeout)
	defer cancel()
	if err := c.ShutdownSave(ctx).Err(); err != nil {
		r.t.Fatalf("testenv: redis %s SHUTDOWN SAVE: %v", r.Addr, err)
	}
	if !r.p.waitExit(redisStartTimeout) {
		r.p.kill()
		r.t.Fatalf("testenv: redis %s did not exit within %s of SHUTDOWN; killed it; log tail:\n%s",
			r.Addr, redisStartTimeout, r.p.logTail(logTailLines))
	}
}

// DataFiles returns the path of every regular file under Dir (AOF files,
// dump.rdb, nodes.conf), sorted, so a test can grep what Redis keeps on
// disk.
func (r *Redis) DataFiles() []string {
	r.t.Helper()
	var files []string
	err := filepath.WalkDir(r.Dir, func(path string, d fs.DirEntry, err error) error {
		if err != nil {
			return err
		}
		if d.Type().IsRegular() {
			files = append(files, path)
		}
		return nil
	})
	if err != nil {
		r.t.Fatalf("testenv: list redis data files: %v", err)
	}
	slices.Sort(files)
	return files
}

// Client returns a go-redis client for the server, closed when t ends.
func (r *Redis) Client(t testing.TB) *redis.Client {
	t.Helper()
	c := redis.NewClient(&redis.Options{Addr: r.Addr})
	t.Cleanup(func() { _ = c.Close() })
	return c
}

// Pause stops the server with SIGSTOP: it keeps its connections and
// answers nothing, as a hung or partitioned node does, until Resume.
func (r *Redis) Pause() {
	r.t.Helper()
	r.p.sendSignal(syscall.SIGSTOP)
}

// Resume continues a paused server (SIGCONT).
func (r *Redis) Resume() {
	r.t.Helper()
	r.p.sendSignal(syscall.SIGCONT)
}
