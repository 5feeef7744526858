package sockopt

import (
	"errors"
	"fmt"
	"net"
	"syscall"
	"time"

	"golang.org/x/sys/unix"

	"github.com/tetherproxy/tether/config"
)

// ErrNilConn is returned when a function is handed a nil connection.
var ErrNilConn = errors.New("sockopt: nil connection")

// control runs f on c's file descriptor and returns f's error, or the
// RawConn's own error (a closed conn) when f could not run. Syscall errors are
// captured inside the callback because RawConn.Control only reports its own.
func control(c syscall.RawConn, f func(fd int) error) error {
	var opErr error
	if err := c.Control(func(fd uintptr) { opErr = f(int(fd)) }); err != nil {
		return fmt.Errorf("sockopt: %w", err)
	}
	return opErr
}

// connControl is control for a *net.TCPConn.
func connControl(c *net.TCPConn, f func(fd int) error) error {
	if c == nil {
		return ErrNilConn
	}
	raw, err := c.SyscallConn()
	if err != nil {
		return fmt.Errorf("sockopt: %w", err)
	}
	return control(raw, f)
}

// setInt sets one integer socket option; the error names it and its value.
func setInt(fd, level, opt int, name string, v int) error {
	if err := unix.SetsockoptInt(fd, level, opt, v); err != nil {
		return fmt.Errorf("sockopt: set %s=%d: %w", name, v, err)
	}
	return nil
}

// boolInt is 1 for true and 0 for false, as setsockopt wants flags.
func boolInt(b bool) int {
	if b {
		return 1
	}
	return 0
}

// seconds rounds d up to whole seconds, at least 1: the kernel takes seconds
// and a sub-second positive value must not become 0 ("off" or "default").
func seconds(d time.Duration) int {
	s := int((d + time.Second - 1) / time.Second)
	return max(s, 1)
}

// millis rounds d up to whole milliseconds, at least 1.
func millis(d time.Duration) int {
	ms := int((d + time.Millisecond - 1) / time.Millisecond)
	return max(ms, 1)
}

// setBuffers sets SO_SNDBUF / SO_RCVBUF when the profile asks (> 0). The
// kernel doubles the value and locks it, which turns autotuning off for that
// direction; 0 leaves autotuning on.
func setBuffers(fd int, p config.TCPProfile) error {
	if p.SendBuffer > 0 {
		if err := setInt(fd, unix.SOL_SOCKET, unix.SO_SNDBUF, "SO_SNDBUF", p.SendBuffer); err != nil {
			return err
		}
	}
	if p.RecvBuffer > 0 {
		if err := setInt(fd, unix.SOL_SOCKET, unix.SO_RCVBUF, "SO_RCVBUF", p.RecvBuffer); err != nil {
			return err
		}
	}
	return nil
}

// setConnOptions sets the per-connection options of p on fd: keepalive (with
// its three timers, or SO_KEEPALIVE 0), TCP_NODELAY, TCP_USER_TIMEOUT and
// TCP_LINGER2. Zero user timeout / linger2 leave the kernel's value. It is
// used on listeners (accepted sockets inherit) and by Apply; a dial sets all
// but TCP_NODELAY (setKeepaliveAndTimeouts).
func setConnOptions(fd int, p *config.TCPProfile) error {
	if err := setInt(fd, unix.IPPROTO_TCP, unix.TCP_NODELAY, "TCP_NODELAY", boolInt(p.NoDelay)); err != nil {
		return err
	}
	return setKeepaliveAndTimeouts(fd, p)
}

// setKeepaliveAndTimeouts is setConnOptions without TCP_NODELAY: a dial
// leaves that to Go, which turns it on after connect, and to [Finish].
func setKeepaliveAndTimeouts(fd int, p *config.TCPProfile) error {
	if p.Keepalive {
		// Timers first, so keepalive is never armed with the kernel's 7200 s.
		if p.KeepaliveIdle > 0 {
			if err := setInt(fd, unix.IPPROTO_TCP, unix.TCP_KEEPIDLE, "TCP_KEEPIDLE", seconds(p.KeepaliveIdle)); err != nil {
				return err
			}
		}
		if p.KeepaliveInterval > 0 {
			if err := setInt(fd, unix.IPPROTO_TCP, unix.TCP_KEEPINTVL, "TCP_KEEPINTVL", seconds(p.KeepaliveInterval)); err != nil {
				return err
			}
		}
		if p.KeepaliveProbes > 0 {
			if err := setInt(fd, unix.IPPROTO_TCP, unix.TCP_KEEPCNT, "TCP_KEEPCNT", p.KeepaliveProbes); err != nil {
				return err
			}
		}
	}
	if err := setInt(fd, unix.SOL_SOCKET, unix.SO_KEEPALIVE, "SO_KEEPALIVE", boolInt(p.Keepalive)); err != nil {
		return err
	}
	if p.UserTimeout > 0 {
		if err := setInt(fd, unix.IPPROTO_TCP, unix.TCP_USER_TIMEOUT, "TCP_USER_TIMEOUT", millis(p.UserTimeout)); err != nil {
			return err
		}
	}
	if p.FinWait2Timeout > 0 {
		if err := setInt(fd, unix.IPPROTO_TCP, unix.TCP_LINGER2, "TCP_LINGER2", seconds(p.FinWait2Timeout)); err != nil {
			return err
		}
	}
	return nil
}
