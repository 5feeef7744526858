package pool

import (
	"context"
	"errors"
	"net"
	"syscall"
	"testing"
	"time"

	"go.uber.org/goleak"

	"github.com/tetherproxy/tether/config"
	"github.com/tetherproxy/tether/sockopt/socktest"
)

// Warm pools (config.Reuse.MinIdle). That min_idle is validated is
// config's test (TestWarmPoolAndJitterKeys).

// steady checks that cond holds for the whole of d (nothing more happens
// once the pool is warm).
func steady(t *testing.T, d time.Duration, what string, cond func() bool) {
	t.Helper()
	for end := time.Now().Add(d); time.Now().Before(end); time.Sleep(10 * time.Millisecond) {
		if !cond() {
			t.Fatalf("%s no longer holds", what)
		}
	}
}

func TestMinIdleWarmsWithoutTrafficAndRefillsWhatIsTaken(t *testing.T) {
	b := newLineBackend(t, 0)
	p, r := reusePool(t, config.Reuse{MaxIdle: 8, MinIdle: 4, IdleTimeout: time.Minute}, 0, config.CloseGraceful, b.addr)
	m := p.Members()[0]

	socktest.WaitFor(t, 2*time.Second, "4 warm conns", func() bool { return b.Accepted() == 4 && r.Idle(m) == 4 })
	steady(t, 150*time.Millisecond, "4 conns, 4 idle", func() bool {
		return b.Accepted() == 4 && r.Idle(m) == 4 && m.Active() == 4
	})
	if s := stats(r, 0); s.Opened != 4 || s.Warmed != 4 || s.WarmFailed != 0 || s.Idle != 4 {
		t.Fatalf("stats = %+v, want 4 opened and warmed, 4 idle", s)
	}

	// Take one and keep it: it is a warm one (nothing dialed for the Get),
	// and the filler dials one more so that 4 stay idle.
	c := get(t, r)
	if !c.Reused {
		t.Errorf("conn from the warm pool not marked Reused")
	}
	mustExchange(t, c, "hello")
	socktest.WaitFor(t, 2*time.Second, "refill to 4 idle", func() bool { return b.Accepted() == 5 && r.Idle(m) == 4 })
	steady(t, 100*time.Millisecond, "5 conns, 4 idle", func() bool { return b.Accepted() == 5 && r.Idle(m) == 4 })
	if s := stats(r, 0); s.Opened != 5 || s.Warmed != 5 || s.Reused != 1 {
		t.Fatalf("stats = %+v, want 5 opened and warmed, 1 reused", s)
	}

	// Given back, it is kept like any returned conn: 5 idle, nothing closed.
	r.Put(c, true)
	if n := r.Idle(m); n != 5 {
		t.Errorf("idle after Put = %d, want 5", n)
	}
	if n := b.Open(); n != 5 {
		t.Errorf("backend open = %d, want 5", n)
	}
}

func TestMinIdleNeverExceedsMaxConnections(t *testing.T) {
	b := newLineBackend(t, 0)
	p, r := reusePool(t, config.Reuse{MaxIdle: 8, MinIdle: 4, IdleTimeout: time.Minute}, 3, config.CloseGraceful, b.addr)
	m := p.Members()[0]

	socktest.WaitFor(t, 2*time.Second, "3 warm conns", func() bool { return b.Accepted() == 3 && r.Idle(m) == 3 })
	steady(t, 200*time.Millisecond, "3 conns (max_connections)", func() bool {
		return b.Accepted() == 3 && m.Active() == 3 && b.Peak() == 3
	})

	// A Get takes a warm one; the member is at its limit, so nothing more is
	// dialed while it is out.
	c := get(t, r)
	steady(t, 100*time.Millisecond, "still 3 conns", func() bool { return b.Accepted() == 3 && r.Idle(m) == 2 })
	// Discarded (RST), it frees a slot: the filler takes it. (The backend
	// may see the new conn before it reads the RST, so its peak is no
	// measure from here on; tether's count is.)
	r.Discard(c, DiscardFailed)
	socktest.WaitFor(t, 2*time.Second, "refill into the freed slot", func() bool { return b.Accepted() == 4 && r.Idle(m) == 3 })
	steady(t, 100*time.Millisecond, "3 idle, 3 conns", func() bool {
		return r.Idle(m) == 3 && m.Active() == 3 && b.Open() == 3
	})
}

func TestMinIdleClampedToMaxIdle(t *testing.T) {
	b := newLineBackend(t, 0)
	p, r := reusePool(t, config.Reuse{MaxIdle: 2, MinIdle: 5, IdleTimeout: time.Minute}, 0, config.CloseGraceful, b.addr)
	if got := r.Settings().MinIdle; got != 2 {
		t.Errorf("Settings().MinIdle = %d, want 2 (clamped to MaxIdle)", got)
	}
	m := p.Members()[0]
	// The member's accept may lag the dial that returned: wait for both.
	socktest.WaitFor(t, 2*time.Second, "2 warm conns", func() bool { return r.Idle(m) == 2 && b.Accepted() == 2 })
	steady(t, 100*time.Millisecond, "2 conns", func() bool { return b.Accepted() == 2 })

}

func TestMinIdleDroppedWhenTheMemberGoesDownRestoredWhenItComesBack(t *testing.T) {
	b := newBackend(t)
	addr := b.addr
	cfg := testPool(config.MethodRoundRobin, addr)
	cfg.Health = fastHealth(1, 1)
	p := startPool(t, cfg)
	r := NewReusePool(p.Dialer(config.DefaultProfile()), settings(config.Reuse{
		MaxIdle: 8, MinIdle: 4, IdleTimeout: time.Minute, PeekInterval: 100 * time.Millisecond,
	}))
	t.Cleanup(r.Close)
	m := p.Members()[0]
	// Health probes come and go (reset at once): count the conns that stay.
	socktest.WaitFor(t, 2*time.Second, "4 warm conns", func() bool { return r.Idle(m) == 4 && b.Open() == 4 })

	// The member restarts: listener and conns closed. It goes down and its
	// idle conns are dropped (the reaper; the peek finds them closed anyway).
	b.Close()
	socktest.WaitFor(t, 2*time.Second, "member down, idle conns dropped", func() bool {
		return m.State() == Down && r.Idle(m) == 0 && m.Active() == 0
	})
	opened := stats(r, 0).Opened

	b2 := newBackendAt(t, addr)
	start := time.Now()
	// Refill bound: the member is up after one health interval (50 ms); the
	// filler starts over without backoff at once.
	socktest.WaitFor(t, time.Second, "4 warm conns after the restart", func() bool {
		return m.State() == Up && r.Idle(m) == 4 && b2.Open() == 4
	})
	t.Logf("refilled %v after the member came back", time.Since(start).Round(time.Millisecond))
	if s := stats(r, 0); s.Opened != opened+4 || s.Warmed != s.Opened {
		t.Errorf("stats = %+v, want %d opened, all warmed", s, opened+4)
	}
	steady(t, 100*time.Millisecond, "4 idle", func() bool { return r.Idle(m) == 4 && m.Active() == 4 })
}

func TestMinIdleBacksOffARefusingMember(t *testing.T) {
	addr := socktest.DeadAddr(t)
	cfg := testPool(config.MethodRoundRobin, addr) // health off: the member stays up and keeps refusing
	p := startPool(t, cfg)
	r := NewReusePool(p.Dialer(config.DefaultProfile()), settings(config.Reuse{MaxIdle: 8, MinIdle: 4, IdleTimeout: time.Minute}))
	t.Cleanup(r.Close)
	m := p.Members()[0]

	// One dial at a time, 250 ms doubling: dials at ~0, 0.25, 0.75, 1.75 s.
	time.Sleep(1200 * time.Millisecond)
	s := stats(r, 0)
	if s.WarmFailed < 2 || s.WarmFailed > 4 {
		t.Fatalf("%d failed warm dials in 1.2 s, want 3 (backoff 250 ms doubling, one at a time)", s.WarmFailed)
	}
	if f := m.Stats().ConnectFailures; f != s.WarmFailed {
		t.Errorf("member connect failures %d != warm failures %d", f, s.WarmFailed)
	}
	if s.Opened != 0 || s.Idle != 0 || m.Active() != 0 {
		t.Errorf("stats = %+v, active %d", s, m.Active())
	}

	// The member starts listening: the next retry (backoff <= 1 s now)
	// succeeds, which resets the backoff, and the rest follow at once.
	b := newBackendAt(t, addr)
	socktest.WaitFor(t, 2*time.Second, "4 warm conns once the member accepts", func() bool {
		return r.Idle(m) == 4 && b.Accepted() == 4
	})
	if s := stats(r, 0); s.Warmed != 4 || s.WarmFailed > 4 {
		t.Errorf("stats = %+v", s)
	}
}

// blackhole returns a 127.0.0.1 address whose listener never accepts and
// whose accept queue is full: the kernel drops new SYNs, so a dial hangs
// until its timeout or cancellation.
func blackhole(t *testing.T) string {
	t.Helper()
	fd, err := syscall.Socket(syscall.AF_INET, syscall.SOCK_STREAM|syscall.SOCK_CLOEXEC, 0)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { syscall.Close(fd) })
	if err := syscall.Bind(fd, &syscall.SockaddrInet4{Addr: [4]byte{127, 0, 0, 1}}); err != nil {
		t.Fatal(err)
	}
	if err := syscall.Listen(fd, 0); err != nil {
		t.Fatal(err)
	}
	sa, err := syscall.Getsockname(fd)
	if err != nil {
		t.Fatal(err)
	}
	addr := (&net.TCPAddr{IP: net.IPv4(127, 0, 0, 1), Port: sa.(*syscall.SockaddrInet4).Port}).String()
	for range 4 {
		c, err := net.DialTimeout("tcp", addr, 200*time.Millisecond)
		if err != nil {
			var ne net.Error
			if errors.As(err, &ne) && ne.Timeout() {
				return addr // queue full
			}
			t.Fatal(err)
		}
		t.Cleanup(func() { c.Close() })
	}
	t.Fatal("could not fill the accept queue of a backlog-0 listener: the black-holed member this test needs cannot be made here")
	return ""
}

func TestCloseWithWarmDialsInFlightLeaksNothing(t *testing.T) {
	addr := blackhole(t)
	cfg := testPool(config.MethodRoundRobin, addr)
	cfg.ConnectTimeout = 10 * time.Second
	p := startPool(t, cfg)
	m := p.Members()[0]
	ignore := goleak.IgnoreCurrent()

	r := NewReusePool(p.Dialer(config.DefaultProfile()), settings(config.Reuse{MaxIdle: 8, MinIdle: 4}))
	socktest.WaitFor(t, 2*time.Second, "4 warm dials in flight", func() bool { return m.Active() == 4 })
	time.Sleep(50 * time.Millisecond) // the dials are in connect(2)
	start := time.Now()
	r.Close()
	if took := time.Since(start); took > time.Second {
		t.Errorf("Close took %v with dials in flight (connect timeout 10 s)", took)
	}
	if n := m.Active(); n != 0 {
		t.Errorf("active = %d after Close, want 0 (every reserved slot released)", n)
	}
	if s := stats(r, 0); s.WarmFailed != 0 || s.Opened != 0 {
		t.Errorf("stats = %+v: a dial cut by Close is not the member's failure", s)
	}
	if f := m.Stats().ConnectFailures; f != 0 {
		t.Errorf("member connect failures = %d, want 0", f)
	}
	goleak.VerifyNone(t, ignore)
}

// Disabling a member closes its idle conns at once, not at the next peek.
func TestReuserDropsIdleConnsWhenTheMemberLeaves(t *testing.T) {
	b := newBackend(t)
	cfg := testPool(config.MethodRoundRobin, b.addr)
	p := startPool(t, cfg)
	r := NewReusePool(p.Dialer(config.DefaultProfile()), settings(config.Reuse{MaxIdle: 4, PeekInterval: time.Hour}))
	defer r.Close()
	var got []*ServerConn
	for i := 0; i < 3; i++ {
		c, err := r.Get(context.Background(), nil)
		if err != nil {
			t.Fatal(err)
		}
		got = append(got, c)
	}
	for _, c := range got {
		r.Put(c, true)
	}
	m := p.Members()[0]
	if r.Idle(m) != 3 {
		t.Fatalf("idle = %d, want 3", r.Idle(m))
	}
	m.SetEnabled(false)
	socktest.WaitFor(t, 2*time.Second, "idle conns dropped", func() bool { return r.Idle(m) == 0 && m.Active() == 0 })
}
