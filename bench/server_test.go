package bench

import (
	"bufio"
	"bytes"
	"math/rand/v2"
	"net"
	"net/netip"
	"strconv"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"go.uber.org/goleak"

	"github.com/tetherproxy/tether/sockopt"
	"github.com/tetherproxy/tether/sockopt/socktest"
)

func TestMain(m *testing.M) { goleak.VerifyTestMain(m) }

// testServer is a small raw HTTP/1.1 (or echo) server on 127/8 that
// counts what it saw: connections accepted and requests read. It runs on a
// socktest.Backend, which accepts, counts and, at the test's cleanup, closes
// every conn and waits for every handler.
type testServer struct {
	b        *socktest.Backend
	requests atomic.Int64
	echoed   atomic.Int64 // echo: bytes copied back

	status    int                             // http: response status (0 = 200)
	closeEach bool                            // http: Connection: close on every response, then close (also done when the request asks)
	stall     func(n int64) time.Duration     // http: delay before answering request n (1-based)
	serve     func(s *testServer, c net.Conn) // nil = HTTP

	mu sync.Mutex // serialises answers when stall is set: a stall stalls everyone
}

func (s *testServer) addr() string    { return s.b.Addr() }
func (s *testServer) url() string     { return "http://" + s.addr() + "/x" }
func (s *testServer) accepted() int64 { return int64(s.b.Accepted()) }

// start serves until the test ends on an address and port that no other
// socket uses (a TIME_WAIT left by an earlier connection can hold the same
// pair as a new listener), so that counting sockets by that pair counts
// only this test's. The address is a random one of 127/8, not 127.0.0.1,
// whose ports a busy machine's TIME_WAIT sockets may all hold.
func (s *testServer) start(t testing.TB) *testServer {
	t.Helper()
	if s.serve == nil {
		s.serve = serveHTTP
	}
	for i := 0; i < 20; i++ {
		addr := netip.AddrFrom4([4]byte{127, byte(1 + rand.IntN(254)), byte(rand.IntN(256)), byte(1 + rand.IntN(254))})
		s.b = socktest.StartAt(t, netip.AddrPortFrom(addr, 0).String(), func(c *net.TCPConn) { s.serve(s, c) })
		if addrIsOurs(t, netip.MustParseAddrPort(s.addr())) {
			return s
		}
		s.b.Close()
	}
	t.Fatal("no 127/8 address and port free of other sockets after 20 tries")
	return nil
}

// addrIsOurs reports whether no socket but a listener uses ap.
func addrIsOurs(t testing.TB, ap netip.AddrPort) bool {
	t.Helper()
	socks, err := sockopt.Sockets()
	if err != nil {
		t.Fatal(err)
	}
	for _, so := range socks {
		if so.State != sockopt.StateListen && (so.Local == ap || so.Remote == ap) {
			return false
		}
	}
	return true
}

// serveHTTP answers requests on c until EOF: reads the head and a
// Content-Length body, answers 64 bytes.
func serveHTTP(s *testServer, c net.Conn) {
	br := bufio.NewReader(c)
	body := bytes.Repeat([]byte("b"), 64)
	for {
		length, askClose := 0, false
		for {
			line, err := br.ReadSlice('\n')
			if err != nil {
				return
			}
			if len(line) <= 2 {
				break
			}
			if name, v, ok := bytes.Cut(bytes.TrimSpace(line), []byte(":")); ok && bytes.EqualFold(name, []byte("content-length")) {
				length, _ = strconv.Atoi(string(bytes.TrimSpace(v)))
			}
			askClose = askClose || bytes.EqualFold(bytes.TrimSpace(line), []byte("connection: close"))
		}
		if _, err := br.Discard(length); err != nil {
			return
		}
		n := s.requests.Add(1)
		if s.stall != nil {
			s.mu.Lock()
			time.Sleep(s.stall(n))
			s.mu.Unlock()
		}
		status := s.status
		if status == 0 {
			status = 200
		}
		head := "HTTP/1.1 " + strconv.Itoa(status) + " X\r\nContent-Length: 64\r\n"
		closing := s.closeEach || askClose
		if closing {
			head += "Connection: close\r\n"
		}
		if _, err := c.Write(append([]byte(head+"\r\n"), body...)); err != nil {
			return
		}
		if closing {
			return
		}
	}
}

// serveEcho copies c back to itself and counts the bytes.
func serveEcho(s *testServer, c net.Conn) {
	buf := make([]byte, 64<<10)
	for {
		n, err := c.Read(buf)
		if n > 0 {
			if _, werr := c.Write(buf[:n]); werr != nil {
				return
			}
			s.echoed.Add(int64(n))
		}
		if err != nil { // io.EOF included
			return
		}
	}
}
