package pool

import (
	"slices"
	"time"

	"go.uber.org/zap"

	"github.com/tetherproxy/tether/config"
)

// Filler dial backoff per member after a failed dial: 250 ms, doubling, at
// most 10 s; reset by a successful dial or the member coming up.
const (
	fillBackoffMin = 250 * time.Millisecond
	fillBackoffMax = 10 * time.Second
)

func backoff(failures int) time.Duration {
	return min(fillBackoffMin<<min(failures-1, 10), fillBackoffMax)
}

// fill is the filler: it brings every eligible member's idle conns plus
// filler dials in flight up to the member's target. It reserves slots with
// tryAcquire (a member at its max_connections gets no more) and starts one
// goroutine per dial, or a single one while the member is failing. A stock
// above a member's share (a member came back and the shares moved) closes
// its oldest idle conns. It returns the earliest backoff end still pending,
// or the zero time. The reaper goroutine calls it (and tests).
func (p *ConnPool) fill(now time.Time) (next time.Time) {
	var dialsBuf [8]*Member
	dials := dialsBuf[:0]
	var trimmed []*ServerConn
	p.mu.Lock()
	if p.closed || p.ctx.Err() != nil { // closed, or the pool closed first: no more dials
		p.mu.Unlock()
		return time.Time{}
	}
	p.setTargetsLocked()
	for i, m := range p.pool.all() {
		mc := p.mc(i)
		// Set before looking, so that a slot freed or the member coming up
		// from here on wakes the next fill.
		mc.blocked.Store(true)
		if !m.eligible() {
			continue // the reaper drops its idle conns
		}
		if p.stock {
			trimmed = p.trimLocked(m, trimmed)
		}
		have := len(mc.idle) + mc.dialing
		if have >= mc.target {
			mc.blocked.Store(false)
			continue
		}
		if now.Before(mc.retryAt) {
			next = earliest(mc.retryAt, next) // next may be zero: earliest ignores it
			continue
		}
		limited := false
		for ; have < mc.target; have++ {
			if mc.failures > 0 && mc.dialing > 0 {
				break // failing: one probing dial at a time
			}
			if !m.tryAcquire() {
				limited = true
				break
			}
			mc.dialing++
			dials = append(dials, m)
		}
		if !limited {
			mc.blocked.Store(false) // the dial's end wakes the filler
		}
	}
	p.wg.Add(len(dials)) // the reaper is counted: never from zero
	p.mu.Unlock()
	for _, c := range trimmed {
		p.closeConn(c, config.CloseReset)
	}
	for _, m := range dials {
		go p.fillDial(m)
	}
	return next
}

// setTargetsLocked sets every member's target: 0 when it is not eligible;
// else MinIdle, or for a stock its share of preconnect: of k eligible
// members the i-th (in pool order) gets preconnect/k, plus one when
// i < preconnect%k. p.mu is held.
func (p *ConnPool) setTargetsLocked() {
	k := 0
	for _, m := range p.pool.all() {
		if m.eligible() {
			k++
		}
	}
	total, rank := p.cfg.MaxIdle, 0
	for i, m := range p.pool.all() {
		mc := p.mc(i)
		switch {
		case !m.eligible():
			mc.target = 0
		case !p.stock:
			mc.target = p.cfg.MinIdle
		default:
			mc.target = total / k
			if rank < total%k {
				mc.target++
			}
			rank++
		}
	}
}

// trimLocked takes a stock member's oldest idle conns off its stack while
// it holds more than its share, appending them to trimmed. p.mu is held.
func (p *ConnPool) trimLocked(m *Member, trimmed []*ServerConn) []*ServerConn {
	mc := p.mc(m.index)
	for len(mc.idle) > 0 && len(mc.idle)+mc.dialing > mc.target {
		trimmed = append(trimmed, mc.idle[0])
		mc.idle = slices.Delete(mc.idle, 0, 1)
		m.idle.Add(-1)
	}
	return trimmed
}

// fillDial dials one conn for m, whose slot fill reserved, and parks it
// idle (or hands it to a queued Get). A failure backs m off; both ends
// wake the filler.
func (p *ConnPool) fillDial(m *Member) {
	defer p.wg.Done()
	defer p.kickFill()
	mc := p.mc(m.index)
	d, err := p.dialer.dial(p.ctx, m)
	if err != nil {
		p.fillFailed(m, err)
		return
	}
	p.pool.observe(m, nil, p.fillSource())
	now := time.Now()
	c := p.newConn(d, m, now)
	c.out = false
	mc.counters.opened.Add(1)
	mc.counters.warmed.Add(1)
	p.mu.Lock()
	mc.dialing--
	mc.failures, mc.retryAt = 0, time.Time{}
	if p.closed || p.ctx.Err() != nil || !m.eligible() { // gone meanwhile: unused, so RST
		p.mu.Unlock()
		p.closeConn(c, config.CloseReset)
		return
	}
	p.parkLocked(c, now) // unlocks
}

// fillFailed ends a failed filler dial to m: its slot is released and,
// unless Close cut the dial short, m backs off, the failure is counted and
// observed by passive health.
func (p *ConnPool) fillFailed(m *Member, err error) {
	mc := p.mc(m.index)
	cut := p.ctx.Err() != nil // Close: not the member's fault
	p.mu.Lock()
	mc.dialing--
	if !cut {
		mc.failures++
		mc.retryAt = time.Now().Add(backoff(mc.failures))
	}
	p.mu.Unlock()
	m.release()
	if cut {
		return
	}
	mc.counters.warmFailed.Add(1)
	if ce := p.pool.log.Check(zap.DebugLevel, "filler dial failed"); ce != nil {
		ce.Write(zap.String("member", m.addr), zap.String("profile", p.dialer.profile.Name),
			zap.String("source", p.fillSource()), zap.Error(err))
	}
	if memberFault(err) {
		p.pool.observe(m, err, p.fillSource())
	}
}

// fillSource names the filler in health logs: "preconnect" or "min_idle".
func (p *ConnPool) fillSource() string {
	if p.stock {
		return "preconnect"
	}
	return "min_idle"
}
