package bench_test

import (
	"bytes"
	"compress/gzip"
	"context"
	"flag"
	"fmt"
	"io"
	"os"
	"os/exec"
	"path/filepath"
	"runtime"
	"strings"
	"testing"
	"time"

	"github.com/prometheus/procfs"
)

var note = flag.String("jeton.bench.note", "", "a remark printed with the run, e.g. that the machine was busy")

// Smoke run: every workload once, briefly, so `make test` keeps the
// harness working. Figures from it mean nothing.
const (
	smokeDuration = 150 * time.Millisecond
	smokePool     = 300
	fullPool      = 20000
	warmUp        = 300 * time.Millisecond
)

// TestBench is `make bench`; see the package documentation.
func TestBench(t *testing.T) {
	nRounds, dur, pool, prof := 1, smokeDuration, smokePool, ""
	if *fullRun {
		if *rounds < 1 || *rounds > 20 || *duration < 100*time.Millisecond || *duration > time.Minute || *maxItems < 1000 || *maxItems > 5_000_000 {
			t.Fatalf("-jeton.bench.rounds must be 1 to 20, -jeton.bench.duration 100ms to 1m and -jeton.bench.maxitems 1,000 to 5,000,000")
		}
		nRounds, dur, pool, prof = *rounds, *duration, fullPool, *profDir
	} else {
		// The smoke run profiles one workload, to keep that path working.
		prof = t.TempDir()
	}
	if prof != "" {
		if err := os.MkdirAll(prof, 0o755); err != nil {
			t.Fatal(err)
		}
	}
	started := time.Now()
	loadBefore := loadAvg()

	d := deploy(t, prof != "")
	var bd *deployment // the before binary's, when comparing
	if *before != "" {
		bd = d.twin(t, *before)
	}
	f := prepare(t, d, pool, *fullRun)
	ws := workloads(d, f)
	if *fullRun && *only != "" {
		ws = onlyWorkloads(t, ws, *only)
	}
	// Each workload runs on its deployment; a before workload runs next
	// to its twin (see before_test.go).
	on := make([]*deployment, len(ws))
	for i := range on {
		on[i] = d
	}
	twinOf := map[int]int{}
	if bd != nil {
		for _, w := range beforeWorkloads(ws, bd, f) {
			twinOf[indexOf(ws, strings.TrimSuffix(w.key, beforeSuffix))] = len(ws)
			ws, on = append(ws, w), append(on, bd)
		}
	}
	nOwn := len(on) - len(twinOf)
	ctx := context.Background()
	fmt.Printf("bench: set up in %s\n", time.Since(started).Round(time.Second))
	setFsync := func(always bool) {
		policy := map[bool]string{false: "everysec", true: "always"}[always]
		if err := d.rdb.ConfigSet(ctx, "appendfsync", policy).Err(); err != nil {
			t.Fatalf("CONFIG SET appendfsync %s: %v", policy, err)
		}
	}
	rewrites0, err := readRedis(ctx, d.rdb)
	if err != nil {
		t.Fatal(err)
	}
	logBytes0 := fileSize(d.jetondLog)

	if *fullRun {
		fmt.Printf("bench: warming up every workload for %s\n", warmUp)
		for i, w := range ws {
			setFsync(w.always)
			if _, err := on[i].measure(w, warmUp, ""); err != nil {
				t.Fatal(err)
			}
			if err := f.clean(ctx, d.rdb); err != nil {
				t.Fatal(err)
			}
		}
		setFsync(false)
	}
	results := make([]result, len(ws))
	for i, w := range ws {
		results[i].w = w
	}
	for r := range nRounds {
		// This tree's workloads in order, each with its twin just after
		// it, or just before it in odd rounds.
		var order []int
		for i := range nOwn {
			tw, ok := twinOf[i]
			switch {
			case !ok:
				order = append(order, i)
			case r%2 == 0:
				order = append(order, i, tw)
			default:
				order = append(order, tw, i)
			}
		}
		for _, i := range order {
			w := ws[i]
			setFsync(w.always)
			wdur, wprof := dur, ""
			switch {
			case *fullRun && r == nRounds-1:
				wprof = prof
			case !*fullRun && w.key == kTokRand16:
				wdur, wprof = time.Second, prof // a CPU profile takes whole seconds
			}
			s, err := on[i].measure(w, wdur, wprof)
			if err != nil {
				t.Fatalf("%s: %v", w.key, err)
			}
			results[i].rounds = append(results[i].rounds, s)
			if err := f.clean(ctx, d.rdb); err != nil {
				t.Fatal(err)
			}
			fmt.Printf("bench: %5s round %d/%d  %-62s c=%-3d %12s items/s  p50 %8s  errors %d\n",
				time.Since(started).Round(time.Second), r+1, nRounds, w.name, w.conc, fmtInt(s.itemsPerSec()), fmtDur(s.pct(0.5)), s.failedCalls)
		}
		setFsync(false)
	}

	rewrites1, err := readRedis(ctx, d.rdb)
	if err != nil {
		t.Fatal(err)
	}
	info := runInfo{
		title: *title, started: started, took: time.Since(started), rounds: nRounds, duration: dur,
		command: command(),
		machine: machine(d, loadBefore),
		setup: []string{
			fmt.Sprintf("jetond: the built binary on a production configuration: mutual TLS 1.3 on both listeners (all calls to a listener share one connection), "+
				"audit log on (a Detokenize answers once its record is on disk), Redis and Vault backends, log level info (JSON), pprof %s", onOff(prof != "")),
			"Redis: AOF on, appendfsync everysec, with a pass under appendfsync always; no RDB snapshots, no automatic AOF rewrite. Keys a workload creates are deleted after it; " +
				"the key tables are sized once (2^19 slots) so that none grows or shrinks during a measurement, and a measurement stops at " + fmtInt(float64(*maxItems)) + " items",
			"Vault: Transit on file storage; the encryption baselines use an aes256-gcm96 key of their own, with the root token",
			"Budgets: " + budgetNote,
			fmt.Sprintf("Records: jeton's measured %d B key and %d B value; the raw Redis baselines store values of that size under keys of that length, with the same TTL (%s)",
				f.recordKeyLen, f.recordValueLen, fmt.Sprintf("%.0fh", retention.Hours())),
			"Items: classes name, email, address and text in turn (values of 16 to 45 bytes); batched items carry a data-subject id, one per four items. " +
				"Every Tokenize that says so sends an idempotency key, and unary ones always do, as the client library does. Detokenize reads a pool of " +
				fmt.Sprint(len(f.tokens)) + " tokens with a purpose and a case reference",
			"Load: this test process, on the same machine, keeps c calls in flight (closed loop)",
		},
	}
	info.notes = append(info.notes, fmt.Sprintf("During the run: %d AOF rewrites; jetond wrote %.1f MB of log.",
		rewrites1.aofRewrites-rewrites0.aofRewrites, float64(fileSize(d.jetondLog)-logBytes0)/1e6))
	if *fullRun && prof != "" {
		info.notes = append(info.notes, fmt.Sprintf("The last round ran with jetond's CPU and allocation profiles being taken (files in %s; `go tool pprof -top <file>`).", prof))
	}
	if bd != nil {
		info.notes = append(info.notes, fmt.Sprintf("Before and after: every jeton workload, and the health checks, also ran against the jetond binary %s "+
			"(rows marked [before]), on the same Redis and Vault, each next to its twin in every round, the order alternating by round.", *before))
	}
	if *fullRun && *only != "" {
		info.notes = append(info.notes, "Only the workloads "+*only+" ran (-jeton.bench.only): the other rows and most ratios are not measured.")
	}
	if *fullRun && *maxItems > 200_000 {
		info.notes = append(info.notes, "Measurements ran up to "+fmtInt(float64(*maxItems))+" items (-jeton.bench.maxitems), so that profiles cover the whole duration: Redis's key tables grew during them, and the Redis B/value column is not comparable with other runs'.")
	}
	if *note != "" {
		info.notes = append(info.notes, *note)
	}
	md := render(info, results)
	fmt.Println()
	fmt.Print(md)
	if *outPath != "" {
		if err := addRun(*outPath, md); err != nil {
			t.Fatal(err)
		}
		fmt.Printf("\nbench: added this run to %s\n", *outPath)
	}

	// The figures are for reading; what fails the test is a harness that
	// no longer measures everything.
	for _, r := range results {
		if calls, items, first := r.errors(); calls > 0 || items > 0 {
			t.Errorf("%s: %d failed calls, %d failed items; first: %s", r.w.key, calls, items, first)
		}
		for i, s := range r.rounds {
			if s.calls == 0 || s.okItems == 0 {
				t.Errorf("%s: round %d made no successful call", r.w.key, i+1)
			}
			if r.w.cpu == cpuJetond && s.rssPeak == 0 {
				t.Errorf("%s: round %d read no RSS of jetond", r.w.key, i+1)
			}
			if r.w.redis && s.redis.calls == 0 {
				t.Errorf("%s: round %d saw no Redis command", r.w.key, i+1)
			}
		}
		if !strings.Contains(md, "| "+r.w.name+" | "+fmt.Sprint(r.w.conc)+" |") {
			t.Errorf("the table has no row for %s", r.w.key)
		}
	}
	for _, c := range append(targets(), otherRatios()...) {
		if v := evaluate(c, results); (v != v || (v <= 0 && !c.signed)) && (*only == "" || !*fullRun) {
			t.Errorf("%q: measured %v", c.what, v)
		}
	}
	if !*fullRun {
		for _, kind := range []string{"cpu", "allocs"} {
			wantProfile(t, filepath.Join(prof, kTokRand16+"."+kind+".pprof"))
		}
	}
}

// wantProfile checks that path holds a gzipped pprof profile.
func wantProfile(t *testing.T, path string) {
	t.Helper()
	b, err := os.ReadFile(path)
	if err != nil {
		t.Fatalf("profile: %v", err)
	}
	zr, err := gzip.NewReader(bytes.NewReader(b))
	if err != nil {
		t.Fatalf("profile %s is not gzip: %v", path, err)
	}
	if raw, err := io.ReadAll(zr); err != nil || len(raw) == 0 {
		t.Fatalf("profile %s is empty or broken: %v", path, err)
	}
}

func onOff(on bool) string {
	if on {
		return "on"
	}
	return "off"
}

// command says, in markdown, how this run was asked for.
func command() string {
	args := []string{"-jeton.bench"}
	flag.Visit(func(f *flag.Flag) {
		switch f.Name {
		case "jeton.bench.rounds", "jeton.bench.duration", "jeton.bench.profile", "jeton.bench.before", "jeton.bench.only", "jeton.bench.maxitems":
			args = append(args, "-"+f.Name+"="+f.Value.String())
		}
	})
	if !*fullRun {
		return "`go test ./integration/bench` (a smoke run)"
	}
	return "`make bench`, which runs `go test ./integration/bench -run '^TestBench$' -args " + strings.Join(args, " ") + "`"
}

// machine describes the machine and the software under test.
func machine(d *deployment, loadBefore string) []string {
	cpu := "unknown CPU"
	if fs, err := procfs.NewDefaultFS(); err == nil {
		if ci, err := fs.CPUInfo(); err == nil && len(ci) > 0 {
			cpu = ci[0].ModelName
		}
	}
	mem := ""
	if fs, err := procfs.NewDefaultFS(); err == nil {
		if mi, err := fs.Meminfo(); err == nil && mi.MemTotal != nil {
			mem = fmt.Sprintf(", %.0f GiB of memory", float64(*mi.MemTotal)/(1<<20))
		}
	}
	kernel, _ := os.ReadFile("/proc/sys/kernel/osrelease")
	rv := "?"
	if info, err := d.rdb.InfoMap(context.Background(), "server").Result(); err == nil {
		rv = info["Server"]["redis_version"]
	}
	rev := "unknown revision"
	if out, err := exec.Command("git", "describe", "--always", "--dirty").Output(); err == nil {
		rev = strings.TrimSpace(string(out))
	}
	return []string{
		fmt.Sprintf("Machine: %s, %d logical CPUs%s, Linux %s; Go %s", cpu, runtime.NumCPU(), mem, strings.TrimSpace(string(kernel)), runtime.Version()),
		fmt.Sprintf("Software: jetond at %s, Redis %s, Vault %s", rev, rv, d.vaultVersion),
		fmt.Sprintf("Load average (1, 5, 15 min) before the run: %s; after: %s. Redis, Vault, jetond and the load generator share these CPUs", loadBefore, loadAvg()),
	}
}

func loadAvg() string {
	fs, err := procfs.NewDefaultFS()
	if err != nil {
		return "?"
	}
	l, err := fs.LoadAvg()
	if err != nil {
		return "?"
	}
	return fmt.Sprintf("%.2f, %.2f, %.2f", l.Load1, l.Load5, l.Load15)
}

func fileSize(path string) int64 {
	st, err := os.Stat(path)
	if err != nil {
		return 0
	}
	return st.Size()
}
