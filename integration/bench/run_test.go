package bench_test

import (
	"context"
	"fmt"
	"io"
	"net/http"
	"os"
	"path/filepath"
	"slices"
	"strconv"
	"sync"
	"sync/atomic"
	"time"

	"google.golang.org/grpc/status"
)

// Bounds of one measurement besides its duration and the items it sends
// (-jeton.bench.maxitems, whose default keeps the keys a workload adds
// within the key tables presize made).
const (
	maxCalls    = 5_000_000
	callTimeout = 30 * time.Second
)

// callFunc makes call number seq of a measurement. It returns how many of
// the call's items succeeded and failed; err is a failed call.
type callFunc func(ctx context.Context, seq int) (ok, failed int, err error)

// cpuSource says whose CPU time a workload is charged.
type cpuSource int

const (
	cpuNone   cpuSource = iota // Redis or Vault alone: jetond idles
	cpuJetond                  // the jetond process
	cpuSelf                    // this process: the in-process tokenizer
)

// workload is one row of the table.
type workload struct {
	key     string // stable identifier, used by the ratios
	name    string // as printed
	conc    int    // calls in flight
	perCall int    // items per call
	cpu     cpuSource
	redis   bool // report Redis's time and commands per call
	stores  bool // report Redis bytes per stored value
	always  bool // runs with appendfsync always
	profile bool // jetond is profiled during it, when profiles are asked for
	call    callFunc
}

// sample is one workload's measurement in one round.
type sample struct {
	calls, okItems           int
	failedCalls, failedItems int
	firstErr                 string
	elapsed                  time.Duration
	lat                      []time.Duration // sorted
	cpu                      time.Duration
	// loadCPU is this process's CPU time (the load generator, and the
	// tokenizer in process for those rows), vaultCPU Vault's.
	loadCPU, vaultCPU time.Duration
	rssPeak           int
	redis             redisCounters // the change over the measurement
}

func (s sample) itemsPerSec() float64 { return float64(s.okItems) / s.elapsed.Seconds() }
func (s sample) callsPerSec() float64 { return float64(s.calls) / s.elapsed.Seconds() }

// pct returns the p-th quantile of latency (nearest rank).
func (s sample) pct(p float64) time.Duration {
	if len(s.lat) == 0 {
		return 0
	}
	i := int(float64(len(s.lat))*p+0.999999) - 1
	return s.lat[min(max(i, 0), len(s.lat)-1)]
}

// cpuPerItem is in microseconds.
func (s sample) cpuPerItem() float64 {
	return float64(s.cpu.Microseconds()) / float64(max(s.okItems, 1))
}

// bytesPerValue is the growth of Redis's memory per value stored, with
// one 8-byte slot per new key in each key table (see presize).
func (s sample) bytesPerValue() float64 {
	return float64(s.redis.usedMemory+8*(s.redis.keys+s.redis.expires)) / float64(max(s.okItems, 1))
}
func (s sample) redisMainPerCall() float64 {
	return float64(s.redis.mainCPU.Microseconds()) / float64(max(s.calls, 1))
}
func (s sample) redisCmdsPerCall() float64 {
	return float64(s.redis.calls) / float64(max(s.calls, 1))
}

// runLoad calls w.call from w.conc goroutines until dur has passed (or
// maxCalls calls or maxItems items were sent) and collects what the calls
// returned.
func runLoad(w workload, dur time.Duration) sample {
	ctx, cancel := context.WithTimeout(context.Background(), dur+callTimeout)
	defer cancel()
	var seq atomic.Int64
	per := make([]sample, w.conc)
	start := time.Now()
	deadline := start.Add(dur)
	var wg sync.WaitGroup
	for i := range per {
		wg.Add(1)
		go func(s *sample) {
			defer wg.Done()
			for time.Now().Before(deadline) {
				n := int(seq.Add(1)) - 1
				if n >= maxCalls || n*w.perCall >= *maxItems {
					return
				}
				t0 := time.Now()
				ok, failed, err := w.call(ctx, n)
				s.lat = append(s.lat, time.Since(t0))
				s.calls++
				s.okItems += ok
				s.failedItems += failed
				if err != nil {
					s.failedCalls++
					if s.firstErr == "" {
						s.firstErr = errText(err)
					}
				}
			}
		}(&per[i])
	}
	wg.Wait()
	var out sample
	out.elapsed = time.Since(start)
	for _, s := range per {
		out.calls += s.calls
		out.okItems += s.okItems
		out.failedCalls += s.failedCalls
		out.failedItems += s.failedItems
		out.lat = append(out.lat, s.lat...)
		if out.firstErr == "" {
			out.firstErr = s.firstErr
		}
	}
	slices.Sort(out.lat)
	return out
}

// errText describes a failed call: the gRPC code and message (which the
// server keeps free of values), or the error.
func errText(err error) string {
	s := err.Error()
	if st, ok := status.FromError(err); ok {
		s = st.Code().String() + ": " + st.Message()
	}
	if len(s) > 160 {
		s = s[:160] + "..."
	}
	return s
}

// measure runs one workload and reads the counters around it: CPU time,
// peak resident set, Redis's memory, main-thread time and commands. With
// profDir set and a profiled workload it also saves jetond's CPU and
// allocation profiles of the same interval.
func (d *deployment) measure(w workload, dur time.Duration, profDir string) (sample, error) {
	ctx := context.Background()
	before, err := readRedis(ctx, d.rdb)
	if err != nil {
		return sample{}, err
	}
	pid := d.jetond.Process.Pid
	cpu0, err := d.cpuOf(w.cpu, pid)
	if err != nil {
		return sample{}, err
	}
	self0 := selfCPU()
	vault0, err := procCPU(d.vault.Pid())
	if err != nil {
		return sample{}, err
	}
	rss := sampleRSS(pid)
	var prof sync.WaitGroup
	profErrs := make([]error, 2)
	if profDir != "" && w.profile {
		secs := strconv.Itoa(max(1, int(dur.Seconds())))
		for i, kind := range []string{"profile", "allocs"} {
			prof.Add(1)
			go func() {
				defer prof.Done()
				suffix := map[string]string{"profile": "cpu", "allocs": "allocs"}[kind]
				profErrs[i] = d.saveProfile(kind+"?seconds="+secs, filepath.Join(profDir, w.key+"."+suffix+".pprof"))
			}()
		}
	}
	s := runLoad(w, dur)
	prof.Wait()
	s.rssPeak = rss.Stop()
	cpu1, err := d.cpuOf(w.cpu, pid)
	if err != nil {
		return sample{}, err
	}
	s.cpu = cpu1 - cpu0
	s.loadCPU = selfCPU() - self0
	vault1, err := procCPU(d.vault.Pid())
	if err != nil {
		return sample{}, err
	}
	s.vaultCPU = vault1 - vault0
	after, err := readRedis(ctx, d.rdb)
	if err != nil {
		return sample{}, err
	}
	s.redis = redisCounters{
		usedMemory:  after.usedMemory - before.usedMemory,
		mainCPU:     after.mainCPU - before.mainCPU,
		procCPU:     after.procCPU - before.procCPU,
		calls:       after.calls - before.calls,
		usec:        after.usec - before.usec,
		aofRewrites: after.aofRewrites - before.aofRewrites,
		keys:        after.keys - before.keys,
		expires:     after.expires - before.expires,
	}
	for _, err := range profErrs {
		if err != nil {
			return s, err
		}
	}
	return s, nil
}

func (d *deployment) cpuOf(src cpuSource, pid int) (time.Duration, error) {
	switch src {
	case cpuJetond:
		return procCPU(pid)
	case cpuSelf:
		return selfCPU(), nil
	}
	return 0, nil
}

// saveProfile fetches a profile from jetond's pprof endpoint into path.
func (d *deployment) saveProfile(query, path string) error {
	c := &http.Client{Timeout: callTimeout + time.Minute}
	resp, err := c.Get("http://" + d.metricsAddr + "/debug/pprof/" + query)
	if err != nil {
		return fmt.Errorf("profile %s: %w", query, err)
	}
	defer resp.Body.Close()
	if resp.StatusCode != http.StatusOK {
		return fmt.Errorf("profile %s: HTTP %d", query, resp.StatusCode)
	}
	f, err := os.Create(path)
	if err != nil {
		return err
	}
	if _, err := io.Copy(f, resp.Body); err != nil {
		f.Close()
		return err
	}
	return f.Close()
}
