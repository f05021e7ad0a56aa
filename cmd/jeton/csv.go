package main

import (
	"bufio"
	"context"
	"crypto/rand"
	"encoding/hex"
	"encoding/json"
	"errors"
	"flag"
	"fmt"
	"io"
	"os"
	"os/signal"
	"slices"
	"strings"
	"sync"
	"syscall"
	"time"
	"unicode/utf8"

	"google.golang.org/grpc/codes"

	"github.com/jeton-dev/jeton/client"
)

const csvUsage = `Usage: jeton csv tokenize   --map COL=CLASS,... [--subject-column COL] [flags] [INPUT]
       jeton csv detokenize --map COL[=CLASS],... --purpose PURPOSE [flags] [INPUT]

Bulk-tokenizes the personal columns of a CSV file (tokenize, as a sponsor
on the public listener), or reveals them back (detokenize, as a TTP system
on the trusted listener). Every other byte is kept as it was: the other
columns, quoting, line endings (CRLF or LF), a byte order mark, blank
lines. So tokenize then detokenize gives back the input, byte for byte.

INPUT is a file, or stdin when absent or "-". The output goes to --output,
or stdout. The first record is the header; --map names its columns:
  --map email=email,tel=phone,nom=name
tokenizes column "email" as class email, "tel" as phone, "nom" as name.
For detokenize the classes are optional; when given, a token of another
class is not revealed into that column. Empty cells stay empty.

Rows go out in input order as soon as their batch is done, in batches of
--batch items sent --concurrency at a time. When the server refuses a call
for a rate limit and says when to come back (google.rpc.RetryInfo), the
command waits that long, slows down and sends the call again: nothing is
lost. A refusal that names no delay (a budget spent for its window), a
failed call or Ctrl-C stops the run after the calls in flight are written;
run the same command again with --resume to continue it: the rows already
written are kept and the rest is appended. A resumed tokenize gets the same
tokens for the rows that were in flight (the same idempotency keys, kept
in OUTPUT.jeton-run until the run completes).

A malformed row (a stray quote, a wrong number of fields) is skipped and
reported by its line number; a cell that fails (e.g. not a valid phone
number) is left empty and reported by line and column. Values never appear
in messages. On a terminal a progress bar shows rows, rate and ETA;
otherwise a progress line goes to stderr every --progress-interval.

Exit status: 0 all rows done, 1 some rows or cells failed, 2 usage error,
3 stopped early (resume with --resume).

Flags:
`

// csvCommand holds one run's settings.
type csvCommand struct {
	reveal      bool
	mapping     []columnMap
	subjectCol  string
	purpose     string
	caseRef     string
	mask        bool
	tenant      string
	batch       int
	concurrency int
	rate        float64
	output      string
	resume      bool
	force       bool
	delimiter   rune
	interval    time.Duration
}

// columnMap is one --map entry.
type columnMap struct {
	column, class string
	index         int
}

// runState is what OUTPUT.jeton-run remembers of a run, so --resume
// continues it with the same settings and idempotency keys. It holds no
// value and no token.
type runState struct {
	Version     int    `json:"version"`
	Command     string `json:"command"`
	Map         string `json:"map"`
	Subject     string `json:"subject_column,omitempty"`
	Batch       int    `json:"batch"`
	Delimiter   string `json:"delimiter"`
	Idempotency string `json:"idempotency_key,omitempty"`
}

func runCSV(args []string, e *env) int {
	if len(args) == 0 {
		fmt.Fprint(e.stderr, csvUsage)
		return exitUsage
	}
	var cmd csvCommand
	switch args[0] {
	case "help", "-h", "-help", "--help":
		fmt.Fprint(e.stdout, csvUsage)
		printClasses(e.stdout)
		return exitOK
	case "tokenize":
	case "detokenize":
		cmd.reveal = true
	default:
		e.errorf("csv: unknown subcommand %q", args[0])
		fmt.Fprint(e.stderr, csvUsage)
		return exitUsage
	}
	name := "csv " + args[0]
	fs := flag.NewFlagSet(name, flag.ContinueOnError)
	fs.Usage = func() {
		fmt.Fprint(fs.Output(), csvUsage)
		fs.PrintDefaults()
		printClasses(fs.Output())
	}
	var c conn
	c.register(fs, e.getenv)
	mapFlag := fs.String("map", "", "columns to process: COL=CLASS,... (required)")
	fs.StringVar(&cmd.subjectCol, "subject-column", "", "tokenize: column naming each row's data subject, for erasure by subject")
	fs.StringVar(&cmd.purpose, "purpose", "", "detokenize: why the values are revealed (required; audited)")
	fs.StringVar(&cmd.caseRef, "case-ref", "", "detokenize: case the reveal belongs to")
	fs.BoolVar(&cmd.mask, "mask", false, "detokenize: reveal masked forms only")
	fs.StringVar(&cmd.tenant, "tenant", "", "detokenize: read this one of your tenants only; needed for format-preserving tokens held by several of them")
	fs.IntVar(&cmd.batch, "batch", 500, "items (cells) per call, at most the server's and your identity's batch limit")
	fs.IntVar(&cmd.concurrency, "concurrency", 4, "calls in flight")
	fs.Float64Var(&cmd.rate, "rate", 0, "at most this many items per second (0: as fast as the server allows); set it below your identity's rate")
	fs.StringVar(&cmd.output, "output", "", "output `file` (default stdout)")
	fs.StringVar(&cmd.output, "o", "", "short for --output")
	fs.BoolVar(&cmd.resume, "resume", false, "continue an interrupted run: keep the rows already in --output and append the rest")
	fs.BoolVar(&cmd.force, "force", false, "overwrite an existing --output")
	delim := fs.String("delimiter", ",", `field delimiter, one character (e.g. ";" or "\t")`)
	fs.DurationVar(&cmd.interval, "progress-interval", 5*time.Second, "when stderr is not a terminal: how often to print a progress line (0: never)")
	rest, code, ok := parse(fs, args[1:], e)
	if !ok {
		return code
	}
	if err := cmd.check(*mapFlag, *delim, rest); err != nil {
		e.errorf("%s: %v", name, err)
		return exitUsage
	}
	input := "-"
	if len(rest) == 1 {
		input = rest[0]
	}
	return cmd.run(name, input, *mapFlag, c, e)
}

// printClasses lists the default classes, for the help texts.
func printClasses(w io.Writer) {
	fmt.Fprintf(w, "\nClasses (jetond's defaults; a deployment may configure others):\n  %s\n",
		strings.Join([]string{client.ClassEmail, client.ClassPhone, client.ClassName, client.ClassPassport, client.ClassBirthdate, client.ClassAddress, client.ClassText}, ", "))
}

// check validates the flags that need no file.
func (cmd *csvCommand) check(mapFlag, delim string, rest []string) error {
	if mapFlag == "" {
		return errors.New("--map is required, e.g. --map email=email,tel=phone")
	}
	seen := map[string]bool{}
	for entry := range strings.SplitSeq(mapFlag, ",") {
		col, class, hasClass := strings.Cut(strings.TrimSpace(entry), "=")
		switch {
		case col == "":
			return fmt.Errorf("--map: empty column name in %q", entry)
		case !cmd.reveal && (!hasClass || class == ""):
			return fmt.Errorf("--map: column %q has no class (COL=CLASS)", col)
		case seen[col]:
			return fmt.Errorf("--map: column %q is given twice", col)
		}
		seen[col] = true
		cmd.mapping = append(cmd.mapping, columnMap{column: col, class: class})
	}
	r, size := utf8.DecodeRuneInString(strings.ReplaceAll(delim, `\t`, "\t"))
	if size == 0 || size != len(strings.ReplaceAll(delim, `\t`, "\t")) || r == '"' || r == '\r' || r == '\n' || r == utf8.RuneError {
		return fmt.Errorf("--delimiter must be one character other than a quote or a newline")
	}
	cmd.delimiter = r
	switch {
	case cmd.reveal && cmd.purpose == "":
		return errors.New("--purpose is required")
	case !cmd.reveal && (cmd.purpose != "" || cmd.caseRef != "" || cmd.mask || cmd.tenant != ""):
		return errors.New("--purpose, --case-ref, --mask and --tenant are for csv detokenize")
	case cmd.reveal && cmd.subjectCol != "":
		return errors.New("--subject-column is for csv tokenize")
	case cmd.batch < 1 || cmd.batch > 100000:
		return errors.New("--batch must be between 1 and 100000")
	case cmd.concurrency < 1 || cmd.concurrency > 64:
		return errors.New("--concurrency must be between 1 and 64")
	case cmd.rate < 0:
		return errors.New("--rate must not be negative")
	case cmd.resume && cmd.output == "":
		return errors.New("--resume needs --output: it continues that file")
	case cmd.resume && cmd.force:
		return errors.New("--resume and --force contradict each other")
	case len(rest) > 1:
		return errors.New("give at most one INPUT file")
	case cmd.interval < 0:
		return errors.New("--progress-interval must not be negative")
	}
	return nil
}

func (cmd *csvCommand) state(mapFlag string) runState {
	verb := "tokenize"
	if cmd.reveal {
		verb = "detokenize"
	}
	return runState{Version: 1, Command: verb, Map: mapFlag, Subject: cmd.subjectCol, Batch: cmd.batch, Delimiter: string(cmd.delimiter)}
}

func (cmd *csvCommand) run(name, input, mapFlag string, c conn, e *env) int {
	// Input.
	var src io.Reader = e.stdin
	var total int64 = -1
	if input != "-" {
		f, err := os.Open(input)
		if err != nil {
			e.errorf("%s: %v", name, err)
			return exitUsage
		}
		defer f.Close()
		src = f
		if n, err := countRecords(input, cmd.delimiter); err == nil {
			total = n
		}
	}
	rd, err := newCSVReader(bufio.NewReaderSize(src, 1<<16), cmd.delimiter)
	if err != nil {
		e.errorf("%s: reading the input: %v", name, err)
		return exitUsage
	}
	header, err := rd.read()
	if err != nil {
		e.errorf("%s: reading the header: %v", name, err)
		return exitUsage
	}
	if len(header.spans) == 0 {
		e.errorf("%s: the input has no header", name)
		return exitUsage
	}
	if err := cmd.resolveColumns(header); err != nil {
		e.errorf("%s: %v", name, err)
		return exitUsage
	}

	// Output: new, or resumed after the rows it already holds.
	st := cmd.state(mapFlag)
	out, done, err := cmd.openOutput(st, rd.bom, header, e)
	if err != nil {
		e.errorf("%s: %v", name, err)
		return exitUsage
	}
	w := bufio.NewWriterSize(out.w, 1<<16)

	// The client.
	var sponsor *client.Sponsor
	var revealer *client.Revealer
	opts, err := c.options()
	if err == nil {
		opts = append(opts, client.WithBatchSize(cmd.batch))
		if cmd.reveal {
			revealer, err = client.NewRevealer(c.addr, append(opts, client.WithTenant(cmd.tenant))...)
		} else {
			sponsor, err = client.NewSponsor(c.addr, opts...)
		}
	}
	if err != nil {
		out.close()
		e.errorf("%s: %v", name, err)
		return exitUsage
	}
	if sponsor != nil {
		defer sponsor.Close()
	} else {
		defer revealer.Close()
	}

	ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt, syscall.SIGTERM)
	defer stop()
	p := &pipeline{
		cmd: cmd, name: name, rd: rd, w: w, flushTo: out, e: e, sponsor: sponsor, revealer: revealer,
		key: out.state.Idempotency, skip: done,
		pace:     newPacer(cmd.concurrency, cmd.rate, cmd.batch),
		progress: newProgress(e, name, total, done, cmd.interval),
	}
	status := p.run(ctx)
	p.progress.finish(p.written)
	if err := w.Flush(); err != nil && status != exitRPC {
		e.errorf("%s: writing the output: %v", name, err)
		status = exitRPC
	}
	complete := status != exitRPC
	if err := out.finish(complete); err != nil {
		e.errorf("%s: %v", name, err)
		status = exitRPC
	}
	if !complete {
		if cmd.output != "" {
			e.errorf("%s: stopped after %d rows, all written to %s; run the same command with --resume to continue", name, done+p.written, cmd.output)
		} else {
			e.errorf("%s: stopped after %d rows, all written; write to a file with --output to be able to resume", name, done+p.written)
		}
	}
	return status
}

// resolveColumns finds the mapped columns in the header.
func (cmd *csvCommand) resolveColumns(header *csvRecord) error {
	index := map[string]int{}
	for i := range header.spans {
		name := header.field(i)
		if _, dup := index[name]; dup {
			index[name] = -1
			continue
		}
		index[name] = i
	}
	find := func(col string) (int, error) {
		i, ok := index[col]
		switch {
		case !ok:
			return 0, fmt.Errorf("column %q is not in the header", col)
		case i < 0:
			return 0, fmt.Errorf("column %q appears twice in the header", col)
		}
		return i, nil
	}
	for k := range cmd.mapping {
		i, err := find(cmd.mapping[k].column)
		if err != nil {
			return fmt.Errorf("--map: %w", err)
		}
		cmd.mapping[k].index = i
	}
	if cmd.subjectCol != "" {
		i, err := find(cmd.subjectCol)
		if err != nil {
			return fmt.Errorf("--subject-column: %w", err)
		}
		cmd.mapping = append(cmd.mapping, columnMap{column: cmd.subjectCol, index: i, class: subjectMarker})
	}
	return nil
}

// subjectMarker marks the subject column's entry in mapping.
const subjectMarker = "\x00subject"

// output is where rows go, and how a resumed run is recorded.
type output struct {
	w         io.Writer
	file      *os.File
	statePath string
	state     runState
}

func (o *output) Write(p []byte) (int, error) { return o.w.Write(p) }

func (o *output) close() {
	if o.file != nil {
		o.file.Close()
	}
}

// finish closes the output; a complete run forgets its state file.
func (o *output) finish(complete bool) error {
	if o.file == nil {
		return nil
	}
	err := o.file.Sync()
	if cerr := o.file.Close(); err == nil {
		err = cerr
	}
	if err != nil {
		return fmt.Errorf("writing the output: %w", err)
	}
	if complete {
		if err := os.Remove(o.statePath); err != nil && !errors.Is(err, os.ErrNotExist) {
			return err
		}
	}
	return nil
}

// openOutput opens stdout, a new output file (with its state file), or
// an interrupted one to resume: then it returns how many rows it holds,
// having cut off a last row that was not completely written.
func (cmd *csvCommand) openOutput(want runState, bom bool, header *csvRecord, e *env) (*output, int64, error) {
	if cmd.output == "" {
		if !cmd.reveal {
			want.Idempotency = newRunKey()
		}
		if bom {
			if _, err := e.stdout.Write(utf8BOM); err != nil {
				return nil, 0, err
			}
		}
		if _, err := e.stdout.Write(header.raw); err != nil {
			return nil, 0, err
		}
		return &output{w: e.stdout, state: want}, 0, nil
	}
	statePath := cmd.output + ".jeton-run"
	if !cmd.resume {
		flags := os.O_WRONLY | os.O_CREATE | os.O_EXCL
		if cmd.force {
			flags = os.O_WRONLY | os.O_CREATE | os.O_TRUNC
		}
		f, err := os.OpenFile(cmd.output, flags, 0o600)
		if errors.Is(err, os.ErrExist) {
			return nil, 0, fmt.Errorf("%s exists: use --resume to continue it, or --force to overwrite it", cmd.output)
		}
		if err != nil {
			return nil, 0, err
		}
		if !cmd.reveal {
			want.Idempotency = newRunKey()
		}
		if err := writeState(statePath, want); err != nil {
			f.Close()
			return nil, 0, err
		}
		head := header.raw
		if bom {
			head = append(slices.Clone(utf8BOM), head...)
		}
		if _, err := f.Write(head); err != nil {
			f.Close()
			return nil, 0, err
		}
		return &output{w: f, file: f, statePath: statePath, state: want}, 0, nil
	}

	// Resume: the state file must agree with the flags.
	if b, err := os.ReadFile(statePath); err == nil {
		var got runState
		if err := json.Unmarshal(b, &got); err != nil {
			return nil, 0, fmt.Errorf("%s is not a run state file: %v", statePath, err)
		}
		key := got.Idempotency
		got.Idempotency = ""
		if got != want {
			return nil, 0, fmt.Errorf("--resume: %s was started with other settings (%s --map %s --batch %d); resume it with the same ones",
				cmd.output, got.Command, got.Map, got.Batch)
		}
		want.Idempotency = key
	} else if errors.Is(err, os.ErrNotExist) {
		e.errorf("warning: no %s: the rows in flight when the run stopped get new tokens", statePath)
		if !cmd.reveal {
			want.Idempotency = newRunKey()
		}
		if err := writeState(statePath, want); err != nil {
			return nil, 0, err
		}
	} else {
		return nil, 0, err
	}
	f, err := os.OpenFile(cmd.output, os.O_RDWR, 0)
	if err != nil {
		return nil, 0, err
	}
	rows, end, err := completeRows(f, cmd.delimiter, bom, header)
	if err != nil {
		f.Close()
		return nil, 0, fmt.Errorf("--resume: %s: %w", cmd.output, err)
	}
	if err := f.Truncate(end); err != nil {
		f.Close()
		return nil, 0, err
	}
	if _, err := f.Seek(end, io.SeekStart); err != nil {
		f.Close()
		return nil, 0, err
	}
	return &output{w: f, file: f, statePath: statePath, state: want}, rows, nil
}

// completeRows reads an output being resumed and returns how many data
// rows it holds and where the last complete one ends. A last row without
// its line terminator may have been cut by the interruption: it is not
// counted, and will be written again.
func completeRows(f *os.File, comma rune, bom bool, header *csvRecord) (int64, int64, error) {
	rd, err := newCSVReader(bufio.NewReaderSize(f, 1<<16), comma)
	if err != nil {
		return 0, 0, err
	}
	if rd.bom != bom {
		return 0, 0, errors.New("its byte order mark differs from the input's: not an output of this input")
	}
	h, err := rd.read()
	if err != nil || string(h.raw) != string(header.raw) {
		return 0, 0, errors.New("its header differs from the input's: not an output of this input")
	}
	end := int64(len(h.raw))
	if bom {
		end += int64(len(utf8BOM))
	}
	var rows int64
	for {
		rec, err := rd.read()
		if errors.Is(err, io.EOF) {
			break
		}
		if err != nil {
			return 0, 0, fmt.Errorf("not an output of this command: %v", err)
		}
		if !rec.terminated() || len(rec.spans) == 0 {
			break
		}
		rows++
		end += int64(len(rec.raw))
	}
	return rows, end, nil
}

func writeState(path string, st runState) error {
	b, err := json.Marshal(st)
	if err != nil {
		return err
	}
	return os.WriteFile(path, append(b, '\n'), 0o600)
}

// newRunKey returns 128 random bits for a run's idempotency keys.
func newRunKey() string {
	b := make([]byte, 16)
	if _, err := rand.Read(b); err != nil {
		panic(err) // crypto/rand does not fail on supported platforms
	}
	return hex.EncodeToString(b)
}

// countRecords counts the data rows of a file for the progress display:
// a quick pass that forgives malformed records.
func countRecords(path string, comma rune) (int64, error) {
	f, err := os.Open(path)
	if err != nil {
		return 0, err
	}
	defer f.Close()
	rd, err := newCSVReader(bufio.NewReaderSize(f, 1<<16), comma)
	if err != nil {
		return 0, err
	}
	var n int64 = -1 // the header
	for {
		rec, err := rd.read()
		var re *rowError
		switch {
		case errors.Is(err, io.EOF):
			return max(n, 0), nil
		case errors.As(err, &re):
		case err != nil:
			return 0, err
		case len(rec.spans) > 0:
			n++
		}
	}
}

// pipeline reads rows, sends them in batches, and writes them in order.
type pipeline struct {
	cmd      *csvCommand
	name     string
	rd       *csvReader
	w        *bufio.Writer
	flushTo  *output
	e        *env
	sponsor  *client.Sponsor
	revealer *client.Revealer
	key      string
	// skip is the number of rows already in a resumed output.
	skip     int64
	pace     *pacer
	progress *progress

	written int64 // rows written by this run
	failed  bool  // some row or cell failed
	reports int
	sayMu   sync.Mutex
}

// say prints a message on stderr, clearing the progress bar first; the
// workers and the writer share it.
func (p *pipeline) say(format string, args ...any) {
	p.sayMu.Lock()
	defer p.sayMu.Unlock()
	p.progress.clear()
	p.e.errorf(p.name+": "+format, args...)
}

// csvRow is one data row.
type csvRow struct {
	rec   *csvRecord
	items []int // indexes in the batch's items of this row's cells
	cols  []int // the mapped column of each item
	repl  map[int]string
}

// csvBatch is the rows of one call.
type csvBatch struct {
	seq   int
	rows  []*csvRow
	items []client.Item // Value is the token for detokenize
	// skipRows are rows a resumed output already holds: sent again (same
	// idempotency key) but not written again.
	skipRows int
	// trailer is bytes after the last row (blank lines), written last.
	trailer []byte
	err     error
}

// maxReports bounds the per-row messages; the rest are counted.
const maxReports = 1000

func (p *pipeline) report(format string, args ...any) {
	p.failed = true
	p.reports++
	if p.reports <= maxReports {
		p.say(format, args...)
	}
}

func (p *pipeline) run(ctx context.Context) int {
	window := make(chan struct{}, 2*p.cmd.concurrency+1) // batches read but not written
	work := make(chan *csvBatch)
	done := make(chan *csvBatch)
	malformed := make(chan *rowError, 64)
	stopRead := make(chan struct{})
	var stopOnce sync.Once
	stop := func() { stopOnce.Do(func() { close(stopRead) }) }
	readErr := make(chan error, 1)

	go func() {
		defer close(work)
		defer close(malformed)
		readErr <- p.read(ctx, work, window, malformed, stopRead)
	}()
	var wg sync.WaitGroup
	for range p.cmd.concurrency {
		wg.Go(func() {
			for b := range work {
				p.call(ctx, b)
				done <- b
			}
		})
	}
	go func() { wg.Wait(); close(done) }()

	status := exitOK
	pending := map[int]*csvBatch{}
	next := 0
	stopped := false
	for done != nil || malformed != nil {
		select {
		case re, ok := <-malformed:
			if !ok {
				malformed = nil
				continue
			}
			p.report("%v (row skipped)", re)
		case b, ok := <-done:
			if !ok {
				done = nil
				continue
			}
			pending[b.seq] = b
			for !stopped {
				nb, ok := pending[next]
				if !ok {
					break
				}
				delete(pending, next)
				next++
				if nb.err != nil {
					stopped = true
					status = exitRPC
					p.say("%v", nb.err)
					stop()
					break
				}
				if err := p.write(nb); err != nil {
					stopped = true
					status = exitRPC
					p.say("writing the output: %v", err)
					stop()
					break
				}
				<-window
			}
			if stopped {
				// Free the reader if it waits for room; what is read
				// after a stop is not sent.
				for range len(window) {
					select {
					case <-window:
					default:
					}
				}
			}
		case <-ctx.Done():
			if !stopped {
				stopped = true
				status = exitRPC
				p.say("interrupted; finishing the calls in flight")
				stop()
			}
			ctx = context.Background() // keep collecting what is in flight
		}
	}
	if err := <-readErr; err != nil && status != exitRPC {
		p.e.errorf("%s: reading the input: %v", p.name, err)
		status = exitRPC
	}
	if status == exitOK && p.failed {
		status = exitItem
	}
	if p.reports > maxReports {
		p.e.errorf("%s: %d more failed rows or cells not shown", p.name, p.reports-maxReports)
	}
	return status
}

// read forms batches and sends them to work, holding a window slot for
// each; it stops at the end of the input or when stopRead closes.
func (p *pipeline) read(ctx context.Context, work chan<- *csvBatch, window chan struct{}, malformed chan<- *rowError, stopRead <-chan struct{}) error {
	seq := 0
	var rowsSeen int64
	b := &csvBatch{}
	send := func() bool {
		if len(b.rows) == 0 && b.trailer == nil {
			return true
		}
		b.seq = seq
		seq++
		select {
		case window <- struct{}{}:
		case <-stopRead:
			return false
		}
		// A batch entirely written before a resume is not sent again.
		if b.skipRows == len(b.rows) && b.trailer == nil {
			b.rows, b.items = nil, nil
		}
		select {
		case work <- b:
		case <-stopRead:
			return false
		}
		b = &csvBatch{}
		return true
	}
	for {
		select {
		case <-stopRead:
			return nil
		default:
		}
		rec, err := p.rd.read()
		var re *rowError
		switch {
		case errors.Is(err, io.EOF):
			send()
			return nil
		case errors.As(err, &re):
			if rowsSeen >= p.skip {
				malformed <- re
			}
			continue
		case err != nil:
			send()
			return err
		}
		if len(rec.spans) == 0 {
			b.trailer = rec.raw
			send()
			return nil
		}
		row := p.row(rec, len(b.items))
		// A batch holds whole rows: close it before a row that would not
		// fit, and after --batch rows whatever their items.
		if len(b.rows) > 0 && (len(b.items)+len(row.items) > p.cmd.batch || len(b.rows) >= p.cmd.batch) {
			if !send() {
				return nil
			}
			row = p.row(rec, 0)
		}
		b.items = append(b.items, p.items(rec, row)...)
		b.rows = append(b.rows, row)
		if rowsSeen < p.skip {
			b.skipRows++
		}
		rowsSeen++
	}
}

// row plans a record's cells; first is the index of its first item in its
// batch.
func (p *pipeline) row(rec *csvRecord, first int) *csvRow {
	row := &csvRow{rec: rec, repl: map[int]string{}}
	for _, m := range p.cmd.mapping {
		if m.class == subjectMarker || rec.field(m.index) == "" {
			continue
		}
		row.items = append(row.items, first+len(row.items))
		row.cols = append(row.cols, m.index)
	}
	return row
}

// items returns the row's items.
func (p *pipeline) items(rec *csvRecord, row *csvRow) []client.Item {
	subject := ""
	for _, m := range p.cmd.mapping {
		if m.class == subjectMarker {
			subject = rec.field(m.index)
		}
	}
	out := make([]client.Item, 0, len(row.cols))
	for _, col := range row.cols {
		out = append(out, client.Item{Class: p.classOf(col), Value: rec.field(col), Subject: subject})
	}
	return out
}

func (p *pipeline) classOf(col int) string {
	for _, m := range p.cmd.mapping {
		if m.index == col && m.class != subjectMarker {
			return m.class
		}
	}
	return ""
}

// maxRefusals bounds the refusals of one batch in a row.
const maxRefusals = 30

// call sends a batch, waiting and sending it again when the server says
// when to come back; it fills the rows' replacements or b.err.
func (p *pipeline) call(ctx context.Context, b *csvBatch) {
	if len(b.items) == 0 {
		return
	}
	for attempt := 1; ; attempt++ {
		if err := p.pace.acquire(ctx, len(b.items)); err != nil {
			b.err = fmt.Errorf("interrupted before the batch from line %d was sent", b.rows[0].rec.line)
			return
		}
		err := p.send(ctx, b)
		d, paced := client.RetryAfter(err)
		switch {
		case err == nil:
			p.pace.release(true)
			return
		case codeOf(err) == codes.ResourceExhausted && paced && attempt < maxRefusals:
			p.pace.refused(d)
			p.say("the server asks to slow down; waiting %v, then sending the batch from line %d again", d.Round(time.Millisecond), b.rows[0].rec.line)
			continue
		default:
			p.pace.release(false)
			b.err = fmt.Errorf("the batch from line %d failed: %w", b.rows[0].rec.line, err)
			if codeOf(err) == codes.ResourceExhausted {
				b.err = fmt.Errorf("%w (no retry delay given: a budget for a whole window is spent, or the refusals went on)", b.err)
			}
			return
		}
	}
}

func codeOf(err error) codes.Code {
	var ce *client.Error
	if errors.As(err, &ce) {
		return ce.Code
	}
	return codes.Unknown
}

// send makes the call and records each row's replacements.
func (p *pipeline) send(ctx context.Context, b *csvBatch) error {
	if p.sponsor != nil {
		res, err := p.sponsor.TokenizeKeyed(ctx, fmt.Sprintf("%s/%d", p.key, b.seq), b.items)
		if err != nil {
			return err
		}
		p.fill(b, func(i int) (string, error) { return res[i].Token, res[i].Err })
		return nil
	}
	tokens := make([]string, len(b.items))
	for i, it := range b.items {
		tokens[i] = it.Value
	}
	reveal := p.revealer.Detokenize
	if p.cmd.mask {
		reveal = p.revealer.Mask
	}
	res, err := reveal(ctx, tokens, p.cmd.purpose, p.cmd.caseRef)
	if err != nil {
		return err
	}
	p.fill(b, func(i int) (string, error) {
		r := res[i]
		if r.Err == nil && b.items[i].Class != "" && r.Class != b.items[i].Class {
			return "", fmt.Errorf("the token is of class %s, the column maps %s", r.Class, b.items[i].Class)
		}
		return r.Value, r.Err
	})
	return nil
}

// fill sets each row's replacements from the per-item results; a failed
// cell is emptied and marked with the item's error.
func (p *pipeline) fill(b *csvBatch, result func(i int) (string, error)) {
	for _, row := range b.rows {
		for k, i := range row.items {
			v, err := result(i)
			if err != nil {
				row.repl[row.cols[k]] = ""
				row.repl[-1-row.cols[k]] = itemMessage(err)
				continue
			}
			row.repl[row.cols[k]] = v
		}
	}
}

// write writes a done batch's rows, reports its failed cells, and flushes.
func (p *pipeline) write(b *csvBatch) error {
	for i, row := range b.rows {
		if i < b.skipRows {
			continue
		}
		repl := map[int]string{}
		for col, v := range row.repl {
			if col < 0 {
				p.report("line %d, column %s: %s", row.rec.line, p.columnName(-1-col), v)
				continue
			}
			repl[col] = v
		}
		if _, err := p.w.Write(row.rec.rewrite(p.cmd.delimiter, repl)); err != nil {
			return err
		}
		p.written++
	}
	if b.trailer != nil {
		if _, err := p.w.Write(b.trailer); err != nil {
			return err
		}
	}
	if err := p.w.Flush(); err != nil {
		return err
	}
	p.progress.set(p.skip + p.written)
	return nil
}

func (p *pipeline) columnName(col int) string {
	for _, m := range p.cmd.mapping {
		if m.index == col && m.class != subjectMarker {
			return m.column
		}
	}
	return fmt.Sprint(col + 1)
}
