package server_test

import (
	"errors"
	"sync"
	"testing"
	"time"

	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/status"

	"github.com/jeton-dev/jeton/client"
	"github.com/jeton-dev/jeton/server"
	"github.com/jeton-dev/jeton/server/devpki"
)

// TestRetryingClientIsPacedNotSuspended runs the Go client, with its
// retries, against a reader whose rate allows a tenth of what it asks,
// over a real Redis and the real clock:
//
//   - one client reading 50 records in batches of 10 is refused for its
//     rate, waits the RetryInfo delay each time and gets every value,
//     refused at most once per batch: the delay is what paces it;
//   - three clients bursting together are refused many times and never
//     suspended, and all get their values;
//   - a sweep of new records still exhausts the distinct budget, and that
//     refusal suspends the identity, says so, and raises alerts.
func TestRetryingClientIsPacedNotSuspended(t *testing.T) {
	e := startGuardEnv(t, guardOpts{
		budget: "{max_batch: 10, rate: 50, burst: 10, distinct: 60, window: 1h, suspend_after: 1}",
		redis:  true, realClock: true,
	})
	toks := e.fakeTokens(t, 80)
	newReader := func() *client.Client {
		c, err := client.New(e.replicas[0].srv.TrustedAddr().String(),
			client.WithTLSFiles(e.bundle.ServerCA, e.bundle.TTPCert, e.bundle.TTPKey),
			client.WithBatchSize(10), client.WithRetry(100, time.Millisecond), client.WithTimeout(time.Minute))
		if err != nil {
			t.Fatal(err)
		}
		t.Cleanup(func() { c.Close() })
		return c
	}
	rateRefusals := func() float64 {
		return e.counter(t, "jeton_budget_refusals_total", "limit", "rate")
	}
	reveal := func(c *client.Client, part []string) error {
		res, err := c.Detokenize(ctx(t), part, "support", "")
		if err != nil {
			return err
		}
		for _, r := range res {
			if r.Err != nil || r.Value == "" {
				return errors.New("a value is missing")
			}
		}
		return nil
	}

	// One client, paced.
	if err := reveal(newReader(), toks[:50]); err != nil {
		t.Fatalf("a paced client: %v", err)
	}
	if n := rateRefusals(); n < 1 || n > 5 {
		t.Fatalf("the paced client was refused %v times for its rate over 5 batches; want 1 to 5 (it waited the delay, so at most once a batch)", n)
	}

	// Three clients at once, re-reading the same records: a burst of rate
	// refusals, and no suspension.
	before := rateRefusals()
	var wg sync.WaitGroup
	errs := make([]error, 3)
	for i := range errs {
		c := newReader()
		wg.Go(func() { errs[i] = reveal(c, toks[:50]) })
	}
	wg.Wait()
	for i, err := range errs {
		if err != nil {
			t.Fatalf("bursting client %d: %v", i, err)
		}
	}
	if rateRefusals() == before {
		t.Fatal("three clients at once were never refused: the test made no burst")
	}
	if n := e.counter(t, "jeton_suspensions_total"); n != 0 {
		t.Fatalf("jeton_suspensions_total = %v after bursts of rate refusals, want 0", n)
	}
	if got := e.logs.alerts(t, server.AlertBudgetExceeded); len(got) != 0 {
		t.Fatalf("rate refusals raised %d budget alerts, want none", len(got))
	}

	// The sweep: 30 new records, over the 60 distinct. The client does not
	// retry a distinct refusal; that refusal suspends and says so.
	c := newReader()
	err := reveal(c, toks[50:80])
	if status.Code(err) != codes.PermissionDenied || !errors.Is(err, client.ErrPermissionDenied) {
		t.Fatalf("the sweep: got %v, want PERMISSION_DENIED (suspended)", err)
	}
	if msg := status.Convert(err).Message(); msg != "identity suspended; a custodian must reinstate it" {
		t.Fatalf("the call that suspended says %q", msg)
	}
	if n := e.counter(t, "jeton_budget_refusals_total", "limit", "distinct"); n != 1 {
		t.Fatalf("jeton_budget_refusals_total{limit=distinct} = %v, want 1: a distinct refusal is not retried", n)
	}
	if got := e.logs.alerts(t, server.AlertIdentitySuspended); len(got) != 1 || got[0]["identity"] != devpki.TTPID {
		t.Fatalf("suspension alerts = %v, want one naming the reader", got)
	}
	if _, err := detok(e.conn(t, 0, devpki.TTPID), toks[:1]); status.Code(err) != codes.PermissionDenied {
		t.Fatalf("after the sweep: got %v, want the identity suspended", err)
	}
}
