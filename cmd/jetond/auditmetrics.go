package main

import (
	"github.com/prometheus/client_golang/prometheus"

	"github.com/jeton-dev/jeton/server/audit"
)

// registerAuditMetrics exposes how far the audit log's signed checkpoints
// lag its head: records past the anchored seq are the ones a verifier
// cannot yet vouch for, and a growing gap or age means the anchor (Vault)
// is not answering. It also exposes what the last start found: an
// unclean stop, and how many records it left uncovered.
func registerAuditMetrics(reg prometheus.Registerer, l *audit.Log) error {
	gauge := func(name, help string, f func(audit.Status) float64) prometheus.Collector {
		return prometheus.NewGaugeFunc(prometheus.GaugeOpts{Name: name, Help: help}, func() float64 { return f(l.Status()) })
	}
	flag := func(b bool) float64 {
		if b {
			return 1
		}
		return 0
	}
	for _, c := range []prometheus.Collector{
		gauge("jeton_audit_head_seq", "Sequence number of the last durable audit record.",
			func(s audit.Status) float64 { return float64(s.Head) }),
		gauge("jeton_audit_anchored_seq", "Sequence number covered by the last signed checkpoint stored in the anchor.",
			func(s audit.Status) float64 { return float64(s.Anchored) }),
		gauge("jeton_audit_anchor_failing", "1 while the last attempt to sign or store an audit checkpoint failed.",
			func(s audit.Status) float64 { return flag(s.AnchorFailing) }),
		gauge("jeton_audit_unanchored_seconds", "Age of the oldest audit record no stored checkpoint covers yet; 0 when none. "+
			"Reveals fail closed once it passes audit.checkpoint.max_unanchored_age.",
			func(s audit.Status) float64 { return s.Unanchored.Seconds() }),
		gauge("jeton_audit_unclean_start", "1 when this process continued its audit chain after an unclean stop (crash, kill, power loss, "+
			"or Vault unreachable at shutdown); the chain holds a recovery record.",
			func(s audit.Status) float64 { return flag(s.UncleanStart) }),
		gauge("jeton_audit_recovered_records", "Audit records the last run left covered by no checkpoint, found at this start after an unclean stop.",
			func(s audit.Status) float64 { return float64(s.Recovered) }),
	} {
		if err := reg.Register(c); err != nil {
			return err
		}
	}
	return nil
}
