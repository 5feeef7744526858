package faults

import (
	"bufio"
	"fmt"
	"io"
	"net"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"strconv"
	"strings"
	"syscall"
	"testing"
	"time"
)

// The HA pair of examples/keepalived/: two tether nodes, A and B, behind one
// virtual IP that keepalived (VRRP, advert_int 1) gives to the node whose
// tether answers /ready (check_tether.sh), A first (priority 250 against
// 240). Every node, the client and the members are namespaces of their own,
// joined by two bridges in a switch namespace:
//
//	cl 198.18.0.2 ──┐ front            back ┌── 198.18.1.2 m1
//	A  198.18.0.11 ─┤ (bridge)    (bridge) ├── 198.18.2.2 m2
//	B  198.18.0.12 ─┘  VIP 198.18.0.100     └── A and B: .11 / .12 in both /24s
//
// A and B run the real binary with examples/keepalived/tether.toml and
// keepalived with keepalived-a.conf and keepalived-b.conf, addresses and the
// script's path swapped for the lab's (haExample fails when a swap no longer
// matches the example, so the files tested are the files shipped).
// net.ipv4.ip_nonlocal_bind = 1 on both nodes, as the examples say: B's
// tether listens on the VIP before it holds it.

// Addresses of the pair's lab.
const (
	haVIP    = "198.18.0.100"
	haClient = "198.18.0.2"
)

// haNodeIP is node A's and B's front address; each has .11 / .12 in the
// members' /24s too.
var haNodeIP = [2]string{"198.18.0.11", "198.18.0.12"}

var haNodeName = [2]string{"A", "B"}

// haExamples is examples/keepalived from this package's folder.
const haExamples = "../../../examples/keepalived"

// haFailoverBound is the longest a failover may take, from SIGKILL of the
// active node's tether to the first new connection the standby answers,
// with advert_int 1 and the examples' track_script (interval 1, fall 2):
// detection takes 1 to 2 s, the takeover (skew time) 0.06 s.
const haFailoverBound = 3 * time.Second

// haNet is the pair's lab. nodes[i] is a lab whose LB is node i's
// namespace, so the harness's startTether and startMember work on it (its
// CL is the client namespace, its Members the members').
type haNet struct {
	t     *testing.T
	cl    string
	nodes [2]*lab
	dir   string // configs and the track script, root-owned
	kas   [2]*haKeepalived
}

// haNeedKeepalived skips the test without keepalived, or fails it under
// CI (.ci/run installs it).
func haNeedKeepalived(t *testing.T) {
	t.Helper()
	if _, err := exec.LookPath("keepalived"); err == nil {
		return
	}
	for _, dir := range []string{"/usr/sbin", "/sbin"} {
		if haIsExec(filepath.Join(dir, "keepalived")) {
			t.Setenv("PATH", os.Getenv("PATH")+":"+dir)
			return
		}
	}
	if os.Getenv("CI") != "" {
		t.Fatal("keepalived not found (Debian package keepalived); .ci/run installs it")
	}
	t.Skip("keepalived not found (apt-get install keepalived)")
}

func haIsExec(path string) bool {
	fi, err := os.Stat(path)
	return err == nil && fi.Mode().IsRegular() && fi.Mode().Perm()&0o111 != 0
}

// haNewNet creates the namespaces, bridges and links. The test's end
// removes them (after keepalived and tether, stopped by cleanups
// registered later).
func haNewNet(t *testing.T) *haNet {
	t.Helper()
	needRoot(t)
	haNeedKeepalived(t)
	if _, err := exec.LookPath("ip"); err != nil {
		t.Fatalf("ip not found: %v (.ci/run installs it)", err)
	}
	p := fmt.Sprintf("ha%d-%d-", os.Getpid(), labSeq.Add(1))
	sw, cl := p+"sw", p+"cl"
	a, b, m1, m2 := p+"a", p+"b", p+"m1", p+"m2"
	root := &lab{t: t}
	for _, ns := range []string{sw, cl, a, b, m1, m2} {
		root.ip("netns", "add", ns)
		t.Cleanup(func() {
			if out, err := exec.Command("ip", "netns", "del", ns).CombinedOutput(); err != nil {
				t.Errorf("ip netns del %s: %v\n%s", ns, err, out)
			}
		})
		root.ip("-n", ns, "link", "set", "lo", "up")
	}
	for _, br := range []string{"front", "back"} {
		root.ip("-n", sw, "link", "add", br, "type", "bridge")
		root.ip("-n", sw, "link", "set", br, "up")
	}
	// port joins ns to bridge br: sw's end is swEnd, ns's end is dev with
	// addrs (each /24).
	port := func(br, swEnd, ns, dev string, addrs ...string) {
		root.ip("link", "add", swEnd, "netns", sw, "type", "veth", "peer", "name", dev, "netns", ns)
		root.ip("-n", sw, "link", "set", swEnd, "master", br, "up")
		for _, addr := range addrs {
			root.ip("-n", ns, "addr", "add", addr+"/24", "dev", dev)
		}
		root.ip("-n", ns, "link", "set", dev, "up")
	}
	port("front", "f-cl", cl, "eth0", haClient)
	port("front", "f-a", a, "eth0", haNodeIP[0])
	port("front", "f-b", b, "eth0", haNodeIP[1])
	port("back", "b-a", a, "eth1", "198.18.1.11", "198.18.2.11")
	port("back", "b-b", b, "eth1", "198.18.1.12", "198.18.2.12")
	port("back", "b-m1", m1, "eth1", memberIP(1))
	port("back", "b-m2", m2, "eth1", memberIP(2))
	h := &haNet{t: t, cl: cl, dir: t.TempDir()}
	for i, ns := range []string{a, b} {
		h.nodes[i] = &lab{t: t, LB: ns, CL: cl, Members: []string{m1, m2}}
		// The examples' requirement: tether binds the VIP before it holds it.
		root.sysctl(ns, "net.ipv4.ip_nonlocal_bind", "1")
	}
	return h
}

// haExample reads examples/keepalived/name and applies swaps (old, new,
// old, new ...); each old must occur in the file.
func haExample(t *testing.T, name string, swaps ...string) string {
	t.Helper()
	b, err := os.ReadFile(filepath.Join(haExamples, name))
	if err != nil {
		t.Fatal(err)
	}
	s := string(b)
	for i := 0; i+1 < len(swaps); i += 2 {
		if !strings.Contains(s, swaps[i]) {
			t.Fatalf("examples/keepalived/%s has no %q: update the test's swaps", name, swaps[i])
		}
		s = strings.ReplaceAll(s, swaps[i], swaps[i+1])
	}
	return s
}

// haConfigs writes the lab's copies of the examples into h.dir and
// returns tether's config (without its [admin] table: startTether adds the
// same one) and the keepalived config files' paths.
func (h *haNet) haConfigs() (tetherCfg string, kaConf [2]string) {
	t := h.t
	t.Helper()
	script := filepath.Join(h.dir, "check_tether.sh")
	body := haExample(t, "check_tether.sh")
	if err := os.WriteFile(script, []byte(body), 0o755); err != nil {
		t.Fatal(err)
	}
	tetherCfg = haExample(t, "tether.toml",
		"[admin]\nlisten = \"127.0.0.1:9901\"\n", "",
		"192.0.2.100:80", haVIP+":80",
		"198.51.100.21:80", fmt.Sprintf("%s:%d", memberIP(1), memberHTTPPort),
		"198.51.100.22:80", fmt.Sprintf("%s:%d", memberIP(2), memberHTTPPort))
	for i, name := range []string{"keepalived-a.conf", "keepalived-b.conf"} {
		conf := haExample(t, name,
			"/usr/local/libexec/tether/check_tether.sh", script,
			"192.0.2.100/24 dev eth0", haVIP+"/24 dev eth0")
		kaConf[i] = filepath.Join(h.dir, name)
		if err := os.WriteFile(kaConf[i], []byte(conf), 0o644); err != nil {
			t.Fatal(err)
		}
		// keepalived's own check of the file.
		if out, err := exec.Command("ip", "netns", "exec", h.nodes[i].LB, "keepalived", "--config-test", "-f", kaConf[i]).CombinedOutput(); err != nil {
			t.Fatalf("keepalived --config-test %s: %v\n%s", name, err, out)
		}
	}
	return tetherCfg, kaConf
}

// haVRRP is what the test reads from a node's keepalived config: the
// outcome it expects follows the config.
type haVRRP struct {
	priority  int
	advertInt int
	nopreempt bool
}

func haReadVRRP(t *testing.T, path string) haVRRP {
	t.Helper()
	b, err := os.ReadFile(path)
	if err != nil {
		t.Fatal(err)
	}
	field := func(key string) int {
		m := regexp.MustCompile(`(?m)^\s*` + key + `\s+(\d+)`).FindSubmatch(b)
		if m == nil {
			t.Fatalf("%s: no %s", path, key)
		}
		n, _ := strconv.Atoi(string(m[1]))
		return n
	}
	return haVRRP{
		priority:  field("priority"),
		advertInt: field("advert_int"),
		nopreempt: regexp.MustCompile(`(?m)^\s*nopreempt\b`).Match(b),
	}
}

// haKeepalived is keepalived running in a node's namespace, in the
// foreground (its VRRP child is a second process).
type haKeepalived struct {
	cmd   *exec.Cmd
	out   *syncBuffer
	done  chan struct{}
	child int // the VRRP child's pid
}

// startKeepalived runs keepalived on node i with conf. The test's end stops
// it (SIGTERM: it drops the VIP) and makes sure its VRRP child is gone.
func (h *haNet) startKeepalived(i int, conf string) *haKeepalived {
	t := h.t
	t.Helper()
	name := strings.ToLower(haNodeName[i])
	pid := filepath.Join(h.dir, "keepalived-"+name+".pid")
	vrrpPid := filepath.Join(h.dir, "keepalived-"+name+"-vrrp.pid")
	k := &haKeepalived{out: &syncBuffer{}, done: make(chan struct{})}
	k.cmd = exec.Command("ip", "netns", "exec", h.nodes[i].LB, "keepalived",
		"--dont-fork", "--log-console", "--log-detail", "--no-syslog", "--vrrp",
		"-f", conf, "-p", pid, "-r", vrrpPid)
	k.cmd.Stdout, k.cmd.Stderr = k.out, k.out
	if err := k.cmd.Start(); err != nil {
		t.Fatal(err)
	}
	go func() { _ = k.cmd.Wait(); close(k.done) }()
	t.Cleanup(k.stop)
	h.kas[i] = k
	deadline := time.Now().Add(5 * time.Second)
	for {
		b, err := os.ReadFile(vrrpPid)
		if n, _ := strconv.Atoi(strings.TrimSpace(string(b))); err == nil && n > 0 {
			k.child = n
			return k
		}
		select {
		case <-k.done:
			t.Fatalf("keepalived on %s exited at start\n%s", haNodeName[i], k.out.String())
		default:
		}
		if time.Now().After(deadline) {
			t.Fatalf("keepalived on %s wrote no VRRP pid file within 5 s\n%s", haNodeName[i], k.out.String())
		}
		time.Sleep(20 * time.Millisecond)
	}
}

// stop ends keepalived: SIGTERM, then SIGKILL after 5 s; its VRRP child
// too if it outlived its parent.
func (k *haKeepalived) stop() {
	_ = k.cmd.Process.Signal(syscall.SIGTERM)
	select {
	case <-k.done:
	case <-time.After(5 * time.Second):
		_ = k.cmd.Process.Kill()
		<-k.done
	}
	if k.child > 0 {
		if b, err := os.ReadFile(fmt.Sprintf("/proc/%d/cmdline", k.child)); err == nil && strings.Contains(string(b), "keepalived") {
			_ = syscall.Kill(k.child, syscall.SIGKILL)
		}
	}
}

// logs is the tail of both keepalived logs, for failure messages.
func (h *haNet) logs() string {
	var b strings.Builder
	for i, k := range h.kas {
		if k == nil {
			continue
		}
		lines := strings.Split(strings.TrimRight(k.out.String(), "\n"), "\n")
		if len(lines) > 25 {
			lines = lines[len(lines)-25:]
		}
		fmt.Fprintf(&b, "--- keepalived on %s:\n%s\n", haNodeName[i], strings.Join(lines, "\n"))
	}
	return b.String()
}

// hasVIP says whether node i holds the virtual IP.
func (h *haNet) hasVIP(i int) bool {
	h.t.Helper()
	out, err := exec.Command("ip", "-n", h.nodes[i].LB, "-4", "-o", "addr", "show", "dev", "eth0").CombinedOutput()
	if err != nil {
		h.t.Fatalf("ip addr in %s: %v\n%s", haNodeName[i], err, out)
	}
	return strings.Contains(string(out), " "+haVIP+"/")
}

// waitVIP waits until node i alone holds the VIP and returns when it did
// (ok false: not within).
func (h *haNet) waitVIP(i int, within time.Duration) (at time.Time, ok bool) {
	deadline := time.Now().Add(within)
	for {
		if h.hasVIP(i) && !h.hasVIP(1-i) {
			return time.Now(), true
		}
		if time.Now().After(deadline) {
			return time.Time{}, false
		}
		time.Sleep(20 * time.Millisecond)
	}
}

// haConn is a client conn to the VIP that carried one request.
type haConn struct {
	c  *net.TCPConn
	br *bufio.Reader
}

// get sends one GET on c and wants 200 within 2 s.
func (c *haConn) get(close bool) error {
	req := "GET / HTTP/1.1\r\nHost: ha\r\n\r\n"
	if close {
		req = "GET / HTTP/1.1\r\nHost: ha\r\nConnection: close\r\n\r\n"
	}
	_ = c.c.SetDeadline(time.Now().Add(2 * time.Second))
	if _, err := io.WriteString(c.c, req); err != nil {
		return err
	}
	resp, err := http.ReadResponse(c.br, nil)
	if err != nil {
		return err
	}
	_, err = io.Copy(io.Discard, resp.Body)
	resp.Body.Close()
	if err == nil && resp.StatusCode != http.StatusOK {
		err = fmt.Errorf("status %d", resp.StatusCode)
	}
	return err
}

// dialVIP opens a conn to the VIP's port 80 from the client namespace.
func (h *haNet) dialVIP(timeout time.Duration) (*haConn, error) {
	c, err := dialTimeout(h.cl, haVIP+":80", timeout)
	if err != nil {
		return nil, err
	}
	return &haConn{c: c, br: bufio.NewReader(c)}, nil
}

// openConns opens n keepalive conns to the VIP, each answered once, and
// leaves them open.
func (h *haNet) openConns(n int) []*haConn {
	h.t.Helper()
	var cs []*haConn
	for range n {
		c, err := h.dialVIP(2 * time.Second)
		if err == nil {
			err = c.get(false)
		}
		if err != nil {
			h.t.Fatalf("conn %d to the VIP: %v\n%s", len(cs)+1, err, h.logs())
		}
		cs = append(cs, c)
	}
	h.t.Cleanup(func() {
		for _, c := range cs {
			c.c.Close()
		}
	})
	return cs
}

// haFailed sends one more request on each conn, closes it, and returns how
// many failed and the first error.
func haFailed(cs []*haConn) (n int, first error) {
	for _, c := range cs {
		if err := c.get(false); err != nil {
			n++
			if first == nil {
				first = err
			}
		}
		c.c.Close()
	}
	return n, first
}

// probe tries a new conn to the VIP (one GET, Connection: close) every
// 20 ms, each dial bounded by 250 ms, until one is answered 200 or within
// passes since from. It returns how long after from that answer came and
// how many tries failed before it.
func (h *haNet) probe(from time.Time, within time.Duration) (took time.Duration, failed int, err error) {
	for {
		c, err := h.dialVIP(250 * time.Millisecond)
		if err == nil {
			err = c.get(true)
			c.c.Close()
		}
		if err == nil {
			return time.Since(from), failed, nil
		}
		failed++
		if time.Since(from) > within {
			return 0, failed, fmt.Errorf("no new conn answered within %s (%d tries, last: %w)", within, failed, err)
		}
		time.Sleep(20 * time.Millisecond)
	}
}

// haSummary says how a load's requests and connects ended: a request
// sent on an open conn that got no answer failed on that conn; a connect
// that failed sent nothing.
func haSummary(r loadResult) string {
	answered, onConn, connects := haCounts(r)
	return fmt.Sprintf("%d requests, %d answered (%v), %d failed on an open conn, %d hung, %d connects failed (first errors %q)",
		r.Sent, answered, r.Status, onConn, r.Hung, connects, r.Errors)
}

// haCounts splits a load's outcomes: requests answered, requests that
// failed on an open conn (reset, EOF), connects that failed (a connect
// that timed out counts as hung, not here).
func haCounts(r loadResult) (answered, onConn, connects int) {
	for _, n := range r.Status {
		answered += n
	}
	onConn = r.Sent - answered - r.Hung
	return answered, onConn, r.Transport - onConn
}

// haLoads is the load during a failover: keepalive clients and clients
// that open a conn per request, through the VIP, bounded in count and
// time, failing fast (2 s) so that a failover shows as errors, not hangs.
func (h *haNet) haLoads() (ka, short *load) {
	spec := loadSpec{NS: h.cl, Addr: haVIP + ":80", Clients: 3, Requests: 2000, Duration: 20 * time.Second, Timeout: 2 * time.Second, Pause: 10 * time.Millisecond}
	ka = startLoad(h.t, spec)
	spec.Clients, spec.Close = 2, true
	short = startLoad(h.t, spec)
	return ka, short
}

// TestHAStandbyTakesOverWhenActiveTetherDies runs the pair of
// examples/keepalived/ and kills the active node's tether (SIGKILL), three
// times.
//
// Load: 3 keepalive clients and 2 clients opening a conn per request
// through the VIP (a request every 10 ms each, 2 s timeout), from 0.5 s
// before the kill until the standby answers; 8 idle keepalive conns opened
// on the active node before it dies.
//
// Bounds: a new conn to the VIP is answered 200 by the standby within 3 s
// of the kill (haFailoverBound; advert_int 1), the standby then holds the
// VIP alone. The 8 conns open on the dead node all fail (its kernel closed
// them when tether died: the docs say so) and are counted; the loads'
// failures are counted and logged; no load request gets an answer other
// than 200, none hangs.
//
// Back: the dead node's tether is started again. Preemption follows the
// config: with preempt (the examples) and the higher priority, the node
// takes the VIP back once its tether is ready (rise) and a master-down
// interval has passed, and new conns go to it (its accepted counter grows,
// the other's does not); the 8 conns opened on the standby meanwhile fail
// then, and are counted; so are the loads' failures, and no new conn
// fails. With nopreempt the standby would keep the VIP and the next kill
// would hit it.
//
// Last, a planned switchover: keepalived on the active node is stopped
// (SIGTERM), its tether left running. The standby must hold the VIP within
// 1 s and no new conn may fail; the conns open on the old node fail and
// are counted.
//
// When the VIP leaves a node whose tether still runs (takeback, planned
// switchover), a request in flight there gets no answer at all: that node
// can no longer send from the VIP (the kernel keeps the response queued
// on a socket whose source address it no longer holds), and the client's
// own timeout (2 s here) ends it. The loads count it as hung; the test reports it and does
// not fail on it.
func TestHAStandbyTakesOverWhenActiveTetherDies(t *testing.T) {
	h := haNewNet(t)
	tetherCfg, kaConf := h.haConfigs()
	vrrp := [2]haVRRP{haReadVRRP(t, kaConf[0]), haReadVRRP(t, kaConf[1])}
	for i, v := range vrrp {
		if v.advertInt != 1 {
			t.Fatalf("keepalived-%s.conf: advert_int %d, the bound assumes 1", strings.ToLower(haNodeName[i]), v.advertInt)
		}
	}
	h.nodes[0].startMember(1, memberConfig{HTTP: true})
	h.nodes[0].startMember(2, memberConfig{HTTP: true})
	var tethers [2]*tetherProc
	for i := range tethers {
		tethers[i] = h.nodes[i].startTether(tetherCfg, tetherOpts{})
	}
	for i := range kaConf {
		h.startKeepalived(i, kaConf[i])
	}
	active := 0
	if vrrp[1].priority > vrrp[0].priority {
		active = 1
	}
	if _, ok := h.waitVIP(active, 15*time.Second); !ok {
		t.Fatalf("%s never held the VIP alone\n%s", haNodeName[active], h.logs())
	}
	if strings.Contains(h.logs(), "SECURITY VIOLATION") {
		t.Fatalf("keepalived refused the track script\n%s", h.logs())
	}

	const runs, idle = 3, 8
	var failovers []string
	var worst time.Duration
	for run := 1; run <= runs; run++ {
		act, sb := active, 1-active
		open := h.openConns(idle)
		ka, short := h.haLoads()
		time.Sleep(500 * time.Millisecond) // the loads run before the kill

		killed := time.Now()
		if err := tethers[act].cmd.Process.Kill(); err != nil {
			t.Fatal(err)
		}
		tethers[act].wait(5 * time.Second)
		took, tries, err := h.probe(killed, 10*time.Second)
		if err != nil {
			t.Fatalf("run %d: %s's tether killed: %v\n%s", run, haNodeName[act], err, h.logs())
		}
		if !h.hasVIP(sb) || h.hasVIP(act) {
			t.Fatalf("run %d: answered, but the VIP is not on %s alone\n%s", run, haNodeName[sb], h.logs())
		}
		time.Sleep(300 * time.Millisecond) // the loads run on the standby
		kaRes, shortRes := ka.stop(), short.stop()
		dead, deadErr := haFailed(open)
		failovers = append(failovers, fmt.Sprintf("%.2fs", took.Seconds()))
		worst = max(worst, took)
		t.Logf("run %d: %s killed; %s answered a new conn after %.2f s (%d new conns failed before: refused while %s still held the VIP, then unanswered until %s took it)",
			run, haNodeName[act], haNodeName[sb], took.Seconds(), tries, haNodeName[act], haNodeName[sb])
		t.Logf("run %d: conns open on %s: %d of %d failed (first: %v); keepalive load: %s; short-conn load: %s",
			run, haNodeName[act], dead, idle, deadErr, haSummary(kaRes), haSummary(shortRes))
		if took > haFailoverBound {
			t.Errorf("run %d: failover took %.2f s, bound %s\n%s", run, took.Seconds(), haFailoverBound, h.logs())
		}
		if dead != idle {
			t.Errorf("run %d: %d of %d conns open on the killed node failed; all should (the docs say so)", run, dead, idle)
		}
		for _, res := range []loadResult{kaRes, shortRes} {
			if res.Hung != 0 || len(res.Status) > 1 || res.OK() == 0 {
				t.Errorf("run %d: a load request hung or got another status than 200: %s", run, res.String())
			}
		}

		// Bring the dead node back.
		open = h.openConns(idle) // on the standby, which holds the VIP
		ka, short = h.haLoads()
		tethers[act] = h.nodes[act].startTether(tetherCfg, tetherOpts{})
		ready := time.Now()
		preempts := !vrrp[act].nopreempt && !vrrp[sb].nopreempt && vrrp[act].priority > vrrp[sb].priority
		if preempts {
			at, ok := h.waitVIP(act, 10*time.Second)
			if !ok {
				t.Fatalf("run %d: %s's tether ready again but %s did not take the VIP back within 10 s (preempt)\n%s", run, haNodeName[act], haNodeName[act], h.logs())
			}
			time.Sleep(300 * time.Millisecond) // the loads run on the node back
			kaRes, shortRes := ka.stop(), short.stop()
			moved, movedErr := haFailed(open)
			served := h.servedBy(tethers, 5)
			t.Logf("run %d: %s ready again; it took the VIP back %.2f s later (preempt); conns open on %s: %d of %d failed (first: %v); keepalive load across it: %s; short-conn load: %s; 5 new conns then went to A, B: %v",
				run, haNodeName[act], at.Sub(ready).Seconds(), haNodeName[sb], moved, idle, movedErr, haSummary(kaRes), haSummary(shortRes), served)
			if served[act] != 5 || served[sb] != 0 {
				t.Errorf("run %d: after the takeback 5 new conns went %v, want all to %s", run, served, haNodeName[act])
			}
			if moved != idle {
				t.Errorf("run %d: %d of %d conns open on %s failed when the VIP moved back; all should", run, moved, idle, haNodeName[sb])
			}
			for _, res := range []loadResult{kaRes, shortRes} {
				if len(res.Status) > 1 || res.OK() == 0 {
					t.Errorf("run %d: load across the takeback: an answer other than 200, or none: %s", run, res.String())
				}
				if _, _, connects := haCounts(res); connects != 0 {
					t.Errorf("run %d: %d new connections failed across the takeback: %s", run, connects, res.String())
				}
			}
		} else {
			// nopreempt, or a lower priority: the standby keeps the VIP
			// past the time a takeback would need (rise 2 s, then a
			// master-down interval of 3 adverts).
			time.Sleep(6 * time.Second)
			ka.stop()
			short.stop()
			if !h.hasVIP(sb) || h.hasVIP(act) {
				t.Fatalf("run %d: the config does not preempt, but %s lost the VIP\n%s", run, haNodeName[sb], h.logs())
			}
			if n, err := haFailed(open); n != 0 {
				t.Errorf("run %d: %d conns open on %s failed though it kept the VIP (first: %v)", run, n, haNodeName[sb], err)
			}
			t.Logf("run %d: %s ready again; %s keeps the VIP (no preemption)", run, haNodeName[act], haNodeName[sb])
			active = sb
		}
	}
	t.Logf("failover (SIGKILL of the active tether → first new conn answered by the standby) over %d runs: %s; worst %.2f s (bound %s)",
		runs, strings.Join(failovers, " "), worst.Seconds(), haFailoverBound)

	// A planned switchover, as the docs advise before maintenance: stop
	// keepalived on the active node first (it sends a priority-0 advert
	// and drops the VIP; its tether keeps serving until then), tether
	// after.
	act, sb := active, 1-active
	open := h.openConns(idle)
	ka, short := h.haLoads()
	time.Sleep(300 * time.Millisecond)
	stopped := time.Now()
	if err := h.kas[act].cmd.Process.Signal(syscall.SIGTERM); err != nil {
		t.Fatal(err)
	}
	at, ok := h.waitVIP(sb, 5*time.Second)
	if !ok {
		t.Fatalf("keepalived on %s stopped, but %s did not take the VIP within 5 s\n%s", haNodeName[act], haNodeName[sb], h.logs())
	}
	time.Sleep(300 * time.Millisecond)
	kaRes, shortRes := ka.stop(), short.stop()
	moved, movedErr := haFailed(open)
	t.Logf("planned switchover: keepalived on %s stopped; %s held the VIP %.2f s later; conns open on %s: %d of %d failed (first: %v); keepalive load: %s; short-conn load: %s",
		haNodeName[act], haNodeName[sb], at.Sub(stopped).Seconds(), haNodeName[act], moved, idle, movedErr, haSummary(kaRes), haSummary(shortRes))
	for _, res := range []loadResult{kaRes, shortRes} {
		if len(res.Status) > 1 || res.OK() == 0 {
			t.Errorf("planned switchover: an answer other than 200, or none: %s", res.String())
		}
		if _, _, connects := haCounts(res); connects != 0 {
			t.Errorf("planned switchover: %d new connections failed: %s", connects, res.String())
		}
	}
	if at.Sub(stopped) > time.Second {
		t.Errorf("planned switchover took %.2f s; a priority-0 advert should hand over within B's skew time", at.Sub(stopped).Seconds())
	}
}

// servedBy opens n new conns to the VIP, one request each, and returns
// how many each node's tether accepted meanwhile (from its admin API).
func (h *haNet) servedBy(tethers [2]*tetherProc, n int) [2]int {
	h.t.Helper()
	var before [2]uint64
	for i, p := range tethers {
		before[i] = p.vsStats("web").Accepted
	}
	for i := range n {
		c, err := h.dialVIP(2 * time.Second)
		if err == nil {
			err = c.get(true)
			c.c.Close()
		}
		if err != nil {
			h.t.Fatalf("new conn %d to the VIP: %v\n%s", i+1, err, h.logs())
		}
	}
	var got [2]int
	for i, p := range tethers {
		got[i] = int(p.vsStats("web").Accepted - before[i])
	}
	return got
}
