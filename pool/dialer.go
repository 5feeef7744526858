package pool

import (
	"context"
	"crypto/tls"
	"errors"
	"fmt"
	"net"
	"net/netip"
	"slices"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	"go.uber.org/zap"

	"github.com/tetherproxy/tether/config"
	"github.com/tetherproxy/tether/sockopt"
)

// Preconnect dial backoff per member and stock after a failed dial: 250 ms,
// doubling, at most 10 s; reset by a successful dial or the member coming up.
const (
	preconnectBackoffMin = 250 * time.Millisecond
	preconnectBackoffMax = 10 * time.Second
)

// defaultPruneInterval is how often idle preconnected conns are checked for
// staleness when the pool has no health interval to follow.
const defaultPruneInterval = 2 * time.Second

// Dialer connects virtual servers that share one server-side TCP profile to
// the pool's members, and keeps their preconnect stock. Get one with
// Pool.Dialer. Its methods are safe for concurrent use.
type Dialer struct {
	pool    *Pool
	profile config.TCPProfile
	nd      *net.Dialer
	wake    chan struct{} // cap 1: "look at the stock again"

	mu     sync.Mutex
	stock  []memberStock // by member index
	closed bool          // set by Pool.Close: nothing enters the stock any more
}

// memberStock is one member's share of a Dialer's preconnect stock.
type memberStock struct {
	idle     []stockConn // established, unused; newest last (handed out first)
	pending  int         // preconnect dials in flight
	failures int         // consecutive failed preconnect dials
	retryAt  time.Time   // no preconnect dial before this
}

// stockConn is a preconnected conn: TCP, and TLS over it with pool TLS.
type stockConn struct {
	tcp *net.TCPConn
	tls *tls.Conn
}

func newDialer(p *Pool, profile config.TCPProfile) *Dialer {
	return &Dialer{
		pool:    p,
		profile: profile,
		nd:      sockopt.Dialer(profile, p.cfg.ConnectTimeout),
		wake:    make(chan struct{}, 1),
		stock:   make([]memberStock, len(p.members)),
	}
}

// Profile returns the server-side profile the Dialer dials with.
func (d *Dialer) Profile() config.TCPProfile { return d.profile }

// Idle returns how many preconnected idle conns the Dialer holds for m.
func (d *Dialer) Idle(m *Member) int {
	d.mu.Lock()
	defer d.mu.Unlock()
	return len(d.stock[m.index].idle)
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

// Release gives the conn's slot back to its member (Active drops by one).
// Call it once after closing TCP; further calls do nothing.
func (c *Conn) Release() {
	if !c.released.CompareAndSwap(false, true) {
		return
	}
	c.Member.release()
	if c.Member.maxConns > 0 {
		c.Member.pool.wakeFillers() // a stock held back by the limit may refill
	}
}

// Connect returns a conn to a member picked by the pool's balancer
// (clientAddr feeds source-hash; it may be nil). A preconnected conn of that
// member is handed over if one passes the stale check (stale ones are closed
// and counted, never handed out); otherwise the member is dialed with the
// Dialer's profile. A failed dial counts against the member's health (type
// tcp) and the next member is tried: each member at most once, at most
// 1+connect_retries dials, all bounded by ctx.
//
// With no member up and enabled it returns an error wrapping ErrNoMember at
// once (ErrMemberLimit when members are up but all at max_connections).
// When every dial failed the error names the members tried and wraps the
// last dial error.
func (d *Dialer) Connect(ctx context.Context, clientAddr net.Addr) (*Conn, error) {
	p := d.pool
	client := addrIP(clientAddr)
	var triedBuf, candBuf [8]*Member
	tried := triedBuf[:0]
	var failed []string
	var lastErr error
	maxAttempts := 1 + max(p.cfg.ConnectRetries, 0)
	for attempts := 0; attempts < maxAttempts; {
		if err := ctx.Err(); err != nil {
			if lastErr == nil {
				lastErr = err
			}
			break
		}
		cands, limited := d.candidates(candBuf[:0], tried)
		if len(cands) == 0 {
			if lastErr != nil {
				break
			}
			if limited {
				return nil, fmt.Errorf("pool %q: %w", p.cfg.Name, ErrMemberLimit)
			}
			return nil, fmt.Errorf("pool %q: %w", p.cfg.Name, ErrNoMember)
		}
		m := p.bal.pick(cands, client)
		tried = append(tried, m)
		if c := d.takeIdle(m); c != nil {
			return c, nil
		}
		if !m.tryAcquire() {
			continue // reached its limit since candidates ran: not an attempt
		}
		attempts++
		c, tc, took, memberFault, err := d.dial(ctx, m)
		if err == nil {
			p.observe(m, nil, "connect")
			return &Conn{TCP: c, TLS: tc, Member: m, ConnectTime: took}, nil
		}
		m.release()
		lastErr = err
		failed = append(failed, m.addr)
		if ctx.Err() != nil {
			break
		}
		if memberFault {
			p.observe(m, err, "connect")
		}
	}
	if len(failed) == 0 {
		return nil, fmt.Errorf("pool %q: %w", p.cfg.Name, lastErr)
	}
	return nil, fmt.Errorf("pool %q: connect failed (tried %s): %w", p.cfg.Name, strings.Join(failed, ", "), lastErr)
}

// candidates appends to buf the members Connect may pick: up, enabled, not
// in tried, and with room under max_connections or a preconnected conn in
// stock. limited reports that a member was left out only for its limit.
func (d *Dialer) candidates(buf, tried []*Member) (cands []*Member, limited bool) {
	stocked := d.pool.cfg.Preconnect > 0
	if stocked {
		d.mu.Lock()
		defer d.mu.Unlock()
	}
	for _, m := range d.pool.members {
		if !m.eligible() || slices.Contains(tried, m) {
			continue
		}
		if !m.hasRoom() && (!stocked || len(d.stock[m.index].idle) == 0) {
			limited = true
			continue
		}
		buf = append(buf, m)
	}
	return buf, limited
}

// takeIdle hands out m's newest preconnected conn that passes the stale
// check, closing (RST) and counting the stale ones it meets. It returns nil
// when m has none left.
func (d *Dialer) takeIdle(m *Member) *Conn {
	if d.pool.cfg.Preconnect <= 0 {
		return nil
	}
	for {
		d.mu.Lock()
		s := &d.stock[m.index]
		n := len(s.idle)
		if n == 0 {
			d.mu.Unlock()
			return nil
		}
		c := s.idle[n-1]
		s.idle[n-1] = stockConn{}
		s.idle = s.idle[:n-1]
		m.idle.Add(-1)
		d.mu.Unlock()
		d.kick() // refill

		if err := aliveTLS(c.tcp, c.tls); err != nil {
			d.dropStale(m, c.tcp, err)
			continue
		}
		m.preconnectHits.Add(1)
		return &Conn{TCP: c.tcp, TLS: c.tls, Member: m, Preconnected: true}
	}
}

// dropStale closes (RST) an idle conn that failed the stale check, counts
// and logs it. The conn must already be out of the stock.
func (d *Dialer) dropStale(m *Member, c *net.TCPConn, err error) {
	m.staleDropped.Add(1)
	if ce := d.pool.log.Check(zap.InfoLevel, "stale preconnected conn dropped"); ce != nil {
		ce.Write(zap.String("member", m.addr), zap.String("profile", d.profile.Name), zap.Error(err))
	}
	_ = sockopt.Close(c, config.CloseReset, 0) // no TIME_WAIT; the conn is dead anyway
	m.release()
}

// dial connects to m with the Dialer's profile, then runs the TLS
// handshake when the pool speaks TLS (tc is nil otherwise; took covers
// both). memberFault is false when the failure was tether's (applying the
// profile), which must not count against the member's health; a failed
// handshake (a certificate that does not verify, a member that does not
// speak TLS) is the member's.
func (d *Dialer) dial(ctx context.Context, m *Member) (c *net.TCPConn, tc *tls.Conn, took time.Duration, memberFault bool, err error) {
	start := time.Now()
	nc, err := d.nd.DialContext(ctx, "tcp", m.addr)
	if err != nil {
		if ctx.Err() == nil {
			m.connectFailures.Add(1)
		}
		return nil, nil, 0, true, err
	}
	c = nc.(*net.TCPConn)
	if err := sockopt.Apply(c, d.profile); err != nil {
		_ = sockopt.Close(c, config.CloseReset, 0)
		return nil, nil, 0, false, fmt.Errorf("member %s: profile %q: %w", m.addr, d.profile.Name, err)
	}
	if m.tls != nil {
		if tc, _, err = d.pool.handshake(ctx, m, c); err != nil {
			_ = sockopt.Close(c, config.CloseReset, 0)
			if ctx.Err() == nil {
				m.connectFailures.Add(1)
				m.handshakeFailures.Add(1)
			}
			return nil, nil, 0, true, err
		}
	}
	m.connects.Add(1)
	return c, tc, time.Since(start), true, nil
}

// kick wakes the filler without blocking; one pending wake is enough.
func (d *Dialer) kick() {
	select {
	case d.wake <- struct{}{}:
	default:
	}
}

// resetBackoff lets the filler dial m again at once (m just came up).
func (d *Dialer) resetBackoff(m *Member) {
	d.mu.Lock()
	s := &d.stock[m.index]
	s.failures, s.retryAt = 0, time.Time{}
	d.mu.Unlock()
}

// startLocked starts the filler when preconnect is on. p.mu is held.
func (d *Dialer) startLocked() {
	if d.pool.cfg.Preconnect <= 0 {
		return
	}
	d.pool.wg.Add(1)
	go d.fill()
}

// fill keeps the Dialer's preconnect stock: on every wake (a conn taken, a
// member up or down, a slot freed, a dial done), on every backoff expiry,
// and after each periodic stale check it brings every member's share back
// to target. It stops when the pool closes.
func (d *Dialer) fill() {
	defer d.pool.wg.Done()
	ctx := d.pool.ctx
	every := d.pool.cfg.Health.Interval
	if every <= 0 {
		every = defaultPruneInterval
	}
	prune := time.NewTicker(every)
	defer prune.Stop()
	retry := time.NewTimer(time.Hour)
	retry.Stop()
	defer retry.Stop()
	for {
		if next := d.reconcile(ctx); !next.IsZero() {
			retry.Reset(time.Until(next))
		}
		select {
		case <-ctx.Done():
			return
		case <-d.wake:
		case <-retry.C:
		case <-prune.C:
			d.pruneStale()
		}
	}
}

// reconcile compares the stock with its targets: members not up+enabled
// lose their idle conns; of k eligible members the i-th (in pool order)
// targets Preconnect/k, plus one when i < Preconnect%k; a member above
// target closes its oldest idle conns, one below starts dials (never beyond
// its max_connections, not before its backoff ends). It returns the
// earliest backoff end still pending, or the zero time.
func (d *Dialer) reconcile(ctx context.Context) (next time.Time) {
	p := d.pool
	total := p.cfg.Preconnect
	now := time.Now()
	type dropped struct {
		m *Member
		c *net.TCPConn
	}
	var drop []dropped
	var dials []*Member

	d.mu.Lock()
	if d.closed {
		d.mu.Unlock()
		return time.Time{}
	}
	k := 0
	for _, m := range p.members {
		if m.eligible() {
			k++
		}
	}
	rank := 0
	for i, m := range p.members {
		s := &d.stock[i]
		if !m.eligible() {
			for j, c := range s.idle {
				drop = append(drop, dropped{m, c.tcp})
				s.idle[j] = stockConn{}
			}
			m.idle.Add(-int64(len(s.idle)))
			s.idle = s.idle[:0]
			continue
		}
		share := total / k
		if rank < total%k {
			share++
		}
		rank++
		for len(s.idle) > 0 && len(s.idle)+s.pending > share {
			drop = append(drop, dropped{m, s.idle[0].tcp})
			s.idle = slices.Delete(s.idle, 0, 1)
			m.idle.Add(-1)
		}
		if now.Before(s.retryAt) {
			if next.IsZero() || s.retryAt.Before(next) {
				next = s.retryAt
			}
			continue
		}
		for n := len(s.idle) + s.pending; n < share && m.tryAcquire(); n++ {
			s.pending++
			dials = append(dials, m)
		}
	}
	d.mu.Unlock()

	for _, x := range drop {
		_ = sockopt.Close(x.c, config.CloseReset, 0) // RST: no TIME_WAIT
		x.m.release()
	}
	for _, m := range dials {
		p.wg.Add(1) // fill itself is counted, so the count is > 0 here
		go d.preconnect(ctx, m)
	}
	return next
}

// preconnect dials one conn for m's stock; the slot was reserved by
// reconcile.
func (d *Dialer) preconnect(ctx context.Context, m *Member) {
	defer d.pool.wg.Done()
	defer d.kick()
	c, tc, _, memberFault, err := d.dial(ctx, m)

	d.mu.Lock()
	s := &d.stock[m.index]
	s.pending--
	if err != nil {
		if ctx.Err() == nil {
			s.failures++
			s.retryAt = time.Now().Add(backoff(s.failures))
		}
		d.mu.Unlock()
		m.release()
		if ctx.Err() != nil {
			return
		}
		if ce := d.pool.log.Check(zap.DebugLevel, "preconnect failed"); ce != nil {
			ce.Write(zap.String("member", m.addr), zap.String("profile", d.profile.Name), zap.Error(err))
		}
		if memberFault {
			d.pool.observe(m, err, "preconnect")
		}
		return
	}
	if d.closed || ctx.Err() != nil || !m.eligible() {
		d.mu.Unlock()
		_ = sockopt.Close(c, config.CloseReset, 0)
		m.release()
		return
	}
	s.failures, s.retryAt = 0, time.Time{}
	s.idle = append(s.idle, stockConn{c, tc})
	m.idle.Add(1)
	d.mu.Unlock()
	d.pool.observe(m, nil, "preconnect")
}

// pruneStale runs the stale check on every idle conn and drops the stale
// ones, so a member closing idle conns does not leave the stock short until
// a client finds out.
func (d *Dialer) pruneStale() {
	type stale struct {
		m   *Member
		c   *net.TCPConn
		err error
	}
	var found []stale
	d.mu.Lock()
	for i, m := range d.pool.members {
		s := &d.stock[i]
		keep := s.idle[:0]
		for _, c := range s.idle {
			// A peek only: the conn stays in the stock, where Connect
			// may take it at any moment, so TLS records are not read
			// here (takeIdle does that for the conn it takes); with the
			// member's FIN in too, it is stale.
			if err := sockopt.Alive(c.tcp); err != nil && (c.tls == nil || !errors.Is(err, sockopt.ErrStaleData) || peerClosed(c.tcp)) {
				found = append(found, stale{m, c.tcp, err})
				m.idle.Add(-1)
				continue
			}
			keep = append(keep, c)
		}
		clear(s.idle[len(keep):])
		s.idle = keep
	}
	d.mu.Unlock()
	for _, x := range found {
		d.dropStale(x.m, x.c, x.err)
	}
}

// closeStock closes every idle conn with RST and stops the stock from
// taking more. Pool.Close calls it after the fillers stopped.
func (d *Dialer) closeStock() {
	d.mu.Lock()
	d.closed = true
	var conns []*net.TCPConn
	var owners []*Member
	for i, m := range d.pool.members {
		s := &d.stock[i]
		for _, c := range s.idle {
			conns = append(conns, c.tcp)
			owners = append(owners, m)
		}
		m.idle.Add(-int64(len(s.idle)))
		clear(s.idle)
		s.idle = nil
	}
	d.mu.Unlock()
	for i, c := range conns {
		_ = sockopt.Close(c, config.CloseReset, 0)
		owners[i].release()
	}
}

func backoff(failures int) time.Duration {
	b := preconnectBackoffMin << min(failures-1, 10)
	return min(b, preconnectBackoffMax)
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
