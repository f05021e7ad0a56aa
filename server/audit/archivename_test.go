package audit_test

import (
	"bytes"
	"encoding/json"
	"errors"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/jeton-dev/jeton/server/audit"
	"github.com/jeton-dev/jeton/server/audit/fileanchor"
)

// TestArchiveNamesNeverCollide: two archives made at the same clock
// reading (a clock that repeats or steps back, or two breaks within its
// resolution) each get their own directory. Moving the second chain's
// files into the first archive would overwrite the first chain, which a
// verifier could then no longer check.
func TestArchiveNamesNeverCollide(t *testing.T) {
	dir, a := t.TempDir(), newFileAnchor(t)
	var dirs []string
	for i := range 3 {
		l := openLog(t, dir, anchoredConfig(a))
		mustAppend(t, l, i)
		l.Close()
		res, err := audit.Archive(dir, "test break", testTime)
		if err != nil {
			t.Fatalf("Archive %d: %v", i, err)
		}
		if !filepath.IsLocal(res.Dir) {
			t.Fatalf("Archive %d put the files in %q, outside the audit directory", i, res.Dir)
		}
		for _, d := range dirs {
			if d == res.Dir {
				t.Fatalf("Archive %d reused the directory %s of an earlier archive", i, d)
			}
		}
		dirs = append(dirs, res.Dir)
	}
	l := openLog(t, dir, anchoredConfig(a))
	mustAppend(t, l, 9)
	l.Close()
	hist, err := audit.VerifyHistory(dir, anchorOpts(t, a))
	if err != nil || len(hist) != 4 {
		t.Fatalf("VerifyHistory = %d chains, %v; want the current chain and its three archived predecessors", len(hist), err)
	}
	for i, d := range dirs {
		if files, _ := filepath.Glob(filepath.Join(dir, d, "audit-*.jsonl")); len(files) != 1 {
			t.Errorf("archive %d (%s) holds %d log files, want 1", i, d, len(files))
		}
	}
	if _, err := os.Stat(filepath.Join(dir, "NEW-CHAIN")); !os.IsNotExist(err) {
		t.Fatalf("NEW-CHAIN left behind: %v", err)
	}
}

// TestNewChainErasureDetected: an operator with a shell tries to hide
// records behind the recovery procedure. Each attempt leaves a history
// that VerifyHistory, holding only the public key and the anchor's
// checkpoint, refuses; a request naming a place outside the archive
// directory is refused by Open itself.
func TestNewChainErasureDetected(t *testing.T) {
	// setup: chain 1, archived; chain 2 live, with records to hide.
	setup := func(t *testing.T) (string, *fileanchor.Anchor, string) {
		dir, a := t.TempDir(), newFileAnchor(t)
		l := openLog(t, dir, anchoredConfig(a))
		mustAppend(t, l, 0)
		l.Close()
		res, err := audit.Archive(dir, "first break (test)", testTime)
		if err != nil {
			t.Fatal(err)
		}
		l = openLog(t, dir, anchoredConfig(a))
		mustAppend(t, l, 1)
		mustAppend(t, l, 2)
		l.Close()
		if _, err := audit.VerifyHistory(dir, anchorOpts(t, a)); err != nil {
			t.Fatalf("VerifyHistory before tampering: %v", err)
		}
		return dir, a, res.Dir
	}
	restart := func(t *testing.T, dir string, a *fileanchor.Anchor) {
		l := openLog(t, dir, anchoredConfig(a))
		mustAppend(t, l, 3)
		l.Close()
	}
	want := func(t *testing.T, dir string, a *fileanchor.Anchor, reason string) {
		t.Helper()
		hist, err := audit.VerifyHistory(dir, anchorOpts(t, a))
		var ve *audit.VerifyError
		if !errors.As(err, &ve) || ve.Reason != reason {
			t.Fatalf("VerifyHistory = %d chains, %v; want %q", len(hist), err, reason)
		}
	}
	forge := func(t *testing.T, dir, archive string) {
		t.Helper()
		b, _ := json.Marshal(map[string]any{"archive": archive, "reason": "routine", "time": testTime})
		if err := os.WriteFile(filepath.Join(dir, "NEW-CHAIN"), b, 0o600); err != nil {
			t.Fatal(err)
		}
	}

	t.Run("archive erased", func(t *testing.T) {
		dir, a, arch := setup(t)
		if err := os.RemoveAll(filepath.Join(dir, arch)); err != nil {
			t.Fatal(err)
		}
		want(t, dir, a, audit.ReasonMissingFile)
	})
	t.Run("archive cut short", func(t *testing.T) {
		dir, a, arch := setup(t)
		f := filepath.Join(dir, arch, "audit-000001.jsonl")
		b, err := os.ReadFile(f)
		if err != nil {
			t.Fatal(err)
		}
		cut := bytes.LastIndexByte(b[:len(b)-1], '\n') + 1
		if err := os.WriteFile(f, b[:cut], 0o600); err != nil {
			t.Fatal(err)
		}
		want(t, dir, a, audit.ReasonBehindCheckpoint)
	})
	t.Run("live chain wiped behind a forged request", func(t *testing.T) {
		dir, a, _ := setup(t)
		removeLogFiles(t, dir)
		if err := os.Mkdir(filepath.Join(dir, "archived", "nothing-here"), 0o700); err != nil {
			t.Fatal(err)
		}
		forge(t, dir, "archived/nothing-here")
		restart(t, dir, a)
		want(t, dir, a, audit.ReasonMissingFile)
	})
	t.Run("live chain wiped behind a request naming the older archive", func(t *testing.T) {
		dir, a, arch := setup(t)
		removeLogFiles(t, dir)
		forge(t, dir, arch)
		restart(t, dir, a)
		want(t, dir, a, audit.ReasonCheckpoint)
	})
	t.Run("request naming a place outside the archives", func(t *testing.T) {
		for _, place := range []string{"", ".", "..", "../elsewhere", "/tmp", "archived", "archived/../x", "archived/", "archived/missing", "archived/x/y", "audit-000001.jsonl"} {
			dir, a, _ := setup(t)
			removeLogFiles(t, dir)
			forge(t, dir, place)
			_, err := audit.Open(audit.Config{Dir: dir, Key: testKey, Anchor: a, Replica: testReplica})
			if err == nil || !strings.Contains(err.Error(), "NEW-CHAIN") {
				t.Fatalf("Open with a request naming %q = %v; want a refusal naming NEW-CHAIN", place, err)
			}
		}
	})
}
