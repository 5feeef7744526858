package pool

import (
	"testing"
	"time"

	"github.com/tetherproxy/tether/config"
	"github.com/tetherproxy/tether/sockopt/socktest"
)

// A reload's new member list: the member that stays keeps its idle conn and
// the state set at run time; the new one gets traffic; the removed one gets
// none, drains its idle conn, and comes back as itself when named again.
func TestSetMembersKeepsStayingMembersAndDrainsRemovedOnes(t *testing.T) {
	// b closes idle conns after 300 ms: its drain ends with its own close.
	a, b, c := newLineBackend(t, 0), newLineBackend(t, 300*time.Millisecond), newLineBackend(t, 0)
	p, r := reusePool(t, config.Reuse{Mode: config.ReuseShared, MaxIdle: 8, PeekInterval: 20 * time.Millisecond}, 0, config.CloseReset, a.addr, b.addr)
	ma, mb := p.Members()[0], p.Members()[1]

	// One idle conn on each member, and a's weight set at run time.
	ca, cb := get(t, r), get(t, r)
	mustExchange(t, ca, "a")
	mustExchange(t, cb, "b")
	r.Put(ca, true)
	r.Put(cb, true)
	if r.Idle(ma) != 1 || r.Idle(mb) != 1 {
		t.Fatalf("idle a=%d b=%d, want 1 each", r.Idle(ma), r.Idle(mb))
	}
	ma.SetState(AdminDisabled)
	ma.SetState(AdminEnabled) // set at run time: the config's state no longer applies

	changes := p.SetMembers([]config.Member{
		{Address: a.addr, State: config.StateDisabled}, // ignored: a's state was set at run time
		{Address: c.addr},
	})
	t.Logf("changes: %q", changes)
	if got := p.Members(); len(got) != 2 || got[0] != ma || got[1].Address() != c.addr {
		t.Fatalf("members after reload: %v", got)
	}
	if ma.AdminState() != AdminEnabled {
		t.Errorf("a: %v, want enabled (set at run time, kept over the config's state)", ma.AdminState())
	}
	if mb.AdminState() != AdminDraining {
		t.Errorf("removed b: %v, want draining", mb.AdminState())
	}
	socktest.WaitFor(t, 5*time.Second, "the removed member to close its idle conn", func() bool { return mb.Active() == 0 })
	if r.Idle(ma) != 1 {
		t.Errorf("a lost its idle conn over the reload: idle %d", r.Idle(ma))
	}

	// Traffic: a's idle conn is reused, c gets new conns, b gets none.
	bAccepted := b.Accepted()
	for i := range 6 {
		sc := get(t, r)
		if sc.Member == mb {
			t.Fatalf("request %d went to the removed member", i)
		}
		mustExchange(t, sc, "x")
		r.Put(sc, true)
	}
	if a.Accepted() != 1 {
		t.Errorf("a accepted %d conns, want 1 (its idle conn kept)", a.Accepted())
	}
	if c.Accepted() == 0 {
		t.Error("the new member got no conn")
	}
	if b.Accepted() != bAccepted {
		t.Errorf("the removed member accepted %d new conns", b.Accepted()-bAccepted)
	}
	st := r.Stats()
	if len(st) != 2 || st[0].Address != a.addr || st[1].Address != c.addr {
		t.Errorf("stats cover %v, want the config's members", st)
	}

	// Named again: the same member, back in rotation with the config's state.
	p.SetMembers([]config.Member{{Address: a.addr}, {Address: b.addr}, {Address: c.addr}})
	if p.Members()[1] != mb || mb.AdminState() != AdminEnabled {
		t.Fatalf("b came back as %p %v, want itself, enabled", p.Members()[1], p.Members()[1].AdminState())
	}
	seen := false
	for range 9 {
		sc := get(t, r)
		seen = seen || sc.Member == mb
		mustExchange(t, sc, "y")
		r.Put(sc, true)
	}
	if !seen {
		t.Error("the member named again got no request")
	}
}

// A member added by a reload of a weighted pool takes its weight's share.
func TestSetMembersAddsToAWeightedPool(t *testing.T) {
	a, b := newLineBackend(t, 0), newLineBackend(t, 0)
	cfg := testPool(config.MethodWeighted, a.addr)
	p := startPool(t, cfg)
	d := p.Dialer(config.DefaultProfile())
	p.SetMembers([]config.Member{{Address: a.addr, Weight: 1}, {Address: b.addr, Weight: 3}})
	counts := map[string]int{}
	for range 8 {
		c, err := d.Connect(t.Context(), nil)
		if err != nil {
			t.Fatal(err)
		}
		counts[c.Member.Address()]++
		c.TCP.Close()
		c.Release()
	}
	if counts[a.addr] != 2 || counts[b.addr] != 6 {
		t.Errorf("picks %v, want 2 and 6 (weights 1:3)", counts)
	}
}
