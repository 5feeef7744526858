package pool

import (
	"crypto/tls"
	"sync"
	"sync/atomic"
	"time"

	"go.uber.org/zap"

	"github.com/tetherproxy/tether/config"
)

// MemberState is what a member offers to new connections.
type MemberState uint8

// Member states.
const (
	// Up: enabled and healthy (or health checks are off); gets connections.
	Up MemberState = iota
	// Down: enabled but failed its health checks; gets no connections.
	Down
	// Disabled: switched off in the config or at run time; gets no new
	// connections whatever its health.
	Disabled
	// Draining: set draining at run time; like Disabled, and its pooled
	// conns in use retire at the end of their exchange.
	Draining
)

// String returns "up", "down", "disabled" or "draining".
func (s MemberState) String() string {
	switch s {
	case Up:
		return "up"
	case Down:
		return "down"
	case Disabled:
		return "disabled"
	case Draining:
		return "draining"
	}
	return "unknown"
}

// AdminState is the state an operator sets (the config's state, then
// Member.SetState); it is kept apart from health.
type AdminState uint8

// Admin states.
const (
	// AdminEnabled: in rotation when healthy.
	AdminEnabled AdminState = iota
	// AdminDisabled: no new connections or requests; those open go on. Idle
	// pooled conns are closed, a reused conn in use gets "Connection:
	// close" on its current request and is closed after it.
	AdminDisabled
	// AdminDraining: like AdminDisabled (the pool treats both alike: a pooled
	// conn in use retires so that the member closes first, idle ones are
	// dropped); it tells operators and scripts that the member is on its way
	// out. tcp relays to the member finish as they would otherwise (their
	// idle timeout, or shutdown_timeout on exit): there is no per-member
	// bound yet.
	AdminDraining
)

// String returns "enabled", "disabled" or "draining".
func (s AdminState) String() string {
	switch s {
	case AdminEnabled:
		return "enabled"
	case AdminDisabled:
		return "disabled"
	case AdminDraining:
		return "draining"
	}
	return "unknown"
}

// ParseAdminState reads "enabled", "disabled" or "draining".
func ParseAdminState(s string) (AdminState, bool) {
	for _, a := range []AdminState{AdminEnabled, AdminDisabled, AdminDraining} {
		if a.String() == s {
			return a, true
		}
	}
	return 0, false
}

// Member is one backend address of a pool. Its methods are safe for
// concurrent use.
type Member struct {
	pool  *Pool
	index int // position in Pool.every
	addr  string
	seed  uint64      // source-hash seed derived from addr
	tls   *tls.Config // TLS toward the member (Pool.SetTLS); nil = plain TCP

	// weight (>= 1) and maxConns (0 = no limit) are the config's; a reload
	// that keeps the member may change them (Pool.SetMembers).
	weight   atomic.Int64
	maxConns atomic.Int64

	// removed: the config in force no longer names the member; it drains.
	// stopMon ends the health monitor (nil while none runs). Both are
	// guarded by Pool.mu. byAdmin: SetState set the admin state at run
	// time, so a reload keeps it rather than the config's state.
	removed bool
	stopMon chan struct{}
	byAdmin atomic.Bool

	// drainUntil (unix ns, 0 = not draining) is when a draining member's
	// member_drain_timeout ends; drainTimer then closes what is left. Set with
	// the admin state, under smu.
	drainUntil atomic.Int64
	drainTimer *time.Timer

	// admin is the AdminState; enabled mirrors admin == AdminEnabled for the
	// hot paths. smu serialises SetState so that the two agree.
	smu     sync.Mutex
	admin   atomic.Uint32
	enabled atomic.Bool
	healthy atomic.Bool

	// learn learns the member's idle timeout from the idle conns it closes
	// unannounced; every ConnPool of the member feeds and reads it.
	learn idleLearner

	// active counts every server-side conn to the member: in use, idle in
	// a ConnPool (preconnect stock or reuse), and dials in flight (reserved
	// before dialing so the limit holds). idle counts the idle ones among
	// them.
	active atomic.Int64
	idle   atomic.Int64

	connects          atomic.Uint64
	connectTimes      connectTimes // durations of the successful dials
	handshakes        atomic.Uint64
	handshakeFailures atomic.Uint64
	connectFailures   atomic.Uint64
	preconnectHits    atomic.Uint64
	staleDropped      atomic.Uint64
	healthTransitions atomic.Uint64
	checks            atomic.Uint64
	checkFailures     atomic.Uint64

	// hmu guards the consecutive result streaks. The health monitor and
	// passive results from connects both feed them.
	hmu       sync.Mutex
	okStreak  int
	badStreak int
}

func newMember(p *Pool, index int, cm config.Member) *Member {
	m := &Member{
		pool:  p,
		index: index,
		addr:  cm.Address,
		seed:  hashString(cm.Address),
	}
	m.weight.Store(int64(max(cm.Weight, 1)))
	m.maxConns.Store(int64(cm.MaxConnections))
	if p != nil {
		m.learn.ceiling = p.cfg.Reuse.IdleTimeout // relaxed above it, the learnt value is dropped
	}
	if cm.State == config.StateDisabled {
		m.admin.Store(uint32(AdminDisabled))
	}
	m.enabled.Store(cm.State != config.StateDisabled)
	m.healthy.Store(true) // optimistic start, like HAProxy
	return m
}

// Address returns the member's host:port.
func (m *Member) Address() string { return m.addr }

// Weight returns the member's weight for the weighted method (>= 1).
func (m *Member) Weight() int { return int(m.weight.Load()) }

// MaxConnections returns the member's connection cap; 0 = no limit.
func (m *Member) MaxConnections() int { return int(m.maxConns.Load()) }

// State returns Disabled or Draining when the member is switched off, else
// Up or Down from its health.
func (m *Member) State() MemberState {
	switch m.AdminState() {
	case AdminDisabled:
		return Disabled
	case AdminDraining:
		return Draining
	}
	if !m.healthy.Load() {
		return Down
	}
	return Up
}

// Active returns the member's current server-side conns, preconnected idle
// ones (and dials in flight) included.
func (m *Member) Active() int { return int(m.active.Load()) }

// load is what least-conns and random-two compare: the conns actually
// carrying traffic, so that an idle preconnect stock does not make a member
// look busy.
func (m *Member) load() int64 { return m.active.Load() - m.idle.Load() }

// AdminState returns the state set by the config or SetState.
func (m *Member) AdminState() AdminState { return AdminState(m.admin.Load()) }

// Healthy reports the member's health (true while health checks are off).
func (m *Member) Healthy() bool { return m.healthy.Load() }

// SetEnabled switches the member on (AdminEnabled) or off (AdminDisabled) at run
// time; see SetState.
func (m *Member) SetEnabled(on bool) {
	if on {
		m.SetState(AdminEnabled)
	} else {
		m.SetState(AdminDisabled)
	}
}

// SetState sets the member's admin state at run time. A member not AdminEnabled
// gets no new connections or requests, its idle pooled and preconnected
// conns are closed and its reused conns in use retire after their current
// exchange; its health monitor keeps running so its health is known when it
// comes back. The state outlives a reload that keeps the member (the
// config's state is its initial state). It returns the previous state.
func (m *Member) SetState(s AdminState) AdminState {
	m.byAdmin.Store(true)
	return m.setState(s)
}

// setState is SetState without marking the state as set at run time.
func (m *Member) setState(s AdminState) AdminState {
	m.smu.Lock()
	defer m.smu.Unlock()
	old := AdminState(m.admin.Swap(uint32(s)))
	if old == s {
		return old
	}
	m.setDrainLocked(s == AdminDraining)
	on := s == AdminEnabled
	if m.enabled.Swap(on) != on && m.pool != nil {
		m.pool.memberChanged(m, on, "admin")
	} else if m.pool != nil {
		m.pool.log.Info("member state changed", zap.String("member", m.addr),
			zap.Stringer("state", m.State()), zap.String("reason", "set by admin"))
	}
	return old
}

// eligible reports whether the member may get new connections.
func (m *Member) eligible() bool { return m.enabled.Load() && m.healthy.Load() }

// hasRoom reports whether one more conn would stay within MaxConnections.
func (m *Member) hasRoom() bool {
	limit := m.maxConns.Load()
	return limit <= 0 || m.active.Load() < limit
}

// tryAcquire reserves one conn slot; it refuses when the member is at its
// limit.
func (m *Member) tryAcquire() bool {
	limit := m.maxConns.Load()
	if limit <= 0 {
		m.active.Add(1)
		return true
	}
	for {
		n := m.active.Load()
		if n >= limit {
			return false
		}
		if m.active.CompareAndSwap(n, n+1) {
			return true
		}
	}
}

// release gives back one conn slot and tells every ConnPool of the pool
// (Pool.slotFreed): a filler held back by max_connections or a Get queued
// at the limit looks again. Callers must not hold a ConnPool's lock.
func (m *Member) release() {
	m.active.Add(-1)
	if m.pool != nil {
		m.pool.slotFreed(m)
	}
}

// idleClosed records that the member closed an idle conn on its own (s,
// seen at now). When that makes the learnt idle timeout shorter, every
// ConnPool's reaper looks again at its idle conns, and the new value is
// logged.
func (m *Member) idleClosed(s idleSample, now time.Time) {
	if !m.learn.observe(s, now) || m.pool == nil {
		return
	}
	if ce := m.pool.log.Check(zap.InfoLevel, "member idle timeout learnt"); ce != nil {
		ce.Write(zap.String("member", m.addr), zap.Duration("idle_timeout", m.learn.Timeout(now)),
			zap.Duration("close_idle", s.idle), zap.Uint64("samples", m.learn.samples.Load()))
	}
	m.pool.idleTimeoutShrank(m)
}

// MemberStats is a snapshot of a member's state and counters.
type MemberStats struct {
	Address string
	State   MemberState // what it offers now: up, down, disabled, draining
	Admin   AdminState  // set by the config or SetState
	Healthy bool        // health, apart from Admin (true while checks are off)

	Weight         int
	MaxConnections int // 0 = no limit
	Active         int // conns incl. preconnected idle ones and dials in flight
	Idle           int // idle conns in every ConnPool: preconnect stocks and reuse

	Connects          uint64 // successful dials (client and preconnect)
	ConnectFailures   uint64 // failed dials (client and preconnect)
	TLSHandshakes     uint64 // TLS handshakes completed with the member (pool TLS)
	TLSFailures       uint64 // TLS handshakes that failed (counted in ConnectFailures too)
	PreconnectHits    uint64 // preconnected conns handed to a client
	StaleDropped      uint64 // preconnected conns found closed/stale and dropped
	HealthTransitions uint64 // up->down and down->up changes
	Checks            uint64 // active health checks run
	CheckFailures     uint64 // active health checks failed

	// IdleTimeoutLearnt is the member's idle timeout learnt from the idle
	// conns it closed unannounced (0: none learnt); IdleCloses counts
	// those closes (the learner's samples).
	IdleTimeoutLearnt time.Duration
	IdleCloses        uint64
}

// Stats returns a snapshot of the member's counters. The fields are read one
// by one, so they may be from slightly different instants.
func (m *Member) Stats() MemberStats {
	return MemberStats{
		Address:           m.addr,
		State:             m.State(),
		Admin:             m.AdminState(),
		Healthy:           m.healthy.Load(),
		Weight:            m.Weight(),
		MaxConnections:    m.MaxConnections(),
		Active:            int(m.active.Load()),
		Idle:              int(m.idle.Load()),
		Connects:          m.connects.Load(),
		TLSHandshakes:     m.handshakes.Load(),
		TLSFailures:       m.handshakeFailures.Load(),
		ConnectFailures:   m.connectFailures.Load(),
		PreconnectHits:    m.preconnectHits.Load(),
		StaleDropped:      m.staleDropped.Load(),
		HealthTransitions: m.healthTransitions.Load(),
		Checks:            m.checks.Load(),
		CheckFailures:     m.checkFailures.Load(),
		IdleTimeoutLearnt: m.learn.Timeout(time.Now()),
		IdleCloses:        m.learn.samples.Load(),
	}
}
