package pool

import (
	"fmt"
	"slices"

	"github.com/tetherproxy/tether/config"
)

// SetMembers makes cms the pool's members (a reload). A member whose
// address stays keeps everything it has: its conns (idle, warm, in use),
// counters, health, learnt idle timeout and an admin state set at run
// time; its weight and max_connections become the config's, and so does
// its state unless SetState set one. A new address becomes a member,
// enabled or disabled as the config says, with its own health monitor. A
// member the config no longer names is removed from rotation and drains:
// no new conns, its conns in use retire, and it stays listed by nothing
// but the conns it still has; named again later it comes back as itself.
// It returns one line per change, for the reload's report.
func (p *Pool) SetMembers(cms []config.Member) []string {
	p.mu.Lock()
	defer p.mu.Unlock()
	every := p.all()
	byAddr := make(map[string]*Member, len(every))
	for _, m := range every {
		byAddr[m.addr] = m
	}
	var changes []string
	var next, added []*Member
	grown := every
	for _, cm := range cms {
		m, ok := byAddr[cm.Address]
		switch {
		case !ok:
			m = newMember(p, len(grown), cm)
			if p.tlsFor != nil {
				m.tls = p.tlsFor(m.addr)
			}
			grown = append(slices.Clip(grown), m)
			added = append(added, m)
			changes = append(changes, fmt.Sprintf("member %s added", m.addr))
		case m.removed:
			m.removed = false
			m.byAdmin.Store(false)
			added = append(added, m)
			changes = append(changes, fmt.Sprintf("member %s added back", m.addr))
		default:
			changes = append(changes, m.update(cm)...)
		}
		next = append(next, m)
	}
	if len(grown) > len(every) {
		p.publishEvery(grown)
	}
	removed := slices.DeleteFunc(slices.Clone(p.Members()), func(m *Member) bool { return slices.Contains(next, m) })
	p.members.Store(&next)
	for _, m := range removed {
		m.removed = true
		p.stopMonitorLocked(m)
		m.setState(AdminDraining)
		changes = append(changes, fmt.Sprintf("member %s removed: draining", m.addr))
	}
	for _, m := range added {
		state := AdminEnabled
		if cmState(cms, m.addr) == config.StateDisabled {
			state = AdminDisabled
		}
		m.setState(state)
		if p.started && !p.closed {
			p.startMonitorLocked(m)
		}
	}
	return changes
}

// update applies a kept member's new config: weight, max_connections, and
// its state unless one was set at run time.
func (m *Member) update(cm config.Member) (changes []string) {
	if w := int64(max(cm.Weight, 1)); m.weight.Swap(w) != w {
		changes = append(changes, fmt.Sprintf("member %s weight %d", m.addr, w))
	}
	if n := int64(cm.MaxConnections); m.maxConns.Swap(n) != n {
		changes = append(changes, fmt.Sprintf("member %s max_connections %d", m.addr, n))
		if m.pool != nil {
			m.pool.slotFreed(m) // a higher limit lets a queued Get or the filler go on
		}
	}
	if m.byAdmin.Load() {
		return changes
	}
	state := AdminEnabled
	if cm.State == config.StateDisabled {
		state = AdminDisabled
	}
	if old := m.setState(state); old != state {
		changes = append(changes, fmt.Sprintf("member %s %s", m.addr, state))
	}
	return changes
}

func cmState(cms []config.Member, addr string) string {
	for _, cm := range cms {
		if cm.Address == addr {
			return cm.State
		}
	}
	return ""
}

// publishEvery grows every live ConnPool's per-member records to the new
// index space, then publishes it: a member is never seen before every
// ConnPool has its record. addConnPool grows a new ConnPool under the same
// lock.
func (p *Pool) publishEvery(every []*Member) {
	p.connsMu.Lock()
	defer p.connsMu.Unlock()
	if cs := p.conns.Load(); cs != nil {
		for _, c := range *cs {
			c.grow(len(every))
		}
	}
	p.every.Store(&every)
}

// startMonitorLocked starts m's health monitor (health type tcp or http).
// p.mu is held.
func (p *Pool) startMonitorLocked(m *Member) {
	if p.cfg.Health.Type == config.HealthNone || m.stopMon != nil {
		return
	}
	m.stopMon = make(chan struct{})
	p.wg.Add(1)
	go p.monitor(m, m.stopMon)
}

// stopMonitorLocked ends m's health monitor. p.mu is held.
func (p *Pool) stopMonitorLocked(m *Member) {
	if m.stopMon != nil {
		close(m.stopMon)
		m.stopMon = nil
	}
}

// Inherit carries over, from old (the pool this one replaces in a reload
// that changed more than its members), each member's health and the admin
// state set at run time, by address. Call it before Start.
func (p *Pool) Inherit(old *Pool) {
	for _, m := range p.Members() {
		for _, om := range old.Members() {
			if om.addr != m.addr {
				continue
			}
			m.healthy.Store(om.healthy.Load())
			if om.byAdmin.Load() {
				m.SetState(om.AdminState())
			}
		}
	}
}
