package main

import (
	"log/slog"

	"github.com/jeton-dev/jeton/server"
)

// fitConnections lowers both listeners' connection caps so that, full,
// they leave file descriptors for everything else jetond holds (Redis and
// Vault connections, audit files, the metrics listener's own capped
// connections): a flood of connections must never exhaust them, or
// health, metrics and the authenticated callers would go down with it. A
// cap the configuration sets above what fits is lowered, with a warning.
func fitConnections(pub, tru *server.ConnLimits, log *slog.Logger) {
	nofile, ok := fileLimit()
	if !ok {
		log.Warn("cannot read the file descriptor limit; connection caps are not fitted to it")
		return
	}
	fitConnectionsTo(pub, tru, nofile, log)
}

// fitConnectionsTo fits the caps to nofile descriptors: an eighth (at
// least 256) is kept for the rest, and the metrics listener's caps on top;
// the remainder is split between the listeners. Within a listener, its
// handshaking pool and its authenticated pool together (Handshaking +
// Max) must fit; when they do not, the handshaking pool gets at most a
// quarter and the authenticated one the rest.
func fitConnectionsTo(pub, tru *server.ConnLimits, nofile uint64, log *slog.Logger) {
	reserve := max(256, nofile/8) + uint64(metricsDescriptors)
	each := 2
	if nofile > reserve+4 {
		each = int(min((nofile-reserve)/2, 1<<30))
	}
	for _, l := range []struct {
		name string
		c    *server.ConnLimits
	}{{"public", pub}, {"trusted", tru}} {
		hs, authed := l.c.Handshaking, l.c.Max
		if hs == 0 {
			hs = server.DefaultMaxHandshaking
		}
		if authed == 0 {
			authed = server.DefaultMaxConns
		}
		if hs+authed > each {
			hs = max(1, min(hs, each/4))
			authed = max(1, min(authed, each-hs))
		}
		if l.c.Handshaking > hs || l.c.Max > authed {
			log.Warn("connections.max and max_handshaking lowered to fit the file descriptor limit", "listener", l.name,
				"configured_max", l.c.Max, "max", authed, "configured_max_handshaking", l.c.Handshaking, "max_handshaking", hs, "nofile", nofile)
		}
		l.c.Handshaking, l.c.Max = hs, authed
		if l.c.PerSource == 0 {
			l.c.PerSource = server.DefaultMaxConnsPerSource
		}
		l.c.PerSource = min(l.c.PerSource, l.c.Max)
		if l.c.HandshakingPerSource == 0 {
			l.c.HandshakingPerSource = server.DefaultMaxHandshakingPerSource
		}
		l.c.HandshakingPerSource = min(l.c.HandshakingPerSource, l.c.Handshaking)
	}
}
