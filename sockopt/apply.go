package sockopt

import (
	"fmt"
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
// Apply is a handful of setsockopt calls and does not allocate unless an
// option fails; the first failing option stops it and is named in the error.
func Apply(c *net.TCPConn, p config.TCPProfile) error {
	if c == nil {
		return ErrNilConn
	}
	raw, err := c.SyscallConn()
	if err != nil {
		return fmt.Errorf("sockopt: %w", err)
	}
	// Not through control(): its generic callback makes p escape, and Apply
	// runs on every accept.
	var opErr error
	if err := raw.Control(func(fd uintptr) { opErr = setConnOptions(int(fd), &p) }); err != nil {
		return fmt.Errorf("sockopt: %w", err)
	}
	return opErr
}
