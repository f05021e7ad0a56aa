package main

import (
	"bufio"
	"context"
	"encoding/json"
	"flag"
	"fmt"

	"github.com/jeton-dev/jeton/client"
)

const tokenizeUsage = `Usage: jeton tokenize --class CLASS [--subject ID] [--json] [VALUE...]

Tokenizes each VALUE, or each line of stdin when there is none, and prints
one token per line, in input order. A value that fails leaves an empty line
(or a JSON error) in its place, so output lines match input lines; the
failure is reported on stderr by its position, never by its value.

Exit status: 0 all tokenized, 1 some values failed, 2 usage error,
3 the call failed.

Flags:
`

func runTokenize(args []string, e *env) int {
	fs := flag.NewFlagSet("tokenize", flag.ContinueOnError)
	fs.Usage = func() { fmt.Fprint(fs.Output(), tokenizeUsage); fs.PrintDefaults(); printClasses(fs.Output()) }
	var c conn
	c.register(fs, e.getenv)
	class := fs.String("class", "", "field class of the values, e.g. email (required; see Classes below)")
	subject := fs.String("subject", "", "data subject ID, for erasure by subject")
	asJSON := fs.Bool("json", false, `print JSON lines: {"token":...} or {"error":{"code":...,"message":...}}`)
	args, code, ok := parse(fs, args, e)
	if !ok {
		return code
	}
	if *class == "" {
		e.errorf("tokenize: --class is required")
		return exitUsage
	}
	values, name, err := inputs(args, e)
	if err != nil {
		e.errorf("tokenize: %v", err)
		return exitUsage
	}
	opts, err := c.options()
	if err != nil {
		e.errorf("tokenize: %v", err)
		return exitUsage
	}
	cl, err := client.NewSponsor(c.addr, opts...)
	if err != nil {
		e.errorf("tokenize: %v", err)
		return exitUsage
	}
	defer cl.Close()

	items := make([]client.Item, len(values))
	for i, v := range values {
		items[i] = client.Item{Class: *class, Value: v, Subject: *subject}
	}
	results, callErr := cl.Tokenize(context.Background(), items)

	out := bufio.NewWriter(e.stdout)
	defer out.Flush()
	enc := json.NewEncoder(out)
	status := exitOK
	for i, r := range results {
		if r.Err != nil {
			status = exitItem
			e.errorf("tokenize: %s: %s", name(i+1), itemMessage(r.Err))
		}
		switch {
		case *asJSON && r.Err != nil:
			enc.Encode(struct {
				Error *itemJSON `json:"error"`
			}{itemErrorJSON(r.Err)})
		case *asJSON:
			enc.Encode(struct {
				Token string `json:"token"`
			}{r.Token})
		default:
			// An empty line keeps the output aligned with the input.
			fmt.Fprintln(out, r.Token)
		}
	}
	if callErr != nil {
		// The results before the failed chunk are printed above: they
		// were processed and must not be lost.
		out.Flush()
		if len(results) > 0 {
			e.errorf("%s: stopped after %s; the rest were not processed", "tokenize", name(len(results)))
		}
		return callFailed(e, "tokenize", callErr)
	}
	return status
}
