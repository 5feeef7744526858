package bench

import (
	"bufio"
	"bytes"
	"net"
	"strconv"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"go.uber.org/goleak"

	"github.com/tetherproxy/tether/sockopt"
)

func TestMain(m *testing.M) { goleak.VerifyTestMain(m) }

// testServer is a small raw HTTP/1.1 (or echo) server on 127.0.0.1 that
// counts what it saw: connections accepted and requests read.
type testServer struct {
	ln       *net.TCPListener
	accepted atomic.Int64
	requests atomic.Int64
	echoed   atomic.Int64 // echo: bytes copied back

	status    int                             // http: response status (0 = 200)
	closeEach bool                            // http: Connection: close on every response, then close (also done when the request asks)
	stall     func(n int64) time.Duration     // http: delay before answering request n (1-based)
	serve     func(s *testServer, c net.Conn) // nil = HTTP

	mu    sync.Mutex // serialises answers when stall is set: a stall stalls everyone
	wg    sync.WaitGroup
	cmu   sync.Mutex
	conns map[net.Conn]struct{}
}

func (s *testServer) addr() string { return s.ln.Addr().String() }
func (s *testServer) url() string  { return "http://" + s.addr() + "/x" }
func (s *testServer) port() uint16 { return uint16(s.ln.Addr().(*net.TCPAddr).Port) }

// start listens and serves until the test ends; cleanup closes every conn
// and waits for every goroutine.
func (s *testServer) start(t testing.TB) *testServer {
	t.Helper()
	ln := freshListener(t)
	s.ln, s.conns = ln, map[net.Conn]struct{}{}
	if s.serve == nil {
		s.serve = serveHTTP
	}
	s.wg.Add(1)
	go s.acceptLoop()
	t.Cleanup(func() {
		ln.Close()
		s.cmu.Lock()
		for c := range s.conns {
			c.Close()
		}
		s.cmu.Unlock()
		s.wg.Wait()
	})
	return s
}

func (s *testServer) acceptLoop() {
	defer s.wg.Done()
	for {
		c, err := s.ln.Accept()
		if err != nil {
			return
		}
		s.accepted.Add(1)
		s.cmu.Lock()
		s.conns[c] = struct{}{}
		s.cmu.Unlock()
		s.wg.Add(1)
		go func() {
			defer s.wg.Done()
			s.serve(s, c)
			c.Close()
			s.cmu.Lock()
			delete(s.conns, c)
			s.cmu.Unlock()
		}()
	}
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

// freshListener listens on a 127.0.0.1 port that no other socket uses (a
// TIME_WAIT left by an earlier connection can hold the same port number as
// a new listener), so that counting sockets by this port counts only this
// test's.
func freshListener(t testing.TB) *net.TCPListener {
	t.Helper()
	for i := 0; i < 20; i++ {
		ln, err := net.ListenTCP("tcp", &net.TCPAddr{IP: net.IPv4(127, 0, 0, 1)})
		if err != nil {
			t.Fatal(err)
		}
		port := uint16(ln.Addr().(*net.TCPAddr).Port)
		socks, err := sockopt.Sockets()
		if err != nil {
			t.Fatal(err)
		}
		used := false
		for _, so := range socks {
			if so.State != sockopt.StateListen && (so.Local.Port() == port || so.Remote.Port() == port) {
				used = true
				break
			}
		}
		if !used {
			return ln
		}
		ln.Close()
	}
	t.Fatal("no 127.0.0.1 port free of other sockets after 20 tries")
	return nil
}
