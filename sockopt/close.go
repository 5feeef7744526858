package sockopt

import (
	"errors"
	"fmt"
	"net"
	"time"

	"golang.org/x/sys/unix"

	"github.com/tetherproxy/tether/config"
)

// ErrUndelivered is wrapped in the error of a drain-reset [Close] that had to
// discard data the peer had not acknowledged: the drain timed out, or the
// connection died (peer reset, user timeout) before the queue emptied.
var ErrUndelivered = errors.New("sockopt: close discarded unacknowledged data")

// Drain polling: first check at once, then 1 ms, doubling up to 50 ms.
const (
	drainFirstWait = time.Millisecond
	drainMaxWait   = 50 * time.Millisecond
)

// Close closes c the way mode says and returns the close error.
//
//   - graceful (or ""): close(2) — FIN after unsent data; TIME_WAIT lands on
//     whichever side sent the first FIN.
//   - reset: SO_LINGER {on, 0} then close(2) — RST at once, data still
//     queued is discarded, no TIME_WAIT.
//   - drain-reset: poll the send queue (SIOCOUTQ: bytes not yet acknowledged)
//     from 1 ms, doubling to 50 ms, until it is empty or drainTimeout has
//     passed (<= 0: no wait), then reset. No FIN is sent, so the peer reads
//     every byte and then ECONNRESET, and no TIME_WAIT is left. If data was
//     still unacknowledged when it gave up, the error wraps [ErrUndelivered]
//     (the conn is closed all the same).
//
// Close blocks the caller for at most about drainTimeout + 50 ms. An unknown
// mode closes gracefully and returns an error naming it.
func Close(c *net.TCPConn, mode config.CloseMode, drainTimeout time.Duration) error {
	if c == nil {
		return ErrNilConn
	}
	switch mode {
	case config.CloseGraceful, "":
		return c.Close()
	case config.CloseReset:
		return resetClose(c)
	case config.CloseDrainReset:
		drainErr := drain(c, drainTimeout)
		if err := resetClose(c); err != nil {
			return errors.Join(drainErr, err)
		}
		return drainErr
	default:
		return errors.Join(fmt.Errorf("sockopt: unknown close mode %q, closed gracefully", mode), c.Close())
	}
}

// resetClose sets SO_LINGER {1, 0} and closes: the kernel sends RST and
// frees the socket without TIME_WAIT. c is closed even when setting the
// option fails.
func resetClose(c *net.TCPConn) error {
	err := connControl(c, func(fd int) error {
		if err := unix.SetsockoptLinger(fd, unix.SOL_SOCKET, unix.SO_LINGER, &unix.Linger{Onoff: 1, Linger: 0}); err != nil {
			return fmt.Errorf("sockopt: set SO_LINGER={1,0}: %w", err)
		}
		return nil
	})
	if cerr := c.Close(); err == nil {
		err = cerr
	}
	return err
}

// drain waits until c's send queue is acknowledged, the connection can no
// longer deliver (CLOSE), or timeout has passed. It sleeps between polls
// with a growing interval and never waits past the deadline.
func drain(c *net.TCPConn, timeout time.Duration) error {
	deadline := time.Now().Add(timeout)
	wait := drainFirstWait
	for {
		queued, st, err := sendQueue(c)
		if err != nil {
			return err
		}
		if queued == 0 {
			return nil
		}
		if st == StateClosed { // reset by the peer or timed out: nothing will be acked
			return fmt.Errorf("sockopt: drain-reset: connection %v with %d bytes unacknowledged: %w", st, queued, ErrUndelivered)
		}
		left := time.Until(deadline)
		if left <= 0 {
			return fmt.Errorf("sockopt: drain-reset: %d bytes unacknowledged after %v: %w", queued, timeout, ErrUndelivered)
		}
		time.Sleep(min(wait, left))
		wait = min(2*wait, drainMaxWait)
	}
}

// sendQueue returns SIOCOUTQ and, when that is not zero, the TCP state.
func sendQueue(c *net.TCPConn) (queued int, st State, err error) {
	err = connControl(c, func(fd int) error {
		n, err := unix.IoctlGetInt(fd, unix.SIOCOUTQ)
		if err != nil {
			return fmt.Errorf("sockopt: ioctl SIOCOUTQ: %w", err)
		}
		queued = n
		if n == 0 {
			return nil
		}
		ti, err := unix.GetsockoptTCPInfo(fd, unix.IPPROTO_TCP, unix.TCP_INFO)
		if err != nil {
			return fmt.Errorf("sockopt: get TCP_INFO: %w", err)
		}
		st = State(ti.State)
		return nil
	})
	return queued, st, err
}
