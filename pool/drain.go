package pool

import (
	"time"
)

// Draining (AdminDraining: drained by the admin API, or removed by a
// reload) is disabled plus a gentler end for what the member still has:
//
//   - its idle pooled conns are kept, never lent, until the member closes
//     them (a peek sees it: the member closed first, TIME_WAIT is
//     there), for at most the pool's member_drain_timeout; a conn in use that
//     comes back joins them;
//   - its tcp relays go on for member_drain_timeout;
//   - then tether closes what is left: idle conns with the server
//     profile's close mode, relays through the callback the proxy set
//     with OnDrainEnd.
//
// A draining member that goes down is treated as disabled: its idle conns
// are closed at once.

// drainsIdle reports whether m's idle conns wait for the member to close
// them: it is draining and up.
func (m *Member) drainsIdle() bool {
	return m.AdminState() == AdminDraining && m.healthy.Load()
}

// drainDeadline is when m's drain ends (zero when it is not draining).
func (m *Member) drainDeadline() time.Time {
	if ns := m.drainUntil.Load(); ns != 0 {
		return time.Unix(0, ns)
	}
	return time.Time{}
}

// setDrainLocked starts (on) or stops m's drain clock. m.smu is held.
func (m *Member) setDrainLocked(on bool) {
	if m.drainTimer != nil {
		m.drainTimer.Stop()
		m.drainTimer = nil
	}
	if !on || m.pool == nil {
		m.drainUntil.Store(0)
		return
	}
	d := m.pool.cfg.DrainTimeout
	if d <= 0 {
		d = time.Minute // a Pool built without config defaults (tests)
	}
	m.drainUntil.Store(time.Now().Add(d).UnixNano())
	m.drainTimer = time.AfterFunc(d, m.drainEnded)
}

// drainEnded runs when a drain's time is up: the reapers close the idle
// conns left, the proxy cuts the relays left.
func (m *Member) drainEnded() {
	if m.AdminState() != AdminDraining {
		return
	}
	p := m.pool
	if cs := p.conns.Load(); cs != nil {
		for _, c := range *cs {
			c.wakeReaper()
		}
	}
	p.mu.Lock()
	f := p.onDrainEnd
	p.mu.Unlock()
	if f != nil {
		f(m)
	}
}

// OnDrainEnd sets what runs when a draining member's member_drain_timeout is up:
// the proxy ends the tcp relays to it. Set it before Start.
func (p *Pool) OnDrainEnd(f func(*Member)) {
	p.mu.Lock()
	p.onDrainEnd = f
	p.mu.Unlock()
}
