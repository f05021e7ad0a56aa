package audit

import (
	"os"
	"path/filepath"
	"testing"
)

// The log's own files sync with fdatasync where the system has it, and a
// failed sync is an error the commit sees (and then refuses its records).
func TestDataSyncFile(t *testing.T) {
	path := filepath.Join(t.TempDir(), "audit-test.jsonl")
	f, err := osOpenFile(path, os.O_CREATE|os.O_WRONLY|os.O_APPEND, 0o600)
	if err != nil {
		t.Fatal(err)
	}
	if _, ok := f.(dataSyncFile); !ok {
		t.Fatalf("osOpenFile returned a %T, want a dataSyncFile", f)
	}
	if _, err := f.Write([]byte("{}\n")); err != nil {
		t.Fatal(err)
	}
	if err := f.Sync(); err != nil {
		t.Fatalf("Sync: %v", err)
	}
	if err := f.Close(); err != nil {
		t.Fatal(err)
	}
	if err := f.Sync(); err == nil {
		t.Fatal("Sync of a closed file succeeded")
	}
	if b, err := os.ReadFile(path); err != nil || string(b) != "{}\n" {
		t.Fatalf("file holds %q, %v", b, err)
	}
}
