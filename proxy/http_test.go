package proxy

import (
	"bufio"
	"bytes"
	"context"
	"crypto/tls"
	"fmt"
	"io"
	"log"
	"net"
	"net/http"
	"net/netip"
	"os"
	"os/exec"
	"runtime"
	"strings"
	"sync"
	"sync/atomic"
	"syscall"
	"testing"
	"time"

	"github.com/tetherproxy/tether/sockopt"
	"github.com/tetherproxy/tether/sockopt/socktest"
)

// httpBackend is an in-process net/http member that counts the TCP
// connections it accepted and the requests it served.
type httpBackend struct {
	srv      *http.Server
	ln       net.Listener
	conns    atomic.Int64
	requests atomic.Int64
	done     chan struct{}
}

func startHTTPBackend(t testing.TB, h http.HandlerFunc, tune func(*http.Server)) *httpBackend {
	t.Helper()
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	b := &httpBackend{ln: ln, done: make(chan struct{})}
	b.srv = &http.Server{
		Handler: http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
			b.requests.Add(1)
			h(w, r)
		}),
		ConnState: func(c net.Conn, s http.ConnState) {
			if s == http.StateNew {
				b.conns.Add(1)
			}
		},
		ErrorLog: log.New(io.Discard, "", 0), // expected handshake and conn errors stay out of the test output
	}
	if tune != nil {
		tune(b.srv)
	}
	serveLn := ln
	if b.srv.TLSConfig != nil { // an HTTPS member
		serveLn = tls.NewListener(ln, b.srv.TLSConfig)
	}
	go func() {
		defer close(b.done)
		_ = b.srv.Serve(serveLn)
	}()
	t.Cleanup(func() {
		ctx, cancel := context.WithTimeout(context.Background(), 2*time.Second)
		defer cancel()
		_ = b.srv.Shutdown(ctx)
		_ = b.srv.Close()
		<-b.done
	})
	return b
}

func (b *httpBackend) Addr() string { return b.ln.Addr().String() }

// httpConfig is one http-mode virtual server "vs" on pool "p".
func httpConfig(vsExtra, poolExtra string, members ...string) string {
	return tcpConfig("", "mode = \"http\"\n"+vsExtra, poolExtra, members...)
}

// rawRequest sends raw bytes on a new connection and returns everything
// the proxy answers until it closes.
func rawExchange(t *testing.T, addr, raw string) string {
	t.Helper()
	c, err := net.DialTimeout("tcp", addr, 2*time.Second)
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close()
	_ = c.SetDeadline(time.Now().Add(10 * time.Second))
	if _, err := c.Write([]byte(raw)); err != nil {
		t.Fatal(err)
	}
	out, _ := io.ReadAll(c)
	return string(out)
}

// client is a keepalive HTTP client through the proxy whose transport
// counts the connections it opened.
func proxyClient(keepalive bool) *http.Client {
	return &http.Client{
		Timeout: 10 * time.Second,
		Transport: &http.Transport{
			DisableKeepAlives:   !keepalive,
			MaxIdleConnsPerHost: 16,
		},
	}
}

func get(t *testing.T, c *http.Client, url string) (int, string, http.Header) {
	t.Helper()
	resp, err := c.Get(url)
	if err != nil {
		t.Fatalf("GET %s: %v", url, err)
	}
	defer resp.Body.Close()
	b, err := io.ReadAll(resp.Body)
	if err != nil {
		t.Fatalf("GET %s body: %v", url, err)
	}
	return resp.StatusCode, string(b), resp.Header
}

func TestHTTPProxiesRequestsWithForwardedHeaders(t *testing.T) {
	seen := make(chan http.Header, 1)
	be := startHTTPBackend(t, func(w http.ResponseWriter, r *http.Request) {
		select {
		case seen <- r.Header.Clone():
		default:
		}
		w.Header().Set("X-Member", "yes")
		fmt.Fprintf(w, "hello %s %s", r.Method, r.URL.Path)
	}, nil)
	p := startProxy(t, httpConfig("", "", be.Addr()))
	cl := proxyClient(true)
	defer cl.CloseIdleConnections()
	status, body, hdr := get(t, cl, "http://"+p.addr("vs")+"/a/b?c=d")
	if status != 200 || body != "hello GET /a/b" || hdr.Get("X-Member") != "yes" {
		t.Fatalf("got %d %q %v", status, body, hdr)
	}
	h := <-seen
	if got := h.Get("X-Forwarded-For"); got != "127.0.0.1" {
		t.Errorf("X-Forwarded-For = %q", got)
	}
	if h.Get("X-Forwarded-Proto") != "http" || h.Get("X-Forwarded-Host") != p.addr("vs") {
		t.Errorf("X-Forwarded-Proto/Host = %q / %q", h.Get("X-Forwarded-Proto"), h.Get("X-Forwarded-Host"))
	}
	lines := p.waitAccess(t, 1)
	e := lines[0].ContextMap()
	if e["method"] != "GET" || e["path"] != "/a/b?c=d" || e["status"] != int64(200) || e["member"] != be.Addr() {
		t.Errorf("access line: %v", e)
	}
	for _, k := range []string{"bytes_in", "bytes_out", "head_read", "member_wait", "duration", "retries", "server_conn", "reused", "server_conn_requests", "client_request", "client"} {
		if _, ok := e[k]; !ok {
			t.Errorf("access line lacks %q: %v", k, e)
		}
	}
}

// 1000 requests over 200 short client connections (5 each, 4 at a time)
// ride a few pooled member connections (OneConnect): the member accepts no
// more than the pool's max_connections. With reuse = "never" every client
// connection gets its own member connection.
func TestHTTPSharedReuseVersusNever(t *testing.T) {
	for _, tc := range []struct {
		reuse string
		want  func(int64) bool
		what  string
	}{
		{"shared", func(n int64) bool { return n <= 8 }, "<= max_connections (8)"},
		{"never", func(n int64) bool { return n == 200 }, "one per client conn (200)"},
	} {
		t.Run(tc.reuse, func(t *testing.T) {
			be := startHTTPBackend(t, func(w http.ResponseWriter, r *http.Request) { _, _ = io.WriteString(w, "ok") }, nil)
			p := startProxy(t, strings.Replace(httpConfig("", fmt.Sprintf("reuse = %q", tc.reuse), be.Addr()),
				fmt.Sprintf("{ address = %q }", be.Addr()), fmt.Sprintf("{ address = %q, max_connections = 8 }", be.Addr()), 1))
			url := "http://" + p.addr("vs") + "/"
			var wg sync.WaitGroup
			var failed atomic.Int64
			for w := 0; w < 4; w++ {
				wg.Add(1)
				go func() {
					defer wg.Done()
					for conn := 0; conn < 50; conn++ {
						cl := proxyClient(true)
						for i := 0; i < 5; i++ {
							if !getOK(cl, url, "ok") {
								failed.Add(1)
							}
						}
						cl.CloseIdleConnections()
					}
				}()
			}
			wg.Wait()
			if n := failed.Load(); n != 0 {
				t.Fatalf("%d of 1000 requests failed", n)
			}
			if got := be.requests.Load(); got != 1000 {
				t.Fatalf("member served %d requests, want 1000", got)
			}
			if got := p.srv.VirtualServer("vs").Stats().Accepted; got != 200 {
				t.Fatalf("tether accepted %d client conns, want 200", got)
			}
			if got := be.conns.Load(); !tc.want(got) {
				t.Fatalf("member accepted %d conns, want %s", got, tc.what)
			}
		})
	}
}

// A member that closes idle keepalive conns after 1 s, with requests
// arriving around that moment: the stale check and the replay rule leave
// the client with zero errors.
func TestHTTPMemberClosingIdleConnsCausesNoErrors(t *testing.T) {
	be := startHTTPBackend(t, func(w http.ResponseWriter, r *http.Request) { _, _ = io.WriteString(w, "ok") },
		func(s *http.Server) { s.IdleTimeout = 300 * time.Millisecond })
	p := startProxy(t, httpConfig("", "", be.Addr()))
	cl := proxyClient(false)
	url := "http://" + p.addr("vs") + "/"
	for i, gap := range []time.Duration{250, 280, 300, 320, 350, 290, 310, 300} {
		time.Sleep(gap * time.Millisecond) // the traffic pattern under test: around the member's idle timeout
		if status, body, _ := get(t, cl, url); status != 200 || body != "ok" {
			t.Fatalf("request %d: %d %q", i, status, body)
		}
	}
}

func TestHTTPErrorsTheClientSees(t *testing.T) {
	t.Run("all members down: 503 at once", func(t *testing.T) {
		ln, _ := net.Listen("tcp", "127.0.0.1:0")
		dead := ln.Addr().String()
		ln.Close()
		p := startProxy(t, httpConfig("", "[pool.p.health]\ntype = \"tcp\"\ninterval = \"50ms\"\ntimeout = \"50ms\"\nfall = 1", dead))
		socktest.WaitFor(t, 2*time.Second, "member down", func() bool { return p.srv.Pool("p").Members()[0].State().String() == "down" })
		start := time.Now()
		out := rawExchange(t, p.addr("vs"), "GET / HTTP/1.1\r\nHost: x\r\n\r\n")
		if !strings.HasPrefix(out, "HTTP/1.1 503 ") || time.Since(start) > time.Second {
			t.Fatalf("got %q after %s", out, time.Since(start))
		}
	})
	t.Run("member never answers: 504", func(t *testing.T) {
		hold := make(chan struct{})
		be := startHTTPBackend(t, func(w http.ResponseWriter, r *http.Request) { <-hold }, nil)
		defer close(hold)
		p := startProxy(t, httpConfig("[virtual_server.http]\nserver_response_timeout = \"300ms\"", "", be.Addr()))
		start := time.Now()
		out := rawExchange(t, p.addr("vs"), "GET / HTTP/1.1\r\nHost: x\r\n\r\n")
		if !strings.HasPrefix(out, "HTTP/1.1 504 ") {
			t.Fatalf("got %q", out)
		}
		if d := time.Since(start); d < 300*time.Millisecond || d > 3*time.Second {
			t.Fatalf("504 after %s, want about 300ms", d)
		}
	})
	t.Run("malformed response: 502", func(t *testing.T) {
		be := socktest.Start(t, func(c *net.TCPConn) {
			defer c.Close()
			_, _ = bufio.NewReader(c).ReadString('\n')
			_, _ = c.Write([]byte("HTTP/1.1 200 OK\r\nContent-Length: 5\r\nContent-Length: 6\r\n\r\nhello"))
		})
		p := startProxy(t, httpConfig("", "", be.Addr()))
		if out := rawExchange(t, p.addr("vs"), "GET / HTTP/1.1\r\nHost: x\r\n\r\n"); !strings.HasPrefix(out, "HTTP/1.1 502 ") {
			t.Fatalf("got %q", out)
		}
	})
	t.Run("member resets mid-body: client conn closed, no fake 502", func(t *testing.T) {
		be := socktest.Start(t, func(c *net.TCPConn) {
			_, _ = bufio.NewReader(c).ReadString('\n')
			_, _ = c.Write([]byte("HTTP/1.1 200 OK\r\nContent-Length: 100\r\n\r\npartial"))
			_ = c.SetLinger(0)
			_ = c.Close()
		})
		p := startProxy(t, httpConfig("", "", be.Addr()))
		out := rawExchange(t, p.addr("vs"), "GET / HTTP/1.1\r\nHost: x\r\n\r\n")
		if !strings.HasPrefix(out, "HTTP/1.1 200 OK") || strings.Contains(out, "502") || !strings.HasSuffix(out, "partial") {
			t.Fatalf("got %q", out)
		}
	})
	t.Run("smuggling attempt: 400, the member sees nothing", func(t *testing.T) {
		be := startHTTPBackend(t, func(w http.ResponseWriter, r *http.Request) {}, nil)
		p := startProxy(t, httpConfig("", "", be.Addr()))
		out := rawExchange(t, p.addr("vs"), "POST / HTTP/1.1\r\nHost: x\r\nContent-Length: 4\r\nTransfer-Encoding: chunked\r\n\r\n0\r\n\r\nGET /admin HTTP/1.1\r\nHost: x\r\n\r\n")
		if !strings.HasPrefix(out, "HTTP/1.1 400 ") || strings.Count(out, "HTTP/1.1") != 1 {
			t.Fatalf("got %q", out)
		}
		if n := be.requests.Load(); n != 0 {
			t.Fatalf("member served %d requests from a smuggling attempt", n)
		}
	})
	t.Run("slowloris: 408", func(t *testing.T) {
		be := startHTTPBackend(t, func(w http.ResponseWriter, r *http.Request) {}, nil)
		p := startProxy(t, httpConfig("[virtual_server.http]\nrequest_header_timeout = \"300ms\"", "", be.Addr()))
		c := p.dial(t, "vs")
		_ = c.SetDeadline(time.Now().Add(5 * time.Second))
		start := time.Now()
		for _, b := range []byte("GET / HTTP/1.1\r\nHo") {
			if _, err := c.Write([]byte{b}); err != nil {
				break
			}
			time.Sleep(50 * time.Millisecond) // one byte at a time: the attack under test
			if time.Since(start) > time.Second {
				break
			}
		}
		out, _ := io.ReadAll(c)
		if !strings.HasPrefix(string(out), "HTTP/1.1 408 ") {
			t.Fatalf("got %q", out)
		}
	})
}

func TestHTTPClientKeepaliveLimits(t *testing.T) {
	be := startHTTPBackend(t, func(w http.ResponseWriter, r *http.Request) { _, _ = io.WriteString(w, "ok") }, nil)
	p := startProxy(t, httpConfig("[virtual_server.http]\nmax_requests = 3\nkeepalive_timeout = \"300ms\"", "", be.Addr()))
	c := p.dial(t, "vs")
	_ = c.SetDeadline(time.Now().Add(5 * time.Second))
	br := bufio.NewReader(c)
	for i := 1; i <= 3; i++ {
		resp := getOn(t, c, br, i)
		if wantClose := i == 3; resp.Close != wantClose {
			t.Fatalf("request %d: Connection: close = %v, want %v", i, resp.Close, wantClose)
		}
	}
	if _, err := br.ReadByte(); err != io.EOF {
		t.Fatalf("after max_requests: %v, want EOF", err)
	}
	// keepalive_timeout closes an idle client conn.
	c2 := p.dial(t, "vs")
	_ = c2.SetDeadline(time.Now().Add(5 * time.Second))
	fmt.Fprintf(c2, "GET / HTTP/1.1\r\nHost: x\r\n\r\n")
	br2 := bufio.NewReader(c2)
	resp, err := http.ReadResponse(br2, nil)
	if err != nil {
		t.Fatal(err)
	}
	_, _ = io.Copy(io.Discard, resp.Body)
	resp.Body.Close()
	start := time.Now()
	if _, err := br2.ReadByte(); err != io.EOF {
		t.Fatalf("idle client: %v, want EOF", err)
	}
	if d := time.Since(start); d < 250*time.Millisecond || d > 2*time.Second {
		t.Fatalf("idle client closed after %s, want about 300ms", d)
	}
}

func TestHTTPFramingAndBodies(t *testing.T) {
	be := startHTTPBackend(t, func(w http.ResponseWriter, r *http.Request) {
		switch r.URL.Path {
		case "/echo":
			b, _ := io.ReadAll(r.Body) // net/http is not full duplex: read first
			h := w.Header()
			h.Set("Trailer", "X-Sum")
			n, _ := w.Write(b)
			h.Set("X-Sum", fmt.Sprint(n))
		case "/204":
			w.WriteHeader(204)
		case "/304":
			w.WriteHeader(304)
		default:
			w.Header().Set("Content-Length", "5")
			_, _ = io.WriteString(w, "hello")
		}
	}, nil)
	p := startProxy(t, httpConfig("", "", be.Addr()))
	c := p.dial(t, "vs")
	_ = c.SetDeadline(time.Now().Add(10 * time.Second))
	br := bufio.NewReader(c)
	// Pipelined: HEAD, 204, 304, a chunked upload echoed back chunked with a
	// trailer, and an Expect: 100-continue upload; answered in order.
	body := bytes.Repeat([]byte("z"), 100000)
	var reqs bytes.Buffer
	reqs.WriteString("HEAD /h HTTP/1.1\r\nHost: x\r\n\r\n")
	reqs.WriteString("GET /204 HTTP/1.1\r\nHost: x\r\n\r\n")
	reqs.WriteString("GET /304 HTTP/1.1\r\nHost: x\r\n\r\n")
	reqs.WriteString("POST /echo HTTP/1.1\r\nHost: x\r\nTransfer-Encoding: chunked\r\n\r\n")
	fmt.Fprintf(&reqs, "%x\r\n%s\r\n0\r\n\r\n", len(body), body)
	go func() { _, _ = c.Write(reqs.Bytes()) }()

	for _, want := range []struct {
		method string
		status int
		body   string
	}{{"HEAD", 200, ""}, {"GET", 204, ""}, {"GET", 304, ""}, {"POST", 200, string(body)}} {
		resp, err := http.ReadResponse(br, &http.Request{Method: want.method})
		if err != nil {
			t.Fatalf("%s %d: %v", want.method, want.status, err)
		}
		got, err := io.ReadAll(resp.Body)
		resp.Body.Close()
		if err != nil || resp.StatusCode != want.status || string(got) != want.body {
			t.Fatalf("%s: got %d (%d bytes, %v), want %d (%d bytes)", want.method, resp.StatusCode, len(got), err, want.status, len(want.body))
		}
		if want.method == "HEAD" && resp.ContentLength != 5 {
			t.Errorf("HEAD Content-Length = %d, want 5", resp.ContentLength)
		}
		if want.method == "POST" && resp.Trailer.Get("X-Sum") != fmt.Sprint(len(body)) {
			t.Errorf("trailer X-Sum = %q", resp.Trailer.Get("X-Sum"))
		}
	}
	// Expect: 100-continue: the client gets 100, sends the body, gets 200.
	fmt.Fprintf(c, "POST /echo HTTP/1.1\r\nHost: x\r\nContent-Length: 3\r\nExpect: 100-continue\r\n\r\n")
	line, err := br.ReadString('\n')
	if err != nil || !strings.HasPrefix(line, "HTTP/1.1 100 ") {
		t.Fatalf("want 100 Continue first, got %q %v", line, err)
	}
	if l, _ := br.ReadString('\n'); l != "\r\n" {
		t.Fatalf("100 Continue head not ended: %q", l)
	}
	_, _ = c.Write([]byte("abc"))
	for {
		resp, err := http.ReadResponse(br, nil)
		if err != nil {
			t.Fatal(err)
		}
		got, _ := io.ReadAll(resp.Body)
		resp.Body.Close()
		if resp.StatusCode == 100 {
			continue // the member's own 100, passed on
		}
		if resp.StatusCode != 200 || string(got) != "abc" {
			t.Fatalf("after 100: %d %q", resp.StatusCode, got)
		}
		break
	}
}

// upgradeEcho is a member that answers a WebSocket upgrade with 101 and
// then echoes the tunnel until the client's FIN.
func upgradeEcho(c *net.TCPConn) {
	defer c.Close()
	br := bufio.NewReader(c)
	req, err := http.ReadRequest(br)
	if err != nil || req.Header.Get("Upgrade") != "websocket" {
		return
	}
	_, _ = c.Write([]byte("HTTP/1.1 101 Switching Protocols\r\nUpgrade: websocket\r\nConnection: Upgrade\r\n\r\n"))
	_, _ = io.Copy(c, br)
}

// openTunnel upgrades a new conn to vs "vs" (path as the target) and
// checks the 101; the tunnel's bytes follow in the returned reader.
func openTunnel(t *testing.T, p *proxyUnderTest, path string) (*net.TCPConn, *bufio.Reader) {
	t.Helper()
	c := p.dial(t, "vs")
	_ = c.SetDeadline(time.Now().Add(10 * time.Second))
	fmt.Fprintf(c, "GET %s HTTP/1.1\r\nHost: x\r\nUpgrade: websocket\r\nConnection: Upgrade\r\n\r\n", path)
	br := bufio.NewReader(c)
	resp, err := http.ReadResponse(br, nil)
	if err != nil || resp.StatusCode != 101 || resp.Header.Get("Upgrade") != "websocket" {
		t.Fatalf("handshake: %v %v", resp, err)
	}
	return c, br
}

// After 101 Switching Protocols the connection is a plain relay both ways.
func TestHTTPUpgradeBecomesATunnel(t *testing.T) {
	be := socktest.Start(t, upgradeEcho)
	p := startProxy(t, httpConfig("", "", be.Addr()))
	c, br := openTunnel(t, p, "/ws")
	for _, msg := range []string{"frame one", "frame two"} {
		_, _ = c.Write([]byte(msg))
		got := make([]byte, len(msg))
		if _, err := io.ReadFull(br, got); err != nil || string(got) != msg {
			t.Fatalf("tunnel echo: %q %v", got, err)
		}
	}
}

func TestHTTPHeaderEdits(t *testing.T) {
	seen := make(chan http.Header, 1)
	be := startHTTPBackend(t, func(w http.ResponseWriter, r *http.Request) {
		seen <- r.Header.Clone()
		w.Header().Set("Server", "secret/1.2")
		w.Header().Set("X-Cache", "member")
		_, _ = io.WriteString(w, "ok")
	}, nil)
	p := startProxy(t, httpConfig(`[virtual_server.http]
forwarded_headers = false
add_request_headers = { "X-Env" = "prod", "X-Debug" = "off" }
remove_request_headers = ["x-secret"]
add_response_headers = { "X-Cache" = "tether" }
remove_response_headers = ["Server"]`, "", be.Addr()))
	out := rawExchange(t, p.addr("vs"), "GET / HTTP/1.1\r\nHost: x\r\nX-Secret: 1\r\nX-Debug: on\r\nConnection: close\r\n\r\n")
	h := <-seen
	if h.Get("X-Env") != "prod" || h.Get("X-Secret") != "" || h.Values("X-Debug")[0] != "off" || len(h.Values("X-Debug")) != 1 {
		t.Errorf("member saw %v", h)
	}
	if h.Get("X-Forwarded-For") != "" {
		t.Errorf("forwarded_headers = false, but X-Forwarded-For = %q", h.Get("X-Forwarded-For"))
	}
	resp, err := http.ReadResponse(bufio.NewReader(strings.NewReader(out)), nil)
	if err != nil {
		t.Fatal(err)
	}
	if resp.Header.Get("Server") != "" || resp.Header.Values("X-Cache")[0] != "tether" || len(resp.Header.Values("X-Cache")) != 1 {
		t.Errorf("client saw %v", resp.Header)
	}
}

// per-client: a client connection keeps one member conn for all its
// requests; the pool's max_requests still retires it (Connection: close on
// its last request, the member closes first) and a new one takes over.
func TestHTTPPerClientKeepsOneMemberConn(t *testing.T) {
	be := startHTTPBackend(t, func(w http.ResponseWriter, r *http.Request) { _, _ = io.WriteString(w, "ok") }, nil)
	p := startProxy(t, httpConfig("", "reuse = \"per-client\"\nmax_requests = 4", be.Addr()))
	c := p.dial(t, "vs")
	_ = c.SetDeadline(time.Now().Add(5 * time.Second))
	br := bufio.NewReader(c)
	for i := 0; i < 10; i++ {
		if resp := getOn(t, c, br, i); resp.StatusCode != 200 {
			t.Fatalf("request %d: %d", i, resp.StatusCode)
		}
	}
	// 10 requests, 4 per member conn: 3 member conns.
	if got := be.conns.Load(); got != 3 {
		t.Fatalf("member accepted %d conns for 10 requests with max_requests 4, want 3", got)
	}
	lines := p.waitAccess(t, 10)
	ids := map[string]bool{}
	for _, l := range lines {
		ids[fieldString(l, "server_conn")] = true
	}
	if len(ids) != 3 {
		t.Fatalf("access log shows %d member conns, want 3", len(ids))
	}
}

// A member announcing Keep-Alive: timeout=1 with requests at 0.9-1.1 s
// intervals: tether retires each conn before the member's second passes
// (timeout minus the margin), so the client sees zero errors.
func TestHTTPKeepAliveTimeoutLearntFromMember(t *testing.T) {
	var lastConn atomic.Value
	be := startHTTPBackend(t, func(w http.ResponseWriter, r *http.Request) {
		w.Header().Set("Keep-Alive", "timeout=1, max=100")
		_, _ = io.WriteString(w, "ok")
	}, func(s *http.Server) {
		s.IdleTimeout = time.Second
		s.ConnState = func(c net.Conn, st http.ConnState) { lastConn.Store(c.RemoteAddr().String()) }
	})
	p := startProxy(t, httpConfig("", "keepalive_margin = \"300ms\"", be.Addr()))
	cl := proxyClient(false)
	url := "http://" + p.addr("vs") + "/"
	for i, gap := range []time.Duration{0, 900, 1000, 1100, 950} {
		time.Sleep(gap * time.Millisecond) // requests around the member's 1 s idle timeout
		if status, body, _ := get(t, cl, url); status != 200 || body != "ok" {
			t.Fatalf("request %d: %d %q", i, status, body)
		}
	}
	for _, l := range p.accessLines() {
		if fieldString(l, "retries") != "0" {
			t.Fatalf("a request needed a replay: tether reused a conn past the learnt timeout: %v", l.ContextMap())
		}
	}
	// Each gap is over the learnt cap (1 s - 300 ms): tether closed the idle
	// conn itself every time, before the member did.
	st := p.srv.VirtualServer("vs").http.reuser.Stats()[0]
	if st.KeepAliveLearnt < 5 || st.ExpiredIdle < 4 || st.StaleOnPeek != 0 || st.ClosedEarly != 0 {
		t.Fatalf("reuse stats %+v: want Keep-Alive learnt 5 times, >= 4 idle expiries by tether, no stale conn met", st)
	}
}

// A real nginx as the member, keepalive_timeout 2s and keepalive_requests
// 10, so it closes pooled conns under tether all the time: zero errors.
func TestHTTPWithRealNginxMember(t *testing.T) {
	addr := startNginx(t, "keepalive_timeout 2s; keepalive_requests 10;")
	p := startProxy(t, httpConfig("", "", addr))
	cl := proxyClient(true)
	defer cl.CloseIdleConnections()
	url := "http://" + p.addr("vs") + "/"
	for i := 0; i < 60; i++ {
		if i == 30 {
			time.Sleep(2100 * time.Millisecond) // past nginx's keepalive_timeout
		}
		if status, body, _ := get(t, cl, url); status != 200 || body != "nginx says hi\n" {
			t.Fatalf("request %d: %d %q", i, status, body)
		}
	}
}

// startNginx runs a real nginx on a free 127.0.0.1 port with extra http-level
// directives; it answers "nginx says hi" on /.
func startNginx(t *testing.T, directives string) string {
	t.Helper()
	return startNginxServer(t, directives, "", "")
}

// startNginxServer is startNginx with extra listen parameters (" ssl") and
// server-block directives.
func startNginxServer(t *testing.T, directives, listenParams, server string) string {
	t.Helper()
	bin := needSbin(t, "nginx", "nginx")
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	addr := ln.Addr().String()
	ln.Close()
	dir := t.TempDir()
	conf := fmt.Sprintf(`daemon off;
worker_processes 1;
pid %[1]s/nginx.pid;
error_log %[1]s/error.log;
events { worker_connections 256; }
http {
  access_log off;
  client_body_temp_path %[1]s;
  proxy_temp_path %[1]s;
  fastcgi_temp_path %[1]s;
  uwsgi_temp_path %[1]s;
  scgi_temp_path %[1]s;
  %[2]s
  server {
    listen %[3]s%[4]s;
    %[5]s
    location / { return 200 "nginx says hi\n"; }
  }
}
`, dir, directives, addr, listenParams, server)
	if err := os.WriteFile(dir+"/nginx.conf", []byte(conf), 0o644); err != nil {
		t.Fatal(err)
	}
	cmd := exec.Command(bin, "-p", dir, "-c", dir+"/nginx.conf")
	cmd.SysProcAttr = &syscall.SysProcAttr{Setpgid: true} // master and workers in one group
	if out, err := exec.Command(bin, "-t", "-p", dir, "-c", dir+"/nginx.conf").CombinedOutput(); err != nil {
		t.Fatalf("nginx -t: %v\n%s", err, out)
	}
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() {
		// Kill the whole group: killing only the master leaves its workers.
		_ = syscall.Kill(-cmd.Process.Pid, syscall.SIGKILL)
		_ = cmd.Wait()
	})
	socktest.WaitFor(t, 5*time.Second, "nginx to listen", func() bool {
		c, err := net.Dial("tcp", addr)
		if err == nil {
			_ = c.(*net.TCPConn).SetLinger(0) // RST: this probe leaves no TIME_WAIT to count
			c.Close()
		}
		return err == nil
	})
	return addr
}

// 100 MiB up and 100 MiB down through tether, streamed: the process's heap
// never holds more than a few MiB of it.
func TestHTTPStreamsLargeBodiesWithBoundedMemory(t *testing.T) {
	const size = 100 << 20
	be := startHTTPBackend(t, func(w http.ResponseWriter, r *http.Request) {
		if r.Method == "POST" {
			n, _ := io.Copy(io.Discard, r.Body)
			fmt.Fprint(w, n)
			return
		}
		w.Header().Set("Content-Length", fmt.Sprint(size))
		_, _ = io.CopyN(w, zeros{}, size)
	}, nil)
	p := startProxy(t, httpConfig("", "", be.Addr()))
	url := "http://" + p.addr("vs") + "/"

	var peak atomic.Uint64
	stop := make(chan struct{})
	sampled := make(chan struct{})
	go func() {
		defer close(sampled)
		var ms runtime.MemStats
		for {
			runtime.ReadMemStats(&ms)
			if ms.HeapInuse > peak.Load() {
				peak.Store(ms.HeapInuse)
			}
			select {
			case <-stop:
				return
			case <-time.After(20 * time.Millisecond):
			}
		}
	}()
	cl := proxyClient(true)
	defer cl.CloseIdleConnections()
	resp, err := cl.Post(url, "application/octet-stream", io.LimitReader(zeros{}, size))
	if err != nil {
		t.Fatal(err)
	}
	got, _ := io.ReadAll(resp.Body)
	resp.Body.Close()
	if string(got) != fmt.Sprint(size) {
		t.Fatalf("upload: member read %s bytes, want %d", got, size)
	}
	resp, err = cl.Get(url)
	if err != nil {
		t.Fatal(err)
	}
	n, err := io.Copy(io.Discard, resp.Body)
	resp.Body.Close()
	close(stop)
	<-sampled
	if err != nil || n != size {
		t.Fatalf("download: %d bytes, %v", n, err)
	}
	if pk := peak.Load(); pk > 32<<20 {
		t.Fatalf("heap in use peaked at %d MiB while streaming 100 MiB each way", pk>>20)
	}
}

type zeros struct{}

func (zeros) Read(p []byte) (int, error) {
	clear(p)
	return len(p), nil
}

// An HTTP/1.0 client gets a chunked member response de-chunked, delimited
// by the close; it keeps its connection only when it asked for keep-alive.
func TestHTTP10ClientGetsNoChunkedCoding(t *testing.T) {
	be := startHTTPBackend(t, func(w http.ResponseWriter, r *http.Request) {
		_, _ = io.WriteString(w, "part one, ")
		w.(http.Flusher).Flush() // forces chunked coding
		_, _ = io.WriteString(w, "part two")
	}, nil)
	p := startProxy(t, httpConfig("", "", be.Addr()))
	out := rawExchange(t, p.addr("vs"), "GET / HTTP/1.0\r\nHost: x\r\n\r\n")
	head, body, _ := strings.Cut(out, "\r\n\r\n")
	if strings.Contains(strings.ToLower(head), "transfer-encoding") || body != "part one, part two" {
		t.Fatalf("HTTP/1.0 client got %q", out)
	}
	if !strings.Contains(head, "Connection: close") {
		t.Fatalf("no Connection: close in %q", head)
	}
}

// The http path allocates nothing per request in steady state (access log
// off): parse, borrow a pooled member conn, forward, stream back, return it.
// AllocsPerRun counts every goroutine of the process, tether's included.
func TestHTTPSteadyStateAllocatesNothing(t *testing.T) {
	if raceEnabled {
		t.Skip("sync.Pool drops items on purpose under -race; .ci/run runs this test without it")
	}
	roundTrip := keepaliveRig(t)
	for i := 0; i < 50; i++ { // warm: buffers sized, member conn pooled
		roundTrip()
	}
	if n := testing.AllocsPerRun(500, roundTrip); n != 0 {
		t.Fatalf("%v allocations per proxied request, want 0", n)
	}
}

// A response without a length is delimited by the member's close: the client
// gets it whole with Connection: close, and that member conn is not reused.
func TestHTTPResponseOfUnknownLengthEndsReuse(t *testing.T) {
	var accepted atomic.Int64
	be := socktest.Start(t, func(c *net.TCPConn) {
		defer c.Close()
		accepted.Add(1)
		br := bufio.NewReader(c)
		if _, err := http.ReadRequest(br); err != nil {
			return
		}
		_, _ = c.Write([]byte("HTTP/1.1 200 OK\r\nContent-Type: text/plain\r\n\r\nuntil the end"))
	})
	p := startProxy(t, httpConfig("", "", be.Addr()))
	for i := 0; i < 2; i++ {
		out := rawExchange(t, p.addr("vs"), "GET / HTTP/1.1\r\nHost: x\r\n\r\n")
		head, body, _ := strings.Cut(out, "\r\n\r\n")
		if body != "until the end" || !strings.Contains(head, "Connection: close") {
			t.Fatalf("request %d: %q", i, out)
		}
	}
	if n := accepted.Load(); n != 2 {
		t.Fatalf("member accepted %d conns, want 2 (a close-delimited response ends reuse)", n)
	}
}

// Smuggling attempts are answered 400 (501 for an unknown coding) and the
// connection closed. A bad head never reaches the member; a bad chunked body
// is found while streaming, after the head went out, so the member sees that
// one request cut short (reset) — never a second request hidden in it.
func TestHTTPSmugglingNeverReachesTheMember(t *testing.T) {
	var mu sync.Mutex
	var paths []string
	be := startHTTPBackend(t, func(w http.ResponseWriter, r *http.Request) {
		mu.Lock()
		paths = append(paths, r.URL.Path)
		mu.Unlock()
		_, _ = io.Copy(io.Discard, r.Body)
	}, nil)
	p := startProxy(t, httpConfig("", "", be.Addr()))
	check := func(name, raw string) {
		t.Helper()
		out := rawExchange(t, p.addr("vs"), raw)
		if !strings.HasPrefix(out, "HTTP/1.1 400 ") && !strings.HasPrefix(out, "HTTP/1.1 501 ") {
			t.Errorf("%s: got %q, want 400 or 501", name, out)
		}
	}
	for name, raw := range map[string]string{
		"CL.TE":          "POST / HTTP/1.1\r\nHost: x\r\nContent-Length: 6\r\nTransfer-Encoding: chunked\r\n\r\n0\r\n\r\nGET /admin HTTP/1.1\r\nHost: x\r\n\r\n",
		"TE.CL":          "POST / HTTP/1.1\r\nHost: x\r\nTransfer-Encoding: chunked\r\nContent-Length: 3\r\n\r\n8\r\nSMUGGLED\r\n0\r\n\r\n",
		"TE obfuscated":  "POST / HTTP/1.1\r\nHost: x\r\nTransfer-Encoding: xchunked\r\n\r\n0\r\n\r\nGET /admin HTTP/1.1\r\nHost: x\r\n\r\n",
		"TE space colon": "POST / HTTP/1.1\r\nHost: x\r\nTransfer-Encoding : chunked\r\n\r\n0\r\n\r\n",
		"TE list":        "POST / HTTP/1.1\r\nHost: x\r\nTransfer-Encoding: chunked, identity\r\n\r\n0\r\n\r\n",
		"duplicate CL":   "POST / HTTP/1.1\r\nHost: x\r\nContent-Length: 5\r\nContent-Length: 6\r\n\r\nhello!",
		"obs-fold":       "GET / HTTP/1.1\r\nHost: x\r\nX-A: a\r\n b\r\n\r\n",
		"NUL in value":   "GET / HTTP/1.1\r\nHost: x\r\nX-A: a\x00b\r\n\r\n",
		"bare LF":        "GET / HTTP/1.1\nHost: x\n\n",
		"no Host":        "GET / HTTP/1.1\r\n\r\n",
	} {
		check(name, raw)
	}
	mu.Lock()
	if len(paths) != 0 {
		t.Fatalf("bad heads reached the member: %q", paths)
	}
	mu.Unlock()
	for name, raw := range map[string]string{
		"huge chunk size":  "POST /body HTTP/1.1\r\nHost: x\r\nTransfer-Encoding: chunked\r\n\r\nfffffffffffffffff\r\nGET /admin HTTP/1.1\r\nHost: x\r\n\r\n",
		"chunk ext. abuse": "POST /body HTTP/1.1\r\nHost: x\r\nTransfer-Encoding: chunked\r\n\r\n1;" + strings.Repeat("a", 5000) + "\r\nx\r\n0\r\n\r\nGET /admin HTTP/1.1\r\nHost: x\r\n\r\n",
		"bad chunk end":    "POST /body HTTP/1.1\r\nHost: x\r\nTransfer-Encoding: chunked\r\n\r\n3\r\nabcGET /admin HTTP/1.1\r\nHost: x\r\n\r\n",
	} {
		check(name, raw)
	}
	// A negative check: give a smuggled request, were there one, time to
	// reach the member before looking.
	time.Sleep(100 * time.Millisecond)
	mu.Lock()
	defer mu.Unlock()
	for _, path := range paths {
		if path != "/body" {
			t.Fatalf("the member received a smuggled request: %q", paths)
		}
	}
}

// Small bodies already buffered go out in the same write as their head;
// pipelined requests with small bodies keep their boundaries exactly.
func TestHTTPSmallBodiesKeepTheirBoundaries(t *testing.T) {
	be := startHTTPBackend(t, func(w http.ResponseWriter, r *http.Request) {
		b, _ := io.ReadAll(r.Body)
		fmt.Fprintf(w, "%s:%s", r.URL.Path, b)
	}, nil)
	p := startProxy(t, httpConfig("", "", be.Addr()))
	c := p.dial(t, "vs")
	_ = c.SetDeadline(time.Now().Add(5 * time.Second))
	var reqs strings.Builder
	for i := 0; i < 5; i++ {
		body := strings.Repeat(fmt.Sprint(i), i*7)
		fmt.Fprintf(&reqs, "POST /%d HTTP/1.1\r\nHost: x\r\nContent-Length: %d\r\n\r\n%s", i, len(body), body)
	}
	_, _ = c.Write([]byte(reqs.String()))
	br := bufio.NewReader(c)
	for i := 0; i < 5; i++ {
		resp, err := http.ReadResponse(br, nil)
		if err != nil {
			t.Fatal(err)
		}
		got, _ := io.ReadAll(resp.Body)
		resp.Body.Close()
		if want := fmt.Sprintf("/%d:%s", i, strings.Repeat(fmt.Sprint(i), i*7)); string(got) != want {
			t.Fatalf("response %d = %q, want %q", i, got, want)
		}
	}
}

// getOn sends GET /i on c and reads the whole response from br.
func getOn(t *testing.T, c net.Conn, br *bufio.Reader, i int) *http.Response {
	t.Helper()
	fmt.Fprintf(c, "GET /%d HTTP/1.1\r\nHost: x\r\n\r\n", i)
	resp, err := http.ReadResponse(br, nil)
	if err != nil {
		t.Fatalf("request %d: %v", i, err)
	}
	_, _ = io.Copy(io.Discard, resp.Body)
	resp.Body.Close()
	return resp
}

// Retire so the member closes first: with max_requests = 5 on the pool and
// a member that never closes first (nginx, keepalive_requests 100000), 1000
// requests retire ~200 member conns; each last request says Connection:
// close, nginx closes, and TIME_WAIT lands on nginx's side, none on
// tether's ephemeral ports.
func TestHTTPRetiredConnsLeaveTimeWaitOnTheMember(t *testing.T) {
	addr := startNginx(t, "keepalive_timeout 60s; keepalive_requests 100000;")
	p := startProxy(t, httpConfig("", "max_requests = 5", addr))
	cl := proxyClient(true)
	defer cl.CloseIdleConnections()
	url := "http://" + p.addr("vs") + "/"
	var wg sync.WaitGroup
	var failed atomic.Int64
	for w := 0; w < 4; w++ {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for i := 0; i < 250; i++ {
				if !getOK(cl, url, "") {
					failed.Add(1)
				}
			}
		}()
	}
	wg.Wait()
	if n := failed.Load(); n != 0 {
		t.Fatalf("%d of 1000 requests failed", n)
	}
	member, err := netip.ParseAddrPort(addr)
	if err != nil {
		t.Fatal(err)
	}
	var tetherSide, memberSide int
	socktest.WaitFor(t, 5*time.Second, "the retired conns' TIME_WAIT on the member side", func() bool {
		socks, err := sockopt.Sockets()
		if err != nil {
			t.Fatal(err)
		}
		tetherSide, memberSide = 0, 0
		for _, s := range socks {
			if s.State != sockopt.StateTimeWait {
				continue
			}
			if s.Remote == member {
				tetherSide++
			}
			if s.Local == member {
				memberSide++
			}
		}
		return memberSide >= 190
	})
	if tetherSide != 0 {
		t.Fatalf("%d TIME_WAIT on tether's side toward the member, want 0 (member side: %d)", tetherSide, memberSide)
	}
	st := p.srv.VirtualServer("vs").http.reuser.Stats()[0]
	if st.RetiredByMemberClose < 190 {
		t.Fatalf("retired by member close = %d, want ~200: %+v", st.RetiredByMemberClose, st)
	}
}

// min_idle keeps a warm pool: established member conns before any client,
// and the first requests ride them (Reused) instead of dialing.
func TestHTTPMinIdleWarmsThePool(t *testing.T) {
	be := startHTTPBackend(t, func(w http.ResponseWriter, r *http.Request) { _, _ = io.WriteString(w, "ok") }, nil)
	p := startProxy(t, httpConfig("", "min_idle = 4", be.Addr()))
	socktest.WaitFor(t, 3*time.Second, "4 warm member conns", func() bool { return be.conns.Load() == 4 })
	if out := rawExchange(t, p.addr("vs"), "GET / HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n"); !strings.HasPrefix(out, "HTTP/1.1 200 OK") {
		t.Fatalf("got %q", out)
	}
	lines := p.waitAccess(t, 1)
	if fieldString(lines[0], "reused") != "true" {
		t.Fatalf("the first request did not ride a warm conn: %v", lines[0].ContextMap())
	}
	// While one was lent out the filler dialed a fifth; back from the
	// request, all are idle: at least min_idle, and no dial beyond that.
	socktest.WaitFor(t, 3*time.Second, "at least 4 idle", func() bool {
		return p.srv.VirtualServer("vs").http.reuser.Idle(p.srv.Pool("p").Members()[0]) >= 4
	})
	if n := be.conns.Load(); n > 5 {
		t.Fatalf("member accepted %d conns for one request with min_idle 4, want <= 5", n)
	}
}

// getOK does one GET and reports whether it answered 200 with the body want
// ("" = any body). Safe from worker goroutines: it never calls t.Fatal.
func getOK(cl *http.Client, url, want string) bool {
	resp, err := cl.Get(url)
	if err != nil {
		return false
	}
	defer resp.Body.Close()
	b, err := io.ReadAll(resp.Body)
	return err == nil && resp.StatusCode == 200 && (want == "" || string(b) == want)
}

// An idle keepalive client connection holds no request buffers: they are
// borrowed when a request arrives and given back when it goes quiet, so
// thousands of idle keepalive clients cost little (they are parked, see
// park_test.go). A request in progress holds them.
func TestHTTPIdleKeepaliveConnsHoldNoBuffers(t *testing.T) {
	release := make(chan struct{})
	be := startHTTPBackend(t, func(w http.ResponseWriter, r *http.Request) {
		if r.URL.Path == "/slow" {
			<-release
		}
		_, _ = io.WriteString(w, "ok")
	}, nil)
	p := startProxy(t, httpConfig("", "", be.Addr()))
	vs := p.srv.VirtualServer("vs")
	var conns []net.Conn
	for i := 0; i < 20; i++ {
		c := p.dial(t, "vs")
		_ = c.SetDeadline(time.Now().Add(5 * time.Second))
		if resp := getOn(t, c, bufio.NewReader(c), i); resp.StatusCode != 200 {
			t.Fatalf("status %d", resp.StatusCode)
		}
		conns = append(conns, c)
	}
	socktest.WaitFor(t, 2*time.Second, "20 idle keepalive conns holding no buffers", func() bool {
		st := vs.Stats()
		return st.Active == 20 && st.HTTPBusy == 0
	})
	slow := conns[0]
	fmt.Fprintf(slow, "GET /slow HTTP/1.1\r\nHost: x\r\n\r\n")
	socktest.WaitFor(t, 2*time.Second, "the slow request to hold buffers", func() bool { return vs.Stats().HTTPBusy == 1 })
	close(release)
	if resp, err := http.ReadResponse(bufio.NewReader(slow), nil); err != nil || resp.StatusCode != 200 {
		t.Fatalf("slow request: %v %v", resp, err)
	}
	socktest.WaitFor(t, 2*time.Second, "buffers given back", func() bool { return vs.Stats().HTTPBusy == 0 })
}

// With a keepalive_timeout shorter than the time a conn holds its buffers
// after a request, pipelined requests are still all answered (none is
// dropped with the buffers).
func TestHTTPPipelinedWithATinyKeepaliveTimeout(t *testing.T) {
	be := startHTTPBackend(t, func(w http.ResponseWriter, r *http.Request) { _, _ = io.WriteString(w, r.URL.Path) }, nil)
	p := startProxy(t, httpConfig("[virtual_server.http]\nkeepalive_timeout = \"5ms\"\n", "", be.Addr()))
	c := p.dial(t, "vs")
	_ = c.SetDeadline(time.Now().Add(5 * time.Second))
	fmt.Fprintf(c, "GET /a HTTP/1.1\r\nHost: x\r\n\r\nGET /b HTTP/1.1\r\nHost: x\r\n\r\nGET /c HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n")
	br := bufio.NewReader(c)
	for _, want := range []string{"/a", "/b", "/c"} {
		resp, err := http.ReadResponse(br, nil)
		if err != nil {
			t.Fatalf("response for %s: %v", want, err)
		}
		b, _ := io.ReadAll(resp.Body)
		if string(b) != want {
			t.Fatalf("got %q, want %q", b, want)
		}
	}
}
