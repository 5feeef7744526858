package proxy

import (
	"context"
	"errors"
	"fmt"
	"io"
	"net"
	"net/netip"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/caddyserver/certmagic"
	"go.uber.org/goleak"
	"go.uber.org/zap"
	"go.uber.org/zap/zapcore"
	"go.uber.org/zap/zaptest/observer"
	"golang.org/x/sys/unix"

	"github.com/tetherproxy/tether/config"
	"github.com/tetherproxy/tether/proxy/certs/acmetest"
	"github.com/tetherproxy/tether/sockopt"
	"github.com/tetherproxy/tether/sockopt/socktest"
)

func TestMain(m *testing.M) {
	opts := append(acmetest.GoleakOptions(),
		// certmagic's FileStorage refreshes a lock file from a goroutine
		// that notices the unlock only at its next 5 s tick.
		goleak.IgnoreAnyFunction("github.com/caddyserver/certmagic.keepLockfileFresh"),
		// certmagic's per-CA rate limiter never stops; caught inside
		// permit, its top function is not loop.
		goleak.IgnoreAnyFunction("github.com/caddyserver/certmagic.(*RingBufferRateLimiter).loop"),
		goleak.Cleanup(certmagicStorageInTemp()))
	goleak.VerifyTestMain(m, opts...)
}

// certmagicStorageInTemp points certmagic's default storage, where it keeps
// the OCSP staples of certificate files, at a temporary directory for the
// test run (by default it is $XDG_DATA_HOME/certmagic, in the user's
// home), and returns what removes it.
func certmagicStorageInTemp() func(int) {
	dir, err := os.MkdirTemp("", "tether-certmagic")
	if err != nil {
		panic(err)
	}
	certmagic.Default.Storage = &certmagic.FileStorage{Path: dir}
	return func(int) { _ = os.RemoveAll(dir) }
}

// proxyUnderTest is a running Server with its logs captured.
type proxyUnderTest struct {
	srv  *Server
	logs *observer.ObservedLogs
}

// startProxy runs cfg (a TOML text; "{{member}}" replaced by each address in
// turn is up to the caller) with one virtual server named "vs".
func startProxy(t testing.TB, toml string) *proxyUnderTest {
	t.Helper()
	cfg, err := config.Parse([]byte(toml))
	if err != nil {
		t.Fatalf("config: %v\n%s", err, toml)
	}
	core, logs := observer.New(zapcore.DebugLevel)
	srv, err := New(cfg, zap.New(core))
	if err != nil {
		t.Fatal(err)
	}
	if err := srv.Start(context.Background()); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() {
		ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
		defer cancel()
		_ = srv.Shutdown(ctx)
	})
	return &proxyUnderTest{srv: srv, logs: logs}
}

func (p *proxyUnderTest) addr(vs string) string { return p.srv.ListenAddr(vs).String() }

func (p *proxyUnderTest) dial(t *testing.T, vs string) *net.TCPConn {
	t.Helper()
	c, err := net.DialTimeout("tcp", p.addr(vs), 2*time.Second)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = c.Close() })
	return c.(*net.TCPConn)
}

// accessLines returns the access-log entries written so far.
func (p *proxyUnderTest) accessLines() []observer.LoggedEntry {
	return p.logs.FilterField(zap.String("log", "access")).All()
}

// waitAccess waits for n access-log lines.
func (p *proxyUnderTest) waitAccess(t *testing.T, n int) []observer.LoggedEntry {
	t.Helper()
	socktest.WaitFor(t, 5*time.Second, fmt.Sprintf("%d access log lines", n), func() bool { return len(p.accessLines()) >= n })
	return p.accessLines()
}

// tcpConfig is a one-virtual-server tcp-mode config in front of members.
// Unless poolExtra configures one, the pool has no active health monitor, so
// that backends see only the connections tether relays.
func tcpConfig(profiles string, vsExtra string, poolExtra string, members ...string) string {
	if !strings.Contains(poolExtra, "[pool.p.health]") {
		poolExtra += "\n[pool.p.health]\ntype = \"none\"\n"
	}
	var ms []string
	for _, m := range members {
		ms = append(ms, fmt.Sprintf("{ address = %q }", m))
	}
	return fmt.Sprintf(`
[log]
level = "debug"
%s
[pool.p]
members = [%s]
%s
[[virtual_server]]
name = "vs"
listen = "127.0.0.1:0"
pool = "p"
%s
`, profiles, strings.Join(ms, ", "), poolExtra, vsExtra)
}

// needSbin is socktest.Need for a program Debian installs in an sbin
// directory (nginx, iptables), which a non-root user's PATH may lack.
func needSbin(t *testing.T, program, debianPackage string) string {
	t.Helper()
	if _, err := exec.LookPath(program); err != nil {
		for _, dir := range []string{"/usr/sbin", "/usr/local/sbin", "/sbin"} {
			if p := filepath.Join(dir, program); isExecutable(p) {
				return p
			}
		}
	}
	return socktest.Need(t, program, debianPackage)
}

func isExecutable(path string) bool {
	fi, err := os.Stat(path)
	return err == nil && fi.Mode().IsRegular() && fi.Mode().Perm()&0o111 != 0
}

// fieldString returns a string field of a log entry.
//
// It encodes that field alone: ContextMap would read every field, and the
// method and path fields alias the request buffer, which the pool hands to
// the next request (the production encoder copies them at Write; the
// observer keeps the fields as they are).
func fieldString(e observer.LoggedEntry, key string) string {
	for _, f := range e.Context {
		if f.Key == key {
			enc := zapcore.NewMapObjectEncoder()
			f.AddTo(enc)
			return fmt.Sprint(enc.Fields[key])
		}
	}
	return ""
}

// socketFD finds, among this process's own file descriptors, the TCP socket
// with the given local and remote addresses. tether runs in the test's
// process, so the test can read the options of the very sockets tether
// accepted and dialed.
func socketFD(t *testing.T, local, remote string) int {
	t.Helper()
	entries, err := os.ReadDir("/proc/self/fd")
	if err != nil {
		t.Fatal(err)
	}
	for _, e := range entries {
		fd, err := strconv.Atoi(e.Name())
		if err != nil {
			continue
		}
		if l, err := os.Readlink("/proc/self/fd/" + e.Name()); err != nil || !strings.HasPrefix(l, "socket:") {
			continue
		}
		la, err1 := unix.Getsockname(fd)
		ra, err2 := unix.Getpeername(fd)
		if err1 != nil || err2 != nil {
			continue
		}
		if sockaddrString(la) == local && sockaddrString(ra) == remote {
			return fd
		}
	}
	t.Fatalf("no socket %s -> %s in this process", local, remote)
	return -1
}

func sockaddrString(sa unix.Sockaddr) string {
	if a, ok := sa.(*unix.SockaddrInet4); ok {
		return net.JoinHostPort(net.IP(a.Addr[:]).String(), strconv.Itoa(a.Port))
	}
	return ""
}

// readAll reads until EOF or error and returns what arrived and the error
// (nil on a clean EOF).
func readAll(c net.Conn) ([]byte, error) {
	b, err := io.ReadAll(c)
	if errors.Is(err, io.EOF) {
		err = nil
	}
	return b, err
}

// timeWaitCount counts TIME_WAIT sockets whose local and remote addresses
// are exactly local and remote, read with sock_diag.
func timeWaitCount(t *testing.T, local, remote string) int {
	t.Helper()
	socks, err := sockopt.Sockets()
	if err != nil {
		t.Fatal(err)
	}
	n := 0
	for _, s := range socks {
		if s.State == sockopt.StateTimeWait && s.Local.String() == local && s.Remote.String() == remote {
			n++
		}
	}
	return n
}

// waitSocketToward waits until tether holds a socket to member for which
// cond holds (sock_diag), e.g. CLOSE_WAIT once the member closed an idle
// conn.
func waitSocketToward(t *testing.T, member, what string, cond func(sockopt.Socket) bool) {
	t.Helper()
	m, err := netip.ParseAddrPort(member)
	if err != nil {
		t.Fatal(err)
	}
	socktest.WaitFor(t, 3*time.Second, what, func() bool {
		socks, err := sockopt.Sockets()
		if err != nil {
			t.Fatal(err)
		}
		for _, s := range socks {
			if s.Remote == m && cond(s) {
				return true
			}
		}
		return false
	})
}

// waitMemberClosedIdle waits until the member closed an idle conn tether
// holds (tether's side in CLOSE_WAIT).
func waitMemberClosedIdle(t *testing.T, member string) {
	t.Helper()
	waitSocketToward(t, member, "the member to close its idle conn", func(s sockopt.Socket) bool {
		return s.State == sockopt.StateCloseWait
	})
}
