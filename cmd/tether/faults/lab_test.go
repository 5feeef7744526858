package faults

import (
	"context"
	"fmt"
	"net"
	"os"
	"os/exec"
	"runtime"
	"strings"
	"sync/atomic"
	"testing"
	"time"

	"golang.org/x/sys/unix"
)

// lab is one test's network: a namespace for tether (lb), one for the
// clients (cl) and one per member (m1, m2 ...), each member and the clients
// joined to lb by a veth pair:
//
//	cl 198.18.0.2 ── 198.18.0.1 lb 198.18.N.1 ── 198.18.N.2 mN
//
// lb routes nothing: tether terminates the clients' TCP and dials the
// members itself. The namespaces (and so their veths and iptables rules)
// are removed when the test ends.
type lab struct {
	t       *testing.T
	LB, CL  string   // namespace names
	Members []string // namespace names, member i+1 at index i
}

var labSeq atomic.Int64

// Addresses inside a lab.
const (
	lbClientSide = "198.18.0.1" // where tether's virtual servers listen
	clientAddr   = "198.18.0.2"
)

// memberIP is member i's address (i from 1).
func memberIP(i int) string { return fmt.Sprintf("198.18.%d.2", i) }

// lbMemberSide is lb's address on member i's link.
func lbMemberSide(i int) string { return fmt.Sprintf("198.18.%d.1", i) }

// needRoot skips the test without root, or fails it under CI.
func needRoot(t *testing.T) {
	t.Helper()
	if os.Geteuid() == 0 {
		return
	}
	if os.Getenv("CI") != "" {
		t.Fatal("the fault suite needs root (network namespaces, iptables); CI runs it as root")
	}
	t.Skip("the fault suite needs root (network namespaces, iptables)")
}

// newLab creates the namespaces and links for members members.
func newLab(t *testing.T, members int) *lab {
	t.Helper()
	needRoot(t)
	for _, bin := range []string{"ip", "iptables"} {
		if _, err := exec.LookPath(bin); err != nil {
			t.Fatalf("%s not found: %v (.ci/run installs it)", bin, err)
		}
	}
	p := fmt.Sprintf("tf%d-%d-", os.Getpid(), labSeq.Add(1))
	l := &lab{t: t, LB: p + "lb", CL: p + "cl"}
	for i := 1; i <= members; i++ {
		l.Members = append(l.Members, fmt.Sprintf("%sm%d", p, i))
	}
	all := append([]string{l.LB, l.CL}, l.Members...)
	for _, ns := range all {
		l.ip("netns", "add", ns)
		t.Cleanup(func() {
			if out, err := exec.Command("ip", "netns", "del", ns).CombinedOutput(); err != nil {
				t.Errorf("ip netns del %s: %v\n%s", ns, err, out)
			}
		})
		l.ip("-n", ns, "link", "set", "lo", "up")
	}
	l.link("cl", l.CL, lbClientSide, clientAddr)
	for i, ns := range l.Members {
		l.link(fmt.Sprintf("m%d", i+1), ns, lbMemberSide(i+1), memberIP(i+1))
	}
	return l
}

// link joins lb to ns by a veth pair: lb's end "lb-NAME" gets lbIP/24,
// ns's end "NAME" gets nsIP/24.
func (l *lab) link(name, ns, lbIP, nsIP string) {
	l.ip("link", "add", "lb-"+name, "netns", l.LB, "type", "veth", "peer", "name", name, "netns", ns)
	l.ip("-n", l.LB, "addr", "add", lbIP+"/24", "dev", "lb-"+name)
	l.ip("-n", ns, "addr", "add", nsIP+"/24", "dev", name)
	l.ip("-n", l.LB, "link", "set", "lb-"+name, "up")
	l.ip("-n", ns, "link", "set", name, "up")
}

func (l *lab) ip(args ...string) {
	l.t.Helper()
	if out, err := exec.Command("ip", args...).CombinedOutput(); err != nil {
		l.t.Fatalf("ip %s: %v\n%s", strings.Join(args, " "), err, out)
	}
}

// run runs a command in namespace ns and fails the test on error.
func (l *lab) run(ns string, args ...string) string {
	l.t.Helper()
	out, err := exec.Command("ip", append([]string{"netns", "exec", ns}, args...)...).CombinedOutput()
	if err != nil {
		l.t.Fatalf("in %s: %s: %v\n%s", ns, strings.Join(args, " "), err, out)
	}
	return string(out)
}

// iptables adds a rule in namespace ns (args without -A/-I: the chain
// first, e.g. "INPUT", "-p", "tcp", ...), inserted at the top of the chain,
// and returns a func that deletes it. The namespace's removal deletes it
// too.
func (l *lab) iptables(ns string, rule ...string) (remove func()) {
	l.t.Helper()
	l.run(ns, append([]string{"iptables", "-w", "-I"}, rule...)...)
	return func() {
		l.t.Helper()
		l.run(ns, append([]string{"iptables", "-w", "-D"}, rule...)...)
	}
}

// sysctl sets a kernel setting of namespace ns (net.* ones are per
// namespace).
func (l *lab) sysctl(ns, key, value string) {
	l.t.Helper()
	l.run(ns, "sysctl", "-q", "-w", key+"="+value)
}

// blackhole drops every packet between lb and member i, both ways, until
// the returned func is called: the member vanishes without a FIN or RST.
func (l *lab) blackhole(i int) (restore func()) {
	l.t.Helper()
	dev := fmt.Sprintf("lb-m%d", i)
	in := l.iptables(l.LB, "INPUT", "-i", dev, "-j", "DROP")
	out := l.iptables(l.LB, "OUTPUT", "-o", dev, "-j", "DROP")
	return func() { in(); out() }
}

// inNetns runs f on an OS thread that has joined namespace ns: sockets that
// f creates belong to ns for their whole life, whatever thread uses them
// later. The thread returns to the test's namespace afterwards.
func inNetns(ns string, f func() error) error {
	runtime.LockOSThread()
	orig, err := os.Open(fmt.Sprintf("/proc/self/task/%d/ns/net", unix.Gettid()))
	if err != nil {
		runtime.UnlockOSThread()
		return err
	}
	defer orig.Close()
	target, err := os.Open("/var/run/netns/" + ns)
	if err != nil {
		runtime.UnlockOSThread()
		return err
	}
	defer target.Close()
	if err := unix.Setns(int(target.Fd()), unix.CLONE_NEWNET); err != nil {
		runtime.UnlockOSThread()
		return fmt.Errorf("setns %s: %w", ns, err)
	}
	ferr := f()
	if err := unix.Setns(int(orig.Fd()), unix.CLONE_NEWNET); err != nil {
		// The thread is in the wrong namespace: it stays locked, so the
		// runtime ends it with this goroutine... which is the caller's.
		panic(fmt.Sprintf("setns back from %s: %v", ns, err))
	}
	runtime.UnlockOSThread()
	return ferr
}

// dial connects from namespace ns to addr.
func dial(ctx context.Context, ns, addr string) (*net.TCPConn, error) {
	var c net.Conn
	err := inNetns(ns, func() error {
		var err error
		c, err = (&net.Dialer{}).DialContext(ctx, "tcp", addr)
		return err
	})
	if err != nil {
		return nil, err
	}
	return c.(*net.TCPConn), nil
}

// dialTimeout is dial bounded by d.
func dialTimeout(ns, addr string, d time.Duration) (*net.TCPConn, error) {
	ctx, cancel := context.WithTimeout(context.Background(), d)
	defer cancel()
	return dial(ctx, ns, addr)
}

// listen opens a TCP listener in namespace ns; the test's end closes it.
func listen(t *testing.T, ns, addr string) *net.TCPListener {
	t.Helper()
	var ln net.Listener
	err := inNetns(ns, func() error {
		var err error
		ln, err = net.Listen("tcp", addr)
		return err
	})
	if err != nil {
		t.Fatalf("listen %s in %s: %v", addr, ns, err)
	}
	t.Cleanup(func() { _ = ln.Close() })
	return ln.(*net.TCPListener)
}
