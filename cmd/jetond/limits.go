package main

import (
	"log/slog"

	"github.com/jeton-dev/jeton/server"
)

// fitConnections lowers both listeners' connection caps so that, full,
// they leave file descriptors for everything else jetond holds (Redis and
// Vault connections, audit files, the metrics listener): a flood of
// connections must never exhaust them, or health, metrics and the
// authenticated callers would go down with it. A cap the configuration
// sets above what fits is lowered, with a warning.
func fitConnections(pub, tru *server.ConnLimits, log *slog.Logger) {
	nofile, ok := fileLimit()
	if !ok {
		log.Warn("cannot read the file descriptor limit; connection caps are not fitted to it")
		return
	}
	fitConnectionsTo(pub, tru, nofile, log)
}

// fitConnectionsTo fits the caps to nofile descriptors: an eighth (at
// least 256) is kept for the rest, the remainder is split between the
// listeners.
func fitConnectionsTo(pub, tru *server.ConnLimits, nofile uint64, log *slog.Logger) {
	reserve := max(256, nofile/8)
	each := 1
	if nofile > reserve+2 {
		each = int(min((nofile-reserve)/2, 1<<30))
	}
	for _, l := range []struct {
		name string
		c    *server.ConnLimits
	}{{"public", pub}, {"trusted", tru}} {
		switch {
		case l.c.Max == 0:
			l.c.Max = min(server.DefaultMaxConns, each)
		case l.c.Max > each:
			log.Warn("connections.max lowered to fit the file descriptor limit", "listener", l.name, "configured", l.c.Max, "max", each, "nofile", nofile)
			l.c.Max = each
		}
		if l.c.PerSource == 0 {
			l.c.PerSource = min(server.DefaultMaxConnsPerSource, l.c.Max)
		}
		l.c.PerSource = min(l.c.PerSource, l.c.Max)
	}
}
