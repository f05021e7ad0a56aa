package main

import (
	"io"
	"log/slog"
	"testing"

	"github.com/jeton-dev/jeton/server"
)

func TestFitConnections(t *testing.T) {
	quiet := slog.New(slog.NewTextHandler(io.Discard, nil))
	tests := []struct {
		name     string
		nofile   uint64
		pub, tru server.ConnLimits
		wantPub  server.ConnLimits
	}{
		{"defaults fit a large limit", 1 << 20, server.ConnLimits{}, server.ConnLimits{},
			server.ConnLimits{Max: server.DefaultMaxConns, PerSource: server.DefaultMaxConnsPerSource}},
		{"defaults lowered to a small limit", 4096, server.ConnLimits{}, server.ConnLimits{},
			server.ConnLimits{Max: 1792, PerSource: server.DefaultMaxConnsPerSource}},
		{"a configured cap above the limit is lowered", 4096, server.ConnLimits{Max: 100000, PerSource: 50000}, server.ConnLimits{},
			server.ConnLimits{Max: 1792, PerSource: 1792}},
		{"a configured cap that fits is kept", 4096, server.ConnLimits{Max: 100, PerSource: 10}, server.ConnLimits{},
			server.ConnLimits{Max: 100, PerSource: 10}},
		{"a tiny limit still leaves a slot", 300, server.ConnLimits{}, server.ConnLimits{},
			server.ConnLimits{Max: 22, PerSource: 22}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			pub, tru := tt.pub, tt.tru
			fitConnectionsTo(&pub, &tru, tt.nofile, quiet)
			if pub != tt.wantPub {
				t.Fatalf("public = %+v, want %+v", pub, tt.wantPub)
			}
			if uint64(pub.Max+tru.Max) > tt.nofile {
				t.Fatalf("the caps (%d + %d) exceed the limit %d", pub.Max, tru.Max, tt.nofile)
			}
		})
	}
}
