package server_test

import (
	"bufio"
	"context"
	"crypto/rand"
	"encoding/json"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"google.golang.org/grpc/codes"

	jetonv1 "github.com/jeton-dev/jeton/proto/jeton/v1"
	"github.com/jeton-dev/jeton/server/audit"
	"github.com/jeton-dev/jeton/server/audit/fileanchor"
)

var errInjected = errors.New("injected disk fault")

// faultDisk is an audit.Config.OpenFile whose log files (audit-*.jsonl)
// can be made to fail Write and/or Sync, and then recover, at any time.
type faultDisk struct {
	failWrite, failSync atomic.Bool
	writeFaults         atomic.Int64 // injected failures, to show the fault was hit
	syncFaults          atomic.Int64
}

func (d *faultDisk) open(name string, flag int, perm os.FileMode) (audit.File, error) {
	f, err := os.OpenFile(name, flag, perm)
	if err != nil {
		return nil, err
	}
	if !strings.HasSuffix(name, ".jsonl") {
		return f, nil
	}
	return &faultFile{File: f, d: d}, nil
}

type faultFile struct {
	*os.File
	d *faultDisk
}

func (f *faultFile) Write(p []byte) (int, error) {
	if f.d.failWrite.Load() {
		f.d.writeFaults.Add(1)
		return 0, errInjected
	}
	return f.File.Write(p)
}

func (f *faultFile) Sync() error {
	if f.d.failSync.Load() {
		f.d.syncFaults.Add(1)
		return errInjected
	}
	return f.File.Sync()
}

// With the real audit log behind the server, a disk that fails under
// concurrent reveals stops every reveal (UNAVAILABLE, no value) until it
// recovers; no call answered OK lacks its record, no refused call has one,
// and the log verifies afterwards.
func TestRevealsUnderAuditDiskFaults(t *testing.T) {
	for _, tc := range []struct {
		name             string
		failWrite, fSync bool
	}{
		{"write", true, false},
		{"fsync", false, true},
		{"write and fsync", true, true},
	} {
		t.Run(tc.name, func(t *testing.T) {
			testRevealsUnderAuditDiskFault(t, tc.failWrite, tc.fSync)
		})
	}
}

// Phases of the load. A call's phase is read before it is sent and again
// after it returns.
const (
	phaseHealthy int32 = iota
	phaseFaulty
	phaseRecovered
)

type callResult struct {
	caseRef    string
	start, end int32
	code       codes.Code
	gotResults bool
	valuesOK   bool
}

func testRevealsUnderAuditDiskFault(t *testing.T, failWrite, failSync bool) {
	key := make([]byte, audit.KeySize)
	rand.Read(key)
	logDir := filepath.Join(t.TempDir(), "audit")
	disk := &faultDisk{}
	anchor, err := fileanchor.New(t.TempDir(), "replica-0", nil)
	if err != nil {
		t.Fatal(err)
	}
	l, err := audit.Open(audit.Config{Dir: logDir, Key: key, OpenFile: disk.open, Anchor: anchor, Replica: "replica-0"})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { l.Close() })
	e := startEnv(t, envOpts{auditor: l})

	values := []string{useValue("Fault Person"), useValue("fault.person@example.org")}
	res := tokenize(t, e.sponsorConn(t),
		&jetonv1.TokenizeItem{FieldClass: "name", Value: values[0]},
		&jetonv1.TokenizeItem{FieldClass: "email", Value: values[1]})
	toks := []string{res[0].GetToken(), res[1].GetToken()}
	dc := jetonv1.NewDetokenizerClient(e.ttpConn(t))

	var (
		phase    atomic.Int32
		stop     atomic.Bool
		okCount  atomic.Int64
		faulted  atomic.Int64 // calls that started and ended in phaseFaulty
		mu       sync.Mutex
		calls    []callResult
		wg       sync.WaitGroup
		callSeq  atomic.Int64
		maxCalls = 200
	)
	call := func() callResult {
		c, cancel := context.WithTimeout(context.Background(), 30*time.Second)
		defer cancel()
		r := callResult{caseRef: fmt.Sprintf("FAULT-%d", callSeq.Add(1)), start: phase.Load()}
		out, err := dc.Detokenize(c, &jetonv1.DetokenizeRequest{Tokens: toks, Purpose: "support", CaseRef: r.caseRef})
		r.end = phase.Load()
		r.code, r.gotResults = code(err), out != nil
		if out != nil && len(out.Results) == len(values) {
			r.valuesOK = true
			for i, v := range values {
				r.valuesOK = r.valuesOK && out.Results[i].GetValue() == v
			}
		}
		if r.code == codes.OK {
			okCount.Add(1)
		}
		if r.start == phaseFaulty && r.end == phaseFaulty {
			faulted.Add(1)
		}
		mu.Lock()
		calls = append(calls, r)
		mu.Unlock()
		return r
	}
	for range 8 {
		wg.Go(func() {
			for i := 0; i < maxCalls && !stop.Load(); i++ {
				call()
			}
		})
	}
	stopLoad := func() {
		stop.Store(true)
		wg.Wait()
	}
	waitFor := func(what string, cond func() bool) {
		t.Helper()
		deadline := time.Now().Add(20 * time.Second)
		for !cond() {
			if time.Now().After(deadline) {
				stopLoad()
				t.Fatalf("timed out waiting for %s", what)
			}
			time.Sleep(2 * time.Millisecond)
		}
	}

	waitFor("healthy reveals", func() bool { return okCount.Load() >= 40 })

	// The fault is set before the phase says so, and the phase moves on
	// before the fault clears: a call that saw phaseFaulty both before and
	// after itself ran entirely while the disk failed.
	disk.failWrite.Store(failWrite)
	disk.failSync.Store(failSync)
	phase.Store(phaseFaulty)
	waitFor("refused reveals under the fault", func() bool { return faulted.Load() >= 80 })
	phase.Store(phaseRecovered)
	disk.failWrite.Store(false)
	disk.failSync.Store(false)

	// Reveals resume once the disk does: the log reopens its file.
	okBefore := okCount.Load()
	waitFor("reveals after the disk recovered", func() bool {
		if okCount.Load() > okBefore {
			return true
		}
		return call().code == codes.OK
	})
	stopLoad()

	var hits int64
	if failWrite {
		hits += disk.writeFaults.Load()
	}
	if failSync {
		hits += disk.syncFaults.Load()
	}
	if hits == 0 {
		t.Fatal("the injected fault was never hit")
	}

	okRefs := map[string]bool{}
	var faultyCalls int
	for _, r := range calls {
		if r.code == codes.OK {
			okRefs[r.caseRef] = true
			if !r.valuesOK {
				t.Errorf("call %s: OK but not the revealed values", r.caseRef)
			}
		}
		if r.start == phaseFaulty && r.end == phaseFaulty {
			faultyCalls++
			if r.code != codes.Unavailable || r.gotResults {
				t.Errorf("call %s under the disk fault: %v with results=%v, want Unavailable and nothing", r.caseRef, r.code, r.gotResults)
			}
		}
		// Nothing but OK and Unavailable: anything else is a new failure
		// mode this test does not account for.
		if r.code != codes.OK && r.code != codes.Unavailable {
			t.Errorf("call %s: unexpected %v", r.caseRef, r.code)
		}
		if r.code != codes.OK && r.gotResults {
			t.Errorf("call %s: %v but results came back", r.caseRef, r.code)
		}
	}
	if faultyCalls == 0 {
		t.Fatal("no call ran under the fault")
	}

	if err := l.Close(); err != nil {
		t.Fatalf("closing the log: %v", err)
	}
	files, err := audit.Files(logDir)
	if err != nil {
		t.Fatal(err)
	}
	// Checked as a verifier would: the public key and the last checkpoint.
	keys, _ := anchor.PublicKeys(context.Background())
	cp, _, _ := anchor.Load(context.Background())
	rep, err := audit.Verify(files, audit.VerifyOptions{Keys: keys, Checkpoint: cp})
	if err != nil {
		t.Fatalf("the log does not verify after the fault: %v", err)
	}

	// Every OK call has exactly one "ok" record, and no refused call has
	// one: the log holds the OK calls' case references, no others.
	logged := map[string]int{}
	records := 0
	for _, path := range files {
		f, err := os.Open(path)
		if err != nil {
			t.Fatal(err)
		}
		sc := bufio.NewScanner(f)
		sc.Buffer(make([]byte, 0, 64<<10), 1<<20)
		for sc.Scan() {
			records++
			var line struct {
				Rec audit.Record `json:"rec"`
			}
			if err := json.Unmarshal(sc.Bytes(), &line); err != nil {
				t.Fatalf("%s: %v", filepath.Base(path), err)
			}
			if line.Rec.Method == "Detokenize" && line.Rec.Outcome == "ok" {
				logged[line.Rec.CaseRef]++
			}
		}
		if err := sc.Err(); err != nil {
			t.Fatal(err)
		}
		f.Close()
	}
	if records != rep.Records {
		t.Errorf("parsed %d lines, Verify counted %d records", records, rep.Records)
	}
	okRecords := 0
	for ref, n := range logged {
		okRecords += n
		if n != 1 {
			t.Errorf("call %s has %d ok records", ref, n)
		}
		if !okRefs[ref] {
			t.Errorf("call %s has an ok record but was not answered OK", ref)
		}
	}
	for ref := range okRefs {
		if logged[ref] == 0 {
			t.Errorf("call %s was answered OK without an audit record", ref)
		}
	}
	if okRecords != len(okRefs) || int64(len(okRefs)) != okCount.Load() {
		t.Errorf("%d OK Detokenize calls, %d ok Detokenize records", okCount.Load(), okRecords)
	}
	t.Logf("%d calls: %d OK, %d under the fault; %d records verified; %d write and %d fsync faults injected",
		len(calls), okCount.Load(), faultyCalls, rep.Records, disk.writeFaults.Load(), disk.syncFaults.Load())
}
