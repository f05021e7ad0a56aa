package audit

import (
	"context"
	"crypto/ed25519"
	"errors"
	"fmt"
	"log/slog"
	"sync"
	"sync/atomic"
	"time"
)

// checkpointer signs checkpoints of the log's head and stores them in the
// anchor: after every CheckpointEvery records, CheckpointInterval after the
// first unanchored one, and at Close. It never blocks a commit; the commit
// path only asks it whether the backlog is full (admit).
type checkpointer struct {
	l        *Log
	a        Anchor
	every    uint64
	interval time.Duration
	max      uint64
	maxAge   time.Duration
	timeout  time.Duration
	now      func() time.Time
	log      *slog.Logger

	mu           sync.Mutex // serialises storing checkpoints
	keys         []ed25519.PublicKey
	stored       *Checkpoint // the anchor's checkpoint as last read or written
	storedSigned []byte
	version      uint64
	failing      atomic.Bool

	// anchoredSeq is stored.Seq once stored is of this chain (atomic for
	// readers); pendingSince is when the oldest record past it was
	// committed, or zero. pmu orders their updates against committed's.
	pmu          sync.Mutex
	anchoredSeq  atomic.Uint64
	pendingSince time.Time

	kickc chan struct{}
	quit  chan struct{}
	done  chan struct{}
}

func newCheckpointer(l *Log, cfg Config) *checkpointer {
	return &checkpointer{
		l: l, a: cfg.Anchor, every: uint64(cfg.CheckpointEvery), interval: cfg.CheckpointInterval,
		max: uint64(cfg.MaxUnanchored), maxAge: cfg.MaxUnanchoredAge, timeout: cfg.AnchorTimeout, now: cfg.Now, log: cfg.Logger,
		kickc: make(chan struct{}, 1), quit: make(chan struct{}), done: make(chan struct{}),
	}
}

// load reads the anchor's public keys and checkpoint at start-up.
func (c *checkpointer) load() (*Checkpoint, error) {
	ctx, cancel := context.WithTimeout(context.Background(), c.timeout)
	defer cancel()
	keys, err := c.a.PublicKeys(ctx)
	if err != nil {
		return nil, fmt.Errorf("audit: cannot read the anchor's public keys, refusing to start: %w", err)
	}
	signed, version, err := c.a.Load(ctx)
	if err != nil {
		return nil, fmt.Errorf("audit: cannot read the anchor's checkpoint, refusing to start: %w", err)
	}
	c.keys, c.version = keys, version
	if signed == nil {
		if version > 0 {
			return nil, fmt.Errorf("audit: the anchor's checkpoint of replica %q was deleted (version %d is gone): "+
				"someone with rights on the anchor removed it, which this log cannot check against; "+
				"restore that version in Vault (kv undelete) or have a custodian investigate", c.l.replica, version)
		}
		return nil, nil
	}
	cp, err := OpenCheckpoint(signed, keys)
	if err != nil {
		return nil, fmt.Errorf("audit: the anchor's checkpoint of replica %q does not verify, refusing to start: %w", c.l.replica, err)
	}
	if cp.Replica != c.l.replica {
		return nil, fmt.Errorf("audit: the anchor for replica %q holds a checkpoint of replica %q: the anchor path is misconfigured", c.l.replica, cp.Replica)
	}
	c.stored, c.storedSigned = &cp, signed
	return &cp, nil
}

// checkStart decides whether the log st may be continued (or, empty,
// started) given the anchor's checkpoint; recover has already checked
// that the log is the checkpoint's chain (a chain written by hand over an
// anchored one is refused there, even if it names the checkpoint), agrees
// with it where they overlap, and, if it is closed, ends there. With newChain (an archive request) and an empty log it
// returns the checkpoint the new chain must name.
func (c *checkpointer) checkStart(st *logState, newChain bool) ([]byte, error) {
	dir := c.l.w.dir
	s := c.stored
	switch {
	case s == nil && st.seq <= 1:
		// A replica's first start, or one that stopped before anchoring
		// its chain's first record (nothing was ever acknowledged).
		return nil, nil
	case s == nil:
		return nil, fmt.Errorf("audit: the log in %s holds %d records but the anchor holds no checkpoint for replica %q: "+
			"the anchor was reset or points elsewhere (check audit.replica and the anchor settings). %s",
			dir, st.seq, c.l.replica, recoveryHint(dir))
	case st.seq == 0 && newChain:
		return c.storedSigned, nil
	case st.seq == 0:
		return nil, fmt.Errorf("audit: the log in %s is missing or empty, but the anchor holds a checkpoint of replica %q at seq %d (chain %s, %s): "+
			"the log was wiped or audit.dir points to the wrong place. %s",
			dir, c.l.replica, s.Seq, s.Chain, s.Time.UTC().Format(time.RFC3339), recoveryHint(dir))
	}
	head := Checkpoint{Replica: c.l.replica, Chain: st.chain.ID, Seq: st.seq, Head: st.last}
	if err := advances(s, c.storedSigned, head, st.chain); err != nil {
		return nil, fmt.Errorf("audit: refusing to continue the log in %s: %w. %s", dir, err, recoveryHint(dir))
	}
	c.anchoredSeq.Store(s.Seq)
	return nil, nil
}

// advances reports whether next may replace prev in the anchor: the one
// rule that keeps checkpoints moving forward. Within a chain the sequence
// never goes back, and at an equal sequence the head is the same. A closed
// checkpoint (a clean stop) is followed only by one at the same sequence
// (the chain reopened) or by a new chain. A recovered checkpoint follows
// the open checkpoint its Recovered names. A new chain may replace
// another's checkpoint only if its first record, start, names exactly that
// checkpoint (an operator archived the old chain).
func advances(prev *Checkpoint, prevSigned []byte, next Checkpoint, start *ChainStart) error {
	switch {
	case prev == nil:
		return nil
	case prev.Replica != next.Replica:
		return fmt.Errorf("the anchor holds a checkpoint of replica %q, not %q", prev.Replica, next.Replica)
	case prev.Chain == next.Chain && next.Seq < prev.Seq:
		return fmt.Errorf("the log ends at seq %d, behind the anchor's checkpoint at seq %d of %s: "+
			"records were removed or an older copy was restored", next.Seq, prev.Seq, prev.Time.UTC().Format(time.RFC3339))
	case prev.Chain == next.Chain && next.Seq == prev.Seq && next.Head != prev.Head:
		return fmt.Errorf("the log's head at seq %d differs from the anchor's checkpoint: the chain was rewritten", next.Seq)
	case prev.Chain == next.Chain && prev.Closed && next.Seq > prev.Seq:
		return fmt.Errorf("the anchor's checkpoint closed chain %s at seq %d when the server stopped cleanly, and nothing reopened it: "+
			"records past it were not written by the server", prev.Chain, prev.Seq)
	case prev.Chain == next.Chain && next.Recovered != nil && (prev.Closed || next.Recovered.Anchored != prev.Seq):
		return fmt.Errorf("a recovered checkpoint must follow the open checkpoint at seq %d it names; the anchor's is at seq %d (closed: %v)",
			next.Recovered.Anchored, prev.Seq, prev.Closed)
	case prev.Chain == next.Chain:
		return nil
	case start != nil && start.ID == next.Chain && start.Previous != "" && start.Previous == string(prevSigned):
		return nil
	default:
		return fmt.Errorf("the log is chain %s but the anchor's checkpoint is of chain %s (seq %d), and this chain does not name it as its predecessor",
			next.Chain, prev.Chain, prev.Seq)
	}
}

// admit refuses a batch of n records after seq when the records no
// checkpoint covers would be too many, or the oldest of them too old: a
// log whose anchor is down must not grow an uncovered tail without limit,
// in size or in time.
func (c *checkpointer) admit(seq uint64, n int) error {
	if waiting := seq + uint64(n) - c.anchoredSeq.Load(); waiting > c.max {
		return fmt.Errorf("%d records would wait for a checkpoint, more than %d: the anchor has been unreachable too long", waiting, c.max)
	}
	if age := c.unanchored(); age > c.maxAge {
		return fmt.Errorf("no checkpoint covers records written %s ago, longer than %s: the anchor has been unreachable too long",
			age.Round(time.Millisecond), c.maxAge)
	}
	return nil
}

// unanchored returns how long the oldest record no checkpoint covers has
// waited, or zero.
func (c *checkpointer) unanchored() time.Duration {
	c.pmu.Lock()
	since := c.pendingSince
	c.pmu.Unlock()
	if since.IsZero() {
		return 0
	}
	return c.now().Sub(since)
}

// committed is called by the writer after each commit.
func (c *checkpointer) committed(seq uint64) {
	c.pmu.Lock()
	anchored := c.anchoredSeq.Load()
	if c.pendingSince.IsZero() && seq > anchored {
		c.pendingSince = c.now()
	}
	c.pmu.Unlock()
	if seq-anchored >= c.every {
		c.kick()
	}
}

func (c *checkpointer) kick() {
	select {
	case c.kickc <- struct{}{}:
	default:
	}
}

// run checkpoints when kicked (enough records) or on the interval. After
// a failure it waits for the next tick rather than retrying per commit.
func (c *checkpointer) run() {
	defer close(c.done)
	t := time.NewTicker(c.interval)
	defer t.Stop()
	for {
		select {
		case <-c.quit:
			return
		case <-c.kickc:
			if c.failing.Load() {
				continue
			}
		case <-t.C:
		}
		ctx, cancel := context.WithTimeout(context.Background(), c.timeout)
		c.report(c.checkpoint(ctx))
		cancel()
	}
}

// report logs a failing anchor once, and its recovery.
func (c *checkpointer) report(err error) {
	was := c.failing.Swap(err != nil)
	switch {
	case err != nil && !was:
		c.log.Error("audit: checkpoint failed; records stay unanchored until the anchor answers", "error", err)
	case err == nil && was:
		c.log.Info("audit: checkpoints stored again", "seq", c.anchoredSeq.Load())
	}
}

// stop ends run and stores a last checkpoint, marked closed when
// closed: the caller has everything acknowledged durable and nothing
// else in the file, so the chain ends exactly there. It stores one even
// when the file was replaced: the head is the last record acknowledged,
// which was in the file at its path when it was written; if the
// replacement lacks it, or holds more, the checkpoint is what shows.
func (c *checkpointer) stop(closed bool) error {
	close(c.quit)
	<-c.done
	ctx, cancel := context.WithTimeout(context.Background(), c.timeout)
	defer cancel()
	c.mu.Lock()
	defer c.mu.Unlock()
	seq, head := c.l.Head()
	if s := c.stored; s != nil && s.Chain == c.l.chain.ID && s.Seq == seq && (s.Closed || !closed) {
		return nil
	}
	next := Checkpoint{Replica: c.l.replica, Chain: c.l.chain.ID, Seq: seq, Head: head, Time: c.l.now().UTC(), Closed: closed}
	if err := c.storeLocked(ctx, next); err != nil {
		return fmt.Errorf("audit: last checkpoint at close: %w", err)
	}
	return nil
}

// checkpoint signs the durable head and stores it, unless the anchor
// already covers it.
func (c *checkpointer) checkpoint(ctx context.Context) error {
	c.mu.Lock()
	defer c.mu.Unlock()
	seq, head := c.l.Head()
	if s := c.stored; s != nil && s.Chain == c.l.chain.ID && s.Seq >= seq {
		return nil
	}
	return c.storeLocked(ctx, Checkpoint{Replica: c.l.replica, Chain: c.l.chain.ID, Seq: seq, Head: head, Time: c.l.now().UTC()})
}

// store signs next and stores it; see storeLocked.
func (c *checkpointer) store(ctx context.Context, next Checkpoint) error {
	c.mu.Lock()
	defer c.mu.Unlock()
	return c.storeLocked(ctx, next)
}

// storeLocked signs next and stores it with check-and-set, if it may
// follow the anchor's checkpoint (advances). c.mu must be held.
func (c *checkpointer) storeLocked(ctx context.Context, next Checkpoint) error {
	chain := c.l.chain
	if err := advances(c.stored, c.storedSigned, next, chain); err != nil {
		return err
	}
	signed, err := signCheckpoint(ctx, c.a, next)
	if err != nil {
		return err
	}
	version, err := c.a.Store(ctx, signed, c.version)
	if errors.Is(err, ErrAnchorConflict) {
		// Someone else wrote since it was read: it must be a checkpoint
		// this one may follow, or this replica's chain has a rival.
		other, ov, lerr := c.a.Load(ctx)
		if lerr != nil {
			return fmt.Errorf("store checkpoint: %w; reading it back: %w", err, lerr)
		}
		var ocp *Checkpoint
		if other != nil {
			cp, perr := OpenCheckpoint(other, c.keys)
			if perr != nil {
				return fmt.Errorf("store checkpoint: the anchor now holds a checkpoint that does not verify: %w", perr)
			}
			ocp = &cp
		}
		if aerr := advances(ocp, other, next, chain); aerr != nil {
			return fmt.Errorf("store checkpoint: another writer moved the anchor of replica %q; not overwriting it: %w", c.l.replica, aerr)
		}
		version, err = c.a.Store(ctx, signed, ov)
	}
	if err != nil {
		return fmt.Errorf("store checkpoint: %w", err)
	}
	c.stored, c.storedSigned, c.version = &next, signed, version
	c.pmu.Lock()
	c.anchoredSeq.Store(next.Seq)
	if head, _ := c.l.Head(); head <= next.Seq {
		c.pendingSince = time.Time{}
	} else {
		// Records committed after next's head was read, at next.Time.
		c.pendingSince = next.Time
	}
	c.pmu.Unlock()
	return nil
}
