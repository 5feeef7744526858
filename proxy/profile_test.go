package proxy

import (
	"context"
	"fmt"
	"io"
	"net"
	"testing"
	"time"

	"golang.org/x/sys/unix"

	"github.com/tetherproxy/tether/sockopt/socktest"
)

// The client profile holds on the socket tether accepted and the server
// profile on the socket tether dialed: every per-connection option read back
// with getsockopt on tether's own file descriptors.
func TestProfilesHoldOnProxiedSockets(t *testing.T) {
	peers := make(chan string, 1)
	be := socktest.Start(t, func(c *net.TCPConn) {
		select {
		case peers <- c.RemoteAddr().String():
		default:
		}
		socktest.Echo(c)
	})
	p := startProxy(t, tcpConfig(`
[tcp_profile.cli]
keepalive_idle = "17s"
keepalive_interval = "7s"
keepalive_probes = 4
user_timeout = "4500ms"
nodelay = false
fin_wait2_timeout = "11s"

[tcp_profile.srv]
keepalive_idle = "23s"
keepalive_interval = "9s"
keepalive_probes = 5
user_timeout = "6s"
nodelay = true

[tcp_profile.nokeep]
keepalive = false
`, `client_profile = "cli"
server_profile = "srv"`, "", be.Addr()))
	c := p.dial(t, "vs")
	_, _ = c.Write([]byte("x"))
	if _, err := io.ReadFull(c, make([]byte, 1)); err != nil {
		t.Fatal(err)
	}
	var dialedLocal string
	select {
	case dialedLocal = <-peers:
	case <-time.After(2 * time.Second):
		t.Fatal("member saw no connection")
	}

	accepted := socketFD(t, p.addr("vs"), c.LocalAddr().String())
	dialed := socketFD(t, dialedLocal, be.Addr())
	for _, tc := range []struct {
		name             string
		fd               int
		level, opt, want int
	}{
		{"client SO_KEEPALIVE", accepted, unix.SOL_SOCKET, unix.SO_KEEPALIVE, 1},
		{"client TCP_KEEPIDLE", accepted, unix.IPPROTO_TCP, unix.TCP_KEEPIDLE, 17},
		{"client TCP_KEEPINTVL", accepted, unix.IPPROTO_TCP, unix.TCP_KEEPINTVL, 7},
		{"client TCP_KEEPCNT", accepted, unix.IPPROTO_TCP, unix.TCP_KEEPCNT, 4},
		{"client TCP_USER_TIMEOUT", accepted, unix.IPPROTO_TCP, unix.TCP_USER_TIMEOUT, 4500},
		{"client TCP_NODELAY", accepted, unix.IPPROTO_TCP, unix.TCP_NODELAY, 0},
		{"client TCP_LINGER2", accepted, unix.IPPROTO_TCP, unix.TCP_LINGER2, 11},
		{"server SO_KEEPALIVE", dialed, unix.SOL_SOCKET, unix.SO_KEEPALIVE, 1},
		{"server TCP_KEEPIDLE", dialed, unix.IPPROTO_TCP, unix.TCP_KEEPIDLE, 23},
		{"server TCP_KEEPINTVL", dialed, unix.IPPROTO_TCP, unix.TCP_KEEPINTVL, 9},
		{"server TCP_KEEPCNT", dialed, unix.IPPROTO_TCP, unix.TCP_KEEPCNT, 5},
		{"server TCP_USER_TIMEOUT", dialed, unix.IPPROTO_TCP, unix.TCP_USER_TIMEOUT, 6000},
		{"server TCP_NODELAY", dialed, unix.IPPROTO_TCP, unix.TCP_NODELAY, 1},
	} {
		got, err := unix.GetsockoptInt(tc.fd, tc.level, tc.opt)
		if err != nil {
			t.Fatalf("%s: %v", tc.name, err)
		}
		if tc.name == "client TCP_NODELAY" || tc.name == "server TCP_NODELAY" {
			got = min(got, 1)
		}
		if got != tc.want {
			t.Errorf("%s = %d, want %d", tc.name, got, tc.want)
		}
	}
}

// A reload that changes the client profile of a listener it keeps puts the
// new options on the listener (Reapply), and conns accepted afterwards
// inherit them: tether no longer sets them on each accepted socket.
func TestReloadedClientProfileHoldsOnConnsAcceptedAfterIt(t *testing.T) {
	be := socktest.Start(t, socktest.Echo)
	listen := socktest.FreeAddr(t)
	conf := func(idle, probes int, nodelay bool) string {
		return fmt.Sprintf(`
[tcp_profile.cli]
keepalive_idle = "%ds"
keepalive_probes = %d
user_timeout = "%ds"
nodelay = %t
`, idle, probes, idle, nodelay) + poolTOML("p", be.Addr()) + fmt.Sprintf(`
[[virtual_server]]
name = "vs"
listen = %q
mode = "tcp"
pool = "p"
client_profile = "cli"
`, listen)
	}
	check := func(p *proxyUnderTest, idle, probes int, nodelay bool) {
		t.Helper()
		c := p.dial(t, "vs")
		_, _ = c.Write([]byte("x"))
		if _, err := io.ReadFull(c, make([]byte, 1)); err != nil {
			t.Fatal(err)
		}
		fd := socketFD(t, listen, c.LocalAddr().String())
		for _, o := range []struct {
			name       string
			level, opt int
			want       int
		}{
			{"TCP_KEEPIDLE", unix.IPPROTO_TCP, unix.TCP_KEEPIDLE, idle},
			{"TCP_KEEPCNT", unix.IPPROTO_TCP, unix.TCP_KEEPCNT, probes},
			{"TCP_USER_TIMEOUT", unix.IPPROTO_TCP, unix.TCP_USER_TIMEOUT, idle * 1000},
			{"TCP_NODELAY", unix.IPPROTO_TCP, unix.TCP_NODELAY, map[bool]int{false: 0, true: 1}[nodelay]},
		} {
			got, err := unix.GetsockoptInt(fd, o.level, o.opt)
			if err != nil {
				t.Fatalf("%s: %v", o.name, err)
			}
			if o.name == "TCP_NODELAY" {
				got = min(got, 1)
			}
			if got != o.want {
				t.Errorf("%s = %d, want %d", o.name, got, o.want)
			}
		}
	}
	p := startProxy(t, conf(17, 4, false))
	check(p, 17, 4, false)
	if _, err := p.srv.Reload(context.Background(), mustParse(t, conf(29, 6, true))); err != nil {
		t.Fatal(err)
	}
	check(p, 29, 6, true)
	if _, err := p.srv.Reload(context.Background(), mustParse(t, conf(13, 3, false))); err != nil {
		t.Fatal(err)
	}
	check(p, 13, 3, false)
}
