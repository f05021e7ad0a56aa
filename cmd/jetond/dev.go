package main

import (
	"context"
	"encoding/hex"
	"fmt"
	"io"
	"net/netip"
	"os"
	"path/filepath"
	"strings"

	"github.com/jeton-dev/jeton/server"
	"github.com/jeton-dev/jeton/server/audit"
	"github.com/jeton-dev/jeton/server/devpki"
	"github.com/jeton-dev/jeton/tokenizer"
	"github.com/jeton-dev/jeton/tokenizer/localkeys"
	"github.com/jeton-dev/jeton/tokenizer/memstore"
)

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
`

const devWarning = `
!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!
!! jetond is running in DEV MODE.                                     !!
!! The key-encryption key is ephemeral and lives in this process:     !!
!! every token dies with it. Records are kept in memory only.         !!
!! Certificates are throwaway. Never put real personal data in here.  !!
!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!
`

func wireDev(ctx context.Context, o devOptions, stderr io.Writer) (*app, error) {
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

	// The audit key derives from the ephemeral KEK, so an older dev log
	// could never verify again: start a fresh one.
	auditDir := filepath.Join(o.dir, "audit")
	if err := os.RemoveAll(auditDir); err != nil {
		return nil, err
	}
	auditKey, err := tok.DeriveKey(ctx, "audit")
	if err != nil {
		return nil, err
	}
	alog, err := audit.Open(audit.Config{Dir: auditDir, Key: auditKey, Logger: log})
	if err != nil {
		return nil, err
	}
	// Dev only: the verifier needs the key, and this one dies with the
	// process anyway. In production it never leaves the key hierarchy.
	if err := os.WriteFile(filepath.Join(o.dir, "audit.key"), []byte(hex.EncodeToString(auditKey)+"\n"), 0o600); err != nil {
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
		// The in-memory store and in-process keys cannot fail; the audit
		// log writes to a real disk that can.
		Checks: []server.Check{{Name: server.BackendAudit, Probe: func(context.Context) error { return alog.Healthy() }}},
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
	a := &app{srv: srv, tok: tok, log: log, closers: []func() error{alog.Close, ml.close}}
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
# Check the audit log, which recorded that reveal before answering it:
%s audit verify --key-file %s %s
%s
`, public, trusted, filepath.Join(rel(dir), "audit"),
		commandsBegin,
		cli, public, rel(b.ServerCA), rel(b.SponsorCert), rel(b.SponsorKey),
		cli, trusted, rel(b.ServerCA), rel(b.TTPCert), rel(b.TTPKey),
		cli, filepath.Join(rel(dir), "audit.key"), filepath.Join(rel(dir), "audit"),
		commandsEnd)
	fmt.Fprintf(w, "# The trusted listener serves reflection (make tools installs grpcurl):\n#   .tools/bin/grpcurl -cacert %s -cert %s -key %s %s list\n\n",
		rel(b.ServerCA), rel(b.TTPCert), rel(b.TTPKey), trusted)
}
