package server

import (
	"testing"
	"time"
)

// TestKeepaliveContract pins the server side of the keepalive contract
// with the Go client library, which pings every 30s (10s timeout), between
// calls too: the server must allow pings that often without streams, or
// it would send GOAWAY (too_many_pings) to every idle client, and must not
// allow them faster than every 10s. Waiting out real 30s pings in a test
// would take minutes; the values are what matters.
func TestKeepaliveContract(t *testing.T) {
	const clientTime = 30 * time.Second
	if p := keepalivePolicy; p.MinTime != 10*time.Second || !p.PermitWithoutStream {
		t.Fatalf("keepalive enforcement = %+v, want MinTime 10s and PermitWithoutStream", p)
	}
	if keepalivePolicy.MinTime > clientTime {
		t.Fatal("the client's pings would be refused")
	}
}
