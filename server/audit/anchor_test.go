package audit_test

import (
	"context"
	"crypto/ed25519"
	"errors"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/jeton-dev/jeton/server/audit"
)

// countingAnchor counts stored checkpoints and can be made to fail.
type countingAnchor struct {
	audit.Anchor
	stores atomic.Int64
	down   atomic.Bool
}

var errAnchorDown = errors.New("anchor down (test)")

func (a *countingAnchor) Sign(ctx context.Context, msg []byte) ([]byte, ed25519.PublicKey, error) {
	if a.down.Load() {
		return nil, nil, errAnchorDown
	}
	return a.Anchor.Sign(ctx, msg)
}

func (a *countingAnchor) Store(ctx context.Context, cp []byte, v uint64) (uint64, error) {
	if a.down.Load() {
		return 0, errAnchorDown
	}
	nv, err := a.Anchor.Store(ctx, cp, v)
	if err == nil {
		a.stores.Add(1)
	}
	return nv, err
}

func anchoredSeq(t testing.TB, a audit.Anchor) uint64 {
	t.Helper()
	opts := anchorOpts(t, a)
	cp, err := audit.OpenCheckpoint(opts.Checkpoint, opts.Keys)
	if err != nil {
		t.Fatal(err)
	}
	return cp.Seq
}

// waitFor polls cond; the bound is a limit for a stuck test, not a timing
// claim.
func waitFor(t testing.TB, what string, cond func() bool) {
	t.Helper()
	deadline := time.Now().Add(30 * time.Second)
	for !cond() {
		if time.Now().After(deadline) {
			t.Fatalf("timed out waiting for %s", what)
		}
		time.Sleep(5 * time.Millisecond)
	}
}

func TestCheckpointCadence(t *testing.T) {
	t.Run("every N records", func(t *testing.T) {
		a := &countingAnchor{Anchor: newFileAnchor(t)}
		l := openLog(t, t.TempDir(), func(c *audit.Config) {
			anchoredConfig(a)(c)
			c.CheckpointEvery, c.CheckpointInterval = 5, time.Hour
		})
		if got := anchoredSeq(t, a); got != 1 {
			t.Fatalf("a new chain is anchored at seq %d, want 1 (its first record)", got)
		}
		for i := range 4 {
			mustAppend(t, l, i)
		}
		if got := anchoredSeq(t, a); got != 1 {
			t.Fatalf("anchored at seq %d after 4 records, want still 1", got)
		}
		mustAppend(t, l, 4)
		waitFor(t, "a checkpoint after 5 records", func() bool { return anchoredSeq(t, a) == 6 })
	})
	t.Run("every T", func(t *testing.T) {
		a := &countingAnchor{Anchor: newFileAnchor(t)}
		l := openLog(t, t.TempDir(), func(c *audit.Config) {
			anchoredConfig(a)(c)
			c.CheckpointEvery, c.CheckpointInterval = 1000, 10*time.Millisecond
		})
		mustAppend(t, l, 0)
		waitFor(t, "a checkpoint by the interval", func() bool { return anchoredSeq(t, a) == 2 })
		n := a.stores.Load()
		time.Sleep(50 * time.Millisecond)
		if a.stores.Load() != n {
			t.Fatal("checkpoints are stored with nothing new to anchor")
		}
	})
	t.Run("at close", func(t *testing.T) {
		a := &countingAnchor{Anchor: newFileAnchor(t)}
		l := openLog(t, t.TempDir(), func(c *audit.Config) {
			anchoredConfig(a)(c)
			c.CheckpointEvery, c.CheckpointInterval = 1000, time.Hour
		})
		for i := range 3 {
			mustAppend(t, l, i)
		}
		if err := l.Close(); err != nil {
			t.Fatal(err)
		}
		if got := anchoredSeq(t, a); got != 4 {
			t.Fatalf("anchored at seq %d after Close, want 4", got)
		}
	})
}

// While the anchor is down, reveals go on (records are durable locally)
// up to MaxUnanchored records, then fail closed; readiness follows; both
// recover when the anchor answers again.
func TestAnchorDownBacklog(t *testing.T) {
	a := &countingAnchor{Anchor: newFileAnchor(t)}
	l := openLog(t, t.TempDir(), func(c *audit.Config) {
		anchoredConfig(a)(c)
		c.CheckpointEvery, c.CheckpointInterval, c.MaxUnanchored = 2, 5*time.Millisecond, 4
	})
	a.down.Store(true)
	for i := range 3 {
		mustAppend(t, l, i)
	}
	if err := l.Append(context.Background(), rec(3)); err != nil {
		t.Fatalf("4th unanchored record: %v", err)
	}
	if err := l.Append(context.Background(), rec(4)); !errors.Is(err, audit.ErrUnavailable) {
		t.Fatalf("Append past the backlog = %v, want ErrUnavailable", err)
	}
	if err := l.Healthy(); !errors.Is(err, audit.ErrUnavailable) {
		t.Fatalf("Healthy with a full backlog = %v", err)
	}
	a.down.Store(false)
	waitFor(t, "the backlog to be anchored", func() bool { return l.Healthy() == nil })
	mustAppend(t, l, 5)
}

// TestDurableBeforeAnswer checks that Append returns only after an fsync
// that covers its record: the file's synced size, seen when Append
// returns, includes the record.
func TestDurableBeforeAnswer(t *testing.T) {
	var fs syncTrackingFS
	dir := t.TempDir()
	l := openLog(t, dir, func(c *audit.Config) { c.OpenFile = fs.OpenFile })
	var wg sync.WaitGroup
	for w := range 8 {
		wg.Go(func() {
			for i := range 20 {
				ref := caseRef(w*100 + i)
				r := rec(w*100 + i)
				if err := l.Append(context.Background(), r); err != nil {
					t.Error(err)
					return
				}
				if !fs.syncedHolds(ref) {
					t.Errorf("Append of %s returned before an fsync covered it", ref)
				}
			}
		})
	}
	wg.Wait()
}

// syncTrackingFS remembers the bytes of each file as of its last fsync.
type syncTrackingFS struct {
	mu     sync.Mutex
	synced []byte
}

func (fs *syncTrackingFS) OpenFile(name string, flag int, perm os.FileMode) (audit.File, error) {
	f, err := os.OpenFile(name, flag, perm)
	if err != nil {
		return nil, err
	}
	return &trackedFile{File: f, fs: fs}, nil
}

func (fs *syncTrackingFS) syncedHolds(s string) bool {
	fs.mu.Lock()
	defer fs.mu.Unlock()
	return strings.Contains(string(fs.synced), `"`+s+`"`)
}

type trackedFile struct {
	*os.File
	fs      *syncTrackingFS
	written []byte
}

func (f *trackedFile) Write(p []byte) (int, error) {
	f.fs.mu.Lock()
	f.written = append(f.written, p...)
	f.fs.mu.Unlock()
	return f.File.Write(p)
}

func (f *trackedFile) Sync() error {
	err := f.File.Sync()
	if err == nil {
		f.fs.mu.Lock()
		f.fs.synced = append(f.fs.synced, f.written...)
		f.written = nil
		f.fs.mu.Unlock()
	}
	return err
}

// TestReplacedFile replaces the live file as sed -i does (a copy renamed
// over it), and in the other ways a file can be taken from under a
// running server. The next commit must fail closed, for good, and
// readiness must go down with it; the documented recovery (Archive, then
// Open) starts a new chain that names the old one's last checkpoint, and
// the history verifies across the break with the public key only.
func TestReplacedFile(t *testing.T) {
	for _, tc := range []struct {
		name    string
		replace func(t *testing.T, path string)
		// undo is the operator's first step, when the real file still
		// exists elsewhere: put it back before archiving.
		undo func(t *testing.T, path string)
	}{
		{"copy renamed over it (sed -i)", func(t *testing.T, path string) {
			b, err := os.ReadFile(path)
			if err != nil {
				t.Fatal(err)
			}
			if err := os.WriteFile(path+".sed", b, 0o600); err != nil {
				t.Fatal(err)
			}
			if err := os.Rename(path+".sed", path); err != nil {
				t.Fatal(err)
			}
		}, nil},
		{"moved away and recreated (logrotate create)", func(t *testing.T, path string) {
			if err := os.Rename(path, path+".1"); err != nil {
				t.Fatal(err)
			}
			if err := os.WriteFile(path, nil, 0o600); err != nil {
				t.Fatal(err)
			}
		}, func(t *testing.T, path string) {
			if err := os.Rename(path+".1", path); err != nil {
				t.Fatal(err)
			}
		}},
		{"deleted", func(t *testing.T, path string) {
			if err := os.Remove(path); err != nil {
				t.Fatal(err)
			}
		}, nil},
	} {
		t.Run(tc.name, func(t *testing.T) {
			dir, a := t.TempDir(), newFileAnchor(t)
			l := openLog(t, dir, func(c *audit.Config) {
				anchoredConfig(a)(c)
				c.CheckpointEvery = 2
			})
			for i := range 4 {
				mustAppend(t, l, i)
			}
			waitFor(t, "a checkpoint", func() bool { return anchoredSeq(t, a) == 5 })
			before := loadCheckpoint(t, a)
			tc.replace(t, logFile(dir, 1))

			for i := range 3 {
				if err := l.Append(context.Background(), rec(10+i)); !errors.Is(err, audit.ErrUnavailable) {
					t.Fatalf("Append %d after the file was replaced = %v, want ErrUnavailable", i, err)
				}
				if err := l.Healthy(); !errors.Is(err, audit.ErrUnavailable) || !strings.Contains(err.Error(), "no longer the file the log opened") {
					t.Fatalf("Healthy after the file was replaced = %v", err)
				}
			}
			if err := l.Close(); err != nil {
				t.Fatal(err)
			}
			if got := loadCheckpoint(t, a); got.Seq != before.Seq || got.Head != before.Head || !got.Closed {
				t.Fatalf("checkpoint at Close = %v; want the last record acknowledged, %v, closed: a refused record was anchored", got, before)
			}
			closedCP := anchorOpts(t, a).Checkpoint

			// Recovery: archive, then start again.
			if tc.undo != nil {
				tc.undo(t, logFile(dir, 1))
			}
			if _, err := audit.Archive(dir, "live file replaced (test)", testTime); err != nil {
				t.Fatal(err)
			}
			l = openLog(t, dir, anchoredConfig(a))
			mustAppend(t, l, 20)
			if err := l.Close(); err != nil {
				t.Fatal(err)
			}
			hist, err := audit.VerifyHistory(dir, anchorOpts(t, a))
			if tc.name == "deleted" {
				// The archive holds nothing: the break shows, and fails.
				var ve *audit.VerifyError
				if !errors.As(err, &ve) || ve.Reason != audit.ReasonMissingFile || len(hist) != 1 {
					t.Fatalf("VerifyHistory = %d chains, %v; want the new chain, then a missing archive", len(hist), err)
				}
				return
			}
			if err != nil {
				t.Fatalf("VerifyHistory: %v", err)
			}
			if len(hist) != 2 || hist[0].Chain.Previous != string(closedCP) || hist[0].Chain.Reason != "live file replaced (test)" ||
				hist[1].Chain.ID != hist[0].Previous.Chain || hist[1].LastSeq != 5 || hist[0].LastSeq != 2 {
				t.Fatalf("history = %+v / %+v", hist[0].Report, hist[len(hist)-1].Report)
			}
		})
	}
}

// TestNewChainAfterLoss: a wiped directory is refused; the documented
// recovery records the loss and anchors a new chain; the history then
// fails at the break, since the old records are gone.
func TestNewChainAfterLoss(t *testing.T) {
	dir, a := t.TempDir(), newFileAnchor(t)
	l := openLog(t, dir, anchoredConfig(a))
	mustAppend(t, l, 0)
	l.Close()
	removeLogFiles(t, dir)
	_, err := audit.Open(audit.Config{Dir: dir, Key: testKey, Anchor: a, Replica: testReplica})
	if err == nil || !strings.Contains(err.Error(), "missing or empty") || !strings.Contains(err.Error(), "jeton audit archive --dir "+dir) {
		t.Fatalf("Open of a wiped log = %v; want a refusal that says what to do", err)
	}
	if _, err := audit.Archive(dir, "", testTime); err == nil {
		t.Fatal("Archive without a reason succeeded")
	}
	res, err := audit.Archive(dir, "disk lost (test)", testTime)
	if err != nil || res.Files != 0 {
		t.Fatalf("Archive = %+v, %v", res, err)
	}
	if _, err := audit.Archive(dir, "twice", testTime); err == nil {
		t.Fatal("a second Archive before jetond acted on the first succeeded")
	}
	l = openLog(t, dir, anchoredConfig(a))
	mustAppend(t, l, 1)
	l.Close()
	if _, err := os.Stat(filepath.Join(dir, "NEW-CHAIN")); !os.IsNotExist(err) {
		t.Fatalf("the request is still there after the new chain was anchored: %v", err)
	}
	hist, err := audit.VerifyHistory(dir, anchorOpts(t, a))
	if err == nil || len(hist) != 1 || hist[0].Chain.Reason != "disk lost (test)" {
		t.Fatalf("VerifyHistory = %v, %v; want the new chain, then the missing archive", hist, err)
	}
}

// Archive refuses while the log is open: a running server owns it.
func TestArchiveWhileOpen(t *testing.T) {
	dir := t.TempDir()
	openLog(t, dir, nil)
	if _, err := audit.Archive(dir, "test", testTime); err == nil {
		t.Fatal("Archive of an open log succeeded")
	}
}

// TestStartupAnchorChecks covers the start-up refusals that are about the
// anchor itself rather than the files.
func TestStartupAnchorChecks(t *testing.T) {
	t.Run("anchor unreachable", func(t *testing.T) {
		a := &countingAnchor{Anchor: newFileAnchor(t)}
		a.down.Store(true)
		if l, err := audit.Open(audit.Config{Dir: t.TempDir(), Key: testKey, Anchor: a, Replica: testReplica}); err == nil {
			l.Close()
			t.Fatal("a new chain opened without being anchored")
		}
	})
	t.Run("log but no checkpoint", func(t *testing.T) {
		dir := t.TempDir()
		l := openLog(t, dir, func(c *audit.Config) { c.Replica = testReplica })
		mustAppend(t, l, 0)
		l.Close()
		if l, err := audit.Open(audit.Config{Dir: dir, Key: testKey, Anchor: newFileAnchor(t), Replica: testReplica}); err == nil {
			l.Close()
			t.Fatal("Open continued a log its anchor knows nothing of")
		}
	})
	t.Run("checkpoint signed by another key", func(t *testing.T) {
		dir, a := t.TempDir(), newFileAnchor(t)
		l := openLog(t, dir, anchoredConfig(a))
		l.Close()
		other := newFileAnchor(t)
		cp, _, _ := a.Load(context.Background())
		if _, err := other.Store(context.Background(), cp, 0); err != nil {
			t.Fatal(err)
		}
		if l, err := audit.Open(audit.Config{Dir: dir, Key: testKey, Anchor: other, Replica: testReplica}); err == nil {
			l.Close()
			t.Fatal("Open accepted a checkpoint its public keys do not verify")
		}
	})
}

// TestAnchorNeverMovesBack: a rival copy of a replica's log (a restored
// backup started beside the real one) cannot move the anchor back. Its
// check-and-set fails, it reads the newer checkpoint, and it refuses to
// store its older one.
func TestAnchorNeverMovesBack(t *testing.T) {
	a := newFileAnchor(t)
	mod := func(c *audit.Config) {
		anchoredConfig(a)(c)
		c.CheckpointEvery, c.CheckpointInterval = 1000, time.Hour
	}
	real, rival := t.TempDir(), t.TempDir()
	l := openLog(t, real, mod)
	for i := range 3 {
		mustAppend(t, l, i)
	}
	l.Close()
	copyDir(t, real, rival)

	old := openLog(t, rival, mod) // reads the anchor at seq 4
	l = openLog(t, real, mod)
	for i := 3; i < 10; i++ {
		mustAppend(t, l, i)
	}
	if err := l.Close(); err != nil {
		t.Fatal(err)
	}
	// The rival's Open reopened the anchor's closed checkpoint, so the
	// real one found it open (as after a crash) and wrote a recovery
	// record: seq 5, then 7 records.
	if got := anchoredSeq(t, a); got != 12 {
		t.Fatalf("anchored at %d, want 12", got)
	}
	mustAppend(t, old, 100)
	if err := old.Close(); err == nil {
		t.Error("the rival's last checkpoint was stored without complaint")
	}
	if got := anchoredSeq(t, a); got != 12 {
		t.Fatalf("the rival moved the anchor back to seq %d", got)
	}
}

// TestReplacedByOlderCopy: records acknowledged after the last periodic
// checkpoint, then lost because the file was replaced by an older copy,
// are still anchored at Close; the history then shows the loss at the
// break instead of hiding it.
func TestReplacedByOlderCopy(t *testing.T) {
	dir, a := t.TempDir(), newFileAnchor(t)
	l := openLog(t, dir, func(c *audit.Config) {
		anchoredConfig(a)(c)
		c.CheckpointEvery, c.CheckpointInterval = 1000, time.Hour
	})
	mustAppend(t, l, 0)
	old, err := os.ReadFile(logFile(dir, 1))
	if err != nil {
		t.Fatal(err)
	}
	mustAppend(t, l, 1) // acknowledged, not yet anchored
	if err := os.WriteFile(logFile(dir, 1)+".bak", old, 0o600); err != nil {
		t.Fatal(err)
	}
	if err := os.Rename(logFile(dir, 1)+".bak", logFile(dir, 1)); err != nil {
		t.Fatal(err)
	}
	if err := l.Append(context.Background(), rec(2)); !errors.Is(err, audit.ErrUnavailable) {
		t.Fatalf("Append after the file was replaced = %v", err)
	}
	if err := l.Close(); err != nil {
		t.Fatal(err)
	}
	if got := anchoredSeq(t, a); got != 3 {
		t.Fatalf("anchored at seq %d at Close, want 3 (the last acknowledged record)", got)
	}
	if _, err := audit.Archive(dir, "replaced by an older copy (test)", testTime); err != nil {
		t.Fatal(err)
	}
	l = openLog(t, dir, anchoredConfig(a))
	l.Close()
	_, err = audit.VerifyHistory(dir, anchorOpts(t, a))
	var ve *audit.VerifyError
	if !errors.As(err, &ve) || ve.Reason != audit.ReasonBehindCheckpoint {
		t.Fatalf("VerifyHistory = %v; want the archive behind its checkpoint", err)
	}
}

// fakeClock is a clock tests move by hand.
type fakeClock struct {
	mu  sync.Mutex
	now time.Time
}

func (c *fakeClock) Now() time.Time {
	c.mu.Lock()
	defer c.mu.Unlock()
	return c.now
}

func (c *fakeClock) Advance(d time.Duration) {
	c.mu.Lock()
	c.now = c.now.Add(d)
	c.mu.Unlock()
}

// TestAnchorDownAgeBound: while the anchor is unreachable, records are
// durable locally but uncovered; an operator who blocks the anchor and
// then kills the server could rewrite them all. However few they are,
// once the oldest has waited longer than MaxUnanchoredAge (default five
// minutes, or three checkpoint intervals if longer) Append fails closed and readiness goes down; both
// recover once a checkpoint is stored again.
func TestAnchorDownAgeBound(t *testing.T) {
	for _, tt := range []struct {
		name     string
		interval time.Duration // CheckpointInterval; ticks retry the anchor
		maxAge   time.Duration // MaxUnanchoredAge; 0: the default
		bound    time.Duration // what it should be
	}{
		{"configured", 10 * time.Millisecond, 30 * time.Second, 30 * time.Second},
		{"default", 20 * time.Millisecond, 0, audit.DefaultMaxUnanchoredAge},
		{"default, long intervals: three of them", 4 * time.Minute, 0, 12 * time.Minute},
	} {
		t.Run(tt.name, func(t *testing.T) {
			clock := &fakeClock{now: testTime}
			a := &countingAnchor{Anchor: newFileAnchor(t)}
			l := openLog(t, t.TempDir(), func(c *audit.Config) {
				anchoredConfig(a)(c)
				c.Now, c.CheckpointEvery, c.CheckpointInterval, c.MaxUnanchoredAge = clock.Now, 1000, tt.interval, tt.maxAge
			})
			a.down.Store(true)
			mustAppend(t, l, 0) // the oldest uncovered record
			clock.Advance(tt.bound - tt.bound/10)
			mustAppend(t, l, 1)
			if st := l.Status(); st.Unanchored != tt.bound-tt.bound/10 || st.Anchored != 1 || st.Head != 3 {
				t.Fatalf("Status = %+v, want the oldest uncovered record %s old", st, tt.bound-tt.bound/10)
			}
			if err := l.Healthy(); err != nil {
				t.Fatalf("Healthy within the bound: %v", err)
			}
			clock.Advance(tt.bound / 5)
			if err := l.Append(context.Background(), rec(2)); !errors.Is(err, audit.ErrUnavailable) ||
				!strings.Contains(err.Error(), "no checkpoint covers") {
				t.Fatalf("Append past the age bound = %v, want ErrUnavailable naming it", err)
			}
			if err := l.Healthy(); !errors.Is(err, audit.ErrUnavailable) {
				t.Fatalf("Healthy past the age bound = %v", err)
			}
			if tt.interval > time.Second {
				return // the anchor is retried at the next tick, minutes away
			}
			a.down.Store(false)
			waitFor(t, "the uncovered records to be anchored", func() bool { return l.Healthy() == nil })
			if st := l.Status(); st.Unanchored != 0 || st.Anchored != 3 {
				t.Fatalf("Status after the anchor came back = %+v", st)
			}
			mustAppend(t, l, 3)
		})
	}
}
