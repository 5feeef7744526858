package pool

import (
	"context"
	"crypto/tls"
	"errors"
	"fmt"
	"net"
	"os"
	"time"

	"github.com/tetherproxy/tether/sockopt"
)

// SetTLS makes every connection to the members TLS (F5's server SSL
// profile): perMember returns the client config for a member address (its
// ServerName set), and handshakeTimeout bounds each handshake after the TCP
// connect. Health checks of type http speak TLS too; type tcp stays a bare
// connect. Call it before Start.
func (p *Pool) SetTLS(perMember func(addr string) *tls.Config, handshakeTimeout time.Duration) {
	p.mu.Lock()
	defer p.mu.Unlock()
	p.tlsFor = perMember
	for _, m := range p.all() {
		m.tls = perMember(m.addr)
	}
	p.tlsTimeout = handshakeTimeout
}

// TLS reports whether the pool speaks TLS to its members.
func (p *Pool) TLS() bool { return p.tlsFor != nil }

// handshake runs the TLS client handshake on a fresh conn to m, bounded by
// the pool's handshake timeout and ctx. On failure the caller closes c.
func (p *Pool) handshake(ctx context.Context, m *Member, c *net.TCPConn) (*tls.Conn, time.Duration, error) {
	start := time.Now()
	tc := tls.Client(c, m.tls)
	if p.tlsTimeout > 0 {
		var cancel context.CancelFunc
		ctx, cancel = context.WithTimeout(ctx, p.tlsTimeout)
		defer cancel()
	}
	if err := tc.HandshakeContext(ctx); err != nil {
		return nil, 0, fmt.Errorf("member %s: TLS handshake: %w", m.addr, err)
	}
	m.handshakes.Add(1)
	return tc, time.Since(start), nil
}

// aliveTLS is the stale check of an idle TLS conn. Bytes waiting on the
// socket may be TLS records the member sent unasked (TLS 1.3 session
// tickets after the handshake, a key update): they are read through TLS,
// without waiting, and the conn is healthy when no application byte came
// with them. A close_notify or application data makes it stale. Only the
// conn's owner may call it: it reads (the stale check of a plain conn only
// peeks).
//
// What crypto/tls already holds is checked first: bytes it decrypted past
// the last response (sent in the same record) or a close_notify it read
// with it are no longer on the socket, where the peek would see them.
func aliveTLS(c *net.TCPConn, tc *tls.Conn) error {
	if tc != nil {
		// A past deadline: Read returns what is buffered without a system
		// call, else it times out at once (not sticky in crypto/tls).
		if err := readTLS(tc, time.Unix(1, 0)); err != nil {
			return err
		}
	}
	for range 4 {
		err := sockopt.Alive(c)
		if tc == nil || !errors.Is(err, sockopt.ErrStaleData) {
			return err
		}
		// The records are in the socket buffer: a read returns at once
		// after them, and the deadline only ends the wait for more.
		if err := readTLS(tc, time.Now().Add(time.Millisecond)); err != nil {
			return err
		}
	}
	return sockopt.Alive(c)
}

// readTLS reads through tc until deadline, which processes the records
// waiting (session tickets, key updates). An application byte returns
// ErrStaleData, an error other than the deadline ErrStale wrapping it;
// records without data return nil.
func readTLS(tc *tls.Conn, deadline time.Time) error {
	_ = tc.SetReadDeadline(deadline)
	var b [1]byte
	n, err := tc.Read(b[:])
	_ = tc.SetReadDeadline(time.Time{})
	switch {
	case n > 0:
		return sockopt.ErrStaleData
	case err == nil || errors.Is(err, os.ErrDeadlineExceeded):
		return nil
	}
	return fmt.Errorf("%w: %w", sockopt.ErrStale, err)
}

// peerClosed reports whether the peer sent its FIN (the socket is in
// CLOSE_WAIT): a check that reads nothing, so anyone may run it.
func peerClosed(c *net.TCPConn) bool {
	info, err := sockopt.GetInfo(c)
	return err == nil && info.State == sockopt.StateCloseWait
}
