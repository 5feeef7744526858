package faults

import (
	"bufio"
	"bytes"
	"fmt"
	"io"
	"net"
	"net/http"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"

	"golang.org/x/sys/unix"

	"github.com/tetherproxy/tether/sockopt"
)

// Fault 8, client faults, on the link cl <-> lb. Every test here runs
// tether with http virtual server "web" (pool "web": member 1's :80) and
// tcp virtual server "hc" (pool "sink": member 1's lcSinkPort, a listener
// of the test's own), both with client profile "cl", which each test sets
// to the bound it proves.

// lcClientConfig is that config with profile "cl" = the tcp profile plus
// the settings in clientProfile.
func lcClientConfig(clientProfile string) string {
	return httpPool(1, "") + fmt.Sprintf(`
[tcp_profile.cl]
parent = "tcp"
%s

[pool.sink]
[[pool.sink.members]]
address = "%s:%d"

[[virtual_server]]
name = "web"
listen = "%s:8080"
mode = "http"
pool = "web"
client_profile = "cl"

[[virtual_server]]
name = "hc"
listen = "%s:7009"
mode = "tcp"
pool = "sink"
client_profile = "cl"
`, clientProfile, memberIP(1), lcSinkPort, lbClientSide, lbClientSide)
}

// lcSinkPort is the port of lcSink on member 1.
const lcSinkPort = 9

// lcBig is the size of the responses that stall: more than the socket
// buffers on the way can hold (the client's, fixed small; on the member
// link, autotuned up to tcp_rmem's and tcp_wmem's maximum, 32 + 4 MiB
// here; 4 MiB of tether's send buffer), so the member still has part of
// the response to send when the client stalls, and tether cannot have
// read it whole.
const lcBig = 64 << 20

// lcClientLab is a lab with member 1 (http, and the sink) and tether
// running lcClientConfig(clientProfile).
func lcClientLab(t *testing.T, clientProfile string) (*lab, *tetherProc, *lcSink) {
	l := newLab(t, 1)
	l.startMember(1, memberConfig{HTTP: true})
	s := lcStartSink(l)
	p := l.startTether(lcClientConfig(clientProfile), tetherOpts{})
	return l, p, s
}

// Fault 8a, clients that vanish mid-response: a client (128 KiB
// SO_RCVBUF) asks for a 64 MiB response, reads its head and 256 KiB of
// it, and then is black-holed (every packet on lb-cl dropped, both ways)
// and reads no more.
//
// Load: that one client; then two requests on a new conn once the link is
// back.
//
// Bound: tether gives the response up (its access line, with the error
// that says which bound fired) within the client profile's bound, +-1 s:
// user_timeout (2 s, idle 30 s: the kernel gives up on tether's
// unacknowledged data), or with no user_timeout the idle timeout (3 s:
// tether's write to the client stalls once the socket buffer is full).
// The client conn is gone within that bound plus proxy's 2 s lingering
// close (which only a live socket waits out) plus 1 s.
//
// Nothing lost, and the rules: the response was not relayed whole, so its
// member conn cannot go back to the pool: it is discarded (counted), the
// member sees its conn closed, and the pool holds no conn in a bad state:
// the next request is answered 200 on a fresh member conn. tether's fds
// and goroutines come back to baseline.
func TestFaultClientVanishes(t *testing.T) {
	for _, tc := range []struct {
		name, profile string
		bound         time.Duration
		errText       string // in the access line's error: which bound fired
	}{
		{"user_timeout", "user_timeout = \"2s\"\nidle_timeout = \"30s\"", 2 * time.Second, "connection timed out"},
		{"idle_timeout", "idle_timeout = \"3s\"", 3 * time.Second, "i/o timeout"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			l, p, _ := lcClientLab(t, tc.profile)
			base := p.usage()
			c, err := lcDialSmall(l.CL, lbClientSide+":8080", 128<<10)
			if err != nil {
				t.Fatal(err)
			}
			defer c.Close()
			_ = c.SetDeadline(time.Now().Add(10 * time.Second))
			fmt.Fprintf(c, "GET /?size=%d HTTP/1.1\r\nHost: faults\r\nX-Req-Id: lc-vanish\r\n\r\n", lcBig)
			br := bufio.NewReader(c)
			resp, err := http.ReadResponse(br, nil)
			if err != nil || resp.StatusCode != 200 {
				t.Fatalf("response head: %v %v", resp, err)
			}
			got := make([]byte, 256<<10)
			if _, err := io.ReadFull(resp.Body, got); err != nil || !bytes.Equal(got, patternBody(len(got))) {
				t.Fatalf("first 256 KiB of the body: %v", err)
			}
			port := lcMemberConnPort(t, l, 1)
			restore := l.lcBlackholeClients()
			start := time.Now()
			at := lcRequestError(t, p, "lc-vanish", tc.errText)
			lcWithin(t, "tether gave up the response to the vanished client", at.Sub(start), tc.bound)
			gone := p.lcWaitNoConn("web", start, tc.bound+lcLinger+time.Second)
			restore()
			lcMemberConnClosed(t, l, 1, port)
			lcPoolAfterUnfinished(t, p, l)
			u := p.settles(base, 2, 10*time.Second)
			t.Logf("bound %s (%s): tether gave up the response %s after the black hole, the conn was gone after %s; baseline %s, after %s",
				tc.bound, tc.name, at.Sub(start).Round(time.Millisecond), gone.Round(time.Millisecond), base, u)
		})
	}
}

// Fault 8b, clients that half-close: a client sends its request, then
// shutdown(SHUT_WR) (FIN), and reads.
//
// Load: http: two such clients, one asking for a small response and one
// for 1 MiB. tcp: one client that sends 64 KiB to a member (the sink)
// that reads it all, sees the FIN and never answers or closes.
//
// Bound: http: the whole response, then the close (within 5 s). tcp: the
// client profile's half_close_timeout (2 s; idle_timeout 30 s) ends the
// half-closed relay, +-1 s, as "tether half-close-timeout" (and with
// reset_on_timeout, by RST: the member's socket is closed).
//
// Nothing lost: http: each response arrives whole and byte-exact, and its
// member conn goes back to the pool (the response was relayed whole: none
// discarded, one idle conn, reused by the second request). tcp: the member
// got the 64 KiB byte-exact, then the FIN. tether's fds and goroutines
// come back to baseline.
func TestFaultClientHalfCloses(t *testing.T) {
	const halfClose = 2 * time.Second
	l, p, sink := lcClientLab(t, fmt.Sprintf("half_close_timeout = %q\nidle_timeout = \"30s\"", halfClose))
	base := p.usage()

	t.Run("http", func(t *testing.T) {
		for i, size := range []int{-1, 1 << 20} {
			c, err := dialTimeout(l.CL, lbClientSide+":8080", 5*time.Second)
			if err != nil {
				t.Fatal(err)
			}
			_ = c.SetDeadline(time.Now().Add(5 * time.Second))
			target, want := "/", []byte("ok m1\n")
			if size >= 0 {
				target, want = fmt.Sprintf("/?size=%d", size), patternBody(size)
			}
			fmt.Fprintf(c, "GET %s HTTP/1.1\r\nHost: faults\r\nX-Req-Id: lc-half-%d\r\n\r\n", target, i)
			if err := c.CloseWrite(); err != nil {
				t.Fatal(err)
			}
			br := bufio.NewReader(c)
			resp, err := http.ReadResponse(br, nil)
			if err != nil {
				t.Fatalf("request %s after the client's FIN: %v", target, err)
			}
			body, err := io.ReadAll(resp.Body)
			if err != nil || resp.StatusCode != 200 || !bytes.Equal(body, want) {
				t.Fatalf("request %s after the client's FIN: status %d, %d bytes (want %d), %v", target, resp.StatusCode, len(body), len(want), err)
			}
			if n, err := br.Read(make([]byte, 1)); n != 0 || err != io.EOF {
				t.Fatalf("after the response to a half-closed client: %d bytes, %v (want the close)", n, err)
			}
			c.Close()
		}
		m := p.members("web")[fmt.Sprintf("%s:%d", memberIP(1), memberHTTPPort)]
		r := m.Reuse["web"]
		if r.Discarded != 0 || r.Opened != 1 || r.Reused != 1 || m.Idle != 1 {
			t.Fatalf("member conns after two whole responses: %+v (idle %d): want 1 opened, reused once, none discarded, 1 idle", r, m.Idle)
		}
	})

	t.Run("tcp", func(t *testing.T) {
		c, err := dialTimeout(l.CL, lbClientSide+":7009", 5*time.Second)
		if err != nil {
			t.Fatal(err)
		}
		defer c.Close()
		_ = c.SetDeadline(time.Now().Add(halfClose + 5*time.Second))
		sent := patternBody(64 << 10)
		if _, err := c.Write(sent); err != nil {
			t.Fatal(err)
		}
		if err := c.CloseWrite(); err != nil {
			t.Fatal(err)
		}
		var sc lcSinkConn
		select {
		case sc = <-sink.conns:
		case <-time.After(5 * time.Second):
			t.Fatal("the member saw no conn that sent bytes and FIN")
		}
		if !bytes.Equal(sc.got, sent) {
			t.Fatalf("the member got %d bytes, want the 64 KiB sent, byte-exact", len(sc.got))
		}
		start := sc.eof // the FIN reached the member: the relay is half-closed
		n, err := c.Read(make([]byte, 1))
		took := time.Since(start)
		if n != 0 || err == nil || isTimeout(err) {
			t.Fatalf("half-closed relay: read %d bytes, %v after %s: want it ended by the half-close timeout", n, err, took)
		}
		lcWithin(t, "tether ended the half-closed relay", took, halfClose)
		line := p.lcWaitLog(t, "connection", func(m map[string]any) bool { return m["virtual_server"] == "hc" })
		if line["closed_first"] != "client FIN" || line["closed_by"] != "tether half-close-timeout" {
			t.Fatalf("access line: closed_first %v, closed_by %v: want client FIN, tether half-close-timeout", line["closed_first"], line["closed_by"])
		}
		sc.waitClosed(t, 2*time.Second)
		t.Logf("half_close_timeout %s: the relay ended %s after the FIN reached the member (client saw %v)", halfClose, took.Round(time.Millisecond), err)
	})
	u := p.settles(base, 2, 10*time.Second)
	t.Logf("baseline %s, after %s", base, u)
}

// Fault 8c, zero-window clients that never read: a client with a 2 KiB
// SO_RCVBUF (set before connect, so the window it offers stays tiny) asks
// for a 64 MiB response and never reads. Its kernel answers tether's
// window probes, so keepalive never fires (data is queued) and the conn
// looks alive to TCP.
//
// Load: that one client; then two requests on a new conn.
//
// Bound: what gives the response up (its access line, with the error
// that says which bound fired) is the client profile's user_timeout (2 s,
// idle 30 s: since Linux 5.11 the kernel counts the time the window stays
// shut from the first window probe, answered or not, and gives up at
// user_timeout) or, with no user_timeout, the idle timeout (3 s), which
// bounds each write of the response to the client (tether's own write
// deadline); +-1 s. The client conn is gone within that bound plus the
// 2 s lingering close plus 1 s.
//
// Nothing lost, and the rules: the response was not sent whole, so its
// member conn is discarded (counted), not pooled, and the member sees it
// closed; the next request is answered 200 on a fresh member conn. tether's
// fds and goroutines come back to baseline.
func TestFaultClientZeroWindow(t *testing.T) {
	for _, tc := range []struct {
		name, profile string
		bound         time.Duration
		errText       string
	}{
		{"user_timeout", "user_timeout = \"2s\"\nidle_timeout = \"30s\"", 2 * time.Second, "connection timed out"},
		{"idle_timeout", "idle_timeout = \"3s\"", 3 * time.Second, "i/o timeout"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			l, p, _ := lcClientLab(t, tc.profile)
			base := p.usage()
			c, err := lcDialSmall(l.CL, lbClientSide+":8080", 2048)
			if err != nil {
				t.Fatal(err)
			}
			defer c.Close()
			fmt.Fprintf(c, "GET /?size=%d HTTP/1.1\r\nHost: faults\r\nX-Req-Id: lc-zero\r\n\r\n", lcBig)
			start := lcFirstBytes(t, c) // the response began: the tiny window is full at once
			port := lcMemberConnPort(t, l, 1)
			at := lcRequestError(t, p, "lc-zero", tc.errText)
			lcWithin(t, "tether gave up the response to the zero-window client", at.Sub(start), tc.bound)
			gone := p.lcWaitNoConn("web", start, tc.bound+lcLinger+time.Second)
			if info, err := sockopt.GetInfo(c); err == nil {
				t.Logf("client socket: state %v, %d bytes received", info.State, info.BytesReceived)
			}
			lcMemberConnClosed(t, l, 1, port)
			lcPoolAfterUnfinished(t, p, l)
			u := p.settles(base, 2, 10*time.Second)
			t.Logf("bound %s (%s): tether gave up the response %s after the response began, the conn was gone after %s; baseline %s, after %s",
				tc.bound, tc.name, at.Sub(start).Round(time.Millisecond), gone.Round(time.Millisecond), base, u)
		})
	}
}

// lcFirstBytes waits up to 5 s for c's kernel to receive bytes (without
// reading them) and returns when it saw them.
func lcFirstBytes(t *testing.T, c *net.TCPConn) time.Time {
	t.Helper()
	deadline := time.Now().Add(5 * time.Second)
	for {
		info, err := sockopt.GetInfo(c)
		if err != nil {
			t.Fatal(err)
		}
		if info.BytesReceived > 0 {
			return time.Now()
		}
		if time.Now().After(deadline) {
			t.Fatal("no response byte reached the client within 5 s")
		}
		time.Sleep(5 * time.Millisecond)
	}
}

// lcWithin fails the test unless took is within 1 s of bound.
func lcWithin(t *testing.T, what string, took, bound time.Duration) {
	t.Helper()
	if took < bound-time.Second || took > bound+time.Second {
		t.Fatalf("%s after %s: want %s +-1s", what, took.Round(time.Millisecond), bound)
	}
}

// lcBlackholeClients drops every packet on lb's client link, both ways,
// until the returned func is called.
func (l *lab) lcBlackholeClients() (restore func()) {
	l.t.Helper()
	in := l.iptables(l.LB, "INPUT", "-i", "lb-cl", "-j", "DROP")
	out := l.iptables(l.LB, "OUTPUT", "-o", "lb-cl", "-j", "DROP")
	return func() { in(); out() }
}

// lcDialSmall connects from ns to addr with a tiny receive buffer, set
// before connect so that the window the conn offers stays tiny.
func lcDialSmall(ns, addr string, rcvbuf int) (*net.TCPConn, error) {
	var c net.Conn
	err := inNetns(ns, func() error {
		d := net.Dialer{Timeout: 5 * time.Second, Control: func(_, _ string, rc syscall.RawConn) error {
			var serr error
			if err := rc.Control(func(fd uintptr) {
				serr = unix.SetsockoptInt(int(fd), unix.SOL_SOCKET, unix.SO_RCVBUF, rcvbuf)
			}); err != nil {
				return err
			}
			return serr
		}}
		var err error
		c, err = d.Dial("tcp", addr)
		return err
	})
	if err != nil {
		return nil, err
	}
	return c.(*net.TCPConn), nil
}

// lcWaitNoConn waits up to within (from since) for virtual server vs to
// hold no client conn, and returns how long after since it saw that.
func (p *tetherProc) lcWaitNoConn(vs string, since time.Time, within time.Duration) time.Duration {
	p.t.Helper()
	for {
		st := p.vsStats(vs)
		took := time.Since(since)
		if st.Active == 0 {
			return took
		}
		if took > within {
			p.t.Fatalf("virtual server %s still holds %d client conn(s) %s after the fault\n%s", vs, st.Active, within, p.logTail())
		}
		time.Sleep(20 * time.Millisecond)
	}
}

// lcWaitLog waits up to 5 s for a JSON log line with msg that match
// accepts, and returns it.
func (p *tetherProc) lcWaitLog(t *testing.T, msg string, match func(map[string]any) bool) map[string]any {
	t.Helper()
	deadline := time.Now().Add(5 * time.Second)
	for {
		for _, m := range p.logLines(msg) {
			if match(m) {
				return m
			}
		}
		if time.Now().After(deadline) {
			t.Fatalf("no %q log line as expected within 5 s\n%s", msg, p.logTail())
		}
		time.Sleep(20 * time.Millisecond)
	}
}

// lcLinger is how long tether may still read from a client after a
// request that ended the conn (proxy's lingeringClose: 2 s), before it
// closes it: a stalled client conn is gone within its bound plus this.
const lcLinger = 2 * time.Second

// lcRequestError checks the access line of request id: it ended with an
// error containing errText (what says which bound fired). It returns when
// tether wrote it (the line's ts).
func lcRequestError(t *testing.T, p *tetherProc, id, errText string) time.Time {
	t.Helper()
	line := p.lcWaitLog(t, "request", func(m map[string]any) bool {
		return m["virtual_server"] == "web" && m["member"] != nil && m["status"] == float64(200) && m["error"] != nil
	})
	e, _ := line["error"].(string)
	if !strings.Contains(e, errText) {
		t.Fatalf("request %s ended with error %q: want %q (the bound under test)", id, e, errText)
	}
	if out, _ := line["bytes_out"].(float64); out >= lcBig {
		t.Fatalf("request %s: %v body bytes sent, want fewer than %d (it stalled)", id, out, lcBig)
	}
	ts, _ := line["ts"].(string)
	at, err := time.Parse(time.RFC3339Nano, ts)
	if err != nil {
		t.Fatalf("request %s: access line's ts %q: %v", id, ts, err)
	}
	return at
}

// lcMemberConnPort finds, in member i's namespace, the conn to its http
// port that carries the stalled response (data queued to send) and
// returns tether's port on it.
func lcMemberConnPort(t *testing.T, l *lab, i int) string {
	t.Helper()
	deadline := time.Now().Add(5 * time.Second)
	for {
		for _, c := range lcMemberConns(t, l, i) {
			if c.sendQ > 0 {
				return c.peerPort
			}
		}
		if time.Now().After(deadline) {
			t.Fatalf("member %d has no conn with a response queued: %v", i, lcMemberConns(t, l, i))
		}
		time.Sleep(20 * time.Millisecond)
	}
}

type lcSS struct {
	state, peerPort string
	sendQ           int
}

// lcMemberConns lists member i's TCP conns on its http port (ss).
func lcMemberConns(t *testing.T, l *lab, i int) []lcSS {
	t.Helper()
	out := l.run(l.Members[i-1], "ss", "-tnH", "state", "all", fmt.Sprintf("( sport = :%d )", memberHTTPPort))
	var cs []lcSS
	for _, line := range strings.Split(strings.TrimSpace(out), "\n") {
		f := strings.Fields(line)
		if len(f) < 5 || f[0] == "LISTEN" {
			continue
		}
		var c lcSS
		c.state = f[0]
		fmt.Sscan(f[2], &c.sendQ)
		c.peerPort = f[4][strings.LastIndexByte(f[4], ':')+1:]
		cs = append(cs, c)
	}
	return cs
}

// lcMemberConnClosed waits up to 2 s for member i's conn from tether's
// port to be gone or no longer established (tether closed or reset it).
func lcMemberConnClosed(t *testing.T, l *lab, i int, port string) {
	t.Helper()
	deadline := time.Now().Add(2 * time.Second)
	for {
		open := false
		for _, c := range lcMemberConns(t, l, i) {
			if c.peerPort == port && c.state == "ESTAB" {
				open = true
			}
		}
		if !open {
			return
		}
		if time.Now().After(deadline) {
			t.Fatalf("member %d's conn from tether's port %s is still established after the client conn ended", i, port)
		}
		time.Sleep(20 * time.Millisecond)
	}
}

// lcPoolAfterUnfinished checks pool "web" after one response that was not
// relayed whole: its member conn was discarded, none is idle or lent, and
// the next request is answered 200 on a fresh member conn.
func lcPoolAfterUnfinished(t *testing.T, p *tetherProc, l *lab) {
	t.Helper()
	addr := fmt.Sprintf("%s:%d", memberIP(1), memberHTTPPort)
	m := p.members("web")[addr]
	r := m.Reuse["web"]
	if r.Discarded != 1 || r.Opened != 1 || m.Idle != 0 || m.Active != 0 {
		t.Fatalf("after an unfinished response: member %+v, reuse %+v: want its one conn discarded, none idle or active", m.Counters, r)
	}
	ld := startLoad(t, loadSpec{NS: l.CL, Addr: lbClientSide + ":8080", Clients: 1, Requests: 2, Duration: 10 * time.Second, Timeout: 5 * time.Second})
	if res := ld.wait(); res.OK() != 2 {
		t.Fatalf("requests after the fault: %s", &res)
	}
	m = p.members("web")[addr]
	if r := m.Reuse["web"]; r.Opened != 2 || r.Discarded != 1 || m.Idle != 1 {
		t.Fatalf("after the next requests: reuse %+v, idle %d: want a second conn opened and pooled", r, m.Idle)
	}
}

// lcSink is member 1's listener on lcSinkPort: it reads each conn to its
// FIN, then neither writes nor closes (a member that never answers a
// half-closed client). Conns that sent nothing (health checks) are closed.
type lcSink struct {
	conns chan lcSinkConn
	mu    sync.Mutex
	held  []*net.TCPConn
}

type lcSinkConn struct {
	c   *net.TCPConn
	got []byte
	eof time.Time
}

func lcStartSink(l *lab) *lcSink {
	ln := listen(l.t, l.Members[0], fmt.Sprintf("%s:%d", memberIP(1), lcSinkPort))
	s := &lcSink{conns: make(chan lcSinkConn, 4)}
	var wg sync.WaitGroup
	wg.Add(1)
	go func() {
		defer wg.Done()
		for {
			c, err := ln.AcceptTCP()
			if err != nil {
				return
			}
			s.mu.Lock()
			s.held = append(s.held, c) // the test's end closes it
			s.mu.Unlock()
			wg.Add(1)
			go func() {
				defer wg.Done()
				_ = c.SetReadDeadline(time.Now().Add(20 * time.Second))
				got, err := io.ReadAll(c)
				if err != nil || len(got) == 0 {
					c.Close()
					return
				}
				select {
				case s.conns <- lcSinkConn{c: c, got: got, eof: time.Now()}:
				default: // more than the test reads: it holds the conn all the same
				}
			}()
		}
	}()
	l.t.Cleanup(func() {
		_ = ln.Close()
		s.mu.Lock()
		for _, c := range s.held {
			c.Close()
		}
		s.mu.Unlock()
		wg.Wait()
	})
	return s
}

// waitClosed waits up to within for tether to close (reset) the held
// member conn: its kernel state leaves CLOSE_WAIT.
func (sc lcSinkConn) waitClosed(t *testing.T, within time.Duration) {
	t.Helper()
	deadline := time.Now().Add(within)
	for {
		info, err := sockopt.GetInfo(sc.c)
		if err != nil {
			t.Fatal(err)
		}
		if info.State == sockopt.StateClosed {
			return
		}
		if time.Now().After(deadline) {
			t.Fatalf("the member's conn is still %v %s after the relay ended: tether did not close it", info.State, within)
		}
		time.Sleep(20 * time.Millisecond)
	}
}
