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

// A member that vanishes under a request sent on a reused conn, before any
// response byte, is found by the server profile's user timeout: the read
// of the response fails with ETIMEDOUT. That conn died before any response
// byte, so an idempotent request is replayed on the other member (README's
// replay rule); a POST gets 502 and reaches no member.
func TestVanishedMemberReplaysIdempotentOnly(t *testing.T) {
	for _, tc := range []struct{ method, status string }{
		{"GET", "HTTP/1.1 200 OK"},
		{"POST", "HTTP/1.1 502 Bad Gateway"},
	} {
		t.Run(tc.method, func(t *testing.T) {
			always := func(conn, req int) memberAction { return answer }
			a, b := startScriptedMember(t, always), startScriptedMember(t, always)
			profile := "[tcp_profile.srv]\nkeepalive_idle = \"3600s\"\nuser_timeout = \"1s\"\nidle_timeout = \"0s\"\n"
			// fallback "reuse": the POST takes the pooled conn as the GET does.
			p := startProxy(t, tcpConfig(profile, "mode = \"http\"\nserver_profile = \"srv\"",
				"connect_timeout = \"1s\"\nnon_idempotent_fallback = \"reuse\"\nnon_idempotent_safe_idle = \"60s\"", a.Addr(), b.Addr()))
			// The round-robin sends one GET to each member (a first); each
			// leaves its conn pooled. The next request goes to a again.
			for i := 0; i < 2; i++ {
				if got := send(t, p.addr("vs"), "GET"); got != "HTTP/1.1 200 OK" {
					t.Fatalf("warm-up request: %q", got)
				}
			}
			if len(a.requests()) != 1 || len(b.requests()) != 1 {
				t.Fatalf("warm-up: a read %q, b read %q", a.requests(), b.requests())
			}
			blackhole(t, int(netip.MustParseAddrPort(a.Addr()).Port()))
			start := time.Now()
			got := send(t, p.addr("vs"), tc.method)
			took := time.Since(start)
			if got != tc.status {
				t.Fatalf("%s on a reused conn to a vanished member: %q after %s, want %q", tc.method, got, took, tc.status)
			}
			if took < 800*time.Millisecond || took > 3*time.Second {
				t.Errorf("answered after %s, want about the 1 s user timeout", took)
			}
			line := p.waitAccess(t, 3)[2]
			st := p.srv.VirtualServer("vs").http.reuser.Stats()[0]
			if tc.method == "GET" {
				if fieldString(line, "replay") != "no-response" || len(b.requests()) != 2 || st.ReplaysNoResponse != 1 {
					t.Errorf("GET: replay %q, b read %q, ReplaysNoResponse %d; want replayed once on b",
						fieldString(line, "replay"), b.requests(), st.ReplaysNoResponse)
				}
				return
			}
			if fieldString(line, "replay") != "" || len(b.requests()) != 1 || st.ReplaysNoResponse != 0 {
				t.Errorf("POST: replay %q, b read %q, ReplaysNoResponse %d; want no replay",
					fieldString(line, "replay"), b.requests(), st.ReplaysNoResponse)
			}
		})
	}
}
