package pool

import (
	"context"
	"errors"
	"net"
	"strings"
	"testing"
	"time"

	"github.com/tetherproxy/tether/config"
	"github.com/tetherproxy/tether/sockopt"
	"github.com/tetherproxy/tether/sockopt/socktest"
)

func TestFailedConnectTriesTheNextMember(t *testing.T) {
	live := newBackend(t)
	dead := socktest.DeadAddr(t)
	cfg := testPool(config.MethodRoundRobin, dead, live.addr)
	cfg.ConnectRetries = 1
	p := startPool(t, cfg)
	d := p.Dialer(config.DefaultProfile())
	for range 6 {
		c, err := connect(t, d)
		if err != nil {
			t.Fatalf("Connect: %v", err)
		}
		if c.Member.Address() != live.addr || c.Preconnected || c.ConnectTime <= 0 {
			t.Fatalf("conn = member %s preconnected=%v took %s; want a fresh dial to %s",
				c.Member.Address(), c.Preconnected, c.ConnectTime, live.addr)
		}
		assertEcho(t, c)
	}
	if n := p.Members()[0].Stats().ConnectFailures; n < 1 || n > 6 {
		t.Errorf("dead member failures = %d, want 1..6", n)
	}
	if s := p.Members()[1].Stats(); s.Connects != 6 || s.Active != 6 {
		t.Errorf("live member stats = %+v, want 6 connects, 6 active", s)
	}
}

func TestRetriesAreBoundedAndEachMemberTriedOnce(t *testing.T) {
	addrs := []string{socktest.DeadAddr(t), socktest.DeadAddr(t), socktest.DeadAddr(t), socktest.DeadAddr(t)}
	cfg := testPool(config.MethodRoundRobin, addrs...)
	cfg.ConnectRetries = 1
	p := startPool(t, cfg)
	_, err := connect(t, p.Dialer(config.DefaultProfile()))
	if err == nil || errors.Is(err, ErrNoMember) {
		t.Fatalf("Connect = %v, want the dial error", err)
	}
	var op *net.OpError
	if !errors.As(err, &op) {
		t.Errorf("error %v does not wrap the dial error", err)
	}
	var failures uint64
	named := 0
	for _, m := range p.Members() {
		f := m.Stats().ConnectFailures
		failures += f
		if f > 1 {
			t.Errorf("member %s dialed %d times", m.Address(), f)
		}
		if f == 1 && strings.Contains(err.Error(), m.Address()) {
			named++
		}
	}
	if failures != 2 || named != 2 {
		t.Errorf("%d dials, %d named in %q; want 1+connect_retries = 2, both named", failures, named, err)
	}

	// More retries than members: each member still at most once.
	two := testPool(config.MethodRoundRobin, socktest.DeadAddr(t), socktest.DeadAddr(t))
	two.ConnectRetries = 10
	p2 := startPool(t, two)
	if _, err := connect(t, p2.Dialer(config.DefaultProfile())); err == nil {
		t.Fatal("Connect to two dead members succeeded")
	}
	for _, m := range p2.Members() {
		if f := m.Stats().ConnectFailures; f != 1 {
			t.Errorf("member %s dialed %d times, want 1", m.Address(), f)
		}
	}
}

func TestConnectStopsWithTheContext(t *testing.T) {
	cfg := testPool(config.MethodRoundRobin, socktest.DeadAddr(t))
	p := startPool(t, cfg)
	ctx, cancel := context.WithCancel(context.Background())
	cancel()
	_, err := p.Dialer(config.DefaultProfile()).Connect(ctx, nil)
	if !errors.Is(err, context.Canceled) {
		t.Fatalf("Connect with a cancelled ctx = %v", err)
	}
	if f := p.Members()[0].Stats().ConnectFailures; f != 0 {
		t.Errorf("cancelled connect counted against the member: %d", f)
	}
}

func TestDisabledMemberGetsNoConnections(t *testing.T) {
	b1, b2 := newBackend(t), newBackend(t)
	cfg := testPool(config.MethodRoundRobin, b1.addr, b2.addr)
	cfg.Members[1].State = config.StateDisabled
	p := startPool(t, cfg)
	d := p.Dialer(config.DefaultProfile())
	m0, m1 := p.Members()[0], p.Members()[1]
	if m1.State() != Disabled || m1.State().String() != "disabled" {
		t.Fatalf("member 1 state = %v", m1.State())
	}
	for range 3 {
		if c, err := connect(t, d); err != nil || c.Member != m0 {
			t.Fatalf("Connect = %v, %v; want member 0", c, err)
		}
	}
	m1.SetEnabled(true)
	m0.SetEnabled(false)
	if c, err := connect(t, d); err != nil || c.Member != m1 {
		t.Fatalf("Connect = %v, %v; want member 1", c, err)
	}
	m1.SetEnabled(false)
	if _, err := connect(t, d); !errors.Is(err, ErrNoMember) {
		t.Fatalf("all disabled: Connect = %v, want ErrNoMember", err)
	}
}

func TestReleaseIsIdempotent(t *testing.T) {
	b := newBackend(t)
	p := startPool(t, testPool(config.MethodRoundRobin, b.addr))
	c, err := connect(t, p.Dialer(config.DefaultProfile()))
	if err != nil {
		t.Fatal(err)
	}
	m := c.Member
	if m.Active() != 1 {
		t.Fatalf("active = %d", m.Active())
	}
	c.TCP.Close()
	c.Release()
	c.Release()
	if m.Active() != 0 {
		t.Fatalf("active after double release = %d, want 0", m.Active())
	}
}

func TestPreconnectKeepsStockAndRefillsAfterUse(t *testing.T) {
	b := newBackend(t)
	cfg := testPool(config.MethodRoundRobin, b.addr)
	cfg.Preconnect = 3
	p := startPool(t, cfg)
	d := p.Dialer(config.DefaultProfile())
	if d2 := p.Dialer(config.DefaultProfile()); d2 != d {
		t.Fatal("same profile name got a second Dialer")
	}
	m := p.Members()[0]
	socktest.WaitFor(t, 5*time.Second, "3 preconnected conns", func() bool { return b.Open() == 3 && d.Idle(m) == 3 })

	c, err := connect(t, d)
	if err != nil {
		t.Fatal(err)
	}
	if !c.Preconnected || c.ConnectTime != 0 {
		t.Fatalf("conn preconnected=%v connect time %s; want a preconnected one", c.Preconnected, c.ConnectTime)
	}
	assertEcho(t, c)
	socktest.WaitFor(t, 5*time.Second, "refill to 3 idle", func() bool { return b.Accepted() == 4 && d.Idle(m) == 3 })
	if s := m.Stats(); s.Active != 4 || s.Idle != 3 || s.PreconnectHits != 1 {
		t.Errorf("stats = %+v, want active 4, idle 3, 1 hit", s)
	}
	closeConn(c)
	if m.Active() != 3 {
		t.Errorf("active after release = %d, want 3", m.Active())
	}

	// Close resets the idle conns: the backend sees RST, not FIN, so no
	// TIME_WAIT is left on tether's side.
	p.Close()
	socktest.WaitFor(t, 5*time.Second, "idle conns closed", func() bool { return b.Open() == 0 })
	if r := b.resets.Load(); r != 3 {
		t.Errorf("backend saw %d resets, want 3 (the idle conns)", r)
	}
	if s := m.Stats(); s.Active != 0 || s.Idle != 0 {
		t.Errorf("after Close: %+v", s)
	}
}

func TestPreconnectSpreadsOverUpMembersAndDropsADownOne(t *testing.T) {
	b1, b2 := newBackend(t), newBackend(t)
	cfg := testPool(config.MethodRoundRobin, b1.addr, b2.addr)
	cfg.Preconnect = 3
	cfg.Health = fastHealth(1, 2)
	p := startPool(t, cfg)
	d := p.Dialer(config.DefaultProfile())
	m1, m2 := p.Members()[0], p.Members()[1]
	socktest.WaitFor(t, 5*time.Second, "stock 2+1", func() bool { return d.Idle(m1) == 2 && d.Idle(m2) == 1 })

	b1.Close()
	socktest.WaitFor(t, 5*time.Second, "member 1 down, member 2 holding all 3", func() bool {
		return m1.State() == Down && d.Idle(m1) == 0 && d.Idle(m2) == 3
	})
	if m1.Active() != 0 {
		t.Errorf("down member still has %d conns", m1.Active())
	}

	newBackendAt(t, b1.addr)
	socktest.WaitFor(t, 5*time.Second, "back to 2+1", func() bool {
		return m1.State() == Up && d.Idle(m1) == 2 && d.Idle(m2) == 1
	})
	socktest.WaitFor(t, 5*time.Second, "trimmed conn closed", func() bool { return b2.Open() == 1 })
}

func TestStalePreconnectedConnIsNeverHandedOut(t *testing.T) {
	b := newBackend(t)
	cfg := testPool(config.MethodRoundRobin, b.addr)
	cfg.Preconnect = 1
	cfg.PeekInterval = time.Hour // no background peek here: Connect's own check must catch it
	p := startPool(t, cfg)
	d := p.Dialer(config.DefaultProfile())
	m := p.Members()[0]
	socktest.WaitFor(t, 5*time.Second, "1 preconnected conn", func() bool { return d.Idle(m) == 1 && b.Open() == 1 })

	b.CloseConns() // the member closes it while idle (its keepalive timeout)
	var stale *net.TCPConn
	socktest.WaitFor(t, 5*time.Second, "the FIN to reach the idle conn", func() bool {
		d.stock.mu.Lock()
		defer d.stock.mu.Unlock()
		idle := d.stock.mc(0).idle
		if len(idle) == 1 && errors.Is(sockopt.Alive(idle[0].TCP), sockopt.ErrStale) {
			stale = idle[0].TCP
		}
		return stale != nil
	})

	c, err := connect(t, d)
	if err != nil {
		t.Fatal(err)
	}
	if c.TCP == stale {
		t.Fatal("the stale conn was handed out")
	}
	// c is a fresh dial, or the refill when the filler won the race: either
	// way a live conn.
	assertEcho(t, c)
	wantHits := uint64(0)
	if c.Preconnected {
		wantHits = 1
	}
	if s := m.Stats(); s.StaleDropped != 1 || s.PreconnectHits != wantHits {
		t.Errorf("stats = %+v, want 1 stale dropped, %d hits", s, wantHits)
	}
	socktest.WaitFor(t, 5*time.Second, "stock refilled", func() bool { return d.Idle(m) == 1 })
	c2, err := connect(t, d)
	if err != nil || !c2.Preconnected {
		t.Fatalf("Connect = %v, %v; want the refilled preconnected conn", c2, err)
	}
	assertEcho(t, c2)
}

func TestStaleIdleConnsArePrunedInTheBackground(t *testing.T) {
	b := newBackend(t)
	cfg := testPool(config.MethodRoundRobin, b.addr)
	cfg.Preconnect = 2
	cfg.PeekInterval = 50 * time.Millisecond // paces the background peek
	p := startPool(t, cfg)
	d := p.Dialer(config.DefaultProfile())
	m := p.Members()[0]
	socktest.WaitFor(t, 5*time.Second, "2 preconnected conns", func() bool { return d.Idle(m) == 2 && b.Open() == 2 })
	b.CloseConns()
	socktest.WaitFor(t, 5*time.Second, "stale conns pruned and replaced", func() bool {
		return m.Stats().StaleDropped == 2 && d.Idle(m) == 2 && b.Open() == 2
	})
}

func TestMaxConnectionsCapsPreconnectAndConnect(t *testing.T) {
	b := newBackend(t)
	cfg := testPool(config.MethodRoundRobin, b.addr)
	cfg.Preconnect = 5
	cfg.Members[0].MaxConnections = 2
	p := startPool(t, cfg)
	d := p.Dialer(config.DefaultProfile())
	m := p.Members()[0]
	// The member's accept may lag the dial that returned: wait for both.
	socktest.WaitFor(t, 5*time.Second, "2 preconnected conns", func() bool { return d.Idle(m) == 2 && b.Accepted() >= 2 })
	d.stock.fill(time.Now()) // another look at the stock must start nothing
	if a, n := m.Active(), b.Accepted(); a != 2 || n != 2 {
		t.Fatalf("active %d, backend accepted %d; want 2 (the limit)", a, n)
	}

	c1, err := connect(t, d)
	if err != nil || !c1.Preconnected {
		t.Fatalf("Connect 1 = %v, %v", c1, err)
	}
	c2, err := connect(t, d)
	if err != nil || !c2.Preconnected {
		t.Fatalf("Connect 2 = %v, %v", c2, err)
	}
	if _, err := connect(t, d); !errors.Is(err, ErrMemberLimit) || !errors.Is(err, ErrNoMember) {
		t.Fatalf("Connect at the limit = %v, want ErrMemberLimit (an ErrNoMember)", err)
	}
	if a := m.Active(); a != 2 {
		t.Fatalf("active = %d, want 2", a)
	}
	closeConn(c1)
	socktest.WaitFor(t, 5*time.Second, "the freed slot refilled", func() bool { return d.Idle(m) == 1 && b.Accepted() >= 3 })
	if a, n := m.Active(), b.Accepted(); a != 2 || n != 3 {
		t.Errorf("active %d, accepted %d; want 2, 3", a, n)
	}
}

func TestConnectSkipsAMemberAtItsLimit(t *testing.T) {
	b1, b2 := newBackend(t), newBackend(t)
	cfg := testPool(config.MethodRoundRobin, b1.addr, b2.addr)
	cfg.Members[0].MaxConnections = 1
	p := startPool(t, cfg)
	d := p.Dialer(config.DefaultProfile())
	for range 6 {
		c, err := connect(t, d)
		if err != nil {
			t.Fatal(err)
		}
		assertEcho(t, c)
	}
	if a1, a2 := p.Members()[0].Active(), p.Members()[1].Active(); a1 != 1 || a2 != 5 {
		t.Errorf("active = %d, %d; want 1 (its limit), 5", a1, a2)
	}
	if f := p.Members()[0].Stats().ConnectFailures; f != 0 {
		t.Errorf("a member at its limit counted %d failures", f)
	}
}

func TestDialerAfterStartGetsItsStock(t *testing.T) {
	b := newBackend(t)
	cfg := testPool(config.MethodRoundRobin, b.addr)
	cfg.Preconnect = 1
	p := startPool(t, cfg)
	tcp := config.DefaultProfile()
	other := config.DefaultProfile()
	other.Name = "other"
	d1, d2 := p.Dialer(tcp), p.Dialer(other)
	if d1 == d2 {
		t.Fatal("two profiles share a Dialer")
	}
	m := p.Members()[0]
	socktest.WaitFor(t, 5*time.Second, "one idle conn per profile", func() bool { return d1.Idle(m) == 1 && d2.Idle(m) == 1 })
}
