// Command jetond is the jeton tokenization server.
//
//	jetond --dev                 run with embedded dev defaults, nothing installed
//	jetond --config jetond.yaml  run in production shape (Redis, Vault, files)
//
// It is the composition root: the only place that picks adapters and wires
// them together.
package main

import (
	"context"
	"errors"
	"flag"
	"fmt"
	"io"
	"log/slog"
	"os"
	"os/signal"
	"slices"
	"syscall"
	"time"

	"github.com/jeton-dev/jeton/server"
	"github.com/jeton-dev/jeton/tokenizer"
)

func main() {
	os.Exit(run(os.Args[1:], os.Getenv, os.Stdout, os.Stderr))
}

// app is a wired jetond, ready to start.
type app struct {
	srv     *server.Server
	tok     *tokenizer.Tokenizer
	log     *slog.Logger
	reload  func() error // SIGHUP: TLS material and policy
	closers []func() error
	ready   func(w io.Writer) // prints what to do next
}

func (a *app) close() {
	for i := len(a.closers) - 1; i >= 0; i-- {
		if err := a.closers[i](); err != nil {
			a.log.Error("shutdown step failed", "error", err)
		}
	}
}

func run(args []string, getenv func(string) string, stdout, stderr io.Writer) int {
	fs := flag.NewFlagSet("jetond", flag.ContinueOnError)
	fs.SetOutput(stderr)
	dev := fs.Bool("dev", false, "run with embedded dev defaults: in-memory store, ephemeral keys, generated certificates")
	devDir := fs.String("dev-dir", ".jeton-dev", "dev mode: where certificates, policy and audit log are written")
	publicAddr := fs.String("public-addr", "127.0.0.1:7443", "dev mode: public listener address")
	trustedAddr := fs.String("trusted-addr", "127.0.0.1:7444", "dev mode: trusted listener address")
	metricsAddr := fs.String("metrics-addr", defaultDevMetricsAddr, "dev mode: metrics, liveness and readiness (HTTP) address")
	configPath := fs.String("config", "", "production configuration file (YAML)")
	drain := fs.Duration("drain-timeout", 30*time.Second, "how long SIGTERM waits for in-flight calls")
	auditKeyOut := fs.String("audit-key-out", "", "with --config: write the key of the audit log's token hashes (hex, mode 0600) to `file`, for an investigator who searches the log by token, then exit; verifying the log needs no key")
	checkConfig := fs.String("check-config", "", "validate the configuration `file`, its policy and every file they name, without contacting Redis or Vault, then exit")
	version := fs.Bool("version", false, "print the version and build information, then exit")
	fs.Usage = func() { fmt.Fprint(fs.Output(), jetondUsage); fs.PrintDefaults() }
	if err := fs.Parse(args); err != nil {
		if errors.Is(err, flag.ErrHelp) {
			return 0
		}
		return 2
	}
	if fs.NArg() > 0 {
		fmt.Fprintf(stderr, "jetond: unexpected argument %q; see jetond --help\n", fs.Arg(0))
		return 2
	}
	if *version {
		printBuildInfo(stdout)
		return 0
	}
	if *checkConfig != "" {
		if *dev || *configPath != "" {
			fmt.Fprintln(stderr, "jetond: --check-config FILE goes alone")
			return 2
		}
		return runCheckConfig(*checkConfig, getenv, stdout, stderr)
	}
	if *dev == (*configPath != "") {
		fmt.Fprintln(stderr, "jetond: give exactly one of --dev or --config FILE")
		return 2
	}
	tuneGC(getenv)
	if err := refuseInapplicable(fs, *dev); err != nil {
		fmt.Fprintf(stderr, "jetond: %v\n", err)
		return 2
	}
	if *auditKeyOut != "" {
		if *dev {
			fmt.Fprintln(stderr, "jetond: --audit-key-out goes with --config")
			return 2
		}
		if err := exportAuditKey(context.Background(), *configPath, *auditKeyOut, getenv, stderr); err != nil {
			fmt.Fprintf(stderr, "jetond: %v\n", err)
			return 1
		}
		return 0
	}

	ctx, stop := signal.NotifyContext(context.Background(), syscall.SIGINT, syscall.SIGTERM)
	defer stop()
	// Registered before wiring: SIGHUP's default action would kill a
	// jetond still starting. One that arrives then is served after start.
	hup := make(chan os.Signal, 1)
	signal.Notify(hup, syscall.SIGHUP)
	defer signal.Stop(hup)

	var a *app
	var err error
	if *dev {
		a, err = wireDev(ctx, devOptions{dir: *devDir, publicAddr: *publicAddr, trustedAddr: *trustedAddr, metricsAddr: *metricsAddr}, stderr)
	} else {
		a, err = wireConfig(ctx, *configPath, getenv, stderr)
	}
	if err != nil {
		fmt.Fprintf(stderr, "jetond: %v\n", err)
		return 1
	}
	// Runs after shutdown has drained the listeners, so the audit log is
	// flushed and closed only once no call can append to it.
	defer a.close()

	a.srv.Start()
	a.log.Info("jetond serving", "public", a.srv.PublicAddr().String(), "trusted", a.srv.TrustedAddr().String())
	if a.ready != nil {
		a.ready(stdout)
	}
	for {
		select {
		case <-hup:
			if err := a.reload(); err != nil {
				a.log.Error("reload failed; keeping the previous TLS material and policy", "error", err)
			} else {
				a.log.Info("reloaded TLS material and policy")
			}
		case err := <-a.srv.Err():
			a.log.Error("listener failed", "error", err)
			shutdown(a, *drain)
			return 1
		case <-ctx.Done():
			a.log.Info("shutting down: draining in-flight calls")
			shutdown(a, *drain)
			return 0
		}
	}
}

const jetondUsage = `Usage: jetond --dev [--dev-dir DIR] [--public-addr A] [--trusted-addr A] [--metrics-addr A]
       jetond --config FILE [--drain-timeout D]
       jetond --config FILE --audit-key-out FILE
       jetond --check-config FILE
       jetond --version

jetond is the jeton tokenization server. Sponsor applications tokenize on its
public listener; TTP systems reveal and custodians administer on its trusted
listener, over mutual TLS, with every reveal audited before it is answered.

--dev runs with embedded defaults and nothing installed: an in-memory store,
an ephemeral key, generated certificates in --dev-dir, and it prints commands
to try. Never put real personal data in it.

--config runs the production shape from one YAML file (see
jetond.example.yaml), with JETON_* environment overrides; Vault is reached
through the standard VAULT_* variables. Local files are checked first, then
Redis and Vault; jetond refuses to start when any is wrong.

Signals: SIGTERM and SIGINT drain in-flight calls and flush the audit log;
SIGHUP reloads the TLS material and the policy.

Flags:
`

// devOnlyFlags apply to --dev only.
var devOnlyFlags = []string{"dev-dir", "public-addr", "trusted-addr", "metrics-addr"}

// refuseInapplicable refuses flags that the chosen mode would ignore.
func refuseInapplicable(fs *flag.FlagSet, dev bool) error {
	var err error
	fs.Visit(func(f *flag.Flag) {
		switch {
		case err != nil:
		case !dev && slices.Contains(devOnlyFlags, f.Name):
			err = fmt.Errorf("--%s applies to --dev only; with --config, set it in the file (or its JETON_* variable)", f.Name)
		}
	})
	return err
}

// runCheckConfig validates a configuration and everything it names,
// without contacting a backend.
func runCheckConfig(path string, getenv func(string) string, stdout, stderr io.Writer) int {
	cfg, err := LoadConfig(path, getenv)
	if err == nil {
		if err = checkLocal(cfg); err != nil {
			err = fmt.Errorf("config %s: %w", path, err)
		}
	}
	if err != nil {
		fmt.Fprintf(stderr, "jetond: %v\n", err)
		return 1
	}
	fmt.Fprintf(stdout, "config %s is valid: its policy and every file it names were checked; Redis and Vault were not contacted\n", path)
	return 0
}

func shutdown(a *app, drain time.Duration) {
	ctx, cancel := context.WithTimeout(context.Background(), drain)
	defer cancel()
	a.srv.Stop(ctx)
	if errors.Is(ctx.Err(), context.DeadlineExceeded) {
		a.log.Warn("drain timed out; remaining calls were cut off")
	}
}

func newLogger(w io.Writer, level, format string) (*slog.Logger, error) {
	lvl, err := parseLevel(level)
	if err != nil {
		return nil, err
	}
	opts := &slog.HandlerOptions{Level: lvl}
	if format == "text" {
		return slog.New(slog.NewTextHandler(w, opts)), nil
	}
	return slog.New(slog.NewJSONHandler(w, opts)), nil
}

func parseLevel(s string) (slog.Level, error) {
	var l slog.Level
	if s == "" {
		return slog.LevelInfo, nil
	}
	if err := l.UnmarshalText([]byte(s)); err != nil {
		return 0, fmt.Errorf("%q is not a level (debug, info, warn, error)", s)
	}
	return l, nil
}
