package main

import (
	"io"
	"log/slog"
	"testing"

	"github.com/jeton-dev/jeton/server"
)

func TestFitConnections(t *testing.T) {
	quiet := slog.New(slog.NewTextHandler(io.Discard, nil))
	defaults := server.ConnLimits{Max: server.DefaultMaxConns, PerSource: server.DefaultMaxConnsPerSource,
		Handshaking: server.DefaultMaxHandshaking, HandshakingPerSource: server.DefaultMaxHandshakingPerSource}
	tests := []struct {
		name     string
		nofile   uint64
		pub, tru server.ConnLimits
		wantPub  server.ConnLimits
	}{
		{"defaults fit a large limit", 1 << 20, server.ConnLimits{}, server.ConnLimits{}, defaults},
		// 4096 - 512 - 48 for the metrics listener = 3536, 1768 each: a
		// quarter handshaking, the rest authenticated.
		{"defaults lowered to a small limit", 4096, server.ConnLimits{}, server.ConnLimits{},
			server.ConnLimits{Max: 1326, PerSource: server.DefaultMaxConnsPerSource, Handshaking: 442, HandshakingPerSource: server.DefaultMaxHandshakingPerSource}},
		{"a configured cap above the limit is lowered", 4096, server.ConnLimits{Max: 100000, PerSource: 50000, Handshaking: 100000, HandshakingPerSource: 50000}, server.ConnLimits{},
			server.ConnLimits{Max: 1326, PerSource: 1326, Handshaking: 442, HandshakingPerSource: 442}},
		{"configured caps that fit are kept", 4096, server.ConnLimits{Max: 100, PerSource: 10, Handshaking: 50, HandshakingPerSource: 5}, server.ConnLimits{},
			server.ConnLimits{Max: 100, PerSource: 10, Handshaking: 50, HandshakingPerSource: 5}},
		{"a tiny limit still leaves a place in each pool", 300, server.ConnLimits{}, server.ConnLimits{},
			server.ConnLimits{Max: 1, PerSource: 1, Handshaking: 1, HandshakingPerSource: 1}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			pub, tru := tt.pub, tt.tru
			fitConnectionsTo(&pub, &tru, tt.nofile, quiet)
			if pub != tt.wantPub {
				t.Fatalf("public = %+v, want %+v", pub, tt.wantPub)
			}
			if tt.nofile < 1000 {
				return // nothing fits; each pool keeps one place
			}
			// Every descriptor the listeners can take, the metrics
			// listener's too, leaves the reserve for the rest.
			if used := uint64(pub.Max+pub.Handshaking+tru.Max+tru.Handshaking) + uint64(metricsDescriptors); used > tt.nofile-max(256, tt.nofile/8) {
				t.Fatalf("the caps take %d descriptors of %d, leaving less than the reserve", used, tt.nofile)
			}
			if err := pub.Validate(); err != nil {
				t.Fatal(err)
			}
		})
	}
}
