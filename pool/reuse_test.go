package pool

import (
	"bufio"
	"context"
	"crypto/tls"
	"errors"
	"fmt"
	"io"
	"net"
	"net/netip"
	"os"
	"sync"
	"sync/atomic"
	"syscall"
	"testing"
	"time"

	"github.com/tetherproxy/tether/config"
	"github.com/tetherproxy/tether/sockopt"
	"github.com/tetherproxy/tether/sockopt/socktest"
)

// lineBackend is an in-process member (a socktest.Backend) speaking one
// line per request: it echoes each line; after "bye" it closes (a member
// answering `Connection: close`); with idle > 0 it closes a conn idle that
// long (its keep-alive timeout). It records how every conn ended.
type lineBackend struct {
	*socktest.Backend
	addr    string
	idle    time.Duration
	tlsConf *tls.Config // a TLS member when set

	mu   sync.Mutex
	ends []connEnd
}

// connEnd is how one backend conn ended: "eof" (tether sent FIN), "reset"
// (tether sent RST), "idle" (the member's keep-alive timeout closed it),
// "bye" (the member closed after a "bye" request), "closed" (the test
// closed it).
type connEnd struct {
	remote string // tether's side of the conn
	how    string
	at     time.Time
}

func newLineBackend(t testing.TB, idle time.Duration) *lineBackend {
	return newTLSLineBackend(t, idle, nil)
}

// newTLSLineBackend is a lineBackend speaking TLS with conf (nil: plain).
func newTLSLineBackend(t testing.TB, idle time.Duration, conf *tls.Config) *lineBackend {
	t.Helper()
	b := &lineBackend{idle: idle, tlsConf: conf}
	b.Backend = socktest.Start(t, b.serve)
	b.addr = b.Addr()
	return b
}

// serve answers one conn's lines and records how it ended.
func (b *lineBackend) serve(tc *net.TCPConn) {
	var c net.Conn = tc
	if b.tlsConf != nil {
		c = tls.Server(tc, b.tlsConf) // the handshake runs on the first read
	}
	how := "closed"
	defer func() {
		c.Close() // over TLS: close_notify, then the FIN
		b.mu.Lock()
		b.ends = append(b.ends, connEnd{remote: c.RemoteAddr().String(), how: how, at: time.Now()})
		b.mu.Unlock()
	}()
	br := bufio.NewReader(c)
	for {
		if b.idle > 0 {
			c.SetReadDeadline(time.Now().Add(b.idle))
		}
		line, err := br.ReadString('\n')
		switch {
		case errors.Is(err, os.ErrDeadlineExceeded):
			how = "idle"
			return
		case errors.Is(err, io.EOF):
			how = "eof"
			return
		case errors.Is(err, syscall.ECONNRESET):
			how = "reset"
			return
		case err != nil:
			return
		}
		if _, err := io.WriteString(c, line); err != nil {
			return
		}
		if line == "bye\n" {
			how = "bye"
			return
		}
	}
}

// endOf returns how the conn whose tether side is local ended, if it did.
func (b *lineBackend) endOf(local string) (connEnd, bool) {
	b.mu.Lock()
	defer b.mu.Unlock()
	for _, e := range b.ends {
		if e.remote == local {
			return e, true
		}
	}
	return connEnd{}, false
}

// reusePool starts a pool of addrs (round-robin, health off) whose members
// allow maxConns conns each, and a reuse ConnPool (NewReusePool) on its
// default-profile Dialer with profile close mode closeMode. Both are closed
// at the test's end, the ConnPool first.
func reusePool(t *testing.T, s config.Reuse, maxConns int, closeMode config.CloseMode, addrs ...string) (*Pool, *ConnPool) {
	t.Helper()
	cfg := testPool(config.MethodRoundRobin, addrs...)
	for i := range cfg.Members {
		cfg.Members[i].MaxConnections = maxConns
	}
	p := startPool(t, cfg)
	prof := config.DefaultProfile()
	prof.Close = closeMode
	prof.DrainTimeout = time.Second
	r := NewReusePool(p.Dialer(prof), settings(s))
	t.Cleanup(r.Close)
	return p, r
}

// settings fills what a test leaves zero of the reaper's timing (peek
// interval, retire wait) with config's defaults; every other zero means
// what it means in config.Reuse.
func settings(s config.Reuse) config.Reuse {
	d := config.DefaultReuse()
	if s.PeekInterval == 0 {
		s.PeekInterval = d.PeekInterval
	}
	if s.RetireWait == 0 {
		s.RetireWait = d.RetireWait
	}
	return s
}

func get(t *testing.T, r *ConnPool) *ServerConn {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
	defer cancel()
	c, err := r.Get(ctx, nil)
	if err != nil {
		t.Fatalf("Get: %v", err)
	}
	return c
}

// exchange sends msg as one request line and checks the echo.
func exchange(c *ServerConn, msg string) error {
	c.TCP.SetDeadline(time.Now().Add(5 * time.Second))
	defer c.TCP.SetDeadline(time.Time{})
	if _, err := io.WriteString(c.Conn, msg+"\n"); err != nil {
		return fmt.Errorf("conn %d: write: %w", c.ID, err)
	}
	got := make([]byte, len(msg)+1)
	if _, err := io.ReadFull(c.Conn, got); err != nil {
		return fmt.Errorf("conn %d: read echo: %w", c.ID, err)
	}
	if string(got) != msg+"\n" {
		return fmt.Errorf("conn %d: echo %q, want %q", c.ID, got, msg+"\n")
	}
	return nil
}

func mustExchange(t *testing.T, c *ServerConn, msg string) {
	t.Helper()
	if err := exchange(c, msg); err != nil {
		t.Fatal(err)
	}
}

func stats(r *ConnPool, i int) ReuseStats { return r.Stats()[i] }

func TestReuseHandsOutTheMostRecentlyReturnedConnFirst(t *testing.T) {
	b := newLineBackend(t, 0)
	_, r := reusePool(t, config.Reuse{MaxIdle: 4, IdleTimeout: time.Minute}, 0, config.CloseGraceful, b.addr)
	a, bc := get(t, r), get(t, r)
	if a.Reused || bc.Reused || a.ID == bc.ID {
		t.Fatalf("fresh conns: a=%+v b=%+v", a, bc)
	}
	mustExchange(t, a, "a1")
	mustExchange(t, bc, "b1")
	r.Put(a, true)
	r.Put(bc, true)

	first := get(t, r)
	if first.ID != bc.ID || !first.Reused || first.Requests != 1 {
		t.Fatalf("first Get: id %d reused %v requests %d; want B (id %d), reused, 1 request", first.ID, first.Reused, first.Requests, bc.ID)
	}
	second := get(t, r)
	if second.ID != a.ID || !second.Reused {
		t.Fatalf("second Get: id %d reused %v; want A (id %d), reused", second.ID, second.Reused, a.ID)
	}
	mustExchange(t, first, "b2")
	mustExchange(t, second, "a2")
	r.Put(first, true)
	r.Put(second, true)
	if s := stats(r, 0); s.Opened != 2 || s.Reused != 2 || s.Idle != 2 || b.Accepted() != 2 {
		t.Errorf("stats %+v, backend accepted %d; want 2 opened, 2 reused, 2 idle, 2 accepted", s, b.Accepted())
	}
}

func TestReturningMoreThanMaxIdleClosesTheOldest(t *testing.T) {
	for _, tc := range []struct {
		mode config.CloseMode
		want string // what the backend sees
	}{
		{config.CloseGraceful, "eof"},
		{config.CloseReset, "reset"},
	} {
		t.Run(string(tc.mode), func(t *testing.T) {
			b := newLineBackend(t, 0)
			p, r := reusePool(t, config.Reuse{MaxIdle: 2, IdleTimeout: time.Minute}, 0, tc.mode, b.addr)
			cs := []*ServerConn{get(t, r), get(t, r), get(t, r)}
			for i, c := range cs {
				mustExchange(t, c, fmt.Sprint("req", i))
			}
			for _, c := range cs {
				r.Put(c, true)
			}
			oldest := cs[0].TCP.LocalAddr().String()
			var end connEnd
			socktest.WaitFor(t, 5*time.Second, "the oldest idle conn closed", func() bool {
				var ok bool
				end, ok = b.endOf(oldest)
				return ok
			})
			if end.how != tc.want {
				t.Errorf("backend saw %q, want %q", end.how, tc.want)
			}
			m := p.Members()[0]
			if s := stats(r, 0); s.Idle != 2 || s.IdleOverflow != 1 || m.Active() != 2 || m.Stats().Idle != 2 {
				t.Errorf("stats %+v, member %+v; want 2 idle, 1 overflow, 2 active", s, m.Stats())
			}
			if c := get(t, r); c.ID != cs[2].ID {
				t.Errorf("Get = conn %d, want the newest (%d)", c.ID, cs[2].ID)
			} else {
				r.Put(c, true)
			}
		})
	}
}

// idleConn returns the single idle conn the ConnPool holds for member 0.
func idleConn(r *ConnPool) *ServerConn {
	r.mu.Lock()
	defer r.mu.Unlock()
	if idle := r.mc(0).idle; len(idle) == 1 {
		return idle[0]
	}
	return nil
}

func TestStaleIdleConnIsNeverHandedOut(t *testing.T) {
	b := newLineBackend(t, 0)
	// No background peek during the test: Get's own peek must catch it.
	_, r := reusePool(t, config.Reuse{MaxIdle: 2, IdleTimeout: time.Minute, PeekInterval: time.Hour}, 0, config.CloseGraceful, b.addr)
	c := get(t, r)
	mustExchange(t, c, "hello")
	staleID := c.ID
	r.Put(c, true)

	b.CloseConns() // the member's keep-alive timeout fires while the conn is idle
	socktest.WaitFor(t, 5*time.Second, "the member's FIN on the idle conn", func() bool {
		ic := idleConn(r)
		return ic != nil && errors.Is(sockopt.Alive(ic.TCP), sockopt.ErrStale)
	})

	c2 := get(t, r)
	if c2.ID == staleID || c2.Reused {
		t.Fatalf("Get handed out conn %d reused=%v; the stale one was %d", c2.ID, c2.Reused, staleID)
	}
	mustExchange(t, c2, "works")
	r.Put(c2, true)
	if s := stats(r, 0); s.StaleOnPeek != 1 || s.Opened != 2 || s.ClosedEarly != 0 {
		t.Errorf("stats %+v; want 1 stale on peek, 2 opened, none closed early (no Keep-Alive learnt)", s)
	}
}

func TestReaperDropsIdleConnsTheMemberClosedBeforeItsKeepAlive(t *testing.T) {
	b := newLineBackend(t, 0)
	p, r := reusePool(t, config.Reuse{MaxIdle: 2, IdleTimeout: time.Minute, PeekInterval: 20 * time.Millisecond}, 0, config.CloseGraceful, b.addr)
	c := get(t, r)
	mustExchange(t, c, "hello")
	c.LearnKeepAlive(30*time.Second, 0) // the member promises 30 s
	r.Put(c, true)
	b.CloseConns() // and closes at once
	socktest.WaitFor(t, 5*time.Second, "the reaper to drop the idle conn and free its slot", func() bool {
		return stats(r, 0).StaleOnPeek == 1 && r.Idle(p.Members()[0]) == 0 && p.Members()[0].Active() == 0
	})
	if s := stats(r, 0); s.ClosedEarly != 1 || s.KeepAliveLearnt != 1 {
		t.Errorf("stats %+v; want 1 closed early, 1 keep-alive learnt", s)
	}
}

func TestIdleConnsAreClosedByTheReaperAfterIdleTimeout(t *testing.T) {
	b := newLineBackend(t, 0)
	p, r := reusePool(t, config.Reuse{MaxIdle: 4, IdleTimeout: 150 * time.Millisecond, PeekInterval: time.Hour}, 0, config.CloseGraceful, b.addr)
	c1, c2 := get(t, r), get(t, r)
	mustExchange(t, c1, "1")
	mustExchange(t, c2, "2")
	put := time.Now()
	r.Put(c1, true)
	r.Put(c2, true)
	socktest.WaitFor(t, 5*time.Second, "both idle conns closed by tether", func() bool { return b.Open() == 0 })
	for _, c := range []*ServerConn{c1, c2} {
		e, _ := b.endOf(c.TCP.LocalAddr().String())
		if e.how != "eof" { // graceful profile: tether's FIN
			t.Errorf("conn %d: backend saw %q, want eof", c.ID, e.how)
		}
		if d := e.at.Sub(put); d < 150*time.Millisecond || d > 2*time.Second {
			t.Errorf("conn %d closed %v after Put, want >= 150ms", c.ID, d)
		}
	}
	if s := stats(r, 0); s.ExpiredIdle != 2 || s.Idle != 0 || p.Members()[0].Active() != 0 {
		t.Errorf("stats %+v active %d; want 2 expired, none left", s, p.Members()[0].Active())
	}
}

func TestLearntKeepAliveClosesBeforeTheMember(t *testing.T) {
	const memberTimeout = time.Second
	b := newLineBackend(t, memberTimeout)
	// tether's own idle timeout is long; the member's 1 s minus a 200 ms
	// margin decides. drain-reset: the member sees RST, nobody keeps TIME_WAIT.
	_, r := reusePool(t, config.Reuse{MaxIdle: 2, IdleTimeout: time.Minute, KeepaliveMargin: 200 * time.Millisecond, PeekInterval: time.Hour},
		0, config.CloseDrainReset, b.addr)
	c := get(t, r)
	mustExchange(t, c, "hello")
	c.LearnKeepAlive(memberTimeout, 0)
	local := c.TCP.LocalAddr().String()
	put := time.Now()
	r.Put(c, true)
	r.mu.Lock()
	idleFor := c.idleUntil.Sub(c.idleSince)
	r.mu.Unlock()
	if idleFor != 800*time.Millisecond {
		t.Errorf("idle deadline %v after Put, want 800ms (1 s - 200 ms)", idleFor)
	}
	var e connEnd
	socktest.WaitFor(t, 3*time.Second, "the idle conn to close", func() bool {
		var ok bool
		e, ok = b.endOf(local)
		return ok
	})
	// "reset" proves the order: the backend's read would report its own
	// deadline (idle) had it passed before the read ran. When the backend
	// notes the end can lag on a loaded machine, so only the lower bound
	// is checked on that time.
	d := e.at.Sub(put)
	if e.how != "reset" || d < 750*time.Millisecond {
		t.Errorf("conn ended %q after %v; want tether's reset at ~0.8 s, before the member's 1 s", e.how, d)
	}
	t.Logf("closed by tether %v after Put", d)
	if s := stats(r, 0); s.ExpiredIdle != 1 || s.KeepAliveLearnt != 1 {
		t.Errorf("stats %+v; want 1 expired idle, 1 learnt", s)
	}
}

func TestLearntKeepAliveLimits(t *testing.T) {
	b := newLineBackend(t, 0)
	_, r := reusePool(t, config.Reuse{MaxIdle: 2, MaxRequests: 100, KeepaliveMargin: 200 * time.Millisecond}, 0, config.CloseGraceful, b.addr)
	c := get(t, r)
	defer r.Discard(c, DiscardFailed)
	for _, tc := range []struct {
		timeout  time.Duration
		max      int
		wantIdle time.Duration
		wantMax  int
	}{
		{10 * time.Second, 0, 9 * time.Second, 100}, // 90% beats 10 s - 200 ms
		{time.Second, 5, 800 * time.Millisecond, 6}, // the margin beats 90%; this request + 5 more
		{100 * time.Millisecond, 0, 0, 6},           // below the margin: not kept idle at all
		{5 * time.Second, 50, 0, 6},                 // limits only shrink
		{0, 0, 0, 6},                                // nothing announced
		{-time.Second, -1, 0, 6},                    // nonsense ignored
		{time.Hour, 1, 0, 2},                        // max shrinks: this request + 1 more
	} {
		c.LearnKeepAlive(tc.timeout, tc.max)
		if c.idleLimit != tc.wantIdle || c.maxReq != tc.wantMax {
			t.Errorf("after LearnKeepAlive(%v, %d): idle limit %v, max requests %d; want %v, %d",
				tc.timeout, tc.max, c.idleLimit, c.maxReq, tc.wantIdle, tc.wantMax)
		}
	}
	if c.Retire() {
		t.Error("Retire = true on the request that announced max=1")
	}
	c.Requests++ // the next request on the conn is its last
	if !c.Retire() {
		t.Error("Retire = false on the last request the member allows")
	}
}

// hasSocket reports whether the socket local -> remote is in state st.
func hasSocket(t *testing.T, local, remote netip.AddrPort, st sockopt.State) bool {
	t.Helper()
	socks, err := sockopt.Sockets()
	if err != nil {
		t.Fatalf("sock_diag: %v", err)
	}
	for _, s := range socks {
		if s.Local == local && s.Remote == remote && s.State == st {
			return true
		}
	}
	return false
}

func addrPort(a net.Addr) netip.AddrPort { return a.(*net.TCPAddr).AddrPort() }

// assertTimeWaitOnMember checks the 4-tuple of a retired conn: TIME_WAIT on
// the member's side, none on tether's.
func assertTimeWaitOnMember(t *testing.T, tether, member netip.AddrPort) {
	t.Helper()
	socktest.WaitFor(t, 5*time.Second, "TIME_WAIT on the member side of "+tether.String(), func() bool {
		return hasSocket(t, member, tether, sockopt.StateTimeWait)
	})
	if hasSocket(t, tether, member, sockopt.StateTimeWait) {
		t.Errorf("tether's side %s -> %s is in TIME_WAIT", tether, member)
	}
}

func TestMaxRequestsRetiresSoTheMemberClosesFirst(t *testing.T) {
	b := newLineBackend(t, 0)
	p, r := reusePool(t, config.Reuse{MaxIdle: 2, MaxRequests: 3, IdleTimeout: time.Minute}, 0, config.CloseGraceful, b.addr)
	var id uint64
	for i := 1; i <= 3; i++ {
		c := get(t, r)
		if i == 1 {
			id = c.ID
		} else if c.ID != id || c.Requests != i-1 {
			t.Fatalf("request %d on conn %d (requests %d), want conn %d", i, c.ID, c.Requests, id)
		}
		retire := c.Retire()
		if retire != (i == 3) {
			t.Fatalf("request %d: Retire = %v", i, retire)
		}
		if !retire {
			mustExchange(t, c, fmt.Sprint("req", i))
			r.Put(c, true)
			continue
		}
		// The last request carries `Connection: close`: the member answers
		// and closes.
		tetherSide, memberSide := addrPort(c.TCP.LocalAddr()), addrPort(c.TCP.RemoteAddr())
		mustExchange(t, c, "bye")
		r.Put(c, true)
		assertTimeWaitOnMember(t, tetherSide, memberSide)
	}
	socktest.WaitFor(t, 5*time.Second, "retired conn released", func() bool { return p.Members()[0].Active() == 0 })
	if s := stats(r, 0); s.Retired != 1 || s.RetiredByMemberClose != 1 || s.Opened != 1 || s.Idle != 0 {
		t.Errorf("stats %+v; want 1 opened, 1 retired, by the member's close", s)
	}
	if c := get(t, r); c.Reused || c.ID == id {
		t.Errorf("Get after retirement: conn %d reused %v, want a fresh conn", c.ID, c.Reused)
	} else {
		r.Put(c, true)
	}
}

func TestMaxAgeRetiresWithJitter(t *testing.T) {
	b := newLineBackend(t, 0)
	const maxAge = 400 * time.Millisecond
	_, r := reusePool(t, config.Reuse{MaxIdle: 8, MaxAge: maxAge, AgeJitter: 0.5, IdleTimeout: time.Minute}, 0, config.CloseGraceful, b.addr)
	cs := make([]*ServerConn, 6)
	distinct := map[time.Time]bool{}
	for i := range cs {
		cs[i] = get(t, r)
		age := cs[i].expires.Sub(cs[i].Created)
		if age < maxAge/2 || age > maxAge {
			t.Errorf("conn %d: jittered max age %v, want within [%v, %v]", cs[i].ID, age, maxAge/2, maxAge)
		}
		distinct[cs[i].expires] = true
	}
	if len(distinct) < 2 {
		t.Errorf("6 conns share one expiry: no jitter")
	}
	for _, c := range cs[1:] {
		r.Discard(c, DiscardFailed)
	}
	c := cs[0]
	if c.Retire() {
		t.Fatal("Retire = true on a new conn")
	}
	mustExchange(t, c, "young")
	socktest.WaitFor(t, 2*time.Second, "Retire to turn true", func() bool { return c.Retire() })
	if age := time.Since(c.Created); age < c.expires.Sub(c.Created) {
		t.Errorf("Retire true at age %v, before its max age %v", age, c.expires.Sub(c.Created))
	}
	tetherSide, memberSide := addrPort(c.TCP.LocalAddr()), addrPort(c.TCP.RemoteAddr())
	mustExchange(t, c, "bye")
	r.Put(c, true)
	assertTimeWaitOnMember(t, tetherSide, memberSide)
	if s := stats(r, 0); s.RetiredByMemberClose != 1 {
		t.Errorf("stats %+v; want 1 retired by the member's close", s)
	}
}

func TestRetiredConnIsClosedWhenTheMemberKeepsItOpen(t *testing.T) {
	b := newLineBackend(t, 0)
	_, r := reusePool(t, config.Reuse{MaxIdle: 2, MaxRequests: 1, RetireWait: 100 * time.Millisecond}, 0, config.CloseReset, b.addr)
	c := get(t, r)
	if !c.Retire() {
		t.Fatal("Retire = false with MaxRequests 1")
	}
	mustExchange(t, c, "ignores-close") // the member does not close
	local := c.TCP.LocalAddr().String()
	start := time.Now()
	r.Put(c, true)
	socktest.WaitFor(t, 3*time.Second, "tether to close after RetireWait", func() bool { _, ok := b.endOf(local); return ok })
	e, _ := b.endOf(local)
	if e.how != "reset" || e.at.Sub(start) < 100*time.Millisecond {
		t.Errorf("backend saw %q after %v; want the profile's reset after the 100 ms wait", e.how, e.at.Sub(start))
	}
	if s := stats(r, 0); s.Retired != 1 || s.RetiredByMemberClose != 0 {
		t.Errorf("stats %+v; want 1 retired, not by the member", s)
	}
}

func TestRetireWhenTheMemberIsDisabled(t *testing.T) {
	b := newLineBackend(t, 0)
	p, r := reusePool(t, config.Reuse{MaxIdle: 2, PeekInterval: 20 * time.Millisecond}, 0, config.CloseGraceful, b.addr)
	c, idle := get(t, r), get(t, r)
	r.Put(idle, true)
	p.Members()[0].SetEnabled(false)
	if !c.Retire() {
		t.Error("Retire = false on a disabled member's conn")
	}
	socktest.WaitFor(t, 5*time.Second, "the disabled member's idle conn closed", func() bool { return r.Idle(p.Members()[0]) == 0 })
	r.Discard(c, DiscardFailed)
	if _, err := r.Get(context.Background(), nil); !errors.Is(err, ErrNoMember) {
		t.Errorf("Get with the only member disabled = %v, want ErrNoMember", err)
	}
}

func TestQueuedGetsAreServedFirstInFirstOut(t *testing.T) {
	b := newLineBackend(t, 0)
	p, r := reusePool(t, config.Reuse{MaxIdle: 1, QueueTimeout: 5 * time.Second}, 1, config.CloseGraceful, b.addr)
	held := get(t, r)
	type result struct {
		who int
		c   *ServerConn
		err error
	}
	got := make(chan result, 3)
	var wg sync.WaitGroup
	for i := range 3 {
		wg.Add(1)
		go func() {
			defer wg.Done()
			c, err := r.Get(context.Background(), nil)
			if err == nil {
				err = exchange(c, fmt.Sprint("waiter", i))
			}
			got <- result{i, c, err}
		}()
		socktest.WaitFor(t, 5*time.Second, fmt.Sprint("waiter ", i, " queued"), func() bool { return r.nwait.Load() == int64(i+1) })
	}
	r.Put(held, true)
	for want := range 3 {
		res := <-got
		if res.err != nil {
			t.Fatalf("waiter %d: %v", res.who, res.err)
		}
		if res.who != want || res.c.ID != held.ID || !res.c.Reused {
			t.Errorf("hand-off %d went to waiter %d (conn %d reused %v); want waiter %d, conn %d reused", want, res.who, res.c.ID, res.c.Reused, want, held.ID)
		}
		if a := p.Members()[0].Active(); a != 1 {
			t.Errorf("member active = %d, want 1 (its limit)", a)
		}
		r.Put(res.c, true)
	}
	wg.Wait()
	if n := b.Accepted(); n != 1 {
		t.Errorf("backend accepted %d conns, want 1", n)
	}
}

func TestQueueTimeout(t *testing.T) {
	b := newLineBackend(t, 0)
	_, r := reusePool(t, config.Reuse{MaxIdle: 1, QueueTimeout: 100 * time.Millisecond}, 1, config.CloseGraceful, b.addr)
	held := get(t, r)
	start := time.Now()
	_, err := r.Get(context.Background(), nil)
	took := time.Since(start)
	if !errors.Is(err, ErrQueueTimeout) || !errors.Is(err, ErrMemberLimit) || !errors.Is(err, ErrNoMember) {
		t.Errorf("Get at the limit = %v, want ErrQueueTimeout (an ErrMemberLimit, an ErrNoMember)", err)
	}
	if took < 100*time.Millisecond || took > time.Second {
		t.Errorf("Get gave up after %v, want ~100ms", took)
	}
	if n := r.nwait.Load(); n != 0 {
		t.Errorf("%d waiters left", n)
	}
	r.Put(held, true)

	// QueueTimeout 0: no wait at all.
	_, r0 := reusePool(t, config.Reuse{MaxIdle: 1}, 1, config.CloseGraceful, b.addr)
	held0 := get(t, r0)
	start = time.Now()
	if _, err := r0.Get(context.Background(), nil); !errors.Is(err, ErrMemberLimit) || errors.Is(err, ErrQueueTimeout) {
		t.Errorf("Get with QueueTimeout 0 = %v, want ErrMemberLimit", err)
	}
	if took := time.Since(start); took > 100*time.Millisecond {
		t.Errorf("Get with QueueTimeout 0 took %v", took)
	}
	r0.Put(held0, true)
}

func TestCancelledWaiterIsRemovedAndGetsNoConn(t *testing.T) {
	b := newLineBackend(t, 0)
	p, r := reusePool(t, config.Reuse{MaxIdle: 1, QueueTimeout: 5 * time.Second}, 1, config.CloseGraceful, b.addr)
	held := get(t, r)
	ctx, cancel := context.WithCancel(context.Background())
	errc := make(chan error, 1)
	go func() {
		c, err := r.Get(ctx, nil)
		if err == nil {
			err = fmt.Errorf("cancelled Get got conn %d", c.ID)
		}
		errc <- err
	}()
	socktest.WaitFor(t, 5*time.Second, "the waiter queued", func() bool { return r.nwait.Load() == 1 })
	cancel()
	if err := <-errc; !errors.Is(err, context.Canceled) {
		t.Fatalf("cancelled Get = %v, want context.Canceled", err)
	}
	if n := r.nwait.Load(); n != 0 {
		t.Fatalf("%d waiters after cancel", n)
	}
	r.Put(held, true)
	if n := r.Idle(p.Members()[0]); n != 1 {
		t.Fatalf("idle = %d after Put, want 1: the conn went to the cancelled waiter", n)
	}
	c := get(t, r)
	if c.ID != held.ID || !c.Reused {
		t.Fatalf("Get = conn %d, want the returned %d", c.ID, held.ID)
	}
	r.Put(c, true)
}

func TestWaiterDialsWhenASlotIsFreed(t *testing.T) {
	b := newLineBackend(t, 0)
	_, r := reusePool(t, config.Reuse{MaxIdle: 1, QueueTimeout: 5 * time.Second}, 1, config.CloseGraceful, b.addr)
	held := get(t, r)
	type result struct {
		c   *ServerConn
		err error
	}
	got := make(chan result, 1)
	go func() {
		c, err := r.Get(context.Background(), nil)
		got <- result{c, err}
	}()
	socktest.WaitFor(t, 5*time.Second, "the waiter queued", func() bool { return r.nwait.Load() == 1 })
	r.Discard(held, DiscardClosedEarly) // the member reset it: the slot frees
	res := <-got
	if res.err != nil || res.c.Reused || res.c.ID == held.ID {
		t.Fatalf("waiter got %+v, %v; want a fresh conn", res.c, res.err)
	}
	mustExchange(t, res.c, "fresh")
	r.Put(res.c, true)
	if s := stats(r, 0); s.ClosedEarly != 1 || s.Discarded != 1 || s.Opened != 2 {
		t.Errorf("stats %+v; want 1 discarded closed early, 2 opened", s)
	}
}

func TestConcurrentGetPutStaysWithinLimits(t *testing.T) {
	const (
		workers  = 8
		cycles   = 200
		maxConns = 6
		maxIdle  = 4
	)
	b := newLineBackend(t, 0)
	p, r := reusePool(t, config.Reuse{MaxIdle: maxIdle, QueueTimeout: 5 * time.Second, IdleTimeout: time.Minute}, maxConns, config.CloseReset, b.addr)
	m := p.Members()[0]
	var over atomic.Int64
	errc := make(chan error, workers)
	var wg sync.WaitGroup
	for w := range workers {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for i := range cycles {
				c, err := r.Get(context.Background(), nil)
				if err != nil {
					errc <- fmt.Errorf("worker %d cycle %d: %w", w, i, err)
					return
				}
				if a := m.Active(); a > maxConns {
					over.Add(1)
				}
				if err := exchange(c, fmt.Sprintf("w%d-%d", w, i)); err != nil {
					r.Discard(c, DiscardFailed)
					errc <- err
					return
				}
				r.Put(c, true)
				if n := r.Idle(m); n > maxIdle {
					over.Add(1)
				}
			}
		}()
	}
	wg.Wait()
	close(errc)
	for err := range errc {
		t.Error(err)
	}
	if n := over.Load(); n > 0 {
		t.Errorf("%d samples above max_connections %d or max_idle %d", n, maxConns, maxIdle)
	}
	s := stats(r, 0)
	if s.Opened+s.Reused != workers*cycles || uint64(b.Accepted()) != s.Opened {
		t.Errorf("stats %+v, backend accepted %d; want opened+reused = %d, accepted = opened", s, b.Accepted(), workers*cycles)
	}
	// A conn tether closed may still count at the backend until its RST
	// arrives: the backend's peak may exceed the limit by those only.
	if peak := b.Peak(); peak > maxConns+int(s.IdleOverflow) {
		t.Errorf("backend saw %d conns open at once; limit %d (+%d closed by tether)", peak, maxConns, s.IdleOverflow)
	}
	if a, i := m.Active(), r.Idle(m); a != i || i > maxIdle {
		t.Errorf("after the run: active %d, idle %d; want all idle, <= %d", a, i, maxIdle)
	}
	t.Logf("opened %d, reused %d, idle overflow %d, backend peak %d", s.Opened, s.Reused, s.IdleOverflow, b.Peak())
}

func TestCloseResetsIdleConnsAndFailsWaiters(t *testing.T) {
	b := newLineBackend(t, 0)
	p, r := reusePool(t, config.Reuse{MaxIdle: 4, QueueTimeout: 5 * time.Second, IdleTimeout: time.Minute}, 0, config.CloseGraceful, b.addr)
	c1, c2 := get(t, r), get(t, r)
	r.Put(c1, true)
	r.Put(c2, true)

	// A second reuse ConnPool, at a limit of its own making: a
	// waiter queued when it closes.
	_, rw := reusePool(t, config.Reuse{MaxIdle: 1, QueueTimeout: 5 * time.Second}, 1, config.CloseGraceful, b.addr)
	held := get(t, rw)
	errc := make(chan error, 1)
	go func() {
		_, err := rw.Get(context.Background(), nil)
		errc <- err
	}()
	socktest.WaitFor(t, 5*time.Second, "the waiter queued", func() bool { return rw.nwait.Load() == 1 })
	rw.Close()
	if err := <-errc; !errors.Is(err, ErrConnPoolClosed) {
		t.Errorf("queued Get at Close = %v, want ErrConnPoolClosed", err)
	}
	if _, err := rw.Get(context.Background(), nil); !errors.Is(err, ErrConnPoolClosed) {
		t.Errorf("Get after Close = %v, want ErrConnPoolClosed", err)
	}
	if !held.Retire() {
		t.Error("Retire = false on a closed ConnPool's conn")
	}
	rw.Put(held, true) // after Close: reset, not kept

	r.Close()
	r.Close()
	socktest.WaitFor(t, 5*time.Second, "every conn closed", func() bool { return b.Open() == 0 })
	for _, c := range []*ServerConn{c1, c2, held} {
		if e, _ := b.endOf(c.TCP.LocalAddr().String()); e.how != "reset" {
			t.Errorf("conn %d: backend saw %q, want reset", c.ID, e.how)
		}
	}
	if a, i := p.Members()[0].Active(), p.Members()[0].Stats().Idle; a != 0 || i != 0 {
		t.Errorf("member active %d idle %d after Close, want 0", a, i)
	}
}

func TestReuseSpreadsOverMembersWithTheBalancer(t *testing.T) {
	b1, b2 := newLineBackend(t, 0), newLineBackend(t, 0)
	p, r := reusePool(t, config.Reuse{MaxIdle: 2, IdleTimeout: time.Minute}, 0, config.CloseGraceful, b1.addr, b2.addr)
	for i := range 10 {
		c := get(t, r)
		mustExchange(t, c, fmt.Sprint("r", i))
		r.Put(c, true)
	}
	for i, m := range p.Members() {
		if s := stats(r, i); s.Opened != 1 || s.Reused != 4 || m.Active() != 1 {
			t.Errorf("member %d: stats %+v active %d; want 1 opened, 4 reused", i, s, m.Active())
		}
	}
}

func TestGetPutOnAWarmPoolDoesNotAllocate(t *testing.T) {
	b := newLineBackend(t, 0)
	_, r := reusePool(t, config.Reuse{MaxIdle: 4, IdleTimeout: time.Minute, PeekInterval: time.Hour}, 8, config.CloseGraceful, b.addr)
	r.Put(get(t, r), true)
	ctx := context.Background()
	client := &net.TCPAddr{IP: net.IPv4(192, 0, 2, 7), Port: 40000}
	allocs := testing.AllocsPerRun(200, func() {
		c, err := r.Get(ctx, client)
		if err != nil {
			panic(err)
		}
		c.Retire()
		r.Put(c, true)
	})
	if allocs != 0 {
		t.Errorf("Get+Put allocates %.1f times", allocs)
	}
}

func TestWaitersRacingCancelsAndTimeoutsLeakNoConn(t *testing.T) {
	const workers, cycles, maxConns = 8, 150, 2
	b := newLineBackend(t, 0)
	p, r := reusePool(t, config.Reuse{MaxIdle: maxConns, QueueTimeout: 3 * time.Millisecond, IdleTimeout: time.Minute}, maxConns, config.CloseReset, b.addr)
	m := p.Members()[0]
	var served, refused atomic.Int64
	errc := make(chan error, workers)
	var wg sync.WaitGroup
	for w := range workers {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for i := range cycles {
				// Every third Get has a ctx that may end while it waits.
				ctx, cancel := context.WithCancel(context.Background())
				if i%3 == 0 {
					time.AfterFunc(time.Duration(i%4)*time.Millisecond, cancel)
				}
				c, err := r.Get(ctx, nil)
				cancel()
				if err != nil {
					if !errors.Is(err, ErrQueueTimeout) && !errors.Is(err, context.Canceled) {
						errc <- fmt.Errorf("worker %d: %w", w, err)
						return
					}
					refused.Add(1)
					continue
				}
				served.Add(1)
				if err := exchange(c, fmt.Sprintf("w%d-%d", w, i)); err != nil {
					r.Discard(c, DiscardFailed)
					errc <- err
					return
				}
				if i%5 == 0 {
					r.Discard(c, DiscardFailed) // frees a slot instead of handing over
				} else {
					r.Put(c, true)
				}
			}
		}()
	}
	wg.Wait()
	close(errc)
	for err := range errc {
		t.Error(err)
	}
	// Every conn is back: idle, or closed with its slot released.
	socktest.WaitFor(t, 5*time.Second, "every conn idle or closed", func() bool { return m.Active() == r.Idle(m) })
	if a := m.Active(); a > maxConns || r.nwait.Load() != 0 {
		t.Errorf("active %d (limit %d), %d waiters left", a, maxConns, r.nwait.Load())
	}
	s := stats(r, 0)
	t.Logf("served %d, refused %d (queue timeout or cancel), stats %+v", served.Load(), refused.Load(), s)
	if s.Opened+s.Reused != uint64(served.Load()) || s.Opened-s.Discarded-s.IdleOverflow != uint64(s.Idle) {
		t.Errorf("stats %+v, served %d: want opened+reused = served, opened-discarded-overflow = idle", s, served.Load())
	}
	if served.Load() == 0 || refused.Load() == 0 {
		t.Errorf("served %d, refused %d: the test did not exercise both", served.Load(), refused.Load())
	}
}
