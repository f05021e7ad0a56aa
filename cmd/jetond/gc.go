package main

import (
	"runtime/debug"
)

// defaultGCPercent is jetond's garbage collector target when GOGC is not
// set: the heap may grow to four times what is live before a collection,
// instead of Go's default two. jetond's live heap is small (keys, policy,
// pools: tens of megabytes under load), while every call allocates and
// drops its items, so with Go's default the collector took about a fifth of
// jetond's CPU in batched Tokenize (BENCHMARKS.md). A memory limit still
// wins: under GOMEMLIMIT (which the Helm chart sets from the container's
// limit) the runtime collects earlier as the heap nears it, so the larger
// target never pushes jetond past its memory. 300, not more: at 400 the
// heaviest batched workload of make bench peaked at 190 MB of RSS against
// 111 MB at 200, close to the 200 MB the service is held to.
const defaultGCPercent = 300

// tuneGC sets the collector's target to defaultGCPercent unless the
// operator chose one with GOGC, which the runtime has already applied.
// go_gc_gogc_percent on /metrics shows the target in force.
func tuneGC(getenv func(string) string) {
	if getenv("GOGC") == "" {
		debug.SetGCPercent(defaultGCPercent)
	}
}
