package main

import (
	"bytes"
	"context"
	"crypto/sha256"
	"encoding/hex"
	"encoding/json"
	"fmt"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/jeton-dev/jeton/server/audit"
	"github.com/jeton-dev/jeton/server/audit/fileanchor"
)

var auditTestKey = bytes.Repeat([]byte{'k'}, audit.KeySize)

const auditReplica = "replica-0"

// auditLog is a log anchored in a (dev) file anchor, and the files a
// verifier gets: the public key and the latest checkpoint.
type auditLog struct {
	dir, anchorDir string
	anchor         *fileanchor.Anchor
}

func (l *auditLog) publicKey() string { return filepath.Join(l.anchorDir, fileanchor.PublicKeyName) }
func (l *auditLog) checkpoint() string {
	return fileanchor.CheckpointPath(l.anchorDir, auditReplica)
}
func (l *auditLog) file(n int) string {
	return filepath.Join(l.dir, fmt.Sprintf("audit-%06d.jsonl", n))
}

// verifyArgs returns the arguments of jeton audit verify with only the
// public key and the checkpoint.
func (l *auditLog) verifyArgs(paths ...string) []string {
	return append([]string{"audit", "verify", "--public-key", l.publicKey(), "--checkpoint", l.checkpoint()}, paths...)
}

func openAuditLog(t testing.TB, l *auditLog) *audit.Log {
	t.Helper()
	lg, err := audit.Open(audit.Config{Dir: l.dir, Key: auditTestKey, Anchor: l.anchor, Replica: auditReplica})
	if err != nil {
		t.Fatal(err)
	}
	return lg
}

func appendN(t testing.TB, lg *audit.Log, n int) {
	t.Helper()
	for i := range n {
		rec := audit.Record{Time: time.Unix(0, 0).UTC(), Identity: "svc-test", Method: "Detokenize", Purpose: "vetting",
			CaseRef: fmt.Sprintf("case-%d", i), Outcome: "ok"}
		if err := lg.Append(context.Background(), rec); err != nil {
			t.Fatal(err)
		}
	}
}

// writeAuditLog writes n records to a new anchored log and closes it (a
// closed checkpoint covers them all).
func writeAuditLog(t testing.TB, n int) *auditLog {
	t.Helper()
	l := &auditLog{dir: t.TempDir(), anchorDir: t.TempDir()}
	var err error
	if l.anchor, err = fileanchor.New(l.anchorDir, auditReplica, nil); err != nil {
		t.Fatal(err)
	}
	lg := openAuditLog(t, l)
	appendN(t, lg, n)
	if err := lg.Close(); err != nil {
		t.Fatal(err)
	}
	return l
}

// writeAuditLogCrashed writes n records to a new anchored log that stops
// without its last checkpoint, as kill -9 leaves it: only the chain's
// first record is anchored.
func writeAuditLogCrashed(t testing.TB, n int) *auditLog {
	t.Helper()
	l := &auditLog{dir: t.TempDir(), anchorDir: t.TempDir()}
	var err error
	if l.anchor, err = fileanchor.New(l.anchorDir, auditReplica, nil); err != nil {
		t.Fatal(err)
	}
	down := &failingStore{Anchor: l.anchor}
	lg, err := audit.Open(audit.Config{Dir: l.dir, Key: auditTestKey, Anchor: down, Replica: auditReplica})
	if err != nil {
		t.Fatal(err)
	}
	appendN(t, lg, n)
	down.fail = true
	if err := lg.Close(); err == nil {
		t.Fatal("Close stored its checkpoint")
	}
	return l
}

// failingStore is an anchor whose Store fails once fail is set.
type failingStore struct {
	audit.Anchor
	fail bool
}

func (a *failingStore) Store(ctx context.Context, cp []byte, v uint64) (uint64, error) {
	if a.fail {
		return 0, fmt.Errorf("anchor unreachable (test)")
	}
	return a.Anchor.Store(ctx, cp, v)
}

// appendForged appends a correctly chained record to l's log, as anyone
// could: a reveal by an identity that never made it.
func appendForged(t testing.TB, l *auditLog) {
	t.Helper()
	editLines(t, l.file(1), func(ls [][]byte) [][]byte {
		rec := []byte(`{"v":2,"seq":0,"prev":"","rec":{"time":"2025-01-01T00:00:00Z","identity":"spiffe://ttp.test/officer-fake","peer":"","method":"Detokenize","outcome":"ok"},"hash":""}` + "\n")
		return rehash(t, append(ls[:len(ls)-1], rec, nil), len(ls)-1)
	})
}

func editLines(t testing.TB, path string, f func([][]byte) [][]byte) {
	t.Helper()
	b, err := os.ReadFile(path)
	if err != nil {
		t.Fatal(err)
	}
	lines := f(bytes.SplitAfter(b, []byte("\n")))
	if err := os.WriteFile(path, bytes.Join(lines, nil), 0o600); err != nil {
		t.Fatal(err)
	}
}

// rehash rewrites lines[from:] (from > 0) into a consistent chain, as anyone can: the
// chain is unkeyed.
func rehash(t testing.TB, lines [][]byte, from int) [][]byte {
	t.Helper()
	var before struct{ Hash string }
	if err := json.Unmarshal(lines[from-1], &before); err != nil {
		t.Fatal(err)
	}
	prev, _ := hex.DecodeString(before.Hash)
	for j := from; j < len(lines) && len(lines[j]) > 0; j++ {
		var w struct {
			Seq uint64
			Rec json.RawMessage
		}
		if err := json.Unmarshal(lines[j], &w); err != nil {
			t.Fatal(err)
		}
		w.Seq = uint64(j + 1)
		h := sha256.New()
		fmt.Fprintf(h, "jeton/audit/v2\x00%s{\"v\":2,\"seq\":%d,\"rec\":%s}", prev, w.Seq, w.Rec)
		sum := h.Sum(nil)
		lines[j] = fmt.Appendf(nil, "{\"v\":2,\"seq\":%d,\"prev\":\"%x\",\"rec\":%s,\"hash\":\"%x\"}\n", w.Seq, prev, w.Rec, sum)
		prev = sum
	}
	return lines
}

// TestAuditVerify runs jeton audit verify as a verifier would: with the
// public key and the checkpoint only, no secret.
func TestAuditVerify(t *testing.T) {
	good := writeAuditLog(t, 5)

	edited := writeAuditLog(t, 5)
	editLines(t, edited.file(1), func(ls [][]byte) [][]byte {
		ls[2] = bytes.Replace(ls[2], []byte("vetting"), []byte("payroll"), 1)
		return ls
	})
	lastDeleted := writeAuditLog(t, 5)
	editLines(t, lastDeleted.file(1), func(ls [][]byte) [][]byte { return ls[:5] })
	reordered := writeAuditLog(t, 5)
	editLines(t, reordered.file(1), func(ls [][]byte) [][]byte {
		ls[2], ls[3] = ls[3], ls[2]
		return rehash(t, ls, 2)
	})
	wiped := writeAuditLog(t, 5)
	os.Remove(wiped.file(1))
	rolledBack := &auditLog{dir: t.TempDir(), anchorDir: t.TempDir()}
	rolledBack.anchor, _ = fileanchor.New(rolledBack.anchorDir, auditReplica, nil)
	lg := openAuditLog(t, rolledBack)
	appendN(t, lg, 2)
	lg.Close()
	old, _ := os.ReadFile(rolledBack.file(1))
	lg = openAuditLog(t, rolledBack)
	appendN(t, lg, 3)
	lg.Close()
	os.WriteFile(rolledBack.file(1), old, 0o600)
	torn := writeAuditLogCrashed(t, 5)
	f, _ := os.OpenFile(torn.file(1), os.O_WRONLY|os.O_APPEND, 0)
	f.WriteString(`{"v":2,"seq":7,"prev":"ab`)
	f.Close()
	tornAfterClose := writeAuditLog(t, 5)
	f, _ = os.OpenFile(tornAfterClose.file(1), os.O_WRONLY|os.O_APPEND, 0)
	f.WriteString(`{"v":2,"seq":7,"prev":"ab`)
	f.Close()
	forgedAfterClose := writeAuditLog(t, 5)
	appendForged(t, forgedAfterClose)
	// After a crash and a restart, the log says which records no
	// checkpoint covered.
	recovered := writeAuditLogCrashed(t, 5)
	lg = openAuditLog(t, recovered)
	appendN(t, lg, 1)
	lg.Close()
	// A forger rewrites the log and signs a checkpoint with a key of
	// their own: the verifier's public key does not accept it.
	forged := writeAuditLog(t, 5)
	editLines(t, forged.file(1), func(ls [][]byte) [][]byte {
		ls[2] = bytes.Replace(ls[2], []byte("vetting"), []byte("payroll"), 1)
		return rehash(t, ls, 2)
	})
	forger, _ := fileanchor.New(t.TempDir(), auditReplica, nil)
	flg, err := audit.Open(audit.Config{Dir: t.TempDir(), Key: auditTestKey, Anchor: forger, Replica: auditReplica})
	if err != nil {
		t.Fatal(err)
	}
	flg.Close()
	forgedCP := filepath.Join(t.TempDir(), "forged.checkpoint")
	cp, _, _ := forger.Load(context.Background())
	os.WriteFile(forgedCP, cp, 0o600)

	// One file per record: 10 records, audit-000001..000011.
	rotated := &auditLog{dir: t.TempDir(), anchorDir: t.TempDir()}
	rotated.anchor, _ = fileanchor.New(rotated.anchorDir, auditReplica, nil)
	lg, err = audit.Open(audit.Config{Dir: rotated.dir, Key: auditTestKey, Anchor: rotated.anchor, Replica: auditReplica, MaxFileBytes: 1})
	if err != nil {
		t.Fatal(err)
	}
	appendN(t, lg, 10)
	lg.Close()
	tests := []struct {
		name       string
		args       []string
		wantCode   int
		wantStdout string // a substring
		wantStderr string // a substring
	}{
		{"good", good.verifyArgs(good.dir), 0, "records, last seq 6, signed checkpoint at seq 6", ""},
		{"good, files", good.verifyArgs(good.file(1)), 0, "last seq 6", ""},
		{"edited", edited.verifyArgs(edited.dir), 1, "", "audit-000001.jsonl:3: seq 3: bad hash"},
		{"last record deleted", lastDeleted.verifyArgs(lastDeleted.dir), 1, "", "seq 6: behind checkpoint"},
		{"reordered and re-hashed", reordered.verifyArgs(reordered.dir), 1, "", "seq 6: checkpoint mismatch"},
		{"wiped", wiped.verifyArgs(wiped.dir), 1, "", "seq 1: behind checkpoint"},
		{"older copy restored", rolledBack.verifyArgs(rolledBack.dir), 1, "", "seq 4: behind checkpoint"},
		{"torn final record", torn.verifyArgs(torn.dir), 0, "torn final record: 25 bytes at offset", ""},
		{"partial line after a clean stop", tornAfterClose.verifyArgs(tornAfterClose.dir), 1, "", "seq 7: past closed checkpoint"},
		{"record forged after a clean stop", forgedAfterClose.verifyArgs(forgedAfterClose.dir), 1, "", "seq 7: past closed checkpoint"},
		{"recovered after a crash", recovered.verifyArgs(recovered.dir), 0, "unclean stop before seq 7: records 2 to 6 were covered by no checkpoint", ""},
		{"closed", good.verifyArgs(good.dir), 0, "), closed at a clean stop", ""},
		{"forged checkpoint", []string{"audit", "verify", "--public-key", forged.publicKey(), "--checkpoint", forgedCP, forged.dir}, 1, "", "checkpoint signature"},
		{"no checkpoint", []string{"audit", "verify", "--public-key", good.publicKey(), good.dir}, exitUsage, "", "--public-key and --checkpoint, or --vault"},
		{"vault without a replica", []string{"audit", "verify", "--vault", good.dir}, exitUsage, "", "--vault needs --replica"},
		{"the log's replica", append(good.verifyArgs("--replica", auditReplica), good.dir), 0, "last seq 6", ""},
		{"another replica's log", append(good.verifyArgs("--replica", "replica-1"), good.dir), 1, "", `other replica (the checkpoint is of replica "replica-0", not "replica-1")`},
		{"partial, checkpoint not covered", append(good.verifyArgs("--partial"), rotated.file(9), rotated.file(10)), 1, "", "checkpoint not covered"},
		{"partial, covered", append(rotated.verifyArgs("--partial"), rotated.file(9), rotated.file(10), rotated.file(11)), 0, "last seq 11", ""},
		{"no files", good.verifyArgs(), exitUsage, "", "no log files"},
		{"no verb", []string{"audit"}, exitUsage, "", "usage"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			r := jeton(t, nil, "", tt.args...)
			if r.code != tt.wantCode || !strings.Contains(r.stdout, tt.wantStdout) || !strings.Contains(r.stderr, tt.wantStderr) {
				t.Errorf("code %d, stdout %q, stderr %q; want %d, stdout containing %q, stderr containing %q",
					r.code, r.stdout, r.stderr, tt.wantCode, tt.wantStdout, tt.wantStderr)
			}
		})
	}
}

// TestAuditArchive follows the documented recovery: archive, restart, and
// verify across the break.
func TestAuditArchive(t *testing.T) {
	l := writeAuditLog(t, 3)
	// jetond still running: refused.
	lg := openAuditLog(t, l)
	if r := jeton(t, nil, "", "audit", "archive", "--dir", l.dir, "--reason", "test"); r.code == 0 || !strings.Contains(r.stderr, "stop jetond first") {
		t.Fatalf("archive of an open log: code %d, stderr %q", r.code, r.stderr)
	}
	lg.Close()
	if r := jeton(t, nil, "", "audit", "archive", "--dir", l.dir); r.code != exitUsage {
		t.Fatalf("archive without a reason: code %d", r.code)
	}
	r := jeton(t, nil, "", "audit", "archive", "--dir", l.dir, "--reason", "disk replaced (test)")
	if r.code != 0 || !strings.Contains(r.stdout, "archived 1 log files to archived/") {
		t.Fatalf("archive: code %d, stdout %q, stderr %q", r.code, r.stdout, r.stderr)
	}
	lg = openAuditLog(t, l)
	appendN(t, lg, 2)
	lg.Close()
	r = jeton(t, nil, "", l.verifyArgs(l.dir)...)
	if r.code != 0 || !strings.Contains(r.stdout, "last seq 3, signed checkpoint at seq 3") ||
		!strings.Contains(r.stdout, "ok: which follows chain") || !strings.Contains(r.stdout, `"disk replaced (test)"`) {
		t.Fatalf("verify across the break: code %d, stdout %q, stderr %q", r.code, r.stdout, r.stderr)
	}
}
