package audit_test

import (
	"os"
	"path/filepath"
	"testing"

	"github.com/jeton-dev/jeton/server/audit"
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
