package proxy

import (
	"bufio"
	"context"
	"fmt"
	"io"
	"net"
	"net/http"
	"sync"
	"testing"
	"time"
)

// A request in flight when Shutdown begins is answered with Connection:
// close (its head was read before: the close is decided at the response),
// and the conn ends after it: the keepalive client sends nothing more.
func TestShutdownInFlightResponseSaysClose(t *testing.T) {
	be := startHTTPBackend(t, func(w http.ResponseWriter, r *http.Request) {
		if r.URL.Query().Get("slow") != "" {
			time.Sleep(400 * time.Millisecond)
		}
		_, _ = io.WriteString(w, "ok")
	}, nil)
	p := startProxy(t, httpConfig("", "", be.Addr()))
	c := p.dial(t, "vs")
	_ = c.SetDeadline(time.Now().Add(10 * time.Second))
	br := bufio.NewReader(c)
	get := func(target string) *http.Response {
		t.Helper()
		fmt.Fprintf(c, "GET %s HTTP/1.1\r\nHost: x\r\n\r\n", target)
		resp, err := http.ReadResponse(br, nil)
		if err != nil {
			t.Fatal(err)
		}
		_, _ = io.Copy(io.Discard, resp.Body)
		resp.Body.Close()
		return resp
	}
	if resp := get("/"); resp.Close {
		t.Fatal("the first response already says Connection: close")
	}
	done := make(chan error, 1)
	go func() {
		time.Sleep(150 * time.Millisecond) // the slow request is at the member
		ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
		defer cancel()
		done <- p.srv.Shutdown(ctx)
	}()
	if resp := get("/?slow=1"); resp.StatusCode != 200 || !resp.Close {
		t.Fatalf("the response to a request in flight at shutdown: status %d, Connection: close %v; want 200 with close", resp.StatusCode, resp.Close)
	}
	if _, err := br.ReadByte(); err != io.EOF {
		t.Fatalf("after the Connection: close response: %v, want EOF", err)
	}
	if err := <-done; err != nil {
		t.Fatalf("Shutdown = %v, want nil (every conn ended within the drain)", err)
	}
}

// A keepalive client's request that reached tether (bytes in the socket)
// when Shutdown woke its idle conn is served (with Connection: close), not
// reset: the client sent it before the shutdown. Then the conn ends. Idle conns whose client
// sent nothing are closed at once. Many conns, each parked, send their
// next request just as Shutdown begins: without the check for a pending
// request, some are closed with the request unread (RST).
func TestShutdownServesRequestsAlreadySent(t *testing.T) {
	be := startHTTPBackend(t, func(w http.ResponseWriter, r *http.Request) { _, _ = io.WriteString(w, "ok") }, nil)
	p := startProxy(t, httpConfig("", "", be.Addr()))
	const n = 40
	conns := make([]*net.TCPConn, n)
	brs := make([]*bufio.Reader, n)
	for i := range conns {
		conns[i] = p.dial(t, "vs")
		_ = conns[i].SetDeadline(time.Now().Add(10 * time.Second))
		brs[i] = bufio.NewReader(conns[i])
		fmt.Fprintf(conns[i], "GET / HTTP/1.1\r\nHost: x\r\n\r\n")
		resp, err := http.ReadResponse(brs[i], nil)
		if err != nil {
			t.Fatal(err)
		}
		_, _ = io.Copy(io.Discard, resp.Body)
		resp.Body.Close()
	}
	time.Sleep(50 * time.Millisecond) // past httpHoldBuffers: parked
	req := []byte("GET /again HTTP/1.1\r\nHost: x\r\n\r\n")
	for _, c := range conns {
		if _, err := c.Write(req); err != nil {
			t.Fatal(err)
		}
	}
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
	defer cancel()
	if err := p.srv.Shutdown(ctx); err != nil {
		t.Fatalf("Shutdown = %v", err)
	}
	var wg sync.WaitGroup
	errs := make([]error, n)
	for i := range conns {
		wg.Add(1)
		go func() {
			defer wg.Done()
			resp, err := http.ReadResponse(brs[i], nil)
			if err != nil {
				errs[i] = err
				return
			}
			_, _ = io.Copy(io.Discard, resp.Body)
			resp.Body.Close()
			if resp.StatusCode != 200 {
				errs[i] = fmt.Errorf("status %d", resp.StatusCode)
				return
			}
			// Served before the shutdown began, it may be answered as
			// usual: then the idle conn is closed after it.
			if _, err := brs[i].ReadByte(); err != io.EOF {
				errs[i] = fmt.Errorf("after the answer (Connection: close %v): %v, want EOF", resp.Close, err)
			}
		}()
	}
	wg.Wait()
	failed := 0
	for i, err := range errs {
		if err != nil {
			failed++
			t.Errorf("conn %d: a request sent before Shutdown: %v, want 200 then EOF", i, err)
		}
	}
	if failed > 0 {
		t.Fatalf("%d of %d requests sent before Shutdown got no answer", failed, n)
	}
}
