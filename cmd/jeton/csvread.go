package main

import (
	"bytes"
	"encoding/csv"
	"errors"
	"fmt"
	"io"
	"strings"
	"unicode/utf8"
)

// The CSV commands parse with encoding/csv and add what it lacks for a
// byte-identical round trip (tokenize, then detokenize, gives back the
// input file, byte for byte):
//
//   - a UTF-8 byte order mark is kept, not read as part of the first
//     column's name;
//   - a record's bytes are kept as they were (line endings, quoting of the
//     columns that are not rewritten, blank lines), using the reader's
//     InputOffset and FieldPos; only the rewritten fields change;
//   - a rewritten field's value is taken from those bytes, so that a
//     carriage return inside a quoted field is kept (encoding/csv turns
//     "\r\n" into "\n" there), and a field that was quoted stays quoted;
//   - a record larger than maxRecordBytes is an error, not unbounded
//     memory (an unterminated quote would otherwise read the whole file).
//
// encoding/csv still decides what a record is; csvReader only maps its
// answers back onto the input's bytes.

// maxRecordBytes bounds one record, quoted newlines included.
const maxRecordBytes = 16 << 20

var utf8BOM = []byte("\xef\xbb\xbf")

// csvRecord is one record as read.
type csvRecord struct {
	// raw is the record's bytes in the input, from the end of the previous
	// record: blank lines before it and its line terminator included.
	raw []byte
	// spans are the byte ranges of each field in raw, quotes included.
	spans [][2]int
	// line is the input line the record starts on (1-based, the byte
	// order mark not counted).
	line int
}

// field returns field i's value exactly as in the input: quotes removed,
// doubled quotes undone, every other byte kept.
func (r *csvRecord) field(i int) string {
	s := r.raw[r.spans[i][0]:r.spans[i][1]]
	if len(s) >= 2 && s[0] == '"' {
		return strings.ReplaceAll(string(s[1:len(s)-1]), `""`, `"`)
	}
	return string(s)
}

// quoted reports whether field i was quoted in the input.
func (r *csvRecord) quoted(i int) bool {
	s := r.raw[r.spans[i][0]:r.spans[i][1]]
	return len(s) > 0 && s[0] == '"'
}

// rewrite returns the record's bytes with the fields in repl replaced.
// A replaced field is quoted when the original was, or when its new value
// needs it; a field replaced by its own value keeps its bytes.
func (r *csvRecord) rewrite(comma rune, repl map[int]string) []byte {
	out := make([]byte, 0, len(r.raw)+64)
	last := 0
	for i, sp := range r.spans {
		v, ok := repl[i]
		if !ok || v == r.field(i) {
			continue
		}
		out = append(out, r.raw[last:sp[0]]...)
		if r.quoted(i) || needsQuotes(v, comma, i == len(r.spans)-1) {
			out = append(out, '"')
			out = append(out, strings.ReplaceAll(v, `"`, `""`)...)
			out = append(out, '"')
		} else {
			out = append(out, v...)
		}
		last = sp[1]
	}
	return append(out, r.raw[last:]...)
}

// needsQuotes reports whether v must be quoted to read back as itself.
// It quotes less than encoding/csv's Writer, so that an unquoted input
// field comes back unquoted: a leading space is kept as is (nothing here
// trims), and so is a carriage return inside a field; only one at the end
// of the last field would merge with the line terminator.
func needsQuotes(v string, comma rune, last bool) bool {
	return strings.ContainsRune(v, comma) || strings.ContainsAny(v, "\"\n") || (last && strings.HasSuffix(v, "\r"))
}

// terminated reports whether the record ends with a line terminator.
func (r *csvRecord) terminated() bool {
	return bytes.HasSuffix(r.raw, []byte("\n"))
}

// rowError is a malformed record, named by its line, never its content.
type rowError struct {
	line   int
	reason string
}

func (e *rowError) Error() string { return fmt.Sprintf("line %d: %s", e.line, e.reason) }

// csvReader reads records and their bytes.
type csvReader struct {
	r     *csv.Reader
	tee   *rawTee
	comma rune
	bom   bool
	// linesBefore counts the line feeds in the input before the next
	// record's bytes.
	linesBefore int
	prevOff     int64
	fields      int // expected per record; 0 until the header is read
}

// newCSVReader reads src, with comma as the delimiter. The byte order
// mark, if any, is consumed and reported by bom.
func newCSVReader(src io.Reader, comma rune) (*csvReader, error) {
	tee := &rawTee{src: src}
	head := make([]byte, len(utf8BOM))
	n, err := io.ReadFull(src, head)
	if err != nil && !errors.Is(err, io.ErrUnexpectedEOF) && !errors.Is(err, io.EOF) {
		return nil, err
	}
	head = head[:n]
	c := &csvReader{tee: tee, comma: comma}
	if bytes.Equal(head, utf8BOM) {
		c.bom = true
	} else {
		tee.pending = head
	}
	c.r = csv.NewReader(tee)
	c.r.Comma = comma
	c.r.FieldsPerRecord = -1
	c.r.ReuseRecord = true
	return c, nil
}

// read returns the next record; a *rowError for a malformed one, after
// which reading goes on; io.EOF at the end; any other error is fatal.
func (c *csvReader) read() (*csvRecord, error) {
	fields, err := c.r.Read()
	off := c.r.InputOffset()
	raw := c.tee.take(c.prevOff, off)
	c.prevOff = off
	startLine := c.linesBefore + 1
	c.linesBefore += bytes.Count(raw, []byte("\n"))
	if c.tee.tooBig {
		return nil, fmt.Errorf("line %d: a record is larger than %d MiB (an unterminated quote?)", startLine, maxRecordBytes>>20)
	}
	var pe *csv.ParseError
	switch {
	case errors.Is(err, io.EOF):
		if len(raw) > 0 {
			// Blank lines at the end: kept as a record with no field.
			return &csvRecord{raw: raw, line: startLine}, nil
		}
		return nil, io.EOF
	case errors.As(err, &pe):
		return nil, &rowError{line: pe.StartLine, reason: "malformed CSV: " + parseReason(pe.Err)}
	case err != nil:
		return nil, err
	}
	rec := &csvRecord{raw: raw}
	n := len(fields)
	lineStarts := []int{0}
	for i, b := range raw {
		if b == '\n' {
			lineStarts = append(lineStarts, i+1)
		}
	}
	rec.spans = make([][2]int, n)
	for i := range n {
		line, col := c.r.FieldPos(i)
		rec.spans[i][0] = lineStarts[line-startLine] + col - 1
	}
	rec.line, _ = c.r.FieldPos(0)
	end := len(raw)
	switch {
	case bytes.HasSuffix(raw, []byte("\r\n")):
		end -= 2
	case bytes.HasSuffix(raw, []byte("\n")), bytes.HasSuffix(raw, []byte("\r")):
		// A lone "\r" ends the input: encoding/csv drops it.
		end--
	}
	commaLen := utf8.RuneLen(c.comma)
	for i := range n {
		if i+1 < n {
			rec.spans[i][1] = rec.spans[i+1][0] - commaLen
		} else {
			rec.spans[i][1] = end
		}
	}
	if c.fields == 0 {
		c.fields = n
	} else if n != c.fields {
		return nil, &rowError{line: rec.line, reason: fmt.Sprintf("has %d fields, the header has %d", n, c.fields)}
	}
	return rec, nil
}

func parseReason(err error) string {
	switch {
	case errors.Is(err, csv.ErrBareQuote):
		return `a quote (") inside an unquoted field`
	case errors.Is(err, csv.ErrQuote):
		return `a quoted field is not closed properly`
	case errors.Is(err, csv.ErrFieldCount):
		return "wrong number of fields"
	default:
		return "unreadable record"
	}
}

// rawTee passes the input to encoding/csv and keeps the bytes it read
// until the records they belong to are taken.
type rawTee struct {
	src     io.Reader
	pending []byte // read ahead to look for a byte order mark
	buf     []byte // bytes from offset base on
	base    int64
	tooBig  bool
}

func (t *rawTee) Read(p []byte) (int, error) {
	if len(t.buf) > maxRecordBytes {
		// Starve the parser: it reports EOF inside the record, and read
		// reports the size.
		t.tooBig = true
		return 0, io.EOF
	}
	var n int
	var err error
	if len(t.pending) > 0 {
		n = copy(p, t.pending)
		t.pending = t.pending[n:]
	} else {
		n, err = t.src.Read(p)
	}
	t.buf = append(t.buf, p[:n]...)
	return n, err
}

// take returns a copy of the bytes from offset from to offset to, and
// forgets everything before to.
func (t *rawTee) take(from, to int64) []byte {
	out := bytes.Clone(t.buf[from-t.base : to-t.base])
	rest := copy(t.buf, t.buf[to-t.base:])
	t.buf = t.buf[:rest]
	t.base = to
	return out
}
