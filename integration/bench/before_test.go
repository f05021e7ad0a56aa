package bench_test

import (
	"fmt"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"
)

// A before/after comparison (-jeton.bench.before=BIN) runs a second
// jetond, from another binary (typically built from main), beside the
// one under test: same Redis, Vault, certificates, policy and tenant, its
// own listeners, connections and audit log. Each jeton workload, and each
// health check they are compared with, then also runs against it, right
// after or right before its twin (the order alternates by round), so that
// both see the same machine and the same data. A noisy machine then
// shifts both figures of a pair alike, and their ratio is what the table
// reports.

// beforeSuffix marks the key of a workload run against the before binary.
const beforeSuffix = "@before"

// twin starts the before binary as a second jetond on d's Redis and Vault.
func (d *deployment) twin(t *testing.T, bin string) *deployment {
	t.Helper()
	if _, err := os.Stat(bin); err != nil {
		t.Fatalf("-jeton.bench.before: %v", err)
	}
	abs, err := filepath.Abs(bin)
	if err != nil {
		t.Fatal(err)
	}
	b := &deployment{
		redis: d.redis, rdb: d.rdb, vault: d.vault, vroot: d.vroot, pki: d.pki, vaultVersion: d.vaultVersion,
		dir: t.TempDir(), pprof: d.pprof, addrs: map[string]string{}, jetondBin: abs, jetondToken: d.jetondToken,
		// A chain of its own: two replicas never share one.
		replica: "bench-before",
	}
	b.startJetond(t, b.jetondToken)
	b.connect(t)
	return b
}

// beforeWorkloads are ws's workloads that run on jetond (jeton's calls and
// the health checks), against before.
func beforeWorkloads(ws []workload, before *deployment, f *fixtures) []workload {
	keep := map[string]bool{}
	for _, w := range ws {
		if w.cpu == cpuJetond {
			keep[w.key] = true
		}
	}
	var out []workload
	for _, w := range workloads(before, f) {
		if keep[w.key] {
			w.key += beforeSuffix
			w.name += " [before]"
			out = append(out, w)
		}
	}
	return out
}

// renderBefore is the before/after table of a comparison run, or "".
func renderBefore(rs []result) string {
	byKey := map[string]result{}
	for _, r := range rs {
		byKey[r.w.key] = r
	}
	var b strings.Builder
	for _, after := range rs {
		before, ok := byKey[after.w.key+beforeSuffix]
		if !ok {
			continue
		}
		if b.Len() == 0 {
			b.WriteString("\n### Before and after\n\n")
			b.WriteString("Each row pairs a workload run against the jetond under test (after) with the same workload against the `-jeton.bench.before` binary, interleaved in every round. " +
				"after ÷ before is the median over rounds of the ratio within each round.\n\n")
			b.WriteString("| workload | c | items/call | calls/s before | calls/s after | after ÷ before | p99 before | p99 after | server CPU µs/item before | after | Redis main thread µs/call before | after | Redis commands/call before | after |\n")
			b.WriteString("|---|--:|--:|--:|--:|--:|--:|--:|--:|--:|--:|--:|--:|--:|\n")
		}
		var ratios []float64
		for i := range min(len(after.rounds), len(before.rounds)) {
			ratios = append(ratios, after.rounds[i].callsPerSec()/before.rounds[i].callsPerSec())
		}
		p99 := func(r result) string {
			return fmtDur(time.Duration(r.med(func(s sample) float64 { return float64(s.pct(0.99)) })))
		}
		redis := func(r result, f func(sample) float64) string {
			if !r.w.redis {
				return "—"
			}
			return fmtFloat(r.med(f))
		}
		fmt.Fprintf(&b, "| %s | %d | %s | %s | %s | %s | %s | %s | %s | %s | %s | %s | %s | %s |\n",
			after.w.name, after.w.conc, fmtInt(float64(after.w.perCall)),
			fmtInt(before.med(sample.callsPerSec)), fmtInt(after.med(sample.callsPerSec)), times(median(ratios)),
			p99(before), p99(after),
			fmtFloat(before.med(sample.cpuPerItem)), fmtFloat(after.med(sample.cpuPerItem)),
			redis(before, sample.redisMainPerCall), redis(after, sample.redisMainPerCall),
			redis(before, sample.redisCmdsPerCall), redis(after, sample.redisCmdsPerCall))
	}
	return b.String()
}
