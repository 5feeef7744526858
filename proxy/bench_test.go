package proxy

import (
	"io"
	"net"
	"testing"
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
	be := startBackend(b, sinkThenAck)
	p := startProxy(b, tcpConfig("", "", "", be.addr()))
	benchTransfer(b, p.addr("vs"))
}

func BenchmarkDirectThroughput(b *testing.B) {
	be := startBackend(b, sinkThenAck)
	benchTransfer(b, be.addr())
}

// BenchmarkShortConnection is one connect, one byte each way, close: what a
// new client connection costs through tether (accept, member connect,
// relay setup, both closes).
func BenchmarkShortConnection(b *testing.B) {
	be := startBackend(b, echo)
	p := startProxy(b, tcpConfig(`[tcp_profile.rst]
close = "reset"
`, `client_profile = "rst"
server_profile = "rst"`, "", be.addr()))
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
