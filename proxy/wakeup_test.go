package proxy

import (
	"bufio"
	"io"
	"net"
	"net/http"
	"strings"
	"testing"
	"time"

	"golang.org/x/sys/unix"

	"github.com/tetherproxy/tether/sockopt/socktest"
)

// A client may send its next request (HTTP/1.1 pipelining) while tether
// still waits for the member's answer to the first. Those bytes arrive
// after tether's last read of the client: tether must still see them once
// the first answer is out. (Go's poller forgets a readiness that came
// before a RawConn.Read starts; a wait that does not read first would
// sleep until the keepalive timeout and drop the request.)
func TestHTTPRequestSentWhileTheFirstIsServedIsAnswered(t *testing.T) {
	be := startHTTPBackend(t, func(w http.ResponseWriter, r *http.Request) {
		if r.URL.Path == "/slow" {
			time.Sleep(300 * time.Millisecond)
		}
		_, _ = w.Write([]byte("ok " + r.URL.Path))
	}, nil)
	p := startProxy(t, httpConfig("", "", be.Addr()))
	c := p.dial(t, "vs")
	_ = c.SetDeadline(time.Now().Add(5 * time.Second))
	br := bufio.NewReader(c)
	if _, err := c.Write([]byte("GET /slow HTTP/1.1\r\nHost: x\r\n\r\n")); err != nil {
		t.Fatal(err)
	}
	time.Sleep(100 * time.Millisecond) // tether now waits for the member
	start := time.Now()
	if _, err := c.Write([]byte("GET /next HTTP/1.1\r\nHost: x\r\n\r\n")); err != nil {
		t.Fatal(err)
	}
	for _, want := range []string{"ok /slow", "ok /next"} {
		resp, err := http.ReadResponse(br, nil)
		if err != nil {
			t.Fatalf("waiting for %q after %s: %v", want, time.Since(start), err)
		}
		b := make([]byte, len(want))
		_, err = io.ReadFull(resp.Body, b)
		if err != nil || string(b) != want {
			t.Fatalf("body %q %v, want %q", b, err, want)
		}
	}
	if took := time.Since(start); took > 2*time.Second {
		t.Fatalf("the second request was answered after %s", took)
	}
}

// A client that half-closes right after its request (printf ... | nc)
// gets its answer, then tether's close at once, not after the keepalive
// timeout: the FIN that came while the member answered is seen.
func TestHTTPClientFINWhileItsRequestIsServedClosesAfterTheAnswer(t *testing.T) {
	be := startHTTPBackend(t, func(w http.ResponseWriter, r *http.Request) {
		time.Sleep(200 * time.Millisecond)
		_, _ = w.Write([]byte("ok"))
	}, nil)
	p := startProxy(t, httpConfig("", "", be.Addr()))
	c := p.dial(t, "vs")
	_ = c.SetDeadline(time.Now().Add(10 * time.Second))
	if _, err := c.Write([]byte("GET / HTTP/1.1\r\nHost: x\r\n\r\n")); err != nil {
		t.Fatal(err)
	}
	time.Sleep(50 * time.Millisecond)
	start := time.Now()
	_ = c.CloseWrite()
	out, err := readAll(c)
	if err != nil {
		t.Fatalf("after %s: %v (got %q)", time.Since(start), err, out)
	}
	if !strings.Contains(string(out), "200 OK") {
		t.Fatalf("answer %q", out)
	}
	if took := time.Since(start); took > 2*time.Second {
		t.Fatalf("tether closed %s after the client's FIN (answer at ~200 ms)", took)
	}
}

// A FIN that rides on the last data segment (the sender corked, wrote and
// shut down) reaches the member at once: the relay reads again after a
// short read, since that wakeup was the FIN's too.
func TestTCPRelayPassesOnAFINThatCameWithData(t *testing.T) {
	got := make(chan time.Duration, 8)
	be := socktest.Start(t, func(c *net.TCPConn) {
		defer c.Close()
		buf := make([]byte, 64)
		var first time.Time
		for {
			n, err := c.Read(buf)
			if n > 0 && first.IsZero() {
				first = time.Now()
			}
			if err != nil {
				got <- time.Since(first)
				return
			}
		}
	})
	p := startProxy(t, tcpConfig("", "", "", be.Addr()))
	for i := 0; i < 6; i++ {
		c := p.dial(t, "vs")
		rc, err := c.SyscallConn()
		if err != nil {
			t.Fatal(err)
		}
		_ = rc.Control(func(fd uintptr) { _ = unix.SetsockoptInt(int(fd), unix.IPPROTO_TCP, unix.TCP_CORK, 1) })
		if _, err := c.Write([]byte("hello")); err != nil {
			t.Fatal(err)
		}
		_ = c.CloseWrite() // uncorks: data and FIN leave in one segment
		select {
		case d := <-got:
			if d > 500*time.Millisecond {
				t.Fatalf("relay %d: the member saw the FIN %s after the data", i, d)
			}
		case <-time.After(5 * time.Second):
			t.Fatalf("relay %d: the member never saw the FIN", i)
		}
		c.Close()
	}
}
