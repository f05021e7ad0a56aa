package audit

import (
	"os"
	"path/filepath"
	"slices"
	"testing"
	"time"
)

// syncRecorder is a file seam that records, in order, each fsync and
// which path it was for.
type syncRecorder struct{ syncs []string }

type recordedFile struct {
	File
	path string
	r    *syncRecorder
}

func (f recordedFile) Sync() error {
	f.r.syncs = append(f.r.syncs, f.path)
	return f.File.Sync()
}

func (r *syncRecorder) open(name string, flag int, perm os.FileMode) (File, error) {
	f, err := osOpenFile(name, flag, perm)
	if err != nil {
		return nil, err
	}
	return recordedFile{File: f, path: name, r: r}, nil
}

// TestArchiveDurable: after Archive returns, a power loss must leave the
// files in the archive and a whole request, so the request's content is
// fsynced, and so is every directory a rename or the request changed:
// the archive, archived/ (a new entry), and the audit directory itself.
func TestArchiveDurable(t *testing.T) {
	dir := t.TempDir()
	for _, n := range []string{fileName(1), fileName(2)} {
		if err := os.WriteFile(filepath.Join(dir, n), []byte("x\n"), 0o600); err != nil {
			t.Fatal(err)
		}
	}
	var r syncRecorder
	res, err := archive(dir, "test", time.Date(2025, 1, 2, 3, 4, 5, 0, time.UTC), r.open)
	if err != nil {
		t.Fatal(err)
	}
	req := filepath.Join(dir, newChainName)
	want := []string{req, filepath.Join(dir, res.Dir), filepath.Join(dir, archivedDir), dir}
	for _, p := range want {
		if !slices.Contains(r.syncs, p) {
			t.Errorf("%s was not fsynced; fsyncs: %v", p, r.syncs)
		}
	}
	if i, j := slices.Index(r.syncs, req), slices.Index(r.syncs, dir); i < 0 || j < i {
		t.Errorf("the audit directory was fsynced before the request's content: %v", r.syncs)
	}
	if b, err := os.ReadFile(req); err != nil || len(b) == 0 {
		t.Fatalf("request: %q, %v", b, err)
	}
}
