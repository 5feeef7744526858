package proxy

import (
	"bufio"
	"bytes"
	"context"
	"fmt"
	"io"
	"net"
	"net/http"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"
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
		ErrorLog: nil,
	}
	if tune != nil {
		tune(b.srv)
	}
	go func() {
		defer close(b.done)
		_ = b.srv.Serve(ln)
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

func (b *httpBackend) addr() string { return b.ln.Addr().String() }

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
	p := startProxy(t, httpConfig("", "", be.addr()))
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
	if e["method"] != "GET" || e["path"] != "/a/b?c=d" || e["status"] != int64(200) || e["member"] != be.addr() {
		t.Errorf("access line: %v", e)
	}
}

// Many short client connections ride a few pooled member connections
// (OneConnect); with reuse = "never" every client connection gets its own.
func TestHTTPSharedReuseVersusNever(t *testing.T) {
	for _, tc := range []struct {
		reuse   string
		maxConn int64
	}{
		{"shared", 4},
		{"never", 200},
	} {
		t.Run(tc.reuse, func(t *testing.T) {
			be := startHTTPBackend(t, func(w http.ResponseWriter, r *http.Request) { _, _ = io.WriteString(w, "ok") }, nil)
			p := startProxy(t, httpConfig("", fmt.Sprintf("reuse = %q", tc.reuse), be.addr()))
			url := "http://" + p.addr("vs") + "/"
			cl := proxyClient(false) // a new client connection per request
			var wg sync.WaitGroup
			var failed atomic.Int64
			for w := 0; w < 4; w++ {
				wg.Add(1)
				go func() {
					defer wg.Done()
					for i := 0; i < 50; i++ {
						resp, err := cl.Get(url)
						if err != nil {
							failed.Add(1)
							continue
						}
						b, _ := io.ReadAll(resp.Body)
						resp.Body.Close()
						if resp.StatusCode != 200 || string(b) != "ok" {
							failed.Add(1)
						}
					}
				}()
			}
			wg.Wait()
			if n := failed.Load(); n != 0 {
				t.Fatalf("%d of 200 requests failed", n)
			}
			if got := be.requests.Load(); got != 200 {
				t.Fatalf("member served %d requests, want 200", got)
			}
			if got := be.conns.Load(); tc.reuse == "shared" && got > tc.maxConn {
				t.Fatalf("member accepted %d conns for 200 requests from 4 concurrent clients, want <= %d", got, tc.maxConn)
			} else if tc.reuse == "never" && got != 200 {
				t.Fatalf("member accepted %d conns, want one per client conn (200)", got)
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
	p := startProxy(t, httpConfig("", "", be.addr()))
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
		waitFor(t, 2*time.Second, "member down", func() bool { return p.srv.Pool("p").Members()[0].State().String() == "down" })
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
		p := startProxy(t, httpConfig("[virtual_server.http]\nserver_response_timeout = \"300ms\"", "", be.addr()))
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
		be := startBackend(t, func(c *net.TCPConn) {
			defer c.Close()
			_, _ = bufio.NewReader(c).ReadString('\n')
			_, _ = c.Write([]byte("HTTP/1.1 200 OK\r\nContent-Length: 5\r\nContent-Length: 6\r\n\r\nhello"))
		})
		p := startProxy(t, httpConfig("", "", be.addr()))
		if out := rawExchange(t, p.addr("vs"), "GET / HTTP/1.1\r\nHost: x\r\n\r\n"); !strings.HasPrefix(out, "HTTP/1.1 502 ") {
			t.Fatalf("got %q", out)
		}
	})
	t.Run("member resets mid-body: client conn closed, no fake 502", func(t *testing.T) {
		be := startBackend(t, func(c *net.TCPConn) {
			_, _ = bufio.NewReader(c).ReadString('\n')
			_, _ = c.Write([]byte("HTTP/1.1 200 OK\r\nContent-Length: 100\r\n\r\npartial"))
			_ = c.SetLinger(0)
			_ = c.Close()
		})
		p := startProxy(t, httpConfig("", "", be.addr()))
		out := rawExchange(t, p.addr("vs"), "GET / HTTP/1.1\r\nHost: x\r\n\r\n")
		if !strings.HasPrefix(out, "HTTP/1.1 200 OK") || strings.Contains(out, "502") || !strings.HasSuffix(out, "partial") {
			t.Fatalf("got %q", out)
		}
	})
	t.Run("smuggling attempt: 400, the member sees nothing", func(t *testing.T) {
		be := startHTTPBackend(t, func(w http.ResponseWriter, r *http.Request) {}, nil)
		p := startProxy(t, httpConfig("", "", be.addr()))
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
		p := startProxy(t, httpConfig("[virtual_server.http]\nrequest_header_timeout = \"300ms\"", "", be.addr()))
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
	p := startProxy(t, httpConfig("[virtual_server.http]\nmax_requests = 3\nkeepalive_timeout = \"300ms\"", "", be.addr()))
	c := p.dial(t, "vs")
	_ = c.SetDeadline(time.Now().Add(5 * time.Second))
	br := bufio.NewReader(c)
	for i := 1; i <= 3; i++ {
		fmt.Fprintf(c, "GET /%d HTTP/1.1\r\nHost: x\r\n\r\n", i)
		resp, err := http.ReadResponse(br, nil)
		if err != nil {
			t.Fatalf("request %d: %v", i, err)
		}
		_, _ = io.Copy(io.Discard, resp.Body)
		resp.Body.Close()
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
	p := startProxy(t, httpConfig("", "", be.addr()))
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

// After 101 Switching Protocols the connection is a plain relay both ways.
func TestHTTPUpgradeBecomesATunnel(t *testing.T) {
	be := startBackend(t, func(c *net.TCPConn) {
		defer c.Close()
		br := bufio.NewReader(c)
		req, err := http.ReadRequest(br)
		if err != nil || req.Header.Get("Upgrade") != "websocket" {
			return
		}
		_, _ = c.Write([]byte("HTTP/1.1 101 Switching Protocols\r\nUpgrade: websocket\r\nConnection: Upgrade\r\n\r\n"))
		_, _ = io.Copy(c, br) // echo the tunnel
	})
	p := startProxy(t, httpConfig("", "", be.addr()))
	c := p.dial(t, "vs")
	_ = c.SetDeadline(time.Now().Add(5 * time.Second))
	fmt.Fprintf(c, "GET /ws HTTP/1.1\r\nHost: x\r\nUpgrade: websocket\r\nConnection: Upgrade\r\n\r\n")
	br := bufio.NewReader(c)
	resp, err := http.ReadResponse(br, nil)
	if err != nil || resp.StatusCode != 101 || resp.Header.Get("Upgrade") != "websocket" {
		t.Fatalf("handshake: %v %v", resp, err)
	}
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
remove_response_headers = ["Server"]`, "", be.addr()))
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
