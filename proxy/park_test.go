package proxy

import (
	"bufio"
	"bytes"
	"context"
	"crypto/tls"
	"errors"
	"fmt"
	"io"
	"net"
	"net/http"
	"os"
	"runtime"
	"strings"
	"syscall"
	"testing"
	"time"

	"go.uber.org/zap"
	"go.uber.org/zap/zapcore"
	"go.uber.org/zap/zaptest/observer"

	"github.com/tetherproxy/tether/proxy/certs/testpki"
	"github.com/tetherproxy/tether/sockopt/socktest"
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
	p := startProxy(t, httpConfig("", "", be.Addr()))
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
	socktest.WaitFor(t, 3*time.Second, "all conns parked", func() bool {
		st := vs.Stats()
		return st.Parked == n && st.HTTPBusy == 0 && st.Active == n
	})
	// The conns' goroutines are gone: far fewer than one per conn remain
	// (the member's, tether's pool and the runtime's are counted too, and
	// not the workers waiting for the next conn: a bounded few, for a
	// while, whatever the number of parked conns).
	idleWorkers := func() int { return int(p.srv.workers.idle.Load()) }
	if got := runtime.NumGoroutine() - base - idleWorkers(); got >= n/5 {
		t.Fatalf("%d goroutines more than before %d conns were opened and parked", got, n)
	}

	for round := range 2 {
		for i, k := range conns {
			getPath(t, k.c, k.br, fmt.Sprintf("/again/%d/%d", round, i))
		}
		socktest.WaitFor(t, 3*time.Second, "all conns parked again", func() bool {
			st := vs.Stats()
			return st.Parked == n && st.HTTPBusy == 0 && st.Active == n
		})
	}
	if got := runtime.NumGoroutine() - base - idleWorkers(); got >= n/5 {
		t.Fatalf("%d goroutines more after two rounds of wake and park", got)
	}
	if lines := p.accessLines(); len(lines) != 3*n {
		t.Fatalf("%d access lines, want %d", len(lines), 3*n)
	}
	// The client leaves: its parked conn ends on the report of its FIN.
	for _, k := range conns {
		_ = k.c.Close()
	}
	socktest.WaitFor(t, 3*time.Second, "parked conns ended by their clients' FIN", func() bool {
		st := vs.Stats()
		return st.Parked == 0 && st.Active == 0
	})
}

// A parked conn still ends at keepalive_timeout, counted from its last
// response, and its client reads a clean EOF.
func TestHTTPParkedConnEndsAtKeepaliveTimeout(t *testing.T) {
	be := startHTTPBackend(t, echoPath, nil)
	p := startProxy(t, httpConfig("[virtual_server.http]\nkeepalive_timeout = \"400ms\"\n", "", be.Addr()))
	c := p.dial(t, "vs")
	br := bufio.NewReader(c)
	getPath(t, c, br, "/one")
	answered := time.Now()
	socktest.WaitFor(t, time.Second, "the conn parked", func() bool { return p.srv.VirtualServer("vs").Stats().Parked == 1 })
	_ = c.SetReadDeadline(time.Now().Add(5 * time.Second))
	if _, err := br.ReadByte(); !errors.Is(err, io.EOF) {
		t.Fatalf("read on the expired conn: %v, want EOF", err)
	}
	if waited := time.Since(answered); waited < 350*time.Millisecond || waited > 2*time.Second {
		t.Fatalf("closed %v after the response, want about 400ms", waited)
	}
	// An idle conn has nothing in flight: it is closed at once, without
	// the lingering read that follows a response.
	socktest.WaitFor(t, 300*time.Millisecond, "the conn counted closed", func() bool {
		st := p.srv.VirtualServer("vs").Stats()
		return st.Parked == 0 && st.Active == 0
	})
}

// A new conn that sends nothing parks too: its request is served when it
// comes, and request_header_timeout still ends one that never sends.
func TestHTTPNewConnParksUntilItsFirstRequest(t *testing.T) {
	be := startHTTPBackend(t, echoPath, nil)
	p := startProxy(t, httpConfig("[virtual_server.http]\nrequest_header_timeout = \"500ms\"\n", "", be.Addr()))
	vs := p.srv.VirtualServer("vs")
	late := p.dial(t, "vs")
	silent := p.dial(t, "vs")
	opened := time.Now()
	socktest.WaitFor(t, time.Second, "both new conns parked", func() bool { return vs.Stats().Parked == 2 })
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
	p := startProxy(t, httpConfig("", "", be.Addr()))
	vs := p.srv.VirtualServer("vs")
	var conns []*net.TCPConn
	for i := range 10 {
		c := p.dial(t, "vs")
		getPath(t, c, bufio.NewReader(c), fmt.Sprintf("/%d", i))
		conns = append(conns, c)
	}
	socktest.WaitFor(t, 2*time.Second, "10 parked", func() bool { return vs.Stats().Parked == 10 })
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
	p := startProxy(t, httpConfig(tlsBlock(leaf.CertFile, leaf.KeyFile, ""), "", be.Addr()))
	vs := p.srv.VirtualServer("vs")
	raw := p.dial(t, "vs")
	c := tls.Client(raw, pki.ClientConfig("a.test"))
	br := bufio.NewReader(c)
	for i := range 3 {
		getPath(t, c, br, fmt.Sprintf("/tls/%d", i))
		socktest.WaitFor(t, 2*time.Second, "the TLS conn parked", func() bool { return vs.Stats().Parked == 1 })
	}
	if st := vs.TLSStats(); st.Handshakes != 1 {
		t.Fatalf("TLS stats %+v: want one handshake for the three requests", st)
	}
}

// exchangeEcho writes msg and reads it back through an echo member.
func exchangeEcho(t *testing.T, c net.Conn, msg string) {
	t.Helper()
	_ = c.SetDeadline(time.Now().Add(5 * time.Second))
	if _, err := io.WriteString(c, msg); err != nil {
		t.Fatal(err)
	}
	buf := make([]byte, len(msg))
	if _, err := io.ReadFull(c, buf); err != nil || string(buf) != msg {
		t.Fatalf("echo of %q: %q %v", msg, buf, err)
	}
}

// An idle tcp-mode relay parks both directions (no goroutine left for
// it) a second after its last byte; bytes from either side take it up
// again.
func TestTCPIdleRelayParksAndResumes(t *testing.T) {
	be := socktest.Start(t, socktest.Echo)
	p := startProxy(t, tcpConfig("", "", "", be.Addr()))
	vs := p.srv.VirtualServer("vs")
	const n = 20
	base := runtime.NumGoroutine()
	sockets := openSockets(t)
	var conns []*net.TCPConn
	for i := range n {
		c := p.dial(t, "vs")
		exchangeEcho(t, c, fmt.Sprintf("hello %d", i))
		conns = append(conns, c)
	}
	// The echo member keeps a goroutine per conn; tether none once parked
	// (the workers waiting for the next conn are a bounded few, whatever
	// the number of relays).
	socktest.WaitFor(t, 5*time.Second, "both directions of every relay parked", func() bool { return vs.Stats().Parked == 2*n })
	if got := runtime.NumGoroutine() - base - int(p.srv.workers.idle.Load()); got > n+n/4 {
		t.Fatalf("%d goroutines more than before %d relays (the member holds %d)", got, n, n)
	}
	for round := range 2 {
		for i, c := range conns {
			exchangeEcho(t, c, fmt.Sprintf("round %d conn %d", round, i))
		}
		socktest.WaitFor(t, 5*time.Second, "parked again", func() bool { return vs.Stats().Parked == 2*n })
	}
	for _, c := range conns {
		_ = c.CloseWrite()
		_ = c.SetReadDeadline(time.Now().Add(5 * time.Second))
		if b, err := readAll(c); err != nil || len(b) != 0 {
			t.Fatalf("after the client's FIN: %q %v, want the member's FIN", b, err)
		}
		_ = c.Close()
	}
	socktest.WaitFor(t, 3*time.Second, "every relay ended", func() bool {
		st := vs.Stats()
		return st.Parked == 0 && st.Active == 0
	})
	// Every socket of the parked-then-ended relays is closed: the process
	// has the sockets it had before the clients came (pipes are not
	// counted: the echo member's io.Copy splices through Go's pipe pool,
	// which keeps them until a GC).
	socktest.WaitFor(t, 3*time.Second, fmt.Sprintf("%d sockets, as before the relays", sockets), func() bool { return openSockets(t) == sockets })
	if lines := p.waitAccess(t, n); len(lines) != n {
		t.Fatalf("%d access lines", len(lines))
	}
}

// The idle timeout still ends a parked relay on time, both sides reset
// (reset_on_timeout), and it is logged as tether's idle timeout.
func TestTCPParkedRelayIdleTimeout(t *testing.T) {
	memberSaw := make(chan error, 1)
	be := socktest.Start(t, func(c *net.TCPConn) {
		defer c.Close()
		buf := make([]byte, 16)
		n, _ := c.Read(buf)
		_, _ = c.Write(buf[:n])
		_, err := readAll(c)
		memberSaw <- err
	})
	p := startProxy(t, tcpConfig("[tcp_profile.idle]\nidle_timeout = \"2500ms\"\n", `client_profile = "idle"
server_profile = "idle"`, "", be.Addr()))
	c := p.dial(t, "vs")
	exchangeEcho(t, c, "ping")
	last := time.Now()
	socktest.WaitFor(t, 2*time.Second, "the relay parked", func() bool { return p.srv.VirtualServer("vs").Stats().Parked == 2 })
	_ = c.SetReadDeadline(time.Now().Add(10 * time.Second))
	_, err := readAll(c)
	if elapsed := time.Since(last); elapsed < 2400*time.Millisecond || elapsed > 4*time.Second {
		t.Fatalf("idle timeout fired %v after the last byte, want about 2.5s", elapsed)
	}
	if !errors.Is(err, syscall.ECONNRESET) {
		t.Fatalf("client: %v, want ECONNRESET", err)
	}
	select {
	case err := <-memberSaw:
		if !errors.Is(err, syscall.ECONNRESET) {
			t.Fatalf("member: %v, want ECONNRESET", err)
		}
	case <-time.After(2 * time.Second):
		t.Fatal("the member side was not closed")
	}
	if fc := fieldString(p.waitAccess(t, 1)[0], "closed_first"); fc != "tether idle-timeout" {
		t.Fatalf("closed_first = %q", fc)
	}
}

// A client's FIN on a parked relay is passed on, and the surviving
// direction, parked until the long idle timeout, is taken up to be bound
// by the shorter half_close_timeout instead.
func TestTCPParkedRelayHalfCloseTimeout(t *testing.T) {
	gotFIN := make(chan struct{})
	release := make(chan struct{})
	defer close(release)
	be := socktest.Start(t, func(c *net.TCPConn) {
		defer c.Close()
		buf := make([]byte, 16)
		n, _ := c.Read(buf)
		_, _ = c.Write(buf[:n])
		if b, err := readAll(c); err == nil && len(b) == 0 {
			close(gotFIN)
		}
		<-release // a member that never closes its side
	})
	p := startProxy(t, tcpConfig("[tcp_profile.hc]\nidle_timeout = \"30s\"\nhalf_close_timeout = \"2s\"\n", `client_profile = "hc"
server_profile = "hc"`, "", be.Addr()))
	c := p.dial(t, "vs")
	exchangeEcho(t, c, "ping")
	socktest.WaitFor(t, 3*time.Second, "the relay parked", func() bool { return p.srv.VirtualServer("vs").Stats().Parked == 2 })
	if err := c.CloseWrite(); err != nil {
		t.Fatal(err)
	}
	fin := time.Now()
	_ = c.SetReadDeadline(time.Now().Add(10 * time.Second))
	if b, err := readAll(c); len(b) != 0 || (err != nil && !errors.Is(err, syscall.ECONNRESET)) {
		t.Fatalf("client after its FIN: %q %v", b, err)
	}
	if elapsed := time.Since(fin); elapsed < 1900*time.Millisecond || elapsed > 4*time.Second {
		t.Fatalf("the half-closed relay ended %v after the FIN, want about 2s (half_close_timeout, not the 30s idle timeout)", elapsed)
	}
	select {
	case <-gotFIN:
	default:
		t.Fatal("the member never got the client's FIN")
	}
	if fc := fieldString(p.waitAccess(t, 1)[0], "closed_by"); fc != "tether half-close-timeout" {
		t.Fatalf("closed_by = %q", fc)
	}
}

// Shutdown drains parked relays like any: they stay until the drain time
// is over, then the cut takes them up and ends them; nothing is left.
func TestShutdownCutsParkedRelays(t *testing.T) {
	be := socktest.Start(t, socktest.Echo)
	p := startProxy(t, tcpConfig("", "", "", be.Addr()))
	vs := p.srv.VirtualServer("vs")
	var conns []*net.TCPConn
	for i := range 5 {
		c := p.dial(t, "vs")
		exchangeEcho(t, c, fmt.Sprintf("x%d", i))
		conns = append(conns, c)
	}
	socktest.WaitFor(t, 3*time.Second, "all parked", func() bool { return vs.Stats().Parked == 10 })
	ctx, cancel := context.WithTimeout(context.Background(), 500*time.Millisecond)
	defer cancel()
	start := time.Now()
	if err := p.srv.Shutdown(ctx); !errors.Is(err, context.DeadlineExceeded) {
		t.Fatalf("shutdown: %v, want the drain cut (deadline exceeded)", err)
	}
	if took := time.Since(start); took < 450*time.Millisecond || took > 3*time.Second {
		t.Fatalf("shutdown took %v, want the 500ms drain then the cut", took)
	}
	for i, c := range conns {
		_ = c.SetReadDeadline(time.Now().Add(2 * time.Second))
		if _, err := readAll(c); err != nil && !errors.Is(err, syscall.ECONNRESET) {
			t.Fatalf("conn %d after the cut: %v", i, err)
		}
	}
	if st := vs.Stats(); st.Parked != 0 || st.Active != 0 {
		t.Fatalf("after shutdown: %+v", st)
	}
}

// An upgrade tunnel (WebSocket) holds no request buffers and no http
// goroutine: its relay's directions park like tcp mode's when idle, bytes
// take them up again, and when it ends its access line still names the
// request, the 101 and the bytes each way.
func TestHTTPUpgradeTunnelParks(t *testing.T) {
	be := socktest.Start(t, upgradeEcho)
	p := startProxy(t, httpConfig("", "", be.Addr()))
	vs := p.srv.VirtualServer("vs")
	c, br := openTunnel(t, p, "/ws/chat")
	frame := func(msg string) {
		t.Helper()
		_, _ = c.Write([]byte(msg))
		got := make([]byte, len(msg))
		if _, err := io.ReadFull(br, got); err != nil || string(got) != msg {
			t.Fatalf("tunnel echo: %q %v", got, err)
		}
	}
	frame("frame one")
	socktest.WaitFor(t, 3*time.Second, "both tunnel directions parked, no buffers held", func() bool {
		st := vs.Stats()
		return st.Parked == 2 && st.HTTPBusy == 0 && st.Active == 1
	})
	frame("frame two, after parking")
	_ = c.CloseWrite()
	if rest, err := io.ReadAll(br); err != nil || len(rest) != 0 {
		t.Fatalf("after the client's FIN: %q %v", rest, err)
	}
	lines := p.waitAccess(t, 1)
	m := lines[0].ContextMap()
	if m["method"] != "GET" || m["path"] != "/ws/chat" || fmt.Sprint(m["status"]) != "101" ||
		fmt.Sprint(m["bytes_in"]) != fmt.Sprint(len("frame one")+len("frame two, after parking")) ||
		fmt.Sprint(m["bytes_out"]) != fmt.Sprint(len("frame one")+len("frame two, after parking")) {
		t.Fatalf("access line: %v", m)
	}
	socktest.WaitFor(t, 2*time.Second, "the conn ended", func() bool {
		st := vs.Stats()
		return st.Active == 0 && st.Parked == 0
	})
}

// Shutdown's cut ends an upgrade tunnel (tracked with the relays now that
// no http goroutine waits for it).
func TestShutdownCutsAnUpgradeTunnel(t *testing.T) {
	be := socktest.Start(t, upgradeEcho)
	p := startProxy(t, httpConfig("", "", be.Addr()))
	_, br := openTunnel(t, p, "/ws")
	ctx, cancel := context.WithTimeout(context.Background(), 400*time.Millisecond)
	defer cancel()
	start := time.Now()
	if err := p.srv.Shutdown(ctx); !errors.Is(err, context.DeadlineExceeded) {
		t.Fatalf("shutdown: %v, want the drain cut", err)
	}
	if took := time.Since(start); took > 3*time.Second {
		t.Fatalf("shutdown took %v", took)
	}
	if _, err := io.ReadAll(br); err != nil && !errors.Is(err, syscall.ECONNRESET) {
		t.Fatalf("client after the cut: %v", err)
	}
	if lines := p.waitAccess(t, 1); fmt.Sprint(lines[0].ContextMap()["status"]) != "101" {
		t.Fatalf("access line: %v", lines[0].ContextMap())
	}
}

// A tcp-mode relay that ends TLS parks too, the TLS side included: bytes
// in records sent after the park (a large one split over many reads, and a
// small one) come through whole, and a close_notify + FIN ends it cleanly.
func TestTCPParkedTLSRelayResumes(t *testing.T) {
	pki := testpki.New(t)
	leaf := pki.Issue(t, "a", "127.0.0.1", testpki.Options{})
	be := socktest.Start(t, socktest.Echo)
	p := startProxy(t, tcpConfig("", tlsBlock(leaf.CertFile, leaf.KeyFile, ""), "", be.Addr()))
	vs := p.srv.VirtualServer("vs")
	c, err := tls.Dial("tcp", p.addr("vs"), pki.ClientConfig("127.0.0.1"))
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close()
	exchangeEcho(t, c, "before parking")
	socktest.WaitFor(t, 3*time.Second, "both directions parked", func() bool { return vs.Stats().Parked == 2 })
	big := string(bytes.Repeat([]byte("0123456789abcdef"), 4096)) // 64 KiB: several full records
	exchangeEcho(t, c, big)
	socktest.WaitFor(t, 3*time.Second, "parked again", func() bool { return vs.Stats().Parked == 2 })
	exchangeEcho(t, c, "after the second park")
	_ = c.SetDeadline(time.Now().Add(5 * time.Second))
	if err := c.CloseWrite(); err != nil {
		t.Fatal(err)
	}
	if rest, err := io.ReadAll(c); err != nil || len(rest) != 0 {
		t.Fatalf("after close_notify: %q %v", rest, err)
	}
	m := p.waitAccess(t, 1)[0].ContextMap()
	if m["closed_first"] != "client FIN" || m["bytes_in"] != int64(len("before parking")+len(big)+len("after the second park")) {
		t.Fatalf("access line: %v", m)
	}
}

// ownerFunc is a parkOwner for parker unit tests.
type ownerFunc func(ready bool)

func (f ownerFunc) parkDeadline() (time.Time, bool) { return time.Now().Add(time.Minute), true }
func (f ownerFunc) unparked(ready bool)             { f(ready) }

// A socket epoll cannot take stays with its owner (park reports false),
// is counted, and the warning about it is rate-limited.
func TestParkFailureIsCountedAndWarnedOnce(t *testing.T) {
	core, logs := observer.New(zapcore.WarnLevel)
	w := newWorkers()
	defer w.stop()
	p, err := newParker(zap.New(core), w)
	if err != nil {
		t.Fatal(err)
	}
	defer p.stop()
	f, err := os.CreateTemp(t.TempDir(), "regular") // epoll_ctl refuses regular files (EPERM)
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	raw, err := f.SyscallConn()
	if err != nil {
		t.Fatal(err)
	}
	called := make(chan bool, 1)
	owner := ownerFunc(func(ready bool) { called <- ready })
	for range 2 {
		var e parkEntry
		if p.park(&e, raw, owner) {
			t.Fatal("a regular file was parked")
		}
	}
	if n := p.failures.Load(); n != 2 {
		t.Fatalf("failures = %d, want 2", n)
	}
	if st := p.parkedNow(); st != 0 {
		t.Fatalf("parked = %d", st)
	}
	warns := logs.FilterMessageSnippet("could not be parked").All()
	if len(warns) != 1 || !strings.Contains(fmt.Sprint(warns[0].ContextMap()["error"]), "operation not permitted") {
		t.Fatalf("warnings: %v", warns)
	}
	select {
	case r := <-called:
		t.Fatalf("the owner was called (ready %v) for a park that failed", r)
	default:
	}
}

// openSockets counts this process's open sockets.
func openSockets(t *testing.T) int {
	t.Helper()
	ents, err := os.ReadDir("/proc/self/fd")
	if err != nil {
		t.Fatal(err)
	}
	n := 0
	for _, e := range ents {
		if l, err := os.Readlink("/proc/self/fd/" + e.Name()); err == nil && strings.HasPrefix(l, "socket:") {
			n++
		}
	}
	return n
}
