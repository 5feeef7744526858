package sockopt

import (
	"context"
	"errors"
	"fmt"
	"net"
	"syscall"

	"golang.org/x/sys/unix"

	"github.com/tetherproxy/tether/config"
)

// Listen opens a TCP listener on addr with p applied.
//
// Before bind it sets SO_REUSEPORT (when p.ReusePort), TCP_DEFER_ACCEPT
// (p.DeferAccept in seconds; the kernel rounds up to its SYN-ACK
// retransmission schedule, 1, 3, 7, 15 ... s), TCP_FASTOPEN (queue length
// p.FastOpen), SO_SNDBUF / SO_RCVBUF (only when > 0) and the per-connection
// options of [Apply], which accepted sockets inherit. The listener is plain
// TCP (MPTCP off) and Go's keepalive defaults are off, so accepted conns keep
// what the profile set. p.Backlog (> 0) replaces Go's backlog (somaxconn);
// the kernel caps it at net.core.somaxconn.
//
// Accepted conns still need [Apply]: Go forces TCP_NODELAY on each.
func Listen(ctx context.Context, p config.TCPProfile, addr string) (*net.TCPListener, error) {
	lc := net.ListenConfig{
		Control: func(_, _ string, c syscall.RawConn) error {
			return control(c, func(fd int) error { return setListenerOptions(fd, p) })
		},
		KeepAlive:       -1,
		KeepAliveConfig: net.KeepAliveConfig{Enable: false},
	}
	lc.SetMultipathTCP(false)
	ln, err := lc.Listen(ctx, "tcp", addr)
	if err != nil {
		return nil, fmt.Errorf("sockopt: listen %s (profile %q): %w", addr, p.Name, err)
	}
	tl, ok := ln.(*net.TCPListener)
	if !ok { // cannot happen for "tcp"; guard against a future net change
		ln.Close()
		return nil, fmt.Errorf("sockopt: listen %s: got %T, not *net.TCPListener", addr, ln)
	}
	if p.Backlog > 0 {
		if err := setBacklog(tl, p.Backlog); err != nil {
			tl.Close()
			return nil, fmt.Errorf("sockopt: listen %s (profile %q): %w", addr, p.Name, err)
		}
	}
	return tl, nil
}

// ErrNotListener is returned by [Backlog] for a socket not in LISTEN.
var ErrNotListener = errors.New("sockopt: not a listening socket")

// setListenerOptions runs before bind(2), inside ListenConfig.Control.
func setListenerOptions(fd int, p config.TCPProfile) error {
	if p.ReusePort {
		if err := setInt(fd, unix.SOL_SOCKET, unix.SO_REUSEPORT, "SO_REUSEPORT", 1); err != nil {
			return err
		}
	}
	if p.DeferAccept > 0 {
		if err := setInt(fd, unix.IPPROTO_TCP, unix.TCP_DEFER_ACCEPT, "TCP_DEFER_ACCEPT", seconds(p.DeferAccept)); err != nil {
			return err
		}
	}
	if p.FastOpen > 0 {
		if err := setInt(fd, unix.IPPROTO_TCP, unix.TCP_FASTOPEN, "TCP_FASTOPEN", p.FastOpen); err != nil {
			return err
		}
	}
	if err := setBuffers(fd, p); err != nil {
		return err
	}
	return setConnOptions(fd, &p)
}

// setBacklog calls listen(2) again on the listening socket: Linux accepts it
// and only changes the accept queue's maximum. Go has already listened with
// its own backlog (net.core.somaxconn) and offers no way to choose it.
func setBacklog(ln *net.TCPListener, backlog int) error {
	raw, err := ln.SyscallConn()
	if err != nil {
		return err
	}
	return control(raw, func(fd int) error {
		if err := unix.Listen(fd, backlog); err != nil {
			return fmt.Errorf("sockopt: set backlog %d: %w", backlog, err)
		}
		return nil
	})
}

// Backlog returns the accept queue's maximum (the backlog in force, after the
// kernel's somaxconn cap) and its current length, from TCP_INFO of the
// listening socket (tcpi_sacked and tcpi_unacked hold them for LISTEN).
func Backlog(ln *net.TCPListener) (limit, queued int, err error) {
	if ln == nil {
		return 0, 0, ErrNilConn
	}
	raw, err := ln.SyscallConn()
	if err != nil {
		return 0, 0, fmt.Errorf("sockopt: %w", err)
	}
	err = control(raw, func(fd int) error {
		ti, err := unix.GetsockoptTCPInfo(fd, unix.IPPROTO_TCP, unix.TCP_INFO)
		if err != nil {
			return fmt.Errorf("sockopt: get TCP_INFO: %w", err)
		}
		if ti.State != uint8(StateListen) {
			return fmt.Errorf("sockopt: backlog of a %v socket: %w", State(ti.State), ErrNotListener)
		}
		limit, queued = int(ti.Sacked), int(ti.Unacked)
		return nil
	})
	return limit, queued, err
}

// Reapply sets p's listener options and backlog on a listener that is
// already bound (a reload that keeps the socket while its virtual server's
// client profile changed). An option that only takes effect at bind
// (SO_REUSEPORT's group) keeps its old effect.
func Reapply(ln *net.TCPListener, p config.TCPProfile) error {
	rc, err := ln.SyscallConn()
	if err != nil {
		return err
	}
	if err := control(rc, func(fd int) error { return setListenerOptions(fd, p) }); err != nil {
		return fmt.Errorf("sockopt: listener options (profile %q): %w", p.Name, err)
	}
	if p.Backlog > 0 {
		return setBacklog(ln, p.Backlog)
	}
	return nil
}
