package sockopt

import (
	"context"
	"errors"
	"net"
	"os"
	"strings"
	"testing"
	"time"

	"golang.org/x/sys/unix"

	"github.com/tetherproxy/tether/config"
	"github.com/tetherproxy/tether/sockopt/socktest"
)

// opt is one integer socket option and the value a profile should leave.
type opt struct {
	name         string
	level, which int
	want         int
}

// connOpts are the options every socket of profile p must show: listener,
// accepted and dialed alike.
func connOpts(p config.TCPProfile) []opt {
	return []opt{
		{"SO_KEEPALIVE", unix.SOL_SOCKET, unix.SO_KEEPALIVE, boolInt(p.Keepalive)},
		{"TCP_KEEPIDLE", unix.IPPROTO_TCP, unix.TCP_KEEPIDLE, int(p.KeepaliveIdle / time.Second)},
		{"TCP_KEEPINTVL", unix.IPPROTO_TCP, unix.TCP_KEEPINTVL, int(p.KeepaliveInterval / time.Second)},
		{"TCP_KEEPCNT", unix.IPPROTO_TCP, unix.TCP_KEEPCNT, p.KeepaliveProbes},
		{"TCP_USER_TIMEOUT", unix.IPPROTO_TCP, unix.TCP_USER_TIMEOUT, int(p.UserTimeout / time.Millisecond)},
		{"TCP_NODELAY", unix.IPPROTO_TCP, unix.TCP_NODELAY, boolInt(p.NoDelay)},
		{"TCP_LINGER2", unix.IPPROTO_TCP, unix.TCP_LINGER2, int(p.FinWait2Timeout / time.Second)},
		// The kernel stores (and reports) twice what was asked.
		{"SO_SNDBUF", unix.SOL_SOCKET, unix.SO_SNDBUF, 2 * p.SendBuffer},
		{"SO_RCVBUF", unix.SOL_SOCKET, unix.SO_RCVBUF, 2 * p.RecvBuffer},
	}
}

func checkOpts(t *testing.T, what string, c syscallConn, opts []opt) {
	t.Helper()
	for _, o := range opts {
		if got := getInt(t, c, o.level, o.which); got != o.want {
			t.Errorf("%s: %s = %d, want %d", what, o.name, got, o.want)
		}
	}
}

// deferAcceptSecs is what the kernel reports for TCP_DEFER_ACCEPT = s: it
// stores a count of SYN-ACK retransmissions (1 s initial timeout, doubling)
// and reports the total time they cover, 1, 3, 7, 15 ... s (capped per
// retransmission at TCP_RTO_MAX, 120 s, not reached here).
func deferAcceptSecs(s int) int {
	if s <= 0 {
		return 0
	}
	period, timeout := 1, 1
	for s > period {
		timeout *= 2
		period += timeout
	}
	return period
}

func TestProfileOptionsReadBackOnListenerAcceptedAndDialed(t *testing.T) {
	for _, nodelay := range []bool{false, true} {
		t.Run("nodelay="+map[bool]string{false: "false", true: "true"}[nodelay], func(t *testing.T) {
			p := testProfile()
			p.NoDelay = nodelay
			want := connOpts(p)

			ln := listen(t, p)
			listenerOpts := append(want,
				opt{"SO_REUSEPORT", unix.SOL_SOCKET, unix.SO_REUSEPORT, 1},
				opt{"TCP_DEFER_ACCEPT", unix.IPPROTO_TCP, unix.TCP_DEFER_ACCEPT, 7}, // 5 s asked, rounded up to 1+2+4
				opt{"TCP_FASTOPEN", unix.IPPROTO_TCP, unix.TCP_FASTOPEN, 13},
			)
			checkOpts(t, "listener", ln, listenerOpts)
			if got, want := deferAcceptSecs(5), 7; got != want {
				t.Fatalf("deferAcceptSecs(5) = %d, want %d", got, want)
			}
			if limit, _, err := Backlog(ln); err != nil || limit != 77 {
				t.Errorf("listener: backlog = %d, %v; want 77", limit, err)
			}

			dialed, accepted := connect(t, ln, p)

			// Before Apply: the accepted socket inherited every option from the
			// listener and the dialed one kept what Dialer's Control set; Go
			// overwrote neither's keepalive, but it did force TCP_NODELAY on,
			// which is why Apply must follow.
			var beforeApply []opt
			for _, o := range want {
				if o.name == "TCP_NODELAY" {
					o.want = 1
				}
				beforeApply = append(beforeApply, o)
			}
			checkOpts(t, "accepted before Apply", accepted, beforeApply)
			checkOpts(t, "dialed before Apply", dialed, beforeApply)

			// Finish is all an accepted or dialed conn needs: afterwards
			// every option reads back as the profile says.
			for _, c := range []*net.TCPConn{accepted, dialed} {
				if err := Finish(c, &p); err != nil {
					t.Fatalf("Finish: %v", err)
				}
			}
			checkOpts(t, "accepted after Finish", accepted, want)
			checkOpts(t, "dialed after Finish", dialed, append(want,
				opt{"TCP_FASTOPEN_CONNECT", unix.IPPROTO_TCP, unix.TCP_FASTOPEN_CONNECT, 1}))

			for _, c := range []*net.TCPConn{accepted, dialed} {
				if err := Apply(c, p); err != nil {
					t.Fatalf("Apply: %v", err)
				}
			}
			checkOpts(t, "accepted", accepted, want)
			checkOpts(t, "dialed", dialed, append(want,
				opt{"TCP_FASTOPEN_CONNECT", unix.IPPROTO_TCP, unix.TCP_FASTOPEN_CONNECT, 1}))
		})
	}
}

func TestOptionsOffLeaveKernelValues(t *testing.T) {
	p := testProfile()
	p.ReusePort, p.DeferAccept, p.FastOpen = false, 0, 0
	p.UserTimeout, p.FinWait2Timeout = 0, 0
	p.SendBuffer, p.RecvBuffer = 0, 0
	ln := listen(t, p)
	checkOpts(t, "listener", ln, []opt{
		{"SO_REUSEPORT", unix.SOL_SOCKET, unix.SO_REUSEPORT, 0},
		{"TCP_DEFER_ACCEPT", unix.IPPROTO_TCP, unix.TCP_DEFER_ACCEPT, 0},
		{"TCP_FASTOPEN", unix.IPPROTO_TCP, unix.TCP_FASTOPEN, 0},
	})
	dialed, accepted := connect(t, ln, p)
	finTimeout := readSysctl(t, "/proc/sys/net/ipv4/tcp_fin_timeout")
	for _, c := range []*net.TCPConn{dialed, accepted} {
		if err := Apply(c, p); err != nil {
			t.Fatal(err)
		}
		checkOpts(t, "conn", c, []opt{
			{"TCP_USER_TIMEOUT", unix.IPPROTO_TCP, unix.TCP_USER_TIMEOUT, 0},
			{"TCP_LINGER2", unix.IPPROTO_TCP, unix.TCP_LINGER2, finTimeout},
		})
		// Autotuning: the buffer is not locked to a doubled profile value.
		if got := getInt(t, c, unix.SOL_SOCKET, unix.SO_SNDBUF); got == 0 {
			t.Errorf("SO_SNDBUF = 0")
		}
	}
	checkOpts(t, "dialed", dialed, []opt{{"TCP_FASTOPEN_CONNECT", unix.IPPROTO_TCP, unix.TCP_FASTOPEN_CONNECT, 0}})
}

func TestDefaultProfileReplacesGoKeepalive(t *testing.T) {
	p := config.DefaultProfile()
	ln := listen(t, p)
	dialed, accepted := connect(t, ln, p)
	for _, c := range []struct {
		name string
		c    *net.TCPConn
	}{{"accepted", accepted}, {"dialed", dialed}} {
		// Already before Apply: Go's 15 s never reached the socket.
		checkOpts(t, c.name+" before Apply", c.c, []opt{{"TCP_KEEPIDLE", unix.IPPROTO_TCP, unix.TCP_KEEPIDLE, 1800}})
		if err := Apply(c.c, p); err != nil {
			t.Fatal(err)
		}
		checkOpts(t, c.name, c.c, []opt{
			{"SO_KEEPALIVE", unix.SOL_SOCKET, unix.SO_KEEPALIVE, 1},
			{"TCP_KEEPIDLE", unix.IPPROTO_TCP, unix.TCP_KEEPIDLE, 1800},
			{"TCP_KEEPINTVL", unix.IPPROTO_TCP, unix.TCP_KEEPINTVL, 75},
			{"TCP_KEEPCNT", unix.IPPROTO_TCP, unix.TCP_KEEPCNT, 9},
			{"TCP_NODELAY", unix.IPPROTO_TCP, unix.TCP_NODELAY, 1},
		})
	}

	// The control: a plain net.Dial does carry Go's 15 s keepalive, so the
	// check above would catch Go's default leaking through.
	c, err := net.DialTimeout("tcp", ln.Addr().String(), 5*time.Second)
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close()
	if got := getInt(t, c.(*net.TCPConn), unix.IPPROTO_TCP, unix.TCP_KEEPIDLE); got != 15 {
		t.Errorf("plain net.Dial: TCP_KEEPIDLE = %d, want Go's 15", got)
	}
}

func TestKeepaliveOffMeansSOKeepaliveZero(t *testing.T) {
	p := config.DefaultProfile()
	p.Keepalive = false
	dialed, accepted := pair(t, p)
	checkOpts(t, "accepted", accepted, []opt{{"SO_KEEPALIVE", unix.SOL_SOCKET, unix.SO_KEEPALIVE, 0}})
	checkOpts(t, "dialed", dialed, []opt{{"SO_KEEPALIVE", unix.SOL_SOCKET, unix.SO_KEEPALIVE, 0}})

	// Apply also switches keepalive off on a conn where something turned it on.
	if err := dialed.SetKeepAlive(true); err != nil {
		t.Fatal(err)
	}
	if err := Apply(dialed, p); err != nil {
		t.Fatal(err)
	}
	checkOpts(t, "dialed after re-Apply", dialed, []opt{{"SO_KEEPALIVE", unix.SOL_SOCKET, unix.SO_KEEPALIVE, 0}})
}

func TestBacklogIsSetAndCappedBySomaxconn(t *testing.T) {
	somaxconn := readSysctl(t, "/proc/sys/net/core/somaxconn")
	for _, tc := range []struct {
		backlog, want int
	}{
		{77, 77},
		{1, 1},
		{somaxconn + 1000, somaxconn}, // the kernel caps silently
		{0, somaxconn},                // 0 leaves Go's choice, somaxconn
	} {
		p := config.DefaultProfile()
		p.Backlog = tc.backlog
		ln := listen(t, p)
		limit, queued, err := Backlog(ln)
		if err != nil || limit != tc.want || queued != 0 {
			t.Errorf("backlog %d: Backlog() = %d, %d, %v; want %d, 0", tc.backlog, limit, queued, err, tc.want)
		}
		// Independently, sock_diag reports the backlog as the LISTEN socket's SendQ.
		socks, err := Sockets()
		if err != nil {
			t.Fatal(err)
		}
		port := ln.Addr().(*net.TCPAddr).AddrPort()
		found := false
		for _, s := range socks {
			if s.Local == port && s.State == StateListen {
				found = true
				if int(s.SendQ) != tc.want {
					t.Errorf("backlog %d: sock_diag SendQ = %d, want %d", tc.backlog, s.SendQ, tc.want)
				}
			}
		}
		if !found {
			t.Errorf("backlog %d: sock_diag has no LISTEN socket on %v", tc.backlog, port)
		}
	}
}

func TestBacklogFillsAcceptQueue(t *testing.T) {
	p := config.DefaultProfile()
	p.Backlog = 2
	ln := listen(t, p)
	var conns []net.Conn
	defer func() {
		for _, c := range conns {
			c.Close()
		}
	}()
	// Nobody accepts: the accept queue holds backlog+1 connections (Linux
	// admits while queued <= backlog); later handshakes do not complete.
	for range 3 {
		c, err := net.DialTimeout("tcp", ln.Addr().String(), 5*time.Second)
		if err != nil {
			t.Fatal(err)
		}
		conns = append(conns, c)
	}
	socktest.WaitFor(t, 5*time.Second, "3 connections in the accept queue", func() bool {
		_, queued, err := Backlog(ln)
		return err == nil && queued == 3
	})
}

func TestInvalidOptionIsNamedInError(t *testing.T) {
	p := config.DefaultProfile()
	p.KeepaliveProbes = 500 // TCP_KEEPCNT accepts 1..127
	_, err := Listen(context.Background(), p, "127.0.0.1:0")
	if !errors.Is(err, unix.EINVAL) || !strings.Contains(err.Error(), "TCP_KEEPCNT") {
		t.Errorf("Listen error = %v, want EINVAL naming TCP_KEEPCNT", err)
	}

	ok := config.DefaultProfile()
	ln := listen(t, ok)
	_, err = Dialer(p, time.Second).Dial("tcp", ln.Addr().String())
	if !errors.Is(err, unix.EINVAL) || !strings.Contains(err.Error(), "TCP_KEEPCNT") {
		t.Errorf("Dial error = %v, want EINVAL naming TCP_KEEPCNT", err)
	}

	dialed, _ := pair(t, ok)
	if err := Apply(dialed, p); !errors.Is(err, unix.EINVAL) || !strings.Contains(err.Error(), "TCP_KEEPCNT") {
		t.Errorf("Apply error = %v, want EINVAL naming TCP_KEEPCNT", err)
	}
	dialed.Close()
	if err := Apply(dialed, ok); !errors.Is(err, net.ErrClosed) {
		t.Errorf("Apply on a closed conn = %v, want net.ErrClosed", err)
	}
	if err := Apply(nil, ok); !errors.Is(err, ErrNilConn) {
		t.Errorf("Apply(nil) = %v, want ErrNilConn", err)
	}
}

func TestDialerFields(t *testing.T) {
	d := Dialer(config.DefaultProfile(), 1234*time.Millisecond)
	if d.Timeout != 1234*time.Millisecond || d.KeepAlive != -1 || d.KeepAliveConfig.Enable || d.MultipathTCP() {
		t.Errorf("Dialer = timeout %v keepalive %v cfg %+v mptcp %v", d.Timeout, d.KeepAlive, d.KeepAliveConfig, d.MultipathTCP())
	}
}

func TestListenerIsPlainTCP(t *testing.T) {
	ln := listen(t, config.DefaultProfile())
	if got := getInt(t, ln, unix.SOL_SOCKET, unix.SO_PROTOCOL); got != unix.IPPROTO_TCP {
		t.Errorf("SO_PROTOCOL = %d, want IPPROTO_TCP (%d), not MPTCP", got, unix.IPPROTO_TCP)
	}
	// The control: where the kernel has MPTCP on, Go's default listener is
	// MPTCP (IPPROTO_MPTCP, 262), so the check above is not vacuous.
	if b, err := os.ReadFile("/proc/sys/net/mptcp/enabled"); err == nil && strings.TrimSpace(string(b)) == "1" {
		var lc net.ListenConfig
		plain, err := lc.Listen(context.Background(), "tcp", "127.0.0.1:0")
		if err != nil {
			t.Fatal(err)
		}
		defer plain.Close()
		if got := getInt(t, plain.(*net.TCPListener), unix.SOL_SOCKET, unix.SO_PROTOCOL); got != unix.IPPROTO_MPTCP {
			t.Logf("note: Go's default listener has SO_PROTOCOL %d, not MPTCP", got)
		}
	}
}

func TestSecondsAndMillisRoundUp(t *testing.T) {
	for _, tc := range []struct {
		d        time.Duration
		sec, msc int
	}{
		{time.Nanosecond, 1, 1},
		{1500 * time.Millisecond, 2, 1500},
		{17 * time.Second, 17, 17000},
		{4500*time.Millisecond + time.Microsecond, 5, 4501},
	} {
		if s, ms := seconds(tc.d), millis(tc.d); s != tc.sec || ms != tc.msc {
			t.Errorf("%v: seconds %d millis %d, want %d %d", tc.d, s, ms, tc.sec, tc.msc)
		}
	}
}

// TestKernelClampsShowInReadBack pins down values the kernel changes
// silently, which config validation cannot see: TCP_LINGER2 is capped at
// 120 s (TCP_FIN_TIMEOUT_MAX) and SO_SNDBUF/SO_RCVBUF at net.core.wmem_max /
// rmem_max (then doubled).
func TestKernelClampsShowInReadBack(t *testing.T) {
	wmemMax := readSysctl(t, "/proc/sys/net/core/wmem_max")
	rmemMax := readSysctl(t, "/proc/sys/net/core/rmem_max")
	p := config.DefaultProfile()
	p.FinWait2Timeout = 300 * time.Second
	p.SendBuffer = wmemMax + 4096
	p.RecvBuffer = rmemMax + 4096
	dialed, _ := pair(t, p)
	checkOpts(t, "dialed", dialed, []opt{
		{"TCP_LINGER2", unix.IPPROTO_TCP, unix.TCP_LINGER2, 120},
		{"SO_SNDBUF", unix.SOL_SOCKET, unix.SO_SNDBUF, 2 * wmemMax},
		{"SO_RCVBUF", unix.SOL_SOCKET, unix.SO_RCVBUF, 2 * rmemMax},
	})
}

// TestApplyDoesNotAllocate: Apply runs on every accept.
func TestApplyDoesNotAllocate(t *testing.T) {
	p := testProfile()
	c, _ := pair(t, p)
	if allocs := testing.AllocsPerRun(100, func() {
		if err := Apply(c, p); err != nil {
			t.Fatal(err)
		}
	}); allocs != 0 {
		t.Errorf("Apply allocates %v times per call, want 0", allocs)
	}
}
