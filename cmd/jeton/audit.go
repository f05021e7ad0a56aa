package main

import (
	"encoding/hex"
	"errors"
	"flag"
	"fmt"
	"os"
	"strings"

	"github.com/jeton-dev/jeton/server/audit"
)

// exitTampered is the exit code of a log that does not verify.
const exitTampered = 1

// runAudit runs "jeton audit verify".
func runAudit(args []string, e *env) int {
	if helpArg(args) {
		fmt.Fprint(e.stdout, "Usage: jeton audit verify [--key-file F] [--head PATH] [--partial] FILE... | DIR\n\n"+
			"Verifies jetond's audit log: every record's MAC and the hash chain across\n"+
			"files, and the log's end against its HEAD. Run \"jeton audit verify -h\" for flags.\n")
		return exitOK
	}
	if len(args) == 0 || args[0] != "verify" {
		e.errorf("usage: jeton audit verify [--key-file F] [--head PATH] [--partial] FILE... | DIR")
		return exitUsage
	}
	fs := flag.NewFlagSet("audit verify", flag.ContinueOnError)
	// The key comes from a file or the environment, never argv: argv is
	// visible to every local user and lands in shell history, and the key
	// can forge the log as well as verify it.
	keyFile := fs.String("key-file", "", "`file` holding the audit MAC key in hex (default: env JETON_AUDIT_KEY, hex)")
	headPath := fs.String("head", "", "HEAD `file` to check the log's end against (default: DIR/HEAD when given a DIR)")
	partial := fs.Bool("partial", false, "accept a log that does not start at audit-000001.jsonl (older files archived)")
	fs.Usage = func() {
		fmt.Fprint(e.stderr, "Usage: jeton audit verify [flags] FILE... | DIR\n\n"+
			"Checks every record's MAC and the chain across files. Given a DIR, checks\n"+
			"all its audit-*.jsonl files and its HEAD.\n\nFlags:\n")
		fs.PrintDefaults()
	}
	paths, code, ok := parse(fs, args[1:], e)
	if !ok {
		return code
	}
	if len(paths) == 0 {
		e.errorf("audit verify: no log files or directory given")
		return exitUsage
	}
	key, err := auditKey(*keyFile, e.getenv)
	if err != nil {
		e.errorf("audit verify: %v", err)
		return exitUsage
	}

	files, head := paths, *headPath
	if fi, err := os.Stat(paths[0]); err == nil && fi.IsDir() {
		if len(paths) > 1 {
			e.errorf("audit verify: give one directory, or files")
			return exitUsage
		}
		var dirHead string
		if files, dirHead, err = audit.Files(paths[0]); err != nil {
			fmt.Fprintln(e.stderr, err)
			return exitTampered
		}
		if head == "" {
			head = dirHead
		}
	}
	rep, err := audit.Verify(key, files, head)
	if err == nil && rep.Records > 0 && rep.FirstSeq != 1 && !*partial {
		err = &audit.VerifyError{File: files[0], Line: 1, Seq: rep.FirstSeq, Reason: audit.ReasonMissingFile,
			Detail: "the log does not start at seq 1; --partial checks only the files given"}
	}
	if err != nil {
		fmt.Fprintln(e.stderr, err)
		return exitTampered
	}
	fmt.Fprintf(e.stdout, "ok: %d records, last seq %d\n", rep.Records, rep.LastSeq)
	return exitOK
}

// auditKey reads the MAC key, in hex, from keyFile or else JETON_AUDIT_KEY.
// There is no default: a verifier with a made-up key proves nothing.
func auditKey(keyFile string, getenv func(string) string) ([]byte, error) {
	text, from := getenv("JETON_AUDIT_KEY"), "JETON_AUDIT_KEY"
	if keyFile != "" {
		b, err := os.ReadFile(keyFile)
		if err != nil {
			return nil, fmt.Errorf("--key-file: %w", err)
		}
		text, from = string(b), "--key-file"
	}
	if text == "" {
		return nil, errors.New("no key: set --key-file or JETON_AUDIT_KEY")
	}
	key, err := hex.DecodeString(strings.TrimSpace(text))
	if err != nil || len(key) != audit.KeySize {
		// Never echo the text: it is meant to be a secret.
		return nil, fmt.Errorf("%s: want %d bytes in hex", from, audit.KeySize)
	}
	return key, nil
}
