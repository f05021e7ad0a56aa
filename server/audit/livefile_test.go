package audit_test

import (
	"context"
	"errors"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/jeton-dev/jeton/server/audit"
)

// TestLiveFileChanged changes the live file in place while the log runs:
// truncated (logrotate's copytruncate), cut back by a record, or appended
// to by another process. Its identity (device, inode) is unchanged, so
// only its size tells. The log must notice, whether an Append or a
// readiness probe comes first, refuse every later record for good, and
// anchor nothing it did not acknowledge.
func TestLiveFileChanged(t *testing.T) {
	changes := []struct {
		name   string
		change func(t *testing.T, path string)
	}{
		{"truncated to zero (copytruncate)", func(t *testing.T, path string) {
			if err := os.Truncate(path, 0); err != nil {
				t.Fatal(err)
			}
		}},
		{"last record cut off", func(t *testing.T, path string) {
			ls := readLines(t, path)
			writeInPlace(t, path, ls[:len(ls)-1])
		}},
		{"a line appended by another process", func(t *testing.T, path string) {
			f, err := os.OpenFile(path, os.O_WRONLY|os.O_APPEND, 0)
			if err != nil {
				t.Fatal(err)
			}
			f.WriteString(`{"v":2,"seq":99}` + "\n")
			f.Close()
		}},
	}
	for _, c := range changes {
		for _, first := range []string{"Healthy", "Append"} {
			t.Run(c.name+", seen by "+first, func(t *testing.T) {
				dir, a := t.TempDir(), newFileAnchor(t)
				l := openLog(t, dir, func(cfg *audit.Config) {
					anchoredConfig(a)(cfg)
					cfg.CheckpointEvery, cfg.CheckpointInterval = 1000, time.Hour
				})
				for i := range 3 {
					mustAppend(t, l, i)
				}
				if err := l.Healthy(); err != nil {
					t.Fatalf("Healthy before the change: %v", err)
				}
				c.change(t, logFile(dir, 1))
				check := map[string]func() error{
					"Healthy": l.Healthy,
					"Append":  func() error { return l.Append(context.Background(), rec(10)) },
				}
				order := []string{first, "Append", "Healthy"}
				if first == "Append" {
					order = []string{"Append", "Healthy", "Append"}
				}
				for _, what := range order {
					err := check[what]()
					if !errors.Is(err, audit.ErrUnavailable) || !strings.Contains(err.Error(), "truncated or written to by another process") {
						t.Fatalf("%s after the file was changed in place = %v; want ErrUnavailable naming the change", what, err)
					}
				}
				if err := l.Close(); err != nil {
					t.Fatal(err)
				}
				if got := anchoredSeq(t, a); got != 4 {
					t.Fatalf("anchored at seq %d, want 4: the last record acknowledged", got)
				}
				if b, _ := os.ReadFile(logFile(dir, 1)); strings.Contains(string(b), caseRef(10)) {
					t.Fatal("a refused record was written into the changed file")
				}
			})
		}
	}
}

// writeInPlace rewrites path's content without replacing the file (same
// inode), as an in-place editor or a truncating tool would.
func writeInPlace(t testing.TB, path string, lines [][]byte) {
	t.Helper()
	var b []byte
	for _, l := range lines {
		b = append(b, l...)
		if len(l) == 0 || l[len(l)-1] != '\n' {
			b = append(b, '\n')
		}
	}
	f, err := os.OpenFile(path, os.O_WRONLY|os.O_TRUNC, 0)
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	if _, err := f.Write(b); err != nil {
		t.Fatal(err)
	}
}

// TestTruncatedWhileFailing: after a failed write the log reopens the file
// and cuts it back to its last record. If the file meanwhile shrank below
// that (truncated by someone else), cutting it "back" would extend it
// with zeros; the log must refuse instead.
func TestTruncatedWhileFailing(t *testing.T) {
	dir := t.TempDir()
	fs := &faultFS{}
	l := openLog(t, dir, func(c *audit.Config) { anchoredConfig(newFileAnchor(t))(c); c.OpenFile = fs.OpenFile })
	for i := range 3 {
		mustAppend(t, l, i)
	}
	fs.set(func(fs *faultFS) { fs.tornWrite, fs.failTrunc = true, true })
	if err := l.Append(context.Background(), rec(3)); !errors.Is(err, audit.ErrUnavailable) {
		t.Fatalf("Append during the fault = %v", err)
	}
	fs.set(func(fs *faultFS) { fs.tornWrite, fs.failTrunc = false, false })
	if err := os.Truncate(logFile(dir, 1), 0); err != nil {
		t.Fatal(err)
	}
	if err := l.Append(context.Background(), rec(4)); !errors.Is(err, audit.ErrUnavailable) {
		t.Fatalf("Append after the file was truncated = %v, want ErrUnavailable", err)
	}
	if fi, err := os.Stat(logFile(dir, 1)); err != nil || fi.Size() != 0 {
		t.Fatalf("the truncated file is now %d bytes (%v): the log wrote into it", fi.Size(), err)
	}
}

// TestNewFileDirSynced: a log file's directory entry must be durable
// before any record in it is acknowledged or anchored. Otherwise a power
// loss on a fresh replica could lose audit-000001.jsonl while the anchor
// holds its checkpoint: a freshly anchored log would look wiped. The same
// holds for each file rotation opens, and for the audit directory itself
// in its parent.
func TestNewFileDirSynced(t *testing.T) {
	parent := t.TempDir()
	dir := filepath.Join(parent, "audit")
	ev := &eventFS{}
	a := &eventAnchor{Anchor: newFileAnchor(t), ev: ev}
	l := openLog(t, dir, func(c *audit.Config) {
		anchoredConfig(a)(c)
		c.OpenFile, c.MaxFileBytes = ev.OpenFile, 1
	})
	mustAppend(t, l, 0) // rotates into audit-000002.jsonl
	got := ev.list()
	// after returns the index of the first event want after index from,
	// or -1.
	after := func(from int, want string) int {
		if from < 0 {
			return -1
		}
		if i := slices.Index(got[from:], want); i >= 0 {
			return from + i
		}
		return -1
	}
	store := slices.Index(got, "store")
	for _, c := range []struct {
		what         string
		from, before int // the sync must come after from, before before
		sync         string
	}{
		{"the audit directory's entry in its parent", 0, store, "syncdir " + parent},
		{"audit-000001.jsonl's entry", slices.Index(got, "create audit-000001.jsonl"), store, "syncdir " + dir},
		{"audit-000002.jsonl's entry", slices.Index(got, "create audit-000002.jsonl"),
			after(slices.Index(got, "create audit-000002.jsonl"), "sync audit-000002.jsonl"), "syncdir " + dir},
	} {
		if i := after(c.from, c.sync); c.from < 0 || i < 0 || c.before < 0 || i > c.before {
			t.Errorf("%s is not made durable before the records it holds are acknowledged or anchored; events %q", c.what, got)
		}
	}
}

// eventFS records, in order, files created, file fsyncs and directory
// fsyncs through the OpenFile seam.
type eventFS struct {
	mu     sync.Mutex
	events []string
}

func (e *eventFS) add(s string) {
	e.mu.Lock()
	e.events = append(e.events, s)
	e.mu.Unlock()
}

func (e *eventFS) list() []string {
	e.mu.Lock()
	defer e.mu.Unlock()
	return slices.Clone(e.events)
}

func (e *eventFS) OpenFile(name string, flag int, perm os.FileMode) (audit.File, error) {
	_, statErr := os.Stat(name)
	f, err := os.OpenFile(name, flag, perm)
	if err != nil {
		return nil, err
	}
	fi, err := f.Stat()
	if err != nil {
		f.Close()
		return nil, err
	}
	if fi.IsDir() {
		return &eventFile{File: f, ev: e, sync: "syncdir " + name}, nil
	}
	if os.IsNotExist(statErr) {
		e.add("create " + filepath.Base(name))
	}
	return &eventFile{File: f, ev: e, sync: "sync " + filepath.Base(name)}, nil
}

type eventFile struct {
	*os.File
	ev   *eventFS
	sync string
}

func (f *eventFile) Sync() error {
	err := f.File.Sync()
	f.ev.add(f.sync)
	return err
}

// eventAnchor adds "store" to the events when a checkpoint is stored.
type eventAnchor struct {
	audit.Anchor
	ev *eventFS
}

func (a *eventAnchor) Store(ctx context.Context, cp []byte, v uint64) (uint64, error) {
	a.ev.add("store")
	return a.Anchor.Store(ctx, cp, v)
}

// TestFileChangedDuringCommit: another process writes to the file while
// a commit is under way, after the check that precedes the write. The
// check after the fsync must refuse the batch: its records are in the
// file, but at the wrong place, and are not acknowledged or anchored.
func TestFileChangedDuringCommit(t *testing.T) {
	dir, a := t.TempDir(), newFileAnchor(t)
	var intrude sync.Once
	armed := make(chan struct{})
	open := func(name string, flag int, perm os.FileMode) (audit.File, error) {
		f, err := os.OpenFile(name, flag, perm)
		if err != nil {
			return nil, err
		}
		return &intrudingFile{File: f, sync: func() {
			select {
			case <-armed:
			default:
				return
			}
			intrude.Do(func() {
				g, err := os.OpenFile(name, os.O_WRONLY|os.O_APPEND, 0)
				if err != nil {
					t.Error(err)
					return
				}
				g.WriteString("intruder\n")
				g.Close()
			})
		}}, nil
	}
	l := openLog(t, dir, func(c *audit.Config) {
		anchoredConfig(a)(c)
		c.OpenFile, c.CheckpointEvery, c.CheckpointInterval = open, 1000, time.Hour
	})
	mustAppend(t, l, 0)
	close(armed)
	if err := l.Append(context.Background(), rec(1)); !errors.Is(err, audit.ErrUnavailable) ||
		!strings.Contains(err.Error(), "truncated or written to by another process") {
		t.Fatalf("Append while another process wrote to the file = %v, want ErrUnavailable naming it", err)
	}
	if err := l.Healthy(); !errors.Is(err, audit.ErrUnavailable) {
		t.Fatalf("Healthy = %v, want ErrUnavailable", err)
	}
	if err := l.Close(); err != nil {
		t.Fatal(err)
	}
	if got := anchoredSeq(t, a); got != 2 {
		t.Fatalf("anchored at seq %d, want 2: the refused record must not be anchored", got)
	}
}

// intrudingFile calls sync before each fsync.
type intrudingFile struct {
	*os.File
	sync func()
}

func (f *intrudingFile) Sync() error {
	f.sync()
	return f.File.Sync()
}
