package proxy

import (
	"bufio"
	"fmt"
	"io"
	"net"
	"net/http"
	"sync"
	"testing"
	"time"

	"github.com/tetherproxy/tether/sockopt"
	"github.com/tetherproxy/tether/sockopt/socktest"
)

// remotes records the address each conn a backend accepted came from:
// tether's local address of the member conn.
type remotes struct {
	mu   sync.Mutex
	seen map[string]bool
}

func (r *remotes) add(a string) {
	r.mu.Lock()
	defer r.mu.Unlock()
	if r.seen == nil {
		r.seen = map[string]bool{}
	}
	r.seen[a] = true
}

func (r *remotes) has(a string) bool {
	r.mu.Lock()
	defer r.mu.Unlock()
	return r.seen[a]
}

// byClient finds the entry whose client socket's remote is the client's
// local address.
func byClient(t *testing.T, conns []ConnInfo, c net.Conn) ConnInfo {
	t.Helper()
	for _, ci := range conns {
		if ci.Client.Remote.String() == c.LocalAddr().String() {
			return ci
		}
	}
	t.Fatalf("no connection of client %s in %+v", c.LocalAddr(), conns)
	return ConnInfo{}
}

// echoOnce writes msg and reads its echo.
func echoOnce(t *testing.T, c *net.TCPConn, msg string) {
	t.Helper()
	_ = c.SetDeadline(time.Now().Add(5 * time.Second))
	if _, err := io.WriteString(c, msg); err != nil {
		t.Fatal(err)
	}
	got := make([]byte, len(msg))
	if _, err := io.ReadFull(c, got); err != nil || string(got) != msg {
		t.Fatalf("echo: %q %v", got, err)
	}
}

// In tcp mode every relay is listed, oldest first, with the 4-tuples both
// ends see (the member sees the server side's local address as its
// remote), ESTABLISHED sockets with an RTT and a congestion window, and
// byte counts that move with the data.
func TestConnectionsListEveryTCPRelayWithBothFourTuples(t *testing.T) {
	var seen remotes
	be := socktest.Start(t, func(c *net.TCPConn) {
		seen.add(c.RemoteAddr().String())
		socktest.Echo(c)
	})
	p := startProxy(t, tcpConfig("", "", "", be.Addr()))
	vs := p.srv.VirtualServer("vs")
	const n = 3
	var clients []*net.TCPConn
	for range n {
		c := p.dial(t, "vs")
		echoOnce(t, c, "hello") // the relay runs: its member conn is up
		clients = append(clients, c)
	}
	// The clients have their echo; the ACKs of it may reach tether a
	// moment later.
	socktest.WaitFor(t, 5*time.Second, "both sides of every conn to have the echo acknowledged", func() bool {
		_, conns := vs.Connections(0)
		for _, ci := range conns {
			if ci.Client.BytesAcked < 5 || ci.Server == nil || ci.Server.BytesAcked < 5 {
				return false
			}
		}
		return len(conns) == n
	})
	total, conns := vs.Connections(0)
	if total != n || len(conns) != n {
		t.Fatalf("Connections: total %d, %d listed; want %d", total, len(conns), n)
	}
	ids := map[uint64]bool{}
	for i, c := range clients {
		ci := conns[i] // oldest first: the order they were opened
		if got := byClient(t, conns, c); got.ID != ci.ID {
			t.Errorf("entry %d is conn %d, want client %d's (%d): not oldest first", i, ci.ID, i, got.ID)
		}
		ids[ci.ID] = true
		if ci.Client.Local.String() != p.addr("vs") || ci.Client.Remote.String() != c.LocalAddr().String() {
			t.Errorf("client side %s <- %s, want %s <- %s", ci.Client.Local, ci.Client.Remote, p.addr("vs"), c.LocalAddr())
		}
		if ci.Server == nil {
			t.Fatalf("conn %d: no server side in tcp mode", ci.ID)
		}
		if ci.Server.Remote.String() != be.Addr() || !seen.has(ci.Server.Local.String()) {
			t.Errorf("server side %s -> %s: the member at %s saw no conn from there", ci.Server.Local, ci.Server.Remote, be.Addr())
		}
		for side, s := range map[string]SocketInfo{"client": ci.Client, "server": *ci.Server} {
			if s.State != sockopt.StateEstablished || s.RTT <= 0 || s.Cwnd == 0 {
				t.Errorf("conn %d %s side: %+v, want ESTABLISHED with an RTT and a cwnd", ci.ID, side, s.Info)
			}
			if s.BytesReceived < 5 || s.BytesAcked < 5 {
				t.Errorf("conn %d %s side: %d in, %d out, want the 5 echoed bytes each way", ci.ID, side, s.BytesReceived, s.BytesAcked)
			}
		}
		if i > 0 && ci.Age > conns[i-1].Age {
			t.Errorf("entry %d is younger than entry %d: %v < %v", i-1, i, conns[i-1].Age, ci.Age)
		}
		if ci.Age <= 0 {
			t.Errorf("conn %d: age %v", ci.ID, ci.Age)
		}
	}
	if len(ids) != n {
		t.Errorf("ids not unique: %v", ids)
	}

	// More bytes through the first: its counters move on both sockets.
	before := byClient(t, conns, clients[0])
	echoOnce(t, clients[0], string(make([]byte, 1000)))
	socktest.WaitFor(t, 5*time.Second, "the byte counters to count 1000 more bytes", func() bool {
		_, now := vs.Connections(0)
		ci := byClient(t, now, clients[0])
		return ci.Client.BytesReceived >= before.Client.BytesReceived+1000 &&
			ci.Client.BytesAcked >= before.Client.BytesAcked+1000 &&
			ci.Server != nil && ci.Server.BytesReceived >= before.Server.BytesReceived+1000 &&
			ci.Server.BytesAcked >= before.Server.BytesAcked+1000
	})

	// limit: the oldest ones, and the total.
	total, conns2 := vs.Connections(2)
	if total != n || len(conns2) != 2 || conns2[0].ID != conns[0].ID || conns2[1].ID != conns[1].ID {
		t.Errorf("Connections(2): total %d, %+v; want %d in all and the two oldest", total, conns2, n)
	}

	for _, c := range clients {
		_ = c.Close()
	}
	socktest.WaitFor(t, 5*time.Second, "no connections listed once the clients closed", func() bool {
		total, conns := vs.Connections(0)
		return total == 0 && len(conns) == 0
	})
}

// In http mode a request in progress shows the member conn lent to it; an
// idle keepalive client under shared reuse (parked) shows none; once the
// slow request is answered its member conn goes back and the entry shows
// none either.
func TestConnectionsShowTheMemberConnOfARequestInProgress(t *testing.T) {
	entered := make(chan string, 1)
	release := make(chan struct{})
	var once sync.Once
	free := func() { once.Do(func() { close(release) }) }
	be := startHTTPBackend(t, func(w http.ResponseWriter, r *http.Request) {
		if r.URL.Path == "/slow" {
			entered <- r.RemoteAddr
			<-release
		}
		_, _ = io.WriteString(w, "ok")
	}, nil)
	p := startProxy(t, httpConfig("", "reuse = \"shared\"", be.Addr()))
	t.Cleanup(free) // before the proxy's and the backend's shutdown
	vs := p.srv.VirtualServer("vs")

	idle := p.dial(t, "vs")
	_ = idle.SetDeadline(time.Now().Add(10 * time.Second))
	if resp := getOn(t, idle, bufio.NewReader(idle), 0); resp.StatusCode != 200 {
		t.Fatalf("idle client's request: %d", resp.StatusCode)
	}
	socktest.WaitFor(t, 5*time.Second, "the idle client conn to be parked", func() bool { return vs.Stats().Parked == 1 })

	busy := p.dial(t, "vs")
	_ = busy.SetDeadline(time.Now().Add(10 * time.Second))
	fmt.Fprintf(busy, "GET /slow HTTP/1.1\r\nHost: x\r\n\r\n")
	var memberSaw string
	select {
	case memberSaw = <-entered:
	case <-time.After(5 * time.Second):
		t.Fatal("the slow request never reached the member")
	}

	total, conns := vs.Connections(0)
	if total != 2 || len(conns) != 2 {
		t.Fatalf("Connections: total %d, %+v; want the idle and the busy client", total, conns)
	}
	if conns[0].Client.Remote.String() != idle.LocalAddr().String() {
		t.Errorf("first entry is %s, want the older, idle client %s", conns[0].Client.Remote, idle.LocalAddr())
	}
	if ci := byClient(t, conns, idle); ci.Server != nil || ci.Client.State != sockopt.StateEstablished {
		t.Errorf("idle client under shared reuse: %+v, want no server side", ci)
	}
	ci := byClient(t, conns, busy)
	if ci.Server == nil {
		t.Fatalf("busy client: no server side while its request is at the member")
	}
	if ci.Server.Local.String() != memberSaw || ci.Server.Remote.String() != be.Addr() || ci.Server.State != sockopt.StateEstablished {
		t.Errorf("busy client's server side %s -> %s (%v), want %s -> %s ESTABLISHED", ci.Server.Local, ci.Server.Remote, ci.Server.State, memberSaw, be.Addr())
	}
	if ci.Client.Local.String() != p.addr("vs") || ci.Client.BytesReceived == 0 {
		t.Errorf("busy client's client side: %+v", ci.Client)
	}

	free()
	resp, err := http.ReadResponse(bufio.NewReader(busy), nil)
	if err != nil || resp.StatusCode != 200 {
		t.Fatalf("slow response: %v %v", resp, err)
	}
	_, _ = io.Copy(io.Discard, resp.Body)
	socktest.WaitFor(t, 5*time.Second, "the answered client to show no member conn", func() bool {
		_, conns := vs.Connections(0)
		return byClient(t, conns, busy).Server == nil
	})
}

// per-client reuse: the member conn a client conn holds between requests
// is shown while the client idles (parked), and an upgrade tunnel shows
// the member conn carrying it.
func TestConnectionsShowHeldAndTunnelMemberConns(t *testing.T) {
	var seen remotes
	be := socktest.Start(t, func(c *net.TCPConn) {
		seen.add(c.RemoteAddr().String())
		br := bufio.NewReader(c)
		for {
			req, err := http.ReadRequest(br)
			if err != nil {
				return
			}
			if req.Header.Get("Upgrade") == "websocket" {
				_, _ = c.Write([]byte("HTTP/1.1 101 Switching Protocols\r\nUpgrade: websocket\r\nConnection: Upgrade\r\n\r\n"))
				_, _ = io.Copy(c, br)
				return
			}
			_, _ = io.WriteString(c, "HTTP/1.1 200 OK\r\nContent-Length: 2\r\n\r\nok")
		}
	})
	p := startProxy(t, httpConfig("", "reuse = \"per-client\"", be.Addr()))
	vs := p.srv.VirtualServer("vs")

	held := p.dial(t, "vs")
	_ = held.SetDeadline(time.Now().Add(10 * time.Second))
	if resp := getOn(t, held, bufio.NewReader(held), 0); resp.StatusCode != 200 {
		t.Fatalf("request: %d", resp.StatusCode)
	}
	socktest.WaitFor(t, 5*time.Second, "the client conn to be parked", func() bool { return vs.Stats().Parked == 1 })
	tun, br := openTunnel(t, p, "/ws")
	if _, err := io.WriteString(tun, "ping"); err != nil {
		t.Fatal(err)
	}
	if got := make([]byte, 4); func() error { _, err := io.ReadFull(br, got); return err }() != nil || string(got) != "ping" {
		t.Fatalf("tunnel echo: %q", got)
	}

	_, conns := vs.Connections(0)
	for name, c := range map[string]net.Conn{"held": held, "tunnel": tun} {
		ci := byClient(t, conns, c)
		if ci.Server == nil || ci.Server.Remote.String() != be.Addr() || !seen.has(ci.Server.Local.String()) || ci.Server.State != sockopt.StateEstablished {
			t.Errorf("%s: server side %+v, want an ESTABLISHED member conn the member accepted", name, ci.Server)
		}
	}
	if h, u := byClient(t, conns, held).Server, byClient(t, conns, tun).Server; h != nil && u != nil && h.Local == u.Local {
		t.Errorf("the held and the tunnel's member conn are one socket: %s", h.Local)
	}
}

// Connections read while client conns open and close around it (tcp and
// http mode): sockets closing meanwhile are skipped, nothing races (run
// with -race), and every entry read is whole.
func TestConnectionsWhileConnsComeAndGo(t *testing.T) {
	for _, mode := range []string{"tcp", "http"} {
		t.Run(mode, func(t *testing.T) {
			var cfg string
			if mode == "tcp" {
				be := socktest.Start(t, socktest.Echo)
				cfg = tcpConfig("", "", "", be.Addr())
			} else {
				be := startHTTPBackend(t, func(w http.ResponseWriter, r *http.Request) { _, _ = io.WriteString(w, "ok") }, nil)
				cfg = httpConfig("", "", be.Addr())
			}
			p := startProxy(t, cfg)
			vs := p.srv.VirtualServer("vs")
			done := make(chan struct{})
			readerDone := make(chan int)
			go func() { // reads until the clients are done
				reads := 0
				for {
					select {
					case <-done:
						readerDone <- reads
						return
					default:
					}
					_, conns := vs.Connections(0)
					for _, ci := range conns {
						if !ci.Client.Local.IsValid() || !ci.Client.Remote.IsValid() || ci.ID == 0 {
							panic(fmt.Sprintf("entry not whole: %+v", ci))
						}
					}
					reads++
				}
			}()
			for i := range 100 {
				c := p.dial(t, "vs")
				_ = c.SetDeadline(time.Now().Add(5 * time.Second))
				if mode == "tcp" {
					echoOnce(t, c, "x")
				} else if resp := getOn(t, c, bufio.NewReader(c), i); resp.StatusCode != 200 {
					t.Fatalf("request %d: %d", i, resp.StatusCode)
				}
				_ = c.Close()
			}
			close(done)
			if reads := <-readerDone; reads == 0 {
				t.Error("the reader never ran")
			}
			socktest.WaitFor(t, 5*time.Second, "no connections listed", func() bool {
				total, _ := vs.Connections(0)
				return total == 0
			})
		})
	}
}
