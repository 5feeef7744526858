package proxy

import (
	"bufio"
	"context"
	"crypto/tls"
	"errors"
	"fmt"
	"io"
	"net"
	"net/http"
	"runtime"
	"testing"
	"time"

	"github.com/tetherproxy/tether/proxy/certs/testpki"
)

// echoPath answers with the request's path.
func echoPath(w http.ResponseWriter, r *http.Request) { _, _ = io.WriteString(w, r.URL.Path) }

// getPath does a GET of path on a kept conn and checks the member's echo.
func getPath(t *testing.T, c net.Conn, br *bufio.Reader, path string) {
	t.Helper()
	_ = c.SetDeadline(time.Now().Add(5 * time.Second))
	fmt.Fprintf(c, "GET %s HTTP/1.1\r\nHost: x\r\n\r\n", path)
	resp, err := http.ReadResponse(br, nil)
	if err != nil {
		t.Fatalf("GET %s: %v", path, err)
	}
	body, err := io.ReadAll(resp.Body)
	resp.Body.Close()
	if err != nil || resp.StatusCode != 200 || string(body) != path {
		t.Fatalf("GET %s: %d %q %v", path, resp.StatusCode, body, err)
	}
}

// Idle keepalive conns wait parked, without a goroutine or buffers each;
// a request on one wakes it, is answered, and it parks again.
func TestHTTPIdleConnsParkWithoutAGoroutineAndResume(t *testing.T) {
	be := startHTTPBackend(t, echoPath, nil)
	p := startProxy(t, httpConfig("", "", be.addr()))
	vs := p.srv.VirtualServer("vs")
	const n = 50
	base := runtime.NumGoroutine()
	type kept struct {
		c  net.Conn
		br *bufio.Reader
	}
	var conns []kept
	for i := range n {
		c := p.dial(t, "vs")
		k := kept{c, bufio.NewReader(c)}
		getPath(t, k.c, k.br, fmt.Sprintf("/first/%d", i))
		conns = append(conns, k)
	}
	waitFor(t, 3*time.Second, "all conns parked", func() bool {
		st := vs.Stats()
		return st.HTTPParked == n && st.HTTPBusy == 0 && st.Active == n
	})
	// The conns' goroutines are gone: far fewer than one per conn remain
	// (the member's, tether's pool and the runtime's are counted too).
	if got := runtime.NumGoroutine() - base; got >= n/5 {
		t.Fatalf("%d goroutines more than before %d conns were opened and parked", got, n)
	}

	for round := range 2 {
		for i, k := range conns {
			getPath(t, k.c, k.br, fmt.Sprintf("/again/%d/%d", round, i))
		}
		waitFor(t, 3*time.Second, "all conns parked again", func() bool {
			st := vs.Stats()
			return st.HTTPParked == n && st.HTTPBusy == 0 && st.Active == n
		})
	}
	if got := runtime.NumGoroutine() - base; got >= n/5 {
		t.Fatalf("%d goroutines more after two rounds of wake and park", got)
	}
	if lines := p.accessLines(); len(lines) != 3*n {
		t.Fatalf("%d access lines, want %d", len(lines), 3*n)
	}
	// The client leaves: its parked conn ends on the report of its FIN.
	for _, k := range conns {
		_ = k.c.Close()
	}
	waitFor(t, 3*time.Second, "parked conns ended by their clients' FIN", func() bool {
		st := vs.Stats()
		return st.HTTPParked == 0 && st.Active == 0
	})
}

// A parked conn still ends at keepalive_timeout, counted from its last
// response, and its client reads a clean EOF.
func TestHTTPParkedConnEndsAtKeepaliveTimeout(t *testing.T) {
	be := startHTTPBackend(t, echoPath, nil)
	p := startProxy(t, httpConfig("[virtual_server.http]\nkeepalive_timeout = \"400ms\"\n", "", be.addr()))
	c := p.dial(t, "vs")
	br := bufio.NewReader(c)
	getPath(t, c, br, "/one")
	answered := time.Now()
	waitFor(t, time.Second, "the conn parked", func() bool { return p.srv.VirtualServer("vs").Stats().HTTPParked == 1 })
	_ = c.SetReadDeadline(time.Now().Add(5 * time.Second))
	if _, err := br.ReadByte(); !errors.Is(err, io.EOF) {
		t.Fatalf("read on the expired conn: %v, want EOF", err)
	}
	if waited := time.Since(answered); waited < 350*time.Millisecond || waited > 2*time.Second {
		t.Fatalf("closed %v after the response, want about 400ms", waited)
	}
	// An idle conn has nothing in flight: it is closed at once, without
	// the lingering read that follows a response.
	waitFor(t, 300*time.Millisecond, "the conn counted closed", func() bool {
		st := p.srv.VirtualServer("vs").Stats()
		return st.HTTPParked == 0 && st.Active == 0
	})
}

// A new conn that sends nothing parks too: its request is served when it
// comes, and request_header_timeout still ends one that never sends.
func TestHTTPNewConnParksUntilItsFirstRequest(t *testing.T) {
	be := startHTTPBackend(t, echoPath, nil)
	p := startProxy(t, httpConfig("[virtual_server.http]\nrequest_header_timeout = \"500ms\"\n", "", be.addr()))
	vs := p.srv.VirtualServer("vs")
	late := p.dial(t, "vs")
	silent := p.dial(t, "vs")
	opened := time.Now()
	waitFor(t, time.Second, "both new conns parked", func() bool { return vs.Stats().HTTPParked == 2 })
	getPath(t, late, bufio.NewReader(late), "/late")

	_ = silent.SetReadDeadline(time.Now().Add(5 * time.Second))
	if _, err := silent.Read(make([]byte, 1)); !errors.Is(err, io.EOF) {
		t.Fatalf("read on the silent conn: %v, want EOF", err)
	}
	if waited := time.Since(opened); waited < 450*time.Millisecond || waited > 2*time.Second {
		t.Fatalf("silent conn closed after %v, want about 500ms", waited)
	}
}

// Shutdown lets parked conns go at once: it does not wait out the drain
// time for them, and their clients read EOF.
func TestShutdownEndsParkedConnsAtOnce(t *testing.T) {
	be := startHTTPBackend(t, echoPath, nil)
	p := startProxy(t, httpConfig("", "", be.addr()))
	vs := p.srv.VirtualServer("vs")
	var conns []*net.TCPConn
	for i := range 10 {
		c := p.dial(t, "vs")
		getPath(t, c, bufio.NewReader(c), fmt.Sprintf("/%d", i))
		conns = append(conns, c)
	}
	waitFor(t, 2*time.Second, "10 parked", func() bool { return vs.Stats().HTTPParked == 10 })
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	start := time.Now()
	if err := p.srv.Shutdown(ctx); err != nil {
		t.Fatal(err)
	}
	if took := time.Since(start); took > 2*time.Second {
		t.Fatalf("shutdown took %v with only parked conns open", took)
	}
	for i, c := range conns {
		_ = c.SetReadDeadline(time.Now().Add(2 * time.Second))
		if _, err := c.Read(make([]byte, 1)); !errors.Is(err, io.EOF) {
			t.Fatalf("conn %d after shutdown: %v, want EOF", i, err)
		}
	}
}

// Parked TLS conns wake on the client's next record and go on over the
// same TLS session.
func TestHTTPParkedTLSConnResumes(t *testing.T) {
	pki := testpki.New(t)
	leaf := pki.Issue(t, "a", "a.test", testpki.Options{})
	be := startHTTPBackend(t, echoPath, nil)
	p := startProxy(t, httpConfig(tlsBlock(leaf.CertFile, leaf.KeyFile, ""), "", be.addr()))
	vs := p.srv.VirtualServer("vs")
	raw := p.dial(t, "vs")
	c := tls.Client(raw, pki.ClientConfig("a.test"))
	br := bufio.NewReader(c)
	for i := range 3 {
		getPath(t, c, br, fmt.Sprintf("/tls/%d", i))
		waitFor(t, 2*time.Second, "the TLS conn parked", func() bool { return vs.Stats().HTTPParked == 1 })
	}
	if st := vs.TLSStats(); st.Handshakes != 1 {
		t.Fatalf("TLS stats %+v: want one handshake for the three requests", st)
	}
}
