package main

import (
	"context"
	"errors"
	"fmt"
	"io"
	"net/netip"
	"os"
	"path/filepath"
	"strings"
	"syscall"
	"time"

	"github.com/jeton-dev/jeton/server"
	"github.com/jeton-dev/jeton/server/audit"
	"github.com/jeton-dev/jeton/server/audit/fileanchor"
	"github.com/jeton-dev/jeton/server/devpki"
	"github.com/jeton-dev/jeton/tokenizer"
	"github.com/jeton-dev/jeton/tokenizer/localkeys"
	"github.com/jeton-dev/jeton/tokenizer/memstore"
)

// devReplica names the dev server's audit chain.
const devReplica = "dev"

type devOptions struct {
	dir                     string
	publicAddr, trustedAddr string
	metricsAddr             string
}

// devPolicy grants the generated sponsor certificate tokenization, the TTP
// certificate full reveal for two purposes, and the custodian Admin.
const devPolicy = `# jeton dev policy: edit and send SIGHUP to reload.
identities:
  - id: ` + devpki.SponsorID + `
    tenants: [demo]
    roles: [sponsor-app]
  - id: ` + devpki.TTPID + `
    tenants: [demo]
    roles: [ttp-reader]
  - id: ` + devpki.CustodianID + `
    tenants: [demo]
    roles: [custodian]
roles:
  sponsor-app:
    tokenize: ["*"]
    # Deterministic classes are an oracle: bound how fast they are used
    # and how many distinct values a day may be tried; going over
    # suspends the identity until a custodian reinstates it.
    budget: {max_batch: 10000, rate: 1000, burst: 10000, distinct: 100000, window: 24h, suspend_after: 1}
  ttp-reader:
    reveal: {"*": full}
    purposes: [support, vetting]
    # Bulk extraction is bounded: per call, per second, and in distinct
    # records a day; the third refusal in a window suspends the identity.
    budget: {max_batch: 1000, rate: 100, burst: 1000, distinct: 10000, window: 24h, suspend_after: 3}
  custodian:
    admin: true
purposes:
  - code: support
    description: answering a data subject's request
    classes: ["*"]
  - code: vetting
    description: background check of an accreditation request
    classes: ["*"]
    case_ref_required: true
# Dev mode has one custodian, so it lets one custodian destroy or purge
# alone. Outside dev mode jetond refuses fewer than 2 (dual control).
dual_control:
  approvals: 1
`

const devWarning = `
!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!
!! jetond is running in DEV MODE.                                     !!
!! The key-encryption key is ephemeral and lives in this process:     !!
!! every token dies with it. Records are kept in memory only.         !!
!! Certificates are throwaway. Never put real personal data in here.  !!
!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!
`

func wireDev(ctx context.Context, o devOptions, stderr io.Writer) (_ *app, err error) {
	// Before anything is written: a second dev jetond on the same
	// directory would regenerate the certificates and the audit key and
	// wipe the audit log of the one running.
	unlock, err := lockDevDir(o.dir)
	if err != nil {
		return nil, err
	}
	defer func() {
		if err != nil {
			unlock()
		}
	}()
	log, err := newLogger(stderr, "info", "text")
	if err != nil {
		return nil, err
	}
	fmt.Fprint(stderr, devWarning)
	log.Warn("dev mode: ephemeral in-process KEK and in-memory store; nothing survives a restart")

	bundle, err := devpki.Generate(o.dir)
	if err != nil {
		return nil, err
	}
	km, err := localkeys.New(true)
	if err != nil {
		return nil, err
	}
	obs, err := newObservability()
	if err != nil {
		return nil, err
	}
	tok, err := tokenizer.New(tokenizer.Config{Classes: tokenizer.DefaultClasses(), Keys: km, Store: memstore.New(), Observer: obs.metrics})
	if err != nil {
		return nil, err
	}
	policyPath := filepath.Join(o.dir, "policy.yaml")
	if err := os.WriteFile(policyPath, []byte(devPolicy), 0o600); err != nil {
		return nil, err
	}
	classes := classNames(tok)
	pol, err := server.LoadPolicy(policyPath, classes)
	if err != nil {
		return nil, err
	}
	pub, err := server.LoadTLS(server.TLSFiles{Cert: bundle.ServerCert, Key: bundle.ServerKey, ClientCA: bundle.SponsorCA})
	if err != nil {
		return nil, err
	}
	tru, err := server.LoadTLS(server.TLSFiles{Cert: bundle.ServerCert, Key: bundle.ServerKey, ClientCA: bundle.TTPCA})
	if err != nil {
		return nil, err
	}

	// The token-hash key derives from the ephemeral KEK and the anchor's
	// signing key lives in this process only, so an older dev log could
	// never be continued: start a fresh one, anchored in a file outside
	// the audit directory, checked by the printed command with the public
	// key only.
	auditDir, anchorDir := filepath.Join(o.dir, "audit"), filepath.Join(o.dir, "anchor")
	for _, d := range []string{auditDir, anchorDir, filepath.Join(o.dir, "audit.key")} {
		if err := os.RemoveAll(d); err != nil {
			return nil, err
		}
	}
	auditKey, err := tok.DeriveKey(ctx, "audit")
	if err != nil {
		return nil, err
	}
	anchor, err := fileanchor.New(anchorDir, devReplica, nil)
	if err != nil {
		return nil, err
	}
	alog, err := audit.Open(audit.Config{Dir: auditDir, Key: auditKey, Logger: log,
		Anchor: anchor, Replica: devReplica, CheckpointInterval: time.Second})
	if err != nil {
		return nil, err
	}
	if err := registerAuditMetrics(obs.reg, alog); err != nil {
		alog.Close()
		return nil, err
	}

	var pubConns, truConns server.ConnLimits
	fitConnections(&pubConns, &truConns, log)
	srv, err := server.New(server.Config{
		Tokenizer: tok, Policy: pol, Audit: alog, Logger: log,
		Public: server.Listener{Addr: o.publicAddr, TLS: pub, Conns: pubConns},
		Trusted: server.Listener{Addr: o.trustedAddr, TLS: tru, Conns: truConns,
			Allowed: []netip.Prefix{netip.MustParsePrefix("127.0.0.0/8"), netip.MustParsePrefix("::1/128")}},
		Registry: obs.reg, Metrics: obs.metrics,
		// Dev mode only: one custodian may destroy or purge alone.
		MinApprovals: 1,
		// The in-memory store and in-process keys cannot fail; the audit
		// log writes to a real disk that can.
		Checks: []server.Check{{Name: server.BackendAudit, Probe: func(context.Context) error { return alog.Healthy() }, Listener: server.ListenerTrusted}},
	})
	if err != nil {
		alog.Close()
		return nil, err
	}
	ml, err := listenMetrics(o.metricsAddr, obs, srv, log)
	if err != nil {
		alog.Close()
		return nil, err
	}
	ml.serve(log)
	a := &app{srv: srv, tok: tok, log: log, closers: []func() error{unlock, alog.Close, ml.close}}
	a.reload = func() error {
		p, err := server.LoadPolicy(policyPath, classes)
		if err != nil {
			return err
		}
		if err := pub.Reload(); err != nil {
			return err
		}
		if err := tru.Reload(); err != nil {
			return err
		}
		return srv.SetPolicy(p)
	}
	a.ready = func(w io.Writer) {
		printDevCommands(w, o.dir, bundle, srv.PublicAddr().String(), srv.TrustedAddr().String())
	}
	return a, nil
}

// lockDevDir takes an exclusive lock on dir/jetond.lock, held until
// unlock or the process ends (the kernel drops it even on kill -9), and
// refuses a directory another jetond holds.
func lockDevDir(dir string) (unlock func() error, err error) {
	if err := os.MkdirAll(dir, 0o700); err != nil {
		return nil, err
	}
	path := filepath.Join(dir, "jetond.lock")
	f, err := os.OpenFile(path, os.O_RDWR|os.O_CREATE, 0o600)
	if err != nil {
		return nil, err
	}
	if err := syscall.Flock(int(f.Fd()), syscall.LOCK_EX|syscall.LOCK_NB); err != nil {
		owner, _ := os.ReadFile(path)
		f.Close()
		if errors.Is(err, syscall.EWOULDBLOCK) {
			return nil, fmt.Errorf("dev directory %s is in use by a running jetond (pid %s); stop it first, or give another --dev-dir (and free --public-addr, --trusted-addr, --metrics-addr)", dir, strings.TrimSpace(string(owner)))
		}
		return nil, fmt.Errorf("locking %s: %w", path, err)
	}
	if err := f.Truncate(0); err == nil {
		fmt.Fprintf(f, "%d\n", os.Getpid())
	}
	return f.Close, nil
}

func classNames(tok *tokenizer.Tokenizer) []string {
	var out []string
	for _, c := range tok.Classes() {
		out = append(out, c.Name)
	}
	return out
}

// Markers around the printed commands, so a test can run them as printed.
const (
	commandsBegin = "# --- jeton dev: paste these commands in another shell ---"
	commandsEnd   = "# --- end of jeton dev commands ---"
)

func printDevCommands(w io.Writer, dir string, b *devpki.Bundle, public, trusted string) {
	cli := "jeton"
	if st, err := os.Stat(filepath.Join("cmd", "jeton")); err == nil && st.IsDir() {
		cli = "go run ./cmd/jeton"
	}
	rel := func(p string) string {
		if r, err := filepath.Rel(".", p); err == nil && !strings.HasPrefix(r, "..") {
			return r
		}
		return p
	}
	fmt.Fprintf(w, `
jetond (dev) is ready: public listener %s, trusted listener %s.
Audit log: %s
%s
# Tokenize as the sponsor app, on the public listener:
TOKEN=$(%s tokenize --addr %s --cacert %s --cert %s --key %s --class email anne.dupont@example.org)
echo "$TOKEN"
# Reveal it as a TTP system, on the trusted listener, stating a purpose:
%s detokenize --addr %s --cacert %s --cert %s --key %s --purpose support "$TOKEN"
# Check the audit log, which recorded that reveal before answering it, with
# the public key and the last signed checkpoint only (signed every second):
%s audit verify --public-key %s --checkpoint %s %s
%s
`, public, trusted, filepath.Join(rel(dir), "audit"),
		commandsBegin,
		cli, public, rel(b.ServerCA), rel(b.SponsorCert), rel(b.SponsorKey),
		cli, trusted, rel(b.ServerCA), rel(b.TTPCert), rel(b.TTPKey),
		cli, filepath.Join(rel(dir), "anchor", fileanchor.PublicKeyName),
		fileanchor.CheckpointPath(filepath.Join(rel(dir), "anchor"), devReplica), filepath.Join(rel(dir), "audit"),
		commandsEnd)
	fmt.Fprintf(w, "# The trusted listener serves reflection (make tools installs grpcurl):\n#   .tools/bin/grpcurl -cacert %s -cert %s -key %s %s list\n\n",
		rel(b.ServerCA), rel(b.TTPCert), rel(b.TTPKey), trusted)
}
