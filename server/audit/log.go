package audit

import (
	"context"
	"crypto/hmac"
	"crypto/sha256"
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"
	"hash"
	"log/slog"
	"os"
	"path/filepath"
	"sync"
	"sync/atomic"
	"time"
)

// ErrUnavailable is wrapped by every Append error that leaves the record not
// known to be durable: the log is closed, a write or fsync failed, or the
// caller's context ended first.
var ErrUnavailable = errors.New("audit: log unavailable")

// Defaults for Config.
const (
	DefaultMaxFileBytes = 64 << 20
	DefaultMaxBatch     = 1024
)

// Config configures a Log.
type Config struct {
	// Dir holds the log files, HEAD and LOCK. It is created (0700) if
	// needed. Only one Log may have it open at a time.
	Dir string
	// Key is the KeySize-byte MAC key, from the key hierarchy. Required.
	// Whoever holds it can verify the log, and also forge it.
	Key []byte
	// MaxFileBytes is the size after which the log moves on to the next
	// file. A file exceeds it only when a single group commit does.
	// Default DefaultMaxFileBytes.
	MaxFileBytes int64
	// MaxBatch caps the records written with one fsync. Default
	// DefaultMaxBatch.
	MaxBatch int
	// Now stamps records whose Time is zero. Default time.Now.
	Now func() time.Time
	// Logger receives warnings and failures; never record contents.
	// Default: discard.
	Logger *slog.Logger
	// OpenFile opens every file the log writes (log files, HEAD's temporary
	// file). Default os.OpenFile. It is a seam for fault tests: after a
	// failed write or fsync the log closes the file and opens it again
	// through OpenFile before the next write, so a seam that fails for a
	// while and then recovers exercises the same path as a disk that does.
	OpenFile OpenFileFunc
}

// Log is an open audit log. Its methods are safe for concurrent use.
type Log struct {
	key    []byte
	now    func() time.Time
	log    *slog.Logger
	hashes sync.Pool // of hash.Hash for TokenHash

	mu     sync.RWMutex // guards closed, and sending on reqs against close
	closed bool
	reqs   chan *request
	done   chan struct{} // closed when the writer has stopped

	w        *writer // owned by the writer goroutine
	closeErr error
	failing  atomic.Bool // the last commit failed; see Healthy
}

type request struct {
	rec  []byte
	done chan error
}

// Open opens the log in cfg.Dir, creating it if needed, and continues its
// chain. It verifies the newest part of the existing log (from the file
// HEAD names on) and fails if that does not verify: a damaged log needs an
// operator, never a silent new chain.
//
// One repair is made: a partial final line is cut off, with a warning. Append
// acknowledges a record only after fsync, so a partial line can only be
// the tail of a write that crashed before it was acknowledged; HEAD, written
// after the fsync, never covers it, and if it did Open would fail instead.
func Open(cfg Config) (*Log, error) {
	switch {
	case cfg.Dir == "":
		return nil, errors.New("audit: Config.Dir is required")
	case len(cfg.Key) != KeySize:
		return nil, fmt.Errorf("audit: Config.Key must be %d bytes", KeySize)
	case cfg.MaxFileBytes < 0:
		return nil, errors.New("audit: Config.MaxFileBytes must not be negative")
	case cfg.MaxBatch < 0:
		return nil, errors.New("audit: Config.MaxBatch must not be negative")
	}
	if cfg.MaxFileBytes == 0 {
		cfg.MaxFileBytes = DefaultMaxFileBytes
	}
	if cfg.MaxBatch == 0 {
		cfg.MaxBatch = DefaultMaxBatch
	}
	if cfg.Now == nil {
		cfg.Now = time.Now
	}
	if cfg.Logger == nil {
		cfg.Logger = slog.New(slog.DiscardHandler)
	}
	if cfg.OpenFile == nil {
		cfg.OpenFile = osOpenFile
	}
	if err := os.MkdirAll(cfg.Dir, 0o700); err != nil {
		return nil, fmt.Errorf("audit: %w", err)
	}
	unlock, err := lockDir(cfg.Dir)
	if err != nil {
		return nil, err
	}
	key := append([]byte(nil), cfg.Key...)
	w := &writer{
		dir: cfg.Dir, key: key, open: cfg.OpenFile, maxBytes: cfg.MaxFileBytes,
		log: cfg.Logger, mac: hmac.New(sha256.New, key), unlock: unlock,
	}
	if err := w.recover(); err != nil {
		unlock()
		return nil, err
	}
	l := &Log{
		key: key, now: cfg.Now, log: cfg.Logger, w: w,
		reqs: make(chan *request, cfg.MaxBatch), done: make(chan struct{}),
	}
	l.hashes.New = func() any { return hmac.New(sha256.New, key) }
	go l.run(cfg.MaxBatch)
	return l, nil
}

// Append writes rec to the log and returns once it is fsynced, together with
// every record queued alongside it (group commit). A zero rec.Time is set
// to Config.Now().
//
// Any error wraps ErrUnavailable. If ctx ends before the record is queued,
// it is not written; if ctx ends while it is being written, Append returns
// at once with ctx's error and the record may or may not be in the log.
// Either way the caller must treat it as not written, and the chain stays
// valid.
func (l *Log) Append(ctx context.Context, rec Record) error {
	if err := ctx.Err(); err != nil {
		return fmt.Errorf("%w: %w", ErrUnavailable, err)
	}
	if rec.Time.IsZero() {
		rec.Time = l.now()
	}
	b, err := json.Marshal(rec)
	if err != nil {
		return fmt.Errorf("%w: encode record: %w", ErrUnavailable, err)
	}
	r := &request{rec: b, done: make(chan error, 1)}

	l.mu.RLock()
	if l.closed {
		l.mu.RUnlock()
		return fmt.Errorf("%w: closed", ErrUnavailable)
	}
	select {
	case l.reqs <- r:
		l.mu.RUnlock()
	case <-ctx.Done():
		l.mu.RUnlock()
		return fmt.Errorf("%w: %w", ErrUnavailable, ctx.Err())
	}

	select {
	case err := <-r.done:
		return err
	case <-ctx.Done():
		return fmt.Errorf("%w: %w", ErrUnavailable, ctx.Err())
	}
}

// TokenHash returns the keyed hash under which token is logged:
// the first 32 hex digits of HMAC-SHA256(key, "jeton/audit/token\x00" || token).
// Without the key, the log reveals no token and cannot be searched by one.
func (l *Log) TokenHash(token string) string {
	h := l.hashes.Get().(hash.Hash)
	defer l.hashes.Put(h)
	h.Reset()
	h.Write([]byte(tokenDomain))
	h.Write([]byte(token))
	var sum [macSize]byte
	return hex.EncodeToString(h.Sum(sum[:0])[:16])
}

// Close writes and fsyncs everything queued, then stops the log; later
// Appends fail with ErrUnavailable. Closing a closed log does nothing.
func (l *Log) Close() error {
	l.mu.Lock()
	if l.closed {
		l.mu.Unlock()
		<-l.done
		return nil
	}
	l.closed = true
	close(l.reqs)
	l.mu.Unlock()
	<-l.done
	return l.closeErr
}

// run is the writer goroutine: it takes everything queued, up to maxBatch
// records, commits it with one fsync and answers all its waiters.
func (l *Log) run(maxBatch int) {
	defer close(l.done)
	batch := make([]*request, 0, maxBatch)
	for r := range l.reqs {
		batch = append(batch[:0], r)
	fill:
		for len(batch) < maxBatch {
			select {
			case r, ok := <-l.reqs:
				if !ok {
					break fill
				}
				batch = append(batch, r)
			default:
				break fill
			}
		}
		err := l.w.commit(batch)
		l.failing.Store(err != nil)
		if err != nil {
			l.log.Error("audit: commit failed; records not acknowledged", "records", len(batch), "error", err)
			err = fmt.Errorf("%w: %w", ErrUnavailable, err)
		}
		for _, r := range batch {
			r.done <- err
		}
		clear(batch)
	}
	l.closeErr = l.w.close()
}

// writer owns the files. Only the writer goroutine (and Open, before it
// starts) touches it.
type writer struct {
	dir      string
	key      []byte
	open     OpenFileFunc
	maxBytes int64
	log      *slog.Logger
	mac      hash.Hash
	unlock   func()

	// The durable state: the last record fsynced, and where it is.
	seq  uint64
	last [macSize]byte
	num  uint64 // current file number
	size int64  // bytes of fsynced records in the current file

	f File // nil before first use and after a failure
	// dirty means the current file may hold bytes past size from a failed
	// write, to be cut off before the next one.
	dirty bool
	buf   []byte
}

func (w *writer) path(n uint64) string { return filepath.Join(w.dir, fileName(n)) }

// commit appends batch as one write and one fsync, then updates HEAD. If
// the write or fsync fails, the file is cut back to its last durable size
// (now, or before the next write if that fails too) and the chain state
// stays at the last durable record, so later commits continue a valid
// chain.
func (w *writer) commit(batch []*request) error {
	buf := w.buf[:0]
	seq, last := w.seq, w.last
	for _, r := range batch {
		seq++
		mac := chainMAC(w.mac, &last, seq, r.rec)
		buf = appendLine(buf, seq, &last, &mac, r.rec)
		last = mac
	}
	w.buf = buf

	if w.size > 0 && w.size+int64(len(buf)) > w.maxBytes {
		if err := w.rotate(); err != nil {
			return err
		}
	}
	if err := w.ensureOpen(); err != nil {
		return err
	}
	if _, err := w.f.Write(buf); err != nil {
		w.abandon()
		return fmt.Errorf("write %s: %w", fileName(w.num), err)
	}
	if err := w.f.Sync(); err != nil {
		w.abandon()
		return fmt.Errorf("fsync %s: %w", fileName(w.num), err)
	}
	w.seq, w.last, w.size = seq, last, w.size+int64(len(buf))

	// The records are durable now; the error below still fails the batch
	// because a HEAD that lags cannot reveal truncation of these records.
	if err := w.writeHead(); err != nil {
		return fmt.Errorf("records written but HEAD not updated: %w", err)
	}
	return nil
}

// abandon drops the current file after a failed write or fsync. Whatever
// it holds past size was never acknowledged and may be torn, so it is cut
// off now if possible, or else on reopening. The file is reopened rather
// than reused because after a failed fsync its state is unknown.
func (w *writer) abandon() {
	w.dirty = true
	if w.f.Truncate(w.size) == nil && w.f.Sync() == nil {
		w.dirty = false
	}
	w.f.Close()
	w.f = nil
}

func (w *writer) ensureOpen() error {
	if w.f != nil {
		return nil
	}
	f, err := w.open(w.path(w.num), os.O_WRONLY|os.O_CREATE|os.O_APPEND, 0o600)
	if err != nil {
		return fmt.Errorf("open %s: %w", fileName(w.num), err)
	}
	if w.dirty {
		if err := f.Truncate(w.size); err != nil {
			f.Close()
			return fmt.Errorf("truncate %s to its last record: %w", fileName(w.num), err)
		}
		if err := f.Sync(); err != nil {
			f.Close()
			return fmt.Errorf("fsync %s: %w", fileName(w.num), err)
		}
		w.dirty = false
	}
	w.f = f
	return nil
}

// rotate moves on to the next file. The current one needs no fsync: every
// commit already synced it.
func (w *writer) rotate() error {
	if err := w.ensureOpen(); err != nil { // cuts off a failed write first
		return err
	}
	if err := w.f.Close(); err != nil {
		w.log.Warn("audit: closing a full log file failed", "file", fileName(w.num), "error", err)
	}
	w.f = nil
	next := w.num + 1
	f, err := w.open(w.path(next), os.O_WRONLY|os.O_CREATE|os.O_APPEND, 0o600)
	if err != nil {
		return fmt.Errorf("open %s: %w", fileName(next), err)
	}
	// The new name must be durable before records in it are acknowledged.
	if err := syncDir(w.dir); err != nil {
		f.Close()
		return fmt.Errorf("fsync %s: %w", w.dir, err)
	}
	w.f, w.num, w.size = f, next, 0
	return nil
}

// writeHead replaces HEAD atomically with the current durable state.
func (w *writer) writeHead() error {
	name := fileName(w.num)
	if w.seq == 0 {
		name = fileName(1)
	}
	b := encodeHead(w.key, head{seq: w.seq, mac: w.last, file: name})
	tmp := filepath.Join(w.dir, headName+".tmp")
	f, err := w.open(tmp, os.O_WRONLY|os.O_CREATE|os.O_TRUNC, 0o600)
	if err != nil {
		return fmt.Errorf("write HEAD: %w", err)
	}
	_, err = f.Write(b)
	if err == nil {
		err = f.Sync()
	}
	if cerr := f.Close(); err == nil {
		err = cerr
	}
	if err == nil {
		err = os.Rename(tmp, filepath.Join(w.dir, headName))
	}
	if err == nil {
		err = syncDir(w.dir)
	}
	if err != nil {
		return fmt.Errorf("write HEAD: %w", err)
	}
	return nil
}

// recover loads the chain state from the directory; see Open.
func (w *writer) recover() error {
	refs, err := listFiles(w.dir)
	if err != nil {
		return err
	}
	b, err := os.ReadFile(filepath.Join(w.dir, headName))
	if isNotExist(err) {
		if len(refs) > 0 {
			return fmt.Errorf("audit: %s holds log files but no HEAD; refusing to continue an unanchored chain (verify the log, then move it aside)", w.dir)
		}
		// A new log: anchor it before the first record exists, so that a
		// missing HEAD always means tampering.
		w.num = 1
		return w.writeHead()
	}
	if err != nil {
		return fmt.Errorf("audit: %w", err)
	}
	h, why := parseHead(w.key, b)
	if why != "" {
		return fmt.Errorf("audit: %s: %s", filepath.Join(w.dir, headName), why)
	}
	// HEAD lags the files by at most one commit, hence at most one file,
	// so its file and those after it hold the tail to verify.
	headNum, _ := parseFileName(h.file)
	var tail []fileRef
	for _, r := range refs {
		if r.num >= headNum {
			tail = append(tail, r)
		}
	}
	if h.seq > 0 && (len(tail) == 0 || tail[0].num != headNum) {
		return fmt.Errorf("audit: %s, which HEAD names, is missing", h.file)
	}
	v := newVerifier(w.key)
	v.head, v.headDir, v.requireHead, v.allowTorn = &h, w.dir, true, true
	if err := v.run(tail); err != nil {
		return fmt.Errorf("audit: existing log does not verify; refusing to continue its chain: %w", err)
	}
	w.seq, w.last, w.num = v.seq, v.last, headNum
	if len(tail) > 0 {
		w.num, w.size = v.lastRef.num, v.lastLen
	}
	if v.torn >= 0 {
		f, err := w.open(v.lastRef.path, os.O_WRONLY, 0)
		if err == nil {
			err = f.Truncate(v.torn)
			if err == nil {
				err = f.Sync()
			}
			f.Close()
		}
		if err != nil {
			return fmt.Errorf("audit: cut partial last line: %w", err)
		}
		w.log.Warn("audit: cut off a partial last line left by a crash; its record was never acknowledged",
			"file", v.lastRef.path, "offset", v.torn)
	}
	return nil
}

// close closes the current file and releases the directory.
func (w *writer) close() error {
	var err error
	if w.dirty {
		err = w.ensureOpen()
	}
	if w.f != nil {
		if cerr := w.f.Close(); err == nil {
			err = cerr
		}
		w.f = nil
	}
	w.unlock()
	if err != nil {
		return fmt.Errorf("audit: close: %w", err)
	}
	return nil
}
