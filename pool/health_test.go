package pool

import (
	"context"
	"errors"
	"fmt"
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
	// The streaks at the transitions, exactly: fall = 3 failed checks in a
	// row, rise = 2 successful ones (not one more).
	if n := down[0].ContextMap()["failures"]; n != int64(3) {
		t.Errorf("went down after %v failed checks in a row, want exactly fall = 3", n)
	}
	if n := up[0].ContextMap()["successes"]; n != int64(2) {
		t.Errorf("came up after %v successful checks in a row, want exactly rise = 2", n)
	}
}

// A member goes down on exactly the fall-th failure in a row and comes
// back on exactly the rise-th success in a row: one result fewer leaves it
// where it was, and a result of the other kind starts the count over.
// Results are fed as the monitor and passive health feed them (observe),
// one at a time, so every count is exact.
func TestHealthTransitionsTakeExactlyFallAndRise(t *testing.T) {
	errCheck := errors.New("check failed")
	for _, tc := range []struct{ rise, fall int }{{1, 1}, {2, 3}, {3, 2}, {5, 4}} {
		t.Run(fmt.Sprintf("rise%d-fall%d", tc.rise, tc.fall), func(t *testing.T) {
			cfg := testPool(config.MethodRoundRobin, socktest.DeadAddr(t))
			cfg.Health = config.Health{Type: config.HealthTCP, Interval: time.Hour, Timeout: time.Second, Rise: tc.rise, Fall: tc.fall}
			p, err := New(cfg, nil) // not started: only the results fed here count
			if err != nil {
				t.Fatal(err)
			}
			defer p.Close()
			m := p.Members()[0]
			// feed gives n results; the state is during until the last,
			// after it.
			feed := func(n int, result error, during, after MemberState, what string) {
				t.Helper()
				for i := 1; i <= n; i++ {
					p.observe(m, result, "test")
					if got := m.State(); i < n && got != during {
						t.Fatalf("%s: %s after %d of %d results, want %s", what, got, i, n, during)
					}
				}
				if got := m.State(); got != after {
					t.Fatalf("%s: %s after all %d results, want %s", what, got, n, after)
				}
			}
			// Failures short of fall, broken by a success, do not add up.
			feed(tc.fall-1, errCheck, Up, Up, "fall-1 failures")
			feed(1, nil, Up, Up, "a success")
			feed(tc.fall, errCheck, Up, Down, "fall failures in a row")
			feed(tc.rise-1, nil, Down, Down, "rise-1 successes")
			feed(1, errCheck, Down, Down, "a failure")
			feed(tc.rise, nil, Down, Up, "rise successes in a row")
			if n := m.Stats().HealthTransitions; n != 2 {
				t.Errorf("transitions = %d, want 2", n)
			}
		})
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
