package sockopt

import (
	"fmt"
	"net"

	"golang.org/x/sys/unix"

	"github.com/tetherproxy/tether/config"
)

// Apply sets the per-connection options of p on an accepted or dialed conn:
// SO_KEEPALIVE with TCP_KEEPIDLE / TCP_KEEPINTVL / TCP_KEEPCNT (keepalive off
// sets SO_KEEPALIVE 0 and leaves the timers alone), TCP_NODELAY,
// TCP_USER_TIMEOUT (0 = kernel default) and TCP_LINGER2 (0 = kernel default,
// net.ipv4.tcp_fin_timeout).
//
// A conn from a listener or dialer of the same profile needs only [Finish];
// Apply is for a conn whose options must be set anew. Buffer
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

// Finish completes p on a conn accepted from a [Listen] listener or dialed
// with a [Dialer] of the same profile, with the one option Go overrides:
// Go turns TCP_NODELAY on for every new conn, so a profile with nodelay off
// costs one setsockopt here, and a profile with it on costs nothing.
//
// Everything else is already in place: Dialer's Control set it before
// connect, and an accepted socket starts as a copy of its listener, which
// Listen (or [Reapply]) gave every per-connection option of p (SO_KEEPALIVE,
// TCP_KEEPIDLE, TCP_KEEPINTVL, TCP_KEEPCNT, TCP_USER_TIMEOUT, TCP_LINGER2,
// the buffers; read back on accepted sockets by this package's tests).
// Setting them again per conn was five wasted syscalls on every accept.
func Finish(c *net.TCPConn, p *config.TCPProfile) error {
	if p.NoDelay {
		return nil
	}
	if c == nil {
		return ErrNilConn
	}
	raw, err := c.SyscallConn()
	if err != nil {
		return fmt.Errorf("sockopt: %w", err)
	}
	var opErr error
	if err := raw.Control(func(fd uintptr) {
		opErr = setInt(int(fd), unix.IPPROTO_TCP, unix.TCP_NODELAY, "TCP_NODELAY", 0)
	}); err != nil {
		return fmt.Errorf("sockopt: %w", err)
	}
	return opErr
}
