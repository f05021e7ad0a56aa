package server

import (
	"testing"
	"time"

	"github.com/jeton-dev/jeton/client"
)

// TestKeepaliveContract pins the server side of the keepalive contract
// with the Go client library, which pings every client.KeepaliveTime
// (client.KeepaliveTimeout to answer) while calls are in flight: the
// server must allow pings that often, between calls too, or it would send
// GOAWAY (too_many_pings) to busy clients, and must not allow them faster
// than every 10s. An idle connection is closed after IdleTimeout whatever
// its pings, since pings are not calls; it must be long enough that a
// client between two calls a few seconds apart keeps its connection, and
// short enough that an identity the policy refuses does not hold its
// place for long. Waiting out real pings in a test would take minutes;
// the values are what matters.
func TestKeepaliveContract(t *testing.T) {
	if p := keepalivePolicy; p.MinTime != 10*time.Second || !p.PermitWithoutStream {
		t.Fatalf("keepalive enforcement = %+v, want MinTime 10s and PermitWithoutStream", p)
	}
	if keepalivePolicy.MinTime > client.KeepaliveTime {
		t.Fatalf("the client's pings every %v would be refused (MinTime %v)", client.KeepaliveTime, keepalivePolicy.MinTime)
	}
	idle := ConnLimits{}.withDefaults().IdleTimeout
	if idle < 2*(client.KeepaliveTime+client.KeepaliveTimeout) || idle > 10*time.Minute {
		t.Fatalf("default idle timeout %v: want it well above the client's keepalive (%v + %v) and at most 10m", idle, client.KeepaliveTime, client.KeepaliveTimeout)
	}
	if maxConnectionAge <= idle {
		t.Fatalf("MaxConnectionAge %v must exceed the idle timeout %v, or it would bound nothing more", maxConnectionAge, idle)
	}
}
