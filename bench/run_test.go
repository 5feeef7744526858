package bench

import (
	"bufio"
	"context"
	"fmt"
	"net"
	"net/netip"
	"os"
	"strings"
	"testing"
	"time"

	"github.com/tetherproxy/tether/sockopt/socktest"
)

func run(t *testing.T, o Options) *Result {
	t.Helper()
	if o.Timeout == 0 {
		o.Timeout = 5 * time.Second
	}
	r, err := Run(context.Background(), o)
	if err != nil {
		t.Fatalf("Run(%+v): %v", o, err)
	}
	if r.Requests != r.OK+r.ErrorCount() {
		t.Errorf("requests %d != ok %d + errors %v", r.Requests, r.OK, r.Errors)
	}
	return r
}

func noErrors(t *testing.T, r *Result) {
	t.Helper()
	if r.ErrorCount() != 0 {
		t.Errorf("errors: %v", r.Errors)
	}
}

func TestShortModeOpensOneConnPerRequest(t *testing.T) {
	s := (&testServer{}).start(t)
	r := run(t, Options{Target: s.url(), Conn: ConnShort, Concurrency: 4, Requests: 200})
	noErrors(t, r)
	if r.Requests != 200 || r.OK != 200 || s.requests.Load() != 200 {
		t.Errorf("requests: bench %d ok %d, server saw %d; want 200", r.Requests, r.OK, s.requests.Load())
	}
	if r.ConnsOpened != 200 || s.accepted() != 200 || r.PortsUsed != 200 {
		t.Errorf("conns: bench opened %d on %d ports, server accepted %d; want 200", r.ConnsOpened, r.PortsUsed, s.accepted())
	}
	if r.ClosedByClient != 200 || r.ClosedByServer != 0 {
		t.Errorf("closed by client %d, by server %d; want 200, 0", r.ClosedByClient, r.ClosedByServer)
	}
	if r.Latency.P50 <= 0 || r.Connect.P50 <= 0 || r.Latency.Max < r.Latency.P99 {
		t.Errorf("latency %+v connect %+v", r.Latency, r.Connect)
	}
}

func TestLongModeOpensConcurrencyConns(t *testing.T) {
	s := (&testServer{}).start(t)
	r := run(t, Options{Target: s.url(), Conn: ConnLong, Concurrency: 10, Requests: 1000})
	noErrors(t, r)
	if r.OK != 1000 || s.requests.Load() != 1000 {
		t.Errorf("ok %d, server saw %d; want 1000", r.OK, s.requests.Load())
	}
	if r.ConnsOpened != 10 || s.accepted() != 10 {
		t.Errorf("conns opened %d, server accepted %d; want 10", r.ConnsOpened, s.accepted())
	}
}

func TestLongModeRequestsPerConnOpensRequestsOverN(t *testing.T) {
	s := (&testServer{}).start(t)
	r := run(t, Options{Target: s.url(), Conn: ConnLong, Concurrency: 10, Requests: 1000, RequestsPerConn: 10,
		Method: "POST", BodySize: 100, Headers: []string{"X-Test: 1"}})
	noErrors(t, r)
	if r.OK != 1000 || s.requests.Load() != 1000 {
		t.Errorf("ok %d, server saw %d; want 1000", r.OK, s.requests.Load())
	}
	if r.ConnsOpened != 100 || s.accepted() != 100 {
		t.Errorf("conns opened %d, server accepted %d; want 100", r.ConnsOpened, s.accepted())
	}
}

func TestServerClosingEveryResponseIsFollowed(t *testing.T) {
	s := (&testServer{closeEach: true}).start(t)
	r := run(t, Options{Target: s.url(), Conn: ConnLong, Concurrency: 3, Requests: 60})
	noErrors(t, r)
	if r.OK != 60 || r.ConnsOpened != 60 || s.accepted() != 60 || r.ClosedByServer != 60 {
		t.Errorf("ok %d conns %d accepted %d closed by server %d; want 60 each", r.OK, r.ConnsOpened, s.accepted(), r.ClosedByServer)
	}
}

func TestStatus500IsBadStatus(t *testing.T) {
	s := (&testServer{status: 500}).start(t)
	r := run(t, Options{Target: s.url(), Concurrency: 2, Requests: 50})
	if r.Errors[ErrBadStatus] != 50 || r.OK != 0 || r.Requests != 50 || s.requests.Load() != 50 {
		t.Errorf("errors %v ok %d requests %d, server saw %d; want 50 bad status", r.Errors, r.OK, r.Requests, s.requests.Load())
	}
	if len(r.Errors) != 1 {
		t.Errorf("errors %v: want bad status only", r.Errors)
	}
}

func TestClosedPortIsRefused(t *testing.T) {
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	addr := ln.Addr().String()
	ln.Close()
	r := run(t, Options{Target: "http://" + addr + "/", Conn: ConnShort, Concurrency: 2, Requests: 20})
	if r.Errors[ErrRefused] != 20 || r.Requests != 20 || r.ConnsOpened != 0 {
		t.Errorf("errors %v requests %d conns %d; want 20 refused, no conn", r.Errors, r.Requests, r.ConnsOpened)
	}
}

func TestTCPEchoRoundTrips(t *testing.T) {
	for _, conn := range []string{ConnLong, ConnShort} {
		t.Run(conn, func(t *testing.T) {
			s := (&testServer{serve: serveEcho}).start(t)
			r := run(t, Options{Target: s.addr(), Conn: conn, Concurrency: 3, Requests: 300, Size: 1000})
			noErrors(t, r)
			if r.Protocol != ProtocolTCP || r.OK != 300 || r.BytesSent != 300*1000 || r.BytesReceived != 300*1000 {
				t.Errorf("protocol %s ok %d sent %d received %d; want tcp 300 300000 300000", r.Protocol, r.OK, r.BytesSent, r.BytesReceived)
			}
			want := int64(3)
			if conn == ConnShort {
				want = 300
			}
			if int64(r.ConnsOpened) != want || s.accepted() != want {
				t.Errorf("conns %d accepted %d; want %d", r.ConnsOpened, s.accepted(), want)
			}
			socktest.WaitFor(t, 5*time.Second, "server echoed every byte", func() bool { return s.echoed.Load() == 300*1000 })
		})
	}
}

// Open loop: the server stalls everyone for 200 ms once. Requests due
// during the stall are measured from their due time, so well over 10 % of
// them (the stall is 20 % of the run) show the stall; a closed loop would
// show it in `concurrency` requests only (2 %).
func TestOpenLoopLatencyIncludesTheStall(t *testing.T) {
	s := (&testServer{stall: func(n int64) time.Duration {
		if n == 300 {
			return 200 * time.Millisecond
		}
		return 0
	}}).start(t)
	r := run(t, Options{Target: s.url(), Concurrency: 20, Rate: 1000, Duration: time.Second})
	noErrors(t, r)
	if r.Requests < 900 || r.Requests > 1100 || s.requests.Load() != r.Requests {
		t.Errorf("requests %d (server saw %d); want 1000 ± 10%%", r.Requests, s.requests.Load())
	}
	if r.Latency.P99 < 150*time.Millisecond || r.Latency.P90 < 50*time.Millisecond {
		t.Errorf("p90 %v p99 %v: the stall is hidden (coordinated omission)", r.Latency.P90, r.Latency.P99)
	}
	if r.Latency.P50 > 50*time.Millisecond {
		t.Errorf("p50 %v: most requests were not stalled", r.Latency.P50)
	}
}

func TestCancelStopsTheRunAndKeepsTheFigures(t *testing.T) {
	s := (&testServer{}).start(t)
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	go func() {
		for s.requests.Load() < 50 {
			time.Sleep(time.Millisecond)
		}
		cancel()
	}()
	start := time.Now()
	r, err := Run(ctx, Options{Target: s.url(), Concurrency: 4, Duration: time.Hour})
	if err != nil {
		t.Fatal(err)
	}
	if !r.Interrupted || r.OK < 50 || time.Since(start) > 10*time.Second {
		t.Errorf("interrupted %v ok %d after %v", r.Interrupted, r.OK, time.Since(start))
	}
	noErrors(t, r)
}

// The side that closes first keeps the TIME_WAIT: checked by bench's own
// census (sock_diag) and independently in /proc/net/tcp.
func TestTimeWaitLandsOnTheSideThatClosesFirst(t *testing.T) {
	const n = 40
	t.Run("server closes first", func(t *testing.T) {
		s := (&testServer{closeEach: true}).start(t)
		r := run(t, Options{Target: s.url(), Conn: ConnShort, Concurrency: 4, Requests: n})
		noErrors(t, r)
		if r.ClosedByServer != n || r.TimeWaitTarget != n || r.TimeWaitClient != 0 {
			t.Errorf("closed by server %d, TIME_WAIT target %d client %d; want %d %d 0", r.ClosedByServer, r.TimeWaitTarget, r.TimeWaitClient, n, n)
		}
		socktest.WaitFor(t, 5*time.Second, "/proc/net/tcp agrees", func() bool {
			client, target := procTimeWait(t, netip.MustParseAddrPort(s.addr()))
			return client == 0 && target == n
		})
	})
	t.Run("client closes first", func(t *testing.T) {
		s := (&testServer{}).start(t)
		r := run(t, Options{Target: s.url(), Conn: ConnShort, Concurrency: 4, Requests: n})
		noErrors(t, r)
		if r.ClosedByClient != n || r.TimeWaitClient != n || r.TimeWaitTarget != 0 {
			t.Errorf("closed by client %d, TIME_WAIT client %d target %d; want %d %d 0", r.ClosedByClient, r.TimeWaitClient, r.TimeWaitTarget, n, n)
		}
		socktest.WaitFor(t, 5*time.Second, "/proc/net/tcp agrees", func() bool {
			client, target := procTimeWait(t, netip.MustParseAddrPort(s.addr()))
			return client == n && target == 0
		})
	})
	t.Run("client asks the server to close", func(t *testing.T) {
		s := (&testServer{}).start(t)
		r := run(t, Options{Target: s.url(), Conn: ConnShort, Close: CloseServer, Concurrency: 4, Requests: n})
		noErrors(t, r)
		if r.ClosedByServer != n || r.TimeWaitTarget != n || r.TimeWaitClient != 0 {
			t.Errorf("closed by server %d, TIME_WAIT target %d client %d; want %d %d 0", r.ClosedByServer, r.TimeWaitTarget, r.TimeWaitClient, n, n)
		}
		socktest.WaitFor(t, 5*time.Second, "/proc/net/tcp agrees", func() bool {
			client, target := procTimeWait(t, netip.MustParseAddrPort(s.addr()))
			return client == 0 && target == n
		})
	})
}

// procTimeWait counts the TIME_WAIT sockets in /proc/net/tcp to (client
// side) and from (target side) ap (IPv4), each 4-tuple once.
func procTimeWait(t *testing.T, ap netip.AddrPort) (client, target int) {
	t.Helper()
	f, err := os.Open("/proc/net/tcp")
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	// /proc/net/tcp prints the address as the hex of its 32 bits in host
	// (little-endian) order, the port in big-endian hex: 127.0.0.1:80 is
	// 0100007F:0050.
	a := ap.Addr().As4()
	want := fmt.Sprintf("%02X%02X%02X%02X:%04X", a[3], a[2], a[1], a[0], ap.Port())
	seen := map[string]bool{}
	sc := bufio.NewScanner(f)
	for sc.Scan() {
		fields := strings.Fields(sc.Text())
		if len(fields) < 4 || fields[3] != "06" { // 06 = TIME_WAIT
			continue
		}
		key := fields[1] + " " + fields[2]
		if seen[key] {
			continue
		}
		seen[key] = true
		switch want {
		case fields[2]:
			client++
		case fields[1]:
			target++
		}
	}
	return client, target
}
