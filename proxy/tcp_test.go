package proxy

import (
	"bytes"
	"context"
	"crypto/rand"
	"crypto/sha256"
	"errors"
	"io"
	"net"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"

	"go.uber.org/zap"
	"golang.org/x/sys/unix"

	"github.com/tetherproxy/tether/config"
	"github.com/tetherproxy/tether/sockopt"
	"github.com/tetherproxy/tether/sockopt/socktest"
)

func TestRelayEchoesAndWritesOneAccessLine(t *testing.T) {
	be := socktest.Start(t, socktest.Echo)
	p := startProxy(t, tcpConfig("", "", "", be.Addr()))
	c := p.dial(t, "vs")
	if _, err := c.Write([]byte("hello tether")); err != nil {
		t.Fatal(err)
	}
	buf := make([]byte, 12)
	if _, err := io.ReadFull(c, buf); err != nil || string(buf) != "hello tether" {
		t.Fatalf("echo = %q, %v", buf, err)
	}
	_ = c.CloseWrite()
	if rest, err := readAll(c); err != nil || len(rest) != 0 {
		t.Fatalf("after half-close: %q, %v", rest, err)
	}
	lines := p.waitAccess(t, 1)
	e := lines[0]
	if got := fieldString(e, "member"); got != be.Addr() {
		t.Errorf("access member = %q, want %q", got, be.Addr())
	}
	if fieldString(e, "bytes_in") != "12" || fieldString(e, "bytes_out") != "12" {
		t.Errorf("access bytes in/out = %s/%s, want 12/12", fieldString(e, "bytes_in"), fieldString(e, "bytes_out"))
	}
	if got := fieldString(e, "closed_first"); got != "client FIN" {
		t.Errorf("closed_first = %q, want client FIN", got)
	}
	if fieldString(e, "client") != c.LocalAddr().String() {
		t.Errorf("access client = %q, want %q", fieldString(e, "client"), c.LocalAddr())
	}
	for _, k := range []string{"duration", "client_rtt", "server_rtt", "client_retransmits", "server_retransmits", "virtual_server"} {
		if _, ok := e.ContextMap()[k]; !ok {
			t.Errorf("access line lacks %q: %v", k, e.ContextMap())
		}
	}
}

// A client that sends a request, shuts its write side, then reads the reply
// must get the whole reply: the FIN travels to the member, the member
// answers after EOF, and only then does the reply's FIN come back.
func TestHalfCloseFromClientStillGetsFullReply(t *testing.T) {
	reply := bytes.Repeat([]byte("r"), 1<<20)
	be := socktest.Start(t, func(c *net.TCPConn) {
		defer c.Close()
		req, _ := io.ReadAll(c) // until the client's FIN, relayed by tether
		_, _ = c.Write(append([]byte(string(req)+":"), reply...))
		_ = c.CloseWrite()
	})
	p := startProxy(t, tcpConfig("", "", "", be.Addr()))
	c := p.dial(t, "vs")
	_, _ = c.Write([]byte("question"))
	if err := c.CloseWrite(); err != nil {
		t.Fatal(err)
	}
	got, err := readAll(c)
	if err != nil {
		t.Fatal(err)
	}
	if want := append([]byte("question:"), reply...); !bytes.Equal(got, want) {
		t.Fatalf("reply: got %d bytes, want %d", len(got), len(want))
	}
}

// The other direction: the member half-closes first (sends and FINs) while
// the client keeps sending; the member must still receive everything.
func TestHalfCloseFromMemberKeepsClientDirectionOpen(t *testing.T) {
	got := make(chan []byte, 1)
	be := socktest.Start(t, func(c *net.TCPConn) {
		defer c.Close()
		_, _ = c.Write([]byte("banner"))
		_ = c.CloseWrite()
		b, _ := io.ReadAll(c)
		got <- b
	})
	p := startProxy(t, tcpConfig("", "", "", be.Addr()))
	c := p.dial(t, "vs")
	banner, err := readAll(c) // EOF = the member's FIN relayed
	if err != nil || string(banner) != "banner" {
		t.Fatalf("banner = %q, %v", banner, err)
	}
	payload := bytes.Repeat([]byte("x"), 256<<10)
	if _, err := c.Write(payload); err != nil {
		t.Fatalf("client write after member FIN: %v", err)
	}
	_ = c.CloseWrite()
	select {
	case b := <-got:
		if !bytes.Equal(b, payload) {
			t.Fatalf("member got %d bytes, want %d", len(b), len(payload))
		}
	case <-time.After(5 * time.Second):
		t.Fatal("member never got the client's bytes and FIN")
	}
	lines := p.waitAccess(t, 1)
	if fc := fieldString(lines[0], "closed_first"); fc != "server FIN" {
		t.Errorf("closed_first = %q, want server FIN", fc)
	}
}

func TestSixteenMiBEachWayIntact(t *testing.T) {
	const size = 16 << 20
	be := socktest.Start(t, socktest.Echo)
	p := startProxy(t, tcpConfig("", "", "", be.Addr()))
	c := p.dial(t, "vs")
	data := make([]byte, size)
	_, _ = rand.Read(data)
	want := sha256.Sum256(data)

	var wg sync.WaitGroup
	var werr error
	wg.Add(1)
	go func() {
		defer wg.Done()
		_, werr = c.Write(data)
		_ = c.CloseWrite()
	}()
	h := sha256.New()
	n, err := io.Copy(h, c)
	wg.Wait()
	if werr != nil || err != nil {
		t.Fatalf("write %v, read %v", werr, err)
	}
	if n != size || !bytes.Equal(h.Sum(nil), want[:]) {
		t.Fatalf("got %d bytes, checksum match %v", n, bytes.Equal(h.Sum(nil), want[:]))
	}
	lines := p.waitAccess(t, 1)
	if fieldString(lines[0], "bytes_in") != "16777216" || fieldString(lines[0], "bytes_out") != "16777216" {
		t.Errorf("access bytes = %s / %s", fieldString(lines[0], "bytes_in"), fieldString(lines[0], "bytes_out"))
	}
}

const idleProfiles = `
[tcp_profile.short]
idle_timeout = "400ms"
`

// The idle timeout closes both sides: with reset_on_timeout (the default,
// as on F5) by RST, without it by each profile's close mode (graceful: FIN).
func TestIdleTimeoutClosesBothSides(t *testing.T) {
	for _, tc := range []struct {
		name    string
		profile string
		wantRST bool
	}{
		{"reset_on_timeout (default)", idleProfiles, true},
		{"graceful", idleProfiles + "reset_on_timeout = false\n", false},
	} {
		t.Run(tc.name, func(t *testing.T) {
			memberSaw := make(chan error, 1)
			be := socktest.Start(t, func(c *net.TCPConn) {
				defer c.Close()
				_, err := readAll(c)
				memberSaw <- err
			})
			p := startProxy(t, tcpConfig(tc.profile, `client_profile = "short"
server_profile = "short"`, "", be.Addr()))
			c := p.dial(t, "vs")
			start := time.Now()
			_, err := readAll(c)
			elapsed := time.Since(start)
			check := func(who string, err error) {
				t.Helper()
				if tc.wantRST && !errors.Is(err, syscall.ECONNRESET) {
					t.Errorf("%s: want ECONNRESET, got %v", who, err)
				}
				if !tc.wantRST && err != nil {
					t.Errorf("%s: want EOF (FIN), got %v", who, err)
				}
			}
			check("client", err)
			if elapsed < 400*time.Millisecond || elapsed > 2*time.Second {
				t.Fatalf("idle timeout fired after %s, want about 400ms", elapsed)
			}
			select {
			case err := <-memberSaw:
				check("member", err)
			case <-time.After(2 * time.Second):
				t.Fatal("member side was not closed")
			}
			lines := p.waitAccess(t, 1)
			if fc := fieldString(lines[0], "closed_first"); fc != "tether idle-timeout" {
				t.Errorf("closed_first = %q", fc)
			}
		})
	}
}

// After the client's FIN, a member that neither answers nor closes is cut
// at the half-close timeout, long before the idle timeout; a member that
// keeps sending after the FIN is not cut however long it takes.
func TestHalfCloseTimeoutBoundsTheOpenDirection(t *testing.T) {
	const profiles = `
[tcp_profile.hc]
idle_timeout = "30s"
half_close_timeout = "300ms"
`
	t.Run("silent member is cut", func(t *testing.T) {
		memberSaw := make(chan error, 1)
		probe := make(chan struct{})
		be := socktest.Start(t, func(c *net.TCPConn) {
			defer c.Close()
			_, _ = readAll(c) // sees the FIN, then neither answers nor closes
			select {
			case <-probe: // tether has cut the client side: was this side reset too?
				_, err := c.Write([]byte("late"))
				memberSaw <- err
			case <-time.After(5 * time.Second):
				memberSaw <- errors.New("never probed")
			}
		})
		p := startProxy(t, tcpConfig(profiles, `client_profile = "hc"`, "", be.Addr()))
		c := p.dial(t, "vs")
		_, _ = c.Write([]byte("request"))
		_ = c.CloseWrite()
		start := time.Now()
		_ = c.SetReadDeadline(time.Now().Add(5 * time.Second))
		_, err := readAll(c)
		if !errors.Is(err, syscall.ECONNRESET) { // reset_on_timeout
			t.Fatalf("client: want ECONNRESET, got %v", err)
		}
		if d := time.Since(start); d < 300*time.Millisecond || d > 2*time.Second {
			t.Fatalf("cut after %s, want about the 300ms half-close timeout", d)
		}
		lines := p.waitAccess(t, 1)
		if fc := fieldString(lines[0], "closed_first"); fc != "client FIN" {
			t.Errorf("closed_first = %q, want client FIN", fc)
		}
		if n := p.logs.FilterField(zap.String("closed_by", "tether half-close-timeout")).Len(); n != 1 {
			t.Errorf("%d access lines say closed_by tether half-close-timeout, want 1", n)
		}
		// reset_on_timeout: the member side is reset too.
		close(probe)
		if err := <-memberSaw; !errors.Is(err, syscall.ECONNRESET) && !errors.Is(err, syscall.EPIPE) {
			t.Errorf("member: want ECONNRESET at the half-close timeout, got %v", err)
		}
	})
	t.Run("member still sending survives", func(t *testing.T) {
		be := socktest.Start(t, func(c *net.TCPConn) {
			defer c.Close()
			_, _ = readAll(c)
			for i := 0; i < 10; i++ { // 10 x 100ms: over three half-close timeouts
				if _, err := c.Write([]byte{'0' + byte(i)}); err != nil {
					return
				}
				time.Sleep(100 * time.Millisecond) // the traffic pattern under test
			}
			_ = c.CloseWrite()
		})
		p := startProxy(t, tcpConfig(profiles, `client_profile = "hc"`, "", be.Addr()))
		c := p.dial(t, "vs")
		_ = c.CloseWrite()
		got, err := readAll(c)
		if err != nil || string(got) != "0123456789" {
			t.Fatalf("got %q, %v; access log: %v", got, err, p.waitAccess(t, 1)[0].ContextMap())
		}
	})
}

// Bytes trickling in one direction only, for much longer than the idle
// timeout, keep the connection open; so does a long one-way transfer that
// a slow reader drains.
func TestIdleTimeoutDoesNotFireWhileBytesFlow(t *testing.T) {
	be := socktest.Start(t, socktest.Echo)
	p := startProxy(t, tcpConfig(idleProfiles, `client_profile = "short"`, "", be.Addr()))

	t.Run("trickle", func(t *testing.T) {
		c := p.dial(t, "vs")
		buf := make([]byte, 1)
		for i := 0; i < 12; i++ { // 12 x 150ms = 1.8s, 4.5 idle timeouts
			if _, err := c.Write([]byte{'a'}); err != nil {
				t.Fatalf("write %d: %v", i, err)
			}
			if _, err := io.ReadFull(c, buf); err != nil {
				t.Fatalf("read %d: %v", i, err)
			}
			time.Sleep(150 * time.Millisecond) // the traffic pattern under test, not a wait
		}
	})
	t.Run("one-way transfer slower than the timeout", func(t *testing.T) {
		const size = 8 << 20
		type result struct {
			total int
			took  time.Duration
		}
		res := make(chan result, 1)
		sink := socktest.Start(t, func(c *net.TCPConn) {
			defer c.Close()
			buf := make([]byte, 64<<10)
			var total int
			start := time.Now()
			for {
				n, err := c.Read(buf)
				total += n
				if err != nil {
					res <- result{total, time.Since(start)}
					_, _ = c.Write([]byte("k"))
					return
				}
				// A slow reader: at most 64 KiB per 10 ms, so 8 MiB take
				// at least 1.28 s, over three idle timeouts.
				time.Sleep(10 * time.Millisecond)
			}
		})
		p2 := startProxy(t, tcpConfig(idleProfiles, `client_profile = "short"`, "", sink.Addr()))
		c := p2.dial(t, "vs")
		if _, err := c.Write(make([]byte, size)); err != nil {
			t.Fatalf("write: %v", err)
		}
		_ = c.CloseWrite()
		ack, err := readAll(c)
		if err != nil || string(ack) != "k" {
			t.Fatalf("ack %q, %v: the transfer was cut", ack, err)
		}
		r := <-res
		if r.total != size || r.took < 1200*time.Millisecond {
			t.Fatalf("sink read %d bytes in %s; want %d bytes over > 1.2s", r.total, r.took, size)
		}
	})
}

func TestResetCloseModeOnIdleTimeout(t *testing.T) {
	be := socktest.Start(t, func(c *net.TCPConn) {
		defer c.Close()
		_, _ = readAll(c)
	})
	p := startProxy(t, tcpConfig(`
[tcp_profile.short]
idle_timeout = "300ms"
close = "reset"
`, `client_profile = "short"`, "", be.Addr()))
	c := p.dial(t, "vs")
	_, err := readAll(c)
	if !errors.Is(err, syscall.ECONNRESET) {
		t.Fatalf("client read: want ECONNRESET, got %v", err)
	}
	p.waitAccess(t, 1)
	// tether's side of the client connection must leave no TIME_WAIT.
	if n := timeWaitCount(t, p.addr("vs"), c.LocalAddr().String()); n != 0 {
		t.Fatalf("%d TIME_WAIT sockets for the client tuple, want 0", n)
	}
}

func TestMemberUnreachableResetsClientPromptly(t *testing.T) {
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	dead := ln.Addr().String()
	_ = ln.Close() // nothing listens there now: connect is refused
	p := startProxy(t, tcpConfig("", "", "", dead))
	if d := expectReset(t, p.addr("vs")); d > time.Second {
		t.Fatalf("client closed after %s, want promptly", d)
	}
	socktest.WaitFor(t, 2*time.Second, "an error log line", func() bool {
		return p.logs.FilterMessageSnippet("no member could take the connection").Len() > 0
	})
}

func TestMaxConnectionsStopsAccepting(t *testing.T) {
	be := socktest.Start(t, socktest.Echo)
	p := startProxy(t, tcpConfig("", "max_connections = 2", "", be.Addr()))
	c1, c2 := p.dial(t, "vs"), p.dial(t, "vs")
	for _, c := range []*net.TCPConn{c1, c2} {
		_, _ = c.Write([]byte("x"))
		if _, err := io.ReadFull(c, make([]byte, 1)); err != nil {
			t.Fatal(err)
		}
	}
	// The third connects (the kernel's backlog holds it) but is not served.
	c3 := p.dial(t, "vs")
	_, _ = c3.Write([]byte("y"))
	_ = c3.SetReadDeadline(time.Now().Add(300 * time.Millisecond))
	if _, err := c3.Read(make([]byte, 1)); !errors.Is(err, unix.EAGAIN) && !isTimeout(err) {
		t.Fatalf("third connection was served at the limit: %v", err)
	}
	socktest.WaitFor(t, 2*time.Second, "a limit log line", func() bool {
		return p.logs.FilterMessageSnippet("connection limit reached").Len() > 0
	})
	if be.Accepted() != 2 {
		t.Fatalf("member accepted %d connections at the limit, want 2", be.Accepted())
	}
	// One closes: the third is accepted and served.
	_ = c1.Close()
	_ = c3.SetReadDeadline(time.Now().Add(3 * time.Second))
	if _, err := io.ReadFull(c3, make([]byte, 1)); err != nil {
		t.Fatalf("third connection after a slot freed: %v", err)
	}
	if s := p.srv.VirtualServer("vs").Stats(); s.LimitHits == 0 || s.Accepted != 3 {
		t.Fatalf("stats = %+v", s)
	}
}

func isTimeout(err error) bool {
	var ne net.Error
	return errors.As(err, &ne) && ne.Timeout()
}

// With the health monitor having marked every member down, a client is reset
// at once (no connect attempt, no wait for a connect timeout) and the
// refusal is logged.
func TestAllMembersDownResetsClientsAndLogs(t *testing.T) {
	member, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	addr := member.Addr().String()
	p := startProxy(t, tcpConfig("", "", `connect_timeout = "3s"
[pool.p.health]
type = "tcp"
interval = "50ms"
timeout = "50ms"
fall = 1
rise = 1`, addr))
	_ = member.Close()
	m := p.srv.Pool("p").Members()[0]
	socktest.WaitFor(t, 3*time.Second, "the member to be marked down", func() bool { return m.State().String() == "down" })

	for i := 0; i < 3; i++ {
		if d := expectReset(t, p.addr("vs")); d > 500*time.Millisecond {
			t.Fatalf("client %d closed after %s, want at once", i, d)
		}
	}
	socktest.WaitFor(t, 2*time.Second, "the error log line", func() bool {
		for _, e := range p.logs.FilterMessageSnippet("no member could take the connection").All() {
			if e.Level.String() == "error" && strings.Contains(fieldString(e, "error"), "no member available") {
				return true
			}
		}
		return false
	})
	lines := p.waitAccess(t, 3)
	if fc := fieldString(lines[0], "closed_first"); fc != "tether error" {
		t.Errorf("closed_first = %q", fc)
	}
}

// Preconnected server-side conns are ready before the first client and the
// client is served on one of them (no backend handshake on its path).
func TestClientIsServedOnAPreconnectedConn(t *testing.T) {
	be := socktest.Start(t, socktest.Echo)
	p := startProxy(t, tcpConfig("", "", "preconnect = 2", be.Addr()))
	socktest.WaitFor(t, 3*time.Second, "2 preconnected conns", func() bool { return be.Accepted() == 2 })
	c := p.dial(t, "vs")
	_, _ = c.Write([]byte("z"))
	if _, err := io.ReadFull(c, make([]byte, 1)); err != nil {
		t.Fatal(err)
	}
	_ = c.Close()
	lines := p.waitAccess(t, 1)
	if fieldString(lines[0], "preconnected") != "true" {
		t.Fatalf("client was not served on a preconnected conn: %v", lines[0].ContextMap())
	}
	socktest.WaitFor(t, 3*time.Second, "the stock refilled", func() bool { return be.Accepted() == 3 })
}

// blackholedMember returns the address of a member whose SYNs are dropped:
// a listener with a tiny backlog whose accept queue is full (Linux drops the
// SYN when tcp_abort_on_overflow is 0, the default), so connects to it hang
// as they would to a black-holed host, all on 127.0.0.1.
func blackholedMember(t *testing.T) string {
	t.Helper()
	prof := config.DefaultProfile()
	prof.Backlog = 1
	ln, err := sockopt.Listen(context.Background(), prof, "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { ln.Close() })
	addr := ln.Addr().String()
	for i := 0; i < 10; i++ {
		c, err := net.DialTimeout("tcp", addr, 200*time.Millisecond)
		if err != nil {
			return addr // this SYN was dropped: the queue is full
		}
		t.Cleanup(func() { c.Close() })
	}
	t.Fatal("could not fill the accept queue of the black-holed member")
	return ""
}

// A member that drops SYNs costs a client one connect_timeout, then the next
// member serves it; with no other member the client is reset after the
// timeout. No client hangs.
func TestBlackholedMemberTimesOutAndFailsOver(t *testing.T) {
	dead := blackholedMember(t)
	good := socktest.Start(t, socktest.Echo)
	t.Run("failover", func(t *testing.T) {
		p := startProxy(t, tcpConfig("", "", `connect_timeout = "300ms"`, dead, good.Addr()))
		var slow int
		for i := 0; i < 2; i++ { // round-robin: the dead member is tried first at least once
			start := time.Now()
			c := p.dial(t, "vs")
			_ = c.SetDeadline(time.Now().Add(3 * time.Second))
			_, _ = c.Write([]byte("q"))
			if _, err := io.ReadFull(c, make([]byte, 1)); err != nil {
				t.Fatalf("client %d not served: %v", i, err)
			}
			if d := time.Since(start); d >= 300*time.Millisecond {
				slow++
				if d > 2*time.Second {
					t.Fatalf("client %d served after %s: more than one connect timeout", i, d)
				}
			}
		}
		if slow == 0 {
			t.Fatal("no client met the black-holed member: the test proved nothing")
		}
	})
	t.Run("no other member", func(t *testing.T) {
		p := startProxy(t, tcpConfig("", "", "connect_timeout = \"300ms\"\nconnect_retries = 0", dead))
		if d := expectReset(t, p.addr("vs")); d < 300*time.Millisecond || d > 2*time.Second {
			t.Fatalf("client reset after %s, want just after the 300ms connect timeout", d)
		}
	})
}

// expectReset connects to addr and expects tether to reset the connection
// (the reset may even beat the client's own connect completing). It returns
// how long that took.
func expectReset(t *testing.T, addr string) time.Duration {
	t.Helper()
	start := time.Now()
	c, err := net.DialTimeout("tcp", addr, 2*time.Second)
	if err == nil {
		defer c.Close()
		_ = c.SetReadDeadline(time.Now().Add(5 * time.Second))
		_, err = readAll(c)
	}
	if !errors.Is(err, syscall.ECONNRESET) {
		t.Fatalf("want ECONNRESET, got %v", err)
	}
	return time.Since(start)
}
