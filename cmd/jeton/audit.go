package main

import (
	"context"
	"crypto/ed25519"
	"errors"
	"flag"
	"fmt"
	"os"
	"path/filepath"
	"time"

	vault "github.com/hashicorp/vault/api"

	"github.com/jeton-dev/jeton/server/audit"
	"github.com/jeton-dev/jeton/server/audit/vaultanchor"
)

// exitTampered is the exit code of a log that does not verify.
const exitTampered = 1

const auditUsage = `usage:
  jeton audit verify (--public-key FILE --checkpoint FILE [--replica R] | --vault --replica R) [--partial] DIR | FILE...
  jeton audit archive --dir DIR --reason TEXT
  jeton audit public-key [--vault-mount transit]      (reads VAULT_*; prints the verifier keys)
  jeton audit checkpoint --replica R                   (reads VAULT_*; prints the stored checkpoint)`

// runAudit runs "jeton audit verify|archive|public-key|checkpoint".
func runAudit(args []string, e *env) int {
	if helpArg(args) {
		fmt.Fprint(e.stdout, "Usage: jeton audit verify|archive|public-key|checkpoint ...\n\n"+
			"Checks and maintains jetond's audit log. verify checks the hash chain and the\n"+
			"replica's signed checkpoint with the public key only; archive sets a broken\n"+
			"log aside so jetond starts a new chain that names the old one; public-key and\n"+
			"checkpoint export what an offline verifier needs. Run \"jeton audit verify -h\"\n"+
			"for the flags of each.\n\n"+auditUsage+"\n")
		return exitOK
	}
	if len(args) == 0 {
		e.errorf("%s", auditUsage)
		return exitUsage
	}
	switch args[0] {
	case "verify":
		return runAuditVerify(args[1:], e)
	case "archive":
		return runAuditArchive(args[1:], e)
	case "public-key", "checkpoint":
		return runAuditExport(args[0], args[1:], e)
	}
	e.errorf("%s", auditUsage)
	return exitUsage
}

// vaultFlags are how the audit commands reach the anchor in Vault: the
// standard VAULT_* variables, with a token carrying jeton-audit-verifier.
type vaultFlags struct {
	transitMount string
	replica      string
}

// register adds the Vault flags; replicaHelp says what --replica picks.
func (v *vaultFlags) register(fs *flag.FlagSet, replicaHelp string) {
	fs.StringVar(&v.transitMount, "vault-mount", vaultanchor.DefaultTransitMount, "Transit `mount` of the checkpoint signing key")
	fs.StringVar(&v.replica, "replica", "", replicaHelp)
}

func (v *vaultFlags) anchor(ctx context.Context, replica string) (*vaultanchor.Anchor, error) {
	cfg := vault.DefaultConfig()
	if cfg.Error != nil {
		return nil, cfg.Error
	}
	vc, err := vault.NewClient(cfg)
	if err != nil {
		return nil, err
	}
	if vc.Token() == "" {
		return nil, errors.New("set VAULT_TOKEN to a token with the jeton-audit-verifier policy")
	}
	return vaultanchor.New(ctx, vc, vaultanchor.Config{TransitMount: v.transitMount, Replica: replica})
}

func runAuditVerify(args []string, e *env) int {
	fs := flag.NewFlagSet("audit verify", flag.ContinueOnError)
	pubFile := fs.String("public-key", "", "`file` of verifier keys (jeton-audit+...), one per line")
	cpFile := fs.String("checkpoint", "", "`file` holding the replica's latest signed checkpoint")
	useVault := fs.Bool("vault", false, "read the public keys and the checkpoint from Vault (VAULT_ADDR, VAULT_TOKEN, ...)")
	var vf vaultFlags
	vf.register(fs, "replica `id` (audit.replica) whose log and checkpoint to check")
	partial := fs.Bool("partial", false, "accept files that do not start at audit-000001.jsonl (older files archived); checks only what is given")
	timeout := fs.Duration("timeout", 30*time.Second, "deadline for reading from Vault")
	fs.Usage = func() {
		fmt.Fprint(e.stderr, "Usage: jeton audit verify [flags] DIR | FILE...\n\n"+
			"Checks the hash chain of every record, then that the log reaches and agrees\n"+
			"with the replica's latest signed checkpoint, using the public key only.\n"+
			"Given a DIR, also checks each archived chain the current one follows.\n"+
			"A partial last line (a crash mid-write) is reported, not an error.\n\nFlags:\n")
		fs.PrintDefaults()
	}
	paths, code, ok := parse(fs, args, e)
	if !ok {
		return code
	}
	if len(paths) == 0 {
		e.errorf("audit verify: no log files or directory given")
		return exitUsage
	}
	if *useVault == (*pubFile != "" || *cpFile != "") || (!*useVault && (*pubFile == "" || *cpFile == "")) {
		e.errorf("audit verify: give --public-key and --checkpoint, or --vault")
		return exitUsage
	}
	dir := ""
	if fi, err := os.Stat(paths[0]); err == nil && fi.IsDir() {
		if len(paths) > 1 {
			e.errorf("audit verify: give one directory, or files")
			return exitUsage
		}
		dir = paths[0]
	}

	// The replica is the verifier's to name, never the log's: a directory
	// swapped for another replica's log would otherwise verify against
	// that replica's own checkpoint.
	opts := audit.VerifyOptions{Partial: *partial, Replica: vf.replica}
	if *useVault {
		if vf.replica == "" {
			e.errorf("audit verify: --vault needs --replica: the replica (audit.replica) whose log this is meant to be")
			return exitUsage
		}
		ctx, cancel := context.WithTimeout(context.Background(), *timeout)
		defer cancel()
		replica := vf.replica
		a, err := vf.anchor(ctx, replica)
		if err != nil {
			e.errorf("audit verify: %v", err)
			return exitRPC
		}
		if opts.Keys, err = a.PublicKeys(ctx); err != nil {
			e.errorf("audit verify: %v", err)
			return exitRPC
		}
		var version uint64
		if opts.Checkpoint, version, err = a.Load(ctx); err != nil {
			e.errorf("audit verify: %v", err)
			return exitRPC
		}
		if opts.Checkpoint == nil {
			what := "holds no checkpoint"
			if version > 0 {
				what = fmt.Sprintf("had its checkpoint deleted (version %d)", version)
			}
			fmt.Fprintf(e.stderr, "audit: the anchor of replica %s %s: nothing to check the log's end against\n", replica, what)
			return exitTampered
		}
	} else {
		b, err := os.ReadFile(*pubFile)
		if err == nil {
			opts.Keys, err = audit.ParseVerifierKeys(b)
		}
		if err != nil {
			e.errorf("audit verify: --public-key: %v", err)
			return exitUsage
		}
		if opts.Checkpoint, err = os.ReadFile(*cpFile); err != nil {
			e.errorf("audit verify: --checkpoint: %v", err)
			return exitUsage
		}
	}

	var reports []audit.ChainReport
	var err error
	if dir != "" && !*partial {
		reports, err = audit.VerifyHistory(dir, opts)
	} else {
		files := paths
		if dir != "" {
			if files, err = audit.Files(dir); err != nil {
				fmt.Fprintln(e.stderr, err)
				return exitTampered
			}
		}
		var rep *audit.Report
		if rep, err = audit.Verify(files, opts); rep != nil {
			reports = []audit.ChainReport{{Dir: dir, Report: rep}}
		}
	}
	for i, r := range reports {
		printChainReport(e, i, r)
	}
	if err != nil {
		fmt.Fprintln(e.stderr, err)
		return exitTampered
	}
	return exitOK
}

func printChainReport(e *env, i int, r audit.ChainReport) {
	prefix := "ok: "
	if i > 0 {
		prefix = "ok: which follows "
	}
	chain, replica := "?", "?"
	if r.Chain != nil {
		chain, replica = r.Chain.ID, r.Chain.Replica
	}
	fmt.Fprintf(e.stdout, "%schain %s of replica %s: %d records, last seq %d", prefix, chain, replica, r.Records, r.LastSeq)
	if r.Checkpoint != nil {
		fmt.Fprintf(e.stdout, ", signed checkpoint at seq %d (%s)", r.Checkpoint.Seq, r.Checkpoint.Time.UTC().Format(time.RFC3339))
		if r.Checkpoint.Closed {
			fmt.Fprint(e.stdout, ", closed at a clean stop")
		}
	}
	fmt.Fprintln(e.stdout)
	for _, rc := range r.Recoveries {
		if rc.Head > rc.Anchored {
			fmt.Fprintf(e.stdout, "  unclean stop before seq %d: records %d to %d were covered by no checkpoint when the server stopped, "+
				"and are anchored only from the restart on: trust them less\n", rc.Seq, rc.Anchored+1, rc.Head)
		} else {
			fmt.Fprintf(e.stdout, "  unclean stop before seq %d: every record was covered by a checkpoint\n", rc.Seq)
		}
	}
	if r.Torn != nil {
		fmt.Fprintf(e.stdout, "  torn final record: %d bytes at offset %d of %s (a write cut short by a crash; never acknowledged, cut off when jetond starts)\n",
			r.Torn.Bytes, r.Torn.Offset, r.Torn.File)
	}
	if r.Chain != nil && r.Previous != nil {
		fmt.Fprintf(e.stdout, "  opened after chain %s was archived (%s) up to its checkpoint at seq %d: %q\n",
			r.Previous.Chain, r.Chain.Archive, r.Previous.Seq, r.Chain.Reason)
	}
}

// logReplica returns the replica the first record of the log in dir
// names, or "".
func logReplica(dir string) string {
	files, _ := audit.Files(dir)
	if len(files) == 0 {
		return ""
	}
	rep, err := audit.Verify(files[:1], audit.VerifyOptions{Partial: true})
	if err != nil || rep.Chain == nil {
		return ""
	}
	return rep.Chain.Replica
}

func runAuditArchive(args []string, e *env) int {
	fs := flag.NewFlagSet("audit archive", flag.ContinueOnError)
	dir := fs.String("dir", "", "the replica's audit `directory` (audit.dir); jetond must be stopped")
	reason := fs.String("reason", "", "why the chain is archived; written into the new chain's first record")
	fs.Usage = func() {
		fmt.Fprint(e.stderr, "Usage: jeton audit archive --dir DIR --reason TEXT\n\n"+
			"Recovery for a log jetond refuses or stopped writing. With jetond stopped, moves\n"+
			"the log files, untouched, to DIR/archived/<time>/ and asks the next start of\n"+
			"jetond to open a new chain whose first record names the old chain's last\n"+
			"signed checkpoint, the archive and the reason. The break stays on record.\n\nFlags:\n")
		fs.PrintDefaults()
	}
	if _, code, ok := parse(fs, args, e); !ok {
		return code
	}
	if *dir == "" || *reason == "" {
		e.errorf("audit archive: --dir and --reason are required")
		return exitUsage
	}
	res, err := audit.Archive(*dir, *reason, time.Now())
	if err != nil {
		e.errorf("%v", err)
		return exitTampered
	}
	replica := logReplica(filepath.Join(*dir, res.Dir))
	if replica == "" {
		replica = "REPLICA"
	}
	fmt.Fprintf(e.stdout, "archived %d log files to %s\nstart jetond: it opens a new chain naming the last checkpoint; then check with\n  jeton audit verify --vault --replica %s %s\n",
		res.Files, res.Dir, replica, *dir)
	return exitOK
}

// runAuditExport prints the verifier keys or a replica's checkpoint, read
// from Vault, for a verifier who works offline.
func runAuditExport(what string, args []string, e *env) int {
	fs := flag.NewFlagSet("audit "+what, flag.ContinueOnError)
	var vf vaultFlags
	if what == "public-key" {
		vf.register(fs, "replica `id` (audit.replica) whose signing key to print; any replica's name works, the key is shared")
		fs.Usage = func() {
			fmt.Fprint(e.stderr, "Usage: jeton audit public-key [--vault-mount M]\n\n"+
				"Prints the public keys that verify audit checkpoints, read from Vault with\n"+
				"VAULT_ADDR and a VAULT_TOKEN of the jeton-audit-verifier policy, as PEM. Keep\n"+
				"the output with the verifier: with a checkpoint (jeton audit checkpoint),\n"+
				"`jeton audit verify --public-key FILE --checkpoint FILE` then\n"+
				"checks a log offline, without any access to Vault.\n\nFlags:\n")
			fs.PrintDefaults()
		}
	} else {
		vf.register(fs, "replica `id` (audit.replica) whose last checkpoint to print (required)")
		fs.Usage = func() {
			fmt.Fprint(e.stderr, "Usage: jeton audit checkpoint --replica ID [--vault-mount M]\n\n"+
				"Prints the replica's last signed checkpoint as stored in Vault (KV jeton-audit),\n"+
				"read with VAULT_ADDR and a VAULT_TOKEN of the jeton-audit-verifier policy. Keep\n"+
				"it with a copy of the log: `jeton audit verify --checkpoint FILE --public-key\n"+
				"KEYS` then checks that copy offline up to that checkpoint.\n\nFlags:\n")
			fs.PrintDefaults()
		}
	}
	if _, code, ok := parse(fs, args, e); !ok {
		return code
	}
	replica := vf.replica
	if replica == "" {
		if what == "checkpoint" {
			e.errorf("audit checkpoint: --replica is required")
			return exitUsage
		}
		replica = audit.DefaultReplica
	}
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	a, err := vf.anchor(ctx, replica)
	if err != nil {
		e.errorf("audit %s: %v", what, err)
		return exitRPC
	}
	if what == "public-key" {
		keys, err := a.PublicKeys(ctx)
		if err != nil {
			e.errorf("audit public-key: %v", err)
			return exitRPC
		}
		return printVerifierKeys(e, keys)
	}
	cp, _, err := a.Load(ctx)
	if err != nil {
		e.errorf("audit checkpoint: %v", err)
		return exitRPC
	}
	if cp == nil {
		e.errorf("audit checkpoint: none stored for replica %s", replica)
		return exitTampered
	}
	e.stdout.Write(cp)
	return exitOK
}

func printVerifierKeys(e *env, keys []ed25519.PublicKey) int {
	for _, k := range keys {
		s, err := audit.VerifierKey(k)
		if err != nil {
			e.errorf("%v", err)
			return exitRPC
		}
		fmt.Fprintln(e.stdout, s)
	}
	return exitOK
}
