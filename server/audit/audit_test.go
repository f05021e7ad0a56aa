package audit_test

import (
	"bytes"
	"context"
	"crypto/hmac"
	"crypto/sha256"
	"encoding/hex"
	"encoding/json"
	"errors"
	"flag"
	"fmt"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/jeton-dev/jeton/server/audit"
	"github.com/jeton-dev/jeton/server/audit/fileanchor"
)

var update = flag.Bool("update", false, "rewrite testdata/v1 from the current code")

var (
	testKey  = bytes.Repeat([]byte{'k'}, audit.KeySize)
	otherKey = bytes.Repeat([]byte{'K'}, audit.KeySize)
	testTime = time.Date(2025, 1, 2, 3, 4, 5, 0, time.UTC)
)

// openLog opens a log in dir with testKey, applying mod to the config, and
// closes it at the end of the test.
func openLog(t testing.TB, dir string, mod func(*audit.Config)) *audit.Log {
	t.Helper()
	cfg := audit.Config{Dir: dir, Key: testKey, Now: func() time.Time { return testTime }}
	if mod != nil {
		mod(&cfg)
	}
	l, err := audit.Open(cfg)
	if err != nil {
		t.Fatalf("Open: %v", err)
	}
	t.Cleanup(func() { l.Close() })
	return l
}

// rec returns a record told apart from others by its case reference.
func rec(i int) audit.Record {
	return audit.Record{
		Time: testTime, Identity: "svc-test", Peer: "192.0.2.1:4000", Method: "Detokenize",
		Purpose: "vetting", CaseRef: caseRef(i), Outcome: "ok",
		Items: []audit.Item{{TokenHash: "00112233445566778899aabbccddeeff", Outcome: audit.OutcomeRevealed}},
	}
}

func caseRef(i int) string { return fmt.Sprintf("case-%04d", i) }

func mustAppend(t testing.TB, l *audit.Log, i int) {
	t.Helper()
	if err := l.Append(context.Background(), rec(i)); err != nil {
		t.Fatalf("Append %d: %v", i, err)
	}
}

// verifyDir verifies every log file in dir, against opts.
func verifyDir(t testing.TB, dir string, opts audit.VerifyOptions) (*audit.Report, error) {
	t.Helper()
	files, err := audit.Files(dir)
	if err != nil {
		t.Fatal(err)
	}
	return audit.Verify(files, opts)
}

// mustVerify fails the test unless dir verifies (structure only) with
// wantRecords records after the chain-start record.
func mustVerify(t testing.TB, dir string, wantRecords int) {
	t.Helper()
	rep, err := verifyDir(t, dir, audit.VerifyOptions{})
	if err != nil {
		t.Fatalf("Verify: %v", err)
	}
	if rep.Records != wantRecords+1 || rep.LastSeq != uint64(wantRecords+1) || rep.FirstSeq != 1 || rep.Chain == nil {
		t.Fatalf("Verify = %+v, want %d records and a chain start from seq 1", rep, wantRecords+1)
	}
}

// caseRefs returns how many times each case reference occurs in dir's log.
func caseRefs(t testing.TB, dir string) map[string]int {
	t.Helper()
	files, err := audit.Files(dir)
	if err != nil {
		t.Fatal(err)
	}
	seen := map[string]int{}
	for _, f := range files {
		for _, line := range readLines(t, f) {
			var l struct {
				Rec audit.Record `json:"rec"`
			}
			if err := json.Unmarshal(line, &l); err != nil {
				t.Fatalf("%s: %v", f, err)
			}
			if l.Rec.Chain == nil {
				seen[l.Rec.CaseRef]++
			}
		}
	}
	return seen
}

// readLines returns the newline-terminated lines of a file, without newlines.
func readLines(t testing.TB, path string) [][]byte {
	t.Helper()
	b, err := os.ReadFile(path)
	if err != nil {
		t.Fatal(err)
	}
	if len(b) == 0 {
		return nil
	}
	return bytes.SplitAfter(bytes.TrimSuffix(b, []byte("\n")), []byte("\n"))
}

func writeLines(t testing.TB, path string, lines [][]byte) {
	t.Helper()
	var b []byte
	for _, l := range lines {
		b = append(b, bytes.TrimSuffix(l, []byte("\n"))...)
		b = append(b, '\n')
	}
	if err := os.WriteFile(path, b, 0o600); err != nil {
		t.Fatal(err)
	}
}

func logFile(dir string, n int) string {
	return filepath.Join(dir, fmt.Sprintf("audit-%06d.jsonl", n))
}

func TestConcurrentAppend(t *testing.T) {
	const workers, each = 50, 40
	dir := t.TempDir()
	l := openLog(t, dir, func(c *audit.Config) { c.MaxFileBytes = 64 << 10 })
	var wg sync.WaitGroup
	errs := make(chan error, workers*each)
	for w := range workers {
		wg.Go(func() {
			for i := range each {
				if err := l.Append(context.Background(), rec(w*each+i)); err != nil {
					errs <- err
				}
			}
		})
	}
	wg.Wait()
	close(errs)
	for err := range errs {
		t.Fatalf("Append: %v", err)
	}
	if err := l.Close(); err != nil {
		t.Fatal(err)
	}
	mustVerify(t, dir, workers*each)
	seen := caseRefs(t, dir)
	for i := range workers * each {
		if seen[caseRef(i)] != 1 {
			t.Errorf("%s is in the log %d times, want 1", caseRef(i), seen[caseRef(i)])
		}
	}
	if files, _ := audit.Files(dir); len(files) < 2 {
		t.Errorf("%d log files, want the load to rotate", len(files))
	}
}

func TestReopenContinuesChain(t *testing.T) {
	dir := t.TempDir()
	l := openLog(t, dir, nil)
	for i := range 3 {
		mustAppend(t, l, i)
	}
	if _, err := audit.Open(audit.Config{Dir: dir, Key: testKey}); err == nil {
		t.Fatal("a second Open of an open log succeeded")
	}
	if err := l.Close(); err != nil {
		t.Fatal(err)
	}
	l = openLog(t, dir, nil)
	for i := 3; i < 5; i++ {
		mustAppend(t, l, i)
	}
	l.Close()
	mustVerify(t, dir, 5)

	// Another replica id must not continue this replica's chain.
	if _, err := audit.Open(audit.Config{Dir: dir, Key: testKey, Replica: "other"}); err == nil {
		t.Fatal("Open as another replica succeeded")
	}
}

func TestRotation(t *testing.T) {
	dir := t.TempDir()
	const maxBytes = 1000 // two records of about 400 bytes
	l := openLog(t, dir, func(c *audit.Config) { c.MaxFileBytes = maxBytes })
	for i := range 9 {
		mustAppend(t, l, i)
	}
	l.Close()
	files, _ := audit.Files(dir)
	if len(files) != 5 {
		t.Fatalf("%d files, want 5", len(files))
	}
	for _, f := range files {
		if fi, err := os.Stat(f); err != nil || fi.Size() > maxBytes {
			t.Errorf("%s: size %d, err %v; want at most %d", f, fi.Size(), err, maxBytes)
		}
	}
	mustVerify(t, dir, 9)

	// The chain continues across a reopen into a rotated log.
	l = openLog(t, dir, func(c *audit.Config) { c.MaxFileBytes = maxBytes })
	mustAppend(t, l, 9)
	l.Close()
	mustVerify(t, dir, 10)
}

// reChain edits line from+1 of lines with edit, then renumbers and hashes
// it and every later line again, following the documented format: what
// anyone can do to an unkeyed chain. Only a checkpoint tells.
func reChain(t testing.TB, lines [][]byte, from int, edit func([]byte) []byte) [][]byte {
	t.Helper()
	prev := make([]byte, 32)
	if from > 0 {
		var w struct{ Hash string }
		if err := json.Unmarshal(lines[from-1], &w); err != nil {
			t.Fatal(err)
		}
		prev, _ = hex.DecodeString(w.Hash)
	}
	for j := from; j < len(lines); j++ {
		var w struct {
			Rec json.RawMessage `json:"rec"`
		}
		if err := json.Unmarshal(lines[j], &w); err != nil {
			t.Fatal(err)
		}
		if j == from {
			w.Rec = edit(w.Rec)
		}
		seq := j + 1
		h := sha256.New()
		fmt.Fprintf(h, "jeton/audit/v2\x00%s{\"v\":2,\"seq\":%d,\"rec\":%s}", prev, seq, w.Rec)
		sum := h.Sum(nil)
		lines[j] = fmt.Appendf(nil, `{"v":2,"seq":%d,"prev":"%x","rec":%s,"hash":"%x"}`, seq, prev, w.Rec, sum)
		prev = sum
	}
	return lines
}

func purposeEdit(r []byte) []byte { return bytes.Replace(r, []byte("vetting"), []byte("payroll"), 1) }

const testReplica = "replica-0"

// anchoredConfig returns a config modifier that anchors the log in a
// (dev) file anchor.
func anchoredConfig(a audit.Anchor) func(*audit.Config) {
	return func(c *audit.Config) { c.Anchor, c.Replica = a, testReplica }
}

func newFileAnchor(t testing.TB) *fileanchor.Anchor {
	t.Helper()
	a, err := fileanchor.New(t.TempDir(), testReplica, nil)
	if err != nil {
		t.Fatal(err)
	}
	return a
}

// anchorOpts returns what a verifier needs: the public keys and the
// anchor's latest checkpoint. Nothing secret.
func anchorOpts(t testing.TB, a audit.Anchor) audit.VerifyOptions {
	t.Helper()
	keys, err := a.PublicKeys(context.Background())
	if err != nil {
		t.Fatal(err)
	}
	cp, _, err := a.Load(context.Background())
	if err != nil || cp == nil {
		t.Fatalf("anchor Load = %q, %v", cp, err)
	}
	return audit.VerifyOptions{Keys: keys, Checkpoint: cp}
}

func copyDir(t testing.TB, src, dst string) {
	t.Helper()
	files, err := audit.Files(src)
	if err != nil {
		t.Fatal(err)
	}
	os.MkdirAll(dst, 0o700)
	for _, f := range files {
		b, err := os.ReadFile(f)
		if err != nil {
			t.Fatal(err)
		}
		if err := os.WriteFile(filepath.Join(dst, filepath.Base(f)), b, 0o600); err != nil {
			t.Fatal(err)
		}
	}
}

func removeLogFiles(t testing.TB, dir string) {
	t.Helper()
	files, _ := audit.Files(dir)
	for _, f := range files {
		if err := os.Remove(f); err != nil {
			t.Fatal(err)
		}
	}
}

// TestVerifyTamper damages an anchored log in every way an operator with a
// shell on the audit host could, and checks that Verify, holding only the
// public key and the anchor's checkpoint, names the damage, and that Open
// refuses to continue the log.
func TestVerifyTamper(t *testing.T) {
	const n = 10 // records after the chain start: seq 2..11
	// makeLog writes n records with a checkpoint at the end (Close), one
	// file per record if rotate. snapshot, if set, gets a copy of the log
	// as it was after the first half.
	makeLog := func(t *testing.T, rotate, unclean bool, snapshot string) (string, audit.Anchor) {
		dir, a := t.TempDir(), &countingAnchor{Anchor: newFileAnchor(t)}
		mod := func(c *audit.Config) {
			anchoredConfig(a)(c)
			if rotate {
				c.MaxFileBytes = 1
			}
		}
		l := openLog(t, dir, mod)
		for i := range n {
			if i == n/2 && snapshot != "" {
				if err := l.Close(); err != nil {
					t.Fatal(err)
				}
				copyDir(t, dir, snapshot)
				l = openLog(t, dir, mod)
			}
			mustAppend(t, l, i)
		}
		if unclean {
			// The last checkpoint cannot be stored: as after kill -9.
			a.down.Store(true)
			defer a.down.Store(false)
			l.Close()
			return dir, a
		}
		if err := l.Close(); err != nil {
			t.Fatal(err)
		}
		return dir, a
	}
	edit := func(path string, f func(lines [][]byte) [][]byte) func(*testing.T, string) {
		return func(t *testing.T, dir string) {
			p := filepath.Join(dir, path)
			writeLines(t, p, f(readLines(t, p)))
		}
	}
	first := "audit-000001.jsonl"
	last := uint64(n + 1)
	tests := []struct {
		name     string
		rotate   bool
		unclean  bool // the log stops without its closing checkpoint
		snapshot bool // tamper gets the copy made after half the records
		tamper   func(t *testing.T, dir string)
		noCP     bool // verify without the checkpoint: the control cases
		// openOK: Open is not expected to refuse (or, for a partial line,
		// repairs it).
		openOK bool
		// want is nil when the log should still verify.
		want     *audit.VerifyError
		wantTorn bool
	}{
		{name: "untouched", openOK: true},
		{
			name: "edited byte in a record",
			tamper: edit(first, func(ls [][]byte) [][]byte {
				ls[4] = bytes.Replace(ls[4], []byte("svc-test"), []byte("svc-tesT"), 1)
				return ls
			}),
			want: &audit.VerifyError{File: first, Line: 5, Seq: 5, Reason: audit.ReasonBadHash},
		},
		{
			name: "edited byte in a hash",
			tamper: edit(first, func(ls [][]byte) [][]byte {
				i := bytes.Index(ls[4], []byte(`"hash":"`)) + 8
				if ls[4][i] == '0' {
					ls[4][i] = '1'
				} else {
					ls[4][i] = '0'
				}
				return ls
			}),
			want: &audit.VerifyError{File: first, Line: 5, Seq: 5, Reason: audit.ReasonBadHash},
		},
		{
			name: "edited prev",
			tamper: edit(first, func(ls [][]byte) [][]byte {
				ls[4] = bytes.Replace(ls[4], []byte(`"prev":"`), []byte(`"prev":"0`), 1)
				i := bytes.Index(ls[4], []byte(`","rec"`))
				ls[4] = append(ls[4][:i-1], ls[4][i:]...)
				return ls
			}),
			want: &audit.VerifyError{File: first, Line: 5, Seq: 5, Reason: audit.ReasonPrevMismatch},
		},
		{
			name:   "deleted line",
			tamper: edit(first, func(ls [][]byte) [][]byte { return append(ls[:3], ls[4:]...) }),
			want:   &audit.VerifyError{File: first, Line: 4, Seq: 5, Reason: audit.ReasonSeqGap},
		},
		{
			name: "swapped lines",
			tamper: edit(first, func(ls [][]byte) [][]byte {
				ls[5], ls[6] = ls[6], ls[5]
				return ls
			}),
			want: &audit.VerifyError{File: first, Line: 6, Seq: 7, Reason: audit.ReasonSeqOrder},
		},
		{
			// The chain is unkeyed, so a swap can be renumbered and hashed
			// again; the head then differs from the signed one.
			name: "swapped lines, re-chained",
			tamper: edit(first, func(ls [][]byte) [][]byte {
				ls[5], ls[6] = ls[6], ls[5]
				return reChain(t, ls, 5, func(r []byte) []byte { return r })
			}),
			want: &audit.VerifyError{File: first, Line: int(last), Seq: last, Reason: audit.ReasonCheckpoint},
		},
		{
			name: "edited and re-chained",
			tamper: edit(first, func(ls [][]byte) [][]byte {
				return reChain(t, ls, 2, purposeEdit)
			}),
			want: &audit.VerifyError{File: first, Line: int(last), Seq: last, Reason: audit.ReasonCheckpoint},
		},
		{
			// Control: without the checkpoint a re-chained edit passes.
			// That shows reChain follows the format, so the failure above
			// is the checkpoint's doing.
			name: "edited and re-chained, no checkpoint",
			tamper: edit(first, func(ls [][]byte) [][]byte {
				return reChain(t, ls, 2, purposeEdit)
			}),
			noCP: true,
		},
		{
			name: "duplicated line",
			tamper: edit(first, func(ls [][]byte) [][]byte {
				return append(ls[:3:3], append([][]byte{ls[2]}, ls[3:]...)...)
			}),
			want: &audit.VerifyError{File: first, Line: 4, Seq: 3, Reason: audit.ReasonSeqOrder},
		},
		{
			// A crash mid-write leaves a partial line that was never
			// acknowledged: tolerated and reported; Open cuts it off.
			name:    "torn unacknowledged line",
			unclean: true,
			openOK:  true,
			tamper: func(t *testing.T, dir string) {
				f, _ := os.OpenFile(filepath.Join(dir, first), os.O_WRONLY|os.O_APPEND, 0)
				f.WriteString(`{"v":2,"seq":12,"prev":"00`)
				f.Close()
			},
			wantTorn: true,
		},
		{
			// After a clean stop no write was under way: a partial line
			// was added by someone else.
			name: "partial line after a clean stop",
			tamper: func(t *testing.T, dir string) {
				f, _ := os.OpenFile(filepath.Join(dir, first), os.O_WRONLY|os.O_APPEND, 0)
				f.WriteString(`{"v":2,"seq":12,"prev":"00`)
				f.Close()
			},
			want: &audit.VerifyError{File: first, Line: int(last) + 1, Seq: last + 1, Reason: audit.ReasonPastClosed},
		},
		{
			// A well-formed record, correctly chained, appended after a
			// clean stop: a forgery only the closed checkpoint shows.
			name:   "record appended after a clean stop",
			tamper: func(t *testing.T, dir string) { forgeAppend(t, dir, framing()) },
			want:   &audit.VerifyError{File: first, Line: int(last) + 1, Seq: last + 1, Reason: audit.ReasonPastClosed},
		},
		{
			// Control: the same forgery after an unclean stop is inside
			// the uncovered window; Open takes it and says so (see
			// TestUncleanStopRecovered).
			name:    "record appended after an unclean stop",
			unclean: true,
			openOK:  true,
			tamper:  func(t *testing.T, dir string) { forgeAppend(t, dir, framing()) },
		},
		{
			// The same cut into a record a checkpoint covers is a
			// truncation, torn or not.
			name: "last checkpointed line cut short",
			tamper: func(t *testing.T, dir string) {
				p := filepath.Join(dir, first)
				b, _ := os.ReadFile(p)
				os.WriteFile(p, b[:len(b)-10], 0o600)
			},
			want: &audit.VerifyError{File: first, Line: int(last), Seq: last, Reason: audit.ReasonBehindCheckpoint},
		},
		{
			name:   "last record deleted",
			tamper: edit(first, func(ls [][]byte) [][]byte { return ls[:len(ls)-1] }),
			want:   &audit.VerifyError{File: first, Line: int(last), Seq: last, Reason: audit.ReasonBehindCheckpoint},
		},
		{
			// Control: the chain alone cannot show whole records removed
			// from its end; that is what the checkpoint is for.
			name:   "last record deleted, no checkpoint",
			tamper: edit(first, func(ls [][]byte) [][]byte { return ls[:len(ls)-1] }),
			noCP:   true,
		},
		{
			name:     "older copy restored",
			snapshot: true,
			tamper:   func(t *testing.T, dir string) {}, // see below
			want:     &audit.VerifyError{File: first, Line: n/2 + 2, Seq: n/2 + 2, Reason: audit.ReasonBehindCheckpoint},
		},
		{
			name:   "wiped",
			tamper: func(t *testing.T, dir string) { removeLogFiles(t, dir) },
			want:   &audit.VerifyError{Seq: 1, Reason: audit.ReasonBehindCheckpoint},
		},
		{
			name: "record from another chain",
			tamper: func(t *testing.T, dir string) {
				other := t.TempDir()
				l := openLog(t, other, nil)
				for i := range 4 {
					mustAppend(t, l, 100+i)
				}
				l.Close()
				p := filepath.Join(dir, first)
				ls := readLines(t, p)
				ls[3] = readLines(t, filepath.Join(other, first))[3]
				writeLines(t, p, ls)
			},
			want: &audit.VerifyError{File: first, Line: 4, Seq: 4, Reason: audit.ReasonPrevMismatch},
		},
		{
			name: "another chain altogether",
			tamper: func(t *testing.T, dir string) {
				removeLogFiles(t, dir)
				l := openLog(t, dir, func(c *audit.Config) { c.Replica = testReplica })
				for i := range n + 2 {
					mustAppend(t, l, i)
				}
				l.Close()
			},
			want: &audit.VerifyError{File: first, Line: 1, Seq: 1, Reason: audit.ReasonCheckpoint},
		},
		{
			name: "chain start replaced, re-chained",
			tamper: edit(first, func(ls [][]byte) [][]byte {
				return reChain(t, ls, 0, func(r []byte) []byte {
					return bytes.Replace(r, []byte(audit.MethodChainStart), []byte("Detokenize"), 1)
				})
			}),
			want: &audit.VerifyError{File: first, Line: 1, Seq: 1, Reason: audit.ReasonMalformed},
		},
		{
			name: "malformed JSON",
			tamper: edit(first, func(ls [][]byte) [][]byte {
				ls[1] = []byte(`{"v":2,"seq":2,`)
				return ls
			}),
			want: &audit.VerifyError{File: first, Line: 2, Seq: 2, Reason: audit.ReasonMalformed},
		},
		{
			name: "valid JSON, not canonical",
			tamper: edit(first, func(ls [][]byte) [][]byte {
				ls[1] = bytes.Replace(ls[1], []byte(`"seq":2,`), []byte(`"seq": 2,`), 1)
				return ls
			}),
			want: &audit.VerifyError{File: first, Line: 2, Seq: 2, Reason: audit.ReasonMalformed},
		},
		{
			name: "format version 1 line",
			tamper: edit(first, func(ls [][]byte) [][]byte {
				ls[1] = bytes.Replace(ls[1], []byte(`{"v":2,`), []byte(`{"v":1,`), 1)
				return ls
			}),
			want: &audit.VerifyError{File: first, Line: 2, Seq: 2, Reason: audit.ReasonMalformed},
		},
		{name: "rotated, untouched", rotate: true, openOK: true},
		{
			name:   "rotated, middle file deleted",
			rotate: true,
			tamper: func(t *testing.T, dir string) { os.Remove(logFile(dir, 5)) },
			want:   &audit.VerifyError{File: "audit-000006.jsonl", Seq: 5, Reason: audit.ReasonMissingFile},
		},
		{
			name:   "rotated, last file deleted",
			rotate: true,
			tamper: func(t *testing.T, dir string) { os.Remove(logFile(dir, n+1)) },
			want:   &audit.VerifyError{File: "audit-000010.jsonl", Line: 2, Seq: last, Reason: audit.ReasonBehindCheckpoint},
		},
		{
			name:   "rotated, first record removed",
			rotate: true,
			tamper: func(t *testing.T, dir string) { os.WriteFile(logFile(dir, 1), nil, 0o600) },
			want:   &audit.VerifyError{File: "audit-000002.jsonl", Line: 1, Seq: 2, Reason: audit.ReasonMissingFile},
		},
		{
			name:   "rotated, files renumbered over a deleted one",
			rotate: true,
			tamper: func(t *testing.T, dir string) {
				for i := 4; i <= n+1; i++ {
					os.Rename(logFile(dir, i), logFile(dir, i-1))
				}
			},
			want: &audit.VerifyError{File: "audit-000003.jsonl", Line: 1, Seq: 4, Reason: audit.ReasonMissingFile},
		},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			var snap string
			if tt.snapshot {
				snap = t.TempDir()
			}
			dir, a := makeLog(t, tt.rotate, tt.unclean, snap)
			if tt.snapshot {
				removeLogFiles(t, dir)
				copyDir(t, snap, dir)
			}
			if tt.tamper != nil {
				tt.tamper(t, dir)
			}
			opts := anchorOpts(t, a)
			if tt.noCP {
				opts.Checkpoint = nil
			}
			rep, err := verifyDir(t, dir, opts)
			if tt.want == nil {
				if err != nil {
					t.Fatalf("Verify: %v, want success", err)
				}
				if rep.FirstSeq != 1 || rep.LastSeq != uint64(rep.Records) || (rep.Torn != nil) != tt.wantTorn {
					t.Fatalf("Verify = %+v, torn %+v; want torn %v", rep, rep.Torn, tt.wantTorn)
				}
			} else {
				var ve *audit.VerifyError
				if !errors.As(err, &ve) {
					t.Fatalf("Verify = %+v, %v; want a *VerifyError", rep, err)
				}
				got := *ve
				got.File, got.Detail = filepath.Base(got.File), ""
				if got.File == "." {
					got.File = ""
				}
				if got != *tt.want {
					t.Errorf("Verify error = %+v, want %+v (%v)", got, *tt.want, err)
				}
			}
			// jetond must refuse to continue a damaged log.
			l, err := audit.Open(audit.Config{Dir: dir, Key: testKey, Anchor: a, Replica: testReplica})
			if err == nil {
				l.Close()
				if !tt.openOK {
					t.Errorf("Open of the damaged log succeeded")
				}
			} else if tt.openOK {
				t.Errorf("Open: %v", err)
			}
		})
	}
}

// faultFS wraps the real filesystem with switchable faults.
type faultFS struct {
	mu                                       sync.Mutex
	tornWrite, failSync, failTrunc, failOpen bool
	block                                    chan struct{} // if set, Sync waits for it to close
}

var errInjected = errors.New("injected fault")

func (fs *faultFS) set(f func(*faultFS)) {
	fs.mu.Lock()
	defer fs.mu.Unlock()
	f(fs)
}

func (fs *faultFS) get() faultFS {
	fs.mu.Lock()
	defer fs.mu.Unlock()
	return faultFS{tornWrite: fs.tornWrite, failSync: fs.failSync, failTrunc: fs.failTrunc, failOpen: fs.failOpen, block: fs.block}
}

func (fs *faultFS) OpenFile(name string, flag int, perm os.FileMode) (audit.File, error) {
	if fs.get().failOpen {
		return nil, errInjected
	}
	f, err := os.OpenFile(name, flag, perm)
	if err != nil {
		return nil, err
	}
	return &faultFile{f: f, fs: fs}, nil
}

type faultFile struct {
	f  *os.File
	fs *faultFS
}

func (f *faultFile) Write(p []byte) (int, error) {
	if f.fs.get().tornWrite {
		n, _ := f.f.Write(p[:len(p)/2])
		return n, errInjected
	}
	return f.f.Write(p)
}

func (f *faultFile) Sync() error {
	s := f.fs.get()
	if s.block != nil {
		<-s.block
	}
	if s.failSync {
		return errInjected
	}
	return f.f.Sync()
}

func (f *faultFile) Truncate(size int64) error {
	if f.fs.get().failTrunc {
		return errInjected
	}
	return f.f.Truncate(size)
}

func (f *faultFile) Stat() (os.FileInfo, error) { return f.f.Stat() }

func (f *faultFile) Close() error { return f.f.Close() }

func TestFaultRecovery(t *testing.T) {
	tests := []struct {
		name  string
		fault func(*faultFS)
		// failedAbsent: records whose Append failed must not be in the log.
		failedAbsent bool
	}{
		{"torn write", func(fs *faultFS) { fs.tornWrite = true }, true},
		{"fsync fails", func(fs *faultFS) { fs.failSync = true }, true},
		{"torn write, truncate fails", func(fs *faultFS) { fs.tornWrite, fs.failTrunc = true, true }, true},
		{"disk gone", func(fs *faultFS) { fs.tornWrite, fs.failSync, fs.failTrunc, fs.failOpen = true, true, true, true }, true},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			dir := t.TempDir()
			fs := &faultFS{}
			a := newFileAnchor(t)
			cfg := func(c *audit.Config) { anchoredConfig(a)(c); c.OpenFile = fs.OpenFile }
			l := openLog(t, dir, cfg)
			var acked []int
			i := 0
			appendOK := func() {
				t.Helper()
				mustAppend(t, l, i)
				acked = append(acked, i)
				i++
			}
			for range 3 {
				appendOK()
			}
			fs.set(tt.fault)
			var failed []int
			for range 3 {
				err := l.Append(context.Background(), rec(i))
				if !errors.Is(err, audit.ErrUnavailable) {
					t.Fatalf("Append during fault = %v, want ErrUnavailable", err)
				}
				failed = append(failed, i)
				i++
			}
			fs.set(func(fs *faultFS) { fs.tornWrite, fs.failSync, fs.failTrunc, fs.failOpen = false, false, false, false })
			for range 3 {
				appendOK()
			}
			if err := l.Close(); err != nil {
				t.Fatal(err)
			}
			if _, err := verifyDir(t, dir, anchorOpts(t, a)); err != nil {
				t.Fatalf("Verify after recovery: %v", err)
			}
			seen := caseRefs(t, dir)
			for _, i := range acked {
				if seen[caseRef(i)] != 1 {
					t.Errorf("acknowledged %s is in the log %d times, want 1", caseRef(i), seen[caseRef(i)])
				}
			}
			for _, i := range failed {
				if tt.failedAbsent && seen[caseRef(i)] != 0 {
					t.Errorf("failed %s is in the log", caseRef(i))
				}
			}

			// The recovered log reopens and continues.
			l = openLog(t, dir, cfg)
			appendOK()
			l.Close()
			if _, err := verifyDir(t, dir, anchorOpts(t, a)); err != nil {
				t.Fatalf("Verify after reopen: %v", err)
			}
		})
	}
}

func TestAppendAfterClose(t *testing.T) {
	l := openLog(t, t.TempDir(), nil)
	mustAppend(t, l, 0)
	if err := l.Close(); err != nil {
		t.Fatal(err)
	}
	if err := l.Append(context.Background(), rec(1)); !errors.Is(err, audit.ErrUnavailable) {
		t.Fatalf("Append after Close = %v, want ErrUnavailable", err)
	}
	if err := l.Close(); err != nil {
		t.Fatalf("second Close = %v", err)
	}
}

func TestAppendContext(t *testing.T) {
	t.Run("canceled before", func(t *testing.T) {
		dir := t.TempDir()
		l := openLog(t, dir, nil)
		ctx, cancel := context.WithCancel(context.Background())
		cancel()
		err := l.Append(ctx, rec(0))
		if !errors.Is(err, context.Canceled) || !errors.Is(err, audit.ErrUnavailable) {
			t.Fatalf("Append = %v, want context.Canceled and ErrUnavailable", err)
		}
		l.Close()
		if seen := caseRefs(t, dir); len(seen) != 0 {
			t.Fatalf("the log holds %v, want nothing", seen)
		}
	})
	t.Run("ends before durability", func(t *testing.T) {
		dir := t.TempDir()
		fs := &faultFS{}
		l := openLog(t, dir, func(c *audit.Config) { c.OpenFile = fs.OpenFile })
		release := make(chan struct{})
		fs.set(func(fs *faultFS) { fs.block = release })
		ctx, cancel := context.WithTimeout(context.Background(), 20*time.Millisecond)
		defer cancel()
		err := l.Append(ctx, rec(0))
		if !errors.Is(err, context.DeadlineExceeded) || !errors.Is(err, audit.ErrUnavailable) {
			t.Fatalf("Append = %v, want DeadlineExceeded and ErrUnavailable", err)
		}
		close(release)
		mustAppend(t, l, 1)
		l.Close()
		// Record 0 may or may not be there; the chain is whole either way.
		if _, err := verifyDir(t, dir, audit.VerifyOptions{}); err != nil {
			t.Fatal(err)
		}
	})
}

func TestTokenHash(t *testing.T) {
	const token = "tk-fake-0000000000000000"
	l := openLog(t, t.TempDir(), nil)
	h := l.TokenHash(token)
	if len(h) != 32 || strings.Trim(h, "0123456789abcdef") != "" {
		t.Fatalf("TokenHash = %q, want 32 lowercase hex digits", h)
	}
	if strings.Contains(h, token) || strings.Contains(token, h) {
		t.Fatalf("TokenHash = %q holds the token", h)
	}
	if again := l.TokenHash(token); again != h {
		t.Fatalf("TokenHash is not stable: %q then %q", h, again)
	}
	if l.TokenHash(token+"1") == h {
		t.Fatal("two tokens share a hash")
	}
	other := openLog(t, t.TempDir(), func(c *audit.Config) { c.Key = otherKey })
	if other.TokenHash(token) == h {
		t.Fatal("TokenHash does not depend on the key")
	}
	// Pin the documented construction, which investigators reimplement.
	m := hmac.New(sha256.New, testKey)
	m.Write([]byte("jeton/audit/token\x00" + token))
	if want := hex.EncodeToString(m.Sum(nil))[:32]; h != want {
		t.Fatalf("TokenHash = %s, want %s", h, want)
	}
}

func TestOpenRecovery(t *testing.T) {
	// Each case writes 3 records, then damages the log.
	tests := []struct {
		name    string
		damage  func(t *testing.T, dir string)
		wantErr bool
		unclean bool // the log stopped without its closing checkpoint
	}{
		{"clean", func(*testing.T, string) {}, false, false},
		{"partial unacknowledged line after a crash", func(t *testing.T, dir string) {
			f, _ := os.OpenFile(logFile(dir, 1), os.O_WRONLY|os.O_APPEND, 0)
			f.WriteString(`{"v":2,"seq":5,"prev":"00`)
			f.Close()
		}, false, true},
		{"partial line after a clean stop", func(t *testing.T, dir string) {
			f, _ := os.OpenFile(logFile(dir, 1), os.O_WRONLY|os.O_APPEND, 0)
			f.WriteString(`{"v":2,"seq":5,"prev":"00`)
			f.Close()
		}, true, false},
		{"acknowledged line cut short", func(t *testing.T, dir string) {
			p := logFile(dir, 1)
			b, _ := os.ReadFile(p)
			os.WriteFile(p, b[:len(b)-3], 0o600)
		}, true, false},
		{"edited record", func(t *testing.T, dir string) {
			p := logFile(dir, 1)
			b, _ := os.ReadFile(p)
			os.WriteFile(p, bytes.Replace(b, []byte("case-0001"), []byte("case-0009"), 1), 0o600)
		}, true, false},
		{"log file deleted", func(t *testing.T, dir string) { os.Remove(logFile(dir, 1)) }, true, false},
		{"new-chain request beside the log", func(t *testing.T, dir string) {
			os.WriteFile(filepath.Join(dir, "NEW-CHAIN"), []byte(`{"archive":"x","reason":"test"}`), 0o600)
		}, true, false},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			dir, a := t.TempDir(), &countingAnchor{Anchor: newFileAnchor(t)}
			l := openLog(t, dir, anchoredConfig(a))
			for i := range 3 {
				mustAppend(t, l, i)
			}
			a.down.Store(tt.unclean)
			l.Close()
			a.down.Store(false)
			tt.damage(t, dir)
			l, err := audit.Open(audit.Config{Dir: dir, Key: testKey, Anchor: a, Replica: testReplica})
			if tt.wantErr {
				if err == nil {
					l.Close()
					t.Fatal("Open succeeded on a damaged log")
				}
				if !strings.Contains(err.Error(), "jeton audit archive") {
					t.Errorf("Open error does not say what to do: %v", err)
				}
				return
			}
			if err != nil {
				t.Fatalf("Open: %v", err)
			}
			mustAppend(t, l, 3)
			l.Close()
			n := 4
			if tt.unclean {
				n++ // the recovery record
			}
			mustVerify(t, dir, n)
			if _, err := verifyDir(t, dir, anchorOpts(t, a)); err != nil {
				t.Fatal(err)
			}
		})
	}
}

func TestOpenConfig(t *testing.T) {
	tests := []struct {
		name string
		cfg  audit.Config
		want string // the field the error names
	}{
		{"no dir", audit.Config{Key: testKey}, "Dir"},
		{"no key", audit.Config{Dir: t.TempDir()}, "Key"},
		{"short key", audit.Config{Dir: t.TempDir(), Key: testKey[:16]}, "Key"},
		{"negative size", audit.Config{Dir: t.TempDir(), Key: testKey, MaxFileBytes: -1}, "MaxFileBytes"},
		{"negative batch", audit.Config{Dir: t.TempDir(), Key: testKey, MaxBatch: -1}, "MaxBatch"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			l, err := audit.Open(tt.cfg)
			if err == nil {
				l.Close()
				t.Fatal("Open succeeded")
			}
			if !strings.Contains(err.Error(), tt.want) {
				t.Fatalf("Open error %q does not name %s", err, tt.want)
			}
		})
	}
}

// TestKnownAnswer pins format v2: the code must write exactly
// testdata/v2, and logs in it must keep verifying, against a checkpoint
// signed by a fixed key.
func TestKnownAnswer(t *testing.T) {
	dir, adir := t.TempDir(), t.TempDir()
	a, err := fileanchor.New(adir, testReplica, bytes.NewReader(bytes.Repeat([]byte{'s'}, 32)))
	if err != nil {
		t.Fatal(err)
	}
	l := openLog(t, dir, func(c *audit.Config) {
		anchoredConfig(a)(c)
		c.Rand = bytes.NewReader(bytes.Repeat([]byte{'c'}, 16))
	})
	for i := range 3 {
		r := rec(i)
		r.Time = time.Time{} // stamped by Config.Now
		r.Items = []audit.Item{
			{TokenHash: l.TokenHash(fmt.Sprintf("tk-fake-%d", i)), Outcome: audit.OutcomeRevealed},
			{Outcome: audit.OutcomeInvalid},
		}
		if err := l.Append(context.Background(), r); err != nil {
			t.Fatal(err)
		}
	}
	if err := l.Close(); err != nil {
		t.Fatal(err)
	}
	cp, _, err := a.Load(context.Background())
	if err != nil {
		t.Fatal(err)
	}
	golden := filepath.Join("testdata", "v2")
	for name, got := range map[string][]byte{
		"audit-000001.jsonl": must(os.ReadFile(filepath.Join(dir, "audit-000001.jsonl"))),
		"checkpoint":         cp,
		"public-key":         must(os.ReadFile(filepath.Join(adir, fileanchor.PublicKeyName))),
	} {
		if *update {
			os.MkdirAll(golden, 0o755)
			if err := os.WriteFile(filepath.Join(golden, name), got, 0o644); err != nil {
				t.Fatal(err)
			}
		}
		want, err := os.ReadFile(filepath.Join(golden, name))
		if err != nil {
			t.Fatal(err)
		}
		if !bytes.Equal(got, want) {
			t.Errorf("%s differs from %s:\ngot  %s\nwant %s", name, golden, got, want)
		}
	}
	keys, err := audit.ParseVerifierKeys(must(os.ReadFile(filepath.Join(golden, "public-key"))))
	if err != nil {
		t.Fatal(err)
	}
	rep, err := audit.Verify([]string{filepath.Join(golden, "audit-000001.jsonl")},
		audit.VerifyOptions{Keys: keys, Checkpoint: must(os.ReadFile(filepath.Join(golden, "checkpoint")))})
	if err != nil || rep.Records != 4 || rep.Checkpoint.Seq != 4 || !rep.Checkpoint.Closed {
		t.Fatalf("Verify(testdata) = %+v, %v", rep, err)
	}
	// Checkpoints stored before closed checkpoints existed have no
	// extension line: they still verify (and read as open, so the first
	// start after an upgrade counts as one after an unclean stop).
	rep, err = audit.Verify([]string{filepath.Join(golden, "audit-000001.jsonl")},
		audit.VerifyOptions{Keys: keys, Checkpoint: must(os.ReadFile(filepath.Join(golden, "checkpoint-unmarked")))})
	if err != nil || rep.Checkpoint.Seq != 4 || rep.Checkpoint.Closed {
		t.Fatalf("Verify(testdata, unmarked checkpoint) = %+v, %v", rep, err)
	}
}

func must[T any](v T, err error) T {
	if err != nil {
		panic(err)
	}
	return v
}

// BenchmarkAppendParallel measures group commit: many concurrent callers
// share each fsync, which fsyncs/record shows. Each Append returns only
// after the fsync that covers its record.
func BenchmarkAppendParallel(b *testing.B) {
	benchmarkAppend(b, nil)
}

// BenchmarkAppendParallelAnchored is the same with checkpoints signed and
// stored (in the dev file anchor) every DefaultCheckpointEvery records.
func BenchmarkAppendParallelAnchored(b *testing.B) {
	benchmarkAppend(b, func(c *audit.Config) { anchoredConfig(newFileAnchor(b))(c) })
}

func benchmarkAppend(b *testing.B, mod func(*audit.Config)) {
	dir := b.TempDir()
	var syncs countingFS
	l := openLog(b, dir, func(c *audit.Config) {
		if mod != nil {
			mod(c)
		}
		c.OpenFile = syncs.OpenFile
	})
	syncs.n.Store(0)
	b.ReportAllocs()
	b.SetParallelism(32)
	b.ResetTimer()
	b.RunParallel(func(pb *testing.PB) {
		r := rec(0)
		for pb.Next() {
			if err := l.Append(context.Background(), r); err != nil {
				b.Error(err)
				return
			}
		}
	})
	b.StopTimer()
	b.ReportMetric(float64(b.N)/b.Elapsed().Seconds(), "records/s")
	b.ReportMetric(float64(syncs.n.Load())/float64(b.N), "fsyncs/record")
}

// countingFS counts fsyncs of the files the log writes.
type countingFS struct{ n atomic.Int64 }

func (c *countingFS) OpenFile(name string, flag int, perm os.FileMode) (audit.File, error) {
	f, err := os.OpenFile(name, flag, perm)
	if err != nil {
		return nil, err
	}
	return countingFile{f, c}, nil
}

type countingFile struct {
	*os.File
	c *countingFS
}

func (f countingFile) Sync() error {
	f.c.n.Add(1)
	return f.File.Sync()
}

// BenchmarkVerify measures checking a log, which Open does in full at
// every start: bytes/s is the start-up cost per byte of log.
func BenchmarkVerify(b *testing.B) {
	dir := b.TempDir()
	l := openLog(b, dir, nil)
	const records = 20_000
	var wg sync.WaitGroup
	for w := range 50 {
		wg.Go(func() {
			for i := range records / 50 {
				if err := l.Append(context.Background(), rec(w*1000+i)); err != nil {
					b.Error(err)
					return
				}
			}
		})
	}
	wg.Wait()
	l.Close()
	files, _ := audit.Files(dir)
	var size int64
	for _, f := range files {
		fi, _ := os.Stat(f)
		size += fi.Size()
	}
	b.SetBytes(size)
	b.ReportAllocs()
	b.ResetTimer()
	for b.Loop() {
		if _, err := audit.Verify(files, audit.VerifyOptions{}); err != nil {
			b.Fatal(err)
		}
	}
	b.ReportMetric(float64(records)*float64(b.N)/b.Elapsed().Seconds(), "records/s")
}

// TestLargeRecord: a record larger than any read buffer (a reveal of
// thousands of tokens) verifies and reopens.
func TestLargeRecord(t *testing.T) {
	dir, a := t.TempDir(), newFileAnchor(t)
	l := openLog(t, dir, anchoredConfig(a))
	r := rec(0)
	for i := range 20_000 {
		r.Items = append(r.Items, audit.Item{TokenHash: fmt.Sprintf("%032x", i), Outcome: audit.OutcomeRevealed})
	}
	if err := l.Append(context.Background(), r); err != nil {
		t.Fatal(err)
	}
	mustAppend(t, l, 1)
	if err := l.Close(); err != nil {
		t.Fatal(err)
	}
	if fi, _ := os.Stat(logFile(dir, 1)); fi.Size() < 1<<20 {
		t.Fatalf("the log is %d bytes; the record is meant to exceed the read buffer", fi.Size())
	}
	if _, err := verifyDir(t, dir, anchorOpts(t, a)); err != nil {
		t.Fatal(err)
	}
	l = openLog(t, dir, anchoredConfig(a))
	mustAppend(t, l, 2)
}
