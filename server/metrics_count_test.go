package server

import (
	"fmt"
	"testing"

	"github.com/prometheus/client_golang/prometheus"
	dto "github.com/prometheus/client_model/go"

	jetonv1 "github.com/jeton-dev/jeton/proto/jeton/v1"
	"github.com/jeton-dev/jeton/tokenizer"
)

// The request path's counters, resolved once, count what they name: DEK
// cache hits and misses apart, and per class the tokens minted and the
// values revealed (full or masked), over more classes than a call's
// tally holds in place, and for a class configured after the first.
func TestMetricsCounts(t *testing.T) {
	m, err := NewMetrics(prometheus.NewRegistry())
	if err != nil {
		t.Fatal(err)
	}
	var classes []tokenizer.Class
	for i := range 10 {
		classes = append(classes, tokenizer.Class{Name: fmt.Sprintf("class-%d", i)})
	}
	m.initClasses(classes[:5])
	m.initClasses(classes[5:]) // a second server sharing the metrics
	// Both servers' classes are resolved, none looked up per call.
	for _, c := range classes {
		if _, ok := (*m.classes.Load())[c.Name]; !ok {
			t.Fatalf("class %s has no series resolved", c.Name)
		}
	}

	m.DEKCache(true)
	m.DEKCache(true)
	m.DEKCache(false)
	if hit, miss := value(t, m.dekCache.WithLabelValues("hit")), value(t, m.dekCache.WithLabelValues("miss")); hit != 2 || miss != 1 {
		t.Fatalf("DEK cache hit %v miss %v, want 2 and 1", hit, miss)
	}

	// Class i gets i+1 items, every other one refused.
	var items []*jetonv1.TokenizeItem
	var results []*jetonv1.TokenizeResult
	var revealed []*jetonv1.RevealResult
	for i, c := range classes {
		for range i + 1 {
			items = append(items, &jetonv1.TokenizeItem{FieldClass: c.Name})
			results = append(results, &jetonv1.TokenizeResult{Outcome: &jetonv1.TokenizeResult_Token{Token: "t"}})
			revealed = append(revealed, &jetonv1.RevealResult{FieldClass: c.Name, Masked: i%2 == 1, Outcome: &jetonv1.RevealResult_Value{Value: "v"}})
		}
		items = append(items, &jetonv1.TokenizeItem{FieldClass: c.Name})
		results = append(results, &jetonv1.TokenizeResult{Outcome: &jetonv1.TokenizeResult_Error{}})
		revealed = append(revealed, &jetonv1.RevealResult{Outcome: &jetonv1.RevealResult_Error{}})
	}
	m.countTokenized(items, results)
	m.countRevealed(revealed)
	m.countRevealed(revealed)
	for i, c := range classes {
		want := float64(i + 1)
		if got := value(t, m.tokenized.WithLabelValues(c.Name)); got != want {
			t.Errorf("%s tokenized %v, want %v", c.Name, got, want)
		}
		mode, other := "full", "masked"
		if i%2 == 1 {
			mode, other = other, mode
		}
		if got := value(t, m.revealed.WithLabelValues(c.Name, mode)); got != 2*want {
			t.Errorf("%s revealed %s %v, want %v", c.Name, mode, got, 2*want)
		}
		if got := value(t, m.revealed.WithLabelValues(c.Name, other)); got != 0 {
			t.Errorf("%s revealed %s %v, want 0", c.Name, other, got)
		}
	}
}

// value reads a counter.
func value(t *testing.T, c prometheus.Counter) float64 {
	t.Helper()
	var m dto.Metric
	if err := c.Write(&m); err != nil {
		t.Fatal(err)
	}
	return m.GetCounter().GetValue()
}
