package audit

import (
	"bufio"
	"bytes"
	"crypto/hmac"
	"crypto/sha256"
	"encoding/json"
	"errors"
	"fmt"
	"hash"
	"io"
	"io/fs"
	"os"
	"path/filepath"
	"sort"
)

// Reasons a VerifyError gives. Each names one kind of tampering or damage.
const (
	// ReasonBadMAC: the record's MAC does not match its content under the
	// key, so a byte was edited or the record was forged with another key.
	ReasonBadMAC = "bad MAC"
	// ReasonSeqGap: a sequence number is skipped and never appears later,
	// so a record was deleted.
	ReasonSeqGap = "seq gap"
	// ReasonSeqOrder: a record appears out of sequence (moved, swapped or
	// duplicated).
	ReasonSeqOrder = "seq out of order"
	// ReasonPrevMismatch: the record is authentic but does not follow the
	// record before it, e.g. it was spliced in from another chain.
	ReasonPrevMismatch = "prev mismatch"
	// ReasonTruncated: the log ends early, with a partial last line or
	// before the record HEAD names.
	ReasonTruncated = "truncated"
	// ReasonMissingFile: a log file is missing: a gap in the numbering, a
	// file that does not continue the previous file's chain, or
	// audit-000001.jsonl not starting the chain.
	ReasonMissingFile = "missing file"
	// ReasonMalformed: the line is not a record in the canonical encoding.
	ReasonMalformed = "malformed"
	// ReasonBadHead: HEAD is missing, malformed or not authentic, or names
	// a record other than the one the log holds at its seq.
	ReasonBadHead = "bad HEAD"
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

// Report summarises a log that verified.
type Report struct {
	Records int
	// FirstSeq is 1 when the files given start the chain; higher when older
	// files were left out, in which case only the part given is verified.
	FirstSeq uint64
	LastSeq  uint64
}

// Verify checks a whole log: every record's MAC under key, an unbroken
// sequence and chain of MACs within and across files, and, when head is not
// "", that the log reaches the record HEAD names. files are sorted by their
// number first. If the first file is not audit-000001.jsonl, the chain is
// checked from the first record given on, trusting where it starts.
//
// It returns a *VerifyError for the first bad record, or another error if a
// file cannot be read.
func Verify(key []byte, files []string, head string) (*Report, error) {
	if len(key) != KeySize {
		return nil, fmt.Errorf("audit: key must be %d bytes", KeySize)
	}
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
	v := newVerifier(key)
	if head != "" {
		b, err := os.ReadFile(head)
		if errors.Is(err, fs.ErrNotExist) {
			return nil, &VerifyError{File: head, Reason: ReasonBadHead, Detail: "HEAD file is missing"}
		}
		if err != nil {
			return nil, fmt.Errorf("audit: %w", err)
		}
		h, why := parseHead(key, b)
		if why != "" {
			return nil, &VerifyError{File: head, Reason: ReasonBadHead, Detail: why}
		}
		v.head, v.headDir = &h, filepath.Dir(head)
	}
	if err := v.run(refs); err != nil {
		return nil, err
	}
	return &Report{Records: v.records, FirstSeq: v.firstSeq, LastSeq: v.seq}, nil
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
	mac     hash.Hash
	head    *head
	headDir string
	// requireHead makes the record HEAD names mandatory even when the
	// files given start after it (Open, which starts at HEAD's file).
	requireHead bool
	// allowTorn tolerates a partial final line in the last file, recording
	// its offset in torn instead of failing (Open).
	allowTorn bool

	started  bool // the chain state below is set
	anchored bool // the chain was checked from seq 1
	seq      uint64
	last     [macSize]byte
	firstSeq uint64
	records  int
	headSeen bool

	// The last file: its complete lines and their length in bytes, and the
	// offset of a tolerated partial line (-1 if none).
	lastRef   fileRef
	lastLines int
	lastLen   int64
	torn      int64
}

func newVerifier(key []byte) *verifier {
	return &verifier{mac: hmac.New(sha256.New, key), torn: -1}
}

func (v *verifier) run(refs []fileRef) error {
	for i, ref := range refs {
		if i == 0 && ref.num == 1 {
			v.started, v.anchored = true, true
		}
		if i > 0 && ref.num != refs[i-1].num+1 {
			return &VerifyError{File: ref.path, Seq: v.seq + 1, Reason: ReasonMissingFile,
				Detail: fileName(refs[i-1].num+1) + " is absent"}
		}
		if err := v.file(refs, i); err != nil {
			return err
		}
	}
	if v.head == nil {
		return nil
	}
	h := v.head
	if h.seq > v.seq {
		n, _ := parseFileName(h.file)
		if n > v.lastRef.num {
			return &VerifyError{File: filepath.Join(v.headDir, h.file), Seq: v.seq + 1, Reason: ReasonMissingFile,
				Detail: fmt.Sprintf("HEAD records seq %d in it", h.seq)}
		}
		return &VerifyError{File: v.lastRef.path, Line: v.lastLines + 1, Seq: v.seq + 1, Reason: ReasonTruncated,
			Detail: fmt.Sprintf("log ends at seq %d but HEAD records seq %d", v.seq, h.seq)}
	}
	if h.seq > 0 && !v.headSeen && (v.anchored || v.requireHead || v.firstSeq <= h.seq) {
		return &VerifyError{File: v.lastRef.path, Seq: h.seq, Reason: ReasonBadHead,
			Detail: "the record HEAD names is not in the log"}
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
	r := bufio.NewReaderSize(f, 64<<10)
	for n := 1; ; n++ {
		b, err := r.ReadBytes('\n')
		if err == io.EOF {
			if len(b) == 0 {
				return nil
			}
			if i == len(refs)-1 && v.allowTorn {
				v.torn = v.lastLen
				return nil
			}
			return &VerifyError{File: ref.path, Line: n, Seq: v.seq + 1, Reason: ReasonTruncated, Detail: "partial last line"}
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
	if m := chainMAC(v.mac, &l.prev, l.seq, l.rec); !hmac.Equal(m[:], l.mac[:]) {
		return bad(l.seq, ReasonBadMAC, "")
	}
	if h := v.head; h != nil && l.seq == h.seq {
		if l.mac != h.mac || filepath.Base(ref.path) != h.file {
			return bad(l.seq, ReasonBadHead, "this record is not the one HEAD names")
		}
		v.headSeen = true
	}
	if !v.started {
		v.started = true
	}
	if v.records == 0 {
		v.firstSeq = l.seq
	}
	v.seq, v.last = l.seq, l.mac
	v.records++
	return nil
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
			var w struct {
				Seq uint64 `json:"seq"`
			}
			if json.Unmarshal(b, &w) == nil && w.Seq == want {
				return true, nil
			}
		}
	}
	return false, nil
}
