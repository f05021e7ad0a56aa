package audit_test

import (
	"context"
	"crypto/sha256"
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"
	"os"
	"strings"
	"testing"
	"time"

	"github.com/jeton-dev/jeton/server/audit"
)

// forgeAppend appends r to the last log file of dir as a correctly
// chained record, as anyone can: the chain is unkeyed. It is what an
// operator with a shell on the audit host would write to frame someone.
func forgeAppend(t testing.TB, dir string, r audit.Record) {
	t.Helper()
	files, err := audit.Files(dir)
	if err != nil || len(files) == 0 {
		t.Fatalf("no log files in %s: %v", dir, err)
	}
	path := files[len(files)-1]
	lines := readLines(t, path)
	var last struct {
		Seq  uint64
		Hash string
	}
	if err := json.Unmarshal(lines[len(lines)-1], &last); err != nil {
		t.Fatal(err)
	}
	prev, _ := hex.DecodeString(last.Hash)
	body, err := json.Marshal(r)
	if err != nil {
		t.Fatal(err)
	}
	seq := last.Seq + 1
	h := sha256.New()
	fmt.Fprintf(h, "jeton/audit/v2\x00%s{\"v\":2,\"seq\":%d,\"rec\":%s}", prev, seq, body)
	f, err := os.OpenFile(path, os.O_WRONLY|os.O_APPEND, 0)
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	fmt.Fprintf(f, "{\"v\":2,\"seq\":%d,\"prev\":\"%x\",\"rec\":%s,\"hash\":\"%x\"}\n", seq, prev, body, h.Sum(nil))
}

// framing is the forged record: a reveal attributed to a TTP identity
// that never made it.
func framing() audit.Record {
	r := rec(999)
	r.Identity, r.Purpose = "spiffe://ttp.test/officer-fake", "curiosity"
	return r
}

func loadCheckpoint(t testing.TB, a audit.Anchor) audit.Checkpoint {
	t.Helper()
	opts := anchorOpts(t, a)
	cp, err := audit.OpenCheckpoint(opts.Checkpoint, opts.Keys)
	if err != nil {
		t.Fatal(err)
	}
	return cp
}

// TestForgedAfterCleanStop: after a clean stop the unanchored window is
// zero. Close stores a checkpoint marked closed; a correctly chained
// record appended after it (a fake reveal framing a TTP identity) is
// refused by Verify and by Open, so the next checkpoint can never anchor
// it. With the forged line gone, Open reopens the chain, and the anchor
// says so before any new record is written.
func TestForgedAfterCleanStop(t *testing.T) {
	dir, a := t.TempDir(), newFileAnchor(t)
	mod := func(c *audit.Config) {
		anchoredConfig(a)(c)
		c.CheckpointEvery, c.CheckpointInterval = 1000, time.Hour
	}
	l := openLog(t, dir, mod)
	for i := range 3 {
		mustAppend(t, l, i)
	}
	if err := l.Close(); err != nil {
		t.Fatal(err)
	}
	if cp := loadCheckpoint(t, a); !cp.Closed || cp.Seq != 4 || cp.Recovered != nil {
		t.Fatalf("checkpoint after Close = %+v, want closed at seq 4", cp)
	}
	clean, err := os.ReadFile(logFile(dir, 1))
	if err != nil {
		t.Fatal(err)
	}

	for _, tc := range []struct {
		name   string
		tamper func(t *testing.T)
	}{
		{"a chained record appended", func(t *testing.T) { forgeAppend(t, dir, framing()) }},
		{"a partial line appended", func(t *testing.T) {
			f, _ := os.OpenFile(logFile(dir, 1), os.O_WRONLY|os.O_APPEND, 0)
			f.WriteString(`{"v":2,"seq":5,"prev":"00`)
			f.Close()
		}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			tc.tamper(t)
			defer os.WriteFile(logFile(dir, 1), clean, 0o600)
			_, err := verifyDir(t, dir, anchorOpts(t, a))
			var ve *audit.VerifyError
			if !errors.As(err, &ve) || ve.Reason != audit.ReasonPastClosed || ve.Seq != 5 {
				t.Fatalf("Verify = %v; want %q at seq 5", err, audit.ReasonPastClosed)
			}
			if l, err := audit.Open(audit.Config{Dir: dir, Key: testKey, Anchor: a, Replica: testReplica}); err == nil {
				l.Close()
				t.Fatal("Open continued a log with a record past its closing checkpoint")
			} else if !strings.Contains(err.Error(), audit.ReasonPastClosed) {
				t.Fatalf("Open error does not name the cause: %v", err)
			}
			if cp := loadCheckpoint(t, a); !cp.Closed || cp.Seq != 4 {
				t.Fatalf("the refusal moved the anchor: %+v", cp)
			}
		})
	}

	// The untouched log reopens. The anchor is reopened before anything
	// is written: a crash from now on is an unclean stop, not a clean one
	// someone could append to.
	l = openLog(t, dir, mod)
	if cp := loadCheckpoint(t, a); cp.Closed || cp.Seq != 4 || cp.Recovered != nil {
		t.Fatalf("checkpoint after a clean reopen = %+v, want seq 4, open", cp)
	}
	mustAppend(t, l, 3)
	if err := l.Close(); err != nil {
		t.Fatal(err)
	}
	if cp := loadCheckpoint(t, a); !cp.Closed || cp.Seq != 5 {
		t.Fatalf("checkpoint after the second Close = %+v, want closed at seq 5", cp)
	}
	rep, err := verifyDir(t, dir, anchorOpts(t, a))
	if err != nil || len(rep.Recoveries) != 0 {
		t.Fatalf("Verify = %+v, %v; want ok with no recovery", rep, err)
	}
}

// TestUncleanStopRecovered: a run that stops without its closing
// checkpoint (here the anchor is unreachable at shutdown, as with kill -9
// or a power loss) leaves records no checkpoint covered, which someone
// with the disk could have changed, a forged one appended included. That
// cannot be told apart from the run's own records, so the next Open says
// so on the record: a recovery record naming the uncovered range, then a
// checkpoint marked recovered, before anything else is written.
func TestUncleanStopRecovered(t *testing.T) {
	dir := t.TempDir()
	a := &countingAnchor{Anchor: newFileAnchor(t)}
	mod := func(c *audit.Config) {
		anchoredConfig(a)(c)
		c.CheckpointEvery, c.CheckpointInterval = 1000, time.Hour
	}
	l := openLog(t, dir, mod)
	for i := range 3 {
		mustAppend(t, l, i)
	}
	a.down.Store(true)
	if err := l.Close(); err == nil {
		t.Fatal("Close with the anchor down reported no error")
	}
	a.down.Store(false)
	if cp := loadCheckpoint(t, a); cp.Closed || cp.Seq != 1 {
		t.Fatalf("checkpoint after an unclean stop = %+v, want the chain start's, open", cp)
	}
	forgeAppend(t, dir, framing()) // seq 5: inside the uncovered window

	l = openLog(t, dir, mod)
	if st := l.Status(); !st.UncleanStart || st.Recovered != 4 {
		t.Fatalf("Status = %+v, want an unclean start with 4 records recovered", st)
	}
	cp := loadCheckpoint(t, a)
	want := audit.Recovery{Anchored: 1, Head: 5}
	if cp.Closed || cp.Seq != 6 || cp.Recovered == nil || *cp.Recovered != want {
		t.Fatalf("first checkpoint after the unclean stop = %+v (recovered %+v), want seq 6 recovered %+v", cp, cp.Recovered, want)
	}
	mustAppend(t, l, 10)
	if err := l.Close(); err != nil {
		t.Fatal(err)
	}
	rep, err := verifyDir(t, dir, anchorOpts(t, a))
	if err != nil {
		t.Fatal(err)
	}
	if len(rep.Recoveries) != 1 || rep.Recoveries[0].Seq != 6 || rep.Recoveries[0].Recovery != want {
		t.Fatalf("Verify recoveries = %+v, want one at seq 6: %+v", rep.Recoveries, want)
	}
	// A clean stop and start adds none.
	l = openLog(t, dir, mod)
	if st := l.Status(); st.UncleanStart || st.Recovered != 0 {
		t.Fatalf("Status after a clean stop = %+v", st)
	}
	l.Close()
	if rep, err := verifyDir(t, dir, anchorOpts(t, a)); err != nil || len(rep.Recoveries) != 1 {
		t.Fatalf("after a clean restart: %+v, %v", rep, err)
	}
}

// TestReservedRecords: callers cannot write the records that only the
// log writes (chain start, recovery), which verifiers trust.
func TestReservedRecords(t *testing.T) {
	l := openLog(t, t.TempDir(), nil)
	for _, r := range []audit.Record{
		{Identity: "x", Method: audit.MethodChainStart, Outcome: "ok"},
		{Identity: "x", Method: audit.MethodRecovered, Outcome: "ok"},
		{Identity: "x", Method: "Detokenize", Outcome: "ok", Recovery: &audit.Recovery{Anchored: 1, Head: 2}},
		{Identity: "x", Method: "Detokenize", Outcome: "ok", Chain: &audit.ChainStart{}},
	} {
		if err := l.Append(context.Background(), r); !errors.Is(err, audit.ErrUnavailable) {
			t.Errorf("Append(%s, recovery %v, chain %v) = %v, want refused", r.Method, r.Recovery != nil, r.Chain != nil, err)
		}
	}
}

// TestHandWrittenChainRefused: the chain is unkeyed, so anyone can write
// a new chain whose first record names the anchor's checkpoint as its
// predecessor, without jeton audit archive and without the old records.
// Only Open, from an empty directory and an archive request, may start a
// chain over an anchored one: a chain found on disk that the anchor does
// not know is refused, and the anchor stays where it was.
func TestHandWrittenChainRefused(t *testing.T) {
	dir, a := t.TempDir(), newFileAnchor(t)
	l := openLog(t, dir, anchoredConfig(a))
	mustAppend(t, l, 0)
	if err := l.Close(); err != nil {
		t.Fatal(err)
	}
	signed := anchorOpts(t, a).Checkpoint
	removeLogFiles(t, dir)
	start, err := json.Marshal(audit.Record{Time: testTime, Identity: "jetond", Method: audit.MethodChainStart, Outcome: "ok",
		Chain: &audit.ChainStart{ID: "0123456789abcdef0123456789abcdef", Replica: testReplica, Previous: string(signed),
			Archive: "archived/none", Reason: "routine"}})
	if err != nil {
		t.Fatal(err)
	}
	var zero [32]byte
	h := sha256.New()
	fmt.Fprintf(h, "jeton/audit/v2\x00%s{\"v\":2,\"seq\":1,\"rec\":%s}", zero[:], start)
	line := fmt.Sprintf("{\"v\":2,\"seq\":1,\"prev\":\"%x\",\"rec\":%s,\"hash\":\"%x\"}\n", zero[:], start, h.Sum(nil))
	if err := os.WriteFile(logFile(dir, 1), []byte(line), 0o600); err != nil {
		t.Fatal(err)
	}
	forgeAppend(t, dir, rec(1))
	if l, err := audit.Open(audit.Config{Dir: dir, Key: testKey, Anchor: a, Replica: testReplica}); err == nil {
		l.Close()
		t.Fatal("Open continued a chain written by hand over the anchored one")
	} else if !strings.Contains(err.Error(), "this log is chain 0123456789abcdef0123456789abcdef; the checkpoint is of chain") {
		t.Fatalf("Open error does not name the cause: %v", err)
	}
	if got := anchorOpts(t, a).Checkpoint; string(got) != string(signed) {
		t.Fatal("the refusal moved the anchor")
	}
}
