package pool

import (
	"context"
	"testing"
	"time"

	"github.com/tetherproxy/tether/config"
	"github.com/tetherproxy/tether/sockopt"
	"github.com/tetherproxy/tether/sockopt/socktest"
)

func TestAdminStateIsApartFromHealth(t *testing.T) {
	m := newMember(nil, 0, config.Member{Address: "127.0.0.1:1", State: config.StateDisabled})
	if m.AdminState() != AdminDisabled || m.State() != Disabled || !m.Healthy() {
		t.Fatalf("config state disabled: admin %v state %v healthy %v", m.AdminState(), m.State(), m.Healthy())
	}
	for _, tc := range []struct {
		set   AdminState
		state MemberState
	}{{AdminDraining, Draining}, {AdminEnabled, Up}, {AdminDisabled, Disabled}, {AdminEnabled, Up}} {
		m.SetState(tc.set)
		st := m.Stats()
		if st.Admin != tc.set || st.State != tc.state || !st.Healthy || m.eligible() != (tc.set == AdminEnabled) {
			t.Errorf("after SetState(%v): stats admin %v state %v healthy %v, eligible %v", tc.set, st.Admin, st.State, st.Healthy, m.eligible())
		}
	}
	m.healthy.Store(false)
	m.SetState(AdminDraining)
	if st := m.Stats(); st.Admin != AdminDraining || st.Healthy || st.State != Draining {
		t.Errorf("a down member set draining: %+v", st)
	}
	for _, s := range []string{"enabled", "disabled", "draining"} {
		if a, ok := ParseAdminState(s); !ok || a.String() != s {
			t.Errorf("ParseAdminState(%q) = %v, %v", s, a, ok)
		}
	}
	if _, ok := ParseAdminState("up"); ok {
		t.Error(`ParseAdminState("up") ok`)
	}
}

// A disabled member gets no new conns; a conn it already has goes on.
func TestDisabledMemberKeepsItsOpenConnButGetsNoNewOne(t *testing.T) {
	a, b := newLineBackend(t, 0), newLineBackend(t, 0)
	p, r := reusePool(t, config.Reuse{MaxIdle: 2}, 0, config.CloseGraceful, a.addr, b.addr)
	c := get(t, r)
	other := p.Members()[1-c.Member.index]
	c.Member.SetState(AdminDisabled)
	for i := range 4 {
		n := get(t, r)
		if n.Member != other {
			t.Fatalf("Get %d went to %s, the disabled member", i, n.Member.addr)
		}
		mustExchange(t, n, "new")
		r.Put(n, true)
	}
	mustExchange(t, c, "still-going") // the open conn goes on
	mustExchange(t, c, "and-on")
	if !c.Retire() {
		t.Error("Retire = false on a disabled member's conn")
	}
	r.Discard(c, DiscardFailed)
	c.Member.SetState(AdminEnabled)
	seen := map[*Member]bool{}
	for range 4 {
		n := get(t, r)
		seen[n.Member] = true
		r.Put(n, true)
	}
	if len(seen) != 2 {
		t.Errorf("after enable, Gets went to %d members, want both back in rotation", len(seen))
	}
}

// A draining member's pooled conn in use retires: its last exchange asks
// the member to close, and the member closes first.
func TestDrainingMemberRetiresItsPooledConns(t *testing.T) {
	b := newLineBackend(t, 0)
	p, r := reusePool(t, config.Reuse{MaxIdle: 2, PeekInterval: 20 * time.Millisecond}, 0, config.CloseGraceful, b.addr)
	c, idle := get(t, r), get(t, r)
	r.Put(idle, true)
	m := p.Members()[0]
	m.SetState(AdminDraining)
	if m.State() != Draining {
		t.Fatalf("state %v, want draining", m.State())
	}
	// Its idle conn waits for the member's close (member_drain_timeout is 60 s):
	// it is kept, never lent.
	time.Sleep(100 * time.Millisecond) // five peeks
	if r.Idle(m) != 1 {
		t.Fatalf("the draining member's idle conns: %d, want its 1 kept until the member closes it", r.Idle(m))
	}
	if !c.Retire() {
		t.Fatal("Retire = false on a draining member's conn")
	}
	tetherSide, memberSide := addrPort(c.TCP.LocalAddr()), addrPort(c.TCP.RemoteAddr())
	mustExchange(t, c, "bye") // the request that carries Connection: close
	r.Put(c, true)
	assertTimeWaitOnMember(t, tetherSide, memberSide)
	if s := stats(r, 0); s.Retired != 1 || s.RetiredByMemberClose != 1 {
		t.Errorf("stats %+v; want 1 retired, by the member's close", s)
	}
	ctx, cancel := context.WithTimeout(context.Background(), time.Second)
	defer cancel()
	if _, err := r.Get(ctx, nil); err == nil {
		t.Error("Get with the only member draining succeeded")
	}
}

// A draining member's idle pooled conn is never lent and waits for the
// member to close it: the member closes first, no TIME_WAIT on tether.
func TestDrainingMembersIdleConnWaitsForTheMembersClose(t *testing.T) {
	b := newLineBackend(t, 300*time.Millisecond) // the member closes idle conns after 300 ms
	p, r := reusePool(t, config.Reuse{MaxIdle: 2, PeekInterval: 20 * time.Millisecond}, 0, config.CloseGraceful, b.addr)
	c := get(t, r)
	mustExchange(t, c, "hi")
	tetherSide, memberSide := addrPort(c.TCP.LocalAddr()), addrPort(c.TCP.RemoteAddr())
	r.Put(c, true)
	m := p.Members()[0]
	m.SetState(AdminDraining)
	ctx, cancel := context.WithTimeout(context.Background(), 100*time.Millisecond)
	defer cancel()
	if _, err := r.Get(ctx, nil); err == nil {
		t.Fatal("Get lent a draining member's conn")
	}
	socktest.WaitFor(t, 5*time.Second, "the member to close the idle conn", func() bool { return r.Idle(m) == 0 && m.Active() == 0 })
	if s := stats(r, 0); s.StaleOnPeek != 1 || s.ExpiredIdle != 0 {
		t.Errorf("stats %+v: want the conn found closed by the member (stale on peek), none expired by tether", s)
	}
	if hasSocket(t, tetherSide, memberSide, sockopt.StateTimeWait) {
		t.Errorf("tether's side %s -> %s is in TIME_WAIT", tetherSide, memberSide)
	}
}

// A member that never closes its idle conns ends its drain at
// member_drain_timeout: tether closes what is left.
func TestDrainTimeoutBoundsADrain(t *testing.T) {
	b := newLineBackend(t, 0)
	cfg := testPool(config.MethodRoundRobin, b.addr)
	cfg.DrainTimeout = 200 * time.Millisecond
	p := startPool(t, cfg)
	r := NewReusePool(p.Dialer(config.DefaultProfile()), settings(config.Reuse{MaxIdle: 2}))
	t.Cleanup(r.Close)
	c := get(t, r)
	mustExchange(t, c, "hi")
	r.Put(c, true)
	m := p.Members()[0]
	ended := make(chan *Member, 1)
	p.OnDrainEnd(func(m *Member) { ended <- m })
	start := time.Now()
	m.SetState(AdminDraining)
	socktest.WaitFor(t, 5*time.Second, "the drain to close the idle conn", func() bool { return m.Active() == 0 })
	if took := time.Since(start); took < 150*time.Millisecond {
		t.Errorf("idle conn closed after %v, before member_drain_timeout (200ms)", took)
	}
	select {
	case got := <-ended:
		if got != m {
			t.Errorf("OnDrainEnd for %v", got)
		}
	case <-time.After(5 * time.Second):
		t.Error("OnDrainEnd did not run")
	}
}
