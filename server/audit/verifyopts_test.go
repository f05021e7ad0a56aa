package audit_test

import (
	"errors"
	"testing"

	"github.com/jeton-dev/jeton/server/audit"
)

// rotatedLog writes n records to an anchored log, one file per record,
// and closes it: its files are audit-000001..audit-(n+1).jsonl.
func rotatedLog(t *testing.T, n int) (string, audit.Anchor) {
	t.Helper()
	dir, a := t.TempDir(), newFileAnchor(t)
	l := openLog(t, dir, func(c *audit.Config) { anchoredConfig(a)(c); c.MaxFileBytes = 1 })
	for i := range n {
		mustAppend(t, l, i)
	}
	if err := l.Close(); err != nil {
		t.Fatal(err)
	}
	return dir, a
}

func files(dir string, from, to int) []string {
	var out []string
	for i := from; i <= to; i++ {
		out = append(out, logFile(dir, i))
	}
	return out
}

// TestVerifyPartialCoverage: with Partial, the files given may start
// mid-chain, so the checkpoint proves something only if its seq is among
// them and its head matches there. Files that start after it (another
// replica's log, another chain, or this chain's later files) are not
// checked by it: Verify says so instead of passing.
func TestVerifyPartialCoverage(t *testing.T) {
	dir, a := rotatedLog(t, 10) // records 1..11
	other, _ := rotatedLog(t, 20)
	// The checkpoint of a running server: open, not closed (a closed one
	// would refuse any later seq anyway).
	l := openLog(t, dir, anchoredConfig(a))
	opts := anchorOpts(t, a)
	l.Close()
	if cp := loadCheckpointBytes(t, opts); cp.Seq != 11 || cp.Closed {
		t.Fatalf("checkpoint = %v, want seq 11, open", cp)
	}
	opts.Partial = true
	closedCP := anchorOpts(t, a).Checkpoint
	for _, tt := range []struct {
		name   string
		files  []string
		want   string // a Reason, or "" for success
		closed bool   // against the closed checkpoint
	}{
		{"files around the checkpoint", files(dir, 5, 11), "", false},
		{"files ending before it", files(dir, 5, 9), audit.ReasonBehindCheckpoint, false},
		{"another log, covering its seq", files(other, 5, 21), audit.ReasonCheckpoint, false},
		{"another log, starting after its seq", files(other, 15, 21), audit.ReasonNotCovered, false},
		{"another log, starting after a closed checkpoint's seq", files(other, 15, 21), audit.ReasonNotCovered, true},
		{"files around a closed checkpoint", files(dir, 5, 11), "", true},
	} {
		t.Run(tt.name, func(t *testing.T) {
			rep, err := audit.Verify(tt.files, opts)
			if tt.closed {
				rep, err = audit.Verify(tt.files, audit.VerifyOptions{Keys: opts.Keys, Checkpoint: closedCP, Partial: true})
			}
			var ve *audit.VerifyError
			switch {
			case tt.want == "" && err != nil:
				t.Fatalf("Verify = %v, want success", err)
			case tt.want == "" && rep.FirstSeq != 5:
				t.Fatalf("Verify = %+v", rep)
			case tt.want != "" && (!errors.As(err, &ve) || ve.Reason != tt.want):
				t.Fatalf("Verify = %+v, %v; want %q", rep, err, tt.want)
			}
		})
	}
}

// TestVerifyReplica: a verifier names the replica it means to check; the
// log's chain and the checkpoint must both be that replica's. Otherwise a
// directory swapped for another replica's log verifies against that
// replica's own anchor.
func TestVerifyReplica(t *testing.T) {
	dir, a := rotatedLog(t, 3)
	for _, tt := range []struct {
		name    string
		replica string
		partial bool
		want    string
	}{
		{"the log's replica", testReplica, false, ""},
		{"no replica named", "", false, ""},
		{"another replica", "replica-1", false, audit.ReasonReplica},
		{"another replica, partial", "replica-1", true, audit.ReasonReplica},
	} {
		t.Run(tt.name, func(t *testing.T) {
			opts := anchorOpts(t, a)
			opts.Replica, opts.Partial = tt.replica, tt.partial
			fs := files(dir, 1, 4)
			if tt.partial {
				fs = fs[1:]
			}
			_, err := audit.Verify(fs, opts)
			var ve *audit.VerifyError
			if tt.want == "" && err != nil || tt.want != "" && (!errors.As(err, &ve) || ve.Reason != tt.want) {
				t.Fatalf("Verify = %v, want %q", err, tt.want)
			}
			if _, err := audit.VerifyHistory(dir, opts); (err == nil) != (tt.want == "") && !tt.partial {
				t.Fatalf("VerifyHistory = %v, want %q", err, tt.want)
			}
		})
	}
}

func loadCheckpointBytes(t testing.TB, opts audit.VerifyOptions) audit.Checkpoint {
	t.Helper()
	cp, err := audit.OpenCheckpoint(opts.Checkpoint, opts.Keys)
	if err != nil {
		t.Fatal(err)
	}
	return cp
}
