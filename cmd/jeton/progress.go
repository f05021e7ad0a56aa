package main

import (
	"fmt"
	"io"
	"os"
	"sync"
	"time"

	"github.com/schollz/progressbar/v3"
	"golang.org/x/term"
)

// isTerminal reports whether w is a terminal; tests replace it.
var isTerminal = func(w io.Writer) bool {
	f, ok := w.(*os.File)
	return ok && term.IsTerminal(int(f.Fd()))
}

// progress shows how far a CSV run is: a progress bar (rows, rate, ETA)
// on a terminal, a plain line every interval otherwise, and a summary at
// the end. It counts rows only: no value, no token.
type progress struct {
	mu       sync.Mutex
	w        io.Writer
	name     string
	total    int64 // -1 when unknown (stdin)
	start    int64 // rows already done by an earlier run
	began    time.Time
	bar      *progressbar.ProgressBar
	interval time.Duration
	lastLine time.Time
	now      func() time.Time
}

func newProgress(e *env, name string, total, start int64, interval time.Duration) *progress {
	p := &progress{w: e.stderr, name: name, total: total, start: start, interval: interval, now: time.Now}
	p.began, p.lastLine = p.now(), p.now()
	if isTerminal(e.stderr) {
		p.bar = progressbar.NewOptions64(total,
			progressbar.OptionSetWriter(e.stderr),
			progressbar.OptionSetDescription(name),
			progressbar.OptionSetItsString("rows"),
			progressbar.OptionShowIts(),
			progressbar.OptionShowCount(),
			progressbar.OptionSetPredictTime(true),
			progressbar.OptionThrottle(100*time.Millisecond),
			progressbar.OptionClearOnFinish(),
			progressbar.OptionSetWidth(30),
		)
		_ = p.bar.Set64(start)
	}
	return p
}

// set records that rows rows (of the whole file) are written.
func (p *progress) set(rows int64) {
	p.mu.Lock()
	defer p.mu.Unlock()
	if p.bar != nil {
		_ = p.bar.Set64(rows)
		return
	}
	if p.interval > 0 && p.now().Sub(p.lastLine) >= p.interval {
		p.lastLine = p.now()
		fmt.Fprintf(p.w, "jeton: %s: %s\n", p.name, p.line(rows))
	}
}

// line describes progress at rows.
func (p *progress) line(rows int64) string {
	elapsed := p.now().Sub(p.began)
	rate := 0.0
	if elapsed > 0 {
		rate = float64(rows-p.start) / elapsed.Seconds()
	}
	if p.total < 0 {
		return fmt.Sprintf("%d rows, %.0f rows/s", rows, rate)
	}
	s := fmt.Sprintf("%d/%d rows (%.0f%%), %.0f rows/s", rows, p.total, 100*float64(rows)/float64(max(p.total, 1)), rate)
	if rate > 0 && rows < p.total {
		eta := time.Duration(float64(p.total-rows) / rate * float64(time.Second))
		s += fmt.Sprintf(", ETA %v", eta.Round(time.Second))
	}
	return s
}

// clear removes the bar before a message is printed; it is drawn again on
// the next update.
func (p *progress) clear() {
	p.mu.Lock()
	defer p.mu.Unlock()
	if p.bar != nil {
		_ = p.bar.Clear()
	}
}

// finish prints the summary of this run's rows.
func (p *progress) finish(written int64) {
	p.mu.Lock()
	defer p.mu.Unlock()
	if p.bar != nil {
		_ = p.bar.Finish()
	}
	elapsed := p.now().Sub(p.began)
	fmt.Fprintf(p.w, "jeton: %s: %d rows in %v (%.0f rows/s)\n", p.name, written, elapsed.Round(time.Millisecond), float64(written)/max(elapsed.Seconds(), 1e-9))
}
