package bench

import (
	"context"
	"io"
	"net/netip"
	"os"
	"sync/atomic"
	"time"
	"unsafe"

	"golang.org/x/sys/unix"
)

// The short-connection fast path. With one connection per request the
// generator's own cost is mostly the connect, and net.Dialer adds to the
// kernel's share: a setsockopt (TCP_NODELAY), a wait in the poller for the
// connect to finish, getsockopt(SO_ERROR), getsockname and getpeername,
// an epoll_ctl to add the socket and one to remove it, a runtime timer
// for the deadline, and about 20 allocations. rawDial does what ab does
// instead: socket, a non-blocking connect and, right away, a second
// connect that reports the outcome — on loopback the handshake has
// already completed inside the first call. The conn (rawConn) is then
// read and written with direct non-blocking system calls, and handed to
// the runtime's poller (as an *os.File, the same poll.FD the net package
// uses) only when a call would block: rarely, since a worker yields
// between its write and its read (yieldForAnswer).
//
// Behaviour is unchanged: no socket option is set by either path except
// TCP_NODELAY, which rawDial leaves off only where it cannot matter (see
// rawMax); the close is the same close(2) (no linger), so who closes first
// and where TIME_WAIT lands follow Options.Close exactly as before; the
// local port is still read once per connection for the TIME_WAIT census;
// Options.Timeout bounds every wait, as a deadline on the poller.

// rawMax bounds the bytes a request (or tcp payload) may have for the raw
// path. Nagle's algorithm only holds back a segment while earlier data is
// unacknowledged; a fresh connection's single write that fits one segment
// has none, so TCP_NODELAY changes nothing and its setsockopt is saved.
// 512 is below every practical MSS (IPv6's minimum MTU gives 1220).
const rawMax = 512

// useRaw reports whether the phase opens its connections with rawDial:
// short plain conns whose write fits rawMax. TLS and long conns keep
// net.Dialer (a connect there is rare, or dwarfed by the handshake).
func (p *phase) useRaw() bool {
	return p.o.Conn == ConnShort && p.tls == nil && len(p.req)+len(p.payload) <= rawMax
}

// rawTarget is the target as a socket address for connect(2); each worker
// has its own copy (unix.Connect writes into it).
func rawTarget(a netip.AddrPort) (family int, sa unix.Sockaddr) {
	if a.Addr().Is4() {
		return unix.AF_INET, &unix.SockaddrInet4{Port: int(a.Port()), Addr: a.Addr().As4()}
	}
	return unix.AF_INET6, &unix.SockaddrInet6{Port: int(a.Port()), Addr: a.Addr().As16()}
}

// rawDial opens the worker's conn on the raw path and records it, as dial
// does; t0 is when the attempt started.
func (w *worker) rawDial(ctx context.Context, t0 time.Time) int {
	p := w.p
	if w.sa == nil {
		w.family, w.sa = rawTarget(p.t.addr)
	}
	fd, err := unix.Socket(w.family, unix.SOCK_STREAM|unix.SOCK_NONBLOCK|unix.SOCK_CLOEXEC, 0)
	if err != nil {
		return classify(os.NewSyscallError("socket", err))
	}
	c := &w.raw
	*c = rawConn{fd: fd, ctx: ctx, slot: &p.files[w.id]}
	err = unix.Connect(fd, w.sa)
	if err == unix.EINPROGRESS {
		err = unix.Connect(fd, w.sa) // 0 once established, EALREADY while not
	}
	if err == unix.EALREADY {
		// Wait for the handshake in the poller, bounded by the timeout.
		c.wd = t0.Add(p.o.Timeout)
		err = c.waitConnect(w.sa)
	} else if err != nil {
		err = os.NewSyscallError("connect", err)
	}
	if err != nil {
		_ = c.Close()
		return classify(err)
	}
	t1 := time.Now()
	recordDur(w.connect, t1.Sub(t0))
	w.opened++
	w.notePort(fd)
	w.c = c
	w.uses, w.deadline, w.connAt = 0, time.Time{}, t1
	if w.br == nil {
		w.br = newBufReader(c)
	} else {
		w.br.Reset(c)
	}
	return kindOK
}

// rawConn is a raw-path conn: a non-blocking socket read and written with
// direct system calls, handed to the runtime's poller (f) only when a call
// would block. A worker reuses its one rawConn for each of its conns.
type rawConn struct {
	fd     int
	f      *os.File // nil until a call would block
	rd, wd time.Time
	ctx    context.Context          // the run's: ended, a wait is cut
	slot   *atomic.Pointer[os.File] // where cutConns finds f
}

// poller returns the conn as an *os.File registered with the runtime's
// poller, making it on first use; a cut (cutConns) that came before f was
// published is seen by the ctx check.
func (c *rawConn) poller() (*os.File, error) {
	if c.f != nil {
		return c.f, nil
	}
	c.f = os.NewFile(uintptr(c.fd), "")
	c.slot.Store(c.f)
	if err := c.ctx.Err(); err != nil {
		return nil, err
	}
	if !c.rd.IsZero() {
		_ = c.f.SetReadDeadline(c.rd)
	}
	if !c.wd.IsZero() {
		_ = c.f.SetWriteDeadline(c.wd)
	}
	return c.f, nil
}

func (c *rawConn) Read(b []byte) (int, error) {
	if c.f == nil {
		for {
			n, err := unix.Read(c.fd, b)
			switch {
			case err == unix.EINTR:
				continue
			case err == unix.EAGAIN:
			case err != nil:
				return 0, os.NewSyscallError("read", err)
			case n == 0 && len(b) > 0:
				return 0, io.EOF
			default:
				return n, nil
			}
			break
		}
	}
	f, err := c.poller()
	if err != nil {
		return 0, err
	}
	return f.Read(b)
}

func (c *rawConn) Write(b []byte) (int, error) {
	done := 0
	for c.f == nil && done < len(b) {
		n, err := unix.Write(c.fd, b[done:])
		if n > 0 {
			done += n
		}
		switch {
		case err == nil, err == unix.EINTR:
			continue
		case err == unix.EAGAIN:
		default:
			return done, os.NewSyscallError("write", err)
		}
		break
	}
	if done == len(b) {
		return done, nil
	}
	f, err := c.poller()
	if err != nil {
		return done, err
	}
	n, err := f.Write(b[done:])
	return done + n, err
}

func (c *rawConn) SetDeadline(t time.Time) error {
	c.rd, c.wd = t, t
	if c.f != nil {
		return c.f.SetDeadline(t)
	}
	return nil
}

func (c *rawConn) SetReadDeadline(t time.Time) error {
	c.rd = t
	if c.f != nil {
		return c.f.SetReadDeadline(t)
	}
	return nil
}

// Close closes the socket (through f when the poller has it).
func (c *rawConn) Close() error {
	if c.f == nil {
		return unix.Close(c.fd)
	}
	err := c.f.Close()
	c.slot.Store(nil)
	c.f = nil
	return err
}

// waitConnect waits until the connect in progress ends and returns its
// outcome: nil, the connect error, or the deadline's (or the cut's).
func (c *rawConn) waitConnect(sa unix.Sockaddr) error {
	f, err := c.poller()
	if err != nil {
		return err
	}
	rc, err := f.SyscallConn()
	if err != nil {
		return err
	}
	var cerr error
	err = rc.Write(func(fd uintptr) bool {
		cerr = unix.Connect(int(fd), sa)
		return cerr != unix.EALREADY && cerr != unix.EINPROGRESS
	})
	if err != nil {
		return err
	}
	if cerr != nil {
		return os.NewSyscallError("connect", cerr)
	}
	return nil
}

// notePort records the conn's local port (and, once, the local address)
// for the TIME_WAIT census. getsockname is called directly into the
// worker's buffer: unix.Getsockname allocates a Sockaddr per call.
func (w *worker) notePort(fd int) {
	p := w.p
	l := uint32(unsafe.Sizeof(w.name))
	_, _, e := unix.RawSyscall(unix.SYS_GETSOCKNAME, uintptr(fd), uintptr(unsafe.Pointer(&w.name)), uintptr(unsafe.Pointer(&l)))
	if e != 0 {
		return
	}
	var port [2]byte
	switch w.name.Addr.Family {
	case unix.AF_INET:
		sa := (*unix.RawSockaddrInet4)(unsafe.Pointer(&w.name))
		port = *(*[2]byte)(unsafe.Pointer(&sa.Port))
	case unix.AF_INET6:
		sa := (*unix.RawSockaddrInet6)(unsafe.Pointer(&w.name))
		port = *(*[2]byte)(unsafe.Pointer(&sa.Port))
	default:
		return
	}
	n := uint(port[0])<<8 | uint(port[1]) // network byte order
	p.ports[n>>6].Or(1 << (n & 63))
	if p.local.Load() == nil {
		p.local.CompareAndSwap(nil, w.localAddr())
	}
}

// localAddr is the address in w.name (a new value: it is kept).
func (w *worker) localAddr() *netip.Addr {
	var ip netip.Addr
	if w.name.Addr.Family == unix.AF_INET {
		ip = netip.AddrFrom4((*unix.RawSockaddrInet4)(unsafe.Pointer(&w.name)).Addr)
	} else {
		ip = netip.AddrFrom16((*unix.RawSockaddrInet6)(unsafe.Pointer(&w.name)).Addr).Unmap()
	}
	return &ip
}

// peerClosed reports whether the peer of the raw conn fd has already
// closed (EOF) or reset it: a one-byte recv(MSG_PEEK|MSG_DONTWAIT), which
// consumes nothing. It is sockopt.Alive's check on a descriptor that is
// not a *net.TCPConn, called directly because unix.Recvfrom allocates a
// sockaddr per call.
func peerClosed(fd int) bool {
	var b [1]byte
	for {
		n, _, e := unix.Syscall6(unix.SYS_RECVFROM, uintptr(fd), uintptr(unsafe.Pointer(&b[0])), 1,
			unix.MSG_PEEK|unix.MSG_DONTWAIT, 0, 0)
		switch e {
		case unix.EINTR:
			continue
		case 0:
			return n == 0
		}
		return e == unix.ECONNRESET
	}
}
