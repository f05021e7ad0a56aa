package fileanchor

import (
	"context"
	"os"
	"path/filepath"
	"slices"
	"testing"
)

type recordedFile struct {
	syncFile
	path  string
	syncs *[]string
}

func (f recordedFile) Sync() error {
	*f.syncs = append(*f.syncs, f.path)
	return f.syncFile.Sync()
}

// TestStoreDurable: Store fsyncs the new checkpoint's content before the
// rename puts it in place, and the directory after, so that a power loss
// leaves the stored checkpoint or the one before it, not an empty file
// (which would stop jetond from starting) or an older one.
func TestStoreDurable(t *testing.T) {
	var syncs []string
	orig := openFile
	t.Cleanup(func() { openFile = orig })
	openFile = func(name string, flag int, perm os.FileMode) (syncFile, error) {
		f, err := orig(name, flag, perm)
		if err != nil {
			return nil, err
		}
		return recordedFile{syncFile: f, path: name, syncs: &syncs}, nil
	}
	dir := t.TempDir()
	a, err := New(dir, "replica-0", nil)
	if err != nil {
		t.Fatal(err)
	}
	if _, err := a.Store(context.Background(), []byte("checkpoint one\n"), 0); err != nil {
		t.Fatal(err)
	}
	path := CheckpointPath(dir, "replica-0")
	want := []string{path + ".tmp", filepath.Dir(path)}
	if !slices.Equal(syncs, want) {
		t.Fatalf("fsyncs = %v, want %v (the content, then the directory after the rename)", syncs, want)
	}
	if b, err := os.ReadFile(path); err != nil || string(b) != "checkpoint one\n" {
		t.Fatalf("stored: %q, %v", b, err)
	}
}
