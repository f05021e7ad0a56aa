package main

import (
	"bytes"
	"fmt"
	"io"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"sync"
	"testing"
	"time"

	"google.golang.org/genproto/googleapis/rpc/errdetails"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/status"
	"google.golang.org/protobuf/types/known/durationpb"

	jetonv1 "github.com/jeton-dev/jeton/proto/jeton/v1"
)

// stubCSV is a small input with what real files hold: a BOM, CRLF, quoted
// fields with delimiters, quotes and newlines, accents, empty cells, a
// blank line and a subject column.
const stubCSV = "\xef\xbb\xbfid,email,nom,note\r\n" +
	"g-1,anne@example.org,\"Dupont, Anne\",VIP\r\n" +
	"g-2,,Éloïse Ñúñez,\"said \"\"hello\"\"\"\r\n" +
	"\r\n" +
	"g-3,\"bob@example.org\",\"Bob\r\nSecond Line\",\r\n" +
	"g-4,carol@example.org,Carol,\"multi\nline\"\r\n"

func writeFile(t testing.TB, dir, name, content string) string {
	t.Helper()
	p := filepath.Join(dir, name)
	if err := os.WriteFile(p, []byte(content), 0o600); err != nil {
		t.Fatal(err)
	}
	return p
}

func readFile(t testing.TB, p string) string {
	t.Helper()
	b, err := os.ReadFile(p)
	if err != nil {
		t.Fatal(err)
	}
	return string(b)
}

func TestCSVRoundTripIsByteIdentical(t *testing.T) {
	addr, files, s := startStub(t, nil)
	environ := environFor(addr, files)
	dir := t.TempDir()
	in := writeFile(t, dir, "in.csv", stubCSV)
	tok, back := filepath.Join(dir, "tok.csv"), filepath.Join(dir, "back.csv")

	var mu sync.Mutex
	var subjects []string
	s.before = func(_ int, req any) error {
		if r, ok := req.(*jetonv1.TokenizeRequest); ok {
			mu.Lock()
			for _, it := range r.GetItems() {
				subjects = append(subjects, it.GetFieldClass()+":"+it.GetSubjectId())
			}
			mu.Unlock()
		}
		return nil
	}
	got := jeton(t, environ, "", "csv", "tokenize", "--map", "email=email,nom=name", "--subject-column", "id", "--batch", "2", "-o", tok, in)
	if got.code != exitOK {
		t.Fatalf("csv tokenize: exit %d, stderr %q", got.code, got.stderr)
	}
	wantTok := "\xef\xbb\xbfid,email,nom,note\r\n" +
		"g-1,tk-anne@example.org,\"tk-Dupont, Anne\",VIP\r\n" +
		"g-2,,tk-Éloïse Ñúñez,\"said \"\"hello\"\"\"\r\n" +
		"\r\n" +
		"g-3,\"tk-bob@example.org\",\"tk-Bob\r\nSecond Line\",\r\n" +
		"g-4,tk-carol@example.org,tk-Carol,\"multi\nline\"\r\n"
	if out := readFile(t, tok); out != wantTok {
		t.Fatalf("tokenized file:\n got %q\nwant %q", out, wantTok)
	}
	slices.Sort(subjects)
	wantSubjects := "email:g-1 email:g-3 email:g-4 name:g-1 name:g-2 name:g-3 name:g-4"
	if strings.Join(subjects, " ") != wantSubjects {
		t.Errorf("items sent %v, want %s", subjects, wantSubjects)
	}
	if _, err := os.Stat(tok + ".jeton-run"); !os.IsNotExist(err) {
		t.Errorf("the run state file is left after a complete run: %v", err)
	}

	got = jeton(t, environ, "", "csv", "detokenize", "--map", "email,nom", "--purpose", "vetting", "-o", back, tok)
	if got.code != exitOK {
		t.Fatalf("csv detokenize: exit %d, stderr %q", got.code, got.stderr)
	}
	if out := readFile(t, back); out != stubCSV {
		t.Fatalf("round trip is not byte-identical:\n got %q\nwant %q", out, stubCSV)
	}
	checkNoValues(t, got.stderr, "anne@example.org", "Dupont")

	// stdin to stdout works the same.
	got = jeton(t, environ, stubCSV, "csv", "tokenize", "--map", "email=email,nom=name")
	if got.code != exitOK || got.stdout != wantTok {
		t.Fatalf("stdin to stdout: exit %d, stdout %q", got.code, got.stdout)
	}
}

// A failed call stops the run after writing every row before it, in
// order; --resume appends the rest, sending the interrupted batch again
// under the same idempotency key, and the result is what one run gives.
func TestCSVResume(t *testing.T) {
	addr, files, s := startStub(t, nil)
	environ := environFor(addr, files)
	dir := t.TempDir()
	var rows strings.Builder
	rows.WriteString("id,email\n")
	for i := range 50 {
		fmt.Fprintf(&rows, "%d,guest%02d@example.org\n", i, i)
	}
	in := writeFile(t, dir, "in.csv", rows.String())
	out := filepath.Join(dir, "tok.csv")

	var mu sync.Mutex
	var keys []string
	s.before = func(n int, req any) error {
		r := req.(*jetonv1.TokenizeRequest)
		mu.Lock()
		keys = append(keys, r.GetIdempotencyKey())
		mu.Unlock()
		if n == 4 {
			return status.Error(codes.PermissionDenied, "class not permitted")
		}
		return nil
	}
	got := jeton(t, environ, "", "csv", "tokenize", "--map", "email=email", "--batch", "5", "--concurrency", "1", "-o", out, in)
	if got.code != exitRPC || !strings.Contains(got.stderr, "--resume") || !strings.Contains(got.stderr, "line 17") {
		t.Fatalf("interrupted run: exit %d, stderr %q; want exit 3 naming the batch's line and --resume", got.code, got.stderr)
	}
	partial := readFile(t, out)
	if want := 1 + 15; strings.Count(partial, "\n") != want {
		t.Fatalf("partial output has %d lines, want the header and the 15 rows before the failed batch", strings.Count(partial, "\n"))
	}
	failedKey := keys[3]

	// A cut last row (as a kill during a write leaves it) is dropped and
	// written again.
	if err := os.WriteFile(out, []byte(partial+"15,tk-gue"), 0o600); err != nil {
		t.Fatal(err)
	}
	// Other settings are refused.
	if got := jeton(t, environ, "", "csv", "tokenize", "--map", "email=email", "--batch", "7", "--resume", "-o", out, in); got.code != exitUsage || !strings.Contains(got.stderr, "other settings") {
		t.Fatalf("resume with another batch size: exit %d, stderr %q", got.code, got.stderr)
	}
	// Without --resume, an existing output is not overwritten.
	if got := jeton(t, environ, "", "csv", "tokenize", "--map", "email=email", "-o", out, in); got.code != exitUsage || !strings.Contains(got.stderr, "--resume") {
		t.Fatalf("rerun without --resume: exit %d, stderr %q", got.code, got.stderr)
	}

	s.before = func(n int, req any) error {
		r := req.(*jetonv1.TokenizeRequest)
		mu.Lock()
		keys = append(keys, r.GetIdempotencyKey())
		mu.Unlock()
		return nil
	}
	nBefore := len(keys)
	got = jeton(t, environ, "", "csv", "tokenize", "--map", "email=email", "--batch", "5", "--concurrency", "3", "--resume", "-o", out, in)
	if got.code != exitOK {
		t.Fatalf("resumed run: exit %d, stderr %q", got.code, got.stderr)
	}
	if !slices.Contains(keys[nBefore:], failedKey) {
		t.Errorf("the resumed run sent keys %q; the interrupted batch had %q", keys[nBefore:], failedKey)
	}
	if n := len(keys) - nBefore; n != 7 {
		t.Errorf("the resumed run made %d calls, want 7 (rows 15 to 49 in batches of 5)", n)
	}
	whole := jeton(t, environ, rows.String(), "csv", "tokenize", "--map", "email=email")
	if final := readFile(t, out); final != whole.stdout {
		t.Fatalf("resumed output differs from a single run:\n got %q\nwant %q", final, whole.stdout)
	}
}

// A refusal with RetryInfo makes the command wait as asked and send the
// batch again: the run completes and loses nothing.
func TestCSVPacesOnRetryInfo(t *testing.T) {
	addr, files, s := startStub(t, nil)
	environ := environFor(addr, files)
	var rows strings.Builder
	rows.WriteString("email\n")
	for i := range 40 {
		fmt.Fprintf(&rows, "guest%02d@example.org\n", i)
	}
	const delay = 300 * time.Millisecond
	var mu sync.Mutex
	var refusedAt time.Time
	var after []time.Time
	s.before = func(n int, _ any) error {
		mu.Lock()
		defer mu.Unlock()
		if n == 3 {
			refusedAt = time.Now()
			st, _ := status.New(codes.ResourceExhausted, "rate limit exceeded").WithDetails(&errdetails.RetryInfo{RetryDelay: durationpb.New(delay)})
			return st.Err()
		}
		if !refusedAt.IsZero() {
			after = append(after, time.Now())
		}
		return nil
	}
	got := jeton(t, environ, rows.String(), "csv", "tokenize", "--map", "email=email", "--batch", "4", "--concurrency", "1")
	if got.code != exitOK {
		t.Fatalf("exit %d, stderr %q", got.code, got.stderr)
	}
	whole := strings.Builder{}
	whole.WriteString("email\n")
	for i := range 40 {
		fmt.Fprintf(&whole, "tk-guest%02d@example.org\n", i)
	}
	if got.stdout != whole.String() {
		t.Fatalf("output lost or reordered rows:\n%s", got.stdout)
	}
	// No call went out before the delay had passed (the client's retries
	// honour RetryInfo, and the command's own pacing does when they are
	// spent).
	if len(after) == 0 {
		t.Fatal("no call went out after the refusal")
	}
	if after[0].Sub(refusedAt) < delay {
		t.Errorf("the next call came %v after the refusal, before the %v asked for", after[0].Sub(refusedAt), delay)
	}
}

// A refusal without RetryInfo (a spent budget) stops the run; the rows
// before it are kept.
func TestCSVStopsOnBudgetWithoutRetryInfo(t *testing.T) {
	addr, files, s := startStub(t, nil)
	s.before = func(n int, _ any) error {
		if n == 2 {
			return status.Error(codes.ResourceExhausted, "reveal budget exceeded")
		}
		return nil
	}
	dir := t.TempDir()
	out := filepath.Join(dir, "out.csv")
	in := writeFile(t, dir, "in.csv", "email\na@example.org\nb@example.org\nc@example.org\n")
	got := jeton(t, environFor(addr, files), "", "csv", "tokenize", "--map", "email=email", "--batch", "1", "--concurrency", "1", "-o", out, in)
	if got.code != exitRPC || !strings.Contains(got.stderr, "no retry delay") {
		t.Fatalf("exit %d, stderr %q", got.code, got.stderr)
	}
	if o := readFile(t, out); o != "email\ntk-a@example.org\n" {
		t.Fatalf("output %q, want the row done before the refusal", o)
	}
}

func TestCSVBadRowsAndCells(t *testing.T) {
	addr, files, _ := startStub(t, nil)
	in := "email,nom\n" +
		"anne@example.org,Anne\n" +
		"secret\"quote@example.org,Bad\n" + // line 3: malformed
		"bob@example.org,Bob,extra\n" + // line 4: too many fields
		"carol@example.org,Carol\n"
	got := jeton(t, environFor(addr, files), in, "csv", "tokenize", "--map", "email=email,nom=shoe-size")
	if got.code != exitItem {
		t.Fatalf("exit %d, stderr %q", got.code, got.stderr)
	}
	for _, w := range []string{"line 3: malformed CSV", "line 4: has 3 fields, the header has 2", "line 2, column nom: InvalidArgument: unknown field class", "line 5, column nom"} {
		if !strings.Contains(got.stderr, w) {
			t.Errorf("stderr %q does not report %q", got.stderr, w)
		}
	}
	checkNoValues(t, got.stderr, "secret", "anne@example.org", "Anne", "Bob")
	if want := "email,nom\ntk-anne@example.org,\ntk-carol@example.org,\n"; got.stdout != want {
		t.Errorf("stdout %q, want %q", got.stdout, want)
	}
}

func TestCSVDetokenizeClassMismatch(t *testing.T) {
	addr, files, _ := startStub(t, nil)
	// The stub reveals every token as class email.
	got := jeton(t, environFor(addr, files), "nom\ntk-Anne\n", "csv", "detokenize", "--map", "nom=name", "--purpose", "vetting")
	if got.code != exitItem || got.stdout != "nom\n\n" || !strings.Contains(got.stderr, "line 2, column nom: the token is of class email, the column maps name") {
		t.Fatalf("exit %d, stdout %q, stderr %q", got.code, got.stdout, got.stderr)
	}
}

func TestCSVUsageErrors(t *testing.T) {
	addr, files, _ := startStub(t, nil)
	environ := environFor(addr, files)
	dir := t.TempDir()
	in := writeFile(t, dir, "in.csv", "email,nom\n")
	tests := []struct {
		name string
		args []string
		want string
	}{
		{"no map", []string{"tokenize", in}, "--map is required"},
		{"no class", []string{"tokenize", "--map", "email", in}, "has no class"},
		{"unknown column", []string{"tokenize", "--map", "mail=email", in}, `column "mail" is not in the header`},
		{"unknown subject column", []string{"tokenize", "--map", "email=email", "--subject-column", "id", in}, `--subject-column: column "id"`},
		{"no purpose", []string{"detokenize", "--map", "email", in}, "--purpose is required"},
		{"purpose on tokenize", []string{"tokenize", "--map", "email=email", "--purpose", "x", in}, "for csv detokenize"},
		{"resume without output", []string{"tokenize", "--map", "email=email", "--resume", in}, "--resume needs --output"},
		{"bad delimiter", []string{"tokenize", "--map", "email=email", "--delimiter", "ab", in}, "--delimiter"},
		{"missing input", []string{"tokenize", "--map", "email=email", filepath.Join(dir, "nope.csv")}, "nope.csv"},
		{"unknown subcommand", []string{"scramble"}, `unknown subcommand "scramble"`},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			got := jeton(t, environ, "", append([]string{"csv"}, tt.args...)...)
			if got.code != exitUsage || !strings.Contains(got.stderr, tt.want) {
				t.Errorf("exit %d, stderr %q; want exit 2 and %q", got.code, got.stderr, tt.want)
			}
		})
	}
}

func TestCSVProgress(t *testing.T) {
	addr, files, s := startStub(t, nil)
	environ := environFor(addr, files)
	dir := t.TempDir()
	var rows strings.Builder
	rows.WriteString("email\n")
	for i := range 30 {
		fmt.Fprintf(&rows, "guest%02d@example.org\n", i)
	}
	in := writeFile(t, dir, "in.csv", rows.String())
	s.before = func(int, any) error { time.Sleep(5 * time.Millisecond); return nil }

	// In a pipe: plain lines with the count, the total and a rate.
	got := jeton(t, environ, "", "csv", "tokenize", "--map", "email=email", "--batch", "3", "--concurrency", "1", "--progress-interval", "1ns", in)
	if got.code != exitOK || !strings.Contains(got.stderr, "jeton: csv tokenize: 3/30 rows (10%),") || !strings.Contains(got.stderr, "rows/s") ||
		!strings.Contains(got.stderr, "jeton: csv tokenize: 30 rows in ") {
		t.Errorf("pipe progress: exit %d, stderr %q", got.code, got.stderr)
	}

	// On a terminal: the progress bar.
	isTerminal = func(io.Writer) bool { return true }
	defer func() { isTerminal = func(io.Writer) bool { return false } }()
	got = jeton(t, environ, "", "csv", "tokenize", "--map", "email=email", "--batch", "3", "--concurrency", "1", in)
	if got.code != exitOK || !strings.Contains(got.stderr, "csv tokenize") || !strings.Contains(got.stderr, "rows") || !strings.Contains(got.stderr, "/30") {
		t.Errorf("terminal progress: exit %d, stderr %q", got.code, got.stderr)
	}
	checkNoValues(t, got.stderr, "guest0")
	var out bytes.Buffer
	out.WriteString(got.stdout)
	if !strings.HasPrefix(out.String(), "email\ntk-guest00@example.org\n") {
		t.Errorf("stdout %q", out.String())
	}
}

// The plain commands keep what was done before a failed chunk, and name
// where they stopped by position.
func TestPlainCommandsKeepPartialOutput(t *testing.T) {
	addr, files, s := startStub(t, nil)
	s.before = func(n int, _ any) error {
		if n == 2 {
			return status.Error(codes.PermissionDenied, "class not permitted")
		}
		return nil
	}
	var in strings.Builder
	for i := range 1500 {
		fmt.Fprintf(&in, "guest%04d@example.org\n", i)
	}
	got := jeton(t, environFor(addr, files), in.String(), "tokenize", "--class", "email")
	if got.code != exitRPC || strings.Count(got.stdout, "\n") != 1000 || !strings.HasPrefix(got.stdout, "tk-guest0000@example.org\n") ||
		!strings.Contains(got.stderr, "stopped after line 1000") {
		t.Fatalf("exit %d, %d lines out, stderr %q; want the first chunk's 1000 tokens and where it stopped", got.code, strings.Count(got.stdout, "\n"), got.stderr)
	}
	checkNoValues(t, got.stderr, "guest")
}
