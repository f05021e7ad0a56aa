package server

import (
	"log/slog"
	"net"
	"net/netip"
)

// allowlistListener drops connections whose source address is outside the
// allowed prefixes before any TLS byte is exchanged.
type allowlistListener struct {
	net.Listener
	allowed []netip.Prefix
	log     *slog.Logger
}

func (l *allowlistListener) Accept() (net.Conn, error) {
	for {
		c, err := l.Listener.Accept()
		if err != nil {
			return nil, err
		}
		if addrAllowed(c.RemoteAddr(), l.allowed) {
			return c, nil
		}
		l.log.Warn("connection refused: source outside the trusted allowlist", "peer", c.RemoteAddr().String())
		c.Close()
	}
}

func addrAllowed(a net.Addr, allowed []netip.Prefix) bool {
	ap, err := netip.ParseAddrPort(a.String())
	if err != nil {
		return false
	}
	ip := ap.Addr().Unmap()
	for _, p := range allowed {
		if p.Contains(ip) {
			return true
		}
	}
	return false
}
