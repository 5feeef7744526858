package main

import (
	"bufio"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net"
	"net/http"
	"os"
	"os/exec"
	"runtime"
	"strings"
	"sync"
	"sync/atomic"
	"syscall"
	"testing"
	"time"

	"golang.org/x/sys/unix"
)

// Several tether processes share one port with reuse_port (issue 15, "many
// instances"): three real binaries in a network namespace of the test's
// own, each with its admin API on its own 127.0.0.1 port, all listening on
// 127.0.0.1:8000 through a client profile with reuse_port = true.
//
// Spread and drain under load: short connections (one GET each,
// Connection: close) and keepalive clients run throughout. The kernel must
// deal the new connections among the three (each process's accepted
// counter, from its /api/v1/virtual-servers, at least rpMinShare of the
// total); then one process drains with SIGTERM, twice (a fresh process
// takes the drained one's place in between), under that load.
//
// Queued connections: a listener that closes loses the connections that
// completed their handshake in its accept queue (and the handshakes hashed
// to it), reset, unless net.ipv4.tcp_migrate_req = 1 (Linux 5.14, per
// network namespace) hands them to the other listeners of the group. tether
// accepts fast, so under the load above its queue is seldom anything but
// empty at the close; a process that is not accepting (at max_connections,
// or starved of CPU) has a full one. So a fourth process with
// max_connections = 1, held at its limit by one idle conn, gets its share
// of 40 new GETs queued, and is drained.
//
// Both run twice, each time in a namespace of its own:
//
//   - tcp_migrate_req=0: the counts are logged (the kernel's behaviour the
//     README warns about), nothing is asserted on them;
//   - tcp_migrate_req=1: 0 refused connections, 0 resets and 0 failed
//     requests, in both parts.
//
// Keepalive clients of a draining process: tether closes their idle conns
// at SIGTERM; a request written as the close comes fails on that reused
// conn, with no byte of an answer. Like every HTTP client (RFC 9112 9.3.1,
// net/http's shouldRetryRequest), the client retries that GET once on a new
// conn; the races are counted and logged, and a retry that fails is a
// failed request.
//
// Fresh conns: SIGTERM's drain keeps a conn accepted just before it for a
// second (proxy.Server.ShutdownGentlyFor), so a first request on its way is
// answered with Connection: close; a fresh conn closed before its first
// request is answered (closedFresh) fails the test.
func TestReusePortProcessesShareAPortAndOneDrainsWithoutRefusals(t *testing.T) {
	needNetns(t)
	bin := tetherBinary(t)
	for _, migrate := range []int{0, 1} {
		t.Run(fmt.Sprintf("tcp_migrate_req=%d", migrate), func(t *testing.T) {
			r, q := runReusePort(t, bin, migrate)
			t.Logf("tcp_migrate_req=%d, drains under load: %s", migrate, r)
			t.Logf("tcp_migrate_req=%d, drain of a process with a full accept queue: %s", migrate, q)
			if migrate == 0 {
				return // the kernel's behaviour, shown, not judged
			}
			if n := r.refused + r.failed(); n != 0 {
				t.Errorf("with tcp_migrate_req=1 the drains under load cost %d refused connections and %d failed requests", r.refused, r.failed())
			}
			if r.closedFresh != 0 {
				t.Errorf("the drains closed %d new conns before answering their first request", r.closedFresh)
			}
			if q.ok != q.sent {
				t.Errorf("with tcp_migrate_req=1, %d of the %d GETs (%d queued at the drained process) were not answered", q.sent-q.ok, q.sent, q.queued)
			}
		})
	}
}

// Settings of the reuse_port test.
const (
	rpProcs        = 3                // tether processes sharing the port
	rpListen       = "127.0.0.1:8000" // the shared virtual server address
	rpMember       = "127.0.0.1:8080" // the in-process backend
	rpShortClients = 32               // goroutines doing one GET per conn
	rpKAClients    = 9                // keepalive clients (3 per process on average)
	rpMinShare     = 0.15             // each process's least share of new conns (1/3 expected)
	rpDrains       = 2                // SIGTERMs per run, each under load
	rpMaxRequests  = 100000           // bound on the requests of one run
)

// rpResult counts what the clients saw in one run.
type rpResult struct {
	requests    int64 // answered 200 with the body
	refused     int64 // connect failed (ECONNREFUSED, or a reset handshake)
	resetFresh  int64 // a fresh conn reset before any byte of the answer
	closedFresh int64 // a fresh conn closed (EOF) before any byte of the answer
	badStatus   int64 // an answer other than 200 "ok"
	otherFresh  int64 // any other failure on a fresh conn
	kaRaces     int64 // a reused keepalive conn closed under a request (retried)
	kaRetryErr  int64 // ... and the retry on a new conn failed too
	accepted    []uint64
	drainExits  []string

	mu      sync.Mutex
	samples []string // the first failures, with the client and its conn
}

// note keeps the first 10 failures' descriptions.
func (r *rpResult) note(who string, err error) {
	r.mu.Lock()
	defer r.mu.Unlock()
	if len(r.samples) < 10 {
		r.samples = append(r.samples, fmt.Sprintf("%s %s: %v", time.Now().Format("15:04:05.000"), who, err))
	}
}

func (r *rpResult) failed() int64 {
	return r.resetFresh + r.badStatus + r.otherFresh + r.kaRetryErr
}

func (r *rpResult) String() string {
	return fmt.Sprintf("%d requests ok; refused %d, reset on a new conn %d, new conns closed by the drain before their first answer %d, bad answers %d, other failures %d; keepalive races %d (retry failed %d); accepted in 1.5 s before the drains, per process: %v; drained: %s; first failures: %s",
		r.requests, r.refused, r.resetFresh, r.closedFresh, r.badStatus, r.otherFresh, r.kaRaces, r.kaRetryErr, r.accepted, strings.Join(r.drainExits, ", "), strings.Join(r.samples, "; "))
}

// runReusePort does one run in a fresh namespace with tcp_migrate_req set
// to migrate, and returns what the clients saw. It fails t on what is not
// the clients' count: a process that does not start, no spread, a drained
// process that does not exit 0.
func runReusePort(t *testing.T, bin string, migrate int) (*rpResult, *rpQueued) {
	ns := newNetns(t)
	ns.sysctl("net.ipv4.tcp_migrate_req", fmt.Sprint(migrate))
	startNSBackend(t, ns)

	var procs []*nsTether
	for i := range rpProcs {
		procs = append(procs, startNSTether(t, ns, bin, i, 0))
	}
	for _, p := range procs {
		p.waitReady(t)
	}

	res := &rpResult{}
	ctx, stop := context.WithCancel(context.Background())
	var wg sync.WaitGroup
	var budget atomic.Int64
	budget.Store(rpMaxRequests)
	for range rpShortClients {
		wg.Add(1)
		go func() { defer wg.Done(); shortClient(ctx, ns, res, &budget) }()
	}
	for range rpKAClients {
		wg.Add(1)
		go func() { defer wg.Done(); keepaliveClient(ctx, ns, res, &budget) }()
	}
	defer func() { stop(); wg.Wait() }()

	// Spread: the accepted counters over 1.5 s of load.
	before := make([]uint64, len(procs))
	for i, p := range procs {
		before[i] = p.stats(t).Accepted
	}
	time.Sleep(1500 * time.Millisecond) // a window of load, not a wait for a condition
	var total uint64
	for i, p := range procs {
		res.accepted = append(res.accepted, p.stats(t).Accepted-before[i])
		total += res.accepted[i]
	}
	if total < 300 {
		t.Fatalf("only %d conns accepted in 1.5 s of load (%v): the load did not run", total, res.accepted)
	}
	for i, n := range res.accepted {
		if float64(n) < rpMinShare*float64(total) {
			t.Errorf("process %d accepted %d of %d new conns (%v): under %.0f%%, the port is not shared", i, n, total, res.accepted, 100*rpMinShare)
		}
	}

	// Drains: SIGTERM the process holding the most conns (so the most
	// keepalive clients), under load; a new process takes its place.
	next := rpProcs
	for d := range rpDrains {
		victim := 0
		var most int64 = -1
		for i, p := range procs {
			if a := p.stats(t).Active; a > most {
				victim, most = i, a
			}
		}
		v := procs[victim]
		t.Logf("%s drain %d: SIGTERM to process %d", time.Now().Format("15:04:05.000"), d+1, v.n)
		v.signal(t, syscall.SIGTERM)
		code := v.wait(10 * time.Second)
		res.drainExits = append(res.drainExits, fmt.Sprintf("process %d (%d conns open at SIGTERM): exit %d", v.n, most, code))
		if code != 0 {
			t.Errorf("drain %d: process %d exited %d, want 0\n%s", d+1, v.n, code, v.stderr.String())
		}
		if d == rpDrains-1 {
			break
		}
		repl := startNSTether(t, ns, bin, next, 0)
		next++
		repl.waitReady(t)
		procs[victim] = repl
		time.Sleep(300 * time.Millisecond) // load on the new set before the next drain
	}
	time.Sleep(500 * time.Millisecond) // load on the survivors after the last drain
	stop()
	wg.Wait()
	if res.requests == 0 {
		t.Fatal("no request succeeded")
	}
	return res, drainQueued(t, ns, bin, next)
}

// rpQueued is what the GETs of drainQueued saw.
type rpQueued struct {
	sent, ok      int
	queued        int // unanswered when the process at its limit got SIGTERM
	reset, closed int // ECONNRESET / EOF before any byte of the answer
	other         int
	samples       []string
}

func (q *rpQueued) String() string {
	return fmt.Sprintf("%d GETs on new conns, %d of them queued at the drained process at SIGTERM; %d answered, %d reset, %d closed before any answer, %d other failures %v",
		q.sent, q.queued, q.ok, q.reset, q.closed, q.other, q.samples)
}

// drainQueued starts process number n with max_connections = 1, holds it
// at that limit with one idle conn, sends 40 GETs on new conns (the
// kernel queues the share hashed to it), waits until the answers stop
// coming, then SIGTERMs it and counts what every GET got.
func drainQueued(t *testing.T, ns *netns, bin string, n int) *rpQueued {
	t.Helper()
	const gets = 40
	v := startNSTether(t, ns, bin, n, 1)
	v.waitReady(t)
	var held []net.Conn
	defer func() {
		for _, c := range held {
			c.Close()
		}
	}()
	for v.stats(t).Active < 1 {
		if len(held) == 50 {
			t.Fatalf("50 conns and none went to process %d", n)
		}
		c, err := ns.dial(rpListen)
		if err != nil {
			t.Fatalf("dial: %v", err)
		}
		held = append(held, c)
		for deadline := time.Now().Add(200 * time.Millisecond); time.Now().Before(deadline) && v.stats(t).Active < 1; {
			time.Sleep(10 * time.Millisecond)
		}
	}
	q := &rpQueued{sent: gets}
	var mu sync.Mutex
	var wg sync.WaitGroup
	done := 0
	for range gets {
		wg.Add(1)
		go func() {
			defer wg.Done()
			c, err := ns.dial(rpListen)
			if err == nil {
				_, err = getOn(c, bufio.NewReader(c), true)
				c.Close()
			}
			mu.Lock()
			defer mu.Unlock()
			done++
			switch {
			case err == nil:
				q.ok++
			case errors.Is(err, syscall.ECONNRESET), errors.Is(err, syscall.EPIPE):
				q.reset++
			case errors.Is(err, errNoAnswer):
				q.closed++
			default:
				q.other++
			}
			if err != nil && len(q.samples) < 3 {
				q.samples = append(q.samples, err.Error())
			}
		}()
	}
	// The answers stop coming: what is left waits in the queue of the
	// process at its limit.
	last, still := -1, time.Now()
	for deadline := time.Now().Add(4 * time.Second); time.Now().Before(deadline); time.Sleep(50 * time.Millisecond) {
		mu.Lock()
		d := done
		mu.Unlock()
		if d != last {
			last, still = d, time.Now()
		} else if time.Since(still) > 400*time.Millisecond {
			break
		}
	}
	q.queued = gets - last
	if q.queued == 0 {
		wg.Wait()
		t.Fatalf("none of %d GETs waited at process %d (at its limit): nothing to show", gets, n)
	}
	v.signal(t, syscall.SIGTERM)
	if code := v.wait(10 * time.Second); code != 0 {
		t.Errorf("process %d exited %d after SIGTERM\n%s", n, code, v.stderr.String())
	}
	wg.Wait()
	return q
}

// shortClient does one GET per conn until ctx ends or the budget is spent.
func shortClient(ctx context.Context, ns *netns, res *rpResult, budget *atomic.Int64) {
	for ctx.Err() == nil && budget.Add(-1) >= 0 {
		c, err := ns.dial(rpListen)
		if err != nil {
			atomic.AddInt64(&res.refused, 1)
			continue
		}
		_, err = getOn(c, bufio.NewReader(c), true)
		if err != nil {
			res.note("short client conn "+c.LocalAddr().String(), err)
		}
		c.Close()
		countFresh(res, err)
	}
}

// keepaliveClient sends GETs on one conn, 2 ms apart (so that it is idle
// between them), and opens a new conn when tether ends one.
func keepaliveClient(ctx context.Context, ns *netns, res *rpResult, budget *atomic.Int64) {
	var c net.Conn
	var br *bufio.Reader
	defer func() {
		if c != nil {
			c.Close()
		}
	}()
	for ctx.Err() == nil && budget.Add(-1) >= 0 {
		reused := c != nil
		if c == nil {
			var err error
			if c, err = ns.dial(rpListen); err != nil {
				atomic.AddInt64(&res.refused, 1)
				c = nil
				continue
			}
			br = bufio.NewReader(c)
		}
		keep, err := getOn(c, br, false)
		if err != nil && reused && errors.Is(err, errNoAnswer) {
			// The idle conn closed under the request: retry on a new one.
			atomic.AddInt64(&res.kaRaces, 1)
			c.Close()
			if c, err = ns.dial(rpListen); err != nil {
				atomic.AddInt64(&res.refused, 1)
				c = nil
				continue
			}
			br = bufio.NewReader(c)
			if keep, err = getOn(c, br, false); err != nil {
				res.note("keepalive retry conn "+c.LocalAddr().String(), err)
				atomic.AddInt64(&res.kaRetryErr, 1)
			} else {
				atomic.AddInt64(&res.requests, 1)
			}
		} else {
			if err != nil {
				res.note(fmt.Sprintf("keepalive conn %s (reused %v)", c.LocalAddr(), reused), err)
			}
			countFresh(res, err)
		}
		if err != nil || !keep {
			c.Close()
			c = nil
		}
		t := time.NewTimer(2 * time.Millisecond)
		select {
		case <-ctx.Done():
		case <-t.C:
		}
		t.Stop()
	}
}

// countFresh counts the outcome of a request on a new conn (or the
// failure of one on a reused conn that had started to answer).
func countFresh(res *rpResult, err error) {
	var bad *badAnswerError
	switch {
	case err == nil:
		atomic.AddInt64(&res.requests, 1)
	case errors.As(err, &bad):
		atomic.AddInt64(&res.badStatus, 1)
	case errors.Is(err, syscall.ECONNRESET), errors.Is(err, syscall.EPIPE):
		atomic.AddInt64(&res.resetFresh, 1)
	case errors.Is(err, errNoAnswer):
		atomic.AddInt64(&res.closedFresh, 1)
	default:
		atomic.AddInt64(&res.otherFresh, 1)
	}
}

// errNoAnswer: the conn ended (EOF or reset) before any byte of an answer.
var errNoAnswer = errors.New("conn closed before any byte of the answer")

type badAnswerError struct {
	status int
	body   string
}

func (e *badAnswerError) Error() string {
	return fmt.Sprintf("answer %d %q, want 200 \"ok\"", e.status, e.body)
}

// getOn sends GET / on c and reads the answer; keep says whether the conn
// may carry another request.
func getOn(c net.Conn, br *bufio.Reader, closeConn bool) (keep bool, err error) {
	_ = c.SetDeadline(time.Now().Add(5 * time.Second))
	req := "GET / HTTP/1.1\r\nHost: rp.test\r\n\r\n"
	if closeConn {
		req = "GET / HTTP/1.1\r\nHost: rp.test\r\nConnection: close\r\n\r\n"
	}
	if _, err := io.WriteString(c, req); err != nil {
		if errors.Is(err, syscall.ECONNRESET) || errors.Is(err, syscall.EPIPE) {
			return false, fmt.Errorf("write: %w (%w)", errNoAnswer, err)
		}
		return false, fmt.Errorf("write: %w", err)
	}
	if _, err := br.Peek(1); err != nil {
		if errors.Is(err, io.EOF) || errors.Is(err, syscall.ECONNRESET) {
			return false, fmt.Errorf("read: %w (%w)", errNoAnswer, err)
		}
		return false, fmt.Errorf("read: %w", err)
	}
	resp, err := http.ReadResponse(br, nil)
	if err != nil {
		return false, fmt.Errorf("answer: %w", err)
	}
	body, err := io.ReadAll(io.LimitReader(resp.Body, 1<<10))
	resp.Body.Close()
	if err != nil {
		return false, fmt.Errorf("body: %w", err)
	}
	if resp.StatusCode != http.StatusOK || string(body) != "ok" {
		return false, &badAnswerError{resp.StatusCode, string(body)}
	}
	return !resp.Close, nil
}

// netns is a network namespace of the test's own: loopback up, nothing
// else. The test's end removes it.
type netns struct {
	t    *testing.T
	name string
	fd   *os.File // /var/run/netns/NAME, for setns
	orig *os.File // the test's own namespace
}

var netnsSeq atomic.Int64

// needNetns skips the test without root or ip(8), or fails it under CI.
func needNetns(t *testing.T) {
	t.Helper()
	why := ""
	if os.Geteuid() != 0 {
		why = "root (network namespaces)"
	} else if _, err := exec.LookPath("ip"); err != nil {
		why = "ip(8) (iproute2)"
	} else if _, err := os.Stat("/proc/sys/net/ipv4/tcp_migrate_req"); err != nil {
		why = "a kernel with net.ipv4.tcp_migrate_req (Linux 5.14 or later)"
	}
	if why == "" {
		return
	}
	if os.Getenv("CI") != "" {
		t.Fatalf("this test needs %s; CI has it", why)
	}
	t.Skipf("this test needs %s", why)
}

func newNetns(t *testing.T) *netns {
	t.Helper()
	n := &netns{t: t, name: fmt.Sprintf("trp%d-%d", os.Getpid(), netnsSeq.Add(1))}
	n.ip("netns", "add", n.name)
	t.Cleanup(func() {
		if out, err := exec.Command("ip", "netns", "del", n.name).CombinedOutput(); err != nil {
			t.Errorf("ip netns del %s: %v\n%s", n.name, err, out)
		}
	})
	n.ip("-n", n.name, "link", "set", "lo", "up")
	var err error
	if n.fd, err = os.Open("/var/run/netns/" + n.name); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { n.fd.Close() })
	if n.orig, err = os.Open("/proc/self/ns/net"); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { n.orig.Close() })
	return n
}

func (n *netns) ip(args ...string) {
	n.t.Helper()
	if out, err := exec.Command("ip", args...).CombinedOutput(); err != nil {
		n.t.Fatalf("ip %s: %v\n%s", strings.Join(args, " "), err, out)
	}
}

func (n *netns) sysctl(key, value string) {
	n.t.Helper()
	n.ip("netns", "exec", n.name, "sysctl", "-q", "-w", key+"="+value)
	out, err := exec.Command("ip", "netns", "exec", n.name, "sysctl", "-n", key).Output()
	if err != nil || strings.TrimSpace(string(out)) != value {
		n.t.Fatalf("sysctl %s in %s reads %q (%v), want %s", key, n.name, out, err, value)
	}
}

// do runs f on an OS thread that joined the namespace: the sockets f
// creates belong to it for their whole life. The thread comes back to the
// test's namespace afterwards.
func (n *netns) do(f func() error) error {
	runtime.LockOSThread()
	if err := unix.Setns(int(n.fd.Fd()), unix.CLONE_NEWNET); err != nil {
		runtime.UnlockOSThread()
		return fmt.Errorf("setns %s: %w", n.name, err)
	}
	ferr := f()
	if err := unix.Setns(int(n.orig.Fd()), unix.CLONE_NEWNET); err != nil {
		// The thread stays in the wrong namespace, locked: the runtime
		// ends it with the goroutine.
		panic(fmt.Sprintf("setns back from %s: %v", n.name, err))
	}
	runtime.UnlockOSThread()
	return ferr
}

// dial connects to addr inside the namespace, within 2 s.
func (n *netns) dial(addr string) (net.Conn, error) {
	var c net.Conn
	err := n.do(func() error {
		var err error
		c, err = net.DialTimeout("tcp", addr, 2*time.Second)
		return err
	})
	return c, err
}

// httpClient is a client whose conns are made inside the namespace.
func (n *netns) httpClient() *http.Client {
	return &http.Client{Timeout: 3 * time.Second, Transport: &http.Transport{
		DisableKeepAlives: true,
		DialContext: func(_ context.Context, _, addr string) (net.Conn, error) {
			return n.dial(addr)
		},
	}}
}

// startNSBackend serves "ok" on rpMember inside the namespace until the
// test ends.
func startNSBackend(t *testing.T, n *netns) {
	t.Helper()
	var ln net.Listener
	if err := n.do(func() error {
		var err error
		ln, err = net.Listen("tcp", rpMember)
		return err
	}); err != nil {
		t.Fatal(err)
	}
	srv := &http.Server{Handler: http.HandlerFunc(func(w http.ResponseWriter, _ *http.Request) { _, _ = io.WriteString(w, "ok") })}
	done := make(chan struct{})
	go func() { defer close(done); _ = srv.Serve(ln) }()
	t.Cleanup(func() { _ = srv.Close(); <-done })
}

// nsTether is the real binary running inside the namespace.
type nsTether struct {
	n      int // its number: admin API on 127.0.0.1:(9901+n)
	cmd    *exec.Cmd
	stderr *syncBuffer
	done   chan struct{}
	err    error
	admin  string
	hc     *http.Client
}

// startNSTether runs process number i: the shared virtual server on
// rpListen with reuse_port in its client profile, its admin API on its
// own port, max_connections = maxConns when > 0. The test's end stops it
// (SIGTERM, exit 0 wanted).
func startNSTether(t *testing.T, n *netns, bin string, i, maxConns int) *nsTether {
	t.Helper()
	admin := fmt.Sprintf("127.0.0.1:%d", 9901+i)
	limit := ""
	if maxConns > 0 {
		limit = fmt.Sprintf("max_connections = %d\n", maxConns)
	}
	cfg := fmt.Sprintf(`
[global]
shutdown_timeout = "5s"

[log]
level = "warn"
access = false

[admin]
listen = %q

[tcp_profile.shared]
reuse_port = true

[pool.p]
members = [{ address = %q }]

[pool.p.health]
type = "none"

[[virtual_server]]
name = "web"
listen = %q
mode = "http"
pool = "p"
client_profile = "shared"
%s
[virtual_server.http]
max_requests = 0
`, admin, rpMember, rpListen, limit)
	p := &nsTether{n: i, stderr: &syncBuffer{}, done: make(chan struct{}), admin: admin, hc: n.httpClient()}
	p.cmd = exec.Command("ip", "netns", "exec", n.name, bin, "run", "-c", writeConfig(t, cfg))
	p.cmd.Stdout, p.cmd.Stderr = p.stderr, p.stderr
	if err := p.cmd.Start(); err != nil {
		t.Fatal(err)
	}
	go func() { p.err = p.cmd.Wait(); close(p.done) }()
	t.Cleanup(func() {
		if p.exited() {
			return
		}
		_ = p.cmd.Process.Signal(syscall.SIGTERM)
		if code := p.wait(10 * time.Second); code != 0 {
			t.Errorf("process %d exited %d after SIGTERM\n%s", i, code, p.stderr.String())
		}
	})
	return p
}

func (p *nsTether) exited() bool {
	select {
	case <-p.done:
		return true
	default:
		return false
	}
}

// waitReady waits up to 10 s for /ready to answer 200.
func (p *nsTether) waitReady(t *testing.T) {
	t.Helper()
	deadline := time.Now().Add(10 * time.Second)
	for {
		resp, err := p.hc.Get("http://" + p.admin + "/ready")
		if err == nil {
			_, _ = io.Copy(io.Discard, resp.Body)
			resp.Body.Close()
			if resp.StatusCode == http.StatusOK {
				return
			}
		}
		if p.exited() || time.Now().After(deadline) {
			t.Fatalf("process %d not ready (err %v, exited %v)\n%s", p.n, err, p.exited(), p.stderr.String())
		}
		time.Sleep(20 * time.Millisecond)
	}
}

// rpStats are the counters of the virtual server "web", from the admin
// API (proxy.Stats, JSON without tags).
type rpStats struct {
	Active   int64
	Accepted uint64
}

func (p *nsTether) stats(t *testing.T) rpStats {
	t.Helper()
	resp, err := p.hc.Get("http://" + p.admin + "/api/v1/virtual-servers")
	if err != nil {
		t.Fatalf("process %d: /api/v1/virtual-servers: %v", p.n, err)
	}
	defer resp.Body.Close()
	var body struct {
		VirtualServers []struct {
			Name        string  `json:"name"`
			Connections rpStats `json:"connections"`
		} `json:"virtual_servers"`
	}
	if err := json.NewDecoder(resp.Body).Decode(&body); err != nil || len(body.VirtualServers) != 1 || body.VirtualServers[0].Name != "web" {
		t.Fatalf("process %d: /api/v1/virtual-servers: %v %+v", p.n, err, body)
	}
	return body.VirtualServers[0].Connections
}

func (p *nsTether) signal(t *testing.T, sig syscall.Signal) {
	t.Helper()
	if err := p.cmd.Process.Signal(sig); err != nil {
		t.Fatalf("process %d: signal %v: %v", p.n, sig, err)
	}
}

// wait returns the exit code (-1: killed after within).
func (p *nsTether) wait(within time.Duration) int {
	select {
	case <-p.done:
	case <-time.After(within):
		_ = p.cmd.Process.Kill()
		<-p.done
		return -1
	}
	var ee *exec.ExitError
	if errors.As(p.err, &ee) {
		return ee.ExitCode()
	}
	if p.err != nil {
		return -1
	}
	return 0
}
