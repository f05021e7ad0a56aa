package bench_test

import (
	"flag"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"time"

	"testing"
)

var (
	fullRun  = flag.Bool("jeton.bench", false, "run the full benchmark (make bench); without it a short smoke run checks the harness")
	rounds   = flag.Int("jeton.bench.rounds", 3, "full run: interleaved rounds (1 to 20)")
	duration = flag.Duration("jeton.bench.duration", 1500*time.Millisecond, "full run: how long each workload runs in each round (100ms to 1m)")
	outPath  = flag.String("jeton.bench.out", "", "markdown file the run is added to, e.g. BENCHMARKS.md; none if empty")
	title    = flag.String("jeton.bench.title", "", "title of the run in the markdown file")
	profDir  = flag.String("jeton.bench.profile", "", "directory for jetond CPU and allocation profiles of every jeton workload (taken in the last round)")
	only     = flag.String("jeton.bench.only", "", "full run: only these workloads (keys, comma-separated, e.g. detokenize-1-c64,health-trusted-c64), to measure one change quickly; ratios that need others are not measured")
	maxItems = flag.Int("jeton.bench.maxitems", 200_000, "full run: a measurement stops after this many items (1,000 to 5,000,000); above the default, Redis's key tables grow during the longer measurements, so bytes per value are not comparable, but profiles can run for longer (with -jeton.bench.duration)")
	before   = flag.String("jeton.bench.before", "", "a jetond binary to compare with, e.g. one built from main: each jeton workload also runs against it, interleaved, on the same Redis and Vault, and a before/after table is added")
)

// jetondBin is the jetond binary built once by TestMain.
var jetondBin string

func TestMain(m *testing.M) {
	flag.Parse()
	dir, err := os.MkdirTemp("", "jeton-bench-bin-")
	if err != nil {
		fmt.Fprintln(os.Stderr, "bench: temp dir:", err)
		os.Exit(1)
	}
	code := func() int {
		defer os.RemoveAll(dir)
		cmd := exec.Command("go", "build", "-o", dir+string(filepath.Separator), "github.com/jeton-dev/jeton/cmd/jetond")
		cmd.Stdout, cmd.Stderr = os.Stderr, os.Stderr
		if err := cmd.Run(); err != nil {
			fmt.Fprintln(os.Stderr, "bench: go build ./cmd/jetond:", err)
			return 1
		}
		jetondBin = filepath.Join(dir, "jetond")
		return m.Run()
	}()
	os.Exit(code)
}
