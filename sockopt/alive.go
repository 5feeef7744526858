package sockopt

import (
	"errors"
	"fmt"
	"io"
	"net"

	"golang.org/x/sys/unix"
)

// ErrStale means an idle connection must not be reused: the peer closed it,
// reset it, or sent bytes nobody asked for.
var ErrStale = errors.New("sockopt: connection is stale")

// errUnexpectedData is wrapped in ErrStale when the peer sent bytes.
var errUnexpectedData = errors.New("unexpected data")

// Alive is the stale check before an idle connection is reused: a one-byte
// recv(MSG_PEEK|MSG_DONTWAIT). Nothing to read (EAGAIN) means healthy and
// returns nil; EOF returns ErrStale wrapping io.EOF; waiting data returns
// ErrStale ("unexpected data", left in place: nothing is consumed); any other
// error (ECONNRESET, ...) returns ErrStale wrapping it. A closed conn returns
// its error (net.ErrClosed), not ErrStale.
//
// Unlike go-sql-driver/mysql's connCheck it peeks through RawConn.Control,
// not RawConn.Read: Read takes the conn's read lock and checks its read
// deadline first, so it could block behind a concurrent reader or report an
// expired deadline left on an idle conn as stale. Control does neither, and
// MSG_DONTWAIT makes the peek non-blocking by itself.
func Alive(c *net.TCPConn) error {
	var peekErr error
	err := connControl(c, func(fd int) error {
		var b [1]byte
		for {
			n, _, err := unix.Recvfrom(fd, b[:], unix.MSG_PEEK|unix.MSG_DONTWAIT)
			switch {
			case err == unix.EINTR:
				continue
			case err == unix.EAGAIN:
				peekErr = nil
			case err != nil:
				peekErr = fmt.Errorf("%w: %w", ErrStale, err)
			case n == 0:
				peekErr = fmt.Errorf("%w: %w", ErrStale, io.EOF)
			default:
				peekErr = fmt.Errorf("%w: %w", ErrStale, errUnexpectedData)
			}
			return nil
		}
	})
	if err != nil {
		return err
	}
	return peekErr
}
