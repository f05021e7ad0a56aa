package main

import (
	"bytes"
	"context"
	"testing"

	"github.com/prometheus/client_golang/prometheus"

	"github.com/jeton-dev/jeton/server/audit"
	"github.com/jeton-dev/jeton/server/audit/fileanchor"
)

func TestAuditMetrics(t *testing.T) {
	a, err := fileanchor.New(t.TempDir(), "m-0", nil)
	if err != nil {
		t.Fatal(err)
	}
	l, err := audit.Open(audit.Config{Dir: t.TempDir(), Key: bytes.Repeat([]byte{'k'}, audit.KeySize), Anchor: a, Replica: "m-0"})
	if err != nil {
		t.Fatal(err)
	}
	defer l.Close()
	if err := l.Append(context.Background(), audit.Record{Identity: "svc-test", Method: "Detokenize", Outcome: "ok"}); err != nil {
		t.Fatal(err)
	}
	reg := prometheus.NewRegistry()
	if err := registerAuditMetrics(reg, l); err != nil {
		t.Fatal(err)
	}
	mfs, err := reg.Gather()
	if err != nil {
		t.Fatal(err)
	}
	got := map[string]float64{}
	for _, mf := range mfs {
		got[mf.GetName()] = mf.GetMetric()[0].GetGauge().GetValue()
	}
	// The chain start is anchored when the log opens; the reveal is not yet.
	want := map[string]float64{"jeton_audit_head_seq": 2, "jeton_audit_anchored_seq": 1, "jeton_audit_anchor_failing": 0,
		"jeton_audit_unclean_start": 0, "jeton_audit_recovered_records": 0}
	for k, v := range want {
		if got[k] != v {
			t.Errorf("%s = %v, want %v", k, got[k], v)
		}
	}
	if _, ok := got["jeton_audit_unanchored_seconds"]; !ok {
		t.Error("jeton_audit_unanchored_seconds is not exported")
	}
}
