package pool

import (
	"errors"
	"fmt"
	"io"
	"slices"
	"time"

	"github.com/tetherproxy/tether/sockopt"
)

// maintain is the ConnPool's background goroutine, its reaper: it closes
// idle conns at their idle deadline and those of members no longer
// eligible, every PeekInterval runs the stale check on all idle conns so a
// member's close is noticed while idle, and when the ConnPool fills it runs
// the filler after each of those passes, when woken by kickFill, and when a
// member's backoff ends. It stops when Close closes p.stop.
func (p *ConnPool) maintain() {
	defer p.wg.Done()
	every := p.cfg.PeekInterval
	nextPeek := time.Now().Add(every)
	sweepAt := nextPeek
	var fillAt time.Time // a backoff end; zero = none pending
	if p.fills {
		fillAt = p.fill(time.Now())
	}
	timer := time.NewTimer(time.Until(earliest(sweepAt, fillAt)))
	defer timer.Stop()
	for {
		sweep := false
		select {
		case <-p.stop:
			return
		case <-timer.C:
		case <-p.wake:
			sweep = true
		case <-p.fillWake:
		}
		now := time.Now()
		if sweep || !now.Before(sweepAt) {
			peek := !now.Before(nextPeek)
			if peek {
				nextPeek = now.Add(every)
			}
			sweepAt = p.sweep(now, peek, nextPeek)
		}
		if p.fills {
			fillAt = p.fill(time.Now())
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

// sweep is one pass of the reaper: it takes off their stacks the idle conns
// of members no longer eligible (closed with dropMode, counted as expired)
// and those past their idle deadline (their own, or their member's learnt
// idle limit: see idleDeadline; the profile's close mode), and with
// peek runs the stale check on the rest. It returns when to run next: the
// earliest idle deadline, or nextPeek.
func (p *ConnPool) sweep(now time.Time, peek bool, nextPeek time.Time) time.Time {
	var expired, dropped []*ServerConn
	next := nextPeek
	p.mu.Lock()
	for i, m := range p.pool.all() {
		mc := p.mc(i)
		learnt := p.memberLimit(m, now)
		drains := !m.eligible() && m.drainsIdle()
		keep := mc.idle[:0]
		for _, c := range mc.idle {
			at := c.idleDeadline(learnt)
			if drains {
				at = m.drainDeadline() // wait for the member's close, up to member_drain_timeout
			}
			switch {
			case !m.eligible() && !drains:
				dropped = append(dropped, c)
			case !at.IsZero() && !now.Before(at):
				expired = append(expired, c)
			default:
				keep = append(keep, c)
				if !at.IsZero() && at.Before(next) {
					next = at
				}
				if peek {
					p.peekBuf = append(p.peekBuf, c)
				}
			}
		}
		clear(mc.idle[len(keep):])
		m.idle.Add(int64(len(keep) - len(mc.idle)))
		mc.idle = keep
	}
	p.reapAt = next
	p.mu.Unlock()

	for _, c := range expired {
		p.expire(c)
	}
	for _, c := range dropped {
		p.mc(c.Member.index).counters.expiredIdle.Add(1)
		p.closeConn(c, p.dropMode())
	}
	if peek {
		p.peekIdle(now)
	}
	return next
}

// peekIdle runs the stale check on the idle conns sweep collected, without
// holding p.mu, and drops those still idle that failed it. A conn lent out
// meanwhile is no longer in its stack and is left alone.
func (p *ConnPool) peekIdle(now time.Time) {
	for i, c := range p.peekBuf {
		p.peekBuf[i] = nil
		err := peekStale(c)
		if err == nil {
			continue
		}
		p.mu.Lock()
		removed := p.removeIdleLocked(c)
		p.mu.Unlock()
		if removed {
			p.dropStale(c, now, err)
		}
	}
	p.peekBuf = p.peekBuf[:0]
}

// peekStale is the stale check of a conn still in its idle stack, where a
// Get may take it at any moment: a peek only, so TLS records are not read
// here (Get's check, aliveTLS, reads them for the conn it takes). Bytes
// waiting on a TLS conn make it stale only when the member also sent its
// FIN (the close_notify then FIN of a member closing an idle conn:
// errTLSClosed); on a plain conn any byte, EOF or error does.
func peekStale(c *ServerConn) error {
	err := sockopt.Alive(c.TCP)
	if err != nil && c.TLS != nil && errors.Is(err, sockopt.ErrStaleData) {
		if !peerClosed(c.TCP) {
			return nil
		}
		return errTLSClosed
	}
	return err
}

// errTLSClosed is peekStale's verdict on a TLS conn whose member closed
// it: records waiting (its close_notify) and its FIN.
var errTLSClosed = fmt.Errorf("%w: close_notify and FIN waiting: %w", sockopt.ErrStale, io.EOF)

// removeIdleLocked takes c off its member's stack if it is still there.
// p.mu is held.
func (p *ConnPool) removeIdleLocked(c *ServerConn) bool {
	mc := p.mc(c.Member.index)
	j := slices.Index(mc.idle, c)
	if j < 0 {
		return false
	}
	mc.idle = slices.Delete(mc.idle, j, j+1)
	c.Member.idle.Add(-1)
	return true
}
