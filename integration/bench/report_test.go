package bench_test

import (
	"errors"
	"fmt"
	"io/fs"
	"math"
	"os"
	"slices"
	"strconv"
	"strings"
	"time"
)

// result is one workload over all rounds.
type result struct {
	w      workload
	rounds []sample
}

// round is every workload's sample in one round, by key.
type round map[string]sample

func median(xs []float64) float64 {
	if len(xs) == 0 {
		return math.NaN()
	}
	s := slices.Clone(xs)
	slices.Sort(s)
	n := len(s)
	if n%2 == 1 {
		return s[n/2]
	}
	return (s[n/2-1] + s[n/2]) / 2
}

// med is the median over rounds of f.
func (r result) med(f func(sample) float64) float64 {
	xs := make([]float64, len(r.rounds))
	for i, s := range r.rounds {
		xs[i] = f(s)
	}
	return median(xs)
}

func (r result) errors() (calls, items int, first string) {
	for _, s := range r.rounds {
		calls += s.failedCalls
		items += s.failedItems
		if first == "" {
			first = s.firstErr
		}
	}
	return calls, items, first
}

func (r result) peakRSS() int {
	peak := 0
	for _, s := range r.rounds {
		peak = max(peak, s.rssPeak)
	}
	return peak
}

// check is a figure computed within each round; its median over rounds
// is reported, and compared with a goal when it has one.
type check struct {
	what  string
	goal  string // "" for none
	pass  func(float64) bool
	value func(round) float64
	// overRun computes the figure once over all rounds instead (a peak).
	overRun func([]result) float64
	format  func(float64) string
	// signed marks a figure that may be zero or negative when measured
	// (a cost lost in the noise); every other figure is a positive rate.
	signed bool
}

func items(k string) func(round) float64 {
	return func(r round) float64 { return r[k].itemsPerSec() }
}

func calls(k string) func(round) float64 {
	return func(r round) float64 { return r[k].callsPerSec() }
}

func ratio(a, b func(round) float64) func(round) float64 {
	return func(r round) float64 { return a(r) / b(r) }
}

func times(v float64) string { return fmtFloat(v) + "×" }

func atLeast(x float64) func(float64) bool { return func(v float64) bool { return v >= x } }
func atMost(x float64) func(float64) bool  { return func(v float64) bool { return v <= x } }

// targets are issue 10's goals, in the order it states them.
func targets() []check {
	b1k := kBatch(1000, 4, true)
	return []check{
		{what: "batched Tokenize 1,000/call c=4 with idempotency key ÷ raw pipelined Redis SET 1,000 c=4 (items/s)",
			goal: "≥ 0.5×", pass: atLeast(0.5), value: ratio(items(b1k), items(kRawPipe1000)), format: times},
		{what: "same ÷ Vault Transit batch_input 1,000 c=4 (items/s)",
			goal: "≥ 1.0×", pass: atLeast(1), value: ratio(items(b1k), items(kVaultBatch1k)), format: times},
		{what: "same ÷ Vault Transit encrypt one field per call c=64 (items/s)",
			goal: "≥ 25×", pass: atLeast(25), value: ratio(items(b1k), items(kVaultField)), format: times},
		{what: "cost of the idempotency key: 1 − (with ÷ without), Tokenize 1,000/call c=4 (items/s)",
			goal: "≤ 10%", pass: atMost(0.10), value: func(r round) float64 { return 1 - items(b1k)(r)/items(kBatch(1000, 4, false))(r) },
			format: func(v float64) string { return fmt.Sprintf("%.0f%%", 100*v) }, signed: true},
		{what: "unary Tokenize c=64 ÷ gRPC health Check c=64, same connection (calls/s)",
			goal: "≥ 0.5×", pass: atLeast(0.5), value: ratio(calls(kTokRand64), calls(kHealthPub64)), format: times},
		{what: "unary Tokenize c=64: p99 ÷ p50",
			goal: "≤ 4", pass: atMost(4), value: func(r round) float64 {
				s := r[kTokRand64]
				return float64(s.pct(0.99)) / float64(s.pct(0.50))
			}, format: fmtFloat},
		{what: "unary Detokenize c=64 (audit on) ÷ gRPC health Check c=64, same connection (calls/s)",
			goal: "≥ 0.4×", pass: atLeast(0.4), value: ratio(calls(kDetok64), calls(kHealthTru64)), format: times},
		{what: "batched Detokenize 100/call c=8 ÷ raw pipelined Redis GET 100 c=8 (items/s)",
			goal: "≥ 0.3×", pass: atLeast(0.3), value: ratio(items(kDetok100), items(kRawGet100)), format: times},
		{what: "jetond CPU per item, Tokenize 1,000/call c=4 with idempotency key",
			goal: "≤ 3 µs", pass: atMost(3), value: measured(b1k, sample.cpuPerItem),
			format: func(v float64) string { return fmtFloat(v) + " µs" }},
		{what: "Redis memory per tokenized value, Tokenize 1,000/call c=4 with idempotency key and subjects",
			goal: "≤ 200 B", pass: atMost(200), value: measured(b1k, sample.bytesPerValue),
			format: func(v float64) string { return fmt.Sprintf("%.0f B", v) }},
		{what: "jetond peak RSS over the whole run",
			goal: "≤ 200 MB", pass: atMost(200),
			overRun: func(rs []result) float64 {
				peak := 0
				for _, r := range rs {
					peak = max(peak, r.peakRSS())
				}
				return float64(peak) / 1e6
			},
			format: func(v float64) string { return fmt.Sprintf("%.0f MB", v) }},
	}
}

// otherRatios are reference points without a goal.
func otherRatios() []check {
	b1k := kBatch(1000, 4, true)
	return []check{
		{what: "unary Tokenize c=64 ÷ raw Redis SET one per call c=64 (calls/s)", value: ratio(calls(kTokRand64), calls(kRawSet64)), format: times},
		{what: "Tokenize 1,000/call c=4 without idempotency key ÷ raw pipelined Redis SET (items/s)", value: ratio(items(kBatch(1000, 4, false)), items(kRawPipe1000)), format: times},
		{what: "Tokenize 1,000/call with idempotency key: c=8 ÷ c=4 (items/s)", value: ratio(items(kBatch(1000, 8, true)), items(b1k)), format: times},
		{what: "Tokenize 1,000/call c=4 over gRPC ÷ the tokenizer in process (items/s)", value: ratio(items(b1k), items(kInprocBatch)), format: times},
		{what: "unary Tokenize c=64 over gRPC ÷ the tokenizer in process (calls/s)", value: ratio(calls(kTokRand64), calls(kInprocUnary)), format: times},
		{what: "unary Tokenize c=64: deterministic ÷ random class (calls/s)", value: ratio(calls(kTokDet64), calls(kTokRand64)), format: times},
		{what: "appendfsync always ÷ everysec: Tokenize 1,000/call c=4 with idempotency key (items/s)", value: ratio(items(b1k+kAlways), items(b1k)), format: times},
		{what: "appendfsync always ÷ everysec: unary Tokenize c=64 (calls/s)", value: ratio(calls(kTokRand64+kAlways), calls(kTokRand64)), format: times},
		{what: "appendfsync always ÷ everysec: raw pipelined Redis SET 1,000 c=4 (items/s)", value: ratio(items(kRawPipe1000+kAlways), items(kRawPipe1000)), format: times},
		{what: "appendfsync always ÷ everysec: raw Redis SET one per call c=64 (calls/s)", value: ratio(calls(kRawSet64+kAlways), calls(kRawSet64)), format: times},
	}
}

// evaluate returns a check's figure: the median over rounds of its value
// in each round, or its whole-run figure.
// measured is f of a workload's sample, NaN (not measured) when the
// workload did not run (-jeton.bench.only), rather than its zero.
func measured(key string, f func(sample) float64) func(round) float64 {
	return func(r round) float64 {
		s, ok := r[key]
		if !ok {
			return math.NaN()
		}
		return f(s)
	}
}

func evaluate(c check, rs []result) float64 {
	if c.overRun != nil {
		return c.overRun(rs)
	}
	n := len(rs[0].rounds)
	xs := make([]float64, n)
	for i := range n {
		r := round{}
		for _, res := range rs {
			r[res.w.key] = res.rounds[i]
		}
		xs[i] = c.value(r)
	}
	return median(xs)
}

// runInfo describes a run for the report.
type runInfo struct {
	title    string
	started  time.Time
	took     time.Duration
	command  string
	machine  []string
	setup    []string
	notes    []string
	rounds   int
	duration time.Duration
}

// render returns the run as a markdown section: the context, the targets,
// other ratios and the table of every workload.
func render(info runInfo, rs []result) string {
	var b strings.Builder
	title := info.title
	if title == "" {
		title = "Run"
	}
	fmt.Fprintf(&b, "## %s, %s\n\n", title, info.started.UTC().Format("2006-01-02 15:04 MST"))
	fmt.Fprintf(&b, "- Command: %s\n", info.command)
	for _, l := range info.machine {
		fmt.Fprintf(&b, "- %s\n", l)
	}
	for _, l := range info.setup {
		fmt.Fprintf(&b, "- %s\n", l)
	}
	fmt.Fprintf(&b, "- %d interleaved rounds of %s per workload; ratios are taken within each round and the median over rounds is shown. The run took %s.\n",
		info.rounds, info.duration, info.took.Round(time.Second))
	for _, l := range info.notes {
		fmt.Fprintf(&b, "- %s\n", l)
	}

	b.WriteString("\n### Targets (issue 10)\n\n| target | goal | measured | |\n|---|---|---|---|\n")
	for _, c := range targets() {
		v := evaluate(c, rs)
		verdict := "miss"
		if c.pass(v) {
			verdict = "pass"
		}
		if math.IsNaN(v) || math.IsInf(v, 0) {
			verdict = "not measured"
		}
		fmt.Fprintf(&b, "| %s | %s | %s | %s |\n", c.what, c.goal, c.format(v), verdict)
	}
	b.WriteString("\n### Other ratios\n\n| ratio | measured |\n|---|---|\n")
	for _, c := range otherRatios() {
		fmt.Fprintf(&b, "| %s | %s |\n", c.what, c.format(evaluate(c, rs)))
	}

	b.WriteString(renderBefore(rs))

	b.WriteString("\n### Workloads\n\n")
	b.WriteString("| workload | c | items/call | items/s | calls/s | p50 | p99 | p99.9 | errors | server CPU µs/item | jetond peak RSS | Redis B/value | Redis main thread µs/call | Redis commands/call |\n")
	b.WriteString("|---|--:|--:|--:|--:|--:|--:|--:|--:|--:|--:|--:|--:|--:|\n")
	for _, r := range rs {
		w := r.w
		ec, ei, _ := r.errors()
		errs := strconv.Itoa(ec)
		if ei > 0 {
			errs += fmt.Sprintf(" (%d items)", ei)
		}
		cpu, rss := "—", "—"
		switch w.cpu {
		case cpuJetond:
			cpu = fmtFloat(r.med(sample.cpuPerItem))
			rss = fmt.Sprintf("%.0f MB", float64(r.peakRSS())/1e6)
		case cpuSelf:
			cpu = fmtFloat(r.med(sample.cpuPerItem)) + " †"
		}
		bytes, rmain, rcmds := "—", "—", "—"
		if w.stores {
			bytes = fmt.Sprintf("%.0f", r.med(sample.bytesPerValue))
		}
		if w.redis {
			rmain = fmtFloat(r.med(sample.redisMainPerCall))
			rcmds = fmtFloat(r.med(sample.redisCmdsPerCall))
		}
		pct := func(p float64) string {
			return fmtDur(time.Duration(r.med(func(s sample) float64 { return float64(s.pct(p)) })))
		}
		fmt.Fprintf(&b, "| %s | %d | %s | %s | %s | %s | %s | %s | %s | %s | %s | %s | %s | %s |\n",
			w.name, w.conc, fmtInt(float64(w.perCall)), fmtInt(r.med(sample.itemsPerSec)), fmtInt(r.med(sample.callsPerSec)),
			pct(0.50), pct(0.99), pct(0.999), errs, cpu, rss, bytes, rmain, rcmds)
	}
	b.WriteString(`
Columns: medians over rounds, except errors (summed) and peak RSS (the highest). Server CPU is
jetond's user and system time (from /proc/<pid>/stat) per item served, health checks included;
† marks the benchmark process's own CPU, for the tokenizer in process. Redis B/value is the growth
of INFO used_memory (client and AOF buffers excluded) per value stored, plus 8 B per new key in
each of Redis's two key tables: the tables are sized once before the run so that no workload
grows or shrinks them, and a table sized to its keys needs one 8-byte slot per key (up to two
as it fills). Redis main thread time is used_cpu_{user,sys}_main_thread (commands, network I/O
and, under appendfsync always, the fsync); commands per call are from INFO commandstats. Rows
marked "baseline" do not involve jeton.
`)
	b.WriteString(renderCPU(rs))
	return b.String()
}

// renderCPU splits each row's CPU time per item between the processes that
// share the machine, and says how many cores they kept busy together. A
// row whose cores busy is near the machine's count is bound by CPU: its
// throughput is about cores ÷ total CPU per item, so the ratio of two such
// rows is the inverse ratio of their totals, whatever each process does.
func renderCPU(rs []result) string {
	var b strings.Builder
	b.WriteString("\n### CPU per item, by process\n\n")
	b.WriteString("| workload | c | items/call | items/s | jetond µs/item | Redis µs/item | Vault µs/item | load generator µs/item | total µs/item | cores busy |\n")
	b.WriteString("|---|--:|--:|--:|--:|--:|--:|--:|--:|--:|\n")
	per := func(d func(sample) time.Duration) func(sample) float64 {
		return func(s sample) float64 { return float64(d(s).Microseconds()) / float64(max(s.okItems, 1)) }
	}
	for _, r := range rs {
		w := r.w
		jetond := func(s sample) time.Duration {
			if w.cpu != cpuJetond {
				return 0
			}
			return s.cpu
		}
		total := func(s sample) time.Duration { return jetond(s) + s.redis.procCPU + s.vaultCPU + s.loadCPU }
		j := "—"
		if w.cpu == cpuJetond {
			j = fmtFloat(r.med(per(jetond)))
		}
		busy := r.med(func(s sample) float64 { return total(s).Seconds() / s.elapsed.Seconds() })
		fmt.Fprintf(&b, "| %s | %d | %s | %s | %s | %s | %s | %s | %s | %.2f |\n",
			w.name, w.conc, fmtInt(float64(w.perCall)), fmtInt(r.med(sample.itemsPerSec)), j,
			fmtFloat(r.med(per(func(s sample) time.Duration { return s.redis.procCPU }))),
			fmtFloat(r.med(per(func(s sample) time.Duration { return s.vaultCPU }))),
			fmtFloat(r.med(per(func(s sample) time.Duration { return s.loadCPU }))),
			fmtFloat(r.med(per(total))), busy)
	}
	b.WriteString(`
CPU time per item served, medians over rounds: jetond's (/proc/<pid>/stat), Redis's whole
process (INFO used_cpu_user and used_cpu_sys: the main thread and its background threads),
Vault's (/proc/<pid>/stat) and this process's, which generates the load and, in the rows "tokenizer
in process", also runs the tokenizer. Cores busy is their sum over the elapsed time. All of them
share the machine's CPUs; a row whose cores busy is close to that number is bound by CPU, so its
items/s is about cores ÷ total µs/item, and making one process cheaper raises it only by that
process's share of the total.
`)
	return b.String()
}

func fmtDur(d time.Duration) string {
	switch {
	case d <= 0:
		return "—"
	case d < time.Millisecond:
		return fmt.Sprintf("%d µs", d.Microseconds())
	case d < 100*time.Millisecond:
		return fmt.Sprintf("%.1f ms", float64(d)/1e6)
	default:
		return fmt.Sprintf("%.0f ms", float64(d)/1e6)
	}
}

// fmtInt writes v rounded, with thousands separated by commas.
func fmtInt(v float64) string {
	if math.IsNaN(v) || math.IsInf(v, 0) {
		return "—"
	}
	s := strconv.FormatInt(int64(math.Round(v)), 10)
	neg := strings.HasPrefix(s, "-")
	s = strings.TrimPrefix(s, "-")
	for i := len(s) - 3; i > 0; i -= 3 {
		s = s[:i] + "," + s[i:]
	}
	if neg {
		s = "-" + s
	}
	return s
}

// fmtFloat keeps two or three significant digits.
func fmtFloat(v float64) string {
	switch a := math.Abs(v); {
	case math.IsNaN(v) || math.IsInf(v, 0):
		return "—"
	case a >= 100:
		return fmtInt(v)
	case a >= 10:
		return fmt.Sprintf("%.1f", v)
	case a >= 0.1:
		return fmt.Sprintf("%.2f", v)
	default:
		return fmt.Sprintf("%.3f", v)
	}
}

// runsMarker is the line under which each run is added, newest first.
const runsMarker = "<!-- make bench adds each run below this line, newest first -->"

const benchmarksHeader = `# jeton benchmarks

` + "`make bench`" + ` measures jeton end to end, over gRPC with mutual TLS, on a real Redis and a
real Vault, next to the baselines it is judged against, all on this machine and in the same
run. Absolute figures depend on the machine and on what else it is doing; compare ratios.
Each run is added at the top of the list below. Keep the runs that document a change (before
and after it), and discard the others.

` + runsMarker + "\n"

// addRun inserts section under the runs marker of the markdown file at
// path, creating the file with its header if needed.
func addRun(path, section string) error {
	b, err := os.ReadFile(path)
	switch {
	case errors.Is(err, fs.ErrNotExist):
		b = []byte(benchmarksHeader)
	case err != nil:
		return err
	}
	s := string(b)
	i := strings.Index(s, runsMarker)
	if i < 0 {
		s = strings.TrimRight(s, "\n") + "\n\n" + runsMarker + "\n"
		i = strings.Index(s, runsMarker)
	}
	at := i + len(runsMarker)
	out := s[:at] + "\n\n" + strings.TrimRight(section, "\n") + "\n"
	if rest := strings.TrimLeft(s[at:], "\n"); rest != "" {
		out += "\n" + rest
	}
	return os.WriteFile(path, []byte(out), 0o644)
}
