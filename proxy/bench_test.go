package proxy

import (
	"bufio"
	"io"
	"net"
	"net/http"
	"runtime"
	"strings"
	"testing"
	"time"

	"github.com/tetherproxy/tether/sockopt/socktest"
)

// sinkThenAck reads everything, then answers one byte.
func sinkThenAck(c *net.TCPConn) {
	defer c.Close()
	_, _ = io.Copy(io.Discard, c)
	_, _ = c.Write([]byte{1})
}

func benchTransfer(b *testing.B, addr string) {
	const chunk = 4 << 20
	data := make([]byte, chunk)
	b.SetBytes(chunk)
	b.ReportAllocs()
	c, err := net.Dial("tcp", addr)
	if err != nil {
		b.Fatal(err)
	}
	defer c.Close()
	b.ResetTimer()
	for i := 0; i < b.N; i++ {
		if _, err := c.Write(data); err != nil {
			b.Fatal(err)
		}
	}
	_ = c.(*net.TCPConn).CloseWrite()
	if _, err := io.ReadFull(c, make([]byte, 1)); err != nil {
		b.Fatal(err)
	}
}

// BenchmarkRelayThroughput moves bytes client -> tether -> member with
// splice; compare with BenchmarkDirectThroughput (same sink, no proxy).
func BenchmarkRelayThroughput(b *testing.B) {
	be := socktest.Start(b, sinkThenAck)
	p := startProxy(b, tcpConfig("", "", "", be.Addr()))
	benchTransfer(b, p.addr("vs"))
}

func BenchmarkDirectThroughput(b *testing.B) {
	be := socktest.Start(b, sinkThenAck)
	benchTransfer(b, be.Addr())
}

// BenchmarkShortConnection is one connect, one byte each way, close: what a
// new client connection costs through tether (accept, member connect,
// relay setup, both closes).
func BenchmarkShortConnection(b *testing.B) {
	be := socktest.Start(b, socktest.Echo)
	p := startProxy(b, tcpConfig(`[tcp_profile.rst]
close = "reset"
`, `client_profile = "rst"
server_profile = "rst"`, "", be.Addr()))
	addr := p.addr("vs")
	buf := make([]byte, 1)
	b.ReportAllocs()
	b.ResetTimer()
	for i := 0; i < b.N; i++ {
		c, err := net.Dial("tcp", addr)
		if err != nil {
			b.Fatal(err)
		}
		_, _ = c.Write(buf)
		if _, err := io.ReadFull(c, buf); err != nil {
			b.Fatal(err)
		}
		_ = c.(*net.TCPConn).SetLinger(0)
		_ = c.Close()
	}
}

// keepaliveRig is one keepalive client through tether (access log off) to
// a member answering 64 bytes from a fixed buffer; roundTrip does one
// request.
func keepaliveRig(tb testing.TB) (roundTrip func()) {
	be := answer64Member(tb)
	p := startProxy(tb, strings.Replace(httpConfig("[virtual_server.http]\nmax_requests = 0", "", be.Addr()),
		"level = \"debug\"", "level = \"debug\"\naccess = false", 1))
	c, err := net.Dial("tcp", p.addr("vs"))
	if err != nil {
		tb.Fatal(err)
	}
	tb.Cleanup(func() { c.Close() })
	req := []byte("GET / HTTP/1.1\r\nHost: bench\r\nUser-Agent: bench\r\n\r\n")
	br := bufio.NewReader(c)
	body := make([]byte, 64)
	return func() {
		if _, err := c.Write(req); err != nil {
			tb.Fatal(err)
		}
		for { // the head tether sends, then the 64-byte body
			line, err := br.ReadSlice('\n')
			if err != nil {
				tb.Fatal(err)
			}
			if len(line) == 2 {
				break
			}
		}
		if _, err := io.ReadFull(br, body); err != nil {
			tb.Fatal(err)
		}
	}
}

// answer64Member is a keepalive member that answers every request (small,
// arriving whole: read to the empty line) with 200 and 64 bytes from a
// fixed buffer.
func answer64Member(tb testing.TB) *socktest.Backend {
	resp := []byte("HTTP/1.1 200 OK\r\nContent-Length: 64\r\n\r\n" + strings.Repeat("x", 64))
	return socktest.Start(tb, func(c *net.TCPConn) {
		defer c.Close()
		br := bufio.NewReader(c)
		for {
			for {
				line, err := br.ReadSlice('\n')
				if err != nil {
					return
				}
				if len(line) == 2 {
					break
				}
			}
			if _, err := c.Write(resp); err != nil {
				return
			}
		}
	})
}

// BenchmarkHTTPKeepalive: GET with a 64-byte answer on a keepalive client
// connection through tether. allocs/op counts the whole process (client,
// member and tether) per request.
func BenchmarkHTTPKeepalive(b *testing.B) {
	roundTrip := keepaliveRig(b)
	b.ReportAllocs()
	b.ResetTimer()
	for i := 0; i < b.N; i++ {
		roundTrip()
	}
}

// BenchmarkIdleKeepaliveConnMemory reports what an idle http-mode keepalive
// client connection costs tether's Go side: heap and goroutine stack per
// connection, 1000 of them idle after one request each (the client's and
// the member's side in this process are small: bare net.Conns). It measures
// once whatever b.N is; run it with -benchtime 1x.
func BenchmarkIdleKeepaliveConnMemory(b *testing.B) {
	be := startHTTPBackend(b, func(w http.ResponseWriter, r *http.Request) { _, _ = io.WriteString(w, "ok") }, nil)
	p := startProxy(b, httpConfig("[virtual_server.http]\nkeepalive_timeout = \"60s\"\n", "", be.Addr()))
	const n = 1000
	var before, after runtime.MemStats
	runtime.GC()
	runtime.ReadMemStats(&before)
	conns := make([]net.Conn, 0, n)
	defer func() {
		for _, c := range conns {
			c.Close()
		}
	}()
	buf := make([]byte, 512)
	for i := 0; i < n; i++ {
		c, err := net.Dial("tcp", p.addr("vs"))
		if err != nil {
			b.Fatal(err)
		}
		conns = append(conns, c)
		if _, err := io.WriteString(c, "GET / HTTP/1.1\r\nHost: x\r\n\r\n"); err != nil {
			b.Fatal(err)
		}
		if _, err := c.Read(buf); err != nil {
			b.Fatal(err)
		}
	}
	time.Sleep(200 * time.Millisecond)
	for i := 0; i < 3; i++ { // stacks shrink over GCs
		runtime.GC()
	}
	runtime.ReadMemStats(&after)
	b.ReportMetric(float64(after.HeapInuse-before.HeapInuse)/n, "heap-B/idle-conn")
	b.ReportMetric(float64(after.StackInuse-before.StackInuse)/n, "stack-B/idle-conn")
	for i := 0; i < b.N; i++ {
	}
}
