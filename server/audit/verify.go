package audit

import (
	"bufio"
	"bytes"
	"crypto/ed25519"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"io/fs"
	"os"
	"path/filepath"
	"sort"
	"time"
)

// Reasons a VerifyError gives. Each names one kind of tampering or damage.
const (
	// ReasonBadHash: the record's hash does not match its content, so a
	// byte was edited.
	ReasonBadHash = "bad hash"
	// ReasonSeqGap: a sequence number is skipped and never appears later,
	// so a record was deleted.
	ReasonSeqGap = "seq gap"
	// ReasonSeqOrder: a record appears out of sequence (moved, swapped or
	// duplicated).
	ReasonSeqOrder = "seq out of order"
	// ReasonPrevMismatch: the record does not follow the record before
	// it, e.g. it was spliced in from another chain.
	ReasonPrevMismatch = "prev mismatch"
	// ReasonTruncated: a file other than the last ends in a partial line.
	ReasonTruncated = "truncated"
	// ReasonMissingFile: a log file is missing: a gap in the numbering, a
	// file that does not continue the previous file's chain, or
	// audit-000001.jsonl not starting the chain.
	ReasonMissingFile = "missing file"
	// ReasonMalformed: the line is not a record in the canonical encoding,
	// or the chain does not open with a chain-start record.
	ReasonMalformed = "malformed"
	// ReasonCheckpoint: the log disagrees with a signed checkpoint: the
	// record at the checkpoint's seq has another hash (records edited,
	// reordered or rewritten), the log is another chain, or the checkpoint
	// itself is not validly signed.
	ReasonCheckpoint = "checkpoint mismatch"
	// ReasonBehindCheckpoint: the log ends before the record a signed
	// checkpoint covers: its last records were removed, an older copy was
	// restored, or it was wiped.
	ReasonBehindCheckpoint = "behind checkpoint"
	// ReasonPastClosed: the log goes on past a checkpoint that closed the
	// chain (the server stopped cleanly there): a record, or part of one,
	// was added that the server did not write.
	ReasonPastClosed = "past closed checkpoint"
	// ReasonNotCovered: the files given (VerifyOptions.Partial) start
	// after the checkpoint's seq, so it proves nothing about them: they
	// may be another log altogether.
	ReasonNotCovered = "checkpoint not covered"
	// ReasonReplica: the log or the checkpoint is another replica's than
	// the one the verifier named (VerifyOptions.Replica).
	ReasonReplica = "other replica"
)

// VerifyError locates the first record at which a log fails to verify.
type VerifyError struct {
	File string // path of the file, as given
	Line int    // 1-based line number; 0 when the problem is the file itself
	// Seq is the sequence number of the bad record when it can be read, or
	// else the number expected at that point.
	Seq    uint64
	Reason string // one of the Reason constants
	Detail string // more about Reason; never holds record contents
}

func (e *VerifyError) Error() string {
	s := fmt.Sprintf("audit: %s:%d: seq %d: %s", e.File, e.Line, e.Seq, e.Reason)
	if e.Detail != "" {
		s += " (" + e.Detail + ")"
	}
	return s
}

// Torn describes a partial last line: the tail of a write cut short by a
// crash (kill -9, power loss). Append never acknowledged its record.
type Torn struct {
	File   string
	Offset int64 // where the partial line starts
	Bytes  int64 // its length
}

// Report summarises a log that verified.
type Report struct {
	Records int
	// FirstSeq is 1 when the files given start the chain; higher when older
	// files were left out (VerifyOptions.Partial).
	FirstSeq uint64
	LastSeq  uint64
	Head     [hashSize]byte
	// Chain is the chain's first record, when the files start the chain.
	Chain *ChainStart
	// Checkpoint is the signed checkpoint the log was checked against; nil
	// if none was given.
	Checkpoint *Checkpoint
	// Previous is the checkpoint Chain.Previous names, signature checked;
	// nil for a replica's first chain.
	Previous *Checkpoint
	// Torn is a tolerated partial last line, or nil.
	Torn *Torn
	// Recoveries are the recovery records in the files, oldest first:
	// each says the run before stopped uncleanly and which records no
	// checkpoint covered when it did.
	Recoveries []RecoveryReport
}

// RecoveryReport is a recovery record found by Verify, at Seq.
type RecoveryReport struct {
	Seq uint64
	Recovery
}

// VerifyOptions says what to check a log against.
type VerifyOptions struct {
	// Keys are the anchor's public keys. They check Checkpoint and the
	// checkpoint a chain's first record names. Nothing secret is needed.
	Keys []ed25519.PublicKey
	// Checkpoint is a signed checkpoint of this chain (from the anchor).
	// The log must reach its seq, with the same hash there, and, if it is
	// closed, end there, partial line included. Without one,
	// only the chain's internal consistency is checked: removal of its last
	// records, rollback and a wipe then go unnoticed.
	Checkpoint []byte
	// Partial accepts files that do not start at audit-000001.jsonl (older
	// files archived), trusting where the first one starts. A Checkpoint
	// must then fall within the files given, and match there.
	Partial bool
	// Replica, if set, is the replica the verifier means to check: the
	// chain's first record and the checkpoints must name it.
	Replica string
}

// Verify checks a log: every record's hash, an unbroken sequence and chain
// of hashes within and across files (sorted by number first), the chain's
// first record, and, given a checkpoint, that the log reaches it and agrees
// with it. A partial last line is tolerated and reported in Report.Torn: a
// crash mid-write leaves one, and its record was never acknowledged.
//
// It returns a *VerifyError for the first bad record, or another error if a
// file cannot be read.
func Verify(files []string, opts VerifyOptions) (*Report, error) {
	refs := make([]fileRef, 0, len(files))
	for _, f := range files {
		n, ok := parseFileName(filepath.Base(f))
		if !ok {
			return nil, &VerifyError{File: f, Reason: ReasonMalformed, Detail: "not an audit-NNNNNN.jsonl file name"}
		}
		refs = append(refs, fileRef{path: f, num: n})
	}
	sortRefs(refs)
	for i := 1; i < len(refs); i++ {
		if refs[i].num == refs[i-1].num {
			return nil, fmt.Errorf("audit: %s and %s are the same log file", refs[i-1].path, refs[i].path)
		}
	}
	v := newVerifier()
	v.allowTorn = true
	var cp *Checkpoint
	v.replica = opts.Replica
	if opts.Checkpoint != nil {
		c, err := OpenCheckpoint(opts.Checkpoint, opts.Keys)
		if err != nil {
			return nil, &VerifyError{Reason: ReasonCheckpoint, Detail: err.Error()}
		}
		if opts.Replica != "" && c.Replica != opts.Replica {
			return nil, &VerifyError{Reason: ReasonReplica,
				Detail: fmt.Sprintf("the checkpoint is of replica %q, not %q", c.Replica, opts.Replica)}
		}
		cp, v.checkpoint = &c, &c
	}
	if len(refs) > 0 && refs[0].num != 1 && !opts.Partial {
		return nil, &VerifyError{File: refs[0].path, Line: 1, Reason: ReasonMissingFile,
			Detail: fileName(1) + " is absent; Partial checks only the files given"}
	}
	if err := v.run(refs); err != nil {
		return nil, err
	}
	if cp != nil && v.records > 0 && cp.Seq < v.firstSeq {
		// Only with Partial: non-partial files start at seq 1.
		return nil, &VerifyError{File: refs[0].path, Line: 1, Seq: v.firstSeq, Reason: ReasonNotCovered,
			Detail: fmt.Sprintf("the files start at seq %d, after the checkpoint's seq %d: it says nothing about them, "+
				"which may be another log altogether; give the files that hold seq %d", v.firstSeq, cp.Seq, cp.Seq)}
	}
	rep := &Report{Records: v.records, FirstSeq: v.firstSeq, LastSeq: v.seq, Head: v.last, Chain: v.chain, Checkpoint: cp,
		Torn: v.torn, Recoveries: v.recoveries}
	if v.chain != nil && v.chain.Previous != "" && opts.Keys != nil {
		prev, err := OpenCheckpoint([]byte(v.chain.Previous), opts.Keys)
		if err != nil {
			return nil, &VerifyError{File: refs[0].path, Line: 1, Seq: 1, Reason: ReasonCheckpoint,
				Detail: "the previous chain's checkpoint this chain names: " + err.Error()}
		}
		rep.Previous = &prev
	}
	return rep, nil
}

type fileRef struct {
	path string
	num  uint64
}

func sortRefs(refs []fileRef) {
	sort.Slice(refs, func(i, j int) bool { return refs[i].num < refs[j].num })
}

// verifier walks a log's files in order, holding the chain state.
type verifier struct {
	hash *chainHasher
	// checkpoint, if set, must be reached, agree at its seq and name the
	// chain.
	checkpoint *Checkpoint
	// allowTorn tolerates a partial final line in the last file, recording
	// it in torn instead of failing.
	allowTorn bool
	// replica, if set, is the replica the chain's first record must name.
	replica string

	started  bool // the chain state below is set
	seq      uint64
	last     [hashSize]byte
	firstSeq uint64
	records  int
	chain    *ChainStart

	// The last file: its complete lines and their length in bytes.
	lastRef   fileRef
	lastLines int
	lastLen   int64
	torn      *Torn

	recoveries []RecoveryReport
}

func newVerifier() *verifier { return &verifier{hash: newChainHasher()} }

func (v *verifier) run(refs []fileRef) error {
	for i, ref := range refs {
		if i == 0 && ref.num == 1 {
			v.started = true
		}
		if i > 0 && ref.num != refs[i-1].num+1 {
			return &VerifyError{File: ref.path, Seq: v.seq + 1, Reason: ReasonMissingFile,
				Detail: fileName(refs[i-1].num+1) + " is absent"}
		}
		if err := v.file(refs, i); err != nil {
			return err
		}
	}
	cp := v.checkpoint
	if cp == nil {
		return nil
	}
	if v.seq < cp.Seq {
		where, line := "", 0
		if len(refs) > 0 {
			where, line = v.lastRef.path, v.lastLines+1
		}
		detail := fmt.Sprintf("the log ends at seq %d but the checkpoint of %s covers seq %d: records were removed, an older copy restored, or the log wiped",
			v.seq, cp.Time.UTC().Format("2006-01-02T15:04:05Z"), cp.Seq)
		return &VerifyError{File: where, Line: line, Seq: v.seq + 1, Reason: ReasonBehindCheckpoint, Detail: detail}
	}
	return nil
}

// file verifies refs[i].
func (v *verifier) file(refs []fileRef, i int) error {
	ref := refs[i]
	f, err := os.Open(ref.path)
	if errors.Is(err, fs.ErrNotExist) {
		return &VerifyError{File: ref.path, Seq: v.seq + 1, Reason: ReasonMissingFile, Detail: "cannot be found"}
	}
	if err != nil {
		return fmt.Errorf("audit: %w", err)
	}
	defer f.Close()
	v.lastRef, v.lastLines, v.lastLen = ref, 0, 0
	r := bufio.NewReaderSize(f, 256<<10)
	for n := 1; ; n++ {
		b, err := r.ReadSlice('\n')
		if err == bufio.ErrBufferFull {
			// A record longer than the buffer (a large batch): copy what
			// was read before the buffer is reused, then read the rest.
			head := append([]byte(nil), b...)
			rest, rerr := r.ReadBytes('\n')
			b, err = append(head, rest...), rerr
		}
		if err == io.EOF {
			if len(b) == 0 {
				return nil
			}
			if cp := v.checkpoint; cp != nil && cp.Closed && v.seq >= cp.Seq && v.reached(cp) {
				return &VerifyError{File: ref.path, Line: n, Seq: v.seq + 1, Reason: ReasonPastClosed,
					Detail: fmt.Sprintf("a partial line follows seq %d, where a checkpoint closed the chain when the server stopped cleanly", cp.Seq)}
			}
			if i == len(refs)-1 && v.allowTorn {
				v.torn = &Torn{File: ref.path, Offset: v.lastLen, Bytes: int64(len(b))}
				return nil
			}
			return &VerifyError{File: ref.path, Line: n, Seq: v.seq + 1, Reason: ReasonTruncated, Detail: "partial last line in a file that is not the last"}
		}
		if err != nil {
			return fmt.Errorf("audit: %w", err)
		}
		if err := v.record(refs, i, n, b[:len(b)-1]); err != nil {
			return err
		}
		v.lastLines, v.lastLen = n, v.lastLen+int64(len(b))
	}
}

// record verifies line n of refs[i], b, against the chain so far.
func (v *verifier) record(refs []fileRef, i, n int, b []byte) error {
	ref := refs[i]
	bad := func(seq uint64, reason, detail string) error {
		return &VerifyError{File: ref.path, Line: n, Seq: seq, Reason: reason, Detail: detail}
	}
	l, why := parseLine(b)
	if why != "" {
		return bad(v.seq+1, ReasonMalformed, why)
	}
	switch {
	case !v.started:
		// The files given start mid-chain: trust where they start.
	case n == 1 && (l.seq != v.seq+1 || l.prev != v.last):
		if i == 0 {
			return bad(l.seq, ReasonMissingFile, "the chain does not start here")
		}
		return bad(l.seq, ReasonMissingFile, "does not continue the chain of "+filepath.Base(refs[i-1].path))
	case l.seq > v.seq+1:
		// Either records were deleted, or the one expected comes later.
		if found, err := seqLater(refs, i, n, v.seq+1); err != nil {
			return err
		} else if found {
			return bad(l.seq, ReasonSeqOrder, fmt.Sprintf("expected seq %d, which comes later", v.seq+1))
		}
		return bad(l.seq, ReasonSeqGap, fmt.Sprintf("expected seq %d", v.seq+1))
	case l.seq <= v.seq:
		return bad(l.seq, ReasonSeqOrder, fmt.Sprintf("expected seq %d", v.seq+1))
	case l.prev != v.last:
		return bad(l.seq, ReasonPrevMismatch, "")
	}
	if sum := v.hash.sum(&l.prev, l.seq, l.rec); sum != l.hash {
		return bad(l.seq, ReasonBadHash, "")
	}
	if l.seq == 1 {
		var r Record
		if err := json.Unmarshal(l.rec, &r); err != nil || r.Method != MethodChainStart || r.Chain == nil ||
			!validChainID(r.Chain.ID) || !ValidReplica(r.Chain.Replica) {
			return bad(1, ReasonMalformed, "the first record does not open a chain")
		}
		if v.replica != "" && r.Chain.Replica != v.replica {
			return bad(1, ReasonReplica, fmt.Sprintf("this log is the chain of replica %q, not %q", r.Chain.Replica, v.replica))
		}
		v.chain = r.Chain
	}
	if bytes.Contains(l.rec, []byte(`"`+MethodRecovered+`"`)) {
		var r Record
		if err := json.Unmarshal(l.rec, &r); err == nil && r.Method == MethodRecovered {
			if r.Recovery == nil || r.Recovery.Head+1 != l.seq || r.Recovery.Anchored > r.Recovery.Head {
				return bad(l.seq, ReasonMalformed, "a recovery record that does not name the records before it")
			}
			v.recoveries = append(v.recoveries, RecoveryReport{Seq: l.seq, Recovery: *r.Recovery})
		}
	}
	if cp := v.checkpoint; cp != nil {
		if cp.Closed && l.seq > cp.Seq && v.reached(cp) {
			return bad(l.seq, ReasonPastClosed, fmt.Sprintf("a checkpoint closed the chain at seq %d when the server stopped cleanly (%s); "+
				"this record was added after that, not by the server", cp.Seq, cp.Time.UTC().Format(time.RFC3339)))
		}
		if v.chain != nil && v.chain.ID != cp.Chain {
			return bad(l.seq, ReasonCheckpoint, fmt.Sprintf("this log is chain %s; the checkpoint is of chain %s", v.chain.ID, cp.Chain))
		}
		if l.seq == cp.Seq && l.hash != cp.Head {
			return bad(l.seq, ReasonCheckpoint, "the record at the checkpoint's seq is not the one it signed: records were edited, reordered or rewritten")
		}
	}
	v.started = true
	if v.records == 0 {
		v.firstSeq = l.seq
	}
	v.seq, v.last = l.seq, l.hash
	v.records++
	return nil
}

// reached reports whether the records verified so far include the one
// cp covers. Only files given with Partial can start past it; what
// follows is then not covered by cp, which Verify reports as such.
func (v *verifier) reached(cp *Checkpoint) bool {
	return v.records > 0 && v.firstSeq <= cp.Seq
}

// seqLater reports whether a record numbered want appears after line n of
// refs[i]. It only reads sequence numbers: it tells a moved record from a
// deleted one.
func seqLater(refs []fileRef, i, n int, want uint64) (bool, error) {
	for j := i; j < len(refs); j++ {
		b, err := os.ReadFile(refs[j].path)
		if err != nil {
			if errors.Is(err, fs.ErrNotExist) {
				continue
			}
			return false, fmt.Errorf("audit: %w", err)
		}
		lines := bytes.Split(b, []byte{'\n'})
		if j == i {
			lines = lines[n:]
		}
		for _, b := range lines {
			if l, why := parseLine(b); why == "" && l.seq == want {
				return true, nil
			}
		}
	}
	return false, nil
}

// ChainReport is the report on one chain of a replica's history.
type ChainReport struct {
	Dir string // where its files are
	*Report
}

// VerifyHistory verifies the chain in dir against opts, then, each time a
// chain's first record names the checkpoint of a chain before it (an
// operator archived that one), the archived chain under dir against that
// checkpoint, back to the replica's first chain. Reports come newest
// first. A predecessor that is missing or does not reach its checkpoint
// fails the whole history: records were lost at that break.
func VerifyHistory(dir string, opts VerifyOptions) ([]ChainReport, error) {
	var out []ChainReport
	cur := dir
	for {
		files, err := Files(cur)
		if err != nil {
			return out, err
		}
		rep, err := Verify(files, opts)
		if err != nil {
			return out, err
		}
		out = append(out, ChainReport{Dir: cur, Report: rep})
		if rep.Chain == nil || rep.Chain.Previous == "" {
			return out, nil
		}
		if rep.Previous == nil {
			return out, &VerifyError{File: cur, Seq: 1, Reason: ReasonCheckpoint, Detail: "no public key to check the previous chain's checkpoint"}
		}
		prev := rep.Previous
		if rep.Chain.Archive == "" || !filepath.IsLocal(rep.Chain.Archive) {
			return out, &VerifyError{File: cur, Seq: 1, Reason: ReasonMissingFile,
				Detail: fmt.Sprintf("chain %s follows chain %s (checkpoint at seq %d) but names no archive of it", rep.Chain.ID, prev.Chain, prev.Seq)}
		}
		next := filepath.Join(dir, rep.Chain.Archive)
		if files, _ := Files(next); len(files) == 0 {
			return out, &VerifyError{File: next, Seq: 1, Reason: ReasonMissingFile,
				Detail: fmt.Sprintf("the archive of chain %s (checkpoint at seq %d) holds no log file", prev.Chain, prev.Seq)}
		}
		cur = next
		opts = VerifyOptions{Keys: opts.Keys, Checkpoint: []byte(rep.Chain.Previous), Replica: opts.Replica}
	}
}
