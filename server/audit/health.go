package audit

import (
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"time"
)

// probeName is the scratch file Healthy writes. It matches no log file
// name, so Verify and Open never read it.
const probeName = "PROBE.tmp"

// Healthy reports whether the log can take records. It fails when the log
// is closed; when its file was replaced, moved, removed, truncated or
// written to by another process (until an operator recovers it: this
// never heals by itself; it stats the file to see that, between commits);
// when too many records wait for a checkpoint; and when the last commit
// failed and a scratch write with fsync in the log's directory still
// fails. The scratch write lets a readiness probe see the disk come back
// even when no Append has been tried since (traffic may be held off
// precisely because the log was reported down). Errors wrap
// ErrUnavailable and name no record content.
func (l *Log) Healthy() error {
	l.mu.RLock()
	closed := l.closed
	l.mu.RUnlock()
	if closed {
		return fmt.Errorf("%w: closed", ErrUnavailable)
	}
	if err := l.w.check(); err != nil {
		var changed *fileChangedError
		if errors.As(err, &changed) {
			l.markBroken(changed, 0)
		} else {
			return fmt.Errorf("%w: %w", ErrUnavailable, err)
		}
	}
	if p := l.broken.Load(); p != nil {
		return fmt.Errorf("%w: %w", ErrUnavailable, *p)
	}
	if l.cp != nil {
		seq, _ := l.Head()
		if err := l.cp.admit(seq, 1); err != nil {
			return fmt.Errorf("%w: %w", ErrUnavailable, err)
		}
	}
	if !l.failing.Load() {
		return nil
	}
	// Only Open set w.dir and w.open; the writer goroutine never changes
	// them, so reading them here races with nothing.
	path := filepath.Join(l.w.dir, probeName)
	f, err := l.w.open(path, os.O_WRONLY|os.O_CREATE|os.O_TRUNC, 0o600)
	if err != nil {
		return fmt.Errorf("%w: last commit failed, and so does a scratch write: %w", ErrUnavailable, err)
	}
	_, err = f.Write([]byte("probe\n"))
	if err == nil {
		err = f.Sync()
	}
	if cerr := f.Close(); err == nil {
		err = cerr
	}
	_ = os.Remove(path)
	if err != nil {
		return fmt.Errorf("%w: last commit failed, and so does a scratch write: %w", ErrUnavailable, err)
	}
	return nil
}

// Status is a snapshot of the log for metrics and operators.
type Status struct {
	// Head is the last durable record; Anchored the last one a stored
	// checkpoint covers (0 for an unanchored log).
	Head, Anchored uint64
	// AnchorFailing is set while the last attempt to checkpoint failed.
	AnchorFailing bool
	// Unanchored is how long the oldest record no checkpoint covers has
	// waited; zero when there is none.
	Unanchored time.Duration
	// Recovered is how many records the last run left uncovered when this
	// run started after an unclean stop (see Recovery); UncleanStart says
	// whether it did.
	Recovered    uint64
	UncleanStart bool
}

// Status reports the log's state. It does no I/O.
func (l *Log) Status() Status {
	st := Status{Recovered: l.recovered, UncleanStart: l.uncleanStart}
	st.Head, _ = l.Head()
	if l.cp != nil {
		st.Anchored, st.AnchorFailing, st.Unanchored = l.cp.anchoredSeq.Load(), l.cp.failing.Load(), l.cp.unanchored()
	}
	return st
}
