package pool

import (
	"crypto/tls"
	"math/rand/v2"
	"net"
	"sync/atomic"
	"syscall"
	"time"
)

// serverConnIDs numbers server conns process-wide, for access logs.
var serverConnIDs atomic.Uint64

// ServerConn is a member conn held by a ConnPool: idle in a member's stack,
// or lent by Get for one request/response exchange. The caller reads and
// writes TCP directly (never closes it) and gives the conn back exactly
// once with Put or Discard; after that it must not touch it. Its methods
// are for the one goroutine holding it.
type ServerConn struct {
	// TCP is the member conn's socket: options, deadlines, the stale check.
	TCP *net.TCPConn
	// TLS runs over TCP when the pool speaks TLS to its members; nil
	// otherwise.
	TLS *tls.Conn
	// Conn is what the exchange reads and writes: TLS when set, else TCP.
	Conn net.Conn
	// Member is the member TCP is connected to.
	Member *Member
	// ID is unique per server-side conn in the process (access logs).
	ID uint64
	// Reused is true when the conn came from an idle stack (it carried an
	// earlier exchange or was dialed ahead by the filler) or was handed
	// over by a Put.
	Reused bool
	// Requests is how many requests the conn carried before this one.
	Requests int
	// Created is when the conn was dialed.
	Created time.Time

	p         *ConnPool
	raw       syscall.RawConn // TCP's, once asked for (RawConn)
	dialTook  time.Duration   // how long the dial (and TLS handshake) took
	expires   time.Time       // retire from then on (jittered MaxAge); zero = never
	maxReq    int             // total requests allowed (MaxRequests, learnt max); 0 = no limit
	idleLimit time.Duration   // longest idle period; < 0 = no limit
	kaTimeout time.Duration   // learnt Keep-Alive timeout; 0 = none learnt
	idleSrc   IdleSource      // where idleLimit comes from
	idleSince time.Time       // when it last went idle
	takenIdle time.Duration   // how long it had idled when Get took it off its stack; 0 = not taken from idle
	takenAt   time.Time       // when Get took it off its stack
	idleUntil time.Time       // when idle: expiry; zero = never
	retiring  bool            // Retire returned true: the member was told to close
	memberEnd bool            // ExpectMemberClose: the member said it closes
	out       bool            // lent out: between Get and Put/Discard
}

// newConn wraps a fresh conn to m dialed at now, lent out, with the
// ConnPool's limits.
func (p *ConnPool) newConn(d dialed, m *Member, now time.Time) *ServerConn {
	c := &ServerConn{
		TCP:       d.tcp,
		TLS:       d.tls,
		Conn:      d.tcp,
		Member:    m,
		ID:        serverConnIDs.Add(1),
		Created:   now,
		p:         p,
		dialTook:  d.took,
		maxReq:    p.cfg.MaxRequests,
		idleLimit: -1,
		out:       true,
	}
	if d.tls != nil {
		c.Conn = d.tls
	}
	if p.cfg.IdleTimeout > 0 {
		c.idleLimit = p.cfg.IdleTimeout
	}
	if p.cfg.MaxAge > 0 {
		age := p.cfg.MaxAge
		if p.cfg.AgeJitter > 0 {
			age -= time.Duration(rand.Float64() * p.cfg.AgeJitter * float64(age))
		}
		c.expires = now.Add(age)
	}
	return c
}

// Retire reports whether this exchange must be the conn's last: its
// MaxRequests (or learnt Keep-Alive max) is reached with this request, its
// MaxAge has passed, its member is disabled or down, or the ConnPool is
// closing. Call it once per request before sending the request head: when
// it returns true, send `Connection: close` so the member closes first and
// the TIME_WAIT lands on the member; Put then waits for the member's FIN.
// Once true it stays true.
func (c *ServerConn) Retire() bool {
	if !c.retiring && c.retireDue(time.Now()) {
		c.retiring = true
	}
	return c.retiring
}

// retireDue reports whether the current request (number Requests+1) must be
// the conn's last.
func (c *ServerConn) retireDue(now time.Time) bool {
	return (c.maxReq > 0 && c.Requests+1 >= c.maxReq) || c.expired(now) ||
		!c.Member.eligible() || c.p.closing.Load()
}

// expired reports whether the conn is past its (jittered) MaxAge.
func (c *ServerConn) expired(now time.Time) bool {
	return !c.expires.IsZero() && !now.Before(c.expires)
}

// ExpectMemberClose records that the member announced it closes the conn
// after this response (`Connection: close`, or an HTTP/1.0 response without
// keep-alive): Put then waits for its FIN instead of closing first.
func (c *ServerConn) ExpectMemberClose() { c.memberEnd = true }

// LearnKeepAlive records the member's `Keep-Alive: timeout=T, max=M` from
// the current response. The conn then idles at most min(T - margin, 90% of
// T), never below 0 (0 means it is not kept idle at all), and carries at
// most M more requests after this one. T <= 0 or M <= 0 means that
// parameter was absent (a member that allows no more requests sends
// `Connection: close`). Limits only ever shrink. Counted as KeepAliveLearnt.
func (c *ServerConn) LearnKeepAlive(timeout time.Duration, max int) {
	if timeout > 0 {
		limit := max0(min(timeout-c.p.cfg.KeepaliveMargin, timeout/10*9))
		if c.idleLimit < 0 || limit < c.idleLimit {
			c.idleLimit, c.idleSrc = limit, IdleAnnounced
		}
		c.kaTimeout = timeout
		c.Member.learn.announced.Store(int64(timeout))
	}
	if max > 0 {
		if n := c.Requests + 1 + max; c.maxReq == 0 || n < c.maxReq {
			c.maxReq = n
		}
	}
	c.p.mc(c.Member.index).counters.keepAliveLearnt.Add(1)
}

func max0(d time.Duration) time.Duration {
	if d < 0 {
		return 0
	}
	return d
}

// IdleSource says where the idle limit of a member conn comes from.
type IdleSource uint8

// Idle limit sources.
const (
	// IdleConfigured: the pool's idle_timeout (0 there: no limit).
	IdleConfigured IdleSource = iota
	// IdleAnnounced: the member's `Keep-Alive: timeout=N`, less
	// keepalive_margin (and at most 90% of N).
	IdleAnnounced
	// IdleLearnt: learnt from the idle conns the member closed
	// unannounced, less a tenth (at least 5 ms, at most keepalive_margin).
	IdleLearnt
)

// String returns "configured", "announced" or "learnt".
func (s IdleSource) String() string {
	switch s {
	case IdleAnnounced:
		return "announced"
	case IdleLearnt:
		return "learnt"
	}
	return "configured"
}

// IdleLimit returns how long the conn may idle in the pool after this
// exchange as things stand (the shortest of idle_timeout, an announced
// Keep-Alive timeout and its member's learnt one) and which of them it
// is. -1 means no limit; 0 means the conn is not kept idle.
func (c *ServerConn) IdleLimit() (time.Duration, IdleSource) { return c.p.idleLimit(c, time.Now()) }

// idleLimit is IdleLimit at now.
func (p *ConnPool) idleLimit(c *ServerConn, now time.Time) (time.Duration, IdleSource) {
	if l := p.memberLimit(c.Member, now); l >= 0 && (c.idleLimit < 0 || l < c.idleLimit) {
		return l, IdleLearnt
	}
	return c.idleLimit, c.idleSrc
}

// memberLimit is the idle limit learnt for m at now (its learnt timeout
// less a margin), or -1: none learnt, or a preconnect stock (whose conns
// never carried a request; the member's timeout for those may differ).
func (p *ConnPool) memberLimit(m *Member, now time.Time) time.Duration {
	if p.stock {
		return -1
	}
	return learntLimit(m.learn.Timeout(now), p.cfg.KeepaliveMargin)
}

// idleDeadline is when the idle conn c must be closed given its member's
// learnt limit (memberLimit): the earlier of its own deadline and
// idleSince + learnt; zero = never.
func (c *ServerConn) idleDeadline(learnt time.Duration) time.Time {
	at := c.idleUntil
	if learnt >= 0 {
		if l := c.idleSince.Add(learnt); at.IsZero() || l.Before(at) {
			at = l
		}
	}
	return at
}

// RawConn is TCP's syscall.RawConn, made once per conn (each SyscallConn
// call allocates one).
func (c *ServerConn) RawConn() (syscall.RawConn, error) {
	if c.raw == nil {
		rc, err := c.TCP.SyscallConn()
		if err != nil {
			return nil, err
		}
		c.raw = rc
	}
	return c.raw, nil
}

// Alive is the stale check of a conn the caller holds (lent out or kept
// per client): the peek, and over TLS a read of records the member sent
// unasked. Get runs the same check before it lends an idle conn.
func (c *ServerConn) Alive() error { return aliveTLS(c.TCP, c.TLS) }
