package audit

import (
	"context"
	"errors"
	"os"
	"sync/atomic"
	"testing"
)

// TestHealthy follows the log through a disk failure and its recovery, and
// through Close.
func TestHealthy(t *testing.T) {
	var broken atomic.Bool
	open := func(name string, flag int, perm os.FileMode) (File, error) {
		if broken.Load() {
			return nil, errors.New("disk gone (test)")
		}
		return os.OpenFile(name, flag, perm)
	}
	l, err := Open(Config{Dir: t.TempDir(), Key: make([]byte, KeySize), OpenFile: open})
	if err != nil {
		t.Fatal(err)
	}
	ctx := context.Background()
	if err := l.Healthy(); err != nil {
		t.Fatalf("new log: %v", err)
	}
	if err := l.Append(ctx, Record{Identity: "test", Method: "Detokenize", Outcome: "ok"}); err != nil {
		t.Fatal(err)
	}
	if err := l.Healthy(); err != nil {
		t.Fatalf("after a commit: %v", err)
	}

	broken.Store(true)
	// HEAD is rewritten at every commit through OpenFile, so this fails.
	if err := l.Append(ctx, Record{Identity: "test", Method: "Detokenize", Outcome: "ok"}); err == nil {
		t.Fatal("Append succeeded on a broken disk")
	}
	if err := l.Healthy(); !errors.Is(err, ErrUnavailable) {
		t.Fatalf("after a failed commit: %v, want ErrUnavailable", err)
	}

	// Recovery shows without any Append.
	broken.Store(false)
	if err := l.Healthy(); err != nil {
		t.Fatalf("after the disk came back: %v", err)
	}
	if err := l.Close(); err != nil {
		t.Fatal(err)
	}
	if err := l.Healthy(); !errors.Is(err, ErrUnavailable) {
		t.Fatalf("after Close: %v, want ErrUnavailable", err)
	}
}
