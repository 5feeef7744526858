package pool

import (
	"errors"
	"io"
	"os"
	"syscall"
	"time"

	"go.uber.org/zap"

	"github.com/tetherproxy/tether/config"
	"github.com/tetherproxy/tether/sockopt"
)

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

// Put gives a conn back after a complete request/response exchange.
//
//   - If Retire returned true or ExpectMemberClose was called, the member is
//     closing: Put waits (in the background, up to RetireWait) for its FIN,
//     then closes, so the TIME_WAIT lands on the member; if no FIN comes,
//     the profile's close mode.
//   - If reusable is false, a limit was reached since the request was sent
//     (MaxAge, a learnt Keep-Alive max, the member disabled or down), the
//     idle limit is 0 (announced or learnt, see IdleLimit), MaxIdle is 0
//     (reuse = never), or the ConnPool is closing: the conn is closed with the profile's close mode (RST once
//     closed).
//   - Otherwise it goes to the oldest live queued Get, else on top of its
//     member's idle stack; if that holds MaxIdle conns already, the oldest
//     one is closed with the profile's close mode.
//
// Put does not block on the network except for a drain-reset close. Further
// calls for the same lending do nothing.
func (p *ConnPool) Put(c *ServerConn, reusable bool) {
	if !c.out {
		return
	}
	c.Requests++
	p.putBack(c, reusable)
}

// putBack is Put without the request count: c is lent out (out is true).
func (p *ConnPool) putBack(c *ServerConn, reusable bool) {
	c.out = false
	if c.retiring || c.memberEnd {
		p.retire(c)
		return
	}
	now := time.Now()
	limit, _ := p.idleLimit(c, now)
	if !reusable || p.cfg.MaxIdle == 0 || limit == 0 || (c.maxReq > 0 && c.Requests >= c.maxReq) ||
		c.expired(now) || !(c.Member.eligible() || c.Member.drainsIdle()) {
		if limit == 0 && reusable {
			p.mc(c.Member.index).counters.expiredIdle.Add(1)
		}
		p.closeConn(c, p.dialer.profile.Close)
		return
	}
	p.mu.Lock()
	if p.closed {
		p.mu.Unlock()
		p.closeConn(c, config.CloseReset)
		return
	}
	p.parkLocked(c, now) // unlocks
}

// parkLocked hands c (not lent out) to the oldest live queued Get, or puts
// it on top of its member's idle stack, evicting the oldest when MaxIdle is
// reached. p.mu is held and not closed; parkLocked unlocks it.
func (p *ConnPool) parkLocked(c *ServerConn, now time.Time) {
	if c.Member.eligible() && p.handOffLocked(c) { // a draining member's conn waits for its close
		p.mu.Unlock()
		return
	}
	m := c.Member
	mc := p.mc(m.index)
	c.idleSince = now
	c.idleUntil = time.Time{}
	if c.idleLimit > 0 {
		c.idleUntil = now.Add(c.idleLimit)
	}
	var evicted *ServerConn
	if len(mc.idle) >= p.cfg.MaxIdle {
		evicted = mc.idle[0] // the oldest: nearest to its member's timeout
		copy(mc.idle, mc.idle[1:])
		mc.idle[len(mc.idle)-1] = nil
		mc.idle = mc.idle[:len(mc.idle)-1]
		m.idle.Add(-1)
	}
	mc.idle = append(mc.idle, c)
	m.idle.Add(1)
	at := c.idleDeadline(p.memberLimit(m, now))
	wake := !at.IsZero() && (p.reapAt.IsZero() || at.Before(p.reapAt))
	if wake {
		p.reapAt = at
	}
	p.mu.Unlock()
	if wake {
		p.wakeReaper() // an earlier deadline than it sleeps until
	}
	if evicted != nil {
		mc.counters.overflow.Add(1)
		p.closeConn(evicted, p.dialer.profile.Close)
	}
}

// Discard closes a conn that failed (reset by the member, a bad response, an
// aborted exchange) with RST: nothing on it is worth delivering and no
// TIME_WAIT is left. reason DiscardClosedEarly counts the conn as closed
// early by its member. Further calls do nothing.
func (p *ConnPool) Discard(c *ServerConn, reason DiscardReason) {
	if !c.out {
		return
	}
	c.out = false
	cs := &p.mc(c.Member.index).counters
	cs.discarded.Add(1)
	if reason == DiscardClosedEarly {
		cs.closedEarly.Add(1)
		p.noteClosedOnArrival(c)
	}
	p.closeConn(c, config.CloseReset)
}

// closedOnArrival bounds, beyond two round trips, the time from taking an
// idle conn to its failure for the failure to count as the member's idle
// timer firing as the request arrived.
const closedOnArrival = 10 * time.Millisecond

// noteClosedOnArrival feeds the member's learner when c, taken from idle
// and discarded as closed early, failed at once: the member closed it as
// the request arrived, at the idle time it had when taken. A failure later
// than that (a member crashing on the request) is no idle timeout.
func (p *ConnPool) noteClosedOnArrival(c *ServerConn) {
	if p.stock || c.takenIdle <= 0 || c.Requests == 0 {
		return
	}
	now := time.Now()
	within := closedOnArrival
	if info, err := sockopt.GetInfo(c.TCP); err == nil {
		within += 2 * info.RTT
	}
	if now.Sub(c.takenAt) <= within {
		c.Member.idleClosed(idleSample{idle: c.takenIdle, at: c.takenAt, upper: true}, now)
	}
}

// noteIdleClose feeds the member's learner when the stale check found an
// idle conn closed by its member (a FIN or a reset; stray data is no
// close). The close time is the FIN's arrival read back from TCP_INFO; a
// reset (which TCP_INFO does not date) or TCP_INFO failing gives the time
// the close was seen, an upper bound. Only conns that carried a request
// count: a member may time out a conn that never did differently (a
// request header timeout). Preconnect stocks feed nothing.
func (p *ConnPool) noteIdleClose(c *ServerConn, why error) {
	if p.stock || c.Requests == 0 || !(errors.Is(why, io.EOF) || errors.Is(why, syscall.ECONNRESET)) {
		return
	}
	now := time.Now()
	closedAt := now
	if errors.Is(why, io.EOF) {
		if info, err := sockopt.GetInfo(c.TCP); err == nil {
			closedAt = now.Add(-info.LastAckRecv)
		}
	}
	if idle := closedAt.Sub(c.idleSince); idle > 0 {
		c.Member.idleClosed(idleSample{idle: idle, at: closedAt, upper: closedAt.Equal(now)}, now)
	}
}

// retire closes a conn whose member was told to close: at once if its FIN
// is already in, else in a goroutine that waits for it (bounded).
func (p *ConnPool) retire(c *ServerConn) {
	p.mc(c.Member.index).counters.retired.Add(1)
	err := sockopt.Alive(c.TCP)
	// Over TLS the member's close_notify may be waiting already: the
	// goroutine reads it (and the FIN after it).
	if err == nil || (c.TLS != nil && errors.Is(err, sockopt.ErrStaleData)) {
		p.mu.Lock()
		if !p.closed {
			// The deadline is set under p.mu so that Close, which cuts it
			// short under p.mu, always comes after it.
			err = c.TCP.SetReadDeadline(time.Now().Add(p.cfg.RetireWait))
			if err == nil {
				p.retiring[c] = struct{}{}
				p.wg.Add(1)
				p.mu.Unlock()
				go p.awaitMemberClose(c)
				return
			}
		}
		p.mu.Unlock()
		if err == nil {
			err = ErrConnPoolClosed // closing: do not wait
		}
	}
	p.finishRetire(c, err)
}

// awaitMemberClose waits for the member's FIN on a retired conn (its read
// deadline, RetireWait, was set by retire), then closes it.
func (p *ConnPool) awaitMemberClose(c *ServerConn) {
	defer p.wg.Done()
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
	p.mu.Lock()
	delete(p.retiring, c)
	p.mu.Unlock()
	p.finishRetire(c, err)
}

var errStrayData = errors.New("pool: unexpected data after the last response")

// finishRetire closes a retired conn given what reading it returned: EOF is
// the member's FIN (close: our FIN answers it, TIME_WAIT stays on the
// member); a timeout means the member kept it open (profile close mode, or
// RST when the ConnPool is closing); anything else is a reset or stray data
// (RST).
func (p *ConnPool) finishRetire(c *ServerConn, err error) {
	switch {
	case errors.Is(err, io.EOF):
		p.mc(c.Member.index).counters.retiredByMember.Add(1)
		p.closeConn(c, config.CloseGraceful)
	case errors.Is(err, os.ErrDeadlineExceeded) && !p.closing.Load():
		if ce := p.pool.log.Check(zap.DebugLevel, "retired conn not closed by its member"); ce != nil {
			ce.Write(zap.String("member", c.Member.addr), zap.Uint64("conn", c.ID), zap.Duration("waited", p.cfg.RetireWait))
		}
		p.closeConn(c, p.dialer.profile.Close)
	default:
		p.closeConn(c, config.CloseReset)
	}
}

// closeConn closes c with mode and gives its slot back. p.mu must not be
// held (the release may wake a queued Get or a filler).
func (p *ConnPool) closeConn(c *ServerConn, mode config.CloseMode) {
	p.closeSocket(c, mode)
	c.Member.release()
}

// closeSocket closes c with mode, keeping its slot (closeConn gives it
// back).
func (p *ConnPool) closeSocket(c *ServerConn, mode config.CloseMode) {
	if c.TLS != nil && mode != config.CloseReset {
		_ = c.TLS.CloseWrite() // close_notify before the FIN; the socket buffer takes it at once
	}
	_ = sockopt.Close(c.TCP, mode, p.dialer.profile.DrainTimeout)
}

// expire closes an idle conn past its idle time with the profile's close
// mode.
func (p *ConnPool) expire(c *ServerConn) {
	p.mc(c.Member.index).counters.expiredIdle.Add(1)
	p.closeConn(c, p.dialer.profile.Close)
}

// dropMode is how tether closes an idle conn it drops before its time (its
// member left, a stock above its share): a stock's conns never carried a
// byte, so RST loses nothing and leaves no TIME_WAIT; reused conns close
// with the profile's close mode, as at their idle timeout.
func (p *ConnPool) dropMode() config.CloseMode {
	if p.stock {
		return config.CloseReset
	}
	return p.dialer.profile.Close
}

// dropStale resets an idle conn that failed the stale check and counts it;
// closed early when the member had announced a longer Keep-Alive timeout.
// A close by the member feeds its idle timeout learner.
func (p *ConnPool) dropStale(c *ServerConn, now time.Time, why error) {
	cs := &p.mc(c.Member.index).counters
	cs.staleOnPeek.Add(1)
	if p.stock {
		c.Member.staleDropped.Add(1)
	}
	early := c.kaTimeout > 0 && now.Sub(c.idleSince) < c.kaTimeout
	if early {
		cs.closedEarly.Add(1)
	}
	p.noteIdleClose(c, why)
	if ce := p.pool.log.Check(zap.InfoLevel, "stale idle conn dropped"); ce != nil {
		ce.Write(zap.String("member", c.Member.addr), zap.String("profile", p.dialer.profile.Name),
			zap.Bool("preconnected", p.stock), zap.Uint64("conn", c.ID), zap.Duration("idle", now.Sub(c.idleSince)),
			zap.Duration("keepalive", c.kaTimeout), zap.Bool("closed_early", early), zap.Error(why))
	}
	p.closeConn(c, config.CloseReset)
}
