package pool

import (
	"context"
	"crypto/tls"
	"errors"
	"fmt"
	"io"
	"math/rand/v2"
	"net"
	"net/netip"
	"os"
	"slices"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	"go.uber.org/zap"

	"github.com/tetherproxy/tether/config"
	"github.com/tetherproxy/tether/sockopt"
)

// Server-side connection reuse (http mode; F5 OneConnect, HAProxy
// http-reuse, nginx upstream keepalive). A Reuser lends member conns to the
// http relay one request/response exchange at a time and keeps the returned
// ones idle per member. It follows net/http's Transport: idle conns are a
// stack per member (most recently used first), a Get that cannot be served
// waits in a FIFO queue, and a returned conn goes to the oldest live waiter
// before it goes idle. The race with a member closing an idle conn is closed
// from three sides: a MSG_PEEK before reuse, idle conns expiring a margin
// before the member's announced Keep-Alive timeout, and a reaper that peeks
// idle conns in the background.

// Defaults of the ReuseSettings fields whose zero value means "default".
const (
	defaultReusePeekInterval = time.Second
	defaultRetireWait        = 2 * time.Second
)

// ErrQueueTimeout is returned by Get when every member stayed at its
// max_connections for the whole QueueTimeout. It wraps ErrMemberLimit and so
// ErrNoMember: the proxy answers 503 for all three.
var ErrQueueTimeout = fmt.Errorf("%w: none freed within the queue timeout", ErrMemberLimit)

// ErrReuserClosed is returned by Get once the Reuser is closed, and to Gets
// that were queued when it closed.
var ErrReuserClosed = errors.New("pool: reuser closed")

// ReuseSettings are a virtual server's server-side reuse settings. Package
// config will fill them with its defaults; here every field's zero value
// has the meaning written on it.
type ReuseSettings struct {
	// MaxIdle is how many idle conns are kept per member. 0 = none: every
	// conn is closed after its exchange (no reuse).
	MaxIdle int
	// IdleTimeout closes an idle conn (from tether's side, with the server
	// profile's close mode) after this long unused. 0 = no limit of
	// tether's own (a learnt Keep-Alive timeout still applies).
	IdleTimeout time.Duration
	// MaxAge retires a conn this long after it was dialed, less up to
	// AgeJitter of it. 0 = no age limit.
	MaxAge time.Duration
	// AgeJitter takes a random share of up to this fraction off each conn's
	// MaxAge (0.1 = up to -10%), so a pool warmed at once does not expire at
	// once. 0 = none; must be in [0, 1).
	AgeJitter float64
	// MaxRequests retires a conn after it carried this many requests.
	// 0 = no limit (a learnt Keep-Alive max still applies).
	MaxRequests int
	// QueueTimeout is how long Get waits, queued first-in first-out, when
	// every member is at its max_connections. 0 = do not wait: Get fails at
	// once with an error wrapping ErrMemberLimit.
	QueueTimeout time.Duration
	// KeepAliveMargin: a conn whose member announced `Keep-Alive: timeout=T`
	// idles at most T - KeepAliveMargin, and at most 90% of T, so tether
	// closes it before the member does. 0 = only the 90% cap.
	KeepAliveMargin time.Duration
	// PeekInterval is how often the reaper peeks every idle conn to notice
	// a member's close while idle. 0 = 1 s.
	PeekInterval time.Duration
	// RetireWait bounds how long a retired conn (the member was told
	// `Connection: close`) waits for the member's FIN before tether closes
	// it with the profile's close mode. 0 = 2 s.
	RetireWait time.Duration
	// MinIdle is the warm pool (min_idle): per member, this many established
	// idle conns are kept even with no traffic. 0 = off. More than MaxIdle
	// is clamped to MaxIdle (so MaxIdle 0 turns it off too). The Reuser's
	// own goroutine dials them in the background (the Dialer's profile,
	// connect timeout and passive health), at start and whenever a member
	// is short: a conn was taken, idle conns expired or were found stale,
	// the member came back up or a slot freed under its max_connections,
	// which is never exceeded. A member that refuses is retried with backoff
	// (250 ms doubling to 10 s, one dial at a time), reset when a dial
	// succeeds or the member comes up. A member down or disabled loses its
	// idle conns (reaper) and gets none until it is back. Filled conns are
	// counted as Opened (and Warmed) and behave like returned ones: LIFO,
	// IdleTimeout from when they were parked, handed to a queued Get first.
	MinIdle int
}

// validate checks what config will check later, with the field names.
func (s ReuseSettings) validate() error {
	var bad []string
	neg := func(name string, d time.Duration) {
		if d < 0 {
			bad = append(bad, name+" must be >= 0")
		}
	}
	if s.MaxIdle < 0 {
		bad = append(bad, "max_idle must be >= 0")
	}
	if s.MinIdle < 0 {
		bad = append(bad, "min_idle must be >= 0")
	}
	if s.MaxRequests < 0 {
		bad = append(bad, "max_requests must be >= 0")
	}
	neg("idle_timeout", s.IdleTimeout)
	neg("max_age", s.MaxAge)
	neg("queue_timeout", s.QueueTimeout)
	neg("keepalive_margin", s.KeepAliveMargin)
	neg("peek_interval", s.PeekInterval)
	neg("retire_wait", s.RetireWait)
	if s.AgeJitter < 0 || s.AgeJitter >= 1 {
		bad = append(bad, "age_jitter must be in [0, 1)")
	}
	if len(bad) > 0 {
		return fmt.Errorf("reuse: %s", strings.Join(bad, "; "))
	}
	return nil
}

// DiscardReason says why a conn is discarded.
type DiscardReason uint8

// Discard reasons.
const (
	// DiscardFailed: the exchange failed on tether's side or the response
	// was unusable (bad framing, aborted body ...).
	DiscardFailed DiscardReason = iota
	// DiscardClosedEarly: the member closed or reset the conn before the
	// exchange was over (typically a reused conn dying on the first write
	// or before any response byte); counted as ClosedEarly.
	DiscardClosedEarly
)

// serverConnIDs numbers server conns process-wide, for access logs.
var serverConnIDs atomic.Uint64

// ServerConn is a member conn lent by Reuser.Get for one request/response
// exchange. The caller reads and writes TCP directly (never closes it) and
// gives the conn back exactly once with Put or Discard; after that it must
// not touch it. Its methods are for the one goroutine holding it.
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
	// Reused is true when the conn carried an earlier exchange (it came
	// from the idle list or was handed over by a Put).
	Reused bool
	// Requests is how many requests the conn carried before this one.
	Requests int
	// Created is when the conn was dialed.
	Created time.Time

	r         *Reuser
	expires   time.Time     // retire from then on (jittered MaxAge); zero = never
	maxReq    int           // total requests allowed (MaxRequests, learnt max); 0 = no limit
	idleLimit time.Duration // longest idle period; < 0 = no limit
	kaTimeout time.Duration // learnt Keep-Alive timeout; 0 = none learnt
	idleSince time.Time     // when it last went idle
	idleUntil time.Time     // when idle: expiry; zero = never
	retiring  bool          // Retire returned true: the member was told to close
	memberEnd bool          // ExpectMemberClose: the member said it closes
	out       bool          // lent out: between Get and Put/Discard
}

// Retire reports whether this exchange must be the conn's last: its
// MaxRequests (or learnt Keep-Alive max) is reached with this request, its
// MaxAge has passed, its member is disabled or down, or the Reuser is
// closing. Call it once per request before sending the request head: when it
// returns true, send `Connection: close` so the member closes first and the
// TIME_WAIT lands on the member; Put then waits for the member's FIN. Once
// true it stays true.
func (c *ServerConn) Retire() bool {
	if !c.retiring && c.retireDue(time.Now()) {
		c.retiring = true
	}
	return c.retiring
}

// retireDue reports whether the current request (number Requests+1) must be
// the conn's last.
func (c *ServerConn) retireDue(now time.Time) bool {
	return (c.maxReq > 0 && c.Requests+1 >= c.maxReq) ||
		(!c.expires.IsZero() && !now.Before(c.expires)) ||
		!c.Member.eligible() || c.r.closing.Load()
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
		limit := min(timeout-c.r.s.KeepAliveMargin, timeout/10*9)
		limit = max0(limit)
		if c.idleLimit < 0 || limit < c.idleLimit {
			c.idleLimit = limit
		}
		c.kaTimeout = timeout
	}
	if max > 0 {
		if n := c.Requests + 1 + max; c.maxReq == 0 || n < c.maxReq {
			c.maxReq = n
		}
	}
	c.r.counters[c.Member.index].keepAliveLearnt.Add(1)
}

func max0(d time.Duration) time.Duration {
	if d < 0 {
		return 0
	}
	return d
}

// reuseCounters are one member's counters in one Reuser.
type reuseCounters struct {
	opened, reused, retired, retiredByMember, expiredIdle, staleOnPeek,
	closedEarly, keepAliveLearnt, discarded, overflow, warmed, warmFailed counter
	replays [replayCauses]counter
}

// ReplayCause says why a request was replayed on another conn.
type ReplayCause uint8

// Replay causes (the stale peek and a failed connect need no replay: Get
// moves on before a request is sent).
const (
	// ReplayHeadUnsent: writing the request head to a reused conn failed
	// before the member had the whole head; any method is replayed.
	ReplayHeadUnsent ReplayCause = iota
	// ReplayNoResponse: a reused conn ended before any response byte; only
	// idempotent requests without a body are replayed.
	ReplayNoResponse
	replayCauses
)

// String names the cause for access logs.
func (c ReplayCause) String() string {
	if c == ReplayHeadUnsent {
		return "head-unsent"
	}
	return "no-response"
}

// NoteReplay counts a replay of a request first sent to m.
func (r *Reuser) NoteReplay(m *Member, cause ReplayCause) {
	if cause < replayCauses {
		r.counters[m.index].replays[cause].Add(1)
	}
}

// ReuseStats is a snapshot of a Reuser's counters for one member.
type ReuseStats struct {
	Address string
	Idle    int // idle conns now

	Opened               uint64 // conns dialed (by Get and by the MinIdle filler)
	Reused               uint64 // Gets served by an idle or handed-over conn
	Retired              uint64 // conns closed because Retire/ExpectMemberClose said so
	RetiredByMemberClose uint64 // of those, closed by the member first (TIME_WAIT on the member)
	ExpiredIdle          uint64 // idle conns closed by tether: idle timeout, learnt Keep-Alive cap, member disabled/down
	StaleOnPeek          uint64 // idle conns found closed/reset/with stray data by a peek (Get or reaper)
	ClosedEarly          uint64 // conns the member closed before the Keep-Alive timeout it announced, or Discard(DiscardClosedEarly)
	KeepAliveLearnt      uint64 // LearnKeepAlive calls
	Discarded            uint64 // Discard calls
	IdleOverflow         uint64 // idle conns closed because MaxIdle was reached
	Warmed               uint64 // of Opened, conns dialed by the MinIdle filler
	WarmFailed           uint64 // MinIdle filler dials that failed (each one backs the member off)

	ReplaysHeadUnsent uint64 // requests replayed elsewhere: the head never fully reached this member
	ReplaysNoResponse uint64 // idempotent requests replayed elsewhere: no response byte from this member
}

// Reuser lends member conns of one Dialer for single exchanges and keeps the
// returned ones idle per member. Build it with NewReuser; Close it before the
// Pool. Its methods are safe for concurrent use.
type Reuser struct {
	d        *Dialer
	s        ReuseSettings
	counters []reuseCounters // by member index

	nwait   atomic.Int64 // live queued Gets (mirror of the queue, for slotFreed)
	closing atomic.Bool  // Close started

	mu       sync.Mutex
	idle     [][]*ServerConn // by member index; most recently used last
	cands    []*Member       // pick scratch (mu held)
	peekBuf  []*ServerConn   // reaper scratch (reaper goroutine only)
	q        wantQueue
	retiring map[*ServerConn]struct{} // waiting for the member's FIN
	reapAt   time.Time                // when the reaper wakes next
	closed   bool

	// MinIdle filler state, by member index (r.mu); see fill.
	warm []warmState

	wake     chan struct{} // cap 1: the reaper should look at reapAt again
	fillWake chan struct{} // cap 1: the reaper should run fill (MinIdle > 0)
	stop     chan struct{} // closed by Close
	ctx      context.Context
	cancel   context.CancelFunc // cuts the filler's dials short (Close)
	wg       sync.WaitGroup
}

// warmState is the MinIdle filler's view of one member.
type warmState struct {
	pending     int       // filler dials in flight (r.mu)
	failures    int       // consecutive failed filler dials (r.mu)
	retryAt     time.Time // no filler dial before this (r.mu)
	out         bool      // seen not eligible since the last fill (r.mu)
	transitions uint64    // the member's health transitions at the last fill (r.mu)
	// blocked: the member is short of MinIdle and waits for a slot, for
	// coming back up, or for its backoff to end; slotFreed then wakes the
	// filler. Written by fill, read lock-free by slotFreed.
	blocked atomic.Bool
}

// NewReuser builds a Reuser on d and starts its reaper goroutine (which
// also fills the MinIdle warm pool, starting at once). It fails on invalid
// settings.
func NewReuser(d *Dialer, s ReuseSettings) (*Reuser, error) {
	if err := s.validate(); err != nil {
		return nil, fmt.Errorf("pool %q: %w", d.pool.cfg.Name, err)
	}
	if s.PeekInterval == 0 {
		s.PeekInterval = defaultReusePeekInterval
	}
	if s.RetireWait == 0 {
		s.RetireWait = defaultRetireWait
	}
	s.MinIdle = min(s.MinIdle, s.MaxIdle)
	n := len(d.pool.members)
	r := &Reuser{
		d:        d,
		s:        s,
		counters: make([]reuseCounters, n),
		idle:     make([][]*ServerConn, n),
		cands:    make([]*Member, 0, n),
		retiring: make(map[*ServerConn]struct{}),
		warm:     make([]warmState, n),
		wake:     make(chan struct{}, 1),
		fillWake: make(chan struct{}, 1),
		stop:     make(chan struct{}),
	}
	r.ctx, r.cancel = context.WithCancel(d.pool.ctx)
	for i, m := range d.pool.members {
		r.warm[i].transitions = m.healthTransitions.Load()
	}
	d.pool.addReuser(r)
	r.wg.Add(1)
	go r.reap()
	return r, nil
}

// Settings returns the settings in force (PeekInterval and RetireWait
// resolved, MinIdle clamped to MaxIdle).
func (r *Reuser) Settings() ReuseSettings { return r.s }

// Get lends a conn to a member picked by the pool's balancer (clientAddr
// feeds source-hash; it may be nil). If that member has idle conns, the most
// recently used one that passes the stale check is lent (stale ones are
// reset and counted, expired ones closed); otherwise the member is dialed
// with the Dialer's profile, and a failed dial moves on to the next member
// as Dialer.Connect does (each member at most once, at most
// 1+connect_retries dials, health observed).
//
// When every eligible member is at its max_connections, Get waits in FIFO
// order for a conn handed over by Put or a freed slot, up to QueueTimeout,
// then returns ErrQueueTimeout; with QueueTimeout 0 it returns an error
// wrapping ErrMemberLimit at once. With no member up and enabled it returns
// an error wrapping ErrNoMember. ctx bounds the wait and the dials.
func (r *Reuser) Get(ctx context.Context, clientAddr net.Addr) (*ServerConn, error) {
	p := r.d.pool
	client := addrIP(clientAddr)
	var triedBuf [8]*Member
	tried := triedBuf[:0]
	var failed []string
	var lastErr error
	attempts, maxAttempts := 0, 1+max(p.cfg.ConnectRetries, 0)
	var w *wantConn
	var timer *time.Timer
	defer func() {
		if timer != nil {
			timer.Stop()
		}
	}()
	for {
		if w == nil {
			if err := ctx.Err(); err != nil {
				return nil, r.dialError(failed, lastErr, err)
			}
		}
		r.mu.Lock()
		if w != nil && w.done { // settled by Put (a conn) or Close (an error)
			r.mu.Unlock()
			if w.sc != nil {
				r.counters[w.sc.Member.index].reused.Add(1)
				return w.sc, nil
			}
			return nil, fmt.Errorf("pool %q: %w", p.cfg.Name, w.err)
		}
		if r.closed {
			r.mu.Unlock()
			return nil, ErrReuserClosed
		}
		// FIFO: a Get does not overtake queued ones; only the oldest waiter
		// competes for a freed slot.
		behind := r.nwait.Load() > 0 && (w == nil || r.q.front() != w)
		var m *Member
		var sc *ServerConn
		limited := behind
		if !behind {
			m, sc, limited = r.pickLocked(client, tried)
		}
		if m != nil {
			if w != nil { // the oldest waiter leaves the queue with a slot or conn
				r.settleLocked(w)
				w = nil
				r.kickFrontLocked() // the next one looks too: more may be free
			}
			r.mu.Unlock()
			if sc != nil {
				if r.usable(sc) {
					sc.Reused, sc.out = true, true
					r.counters[m.index].reused.Add(1)
					return sc, nil
				}
				continue
			}
			sc, err := r.dial(ctx, m)
			if err == nil {
				return sc, nil
			}
			attempts++
			tried = append(tried, m)
			failed = append(failed, m.addr)
			lastErr = err
			if attempts >= maxAttempts || ctx.Err() != nil {
				return nil, r.dialError(failed, lastErr, nil)
			}
			continue
		}
		if !limited { // nothing up and enabled (or all tried)
			if w != nil {
				r.settleLocked(w)
				r.kickFrontLocked()
			}
			r.mu.Unlock()
			if lastErr != nil {
				return nil, r.dialError(failed, lastErr, nil)
			}
			return nil, fmt.Errorf("pool %q: %w", p.cfg.Name, ErrNoMember)
		}
		if r.s.QueueTimeout <= 0 {
			r.mu.Unlock()
			if lastErr != nil {
				return nil, r.dialError(failed, lastErr, nil)
			}
			return nil, fmt.Errorf("pool %q: %w", p.cfg.Name, ErrMemberLimit)
		}
		if w == nil {
			w = &wantConn{ctx: ctx, ready: make(chan struct{}, 1)}
			r.q.pushBack(w)
			front := r.q.front() == w
			r.nwait.Add(1)
			r.mu.Unlock()
			if timer == nil {
				timer = time.NewTimer(r.s.QueueTimeout)
			}
			if front {
				// A slot freed between the pick and nwait's increment was
				// not announced to us: look once more now that we count.
				continue
			}
		} else {
			r.mu.Unlock()
		}
		select {
		case <-w.ready:
		case <-timer.C:
			if sc := r.cancelWant(w); sc != nil {
				r.counters[sc.Member.index].reused.Add(1)
				return sc, nil // handed over just in time
			}
			return nil, fmt.Errorf("pool %q: %w (waited %v)", p.cfg.Name, ErrQueueTimeout, r.s.QueueTimeout)
		case <-ctx.Done():
			if sc := r.cancelWant(w); sc != nil {
				r.putBack(sc, true) // not ours any more: to the next waiter or idle
			}
			return nil, fmt.Errorf("pool %q: waiting for a conn: %w", p.cfg.Name, ctx.Err())
		}
	}
}

// dialError is Get's error after dials failed (or cause when none was tried).
func (r *Reuser) dialError(failed []string, lastErr, cause error) error {
	name := r.d.pool.cfg.Name
	if len(failed) == 0 {
		return fmt.Errorf("pool %q: %w", name, cause)
	}
	return fmt.Errorf("pool %q: connect failed (tried %s): %w", name, strings.Join(failed, ", "), lastErr)
}

// pickLocked lets the balancer pick among the members that are eligible, not
// in tried, and have an idle conn here or room under max_connections. If the
// pick has idle conns, the most recent is taken off the stack (sc); else a
// slot is reserved on it (sc nil). limited reports that a member was left out
// only for its limit. r.mu is held.
func (r *Reuser) pickLocked(client netip.Addr, tried []*Member) (m *Member, sc *ServerConn, limited bool) {
	cands := r.cands[:0]
	for _, x := range r.d.pool.members {
		if !x.eligible() || slices.Contains(tried, x) {
			continue
		}
		if len(r.idle[x.index]) == 0 && !x.hasRoom() {
			limited = true
			continue
		}
		cands = append(cands, x)
	}
	defer func() { clear(cands); r.cands = cands[:0] }()
	for len(cands) > 0 {
		m = r.d.pool.bal.pick(cands, client)
		if st := r.idle[m.index]; len(st) > 0 {
			sc = st[len(st)-1]
			st[len(st)-1] = nil
			r.idle[m.index] = st[:len(st)-1]
			m.idle.Add(-1)
			if len(st)-1 < r.s.MinIdle {
				r.kickFill() // the warm pool is short by one
			}
			return m, sc, false
		}
		if m.tryAcquire() {
			return m, nil, false
		}
		limited = true // filled up since the scan (another path took the slot)
		i := slices.Index(cands, m)
		cands = slices.Delete(cands, i, i+1)
	}
	return nil, nil, limited
}

// usable checks an idle conn taken off the stack: not past its idle time,
// and alive by the MSG_PEEK check. A conn that fails is closed and counted.
func (r *Reuser) usable(sc *ServerConn) bool {
	now := time.Now()
	if !sc.idleUntil.IsZero() && !now.Before(sc.idleUntil) {
		r.expire(sc)
		return false
	}
	if err := aliveTLS(sc.TCP, sc.TLS); err != nil {
		r.dropStale(sc, now)
		return false
	}
	return true
}

// dial connects to m, whose slot the caller reserved; the slot is released
// when the dial fails.
func (r *Reuser) dial(ctx context.Context, m *Member) (*ServerConn, error) {
	p := r.d.pool
	tcp, tc, _, memberFault, err := r.d.dial(ctx, m)
	if err != nil {
		m.release()
		if memberFault && ctx.Err() == nil {
			p.observe(m, err, "connect")
		}
		return nil, err
	}
	p.observe(m, nil, "connect")
	sc := r.newConn(tcp, tc, m, time.Now())
	r.counters[m.index].opened.Add(1)
	return sc, nil
}

// newConn wraps a fresh conn to m dialed at now, lent out.
func (r *Reuser) newConn(tcp *net.TCPConn, tc *tls.Conn, m *Member, now time.Time) *ServerConn {
	sc := &ServerConn{
		TCP:       tcp,
		TLS:       tc,
		Conn:      tcp,
		Member:    m,
		ID:        serverConnIDs.Add(1),
		Created:   now,
		r:         r,
		maxReq:    r.s.MaxRequests,
		idleLimit: -1,
		out:       true,
	}
	if tc != nil {
		sc.Conn = tc
	}
	if r.s.IdleTimeout > 0 {
		sc.idleLimit = r.s.IdleTimeout
	}
	if r.s.MaxAge > 0 {
		age := r.s.MaxAge
		if r.s.AgeJitter > 0 {
			age -= time.Duration(rand.Float64() * r.s.AgeJitter * float64(age))
		}
		sc.expires = now.Add(age)
	}
	return sc
}

// Put gives a conn back after a complete request/response exchange.
//
//   - If Retire returned true or ExpectMemberClose was called, the member is
//     closing: Put waits (in the background, up to RetireWait) for its FIN,
//     then closes, so the TIME_WAIT lands on the member; if no FIN comes,
//     the profile's close mode.
//   - If reusable is false, a limit was reached since the request was sent
//     (MaxAge, a learnt Keep-Alive max, the member disabled or down), the
//     learnt idle cap is 0, MaxIdle is 0, or the Reuser is closing: the conn
//     is closed with the profile's close mode (RST once closed).
//   - Otherwise it goes to the oldest live queued Get, else on top of its
//     member's idle stack; if that holds MaxIdle conns already, the oldest
//     one is closed with the profile's close mode.
//
// Put does not block on the network except for a drain-reset close. Further
// calls for the same lending do nothing.
func (r *Reuser) Put(c *ServerConn, reusable bool) {
	if !c.out {
		return
	}
	c.Requests++
	r.putBack(c, reusable)
}

// putBack is Put without the request count: c is lent out (out is true).
func (r *Reuser) putBack(c *ServerConn, reusable bool) {
	c.out = false
	if c.retiring || c.memberEnd {
		r.retire(c)
		return
	}
	now := time.Now()
	if !reusable || r.s.MaxIdle == 0 || c.idleLimit == 0 || (c.maxReq > 0 && c.Requests >= c.maxReq) ||
		(!c.expires.IsZero() && !now.Before(c.expires)) || !c.Member.eligible() {
		if c.idleLimit == 0 && reusable {
			r.counters[c.Member.index].expiredIdle.Add(1)
		}
		r.closeConn(c, r.d.profile.Close)
		return
	}
	r.mu.Lock()
	if r.closed {
		r.mu.Unlock()
		r.closeConn(c, config.CloseReset)
		return
	}
	r.parkLocked(c, now) // unlocks
}

// parkLocked hands c (not lent out) to the oldest live queued Get, or puts
// it on top of its member's idle stack, evicting the oldest when MaxIdle is
// reached. r.mu is held and not closed; parkLocked unlocks it.
func (r *Reuser) parkLocked(c *ServerConn, now time.Time) {
	if r.handOffLocked(c) {
		r.mu.Unlock()
		return
	}
	m := c.Member
	c.idleSince = now
	c.idleUntil = time.Time{}
	if c.idleLimit > 0 {
		c.idleUntil = now.Add(c.idleLimit)
	}
	var evicted *ServerConn
	st := r.idle[m.index]
	if len(st) >= r.s.MaxIdle {
		evicted = st[0] // the oldest: nearest to its member's timeout
		copy(st, st[1:])
		st = st[:len(st)-1]
		m.idle.Add(-1)
	}
	r.idle[m.index] = append(st, c)
	m.idle.Add(1)
	wake := !c.idleUntil.IsZero() && (r.reapAt.IsZero() || c.idleUntil.Before(r.reapAt))
	if wake {
		r.reapAt = c.idleUntil
	}
	r.mu.Unlock()
	if wake {
		select {
		case r.wake <- struct{}{}:
		default:
		}
	}
	if evicted != nil {
		r.counters[m.index].overflow.Add(1)
		r.closeConn(evicted, r.d.profile.Close)
	}
}

// handOffLocked gives c to the oldest queued Get whose ctx is still live;
// dead ones met on the way are settled. r.mu is held.
func (r *Reuser) handOffLocked(c *ServerConn) bool {
	for {
		w := r.q.popFront()
		if w == nil {
			return false
		}
		if w.done {
			continue
		}
		w.done = true
		r.nwait.Add(-1)
		if w.ctx.Err() != nil {
			w.err = w.ctx.Err()
			w.signal()
			continue
		}
		c.Reused, c.out = true, true
		w.sc = c
		w.signal()
		// w may have been woken for a freed slot it will not use now: the
		// next one looks instead.
		r.kickFrontLocked()
		return true
	}
}

// Discard closes a conn that failed (reset by the member, a bad response, an
// aborted exchange) with RST: nothing on it is worth delivering and no
// TIME_WAIT is left. reason DiscardClosedEarly counts the conn as closed
// early by its member. Further calls do nothing.
func (r *Reuser) Discard(c *ServerConn, reason DiscardReason) {
	if !c.out {
		return
	}
	c.out = false
	cs := &r.counters[c.Member.index]
	cs.discarded.Add(1)
	if reason == DiscardClosedEarly {
		cs.closedEarly.Add(1)
	}
	r.closeConn(c, config.CloseReset)
}

// retire closes a conn whose member was told to close: at once if its FIN
// is already in, else in a goroutine that waits for it (bounded).
func (r *Reuser) retire(c *ServerConn) {
	cs := &r.counters[c.Member.index]
	cs.retired.Add(1)
	err := sockopt.Alive(c.TCP)
	// Over TLS the member's close_notify may be waiting already: the
	// goroutine reads it (and the FIN after it).
	if err == nil || (c.TLS != nil && errors.Is(err, sockopt.ErrStaleData)) {
		r.mu.Lock()
		if !r.closed {
			// The deadline is set under r.mu so that Close, which cuts it
			// short under r.mu, always comes after it.
			err = c.TCP.SetReadDeadline(time.Now().Add(r.s.RetireWait))
			if err == nil {
				r.retiring[c] = struct{}{}
				r.wg.Add(1)
				r.mu.Unlock()
				go r.awaitMemberClose(c)
				return
			}
		}
		r.mu.Unlock()
		if err == nil {
			err = ErrReuserClosed // closing: do not wait
		}
	}
	r.finishRetire(c, err)
}

// awaitMemberClose waits for the member's FIN on a retired conn (its read
// deadline, RetireWait, was set by retire), then closes it.
func (r *Reuser) awaitMemberClose(c *ServerConn) {
	defer r.wg.Done()
	var buf [1]byte
	var n int
	var err error
	if c.TLS != nil {
		// The member's close_notify ends TLS (EOF), then its FIN ends TCP.
		if n, err = c.TLS.Read(buf[:]); n == 0 && errors.Is(err, io.EOF) {
			n, err = c.TCP.Read(buf[:])
		}
	} else {
		n, err = c.TCP.Read(buf[:])
	}
	if n > 0 {
		err = errStrayData
	}
	r.mu.Lock()
	delete(r.retiring, c)
	r.mu.Unlock()
	r.finishRetire(c, err)
}

var errStrayData = errors.New("pool: unexpected data after the last response")

// finishRetire closes a retired conn given what reading it returned: EOF is
// the member's FIN (close: our FIN answers it, TIME_WAIT stays on the
// member); a timeout means the member kept it open (profile close mode, or
// RST when the Reuser is closing); anything else is a reset or stray data
// (RST).
func (r *Reuser) finishRetire(c *ServerConn, err error) {
	switch {
	case errors.Is(err, io.EOF):
		r.counters[c.Member.index].retiredByMember.Add(1)
		r.closeConn(c, config.CloseGraceful)
	case errors.Is(err, os.ErrDeadlineExceeded) && !r.closing.Load():
		if ce := r.d.pool.log.Check(zap.DebugLevel, "retired conn not closed by its member"); ce != nil {
			ce.Write(zap.String("member", c.Member.addr), zap.Uint64("conn", c.ID), zap.Duration("waited", r.s.RetireWait))
		}
		r.closeConn(c, r.d.profile.Close)
	default:
		r.closeConn(c, config.CloseReset)
	}
}

// closeConn closes c with mode and gives its slot back. r.mu must not be
// held (the release may wake a queued Get).
func (r *Reuser) closeConn(c *ServerConn, mode config.CloseMode) {
	if c.TLS != nil && mode != config.CloseReset {
		_ = c.TLS.CloseWrite() // close_notify before the FIN; the socket buffer takes it at once
	}
	_ = sockopt.Close(c.TCP, mode, r.d.profile.DrainTimeout)
	c.Member.release()
	if c.Member.maxConns > 0 {
		r.d.pool.wakeFillers()
	}
}

// expire closes an idle conn past its idle time with the profile's close
// mode.
func (r *Reuser) expire(c *ServerConn) {
	r.counters[c.Member.index].expiredIdle.Add(1)
	r.closeConn(c, r.d.profile.Close)
}

// dropStale resets an idle conn found stale by a peek and counts it; closed
// early when the member had announced a longer Keep-Alive timeout.
func (r *Reuser) dropStale(c *ServerConn, now time.Time) {
	cs := &r.counters[c.Member.index]
	cs.staleOnPeek.Add(1)
	early := c.kaTimeout > 0 && now.Sub(c.idleSince) < c.kaTimeout
	if early {
		cs.closedEarly.Add(1)
	}
	if ce := r.d.pool.log.Check(zap.InfoLevel, "stale idle conn dropped"); ce != nil {
		ce.Write(zap.String("member", c.Member.addr), zap.String("profile", r.d.profile.Name),
			zap.Uint64("conn", c.ID), zap.Duration("idle", now.Sub(c.idleSince)),
			zap.Duration("keepalive", c.kaTimeout), zap.Bool("closed_early", early))
	}
	r.closeConn(c, config.CloseReset)
}

// slotFreed runs (from Member.release or a member coming up) when a member
// may take a conn again: the oldest queued Get looks again, and the MinIdle
// filler when it is waiting for that member.
func (r *Reuser) slotFreed(m *Member) {
	if r.s.MinIdle > 0 && r.warm[m.index].blocked.Load() {
		r.kickFill()
	}
	if r.nwait.Load() == 0 {
		return
	}
	r.mu.Lock()
	r.kickFrontLocked()
	r.mu.Unlock()
}

// kickFrontLocked wakes the oldest live queued Get. r.mu is held.
func (r *Reuser) kickFrontLocked() {
	if w := r.q.front(); w != nil {
		w.signal()
	}
}

// settleLocked takes a live waiter out of the count; it leaves the queue
// when it reaches the front. r.mu is held.
func (r *Reuser) settleLocked(w *wantConn) {
	if !w.done {
		w.done = true
		r.nwait.Add(-1)
	}
}

// cancelWant withdraws a queued Get. It returns the conn a Put handed over
// in the meantime, if any.
func (r *Reuser) cancelWant(w *wantConn) *ServerConn {
	r.mu.Lock()
	defer r.mu.Unlock()
	if w.done {
		return w.sc
	}
	wasFront := r.q.front() == w
	r.settleLocked(w)
	if wasFront {
		r.kickFrontLocked()
	}
	return nil
}

// Idle returns how many idle conns the Reuser holds for m.
func (r *Reuser) Idle(m *Member) int {
	r.mu.Lock()
	defer r.mu.Unlock()
	return len(r.idle[m.index])
}

// Stats returns the Reuser's counters per member, in pool order.
func (r *Reuser) Stats() []ReuseStats {
	ms := r.d.pool.members
	out := make([]ReuseStats, len(ms))
	r.mu.Lock()
	for i, m := range ms {
		out[i].Address = m.addr
		out[i].Idle = len(r.idle[i])
	}
	r.mu.Unlock()
	for i := range ms {
		c := &r.counters[i]
		s := &out[i]
		s.Opened = c.opened.Load()
		s.Reused = c.reused.Load()
		s.Retired = c.retired.Load()
		s.RetiredByMemberClose = c.retiredByMember.Load()
		s.ExpiredIdle = c.expiredIdle.Load()
		s.StaleOnPeek = c.staleOnPeek.Load()
		s.ClosedEarly = c.closedEarly.Load()
		s.KeepAliveLearnt = c.keepAliveLearnt.Load()
		s.Discarded = c.discarded.Load()
		s.IdleOverflow = c.overflow.Load()
		s.Warmed = c.warmed.Load()
		s.WarmFailed = c.warmFailed.Load()
		s.ReplaysHeadUnsent = c.replays[ReplayHeadUnsent].Load()
		s.ReplaysNoResponse = c.replays[ReplayNoResponse].Load()
	}
	return out
}

// reap is the Reuser's background goroutine: it closes idle conns at their
// idle deadline and those of members no longer eligible, every PeekInterval
// peeks all idle conns so a member's close is noticed while idle, and with
// MinIdle it fills the warm pool after each of those passes, when woken by
// kickFill, and when a member's backoff ends. It stops when Close closes
// r.stop.
func (r *Reuser) reap() {
	defer r.wg.Done()
	every := r.s.PeekInterval
	nextPeek := time.Now().Add(every)
	sweepAt := nextPeek
	var fillAt time.Time // a backoff end; zero = none pending
	if r.s.MinIdle > 0 {
		fillAt = r.fill(time.Now())
	}
	timer := time.NewTimer(time.Until(earliest(sweepAt, fillAt)))
	defer timer.Stop()
	for {
		sweep := false
		select {
		case <-r.stop:
			return
		case <-timer.C:
		case <-r.wake:
			sweep = true
		case <-r.fillWake:
		}
		now := time.Now()
		if sweep || !now.Before(sweepAt) {
			peek := !now.Before(nextPeek)
			if peek {
				nextPeek = now.Add(every)
			}
			sweepAt = r.sweep(now, peek, nextPeek)
		}
		if r.s.MinIdle > 0 {
			fillAt = r.fill(time.Now())
		}
		timer.Reset(max(time.Until(earliest(sweepAt, fillAt)), 0))
	}
}

// earliest returns the earlier of a and b; a zero b is ignored.
func earliest(a, b time.Time) time.Time {
	if !b.IsZero() && b.Before(a) {
		return b
	}
	return a
}

// kickFill wakes the reaper to run fill, without blocking.
// memberLeft makes the reaper sweep now: m went down or was disabled, so
// its idle conns are closed at once rather than at the next peek.
func (r *Reuser) memberLeft(*Member) {
	select {
	case r.wake <- struct{}{}:
	default:
	}
}

func (r *Reuser) kickFill() {
	select {
	case r.fillWake <- struct{}{}:
	default:
	}
}

// fill brings every eligible member's idle conns plus filler dials in
// flight up to MinIdle: it reserves slots with tryAcquire (a member at its
// max_connections gets no more) and starts one goroutine per dial, or a
// single one while the member is failing. A member seen down or disabled,
// or whose health changed since the last fill, starts over without
// backoff. It returns the earliest backoff end still pending, or the zero
// time. Only the reaper goroutine calls it.
func (r *Reuser) fill(now time.Time) (next time.Time) {
	var dialsBuf [8]*Member
	dials := dialsBuf[:0]
	r.mu.Lock()
	if r.closed || r.ctx.Err() != nil { // closed, or the pool closed first: no more dials
		r.mu.Unlock()
		return time.Time{}
	}
	for i, m := range r.d.pool.members {
		w := &r.warm[i]
		// Set before looking, so that a slot freed or the member coming up
		// from here on wakes the next fill.
		w.blocked.Store(true)
		if !m.eligible() {
			w.out = true
			continue
		}
		if tr := m.healthTransitions.Load(); w.out || tr != w.transitions {
			w.out, w.transitions = false, tr // back up: no backoff
			w.failures, w.retryAt = 0, time.Time{}
		}
		have := len(r.idle[i]) + w.pending
		if have >= r.s.MinIdle {
			w.blocked.Store(false)
			continue
		}
		if now.Before(w.retryAt) {
			next = earliest(w.retryAt, next) // next may be zero: earliest ignores it
			continue
		}
		limited := false
		for ; have < r.s.MinIdle; have++ {
			if w.failures > 0 && w.pending > 0 {
				break // failing: one probing dial at a time
			}
			if !m.tryAcquire() {
				limited = true
				break
			}
			w.pending++
			dials = append(dials, m)
		}
		if !limited {
			w.blocked.Store(false) // the dial's end wakes the filler
		}
	}
	r.wg.Add(len(dials)) // the reaper is counted: never from zero
	r.mu.Unlock()
	for _, m := range dials {
		go r.warmDial(m)
	}
	return next
}

// warmDial dials one MinIdle conn to m, whose slot fill reserved, and parks
// it idle (or hands it to a queued Get). A failure backs m off; both ends
// wake the filler.
func (r *Reuser) warmDial(m *Member) {
	defer r.wg.Done()
	defer r.kickFill()
	p := r.d.pool
	cs := &r.counters[m.index]
	tcp, tc, _, memberFault, err := r.d.dial(r.ctx, m)
	if err != nil {
		cut := r.ctx.Err() != nil // Close: not the member's fault
		r.mu.Lock()
		w := &r.warm[m.index]
		w.pending--
		if !cut {
			w.failures++
			w.retryAt = time.Now().Add(backoff(w.failures))
		}
		r.mu.Unlock()
		m.release()
		if cut {
			return
		}
		cs.warmFailed.Add(1)
		if ce := p.log.Check(zap.DebugLevel, "min_idle dial failed"); ce != nil {
			ce.Write(zap.String("member", m.addr), zap.String("profile", r.d.profile.Name), zap.Error(err))
		}
		if memberFault {
			p.observe(m, err, "min_idle")
		}
		return
	}
	p.observe(m, nil, "min_idle")
	now := time.Now()
	sc := r.newConn(tcp, tc, m, now)
	sc.out = false
	cs.opened.Add(1)
	cs.warmed.Add(1)
	r.mu.Lock()
	w := &r.warm[m.index]
	w.pending--
	w.failures, w.retryAt = 0, time.Time{}
	if r.closed || !m.eligible() { // gone meanwhile: unused, so RST
		r.mu.Unlock()
		r.closeConn(sc, config.CloseReset)
		return
	}
	r.parkLocked(sc, now) // unlocks
}

// sweep is one pass of the reaper. It returns when to run next: the earliest
// idle deadline, or nextPeek.
func (r *Reuser) sweep(now time.Time, peek bool, nextPeek time.Time) time.Time {
	var expired, dropped []*ServerConn
	next := nextPeek
	r.mu.Lock()
	for i, m := range r.d.pool.members {
		st := r.idle[i]
		keep := st[:0]
		for _, c := range st {
			switch {
			case !m.eligible():
				dropped = append(dropped, c)
			case !c.idleUntil.IsZero() && !now.Before(c.idleUntil):
				expired = append(expired, c)
			default:
				keep = append(keep, c)
				if !c.idleUntil.IsZero() && c.idleUntil.Before(next) {
					next = c.idleUntil
				}
				if peek {
					r.peekBuf = append(r.peekBuf, c)
				}
			}
		}
		clear(st[len(keep):])
		m.idle.Add(int64(len(keep) - len(st)))
		r.idle[i] = keep
	}
	r.reapAt = next
	r.mu.Unlock()

	for _, c := range expired {
		r.expire(c)
	}
	for _, c := range dropped {
		r.counters[c.Member.index].expiredIdle.Add(1)
		r.closeConn(c, r.d.profile.Close)
	}
	if peek {
		r.peekIdle(now)
	}
	return next
}

// peekIdle runs the stale check on the idle conns sweep collected, without
// holding r.mu, and drops those still idle that failed it. A conn lent out
// meanwhile is no longer in its stack and is left alone.
func (r *Reuser) peekIdle(now time.Time) {
	for i, c := range r.peekBuf {
		r.peekBuf[i] = nil
		// A peek only: the conn is still in its idle stack, where a Get
		// may take it, so TLS records are not read here (Get's check
		// reads them for the conn it takes). Bytes waiting on a TLS conn
		// make it stale only when the member also sent its FIN (the
		// close_notify then FIN of a member closing an idle conn).
		if err := sockopt.Alive(c.TCP); !errors.Is(err, sockopt.ErrStale) || (c.TLS != nil && errors.Is(err, sockopt.ErrStaleData) && !peerClosed(c.TCP)) {
			continue
		}
		r.mu.Lock()
		removed := r.removeIdleLocked(c)
		r.mu.Unlock()
		if removed {
			r.dropStale(c, now)
		}
	}
	r.peekBuf = r.peekBuf[:0]
}

// removeIdleLocked takes c off its member's stack if it is still there.
func (r *Reuser) removeIdleLocked(c *ServerConn) bool {
	i := c.Member.index
	st := r.idle[i]
	j := slices.Index(st, c)
	if j < 0 {
		return false
	}
	r.idle[i] = slices.Delete(st, j, j+1)
	c.Member.idle.Add(-1)
	return true
}

// Close stops the Reuser: queued Gets return ErrReuserClosed, retired conns
// still waiting for their member's FIN are reset, the reaper stops (Close
// waits for it and every goroutine the Reuser started, MinIdle dials in
// flight cut short), and the idle conns
// are closed with RST (no TIME_WAIT on tether's ports). Conns lent out stay
// the caller's; their Put closes them with RST. Close is idempotent.
func (r *Reuser) Close() {
	r.mu.Lock()
	if r.closed {
		r.mu.Unlock()
		return
	}
	r.closed = true
	r.closing.Store(true)
	r.cancel() // the filler's dials in flight
	var idle []*ServerConn
	for i, m := range r.d.pool.members {
		idle = append(idle, r.idle[i]...)
		m.idle.Add(-int64(len(r.idle[i])))
		r.idle[i] = nil
	}
	for w := r.q.popFront(); w != nil; w = r.q.popFront() {
		if !w.done {
			w.done = true
			w.err = ErrReuserClosed
			r.nwait.Add(-1)
			w.signal()
		}
	}
	now := time.Now()
	for c := range r.retiring {
		_ = c.TCP.SetReadDeadline(now) // cut the wait for the FIN short
	}
	r.mu.Unlock()

	close(r.stop)
	r.wg.Wait()
	r.d.pool.removeReuser(r)
	for _, c := range idle {
		r.closeConn(c, config.CloseReset)
	}
}

// wantConn is a queued Get. It is settled exactly once (done), under r.mu:
// by a Put handing it a conn (sc), by its own cancel or timeout, by leaving
// the queue with a freed slot, or by Close (err).
type wantConn struct {
	ctx   context.Context
	ready chan struct{} // cap 1: settled, or "look again" (a slot freed)
	sc    *ServerConn
	err   error
	done  bool
}

func (w *wantConn) signal() {
	select {
	case w.ready <- struct{}{}:
	default:
	}
}

// wantQueue is the FIFO of queued Gets, two slices as in net/http's
// wantConnQueue. Settled entries stay until they reach the front.
type wantQueue struct {
	head    []*wantConn
	headPos int
	tail    []*wantConn
}

func (q *wantQueue) pushBack(w *wantConn) { q.tail = append(q.tail, w) }

// front returns the oldest live entry, dropping settled ones before it.
func (q *wantQueue) front() *wantConn {
	for {
		if q.headPos >= len(q.head) {
			if len(q.tail) == 0 {
				return nil
			}
			q.head, q.headPos, q.tail = q.tail, 0, q.head[:0]
		}
		w := q.head[q.headPos]
		if !w.done {
			return w
		}
		q.head[q.headPos] = nil
		q.headPos++
	}
}

// popFront removes and returns the oldest entry, settled or not.
func (q *wantQueue) popFront() *wantConn {
	if q.headPos >= len(q.head) {
		if len(q.tail) == 0 {
			return nil
		}
		q.head, q.headPos, q.tail = q.tail, 0, q.head[:0]
	}
	w := q.head[q.headPos]
	q.head[q.headPos] = nil
	q.headPos++
	return w
}
