package bench_test

import (
	"context"
	"fmt"
	"strconv"
	"strings"
	"sync"
	"syscall"
	"time"

	"github.com/prometheus/procfs"
	"github.com/redis/go-redis/v9"
)

// redisCounters are what Redis's INFO says at one moment.
type redisCounters struct {
	// usedMemory is used_memory less client and AOF buffers.
	usedMemory int64
	// mainCPU is the main thread's user and system time: command
	// execution, network I/O and, under appendfsync always, the fsync.
	mainCPU time.Duration
	// procCPU is the whole process's: the main thread's, and its
	// background threads' (the AOF's fsync under everysec, lazy frees).
	procCPU time.Duration
	// calls and usec sum INFO commandstats over every command but INFO.
	calls, usec int64
	aofRewrites int64
	// keys and expires count db0's keys, and those with a TTL.
	keys, expires int64
}

func readRedis(ctx context.Context, c *redis.Client) (redisCounters, error) {
	info, err := c.InfoMap(ctx, "memory", "cpu", "commandstats", "persistence", "keyspace").Result()
	if err != nil {
		return redisCounters{}, fmt.Errorf("redis INFO: %w", err)
	}
	var r redisCounters
	num := func(section, key string) float64 {
		f, _ := strconv.ParseFloat(info[section][key], 64)
		return f
	}
	// Client and AOF buffers come and go with connections and load; what
	// stays is the data, its dictionaries and their tables.
	r.usedMemory = int64(num("Memory", "used_memory") - num("Memory", "mem_clients_normal") - num("Memory", "mem_aof_buffer"))
	r.mainCPU = time.Duration((num("CPU", "used_cpu_sys_main_thread") + num("CPU", "used_cpu_user_main_thread")) * float64(time.Second))
	r.procCPU = time.Duration((num("CPU", "used_cpu_sys") + num("CPU", "used_cpu_user")) * float64(time.Second))
	r.aofRewrites = int64(num("Persistence", "aof_rewrites"))
	for _, f := range strings.Split(info["Keyspace"]["db0"], ",") {
		k, val, _ := strings.Cut(f, "=")
		n, _ := strconv.ParseInt(val, 10, 64)
		switch k {
		case "keys":
			r.keys = n
		case "expires":
			r.expires = n
		}
	}
	for name, v := range info["Commandstats"] {
		if name == "cmdstat_info" {
			continue
		}
		for _, f := range strings.Split(v, ",") {
			k, val, _ := strings.Cut(f, "=")
			n, _ := strconv.ParseInt(val, 10, 64)
			switch k {
			case "calls":
				r.calls += n
			case "usec":
				r.usec += n
			}
		}
	}
	return r, nil
}

// procCPU returns a process's user and system time from /proc/<pid>/stat.
func procCPU(pid int) (time.Duration, error) {
	p, err := procfs.NewProc(pid)
	if err != nil {
		return 0, err
	}
	st, err := p.Stat()
	if err != nil {
		return 0, err
	}
	return time.Duration(st.CPUTime() * float64(time.Second)), nil
}

// selfCPU returns this process's user and system time.
func selfCPU() time.Duration {
	var ru syscall.Rusage
	if err := syscall.Getrusage(syscall.RUSAGE_SELF, &ru); err != nil {
		return 0
	}
	return time.Duration(ru.Utime.Nano() + ru.Stime.Nano())
}

// rssSampler records the peak resident set of a process while it runs.
type rssSampler struct {
	stop chan struct{}
	done chan struct{}
	mu   sync.Mutex
	peak int
}

// sampleRSS polls pid's resident set every 20 ms until stopped.
func sampleRSS(pid int) *rssSampler {
	s := &rssSampler{stop: make(chan struct{}), done: make(chan struct{})}
	p, err := procfs.NewProc(pid)
	go func() {
		defer close(s.done)
		if err != nil {
			return
		}
		tick := time.NewTicker(20 * time.Millisecond)
		defer tick.Stop()
		for {
			if st, err := p.Stat(); err == nil {
				s.mu.Lock()
				s.peak = max(s.peak, st.ResidentMemory())
				s.mu.Unlock()
			}
			select {
			case <-s.stop:
				return
			case <-tick.C:
			}
		}
	}()
	return s
}

// Stop ends sampling and returns the peak in bytes.
func (s *rssSampler) Stop() int {
	close(s.stop)
	<-s.done
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.peak
}
