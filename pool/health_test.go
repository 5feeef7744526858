package pool

import (
	"context"
	"errors"
	"testing"
	"time"

	"go.uber.org/zap"
	"go.uber.org/zap/zapcore"
	"go.uber.org/zap/zaptest/observer"

	"github.com/tetherproxy/tether/config"
	"github.com/tetherproxy/tether/sockopt/socktest"
)

func TestHealthMarksDownAfterFallAndUpAfterRise(t *testing.T) {
	b := newBackend(t)
	addr := b.addr
	cfg := testPool(config.MethodRoundRobin, addr)
	cfg.Health = fastHealth(2, 3)
	core, logs := observer.New(zapcore.InfoLevel)
	p, err := New(cfg, zap.New(core))
	if err != nil {
		t.Fatal(err)
	}
	p.Start()
	defer p.Close()
	m := p.Members()[0]

	socktest.WaitFor(t, 5*time.Second, "first successful checks", func() bool { return m.Stats().Checks >= 2 })
	if s := m.Stats(); s.State != Up || s.HealthTransitions != 0 {
		t.Fatalf("healthy member: %+v", s)
	}

	b.Close()
	socktest.WaitFor(t, 5*time.Second, "member down", func() bool { return m.State() == Down })
	s := m.Stats()
	if s.CheckFailures < 3 {
		t.Errorf("down after %d failed checks, want fall = 3", s.CheckFailures)
	}
	if s.HealthTransitions != 1 {
		t.Errorf("transitions = %d, want 1", s.HealthTransitions)
	}

	failedBefore := m.Stats().CheckFailures
	newBackendAt(t, addr)
	socktest.WaitFor(t, 5*time.Second, "member up again", func() bool { return m.State() == Up })
	s = m.Stats()
	if ok := s.Checks - s.CheckFailures; ok < 2+2 { // 2 before the outage, rise = 2 after
		t.Errorf("up after %d successful checks in all, want >= 4", ok)
	}
	if s.CheckFailures < failedBefore {
		t.Errorf("failures went backwards")
	}
	if s.HealthTransitions != 2 {
		t.Errorf("transitions = %d, want 2", s.HealthTransitions)
	}
	p.Close()

	// Only transitions are logged: one down (warn), one up (info).
	down := logs.FilterMessage("member down").All()
	up := logs.FilterMessage("member up").All()
	if len(down) != 1 || len(up) != 1 || logs.Len() != 2 {
		t.Fatalf("logs: %d down, %d up, %d in all; want 1, 1, 2", len(down), len(up), logs.Len())
	}
	if down[0].Level != zapcore.WarnLevel || down[0].ContextMap()["member"] != addr || down[0].ContextMap()["pool"] != "test" {
		t.Errorf("down log = %v %v", down[0].Level, down[0].ContextMap())
	}
	if _, ok := down[0].ContextMap()["error"]; !ok {
		t.Errorf("down log has no reason: %v", down[0].ContextMap())
	}
}

func TestHealthChecksLeaveNoTimeWaitOnTheBackend(t *testing.T) {
	b := newBackend(t)
	cfg := testPool(config.MethodRoundRobin, b.addr)
	cfg.Health = fastHealth(1, 3)
	p := startPool(t, cfg)
	m := p.Members()[0]
	socktest.WaitFor(t, 5*time.Second, "3 checks", func() bool { return m.Stats().Checks >= 3 })
	socktest.WaitFor(t, 5*time.Second, "probe conns reset", func() bool { return b.resets.Load() >= 2 })
	if s := m.Stats(); s.State != Up || s.HealthTransitions != 0 {
		t.Errorf("stats = %+v", s)
	}
}

func TestAllMembersDownFailsAtOnceWithErrNoMember(t *testing.T) {
	b1, b2 := newBackend(t), newBackend(t)
	cfg := testPool(config.MethodRoundRobin, b1.addr, b2.addr)
	cfg.ConnectTimeout = 3 * time.Second
	cfg.Health = fastHealth(1, 1)
	p := startPool(t, cfg)
	d := p.Dialer(config.DefaultProfile())
	b1.Close()
	b2.Close()
	socktest.WaitFor(t, 5*time.Second, "both members down", func() bool {
		return p.Members()[0].State() == Down && p.Members()[1].State() == Down
	})
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	start := time.Now()
	c, err := d.Connect(ctx, nil)
	took := time.Since(start)
	if !errors.Is(err, ErrNoMember) || c != nil {
		t.Fatalf("Connect = %v, %v; want ErrNoMember", c, err)
	}
	if errors.Is(err, ErrMemberLimit) {
		t.Errorf("err %v claims a limit", err)
	}
	if took > 100*time.Millisecond {
		t.Errorf("Connect took %s, want immediate (connect timeout is 3s)", took)
	}
}

func TestHealthNoneNeverMarksDown(t *testing.T) {
	cfg := testPool(config.MethodRoundRobin, socktest.DeadAddr(t))
	cfg.ConnectRetries = 0
	p := startPool(t, cfg)
	d := p.Dialer(config.DefaultProfile())
	m := p.Members()[0]
	for range 5 {
		if _, err := connect(t, d); err == nil || errors.Is(err, ErrNoMember) {
			t.Fatalf("Connect to a dead member = %v, want a dial error", err)
		}
	}
	if s := m.Stats(); s.State != Up || s.ConnectFailures != 5 || s.HealthTransitions != 0 {
		t.Errorf("stats = %+v, want up with 5 failures", s)
	}
}

func TestFailedConnectsCountTowardFall(t *testing.T) {
	live := newBackend(t)
	dead := socktest.DeadAddr(t)
	cfg := testPool(config.MethodRoundRobin, dead, live.addr)
	cfg.Health = config.Health{Type: config.HealthTCP, Interval: time.Hour, Timeout: time.Second, Rise: 2, Fall: 2}
	p, err := New(cfg, nil) // not started: no active checks, passive health only
	if err != nil {
		t.Fatal(err)
	}
	defer p.Close()
	d := p.Dialer(config.DefaultProfile())
	m := p.Members()[0]
	for m.State() == Up {
		c, err := connect(t, d)
		if err != nil {
			t.Fatalf("Connect: %v", err)
		}
		if c.Member != p.Members()[1] {
			t.Fatalf("connected to %s, want the live member", c.Member.Address())
		}
		if m.Stats().ConnectFailures > 2 {
			t.Fatalf("still up after %d failed connects, fall = 2", m.Stats().ConnectFailures)
		}
	}
	if s := m.Stats(); s.ConnectFailures != 2 || s.HealthTransitions != 1 {
		t.Errorf("down member stats = %+v, want 2 failures, 1 transition", s)
	}
	// Down: it is not tried any more.
	for range 4 {
		if _, err := connect(t, d); err != nil {
			t.Fatal(err)
		}
	}
	if n := m.Stats().ConnectFailures; n != 2 {
		t.Errorf("down member dialed again: %d failures", n)
	}
}
