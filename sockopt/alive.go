package sockopt

import (
	"errors"
	"fmt"
	"io"
	"net"
	"unsafe"

	"golang.org/x/sys/unix"
)

// ErrStale means an idle connection must not be reused: the peer closed it,
// reset it, or sent bytes nobody asked for.
var ErrStale = errors.New("sockopt: connection is stale")

// ErrStaleData is the ErrStale for bytes waiting on an idle connection.
// Over TLS they may be records the peer sends unasked (TLS 1.3 session
// tickets, key updates, close_notify), which only TLS can tell apart.
var ErrStaleData = fmt.Errorf("%w: unexpected data", ErrStale)

var errStaleEOF = fmt.Errorf("%w: %w", ErrStale, io.EOF)

// Alive is the stale check before an idle connection is reused: a one-byte
// recv(MSG_PEEK|MSG_DONTWAIT). Nothing to read (EAGAIN) means healthy and
// returns nil; EOF returns ErrStale wrapping io.EOF; waiting data returns
// ErrStale ("unexpected data"), the data left in place (nothing is
// consumed); any other error (ECONNRESET, ETIMEDOUT ...) returns ErrStale
// wrapping it. A closed conn returns its error (net.ErrClosed), not ErrStale.
//
// Unlike go-sql-driver/mysql's connCheck it peeks through RawConn.Control,
// not RawConn.Read: Read takes the conn's read lock and checks its read
// deadline first, so it could block behind a concurrent reader or report an
// expired deadline left on an idle conn as stale. Control does neither, and
// MSG_DONTWAIT makes the peek non-blocking by itself. A healthy check does
// not allocate.
func Alive(c *net.TCPConn) error {
	if c == nil {
		return ErrNilConn
	}
	raw, err := c.SyscallConn()
	if err != nil {
		return fmt.Errorf("sockopt: %w", err)
	}
	var n int
	var errno unix.Errno
	if err := raw.Control(func(fd uintptr) { n, errno = peek(fd) }); err != nil {
		return fmt.Errorf("sockopt: %w", err)
	}
	switch {
	case errno == unix.EAGAIN:
		return nil
	case errno != 0:
		return fmt.Errorf("%w: %w", ErrStale, errno)
	case n == 0:
		return errStaleEOF
	default:
		return ErrStaleData
	}
}

// peek is recv(fd, buf, 1, MSG_PEEK|MSG_DONTWAIT) as a direct system call:
// unix.Recvfrom allocates a sockaddr on every call, and Alive runs before
// every reuse of a pooled connection. The pointer-to-uintptr conversion in
// the call's arguments is the form unsafe.Pointer rule (4) allows.
func peek(fd uintptr) (int, unix.Errno) {
	var b [1]byte
	for {
		r, _, e := unix.Syscall6(unix.SYS_RECVFROM, fd, uintptr(unsafe.Pointer(&b[0])), 1,
			unix.MSG_PEEK|unix.MSG_DONTWAIT, 0, 0)
		if e != unix.EINTR {
			return int(r), e
		}
	}
}
