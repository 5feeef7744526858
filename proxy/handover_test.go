package proxy

import (
	"bufio"
	"context"
	"errors"
	"fmt"
	"io"
	"net"
	"net/http"
	"syscall"
	"testing"
	"time"

	"github.com/tetherproxy/tether/sockopt/socktest"
)

// ShutdownGently (the old process of a hot upgrade) keeps idle keepalive
// client conns for their next request and answers it with Connection:
// close, instead of closing them at once: that close races a request on
// its way, which a client that does not retry then fails. A conn still
// idle after keepalive_timeout is closed then, not before. Without the
// grace, the next requests below meet a closed conn.
func TestShutdownGentlyAnswersIdleConnsNextRequestWithClose(t *testing.T) {
	be := startHTTPBackend(t, func(w http.ResponseWriter, _ *http.Request) { _, _ = io.WriteString(w, "ok") }, nil)
	const keepalive = 1500 * time.Millisecond
	p := startProxy(t, httpConfig(fmt.Sprintf("[virtual_server.http]\nkeepalive_timeout = %q\n", keepalive.String()), "", be.Addr()))
	addr := p.addr("vs")
	const n = 20
	conns := make([]*net.TCPConn, n+1) // the last one stays idle
	brs := make([]*bufio.Reader, n+1)
	get := func(i int, target string) (*http.Response, error) {
		if _, err := fmt.Fprintf(conns[i], "GET %s HTTP/1.1\r\nHost: x\r\n\r\n", target); err != nil {
			return nil, err
		}
		resp, err := http.ReadResponse(brs[i], nil)
		if err != nil {
			return nil, err
		}
		_, err = io.Copy(io.Discard, resp.Body)
		resp.Body.Close()
		return resp, err
	}
	for i := range conns {
		conns[i] = p.dial(t, "vs")
		_ = conns[i].SetDeadline(time.Now().Add(10 * time.Second))
		brs[i] = bufio.NewReader(conns[i])
		if resp, err := get(i, "/"); err != nil || resp.Close {
			t.Fatalf("conn %d: first request: %v (close %v)", i, err, resp != nil && resp.Close)
		}
	}
	vs := p.srv.VirtualServer("vs")
	socktest.WaitFor(t, 2*time.Second, "the idle conns parked", func() bool { return vs.Stats().Parked == n+1 })

	start := time.Now()
	done := make(chan error, 1)
	go func() {
		ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
		defer cancel()
		done <- p.srv.ShutdownGently(ctx)
	}()
	socktest.WaitFor(t, 2*time.Second, "the listener closed", func() bool {
		c, err := net.Dial("tcp", addr)
		if err == nil {
			_ = c.Close()
		}
		return errors.Is(err, syscall.ECONNREFUSED)
	})
	for i := range n {
		resp, err := get(i, "/next")
		if err != nil {
			t.Fatalf("conn %d: its next request after ShutdownGently began: %v; want an answer", i, err)
		}
		if resp.StatusCode != 200 || !resp.Close {
			t.Errorf("conn %d: status %d, Connection: close %v; want 200 with close", i, resp.StatusCode, resp.Close)
		}
		if _, err := brs[i].ReadByte(); err != io.EOF {
			t.Errorf("conn %d: after the Connection: close answer: %v, want EOF", i, err)
		}
	}
	if _, err := brs[n].ReadByte(); err != io.EOF {
		t.Errorf("the conn that stayed idle: %v, want EOF", err)
	}
	if took := time.Since(start); took < keepalive-200*time.Millisecond {
		t.Errorf("the idle conn was closed after %v, before keepalive_timeout %v", took, keepalive)
	}
	if err := <-done; err != nil {
		t.Errorf("ShutdownGently = %v, want nil (every conn ended within the drain)", err)
	}
}

// ShutdownGentlyFor (SIGTERM's drain) keeps idle client conns only for the
// grace: a conn accepted just before the stop whose first request comes a
// moment later is answered with Connection: close (closed at once, its
// client would see EOF for a request it already sent), and a conn that
// stays silent is closed at the grace, well before keepalive_timeout.
func TestShutdownGentlyForServesAFirstRequestOnItsWayAndClosesTheSilentAtTheGrace(t *testing.T) {
	be := startHTTPBackend(t, func(w http.ResponseWriter, _ *http.Request) { _, _ = io.WriteString(w, "ok") }, nil)
	p := startProxy(t, httpConfig("[virtual_server.http]\nkeepalive_timeout = \"30s\"\n", "", be.Addr()))
	fresh, silent := p.dial(t, "vs"), p.dial(t, "vs")
	for _, c := range []*net.TCPConn{fresh, silent} {
		_ = c.SetDeadline(time.Now().Add(10 * time.Second))
	}
	vs := p.srv.VirtualServer("vs")
	socktest.WaitFor(t, 2*time.Second, "both conns accepted", func() bool { return vs.Stats().Active == 2 })
	const grace = 800 * time.Millisecond
	start := time.Now()
	done := make(chan error, 1)
	go func() {
		ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
		defer cancel()
		done <- p.srv.ShutdownGentlyFor(ctx, grace)
	}()
	time.Sleep(200 * time.Millisecond) // the first request is on its way
	if _, err := io.WriteString(fresh, "GET / HTTP/1.1\r\nHost: x\r\n\r\n"); err != nil {
		t.Fatal(err)
	}
	br := bufio.NewReader(fresh)
	resp, err := http.ReadResponse(br, nil)
	if err != nil {
		t.Fatalf("a first request sent 200 ms into the drain: %v; want an answer", err)
	}
	_, _ = io.Copy(io.Discard, resp.Body)
	resp.Body.Close()
	if resp.StatusCode != 200 || !resp.Close {
		t.Errorf("status %d, Connection: close %v; want 200 with close", resp.StatusCode, resp.Close)
	}
	if _, err := io.ReadAll(silent); err != nil {
		t.Fatalf("the silent conn: %v, want EOF", err)
	}
	if took := time.Since(start); took < grace-100*time.Millisecond || took > grace+time.Second {
		t.Errorf("the silent conn closed after %s, want about the grace (%s), not keepalive_timeout", took, grace)
	}
	if err := <-done; err != nil {
		t.Fatalf("ShutdownGentlyFor: %v", err)
	}
}
