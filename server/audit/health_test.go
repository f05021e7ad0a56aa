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
		f, err := os.OpenFile(name, flag, perm)
		return &brokenFile{File: f, broken: &broken}, err
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

// brokenFile fails writes while broken is set.
type brokenFile struct {
	*os.File
	broken *atomic.Bool
}

func (f *brokenFile) Write(p []byte) (int, error) {
	if f.broken.Load() {
		return 0, errors.New("disk gone (test)")
	}
	return f.File.Write(p)
}
