package sockopt

import (
	"context"
	"fmt"
	"net"
	"strings"
	"testing"

	"github.com/tetherproxy/tether/config"
	"github.com/tetherproxy/tether/sockopt/socktest"
)

// `tether check` refuses two virtual servers whose listeners cannot bind
// side by side; here the kernel is asked the same question on real sockets
// (loopback addresses only, so no wildcard; config's own tests cover those
// from what was measured). Two listeners on one address conflict unless
// both set reuse_port; with it on both the kernel lets them share the
// address and deals connections between them at random, which check refuses
// too. Different addresses never conflict.
func TestCheckAgreesWithTheKernelOnListenerOverlaps(t *testing.T) {
	if ln, err := net.Listen("tcp", "[::1]:0"); err != nil {
		socktest.Missing(t, "no ::1 here (%v)", err)
	} else {
		ln.Close()
	}
	_, port, _ := strings.Cut(socktest.DeadAddr(t), ":")
	for _, tc := range []struct {
		a, b string
		same bool // both bind one socket address
	}{
		{"127.0.0.1", "127.0.0.1", true},
		{"localhost", "127.0.0.1", true},
		{"[::ffff:127.0.0.1]", "127.0.0.1", true},
		{"[::1]", "[0::1]", true},
		{"127.0.0.1", "127.0.0.2", false},
		{"127.0.0.1", "[::1]", false},
		{"localhost", "[::1]", false},
	} {
		for _, reuse := range [][2]bool{{false, false}, {true, false}, {false, true}, {true, true}} {
			a, b := tc.a+":"+port, tc.b+":"+port
			name := fmt.Sprintf("%s then %s, reuse_port %v/%v", a, b, reuse[0], reuse[1])
			t.Run(name, func(t *testing.T) {
				_, cerr := config.Parse([]byte(fmt.Sprintf(`
[tcp_profile.a]
reuse_port = %v
[tcp_profile.b]
reuse_port = %v
[pool.p]
members = [{ address = "127.0.0.1:1" }]
[[virtual_server]]
name = "a"
listen = %q
pool = "p"
client_profile = "a"
[[virtual_server]]
name = "b"
listen = %q
pool = "p"
client_profile = "b"
`, reuse[0], reuse[1], a, b)))
				if (cerr != nil) != tc.same {
					t.Errorf("check: %v, want a refusal %v", cerr, tc.same)
				}

				pa, pb := config.DefaultProfile(), config.DefaultProfile()
				pa.ReusePort, pb.ReusePort = reuse[0], reuse[1]
				first, err := Listen(context.Background(), pa, a)
				if err != nil {
					t.Fatalf("first listener: %v", err)
				}
				defer first.Close()
				second, kerr := Listen(context.Background(), pb, b)
				if kerr == nil {
					second.Close()
				}
				if conflict := tc.same && !(reuse[0] && reuse[1]); (kerr != nil) != conflict {
					t.Errorf("the kernel: %v, want a conflict %v", kerr, conflict)
				}
			})
		}
	}
}
