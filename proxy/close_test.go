package proxy

import (
	"bufio"
	"bytes"
	"errors"
	"io"
	"net/http"
	"syscall"
	"testing"
	"time"

	"github.com/tetherproxy/tether/sockopt/socktest"
)

// A client that said Connection: close and got its whole answer sends
// nothing more: tether closes at once, without waiting up to lingerTime for
// the client's FIN, so the conn's slot is free while the client still
// holds its end open.
func TestHTTPCloseWithoutLingerAfterTheClientsConnectionClose(t *testing.T) {
	be := startHTTPBackend(t, func(w http.ResponseWriter, _ *http.Request) { _, _ = io.WriteString(w, "ok") }, nil)
	p := startProxy(t, httpConfig("", "", be.Addr()))
	for _, req := range []string{
		"GET / HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n",
		"GET / HTTP/1.0\r\n\r\n",
		"POST / HTTP/1.1\r\nHost: x\r\nConnection: close\r\nContent-Length: 5\r\n\r\nhello",
	} {
		c := p.dial(t, "vs") // kept open by the test until cleanup: no FIN from the client
		_ = c.SetDeadline(time.Now().Add(5 * time.Second))
		if _, err := io.WriteString(c, req); err != nil {
			t.Fatal(err)
		}
		out, err := io.ReadAll(c)
		if err != nil {
			t.Fatalf("%q: %v after %q", req, err, out)
		}
		if resp, err := http.ReadResponse(bufio.NewReader(bytes.NewReader(out)), nil); err != nil || resp.StatusCode != 200 {
			t.Fatalf("%q: answer %q: %v", req, out, err)
		}
		// lingerTime is 2 s: a lingering close would hold the slot that long.
		socktest.WaitFor(t, lingerTime/4, "the conn's slot freed while the client holds its end", func() bool {
			return p.srv.VirtualServer("vs").Stats().Active == 0
		})
	}
}

// When the client may still send (it asked for keepalive, and tether ends
// the conn for max_requests), tether lingers: the request the client sent
// while its first was at the member is read and dropped, so the client gets
// its answer and a FIN. A plain close with those bytes unread would make
// the kernel send a reset instead, which can destroy the answer.
func TestHTTPLingersWhenTheClientMayStillSend(t *testing.T) {
	be := startHTTPBackend(t, func(w http.ResponseWriter, _ *http.Request) {
		time.Sleep(50 * time.Millisecond) // the client's next request arrives meanwhile
		_, _ = io.WriteString(w, "ok")
	}, nil)
	p := startProxy(t, httpConfig("[virtual_server.http]\nmax_requests = 1", "", be.Addr()))
	for i := range 3 {
		c := p.dial(t, "vs")
		_ = c.SetDeadline(time.Now().Add(5 * time.Second))
		if _, err := io.WriteString(c, "GET / HTTP/1.1\r\nHost: x\r\n\r\n"); err != nil {
			t.Fatal(err)
		}
		time.Sleep(10 * time.Millisecond) // tether has read the first request alone
		if _, err := io.WriteString(c, "GET /next HTTP/1.1\r\nHost: x\r\n\r\n"); err != nil {
			t.Fatal(err)
		}
		out, err := io.ReadAll(c)
		if errors.Is(err, syscall.ECONNRESET) {
			t.Fatalf("round %d: the client was reset after %q: tether closed with unread bytes instead of lingering", i, out)
		}
		if err != nil {
			t.Fatalf("round %d: %v after %q", i, err, out)
		}
		resp, err := http.ReadResponse(bufio.NewReader(bytes.NewReader(out)), nil)
		if err != nil || resp.StatusCode != 200 || !resp.Close {
			t.Fatalf("round %d: answer %q (%v): want one 200 with Connection: close", i, out, err)
		}
	}
}
