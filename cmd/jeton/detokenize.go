package main

import (
	"bufio"
	"context"
	"encoding/json"
	"errors"
	"flag"
	"fmt"
	"strings"

	"github.com/jeton-dev/jeton/client"
)

const detokenizeUsage = `Usage: jeton detokenize --purpose PURPOSE [--case-ref REF] [--mask] [--tenant T] [--json] [TOKEN...]

Reveals the value behind each TOKEN, or each line of stdin when there is
none, and prints one value per line, in input order. Every reveal is
audited under PURPOSE and REF. A token that fails leaves an empty line (or a
JSON error) in its place; the failure is reported on stderr by its position.
A value that spans lines cannot be printed aligned: use --json for it.
Format-preserving tokens (e-mail, digit or date shaped) name no tenant: one
held by several of your tenants fails until --tenant names one.

Exit status: 0 all revealed, 1 some tokens failed, 2 usage error,
3 the call failed.

Flags:
`

// errMultiline stands in for a value that would break line alignment.
var errMultiline = errors.New("value spans several lines; use --json")

func runDetokenize(args []string, e *env) int {
	fs := flag.NewFlagSet("detokenize", flag.ContinueOnError)
	fs.Usage = func() { fmt.Fprint(fs.Output(), detokenizeUsage); fs.PrintDefaults() }
	var c conn
	c.register(fs, e.getenv)
	purpose := fs.String("purpose", "", "why the values are revealed, e.g. vetting (required)")
	caseRef := fs.String("case-ref", "", "case the reveal belongs to, e.g. a file number")
	mask := fs.Bool("mask", false, "reveal masked forms only")
	tenant := fs.String("tenant", "", "read this one of your tenants only; needed for a format-preserving token held by several of them")
	asJSON := fs.Bool("json", false, `print JSON lines: {"value":...,"masked":...,"class":...} or {"error":{"code":...,"message":...}}`)
	args, code, ok := parse(fs, args, e)
	if !ok {
		return code
	}
	if *purpose == "" {
		e.errorf("detokenize: --purpose is required")
		return exitUsage
	}
	tokens, name, err := inputs(args, e)
	if err != nil {
		e.errorf("detokenize: %v", err)
		return exitUsage
	}
	opts, err := c.options()
	if err != nil {
		e.errorf("detokenize: %v", err)
		return exitUsage
	}
	cl, err := client.NewRevealer(c.addr, append(opts, client.WithTenant(*tenant))...)
	if err != nil {
		e.errorf("detokenize: %v", err)
		return exitUsage
	}
	defer cl.Close()

	reveal := cl.Detokenize
	if *mask {
		reveal = cl.Mask
	}
	results, callErr := reveal(context.Background(), tokens, *purpose, *caseRef)

	out := bufio.NewWriter(e.stdout)
	defer out.Flush()
	enc := json.NewEncoder(out)
	status := exitOK
	for i, r := range results {
		if r.Err == nil && !*asJSON && strings.ContainsAny(r.Value, "\r\n") {
			r.Err, r.Value = errMultiline, ""
		}
		if r.Err != nil {
			status = exitItem
			e.errorf("detokenize: %s: %s", name(i+1), itemMessage(r.Err))
		}
		switch {
		case *asJSON && r.Err != nil:
			enc.Encode(struct {
				Error *itemJSON `json:"error"`
			}{itemErrorJSON(r.Err)})
		case *asJSON:
			enc.Encode(struct {
				Value  string `json:"value"`
				Masked bool   `json:"masked"`
				Class  string `json:"class"`
			}{r.Value, r.Masked, r.Class})
		default:
			fmt.Fprintln(out, r.Value)
		}
	}
	if callErr != nil {
		// The results before the failed chunk are printed above: they
		// were processed and must not be lost.
		out.Flush()
		if len(results) > 0 {
			e.errorf("%s: stopped after %s; the rest were not processed", "detokenize", name(len(results)))
		}
		return callFailed(e, "detokenize", callErr)
	}
	return status
}
