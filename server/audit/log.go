package audit

import (
	"context"
	"crypto/hmac"
	"crypto/rand"
	"crypto/sha256"
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"
	"hash"
	"io"
	"log/slog"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"sync/atomic"
	"time"
)

// ErrUnavailable is wrapped by every Append error that leaves the record not
// known to be durable: the log is closed, a write or fsync failed, the file
// is no longer the one opened, the checkpoint backlog is full, or the
// caller's context ended first.
var ErrUnavailable = errors.New("audit: log unavailable")

// Defaults for Config.
const (
	DefaultMaxFileBytes       = 64 << 20
	DefaultMaxBatch           = 1024
	DefaultCheckpointEvery    = 1000
	DefaultCheckpointInterval = 10 * time.Second
	DefaultMaxUnanchored      = 10_000
	// DefaultMaxUnanchoredAge rides out a Vault leader election or a
	// short outage of the anchor with loaded tenants served, and no more;
	// never less than three CheckpointIntervals.
	DefaultMaxUnanchoredAge = 5 * time.Minute
	DefaultAnchorTimeout    = 10 * time.Second
	// DefaultReplica names the chain of an unnamed replica.
	DefaultReplica = "local"
)

// Config configures a Log.
type Config struct {
	// Dir holds the log files and LOCK. It is created (0700) if needed.
	// Only one Log may have it open at a time.
	Dir string
	// Key is the KeySize-byte key of TokenHash, from the key hierarchy.
	// Required. It does not protect the chain, which needs no key to
	// check: a verifier holds only the anchor's public key.
	Key []byte
	// Replica names this replica's chain in its checkpoints; it must
	// match ValidReplica. Default DefaultReplica.
	Replica string
	// Anchor signs and keeps checkpoints outside Dir. Without one the log
	// is unanchored: edits are still caught by the chain, but removal of
	// its last records, rollback to an older copy and a wipe are not.
	// jetond always sets one; nil is for tests of other packages.
	Anchor Anchor
	// CheckpointEvery and CheckpointInterval: a checkpoint is signed and
	// stored once this many records are not yet anchored, or this long
	// after the first of them, whichever comes first, and at Close.
	// Defaults DefaultCheckpointEvery and DefaultCheckpointInterval.
	CheckpointEvery    int
	CheckpointInterval time.Duration
	// MaxUnanchored and MaxUnanchoredAge bound the records no checkpoint
	// covers yet, which someone with write access to Dir could still
	// change: how many may wait, and how long the oldest of them may
	// wait, while the anchor is unreachable. Past either, Append fails
	// closed and Healthy reports it, until a checkpoint is stored.
	// Defaults DefaultMaxUnanchored, and DefaultMaxUnanchoredAge or three
	// CheckpointIntervals, whichever is longer.
	MaxUnanchored    int
	MaxUnanchoredAge time.Duration
	// AnchorTimeout bounds each call to the anchor. Default
	// DefaultAnchorTimeout.
	AnchorTimeout time.Duration
	// MaxFileBytes is the size after which the log moves on to the next
	// file. A file exceeds it only when a single group commit does.
	// Default DefaultMaxFileBytes.
	MaxFileBytes int64
	// MaxBatch caps the records written with one fsync. Default
	// DefaultMaxBatch.
	MaxBatch int
	// Now stamps records whose Time is zero, and checkpoints. Default
	// time.Now.
	Now func() time.Time
	// Rand makes chain ids. Default crypto/rand.Reader.
	Rand io.Reader
	// Logger receives warnings and failures; never record contents.
	// Default: discard.
	Logger *slog.Logger
	// OpenFile opens every file the log writes. Default os.OpenFile. It is
	// a seam for fault tests: after a failed write or fsync the log closes
	// the file and opens it again through OpenFile before the next write,
	// so a seam that fails for a while and then recovers exercises the
	// same path as a disk that does.
	OpenFile OpenFileFunc
}

// Log is an open audit log. Its methods are safe for concurrent use.
type Log struct {
	key     []byte
	now     func() time.Time
	log     *slog.Logger
	hashes  sync.Pool // of hash.Hash for TokenHash
	replica string
	chain   *ChainStart // the first record of the chain being written

	mu     sync.RWMutex // guards closed, and sending on reqs against close
	closed bool
	reqs   chan *request
	done   chan struct{} // closed when the writer has stopped

	w        *writer // owned by the writer goroutine
	closeErr error
	failing  atomic.Bool           // the last commit failed; see Healthy
	broken   atomic.Pointer[error] // the file is not the one opened; sticky

	// Durable head, published by the writer after each commit.
	headMu   sync.Mutex
	headSeq  uint64
	headHash [hashSize]byte

	cp *checkpointer // nil when unanchored

	// Set by Open: this run started after an unclean stop, which left
	// recovered records uncovered.
	uncleanStart bool
	recovered    uint64
}

type request struct {
	rec  []byte
	done chan error
}

// Open opens the log in cfg.Dir, creating it if needed, and continues its
// chain, or starts a new one in an empty directory.
//
// It verifies the whole existing log and fails if it does not verify: a
// damaged log needs an operator, never a silent new chain. With an Anchor
// it also fails when the log is behind the anchor's checkpoint (records
// removed, an older copy restored), disagrees with it (records edited or
// reordered), is missing while the anchor holds a checkpoint (wiped), or
// belongs to another chain. The error says what to do. The one way to start
// a new chain over an anchored one is jeton audit archive (Archive), which
// puts the old files aside and leaves a request that Open honours: the new
// chain's first record names the old chain's last checkpoint.
//
// One repair is made: a partial final line is cut off, with a warning.
// Append acknowledges a record only after fsync, so a partial line can only
// be the tail of a write that crashed before it was acknowledged; if a
// checkpoint covered it, the log would be behind the checkpoint and Open
// would fail instead.
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
	case cfg.CheckpointEvery < 0 || cfg.CheckpointInterval < 0 || cfg.MaxUnanchored < 0 || cfg.MaxUnanchoredAge < 0 || cfg.AnchorTimeout < 0:
		return nil, errors.New("audit: Config.CheckpointEvery, CheckpointInterval, MaxUnanchored, MaxUnanchoredAge and AnchorTimeout must not be negative")
	case cfg.Replica != "" && !ValidReplica(cfg.Replica):
		return nil, fmt.Errorf("audit: Config.Replica %q must be 1-63 letters, digits, '.', '_' or '-'", cfg.Replica)
	}
	setDefaults(&cfg)
	if err := mkdirDurable(cfg.Dir, cfg.OpenFile); err != nil {
		return nil, fmt.Errorf("audit: %w", err)
	}
	unlock, err := lockDir(cfg.Dir)
	if err != nil {
		return nil, err
	}
	key := append([]byte(nil), cfg.Key...)
	w := &writer{
		dir: cfg.Dir, open: cfg.OpenFile, maxBytes: cfg.MaxFileBytes,
		log: cfg.Logger, hash: newChainHasher(), unlock: unlock,
	}
	l := &Log{
		key: key, now: cfg.Now, log: cfg.Logger, w: w, replica: cfg.Replica,
		reqs: make(chan *request, cfg.MaxBatch), done: make(chan struct{}),
	}
	l.hashes.New = func() any { return hmac.New(sha256.New, key) }
	if cfg.Anchor != nil {
		l.cp = newCheckpointer(l, cfg)
	}
	if err := l.start(cfg); err != nil {
		w.close()
		return nil, err
	}
	go l.run(cfg.MaxBatch)
	if l.cp != nil {
		go l.cp.run()
	}
	return l, nil
}

func setDefaults(cfg *Config) {
	if cfg.Replica == "" {
		cfg.Replica = DefaultReplica
	}
	if cfg.MaxFileBytes == 0 {
		cfg.MaxFileBytes = DefaultMaxFileBytes
	}
	if cfg.MaxBatch == 0 {
		cfg.MaxBatch = DefaultMaxBatch
	}
	if cfg.CheckpointEvery == 0 {
		cfg.CheckpointEvery = DefaultCheckpointEvery
	}
	if cfg.CheckpointInterval == 0 {
		cfg.CheckpointInterval = DefaultCheckpointInterval
	}
	if cfg.MaxUnanchored == 0 {
		cfg.MaxUnanchored = DefaultMaxUnanchored
	}
	if cfg.MaxUnanchoredAge == 0 {
		cfg.MaxUnanchoredAge = max(DefaultMaxUnanchoredAge, 3*cfg.CheckpointInterval)
	}
	if cfg.AnchorTimeout == 0 {
		cfg.AnchorTimeout = DefaultAnchorTimeout
	}
	if cfg.Now == nil {
		cfg.Now = time.Now
	}
	if cfg.Rand == nil {
		cfg.Rand = rand.Reader
	}
	if cfg.Logger == nil {
		cfg.Logger = slog.New(slog.DiscardHandler)
	}
	if cfg.OpenFile == nil {
		cfg.OpenFile = osOpenFile
	}
}

// start recovers the log's state, checks it against the anchor, and opens
// a chain if the directory holds none.
func (l *Log) start(cfg Config) error {
	var stored *Checkpoint
	if l.cp != nil {
		var err error
		if stored, err = l.cp.load(); err != nil {
			return err
		}
	}
	st, err := l.w.recover(stored)
	if err != nil {
		return err
	}
	req, err := readNewChainRequest(cfg.Dir)
	if err != nil {
		return err
	}
	if req != nil && st.seq > 0 {
		return fmt.Errorf("audit: %s holds both log files and a %s request; finish jeton audit archive (move the files aside) or remove %s",
			cfg.Dir, newChainName, filepath.Join(cfg.Dir, newChainName))
	}
	if st.seq > 0 && st.chain.Replica != cfg.Replica {
		return fmt.Errorf("audit: the log in %s is the chain of replica %q, not %q: check audit.dir and the replica id", cfg.Dir, st.chain.Replica, cfg.Replica)
	}
	var previous []byte
	if l.cp != nil {
		if previous, err = l.cp.checkStart(st, req != nil); err != nil {
			return err
		}
	}
	if st.seq > 0 {
		// Open the file now, so that Healthy watches it from the start.
		if err := l.w.ensureOpen(); err != nil {
			return fmt.Errorf("audit: %w", err)
		}
		l.chain = st.chain
		l.publish(st.seq, st.last)
		if l.cp == nil {
			return nil
		}
		return l.resume(cfg)
	}

	// An empty directory: open a chain, and anchor it before serving, so
	// that a wipe from now on is caught.
	var id [16]byte
	if _, err := io.ReadFull(cfg.Rand, id[:]); err != nil {
		return fmt.Errorf("audit: chain id: %w", err)
	}
	cs := &ChainStart{ID: hex.EncodeToString(id[:]), Replica: cfg.Replica}
	if req != nil {
		cs.Previous, cs.Archive, cs.Reason = string(previous), req.Archive, req.Reason
	}
	b, err := json.Marshal(Record{Time: cfg.Now(), Identity: "jetond", Method: MethodChainStart, Outcome: "ok", Chain: cs})
	if err != nil {
		return fmt.Errorf("audit: %w", err)
	}
	if err := l.w.commit([]*request{{rec: b}}); err != nil {
		return fmt.Errorf("audit: open a new chain in %s: %w", cfg.Dir, err)
	}
	l.chain = cs
	l.publish(l.w.seq, l.w.last)
	if l.cp != nil {
		ctx, cancel := context.WithTimeout(context.Background(), cfg.AnchorTimeout)
		defer cancel()
		if err := l.cp.checkpoint(ctx); err != nil {
			return fmt.Errorf("audit: anchor the new chain: %w", err)
		}
	}
	if req != nil {
		if err := os.Remove(filepath.Join(cfg.Dir, newChainName)); err != nil {
			return fmt.Errorf("audit: %w", err)
		}
		if err := syncDir(cfg.Dir, cfg.OpenFile); err != nil {
			return fmt.Errorf("audit: %w", err)
		}
		l.log.Warn("audit: started a new chain after an archived one", "chain", cs.ID, "archive", cs.Archive)
	}
	return nil
}

// resume anchors a continued chain before the log serves, so that every
// record past the anchor's checkpoint is this run's from now on. After a
// clean stop (a closed checkpoint, which the log ends at exactly) it
// reopens the chain: the same head, no longer closed, so that a crash of
// this run is not mistaken for a clean stop. After an unclean stop it
// writes a recovery record naming the records the last run left
// uncovered, and anchors it with a checkpoint marked recovered.
func (l *Log) resume(cfg Config) error {
	ctx, cancel := context.WithTimeout(context.Background(), cfg.AnchorTimeout)
	defer cancel()
	seq, head := l.Head()
	cp := Checkpoint{Replica: l.replica, Chain: l.chain.ID, Seq: seq, Head: head, Time: cfg.Now().UTC()}
	s := l.cp.stored
	if s == nil || s.Closed {
		// Reopened, or a chain whose first record was never anchored
		// (nothing was ever acknowledged in it).
		if err := l.cp.store(ctx, cp); err != nil {
			return fmt.Errorf("audit: anchor the reopened chain: %w", err)
		}
		return nil
	}
	r := &Recovery{Anchored: s.Seq, Head: seq}
	l.uncleanStart, l.recovered = true, r.Head-r.Anchored
	b, err := json.Marshal(Record{Time: cfg.Now(), Identity: "jetond", Method: MethodRecovered, Outcome: "ok", Recovery: r})
	if err != nil {
		return fmt.Errorf("audit: %w", err)
	}
	if err := l.w.commit([]*request{{rec: b}}); err != nil {
		return fmt.Errorf("audit: write the recovery record: %w", err)
	}
	l.publish(l.w.seq, l.w.last)
	cp.Seq, cp.Head, cp.Recovered = l.w.seq, l.w.last, r
	if err := l.cp.store(ctx, cp); err != nil {
		return fmt.Errorf("audit: anchor the recovery record: %w", err)
	}
	l.log.Warn("audit: continued the chain after an unclean stop (crash, kill, power loss, or the anchor unreachable at shutdown); "+
		"records the last run wrote after its last checkpoint are anchored only now, and marked so",
		"chain", l.chain.ID, "last_checkpoint_seq", r.Anchored, "uncovered_from", r.Anchored+1, "uncovered_to", r.Head)
	return nil
}

// publish records the durable head.
func (l *Log) publish(seq uint64, h [hashSize]byte) {
	l.headMu.Lock()
	l.headSeq, l.headHash = seq, h
	l.headMu.Unlock()
}

// Head returns the sequence number and hash of the last durable record.
func (l *Log) Head() (uint64, [hashSize]byte) {
	l.headMu.Lock()
	defer l.headMu.Unlock()
	return l.headSeq, l.headHash
}

// Append writes rec to the log and returns once it is fsynced, together with
// every record queued alongside it (group commit). A zero rec.Time is set
// to Config.Now(). rec.Chain and rec.Recovery must be nil, and rec.Method
// must not start with "audit/": those records are the log's own.
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
	if rec.Chain != nil || rec.Recovery != nil || strings.HasPrefix(rec.Method, "audit/") {
		return fmt.Errorf("%w: only the log writes chain-start and recovery records", ErrUnavailable)
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
	var sum [hashSize]byte
	return hex.EncodeToString(h.Sum(sum[:0])[:16])
}

// Close writes and fsyncs everything queued, signs and stores a last
// checkpoint of the last acknowledged record, marked closed, then stops
// the log; later Appends fail with ErrUnavailable. After it, nothing may
// follow that record: Open and Verify refuse a record past a closed
// checkpoint. Closing a closed log does nothing.
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
	// Cut off what a failed write left, so the file ends at the last
	// record acknowledged; only then may the last checkpoint close the
	// chain there. If that fails, the checkpoint stays open and the next
	// Open treats the stop as unclean.
	err := l.w.settle()
	if l.cp != nil {
		if cerr := l.cp.stop(err == nil); err == nil {
			err = cerr
		}
	}
	if cerr := l.w.close(); err == nil {
		err = cerr
	}
	l.closeErr = err
	return err
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
		err := l.commit(batch)
		for _, r := range batch {
			r.done <- err
		}
		clear(batch)
	}
}

// commit writes one batch, or refuses it, and publishes the new head.
func (l *Log) commit(batch []*request) error {
	if p := l.broken.Load(); p != nil {
		return fmt.Errorf("%w: %w", ErrUnavailable, *p)
	}
	if l.cp != nil {
		if err := l.cp.admit(l.w.seq, len(batch)); err != nil {
			return fmt.Errorf("%w: %w", ErrUnavailable, err)
		}
	}
	err := l.w.commit(batch)
	var changed *fileChangedError
	switch {
	case errors.As(err, &changed):
		l.markBroken(changed, len(batch))
	case err != nil:
		l.log.Error("audit: commit failed; records not acknowledged", "records", len(batch), "error", err)
	}
	l.failing.Store(err != nil)
	if err != nil {
		return fmt.Errorf("%w: %w", ErrUnavailable, err)
	}
	l.publish(l.w.seq, l.w.last)
	if l.cp != nil {
		l.cp.committed(l.w.seq)
	}
	return nil
}

// markBroken makes the log refuse every later record, for good: its file
// was changed by something else. Only the first cause is kept and logged.
func (l *Log) markBroken(e *fileChangedError, records int) {
	err := error(e)
	if !l.broken.CompareAndSwap(nil, &err) {
		return
	}
	l.log.Error("audit: the log file was replaced, moved, removed, truncated or written to by another process under the running server; "+
		"reveals are refused and readiness is down until an operator recovers the log (README: audit recovery)",
		"file", e.path, "detail", e.detail, "records_refused", records)
}

// writer owns the files. Only the writer goroutine (and Open, before it
// starts, and Close, after it stopped) writes through it; Healthy only
// checks the file, and only while no commit holds mu.
type writer struct {
	mu       sync.Mutex // held by commit and close, tried by check
	dir      string
	open     OpenFileFunc
	maxBytes int64
	log      *slog.Logger
	hash     *chainHasher
	unlock   func()

	// The durable state: the last record fsynced, and where it is.
	seq  uint64
	last [hashSize]byte
	num  uint64 // current file number
	size int64  // bytes of fsynced records in the current file

	f File // nil before first use and after a failure
	// fi identifies the file f was opened as, to notice it being replaced.
	fi os.FileInfo
	// dirty means the current file may hold bytes past size from a failed
	// write, to be cut off before the next one.
	dirty bool
	buf   []byte
}

func (w *writer) path(n uint64) string { return filepath.Join(w.dir, fileName(n)) }

// commit appends batch as one write and one fsync, then checks that the
// file written is still the one at its path. If the write or fsync fails,
// the file is cut back to its last durable size (now, or before the next
// write if that fails too) and the chain state stays at the last durable
// record, so later commits continue a valid chain. There is no other
// file to update: what makes the log's end binding is the anchor.
func (w *writer) commit(batch []*request) error {
	w.mu.Lock()
	defer w.mu.Unlock()
	buf := w.buf[:0]
	seq, last := w.seq, w.last
	for _, r := range batch {
		seq++
		sum := w.hash.sum(&last, seq, r.rec)
		buf = appendLine(buf, seq, &last, &sum, r.rec)
		last = sum
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
	// Write nothing into a file that was changed since the last commit;
	// the check after the fsync catches a change made meanwhile.
	if err := w.checkFile(w.size); err != nil {
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
	// Durable, but in the file at the path, right after the records
	// before? If not, the records went to a file no verifier will read,
	// or to the wrong place in it: refuse them.
	if err := w.checkFile(w.size + int64(len(buf))); err != nil {
		return err
	}
	w.seq, w.last, w.size = seq, last, w.size+int64(len(buf))
	return nil
}

// fileChangedError says the file being written is not the one at its
// path, or no longer holds exactly what the log wrote to it.
type fileChangedError struct{ path, detail string }

func (e *fileChangedError) Error() string {
	return fmt.Sprintf("%s was changed under the log: %s", e.path, e.detail)
}

func fileReplaced(path string, opened, now os.FileInfo) error {
	return &fileChangedError{path, "it is no longer the file the log opened: another file was put in its place; " + inodes(opened, now)}
}

// checkFile checks that the open file is still linked at its path (same
// device and inode: not renamed over by sed -i, an editor or logrotate's
// create mode, moved away or deleted) and holds exactly size bytes: the
// records the log wrote, no fewer (truncated in place, as logrotate's
// copytruncate does) and no more (written to by another process).
func (w *writer) checkFile(size int64) error {
	p := w.path(w.num)
	now, err := os.Stat(p)
	switch {
	case err != nil && isNotExist(err):
		return &fileChangedError{p, "it is no longer the file the log opened: it was deleted or moved away"}
	case err != nil:
		return fmt.Errorf("stat %s: %w", fileName(w.num), err)
	case !os.SameFile(w.fi, now):
		return fileReplaced(p, w.fi, now)
	case now.Size() != size:
		return &fileChangedError{p, fmt.Sprintf("it holds %d bytes where the log wrote %d: it was truncated or written to by another process", now.Size(), size)}
	}
	return nil
}

// check is Healthy's look at the file between commits: the same checks as
// after each commit, against the records acknowledged so far. It does
// nothing while a commit runs (that commit checks when it is done) or
// while no file is open.
func (w *writer) check() error {
	if !w.mu.TryLock() {
		return nil
	}
	defer w.mu.Unlock()
	if w.f == nil || w.dirty {
		return nil
	}
	return w.checkFile(w.size)
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
	w.f, w.fi = nil, nil
}

func (w *writer) ensureOpen() error {
	if w.f != nil {
		return nil
	}
	f, fi, err := w.openFile(w.num)
	if err != nil {
		return err
	}
	if w.fi != nil && !os.SameFile(w.fi, fi) {
		// Reopened after a failure, and the path now holds another file.
		f.Close()
		return fileReplaced(w.path(w.num), w.fi, fi)
	}
	// It must hold every record acknowledged, and nothing more unless a
	// failed write left it (dirty). Cutting a file that is shorter than
	// that "back" would extend it with zeros.
	if fi.Size() < w.size || (!w.dirty && fi.Size() != w.size) {
		f.Close()
		return &fileChangedError{w.path(w.num), fmt.Sprintf("it holds %d bytes where the log wrote %d: it was truncated or written to by another process", fi.Size(), w.size)}
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
	w.f, w.fi = f, fi
	return nil
}

// openFile opens log file n for appending and identifies it. An empty
// file may have just been created: its name is made durable before any
// record in it can be acknowledged, or a power loss could take the file
// (and the records a checkpoint covers) with it.
func (w *writer) openFile(n uint64) (File, os.FileInfo, error) {
	f, err := w.open(w.path(n), os.O_WRONLY|os.O_CREATE|os.O_APPEND, 0o600)
	if err != nil {
		return nil, nil, fmt.Errorf("open %s: %w", fileName(n), err)
	}
	fi, err := f.Stat()
	if err != nil {
		f.Close()
		return nil, nil, fmt.Errorf("stat %s: %w", fileName(n), err)
	}
	if fi.Size() == 0 {
		if err := syncDir(w.dir, w.open); err != nil {
			f.Close()
			return nil, nil, fmt.Errorf("fsync %s: %w", w.dir, err)
		}
	}
	return f, fi, nil
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
	w.f, w.fi = nil, nil
	next := w.num + 1
	f, fi, err := w.openFile(next) // makes the new name durable
	if err != nil {
		return err
	}
	w.f, w.fi, w.num, w.size = f, fi, next, 0
	return nil
}

// logState is what recover finds in the directory.
type logState struct {
	seq   uint64
	last  [hashSize]byte
	chain *ChainStart // nil when seq == 0
}

// recover verifies the whole log in the directory, against the anchor's
// checkpoint cp when not nil, and loads its chain state; see Open.
func (w *writer) recover(cp *Checkpoint) (*logState, error) {
	refs, err := listFiles(w.dir)
	if err != nil {
		return nil, err
	}
	st := &logState{}
	w.num = 1
	if len(refs) == 0 {
		return st, nil
	}
	if refs[0].num != 1 {
		return nil, fmt.Errorf("audit: %s starts at %s, not %s: the start of the chain is missing. %s",
			w.dir, filepath.Base(refs[0].path), fileName(1), recoveryHint(w.dir))
	}
	v := newVerifier()
	v.allowTorn, v.checkpoint = true, cp
	if err := v.run(refs); err != nil {
		return nil, fmt.Errorf("audit: the log in %s does not verify; refusing to continue its chain: %w. %s", w.dir, err, recoveryHint(w.dir))
	}
	if v.torn != nil {
		f, err := w.open(v.lastRef.path, os.O_WRONLY, 0)
		if err == nil {
			err = f.Truncate(v.torn.Offset)
			if err == nil {
				err = f.Sync()
			}
			f.Close()
		}
		if err != nil {
			return nil, fmt.Errorf("audit: cut partial last line: %w", err)
		}
		w.log.Warn("audit: cut off a partial last line left by a crash; its record was never acknowledged",
			"file", v.lastRef.path, "offset", v.torn.Offset, "bytes", v.torn.Bytes)
	}
	w.seq, w.last = v.seq, v.last
	w.num, w.size = v.lastRef.num, v.lastLen
	st.seq, st.last, st.chain = v.seq, v.last, v.chain
	return st, nil
}

// recoveryHint tells an operator what to do with a log jetond refuses.
func recoveryHint(dir string) string {
	return fmt.Sprintf("If audit.dir is wrong, fix it. If an older copy was restored, restore the latest one instead. "+
		"Otherwise keep the evidence: stop jetond, run `jeton audit archive --dir %s --reason TEXT` "+
		"(it moves the files aside and makes the next start open a new chain that names the last checkpoint), "+
		"then start jetond again; see README, audit recovery", dir)
}

// settle cuts off what a failed write left past the last record, if
// anything.
func (w *writer) settle() error {
	w.mu.Lock()
	defer w.mu.Unlock()
	if !w.dirty {
		return nil
	}
	if err := w.ensureOpen(); err != nil {
		return fmt.Errorf("audit: close: %w", err)
	}
	return nil
}

// close closes the current file and releases the directory.
func (w *writer) close() error {
	w.mu.Lock()
	defer w.mu.Unlock()
	var err error
	if w.f != nil {
		err = w.f.Close()
		w.f = nil
	}
	w.unlock()
	if err != nil {
		return fmt.Errorf("audit: close: %w", err)
	}
	return nil
}
