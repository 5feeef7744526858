package sockopt

import (
	"bufio"
	"context"
	"encoding/hex"
	"fmt"
	"net"
	"net/netip"
	"os"
	"strconv"
	"strings"
	"syscall"
	"testing"
	"time"

	"go.uber.org/goleak"
	"golang.org/x/sys/unix"

	"github.com/tetherproxy/tether/config"
)

func TestMain(m *testing.M) {
	goleak.VerifyTestMain(m)
}

// syscallConn is what *net.TCPConn and *net.TCPListener share.
type syscallConn interface {
	SyscallConn() (syscall.RawConn, error)
}

// getInt reads one integer socket option back with getsockopt.
func getInt(t *testing.T, c syscallConn, level, opt int) int {
	t.Helper()
	raw, err := c.SyscallConn()
	if err != nil {
		t.Fatalf("SyscallConn: %v", err)
	}
	var v int
	var gerr error
	if err := raw.Control(func(fd uintptr) { v, gerr = unix.GetsockoptInt(int(fd), level, opt) }); err != nil {
		t.Fatalf("Control: %v", err)
	}
	if gerr != nil {
		t.Fatalf("getsockopt(%d, %d): %v", level, opt, gerr)
	}
	return v
}

// listen opens a listener with p on 127.0.0.1 and closes it at cleanup.
func listen(t *testing.T, p config.TCPProfile) *net.TCPListener {
	t.Helper()
	ln, err := Listen(context.Background(), p, "127.0.0.1:0")
	if err != nil {
		t.Fatalf("Listen: %v", err)
	}
	t.Cleanup(func() { ln.Close() })
	return ln
}

// connect dials ln with the server profile dp, sends one byte (so that a
// TCP_DEFER_ACCEPT listener hands the conn over), accepts, reads the byte and
// returns (dialed, accepted), both closed at cleanup. Apply is NOT called.
func connect(t *testing.T, ln *net.TCPListener, dp config.TCPProfile) (dialed, accepted *net.TCPConn) {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
	defer cancel()
	c, err := Dialer(dp, 5*time.Second).DialContext(ctx, "tcp", ln.Addr().String())
	if err != nil {
		t.Fatalf("dial: %v", err)
	}
	dialed = c.(*net.TCPConn)
	t.Cleanup(func() { dialed.Close() })
	if _, err := dialed.Write([]byte{'x'}); err != nil {
		t.Fatalf("write first byte: %v", err)
	}
	ln.SetDeadline(time.Now().Add(5 * time.Second))
	accepted, err = ln.AcceptTCP()
	if err != nil {
		t.Fatalf("accept: %v", err)
	}
	ln.SetDeadline(time.Time{})
	t.Cleanup(func() { accepted.Close() })
	var b [1]byte
	accepted.SetReadDeadline(time.Now().Add(5 * time.Second))
	if _, err := accepted.Read(b[:]); err != nil {
		t.Fatalf("read first byte: %v", err)
	}
	accepted.SetReadDeadline(time.Time{})
	return dialed, accepted
}

// pair is connect on a fresh listener with the same profile both sides,
// with Apply called on both conns.
func pair(t *testing.T, p config.TCPProfile) (dialed, accepted *net.TCPConn) {
	t.Helper()
	ln := listen(t, p)
	dialed, accepted = connect(t, ln, p)
	for _, c := range []*net.TCPConn{dialed, accepted} {
		if err := Apply(c, p); err != nil {
			t.Fatalf("Apply: %v", err)
		}
	}
	return dialed, accepted
}

// tuple is the (local, remote) address pair of conn c.
type tuple struct{ local, remote netip.AddrPort }

func (tu tuple) String() string { return tu.local.String() + "->" + tu.remote.String() }

func tupleOf(c *net.TCPConn) tuple {
	return tuple{
		local:  c.LocalAddr().(*net.TCPAddr).AddrPort(),
		remote: c.RemoteAddr().(*net.TCPAddr).AddrPort(),
	}
}

// diagStates returns the states sock_diag (Sockets) reports for exactly tu.
func diagStates(t *testing.T, tu tuple) []State {
	t.Helper()
	socks, err := Sockets()
	if err != nil {
		t.Fatalf("Sockets: %v", err)
	}
	var states []State
	for _, s := range socks {
		if s.Local == tu.local && s.Remote == tu.remote {
			states = append(states, s.State)
		}
	}
	return states
}

// procStates returns the states /proc/net/tcp lists for exactly tu, parsed
// here independently of sock_diag (IPv4 only: the tests use 127.0.0.1).
func procStates(t *testing.T, tu tuple) []State {
	t.Helper()
	f, err := os.Open("/proc/net/tcp")
	if err != nil {
		t.Fatalf("open /proc/net/tcp: %v", err)
	}
	defer f.Close()
	var states []State
	// /proc/net/tcp is read in chunks while other tests open and close
	// sockets, so one socket can be listed twice: keep one line per inode.
	seen := map[string]bool{}
	sc := bufio.NewScanner(f)
	sc.Scan() // header
	for sc.Scan() {
		fields := strings.Fields(sc.Text())
		if len(fields) < 10 {
			continue
		}
		key := fields[1] + fields[2] + fields[9]
		if seen[key] {
			continue
		}
		seen[key] = true
		local, err1 := parseProcAddr(fields[1])
		remote, err2 := parseProcAddr(fields[2])
		st, err3 := strconv.ParseUint(fields[3], 16, 8)
		if err1 != nil || err2 != nil || err3 != nil {
			t.Fatalf("bad /proc/net/tcp line %q", sc.Text())
		}
		if local == tu.local && remote == tu.remote {
			states = append(states, State(st))
		}
	}
	if err := sc.Err(); err != nil {
		t.Fatalf("read /proc/net/tcp: %v", err)
	}
	return states
}

// parseProcAddr parses "0100007F:1F90": the IPv4 address is the __be32
// printed as a host-order (little-endian here) hex number, the port plain.
func parseProcAddr(s string) (netip.AddrPort, error) {
	a, p, ok := strings.Cut(s, ":")
	if !ok || len(a) != 8 {
		return netip.AddrPort{}, fmt.Errorf("bad address %q", s)
	}
	b, err := hex.DecodeString(a)
	if err != nil {
		return netip.AddrPort{}, err
	}
	port, err := strconv.ParseUint(p, 16, 16)
	if err != nil {
		return netip.AddrPort{}, err
	}
	return netip.AddrPortFrom(netip.AddrFrom4([4]byte{b[3], b[2], b[1], b[0]}), uint16(port)), nil
}

// statesOf returns a tuple's states by both methods and fails if they differ.
func statesOf(t *testing.T, tu tuple) []State {
	t.Helper()
	d, p := diagStates(t, tu), procStates(t, tu)
	// The two reads are not atomic; retries absorb a transition between them.
	for i := 0; fmt.Sprint(d) != fmt.Sprint(p); i++ {
		if i == 3 {
			t.Fatalf("%v: sock_diag says %v, /proc/net/tcp says %v", tu, d, p)
		}
		time.Sleep(time.Duration(i+1) * 5 * time.Millisecond)
		d, p = diagStates(t, tu), procStates(t, tu)
	}
	return d
}

// testProfile is a profile where no value is a kernel or Go default, so a
// read-back cannot pass by accident.
func testProfile() config.TCPProfile {
	p := config.DefaultProfile()
	p.Name = "test"
	p.Keepalive = true
	p.KeepaliveIdle = 17 * time.Second
	p.KeepaliveInterval = 7 * time.Second
	p.KeepaliveProbes = 4
	p.UserTimeout = 4500 * time.Millisecond
	p.FinWait2Timeout = 11 * time.Second
	p.NoDelay = false
	p.SendBuffer = 48 << 10
	p.RecvBuffer = 40 << 10
	p.ReusePort = true
	p.DeferAccept = 5 * time.Second
	p.FastOpen = 13
	p.Backlog = 77
	return p
}

func readSysctl(t *testing.T, path string) int {
	t.Helper()
	b, err := os.ReadFile(path)
	if err != nil {
		t.Fatalf("read %s: %v", path, err)
	}
	n, err := strconv.Atoi(strings.Fields(string(b))[0])
	if err != nil {
		t.Fatalf("parse %s: %v", path, err)
	}
	return n
}
