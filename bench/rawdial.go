package bench

import (
	"context"
	"net/netip"
	"os"
	"time"
	"unsafe"

	"golang.org/x/sys/unix"
)

// The short-connection fast path. With one connection per request the
// generator's own cost is mostly the connect, and net.Dialer adds to the
// kernel's share: a setsockopt (TCP_NODELAY), a wait in the poller for the
// connect to finish, getsockopt(SO_ERROR), getsockname and getpeername, and
// about 20 allocations (the dial context, the address parsing, the netFD).
// rawDial does what ab does instead: socket, a non-blocking connect and,
// right away, a second connect that reports the outcome — on loopback the
// handshake has already completed inside the first call, so the poller is
// only needed when it has not. The socket is handed to the runtime's poller
// as an *os.File, whose Read, Write, deadlines and Close are the same
// poll.FD the net package uses.
//
// Behaviour is unchanged: no socket option is set by either path except
// TCP_NODELAY, which rawDial leaves off only where it cannot matter (see
// rawMax); the close is the same close(2) (no linger), so who closes first
// and where TIME_WAIT lands follow Options.Close exactly as before; the
// local port is still read once per connection for the TIME_WAIT census.

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
	err = unix.Connect(fd, w.sa)
	if err == unix.EINPROGRESS {
		err = unix.Connect(fd, w.sa) // 0 once established, EALREADY while not
	}
	if err != nil && err != unix.EALREADY {
		_ = unix.Close(fd)
		return classify(os.NewSyscallError("connect", err))
	}
	f := os.NewFile(uintptr(fd), "")
	p.files[w.id].Store(f)
	if err == unix.EALREADY {
		// Wait for the handshake in the poller, bounded by the timeout
		// and cut by cutConns; a cut that came before the store above is
		// seen by the ctx check.
		_ = f.SetWriteDeadline(t0.Add(p.o.Timeout))
		if ctx.Err() != nil {
			w.dropFile(f)
			return kindOther
		}
		if err = waitConnect(f, w.sa); err != nil {
			w.dropFile(f)
			return classify(err)
		}
	}
	t1 := time.Now()
	recordDur(w.connect, t1.Sub(t0))
	w.opened++
	w.notePort(fd)
	w.c, w.file, w.fd = f, f, fd
	w.uses, w.deadline, w.connAt = 0, time.Time{}, t1
	if w.br == nil {
		w.br = newBufReader(f)
	} else {
		w.br.Reset(f)
	}
	return kindOK
}

// waitConnect waits until the connect in progress on f ends and returns
// its outcome: nil, the connect error, or the deadline's.
func waitConnect(f *os.File, sa unix.Sockaddr) error {
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

// dropFile closes a raw conn that never became the worker's.
func (w *worker) dropFile(f *os.File) {
	_ = f.Close()
	w.p.files[w.id].Store(nil)
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
	var ip netip.Addr
	var port uint
	switch w.name.Addr.Family {
	case unix.AF_INET:
		sa := (*unix.RawSockaddrInet4)(unsafe.Pointer(&w.name))
		b := (*[2]byte)(unsafe.Pointer(&sa.Port))
		port = uint(b[0])<<8 | uint(b[1])
		if p.local.Load() == nil {
			ip = netip.AddrFrom4(sa.Addr)
		}
	case unix.AF_INET6:
		sa := (*unix.RawSockaddrInet6)(unsafe.Pointer(&w.name))
		b := (*[2]byte)(unsafe.Pointer(&sa.Port))
		port = uint(b[0])<<8 | uint(b[1])
		if p.local.Load() == nil {
			ip = netip.AddrFrom16(sa.Addr).Unmap()
		}
	default:
		return
	}
	p.ports[port>>6].Or(1 << (port & 63))
	if ip.IsValid() {
		p.local.CompareAndSwap(nil, &ip)
	}
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
