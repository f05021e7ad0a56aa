package bench_test

import (
	"math"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"
)

func TestMedian(t *testing.T) {
	tests := []struct {
		name string
		in   []float64
		want float64
	}{
		{"one", []float64{3}, 3},
		{"odd, unsorted", []float64{5, 1, 3}, 3},
		{"even", []float64{4, 1, 3, 2}, 2.5},
	}
	for _, tt := range tests {
		if got := median(tt.in); got != tt.want {
			t.Errorf("%s: median(%v) = %v, want %v", tt.name, tt.in, got, tt.want)
		}
	}
	if !math.IsNaN(median(nil)) {
		t.Error("median of nothing is not NaN")
	}
	in := []float64{3, 1, 2}
	median(in)
	if in[0] != 3 {
		t.Error("median sorted its argument in place")
	}
}

func TestPercentileNearestRank(t *testing.T) {
	var s sample
	for i := 1; i <= 1000; i++ {
		s.lat = append(s.lat, time.Duration(i)*time.Millisecond)
	}
	tests := []struct {
		p    float64
		want time.Duration
	}{
		{0.50, 500 * time.Millisecond},
		{0.99, 990 * time.Millisecond},
		{0.999, 999 * time.Millisecond},
		{1, 1000 * time.Millisecond},
	}
	for _, tt := range tests {
		if got := s.pct(tt.p); got != tt.want {
			t.Errorf("pct(%v) = %v, want %v", tt.p, got, tt.want)
		}
	}
	if got := (sample{lat: []time.Duration{7}}).pct(0.999); got != 7 {
		t.Errorf("pct of one sample = %v", got)
	}
	if got := (sample{}).pct(0.5); got != 0 {
		t.Errorf("pct of no sample = %v", got)
	}
}

func TestFormats(t *testing.T) {
	tests := []struct{ got, want string }{
		{fmtInt(1234567.4), "1,234,567"},
		{fmtInt(999), "999"},
		{fmtInt(-12345), "-12,345"},
		{fmtInt(math.NaN()), "—"},
		{fmtFloat(0.1234), "0.12"},
		{fmtFloat(0.01234), "0.012"},
		{fmtFloat(12.34), "12.3"},
		{fmtFloat(1234.5), "1,235"},
		{fmtDur(850 * time.Microsecond), "850 µs"},
		{fmtDur(12340 * time.Microsecond), "12.3 ms"},
		{fmtDur(250 * time.Millisecond), "250 ms"},
	}
	for _, tt := range tests {
		if tt.got != tt.want {
			t.Errorf("got %q, want %q", tt.got, tt.want)
		}
	}
}

// Each run goes on top of the list, under the header, and earlier runs
// stay.
func TestAddRunKeepsEarlierRuns(t *testing.T) {
	path := filepath.Join(t.TempDir(), "BENCHMARKS.md")
	if err := addRun(path, "## First run\n\nfigures one\n"); err != nil {
		t.Fatal(err)
	}
	if err := addRun(path, "## Second run\n\nfigures two\n"); err != nil {
		t.Fatal(err)
	}
	b, err := os.ReadFile(path)
	if err != nil {
		t.Fatal(err)
	}
	s := string(b)
	header, second, first := strings.Index(s, "# jeton benchmarks"), strings.Index(s, "## Second run"), strings.Index(s, "## First run")
	if header != 0 || second < 0 || first < 0 || !(header < second && second < first) {
		t.Fatalf("want the header, then the second run, then the first:\n%s", s)
	}
	if !strings.Contains(s, "figures two\n\n## First run") || !strings.HasSuffix(s, "figures one\n") {
		t.Fatalf("runs are not separated by one blank line:\n%q", s)
	}

	// A file without the marker keeps what it has and gains the marker.
	other := filepath.Join(t.TempDir(), "other.md")
	if err := os.WriteFile(other, []byte("# Notes\n\nkept\n"), 0o644); err != nil {
		t.Fatal(err)
	}
	if err := addRun(other, "## Run\n"); err != nil {
		t.Fatal(err)
	}
	b, _ = os.ReadFile(other)
	if want := "# Notes\n\nkept\n\n" + runsMarker + "\n\n## Run\n"; string(b) != want {
		t.Fatalf("got %q, want %q", b, want)
	}
}

// The before/after table pairs each workload with its before twin and
// reports the median of the ratios taken within each round, not the ratio
// of the medians.
func TestRenderBefore(t *testing.T) {
	w := workload{key: "tok", name: "Tokenize 1 item", conc: 64, perCall: 1, cpu: cpuJetond, redis: true}
	wb := w
	wb.key, wb.name = w.key+beforeSuffix, w.name+" [before]"
	round := func(calls int, cpu time.Duration) sample {
		return sample{calls: calls, okItems: calls, elapsed: time.Second, cpu: cpu, lat: []time.Duration{time.Millisecond}}
	}
	// Round by round: 2×, 3×, 1.5× faster; the medians of each side
	// alone would give 300 ÷ 100 = 3×.
	after := result{w: w, rounds: []sample{round(200, time.Second), round(300, time.Second), round(600, time.Second)}}
	before := result{w: wb, rounds: []sample{round(100, time.Second), round(100, time.Second), round(400, time.Second)}}
	md := renderBefore([]result{after, before, {w: workload{key: "alone", name: "health"}}})
	if !strings.Contains(md, "| Tokenize 1 item | 64 | 1 | 100 | 300 | 2.00× |") {
		t.Fatalf("want the median of the per-round ratios (2×):\n%s", md)
	}
	if strings.Count(md, "\n| ") != 2 || strings.Contains(md, "health") {
		t.Fatalf("want one row, for the pair only:\n%s", md)
	}
	if renderBefore([]result{after}) != "" {
		t.Fatal("a run without before twins has a before/after table")
	}
}

// TestTargetsNotRunAreNotMeasured: a target whose workload did not run
// (-jeton.bench.only) is not measured, never a pass on a zero value.
func TestTargetsNotRunAreNotMeasured(t *testing.T) {
	rs := []result{{w: workload{key: kHealthPub64}, rounds: []sample{{}}}}
	for _, c := range targets() {
		if c.overRun != nil {
			continue
		}
		if v := evaluate(c, rs); !math.IsNaN(v) && !math.IsInf(v, 0) {
			t.Errorf("%s: %v without its workload, want not measured", c.what, v)
		}
	}
}

// TestRenderCPU splits a row's CPU per item between the processes and adds
// them up; jetond's time counts only in rows charged to jetond (in an
// in-process row, the tokenizer's time is this process's, counted once).
func TestRenderCPU(t *testing.T) {
	s := sample{calls: 100, okItems: 1000, elapsed: time.Second, cpu: 4 * time.Millisecond,
		loadCPU: 2 * time.Millisecond, vaultCPU: time.Millisecond, redis: redisCounters{procCPU: 3 * time.Millisecond}}
	rows := []result{
		{w: workload{name: "jeton", conc: 4, perCall: 10, cpu: cpuJetond}, rounds: []sample{s}},
		{w: workload{name: "inproc", conc: 4, perCall: 10, cpu: cpuSelf}, rounds: []sample{s}},
	}
	md := renderCPU(rows)
	for _, want := range []string{
		"| jeton | 4 | 10 | 1,000 | 4.00 | 3.00 | 1.00 | 2.00 | 10.0 | 0.01 |",
		"| inproc | 4 | 10 | 1,000 | — | 3.00 | 1.00 | 2.00 | 6.00 | 0.01 |",
	} {
		if !strings.Contains(md, want) {
			t.Fatalf("want row %q in:\n%s", want, md)
		}
	}
}
