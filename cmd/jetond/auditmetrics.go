package main

import (
	"github.com/prometheus/client_golang/prometheus"

	"github.com/jeton-dev/jeton/server/audit"
)

// registerAuditMetrics exposes how far the audit log's signed checkpoints
// lag its head: records past the anchored seq are the ones a verifier
// cannot yet vouch for, and a growing gap means the anchor (Vault) is not
// answering.
func registerAuditMetrics(reg prometheus.Registerer, l *audit.Log) error {
	head := func() float64 { h, _, _ := l.AnchorStatus(); return float64(h) }
	anchored := func() float64 { _, a, _ := l.AnchorStatus(); return float64(a) }
	failing := func() float64 {
		if _, _, f := l.AnchorStatus(); f {
			return 1
		}
		return 0
	}
	for _, c := range []prometheus.Collector{
		prometheus.NewGaugeFunc(prometheus.GaugeOpts{Name: "jeton_audit_head_seq",
			Help: "Sequence number of the last durable audit record."}, head),
		prometheus.NewGaugeFunc(prometheus.GaugeOpts{Name: "jeton_audit_anchored_seq",
			Help: "Sequence number covered by the last signed checkpoint stored in the anchor."}, anchored),
		prometheus.NewGaugeFunc(prometheus.GaugeOpts{Name: "jeton_audit_anchor_failing",
			Help: "1 while the last attempt to sign or store an audit checkpoint failed."}, failing),
	} {
		if err := reg.Register(c); err != nil {
			return err
		}
	}
	return nil
}
