package pool

import (
	"context"
	"crypto/tls"
	"errors"
	"fmt"
	"net"
	"net/netip"
	"sync/atomic"
	"syscall"
	"time"

	"github.com/tetherproxy/tether/config"
	"github.com/tetherproxy/tether/sockopt"
)

// Dialer connects virtual servers that share one server-side TCP profile to
// the pool's members. It owns the profile's tcp preconnect stock (a
// ConnPool) and is what every ConnPool of the profile dials with. Get one
// with Pool.Dialer. Its methods are safe for concurrent use.
type Dialer struct {
	pool    *Pool
	profile config.TCPProfile
	nd      *net.Dialer
	stock   *ConnPool // tcp preconnect: used once each; Connect lends from it
}

func newDialer(p *Pool, profile config.TCPProfile) *Dialer {
	d := &Dialer{
		pool:    p,
		profile: profile,
		nd:      sockopt.Dialer(profile, p.cfg.ConnectTimeout),
	}
	d.stock = newStock(d)
	return d
}

// Profile returns the server-side profile the Dialer dials with.
func (d *Dialer) Profile() config.TCPProfile { return d.profile }

// Idle returns how many preconnected idle conns the Dialer holds for m.
func (d *Dialer) Idle(m *Member) int { return d.stock.Idle(m) }

// startLocked starts the preconnect filler when preconnect is on. p.mu is
// held.
func (d *Dialer) startLocked() {
	if d.stock.fills {
		d.stock.start()
	}
}

// Conn is a server-side connection handed out by Connect. The caller owns
// TCP: it relays on it directly and closes it with the profile's close mode,
// then calls Release once.
type Conn struct {
	// TCP is the member conn; never wrapped, so splice works.
	TCP *net.TCPConn
	// TLS runs over TCP when the pool speaks TLS to its members (SetTLS);
	// nil otherwise. Relay through it; socket options and deadlines
	// still go to TCP.
	TLS *tls.Conn
	// Member is the member TCP is connected to.
	Member *Member
	// Preconnected is true when TCP came from the preconnect stock.
	Preconnected bool
	// ConnectTime is how long the dial took (0 for a preconnected conn).
	ConnectTime time.Duration

	released atomic.Bool
}

// Release gives the conn's slot back to its member (Active drops by one),
// which may let a stock held back by max_connections refill. Call it once
// after closing TCP; further calls do nothing.
func (c *Conn) Release() {
	if c.released.CompareAndSwap(false, true) {
		c.Member.release()
	}
}

// Connect returns a conn to a member picked by the pool's balancer
// (clientAddr feeds source-hash; it may be nil). It is Get on the
// Dialer's preconnect stock, whose conns are never returned: a
// preconnected conn of the picked member is handed over if one passes the
// stale check (stale ones are closed and counted, never handed out);
// otherwise the member is dialed with the Dialer's profile. A failed dial
// counts against the member's health (type tcp) and the next member is
// tried: each member at most once, at most 1+connect_retries dials, all
// bounded by ctx.
//
// With no member up and enabled it returns an error wrapping ErrNoMember at
// once (ErrMemberLimit when members are up but all at max_connections).
// When every dial failed the error names the members tried and wraps the
// last dial error.
func (d *Dialer) Connect(ctx context.Context, clientAddr net.Addr) (*Conn, error) {
	sc, err := d.stock.Get(ctx, clientAddr)
	if err != nil {
		return nil, err
	}
	c := &Conn{TCP: sc.TCP, TLS: sc.TLS, Member: sc.Member, Preconnected: sc.Reused}
	if !sc.Reused {
		c.ConnectTime = sc.dialTook
	}
	return c, nil
}

// dialed is a fresh conn to a member: TCP, and TLS over it when the pool
// speaks TLS. took covers the connect and the handshake.
type dialed struct {
	tcp  *net.TCPConn
	tls  *tls.Conn
	took time.Duration
}

// profileError is a failure to apply the server profile to a fresh conn:
// tether's fault, not the member's, so passive health ignores it.
type profileError struct{ err error }

func (e profileError) Error() string { return e.err.Error() }
func (e profileError) Unwrap() error { return e.err }

// shortageError is a dial that failed because tether ran out of something
// of its own (file descriptors, local ports, socket memory): the member was
// never asked, so no health check or passive health counts it against the
// member. Its text says what ran out in an operator's words.
type shortageError struct {
	what string
	err  error
}

func (e shortageError) Error() string { return e.what + ": " + e.err.Error() }
func (e shortageError) Unwrap() error { return e.err }

// shortage wraps a dial error toward addr that is tether's own shortage in
// a shortageError; other errors are returned as they are.
func shortage(err error, addr string) error {
	var what string
	switch {
	case errors.Is(err, syscall.EADDRNOTAVAIL):
		what = "no local port free toward " + addr + " (every port of net.ipv4.ip_local_port_range is held by an open or TIME_WAIT connection)"
	case errors.Is(err, syscall.EMFILE):
		what = "tether is out of file descriptors (RLIMIT_NOFILE)"
	case errors.Is(err, syscall.ENFILE):
		what = "the system is out of file descriptors (fs.file-max)"
	case errors.Is(err, syscall.ENOBUFS), errors.Is(err, syscall.ENOMEM):
		what = "the kernel is out of memory for sockets"
	default:
		return err
	}
	return shortageError{what, err}
}

// memberFault reports whether a dial error counts against the member.
func memberFault(err error) bool {
	var pe profileError
	var se shortageError
	return !errors.As(err, &pe) && !errors.As(err, &se)
}

// dial connects to m with the Dialer's profile, then runs the TLS
// handshake when the pool speaks TLS. A failure to apply the profile is a
// profileError; a failed handshake (a certificate that does not verify, a
// member that does not speak TLS) is the member's, like a refused connect.
// Failures are counted on m unless ctx ended.
func (d *Dialer) dial(ctx context.Context, m *Member) (dialed, error) {
	start := time.Now()
	nc, err := d.nd.DialContext(ctx, "tcp", m.addr)
	if err != nil {
		err = shortage(err, m.addr)
		if ctx.Err() == nil {
			m.connectFailures.Add(1)
		}
		return dialed{}, err
	}
	c := nc.(*net.TCPConn)
	if err := sockopt.Finish(c, &d.profile); err != nil {
		_ = sockopt.Close(c, config.CloseReset, 0)
		return dialed{}, profileError{fmt.Errorf("member %s: profile %q: %w", m.addr, d.profile.Name, err)}
	}
	var tc *tls.Conn
	if m.tls != nil {
		if tc, _, err = d.pool.handshake(ctx, m, c); err != nil {
			_ = sockopt.Close(c, config.CloseReset, 0)
			if ctx.Err() == nil {
				m.connectFailures.Add(1)
				m.handshakeFailures.Add(1)
			}
			return dialed{}, err
		}
	}
	took := time.Since(start)
	m.connects.Add(1)
	m.connectTimes.observe(took)
	return dialed{tcp: c, tls: tc, took: took}, nil
}

// addrIP returns the IP of a client address, or the zero Addr.
func addrIP(a net.Addr) netip.Addr {
	switch a := a.(type) {
	case nil:
		return netip.Addr{}
	case *net.TCPAddr:
		ip, _ := netip.AddrFromSlice(a.IP)
		return ip.Unmap()
	}
	ap, err := netip.ParseAddrPort(a.String())
	if err != nil {
		return netip.Addr{}
	}
	return ap.Addr().Unmap()
}
