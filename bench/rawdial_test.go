package bench

import (
	"context"
	"net"
	"net/netip"
	"testing"
	"time"

	"golang.org/x/sys/unix"

	"github.com/tetherproxy/tether/sockopt"
	"github.com/tetherproxy/tether/sockopt/socktest"
)

// fullListener is a 127.0.0.1 listener with a backlog of 0 that nobody
// accepts from, its queue filled by one handshake: the kernel drops the
// SYNs of later connects, which stay in progress until it accepts or
// they time out. accept takes the queued conn (and closes it).
type fullListener struct {
	fd   int
	addr netip.AddrPort
}

func newFullListener(t *testing.T) *fullListener {
	t.Helper()
	fd, err := unix.Socket(unix.AF_INET, unix.SOCK_STREAM|unix.SOCK_CLOEXEC, 0)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { unix.Close(fd) })
	if err := unix.Bind(fd, &unix.SockaddrInet4{Addr: [4]byte{127, 0, 0, 1}}); err != nil {
		t.Fatal(err)
	}
	if err := unix.Listen(fd, 0); err != nil {
		t.Fatal(err)
	}
	sa, err := unix.Getsockname(fd)
	if err != nil {
		t.Fatal(err)
	}
	l := &fullListener{fd: fd, addr: netip.AddrPortFrom(netip.AddrFrom4([4]byte{127, 0, 0, 1}), uint16(sa.(*unix.SockaddrInet4).Port))}
	// One handshake fills a backlog of 0; it stays queued, unaccepted.
	c, err := unix.Socket(unix.AF_INET, unix.SOCK_STREAM|unix.SOCK_CLOEXEC, 0)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { unix.Close(c) })
	if err := unix.Connect(c, &unix.SockaddrInet4{Addr: [4]byte{127, 0, 0, 1}, Port: int(l.addr.Port())}); err != nil {
		t.Fatal(err)
	}
	return l
}

// accept takes one queued conn off the listener and closes it.
func (l *fullListener) accept(t *testing.T) {
	nfd, _, err := unix.Accept4(l.fd, unix.SOCK_CLOEXEC)
	if err != nil {
		t.Errorf("accept: %v", err)
		return
	}
	unix.Close(nfd)
}

// A connect still in progress after the second connect(2) (the target's
// SYN queue is full) is waited for in the poller and fails as a timeout
// when Options.Timeout ends first; no conn is counted.
func TestShortConnectThatHangsTimesOut(t *testing.T) {
	l := newFullListener(t)
	start := time.Now()
	r := run(t, Options{Target: "http://" + l.addr.String() + "/", Conn: ConnShort, Concurrency: 1, Requests: 1, Timeout: 300 * time.Millisecond})
	if r.Errors[ErrTimeout] != 1 || r.ConnsOpened != 0 || r.OK != 0 {
		t.Errorf("errors %v conns %d ok %d; want 1 timeout, no conn", r.Errors, r.ConnsOpened, r.OK)
	}
	if d := time.Since(start); d > 3*time.Second {
		t.Errorf("took %v; the timeout is 300ms", d)
	}
}

// A connect that completes only after a wait (the target accepted late,
// and the kernel's SYN retry got through) succeeds through the poller: the
// request is answered and the conn counted once, its connect time taking
// the wait.
func TestShortConnectThatWaitsSucceeds(t *testing.T) {
	l := newFullListener(t)
	w := newTestWorker(t, Options{Target: "http://" + l.addr.String() + "/", Conn: ConnShort, Concurrency: 1, Timeout: 10 * time.Second})
	done := make(chan int, 1)
	go func() { done <- w.once(context.Background(), time.Now()) }()
	// The worker's SYN is dropped (on loopback within its connect call):
	// once its socket is in SYN_SENT, free the queue so that the retry is
	// accepted, then answer on the accepted conn.
	socktest.WaitFor(t, 5*time.Second, "the worker's connect is in progress", func() bool {
		socks, err := sockopt.Sockets()
		if err != nil {
			t.Fatal(err)
		}
		for _, so := range socks {
			if so.Remote == l.addr && so.State == sockopt.StateSynSent {
				return true
			}
		}
		return false
	})
	l.accept(t)
	socktest.WaitFor(t, 5*time.Second, "the retried handshake is queued", func() bool {
		var fds = []unix.PollFd{{Fd: int32(l.fd), Events: unix.POLLIN}}
		n, _ := unix.Poll(fds, 0)
		return n == 1
	})
	nfd, _, err := unix.Accept4(l.fd, unix.SOCK_CLOEXEC)
	if err != nil {
		t.Fatal(err)
	}
	defer unix.Close(nfd)
	buf := make([]byte, 4096)
	if _, err := unix.Read(nfd, buf); err != nil {
		t.Fatal(err)
	}
	if _, err := unix.Write(nfd, fixedResponse); err != nil {
		t.Fatal(err)
	}
	if k := <-done; k != kindOK {
		t.Fatalf("kind %d, want ok", k)
	}
	if w.opened != 1 || w.connect.TotalCount() != 1 || w.connect.Max() < 100_000 { // µs: a SYN retry waits 1 s
		t.Errorf("opened %d, connect times %d max %dµs; want 1 conn whose connect took the SYN retry", w.opened, w.connect.TotalCount(), w.connect.Max())
	}
}

// A request too big for the raw path (rawMax) goes through net.Dialer,
// with the same counting.
func TestShortModeLargeRequestUsesTheDialer(t *testing.T) {
	s := (&testServer{}).start(t)
	o := Options{Target: s.url(), Conn: ConnShort, Concurrency: 2, Requests: 50, BodySize: rawMax + 1}
	r := run(t, o)
	noErrors(t, r)
	if r.OK != 50 || s.requests.Load() != 50 || r.ConnsOpened != 50 || s.accepted() != 50 || r.PortsUsed != 50 {
		t.Errorf("ok %d (server %d), conns %d (server %d), ports %d; want 50 each", r.OK, s.requests.Load(), r.ConnsOpened, s.accepted(), r.PortsUsed)
	}
	if p := newTestWorker(t, o).p; p.useRaw() {
		t.Errorf("a %d-byte request uses the raw path", len(p.req))
	}
	if p := newTestWorker(t, Options{Target: s.url(), Conn: ConnShort}).p; !p.useRaw() {
		t.Error("a plain GET does not use the raw path")
	}
}

// The raw path speaks IPv6 too: conns counted, ports and the local
// address noted (TIME_WAIT is counted against them).
func TestShortModeOverIPv6(t *testing.T) {
	s := &testServer{}
	s.b = socktest.StartAt(t, "[::1]:0", func(c *net.TCPConn) { serveHTTP(s, c) })
	r := run(t, Options{Target: "http://" + s.addr() + "/", Conn: ConnShort, Concurrency: 2, Requests: 40})
	noErrors(t, r)
	if r.OK != 40 || s.requests.Load() != 40 || r.ConnsOpened != 40 || r.PortsUsed != 40 {
		t.Errorf("ok %d (server %d) conns %d ports %d; want 40 each", r.OK, s.requests.Load(), r.ConnsOpened, r.PortsUsed)
	}
	if r.ClosedByClient != 40 || r.TimeWaitClient != 40 {
		t.Errorf("closed by client %d, TIME_WAIT client %d; want 40, 40", r.ClosedByClient, r.TimeWaitClient)
	}
}
