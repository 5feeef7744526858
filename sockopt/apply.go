package sockopt

import (
	"net"

	"github.com/tetherproxy/tether/config"
)

// Apply sets the per-connection options of p on an accepted or dialed conn:
// SO_KEEPALIVE with TCP_KEEPIDLE / TCP_KEEPINTVL / TCP_KEEPCNT (keepalive off
// sets SO_KEEPALIVE 0 and leaves the timers alone), TCP_NODELAY,
// TCP_USER_TIMEOUT (0 = kernel default) and TCP_LINGER2 (0 = kernel default,
// net.ipv4.tcp_fin_timeout).
//
// Call it after every accept and dial: Go turns TCP_NODELAY on for every new
// conn, so only a call after Go has finished sets the profile's value. Buffer
// sizes are not set here: accepted sockets inherit them from the listener and
// Dialer sets them before connect, which is when they matter (window scale).
//
// Apply costs one RawConn and a handful of setsockopt calls; the first
// failing option stops it and is named in the error.
func Apply(c *net.TCPConn, p config.TCPProfile) error {
	return connControl(c, func(fd int) error { return setConnOptions(fd, p) })
}
