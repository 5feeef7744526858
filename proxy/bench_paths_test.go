package proxy

import (
	"io"
	"net"
	"strings"
	"testing"

	"github.com/tetherproxy/tether/sockopt/socktest"
)

// BenchmarkHTTPShortConnection: one GET with Connection: close per new
// client connection through tether, the member conn pooled (what wrk -H
// "Connection: close" and ab measure): accept, parse, a pooled member
// exchange, close. allocs/op counts the whole process per request.
func BenchmarkHTTPShortConnection(b *testing.B) {
	be := answer64Member(b)
	p := startProxy(b, strings.Replace(httpConfig("", "", be.Addr()),
		"level = \"debug\"", "level = \"debug\"\naccess = false", 1))
	addr := p.addr("vs")
	req := []byte("GET / HTTP/1.1\r\nHost: bench\r\nConnection: close\r\n\r\n")
	buf := make([]byte, 4096)
	b.ReportAllocs()
	b.ResetTimer()
	for i := 0; i < b.N; i++ {
		c, err := net.Dial("tcp", addr)
		if err != nil {
			b.Fatal(err)
		}
		if _, err := c.Write(req); err != nil {
			b.Fatal(err)
		}
		for { // to tether's FIN
			if _, err := c.Read(buf); err == io.EOF {
				break
			} else if err != nil {
				b.Fatal(err)
			}
		}
		_ = c.Close()
	}
}

// BenchmarkTCPRoundTrip: a 32-byte request and its 32-byte echo on a kept
// tcp-mode relay (what redis-benchmark through tcp mode costs per request).
func BenchmarkTCPRoundTrip(b *testing.B) {
	be := socktest.Start(b, socktest.Echo)
	p := startProxy(b, tcpConfig("", "", "", be.Addr()))
	c, err := net.Dial("tcp", p.addr("vs"))
	if err != nil {
		b.Fatal(err)
	}
	defer c.Close()
	msg := []byte(strings.Repeat("r", 32))
	back := make([]byte, len(msg))
	b.ReportAllocs()
	b.ResetTimer()
	for i := 0; i < b.N; i++ {
		if _, err := c.Write(msg); err != nil {
			b.Fatal(err)
		}
		if _, err := io.ReadFull(c, back); err != nil {
			b.Fatal(err)
		}
	}
}
