package sockopt

import (
	"net"
	"syscall"
	"time"

	"golang.org/x/sys/unix"

	"github.com/tetherproxy/tether/config"
)

// Dialer returns a *net.Dialer for connections to members.
//
// Timeout is connectTimeout (0 = none beyond the kernel's SYN retries).
// Go's keepalive defaults are off (KeepAlive -1, KeepAliveConfig disabled)
// so the profile's keepalive holds, and MPTCP is off. Its Control sets,
// before connect: SO_SNDBUF / SO_RCVBUF (> 0; before connect so the window
// scale fits them), TCP_FASTOPEN_CONNECT (p.FastOpen > 0), keepalive,
// TCP_USER_TIMEOUT and TCP_LINGER2; not TCP_NODELAY, which Go turns on
// after connect whatever was set before.
//
// Callers must still call [Finish] on the dialed conn: Go forces TCP_NODELAY
// on after connect.
//
// With TCP_FASTOPEN_CONNECT, once the kernel holds a Fast Open cookie for the
// member, connect(2) returns at once without a handshake: Dial then succeeds
// even when the member is down, and the refusal surfaces on the first Write
// or Read. A health check that means "connect works" must use a profile with
// fastopen = 0.
func Dialer(p config.TCPProfile, connectTimeout time.Duration) *net.Dialer {
	d := &net.Dialer{
		Timeout:         connectTimeout,
		KeepAlive:       -1,
		KeepAliveConfig: net.KeepAliveConfig{Enable: false},
		Control: func(_, _ string, c syscall.RawConn) error {
			return control(c, func(fd int) error { return setDialOptions(fd, p) })
		},
	}
	d.SetMultipathTCP(false)
	return d
}

// setDialOptions runs before connect(2), inside Dialer.Control.
func setDialOptions(fd int, p config.TCPProfile) error {
	if err := setBuffers(fd, p); err != nil {
		return err
	}
	if p.FastOpen > 0 {
		if err := setInt(fd, unix.IPPROTO_TCP, unix.TCP_FASTOPEN_CONNECT, "TCP_FASTOPEN_CONNECT", 1); err != nil {
			return err
		}
	}
	return setKeepaliveAndTimeouts(fd, &p)
}
