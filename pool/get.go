package pool

import (
	"context"
	"errors"
	"fmt"
	"net"
	"net/netip"
	"slices"
	"strings"
	"time"

	"github.com/tetherproxy/tether/config"
)

// errMustQueue is tryTake's refusal: every eligible member is at its
// max_connections (or older Gets are queued) and the Get may wait.
var errMustQueue = errors.New("pool: every member at its limit; queue")

// attempt is one Get's way through the members: the dials it made, the
// members that failed (not picked again), and its queue timer.
type attempt struct {
	client   netip.Addr
	kind     RequestKind
	maxDials int // 1 + connect_retries
	dials    int
	tried    []*Member // members whose dial failed
	failed   []string  // their addresses, for the error
	lastErr  error
	timer    *time.Timer // QueueTimeout, from the first time the Get queued
	avoid    *Member     // a replay's: not picked while another member can be
}

// dialFailed records a failed dial to m.
func (a *attempt) dialFailed(m *Member, err error) {
	a.dials++
	a.tried = append(a.tried, m)
	a.failed = append(a.failed, m.addr)
	a.lastErr = err
}

// take is what one look at the pool got for a Get: an idle conn to check
// (c), a conn a Put handed over (c, handed: ready to lend), or a slot
// reserved on m to dial.
type take struct {
	m      *Member
	c      *ServerConn
	handed bool
	// fresh: m's idle conns are too old for a non-idempotent request, so
	// the slot is dialed; evict is the old idle conn whose slot it takes
	// when m is at its max_connections (closed before the dial).
	fresh bool
	evict *ServerConn
}

// RequestKind says what a request can afford from a reused conn.
type RequestKind uint8

// Request kinds (RFC 9110 §9.2.2).
const (
	// Idempotent: GET, HEAD, OPTIONS, TRACE, PUT, DELETE. Any idle conn
	// that passes the checks serves it; a replay covers the race with the
	// member's idle timer.
	Idempotent RequestKind = iota
	// NonIdempotent: POST, PATCH, CONNECT, an upgrade ...: never replayed
	// once sent, so it gets the member's youngest idle conn only if that
	// idled less than non_idempotent_safe_idle, else the fallback
	// (non_idempotent_fallback: dial, or reuse it anyway).
	NonIdempotent
	// Replay: a request sent again because a reused conn failed under it
	// (DESIGN.md: replayed on a fresh conn). It gets a fresh conn, not
	// another idle one, which may have died with the first (a member that
	// dies ends all its conns at once, and a request is replayed only
	// once); an idle one only when the member is at its max_connections.
	Replay
)

// Get lends a conn to a member picked by the pool's balancer (clientAddr
// feeds source-hash; it may be nil), in three steps as net/http's Transport
// does: take an idle conn, else dial on a free slot, else queue until a
// conn or a slot comes free; each waiter is delivered once.
//
// If the picked member has idle conns, the most recent one that passes the
// stale check is lent (stale ones are reset and counted, expired ones
// closed); otherwise the member is dialed with the Dialer's profile, and a
// failed dial moves on to the next member (each member at most once, at
// most 1+connect_retries dials, health observed).
//
// When every eligible member is at its max_connections, Get waits in FIFO
// order for a conn handed over by Put or a freed slot, up to QueueTimeout,
// then returns ErrQueueTimeout; with QueueTimeout 0 it returns an error
// wrapping ErrMemberLimit at once. With no member up and enabled it returns
// an error wrapping ErrNoMember. ctx bounds the wait and the dials.
func (p *ConnPool) Get(ctx context.Context, clientAddr net.Addr) (*ServerConn, error) {
	return p.GetFor(ctx, clientAddr, Idempotent)
}

// GetFor is Get for a request of the given kind: a NonIdempotent one is
// not sent on an idle conn older than non_idempotent_safe_idle unless
// non_idempotent_fallback is "reuse"; a fresh conn is dialed instead (at
// the member's max_connections, in the slot of that old conn, which is
// closed).
func (p *ConnPool) GetFor(ctx context.Context, clientAddr net.Addr, kind RequestKind) (*ServerConn, error) {
	return p.get(ctx, &attempt{client: addrIP(clientAddr), kind: kind, maxDials: 1 + max(p.pool.cfg.ConnectRetries, 0)})
}

// GetReplay is GetFor with kind Replay for a request whose conn to failed
// just failed under it: the fresh conn goes to another member when one is
// eligible, failed only when none is (a member being killed may still
// complete a handshake or two before its listener is gone).
func (p *ConnPool) GetReplay(ctx context.Context, clientAddr net.Addr, failed *Member) (*ServerConn, error) {
	return p.get(ctx, &attempt{client: addrIP(clientAddr), kind: Replay, maxDials: 1 + max(p.pool.cfg.ConnectRetries, 0), avoid: failed})
}

func (p *ConnPool) get(ctx context.Context, a *attempt) (*ServerConn, error) {
	defer func() {
		if a.timer != nil {
			a.timer.Stop()
		}
	}()
	for a.dials < a.maxDials {
		if err := ctx.Err(); err != nil {
			return nil, p.connectError(a, err)
		}
		t, err := p.tryTake(a, nil)
		if err == errMustQueue {
			t, err = p.queueForTurn(ctx, a)
		}
		if err != nil {
			return nil, err
		}
		if c := p.use(ctx, a, t); c != nil {
			return c, nil
		}
	}
	return nil, p.connectError(a, nil)
}

// tryTake is one look at the pool for a Get (w: its place in the queue,
// nil when not queued). It returns a conn handed over to w, else an idle
// conn or a reserved slot of a picked member; when every eligible member is
// at its limit it refuses with errMustQueue (or fails at once when the Get
// may not wait). A queued Get leaves the queue with a pick, or when no
// member is left to wait for.
func (p *ConnPool) tryTake(a *attempt, w *wantConn) (take, error) {
	p.mu.Lock()
	defer p.mu.Unlock()
	if w != nil && w.done { // delivered by Put (a conn) or Close (an error)
		if w.c != nil {
			return take{c: w.c, handed: true}, nil
		}
		return take{}, fmt.Errorf("pool %q: %w", p.pool.cfg.Name, w.err)
	}
	if p.closed && !p.stock {
		return take{}, ErrConnPoolClosed
	}
	// FIFO: a Get does not overtake queued ones; only the oldest waiter
	// competes for a freed slot.
	if p.nwait.Load() > 0 && (w == nil || p.q.front() != w) {
		return take{}, errMustQueue
	}
	t, limited := p.pickLocked(a)
	if w != nil && (t.m != nil || !limited) {
		p.deliverLocked(w, nil, nil)
		p.kickFrontLocked() // the next one looks too: more may be free
	}
	switch {
	case t.m != nil:
		return t, nil
	case !limited: // nothing up and enabled (or all tried)
		return take{}, p.connectError(a, ErrNoMember)
	case p.cfg.QueueTimeout <= 0:
		return take{}, p.connectError(a, ErrMemberLimit)
	}
	return take{}, errMustQueue
}

// pickLocked lets the balancer pick among the members that are eligible, not
// tried, and have an idle conn here or room under max_connections. If the
// pick has idle conns, the most recent is taken off its stack (t.c); else a
// slot is reserved on it (t.c nil). For a non-idempotent request whose
// youngest idle conn is too old (tooOldLocked) a slot is reserved instead,
// or at the limit that old conn is taken off to be closed (t.evict) and its
// slot used. limited reports that a member was left out only for its limit.
// p.mu is held.
func (p *ConnPool) pickLocked(a *attempt) (t take, limited bool) {
	cands := p.cands[:0]
	for _, x := range p.pool.all() {
		if !x.eligible() || slices.Contains(a.tried, x) {
			continue
		}
		if len(p.mc(x.index).idle) == 0 && !x.hasRoom() {
			limited = true
			continue
		}
		cands = append(cands, x)
	}
	if i := slices.Index(cands, a.avoid); i >= 0 && len(cands) > 1 {
		cands = slices.Delete(cands, i, i+1)
	}
	defer func() { clear(cands); p.cands = cands[:0] }()
	for len(cands) > 0 {
		m := p.pool.bal.pick(cands, a.client)
		if a.kind == Replay && m.tryAcquire() {
			return take{m: m}, false
		}
		old := p.tooOldLocked(a, m)
		if !old {
			if c := p.popIdleLocked(m); c != nil {
				return take{m: m, c: c}, false
			}
		}
		if m.tryAcquire() {
			return take{m: m, fresh: old}, false
		}
		if old {
			return take{m: m, fresh: true, evict: p.popIdleLocked(m)}, false
		}
		limited = true // filled up since the scan (another path took the slot)
		i := slices.Index(cands, m)
		cands = slices.Delete(cands, i, i+1)
	}
	return take{}, limited
}

// tooOldLocked reports whether a non-idempotent request must not take m's
// youngest idle conn: it idled non_idempotent_safe_idle or longer and the
// fallback is to dial. p.mu is held.
func (p *ConnPool) tooOldLocked(a *attempt, m *Member) bool {
	safe := p.cfg.NonIdempotentSafeIdle
	if a.kind != NonIdempotent || safe <= 0 || p.cfg.NonIdempotentFallback == config.FallbackReuse {
		return false
	}
	idle := p.mc(m.index).idle
	return len(idle) > 0 && time.Since(idle[len(idle)-1].idleSince) >= safe
}

// popIdleLocked takes m's most recent idle conn off its stack, waking the
// filler when that leaves m short; nil when m has none. p.mu is held.
func (p *ConnPool) popIdleLocked(m *Member) *ServerConn {
	mc := p.mc(m.index)
	n := len(mc.idle)
	if n == 0 {
		return nil
	}
	c := mc.idle[n-1]
	mc.idle[n-1] = nil
	mc.idle = mc.idle[:n-1]
	m.idle.Add(-1)
	if n-1+mc.dialing < mc.target {
		p.kickFill()
	}
	return c
}

// queueForTurn queues a Get behind the ones already waiting and waits for a
// conn handed over by Put, or for its turn at the front when a slot frees,
// up to QueueTimeout (counted from the Get's first time in the queue) or
// until ctx ends.
func (p *ConnPool) queueForTurn(ctx context.Context, a *attempt) (take, error) {
	w := &wantConn{ctx: ctx, ready: make(chan struct{}, 1)}
	p.mu.Lock()
	p.q.pushBack(w)
	if p.q.front() == w {
		// A slot freed between tryTake and nwait's increment was not
		// announced to w: it looks once more now that it counts.
		w.signal()
	}
	p.nwait.Add(1)
	p.mu.Unlock()
	if a.timer == nil {
		a.timer = time.NewTimer(p.cfg.QueueTimeout)
	}
	for {
		select {
		case <-w.ready:
			if t, err := p.tryTake(a, w); err != errMustQueue {
				return t, err
			}
		case <-a.timer.C:
			if c := p.cancelWant(w); c != nil {
				return take{c: c, handed: true}, nil // handed over just in time
			}
			return take{}, fmt.Errorf("pool %q: %w (waited %v)", p.pool.cfg.Name, ErrQueueTimeout, p.cfg.QueueTimeout)
		case <-ctx.Done():
			if c := p.cancelWant(w); c != nil {
				p.putBack(c, true) // not ours any more: to the next waiter or idle
			}
			return take{}, fmt.Errorf("pool %q: waiting for a conn: %w", p.pool.cfg.Name, ctx.Err())
		}
	}
}

// use turns a take into a lent conn: a handed-over conn as it is, an idle
// one if it passes the stale check, a slot by dialing. It returns nil when
// the Get must look again (the idle conn was stale, the dial failed).
func (p *ConnPool) use(ctx context.Context, a *attempt, t take) *ServerConn {
	switch {
	case t.handed:
		t.c.takenIdle = 0
		p.countHit(t.c)
		return t.c
	case t.c != nil:
		if !p.usable(t.c) {
			return nil
		}
		t.c.Reused, t.c.out = true, true
		t.c.takenAt = time.Now()
		t.c.takenIdle = t.c.takenAt.Sub(t.c.idleSince)
		p.countHit(t.c)
		return t.c
	}
	if t.evict != nil { // its slot is ours: close the socket only
		cs := &p.mc(t.m.index).counters
		cs.niEvicted.Add(1)
		cs.expiredIdle.Add(1)
		p.closeSocket(t.evict, p.dialer.profile.Close)
	}
	c, err := p.connect(ctx, t.m)
	if err != nil {
		a.dialFailed(t.m, err)
		return nil
	}
	if t.fresh {
		p.mc(t.m.index).counters.niDials.Add(1)
	}
	return c
}

// countHit counts a Get served without a dial.
func (p *ConnPool) countHit(c *ServerConn) {
	p.mc(c.Member.index).counters.reused.Add(1)
	if p.stock {
		c.Member.preconnectHits.Add(1)
	}
}

// usable checks an idle conn taken off its stack: not past its idle time
// (its own or its member's learnt one), and alive by the stale check. A conn that fails is closed and counted.
func (p *ConnPool) usable(c *ServerConn) bool {
	now := time.Now()
	if at := c.idleDeadline(p.memberLimit(c.Member, now)); !at.IsZero() && !now.Before(at) {
		p.expire(c)
		return false
	}
	if err := aliveTLS(c.TCP, c.TLS); err != nil {
		p.dropStale(c, now, err)
		return false
	}
	return true
}

// connect dials m, whose slot the caller reserved, for a Get; the slot is
// released when the dial fails, which counts against m's health unless it
// was tether's fault or ctx ended.
func (p *ConnPool) connect(ctx context.Context, m *Member) (*ServerConn, error) {
	d, err := p.dialer.dial(ctx, m)
	if err != nil {
		m.release()
		if memberFault(err) && ctx.Err() == nil {
			p.pool.observe(m, err, "connect")
		}
		return nil, err
	}
	p.pool.observe(m, nil, "connect")
	c := p.newConn(d, m, time.Now())
	p.mc(m.index).counters.opened.Add(1)
	return c, nil
}

// connectError is Get's error: after failed dials, the members tried and
// the last dial error; before any, cause.
func (p *ConnPool) connectError(a *attempt, cause error) error {
	name := p.pool.cfg.Name
	if len(a.failed) == 0 {
		return fmt.Errorf("pool %q: %w", name, cause)
	}
	return fmt.Errorf("pool %q: connect failed (tried %s): %w", name, strings.Join(a.failed, ", "), a.lastErr)
}
