package faults

import (
	"bufio"
	"fmt"
	"io"
	"net"
	"net/http"
	"os"
	"strconv"
	"strings"
	"sync"
	"testing"
	"time"
)

// exCPU is tether's CPU time so far (user + system), from /proc/PID/stat.
func exCPU(t *testing.T, pid int) time.Duration {
	t.Helper()
	b, err := os.ReadFile(fmt.Sprintf("/proc/%d/stat", pid))
	if err != nil {
		t.Fatalf("cpu: %v", err)
	}
	// The fields after the command (which may hold spaces) in parentheses.
	s := string(b)
	f := strings.Fields(s[strings.LastIndexByte(s, ')')+2:])
	// utime and stime are fields 14 and 15 of stat(5): 12 and 13 here.
	ut, err1 := strconv.ParseInt(f[11], 10, 64)
	st, err2 := strconv.ParseInt(f[12], 10, 64)
	if err1 != nil || err2 != nil {
		t.Fatalf("cpu: %q", s)
	}
	const clkTck = 100 // USER_HZ on Linux
	return time.Duration(ut+st) * time.Second / clkTck
}

// exRSS is tether's resident memory, from /proc/PID/status VmRSS.
func exRSS(t *testing.T, pid int) int64 {
	t.Helper()
	b, err := os.ReadFile(fmt.Sprintf("/proc/%d/status", pid))
	if err != nil {
		t.Fatalf("rss: %v", err)
	}
	for _, line := range strings.Split(string(b), "\n") {
		if rest, ok := strings.CutPrefix(line, "VmRSS:"); ok {
			kb, err := strconv.ParseInt(strings.TrimSuffix(strings.TrimSpace(rest), " kB"), 10, 64)
			if err != nil {
				t.Fatalf("rss: %q", line)
			}
			return kb << 10
		}
	}
	t.Fatalf("rss: no VmRSS in /proc/%d/status", pid)
	return 0
}

// exGet sends one GET on c and reads its answer within d; the answer's
// status, or an error.
func exGet(c net.Conn, br *bufio.Reader, id string, d time.Duration) (int, error) {
	_ = c.SetDeadline(time.Now().Add(d))
	if _, err := fmt.Fprintf(c, "GET / HTTP/1.1\r\nHost: faults\r\nX-Req-Id: %s\r\n\r\n", id); err != nil {
		return 0, err
	}
	return exRead(br)
}

// exRead reads one whole answer and returns its status.
func exRead(br *bufio.Reader) (int, error) {
	resp, err := http.ReadResponse(br, nil)
	if err != nil {
		return 0, err
	}
	_, err = io.Copy(io.Discard, resp.Body)
	resp.Body.Close()
	return resp.StatusCode, err
}

// exWaitLog waits up to within for tether's log to hold a line whose msg
// is msg and whose error contains errText.
func exWaitLog(p *tetherProc, msg, errText string, within time.Duration) bool {
	deadline := time.Now().Add(within)
	for time.Now().Before(deadline) {
		for _, m := range p.logLines(msg) {
			if e, _ := m["error"].(string); strings.Contains(e, errText) {
				return true
			}
		}
		time.Sleep(20 * time.Millisecond)
	}
	return false
}

// Fault: tether runs out of file descriptors (RLIMIT_NOFILE 64): keepalive
// clients hold their conns until accept(2) fails with EMFILE, and more
// clients arrive while it does.
//
// Load: one keepalive client at a time opens a conn and is served a GET,
// each keeping its conn, until one is not answered (tether is at its fd
// limit); then 4 more clients arrive, each sending a GET. They wait in the
// listener's backlog.
//
// Bound: at the limit the accept loop backs off (5 ms doubling to 1 s):
// tether's CPU over 3 s stays under 10% of one core, and "accept failed"
// (too many open files) is logged at most once a second (+2). Once the
// held conns close, the clients that waited in the backlog are answered
// 200 within 2.5 s (the 1 s backoff + margin), and fresh clients are
// served at once.
//
// Nothing lost: every client that arrived at the limit is answered 200
// after the recovery, none hangs; tether keeps running (no restart) and
// its fds and goroutines come back to the baseline.
func TestFaultFDLimit(t *testing.T) {
	l := newLab(t, 1)
	l.startMember(1, memberConfig{HTTP: true})
	cfg := httpPool(1, "") + fmt.Sprintf(`
[[virtual_server]]
name = "web"
listen = "%s:8080"
mode = "http"
pool = "web"
`, lbClientSide)
	const nofile = 64
	p := l.startTether(cfg, tetherOpts{nofile: nofile})
	warm := startLoad(t, loadSpec{NS: l.CL, Addr: lbClientSide + ":8080", Clients: 2, Requests: 5, Duration: 10 * time.Second})
	if r := warm.wait(); r.OK() != 10 {
		t.Fatalf("warm-up: %s", &r)
	}
	base := p.usage()
	t.Logf("baseline: %s", base)

	// Keepalive clients, each served once and holding its conn, until one
	// is not answered: tether is out of fds.
	type client struct {
		c  *net.TCPConn
		br *bufio.Reader
	}
	var held []client
	defer func() {
		for _, h := range held {
			h.c.Close()
		}
	}()
	var waiting []client
	for i := 0; ; i++ {
		if i > 2*nofile {
			t.Fatalf("%d conns held and tether still accepts (fds %d)", i, p.fds())
		}
		c, err := dialTimeout(l.CL, lbClientSide+":8080", 2*time.Second)
		if err != nil {
			t.Fatalf("held conn %d: %v", i, err)
		}
		br := bufio.NewReader(c)
		st, err := exGet(c, br, fmt.Sprintf("h%d", i), time.Second)
		if err != nil && isTimeout(err) {
			waiting = append(waiting, client{c, br}) // in the backlog, its GET sent
			break
		}
		if err != nil || st != 200 {
			t.Fatalf("held conn %d: status %d, %v", i, st, err)
		}
		held = append(held, client{c, br})
	}
	atLimit := time.Now()
	if !exWaitLog(p, "accept failed", "too many open files", 3*time.Second) {
		t.Fatalf("no \"accept failed\" log naming too many open files\n%s", p.logTail())
	}
	t.Logf("at the limit after %d held conns; tether has %d fds", len(held), p.fds())
	for i := 0; i < 4; i++ {
		c, err := dialTimeout(l.CL, lbClientSide+":8080", 2*time.Second)
		if err != nil {
			t.Fatalf("client arriving at the limit: %v (the backlog should take it)", err)
		}
		if _, err := fmt.Fprintf(c, "GET / HTTP/1.1\r\nHost: faults\r\nX-Req-Id: w%d\r\n\r\n", i); err != nil {
			t.Fatal(err)
		}
		waiting = append(waiting, client{c, bufio.NewReader(c)})
	}
	defer func() {
		for _, w := range waiting {
			w.c.Close()
		}
	}()

	// At the limit: no busy loop.
	cpu0, t0 := exCPU(t, p.pid()), time.Now()
	time.Sleep(3 * time.Second)
	cpu := exCPU(t, p.pid()) - cpu0
	share := float64(cpu) / float64(time.Since(t0))
	t.Logf("CPU at the fd limit: %s over %s (%.1f%% of one core)", cpu, time.Since(t0).Round(time.Millisecond), 100*share)
	if share > 0.10 {
		t.Errorf("tether used %.1f%% of a core at the fd limit (bound 10%%): the accept loop spins", 100*share)
	}

	// The fds free up: the waiting clients are served from the backlog.
	for _, h := range held {
		h.c.Close()
	}
	limitFor := time.Since(atLimit)
	held = nil
	released := time.Now()
	var wg sync.WaitGroup
	took := make([]time.Duration, len(waiting))
	errs := make([]error, len(waiting))
	for i, w := range waiting {
		wg.Add(1)
		go func() {
			defer wg.Done()
			_ = w.c.SetDeadline(time.Now().Add(5 * time.Second))
			st, err := exRead(w.br)
			took[i] = time.Since(released)
			if err == nil && st != 200 {
				err = fmt.Errorf("status %d", st)
			}
			errs[i] = err
		}()
	}
	wg.Wait()
	var slowest time.Duration
	for i := range waiting {
		if errs[i] != nil {
			t.Errorf("client %d that arrived at the limit: %v (after %s)\n%s", i, errs[i], took[i], p.logTail())
		}
		slowest = max(slowest, took[i])
	}
	t.Logf("clients that waited in the backlog answered within %s of the release", slowest.Round(time.Millisecond))
	if slowest > 2500*time.Millisecond {
		t.Errorf("the waiting clients were answered %s after the fds freed up (bound 2.5 s)", slowest)
	}
	after := startLoad(t, loadSpec{NS: l.CL, Addr: lbClientSide + ":8080", Clients: 4, Requests: 10, Duration: 10 * time.Second, Timeout: 2 * time.Second})
	if r := after.wait(); r.OK() != 40 || r.Hung > 0 {
		t.Errorf("after the recovery: %s", &r)
	}

	// Rate-limited logging: at most one "accept failed" line a second.
	lines := len(p.logLines("accept failed"))
	if bound := int(limitFor/time.Second) + 2; lines > bound {
		t.Errorf("%d \"accept failed\" lines in %s at the limit (bound %d)", lines, limitFor, bound)
	}
	t.Logf("%d \"accept failed\" lines in %s at the limit", lines, limitFor.Round(time.Millisecond))
	for _, w := range waiting {
		w.c.Close()
	}
	waiting = nil
	u := p.settles(base, 2, 10*time.Second)
	t.Logf("after: %s", u)
}
