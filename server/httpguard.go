package server

import (
	"net"
	"net/http"
)

// GuardHTTP bounds the connections of a plain HTTP listener, such as
// jetond's metrics listener, with the two pools of the gRPC listeners
// (see ConnLimits): a connection waiting for a request, new or idle
// between requests, is in the pool that a newer connection may evict,
// oldest of the most crowded source first; one serving a request is in
// the other, bounded by Max and PerSource. A flood of idle connections
// then never locks a prober or a scraper out. Serve the returned listener
// with the returned ConnState hook set on the http.Server, and give the
// server its own ReadHeaderTimeout and IdleTimeout: they bound how long a
// connection waits. Its series carry listener=name.
func (s *Server) GuardHTTP(l net.Listener, name string, lim ConnLimits) (net.Listener, func(net.Conn, http.ConnState)) {
	g := newGuardedListener(l, name, nil, lim.withDefaults(), s.conns, newSampledLog(s.log))
	return g, g.connState
}

// connState follows an HTTP connection: serving a request, it holds a
// place of the bounded pool or is closed; idle again, it goes back among
// those a newer connection may evict.
func (l *guardedListener) connState(c net.Conn, st http.ConnState) {
	gc, ok := c.(*guardedConn)
	if !ok {
		return
	}
	switch st {
	case http.StateActive:
		if reason := l.authenticate(gc); reason == evictedMeanwhile {
			return // closed already
		} else if reason != "" {
			l.refuse(gc.Conn, reason)
		}
	case http.StateIdle:
		l.idle(gc)
	}
}

// idle moves an authenticated c back to the pool that newer connections
// may evict, as its newest member.
func (l *guardedListener) idle(c *guardedConn) {
	var victims []*guardedConn
	l.mu.Lock()
	if c.state != connAuthed {
		l.mu.Unlock()
		return
	}
	l.authed--
	if l.bySource[c.src]--; l.bySource[c.src] <= 0 {
		delete(l.bySource, c.src)
	}
	victims = l.makeRoomLocked(c.src)
	l.enterLocked(c)
	l.mu.Unlock()
	l.m.handshaking.WithLabelValues(l.name).Inc()
	for _, v := range victims {
		v.evict()
	}
}
