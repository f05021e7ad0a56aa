package main

import (
	"bufio"
	"errors"
	"flag"
	"fmt"
	"io"
	"slices"
	"strings"
	"time"

	"github.com/jeton-dev/jeton/client"
)

// Exit codes, so scripts can tell a bad item from a failed call.
const (
	exitOK    = 0
	exitItem  = 1 // some items failed; the others were processed
	exitUsage = 2 // bad flags, arguments or configuration
	exitRPC   = 3 // the call failed: unavailable, denied, ...
)

// env is what a command may use from its process.
type env struct {
	stdin          io.Reader
	stdout, stderr io.Writer
	getenv         func(string) string
}

// errorf prints a message prefixed "jeton: " to stderr.
func (e *env) errorf(format string, args ...any) {
	fmt.Fprintf(e.stderr, "jeton: "+format+"\n", args...)
}

// command is one subcommand. run returns the exit code.
type command struct {
	summary string
	run     func(args []string, e *env) int
}

// commands lists the subcommands; add new ones here.
var commands = map[string]command{
	"tokenize":   {"turn values into tokens", runTokenize},
	"csv":        {"tokenize or reveal the personal columns of a CSV file (csv tokenize, csv detokenize)", runCSV},
	"detokenize": {"reveal the values behind tokens (TTP network only)", runDetokenize},
	"audit":      {"verify the audit log with the public key (audit verify), or archive it (audit archive)", runAudit},
	"vault":      {"prepare Vault: Transit KEK and policies (vault setup)", runVault},
	"bench":      {"measure unary Tokenize against a health-check baseline (loopback only)", runBench},
	"admin":      {"custodian operations: erase, purge, rotate, destroy, rewrap, stats (TTP network only)", runAdmin},
	"version":    {"print the version and build information", runVersion},
}

// helpArg reports whether args ask for help: what every command answers
// with its usage on stdout and exit status 0.
func helpArg(args []string) bool {
	return len(args) > 0 && slices.Contains([]string{"help", "-h", "-help", "--help"}, args[0])
}

func run(args []string, stdin io.Reader, stdout, stderr io.Writer, getenv func(string) string) int {
	e := &env{stdin: stdin, stdout: stdout, stderr: stderr, getenv: getenv}
	if len(args) == 0 {
		usage(stderr)
		return exitUsage
	}
	switch args[0] {
	case "help", "-h", "-help", "--help":
		usage(stdout)
		return exitOK
	}
	cmd, ok := commands[args[0]]
	if !ok {
		e.errorf("unknown command %q", args[0])
		usage(stderr)
		return exitUsage
	}
	return cmd.run(args[1:], e)
}

func usage(w io.Writer) {
	fmt.Fprint(w, "Usage: jeton <command> [flags] [arguments]\n\n"+
		"jeton is the command line of jeton, the tokenization service: sponsors tokenize\n"+
		"personal values, TTP systems reveal them for a stated purpose, custodians manage\n"+
		"keys and erasure, operators verify the audit log.\n\nCommands:\n")
	names := make([]string, 0, len(commands))
	for name := range commands {
		names = append(names, name)
	}
	slices.Sort(names)
	for _, name := range names {
		fmt.Fprintf(w, "  %-12s %s\n", name, commands[name].summary)
	}
	fmt.Fprint(w, "  help         show this help\n\nRun \"jeton <command> -h\" for a command's flags.\n")
	fmt.Fprint(w, "Connection flags have environment defaults: JETON_ADDR, JETON_CACERT, JETON_CERT,\nJETON_KEY, JETON_TIMEOUT.\n")
}

// conn holds the flags every command that calls jeton shares. Each has an
// environment variable as its default, so a flag overrides the variable.
type conn struct {
	addr, caCert, cert, key, timeout string
}

func (c *conn) register(fs *flag.FlagSet, getenv func(string) string) {
	fs.StringVar(&c.addr, "addr", getenv("JETON_ADDR"), "server `host:port` (env JETON_ADDR)")
	fs.StringVar(&c.caCert, "cacert", getenv("JETON_CACERT"), "CA certificate `file` of the server (env JETON_CACERT)")
	fs.StringVar(&c.cert, "cert", getenv("JETON_CERT"), "client certificate `file` (env JETON_CERT)")
	fs.StringVar(&c.key, "key", getenv("JETON_KEY"), "client key `file` (env JETON_KEY)")
	fs.StringVar(&c.timeout, "timeout", getenv("JETON_TIMEOUT"), "deadline per call, e.g. 30s (env JETON_TIMEOUT; default 10s)")
}

// Retries on UNAVAILABLE are safe for every command: Tokenize resends its
// idempotency key, and a reveal changes nothing.
const (
	retries = 3
	backoff = 200 * time.Millisecond
)

// dial checks the connection flags and returns a client. The error is a
// usage error: it names the missing flag or the unusable file.
func (c *conn) dial() (*client.Client, error) {
	opts, err := c.options()
	if err != nil {
		return nil, err
	}
	return client.New(c.addr, opts...)
}

// options checks the connection flags and returns the client options
// they make. The error is a usage error.
func (c *conn) options() ([]client.Option, error) {
	var missing []string
	for _, f := range []struct{ flag, envName, val string }{
		{"--addr", "JETON_ADDR", c.addr},
		{"--cacert", "JETON_CACERT", c.caCert},
		{"--cert", "JETON_CERT", c.cert},
		{"--key", "JETON_KEY", c.key},
	} {
		if f.val == "" {
			missing = append(missing, f.flag+" (or "+f.envName+")")
		}
	}
	if len(missing) > 0 {
		return nil, fmt.Errorf("missing %s", strings.Join(missing, ", "))
	}
	opts := []client.Option{
		client.WithTLSFiles(c.caCert, c.cert, c.key),
		client.WithRetry(retries, backoff),
	}
	if c.timeout != "" {
		d, err := time.ParseDuration(c.timeout)
		if err != nil || d <= 0 {
			return nil, fmt.Errorf("--timeout (or JETON_TIMEOUT): %q is not a positive duration", c.timeout)
		}
		opts = append(opts, client.WithTimeout(d))
	}
	return opts, nil
}

// parse parses args with fs, allowing flags after arguments
// ("jeton tokenize anne@example.org --class email"), so that a misplaced
// flag is never sent as a value. Arguments after "--" are all positional.
// It returns the positional arguments, or an exit code when parsing ended
// the command.
func parse(fs *flag.FlagSet, args []string, e *env) ([]string, int, bool) {
	fs.SetOutput(e.stderr)
	var positional []string
	for {
		if err := fs.Parse(args); err != nil {
			if errors.Is(err, flag.ErrHelp) {
				return nil, exitOK, false
			}
			return nil, exitUsage, false
		}
		rest := fs.Args()
		consumed := len(args) - len(rest)
		if len(rest) == 0 {
			return positional, 0, true
		}
		if consumed > 0 && args[consumed-1] == "--" {
			return append(positional, rest...), 0, true
		}
		positional = append(positional, rest[0])
		args = rest[1:]
	}
}

// inputs returns the command's arguments, or else the lines of stdin, and
// how to name the n-th one (1-based) in a message without quoting it.
func inputs(args []string, e *env) ([]string, func(n int) string, error) {
	if len(args) > 0 {
		return args, func(n int) string { return fmt.Sprintf("argument %d", n) }, nil
	}
	var lines []string
	sc := bufio.NewScanner(e.stdin)
	sc.Buffer(make([]byte, 0, 64*1024), 1<<20)
	for sc.Scan() {
		lines = append(lines, strings.TrimSuffix(sc.Text(), "\r"))
	}
	if err := sc.Err(); err != nil {
		return nil, nil, fmt.Errorf("reading stdin: line %d: %w", len(lines)+1, err)
	}
	return lines, func(n int) string { return fmt.Sprintf("line %d", n) }, nil
}

// callFailed reports a failed call and returns its exit code.
func callFailed(e *env, what string, err error) int {
	e.errorf("%s: %v", what, err)
	return exitRPC
}

// itemJSON is the JSON form of a failed item.
type itemJSON struct {
	Code    string `json:"code"`
	Message string `json:"message"`
}

func itemErrorJSON(err error) *itemJSON {
	var ie *client.ItemError
	if errors.As(err, &ie) {
		return &itemJSON{Code: ie.Code.String(), Message: ie.Message}
	}
	return &itemJSON{Code: "Unknown", Message: err.Error()}
}

// itemMessage is how a failed item is reported on stderr: the server's code
// and message, which never hold a value.
func itemMessage(err error) string {
	var ie *client.ItemError
	if errors.As(err, &ie) {
		return fmt.Sprintf("%s: %s", ie.Code, ie.Message)
	}
	return err.Error()
}
