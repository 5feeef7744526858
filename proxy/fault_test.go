package proxy

import (
	"net"
	"net/netip"
	"os"
	"os/exec"
	"strconv"
	"testing"
	"time"

	"github.com/tetherproxy/tether/sockopt/socktest"
)

// blackhole drops, from now until the test ends, every loopback packet to
// or from port: the peer on that port vanishes without a FIN or RST, as a
// crashed host or a cut cable does. It needs root and iptables (CI installs
// it); the rules are removed by t.Cleanup.
func blackhole(t *testing.T, port int) {
	t.Helper()
	bin := needSbin(t, "iptables", "iptables")
	// Root runs iptables directly; otherwise passwordless sudo will do.
	var prefix []string
	if os.Geteuid() != 0 {
		if exec.Command("sudo", "-n", bin, "-w", "-L", "INPUT").Run() != nil {
			if os.Getenv("CI") != "" {
				t.Fatal("iptables as root is needed (not root and no passwordless sudo); CI must provide it")
			}
			t.Skip("needs iptables as root (not root and no passwordless sudo); CI provides it")
		}
		prefix = []string{"sudo", "-n"}
	}
	run := func(args ...string) ([]byte, error) {
		cmd := append(append(append([]string{}, prefix...), bin, "-w"), args...)
		return exec.Command(cmd[0], cmd[1:]...).CombinedOutput()
	}
	p := strconv.Itoa(port)
	for _, dir := range []string{"--sport", "--dport"} {
		rule := []string{"INPUT", "-i", "lo", "-p", "tcp", dir, p, "-j", "DROP"}
		if out, err := run(append([]string{"-I"}, rule...)...); err != nil {
			t.Fatalf("iptables -I %v: %v\n%s", rule, err, out)
		}
		t.Cleanup(func() {
			if out, err := run(append([]string{"-D"}, rule...)...); err != nil {
				t.Errorf("iptables -D %v: %v\n%s", rule, err, out)
			}
		})
	}
}

// A member that vanishes while its connection is idle is found by the
// server profile's keepalive probes; one that vanishes while tether has
// data in flight to it is found only by the user timeout (keepalive never
// probes a connection with unacknowledged data). Either way tether ends the
// client connection and logs why.
func TestVanishedMemberFoundByKeepaliveAndUserTimeout(t *testing.T) {
	cases := []struct {
		name     string
		profile  string
		inFlight bool
		min, max time.Duration
	}{
		// idle 1 s + 2 probes x 1 s: dead after about 3 s.
		{"idle connection, keepalive", `[tcp_profile.srv]
keepalive_idle = "1s"
keepalive_interval = "1s"
keepalive_probes = 2
idle_timeout = "0s"
`, false, 2 * time.Second, 8 * time.Second},
		// keepalive would take an hour; the 2 s user timeout bounds the unacked write.
		{"data in flight, user timeout", `[tcp_profile.srv]
keepalive_idle = "3600s"
user_timeout = "2s"
idle_timeout = "0s"
`, true, 1500 * time.Millisecond, 8 * time.Second},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			be := socktest.Start(t, func(c *net.TCPConn) {
				defer c.Close()
				_, _ = readAll(c)
			})
			p := startProxy(t, tcpConfig(tc.profile+"[tcp_profile.cli]\nidle_timeout = \"0s\"\n",
				"client_profile = \"cli\"\nserver_profile = \"srv\"", "", be.Addr()))
			c := p.dial(t, "vs")
			_, _ = c.Write([]byte("hello"))
			socktest.WaitFor(t, 2*time.Second, "the member connection", func() bool { return be.Accepted() == 1 })
			blackhole(t, int(netip.MustParseAddrPort(be.Addr()).Port()))
			start := time.Now()
			if tc.inFlight {
				_, _ = c.Write(make([]byte, 4096))
			}
			_ = c.SetReadDeadline(time.Now().Add(tc.max + 2*time.Second))
			_, err := readAll(c)
			took := time.Since(start)
			if isTimeout(err) {
				t.Fatalf("client still open after %s: the vanished member was not detected", took)
			}
			if took < tc.min || took > tc.max {
				t.Fatalf("client closed after %s, want between %s and %s", took, tc.min, tc.max)
			}
			lines := p.waitAccess(t, 1)
			if fc := fieldString(lines[0], "closed_first"); fc != "server timed-out" {
				t.Fatalf("closed_first = %q, want server timed-out", fc)
			}
		})
	}
}
