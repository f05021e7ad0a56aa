package server

import (
	"context"
	"slices"
	"sync"
	"time"

	"github.com/prometheus/client_golang/prometheus"
)

// DefaultCheckInterval is how often readiness is probed when the config
// sets no interval.
const DefaultCheckInterval = 5 * time.Second

// The listeners, as Check.Listener and ListenerReady name them.
const (
	ListenerPublic  = "public"
	ListenerTrusted = "trusted"
)

// Check is one dependency that readiness reflects.
type Check struct {
	// Name is a fixed word (redis, vault, audit): it is logged, reported
	// by Ready and used as the backend label of jeton_backend_errors_total.
	Name string
	// Probe returns nil when the dependency can do its work. It must
	// return when ctx ends; its error text is logged, so it must hold no
	// value.
	Probe func(ctx context.Context) error
	// ServesWithout, when set, is asked while Probe fails: true means the
	// replica still serves without the dependency (Vault: the tenants
	// whose keys are loaded), so readiness stays up and the failure shows
	// as the dependency's own state only: Degraded, and the
	// jeton_dependency_up metric. Nil: a failure takes readiness down.
	ServesWithout func() bool
	// Listener, when set (ListenerPublic or ListenerTrusted), is the one
	// listener that needs the dependency: its failure takes only that
	// listener's readiness down. The audit log is the trusted listener's
	// alone: Tokenize writes no audit record. Empty: both listeners.
	Listener string
}

// newListenerReady registers jeton_listener_ready{listener}: 1 while the
// listener's health is SERVING, 0 otherwise. Alert on the trusted one: a
// replica whose audit log fails keeps serving Tokenize and is ready for
// /readyz/public, but refuses every reveal.
func newListenerReady(reg prometheus.Registerer) (*prometheus.GaugeVec, error) {
	g := prometheus.NewGaugeVec(prometheus.GaugeOpts{
		Name: "jeton_listener_ready",
		Help: "Whether a listener's health is SERVING (1) or not (0), per listener (public, trusted).",
	}, []string{"listener"})
	if err := reg.Register(g); err != nil {
		return nil, err
	}
	for _, l := range []string{ListenerPublic, ListenerTrusted} {
		g.WithLabelValues(l)
	}
	return g, nil
}

// affects reports whether c's failure takes listener down.
func (c Check) affects(listener string) bool { return c.Listener == "" || c.Listener == listener }

// readiness is the prober's view of the dependencies.
type readiness struct {
	mu       sync.Mutex
	started  bool
	stopping bool
	failing  []string // names of failing checks, in config order
	degraded []string // failing checks the replica serves without
	// byListener holds, per listener, the failing checks that take it
	// down; a listener absent from it serves.
	byListener map[string][]string
	cancel     context.CancelFunc
	done       chan struct{}
}

// Ready reports whether both listeners can serve, every dependency having
// answered its last probe, and if not, why: the names of the failing
// checks, or "not started" or "stopping". The reasons hold no value and no
// error text, so they may be shown to anyone who can reach the metrics
// listener.
func (s *Server) Ready() (bool, []string) {
	r := &s.ready
	r.mu.Lock()
	defer r.mu.Unlock()
	switch {
	case r.stopping:
		return false, []string{"stopping"}
	case !r.started:
		return false, []string{"not started"}
	case len(r.failing) > 0:
		return false, slices.Clone(r.failing)
	}
	return true, nil
}

// ListenerReady is Ready for one listener (ListenerPublic or
// ListenerTrusted): only the checks it needs count. The public listener
// stays ready while the audit log fails, since Tokenize writes none.
func (s *Server) ListenerReady(listener string) (bool, []string) {
	r := &s.ready
	r.mu.Lock()
	defer r.mu.Unlock()
	switch {
	case r.stopping:
		return false, []string{"stopping"}
	case !r.started:
		return false, []string{"not started"}
	case len(r.byListener[listener]) > 0:
		return false, slices.Clone(r.byListener[listener])
	}
	return true, nil
}

// Degraded names the dependencies that are down while the replica still
// serves without them (see Check.ServesWithout), e.g. "vault" while the
// tenants whose keys are loaded are served. Names only, like Ready's.
func (s *Server) Degraded() []string {
	r := &s.ready
	r.mu.Lock()
	defer r.mu.Unlock()
	return slices.Clone(r.degraded)
}

// startProber runs the checks now and then every interval until
// stopProber. With no checks, the server stays SERVING until Stop.
func (s *Server) startProber() {
	r := &s.ready
	r.mu.Lock()
	r.started = true
	r.mu.Unlock()
	if len(s.checks) == 0 {
		return
	}
	ctx, cancel := context.WithCancel(context.Background())
	r.cancel, r.done = cancel, make(chan struct{})
	go func() {
		defer close(r.done)
		t := time.NewTicker(s.checkInterval)
		defer t.Stop()
		for {
			s.probe(ctx)
			select {
			case <-ctx.Done():
				return
			case <-t.C:
			}
		}
	}()
}

// stopProber stops the probes and marks the server as stopping, so no
// late probe result can report it SERVING again.
func (s *Server) stopProber() {
	r := &s.ready
	r.mu.Lock()
	r.stopping = true
	cancel, done := r.cancel, r.done
	r.mu.Unlock()
	if cancel != nil {
		cancel()
		<-done
	}
}

// probe runs every check at once, so one slow dependency delays none of
// the others, each bounded by the interval; then it sets the health status.
func (s *Server) probe(ctx context.Context) {
	pctx, cancel := context.WithTimeout(ctx, s.checkInterval)
	defer cancel()
	errs := make([]error, len(s.checks))
	var wg sync.WaitGroup
	for i, c := range s.checks {
		wg.Go(func() { errs[i] = c.Probe(pctx) })
	}
	wg.Wait()
	if ctx.Err() != nil {
		return // stopping: the results say nothing about the dependencies
	}
	var failing, degraded []string
	byListener := map[string][]string{}
	for i, err := range errs {
		c := s.checks[i]
		s.metrics.dependencyUp(c.Name, err == nil)
		if err == nil {
			continue
		}
		s.metrics.BackendError(c.Name)
		if c.ServesWithout != nil && c.ServesWithout() {
			degraded = append(degraded, c.Name)
			continue
		}
		failing = append(failing, c.Name)
		for _, l := range []string{ListenerPublic, ListenerTrusted} {
			if c.affects(l) {
				byListener[l] = append(byListener[l], c.Name)
			}
		}
	}

	r := &s.ready
	r.mu.Lock()
	defer r.mu.Unlock()
	if r.stopping {
		return
	}
	if !slices.Equal(degraded, r.degraded) {
		for i, err := range errs {
			if err != nil && slices.Contains(degraded, s.checks[i].Name) && !slices.Contains(r.degraded, s.checks[i].Name) {
				s.log.Warn("degraded: a dependency is down; still serving what does not need it",
					"check", s.checks[i].Name, "error", err.Error())
			}
		}
		if len(degraded) == 0 {
			s.log.Info("no longer degraded: every tolerated dependency is back")
		}
		r.degraded = degraded
	}
	if slices.Equal(failing, r.failing) {
		return
	}
	r.failing, r.byListener = failing, byListener
	// Set under the lock so that two transitions cannot apply out of order.
	for _, l := range []string{ListenerPublic, ListenerTrusted} {
		s.setServing(l, len(byListener[l]) == 0)
	}
	if len(failing) == 0 {
		s.log.Info("ready: every dependency is up; health is SERVING")
		return
	}
	for i, err := range errs {
		if err != nil && slices.Contains(failing, s.checks[i].Name) {
			c := s.checks[i]
			listeners := c.Listener
			if listeners == "" {
				listeners = "both"
			}
			s.log.Warn("not ready: a dependency is down; health is NOT_SERVING",
				"check", c.Name, "listeners", listeners, "error", err.Error())
		}
	}
}
