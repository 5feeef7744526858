package faults

import (
	"bufio"
	"errors"
	"fmt"
	"io"
	"net"
	"net/http"
	"os"
	"strconv"
	"strings"
	"sync"
	"syscall"
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

// exPortRange is the tiny ephemeral port range of TestFaultEphemeralPorts:
// ten ports, so ten conns toward one member address.
const exPortRange = "40000 40009"

// Fault: tether's ephemeral ports toward a member run out
// (net.ipv4.ip_local_port_range = 40000-40009 in lb: ten conns per member
// address) while clients hold member conns: an http virtual server whose
// pool never reuses (reuse = "never": one member conn per client conn,
// held for the client conn's life) and a tcp virtual server (one member
// conn per relay). The server profile closes with drain-reset, so a
// closed member conn leaves no TIME_WAIT holding its port.
//
// Load: 15 keepalive http clients, each served one GET and keeping its
// conn (10 ports for them and the health checks); then 12 echo relays.
//
// Bound: an http client beyond the ports is answered 502 within 1 s (no
// connect timeout: EADDRNOTAVAIL is immediate), its access line saying
// "no local port free toward 198.18.1.2:80 ... cannot assign requested
// address"; a tcp client beyond them is reset at once and the log says
// the same. The member is never marked down (it is not its fault). Once
// the held conns close, a new client is served within 1 s, and 40
// one-request conns (four times the port range) are all served.
//
// Nothing lost: every client gets 200 or that 502 (or, tcp, a byte-exact
// echo or the reset), none hangs; tether recovers without a restart and
// its fds and goroutines come back to the baseline.
func TestFaultEphemeralPorts(t *testing.T) {
	l := newLab(t, 1)
	l.startMember(1, memberConfig{HTTP: true, Echo: true})
	cfg := "[tcp_profile.lbside]\nparent = \"tcp\"\nclose = \"drain-reset\"\n\n" +
		webAndEcho(1, `reuse = "never"`, "[pool.echo.health]\ntype = \"none\"\n", "server_profile = \"lbside\"\n", "server_profile = \"lbside\"\n")
	p := l.startTether(cfg, tetherOpts{})
	warm := startLoad(t, loadSpec{NS: l.CL, Addr: lbClientSide + ":8080", Clients: 2, Requests: 5, Duration: 10 * time.Second})
	if r := warm.wait(); r.OK() != 10 {
		t.Fatalf("warm-up: %s", &r)
	}
	if err := echoExact(l.CL, lbClientSide+":7007", 1<<16, 5*time.Second); err != nil {
		t.Fatalf("warm-up echo: %v", err)
	}
	base := p.usage()
	origRange := strings.Join(strings.Fields(l.run(l.LB, "sysctl", "-n", "net.ipv4.ip_local_port_range")), " ")
	l.sysctl(l.LB, "net.ipv4.ip_local_port_range", exPortRange)
	restored := false
	restore := func() {
		if !restored {
			restored = true
			l.sysctl(l.LB, "net.ipv4.ip_local_port_range", origRange)
		}
	}
	defer restore()

	// http: keepalive clients that each hold a member conn.
	type client struct {
		c  *net.TCPConn
		br *bufio.Reader
	}
	var held []client
	closeHeld := func() {
		for _, h := range held {
			h.c.Close()
		}
		held = nil
	}
	defer closeHeld()
	refused := 0
	for i := 0; i < 15; i++ {
		c, err := dialTimeout(l.CL, lbClientSide+":8080", 2*time.Second)
		if err != nil {
			t.Fatalf("client %d: %v", i, err)
		}
		start := time.Now()
		st, err := exGet(c, bufio.NewReader(c), fmt.Sprintf("p%d", i), 3*time.Second)
		took := time.Since(start)
		switch {
		case err != nil:
			t.Fatalf("client %d: no answer: %v (after %s)", i, err, took)
		case st == 200:
			held = append(held, client{c, nil})
		case st == 502:
			refused++
			c.Close()
			if took > time.Second {
				t.Errorf("client %d: 502 after %s (bound 1 s)", i, took)
			}
		default:
			t.Fatalf("client %d: status %d", i, st)
		}
	}
	t.Logf("http: %d clients hold a member conn, %d answered 502", len(held), refused)
	if refused < 5 || len(held) > 10 {
		t.Fatalf("%d clients served with %d ports: the port range did not hold", len(held), 10)
	}
	// The access lines (written after the answers): each 502 says that the
	// local ports ran out.
	named, other := 0, 0
	for deadline := time.Now().Add(time.Second); ; {
		named, other = 0, 0
		for _, m := range p.logLines("request") {
			if s, _ := m["status"].(float64); s != 502 {
				continue
			}
			e, _ := m["error"].(string)
			if strings.Contains(e, "no local port free toward "+memberIP(1)) && strings.Contains(e, "cannot assign requested address") {
				named++
			} else {
				other++
				t.Errorf("a 502's access line does not say that the local ports ran out: %v", m)
			}
		}
		if named+other >= refused || time.Now().After(deadline) {
			break
		}
		time.Sleep(20 * time.Millisecond)
	}
	if named != refused {
		t.Errorf("%d access lines name the port shortage for %d 502s", named, refused)
	}

	// tcp: relays that each hold a member conn; the 11th is reset.
	var relays []*net.TCPConn
	defer func() {
		for _, c := range relays {
			c.Close()
		}
	}()
	resets := 0
	for i := 0; i < 12; i++ {
		c, err := dialTimeout(l.CL, lbClientSide+":7007", 2*time.Second)
		if errors.Is(err, syscall.ECONNRESET) {
			resets++ // reset before the dial returned
			continue
		}
		if err != nil {
			t.Fatalf("echo client %d: %v", i, err)
		}
		_ = c.SetDeadline(time.Now().Add(2 * time.Second))
		msg := []byte(fmt.Sprintf("relay %d", i))
		buf := make([]byte, len(msg))
		_, err = c.Write(msg)
		if err == nil {
			_, err = io.ReadFull(c, buf)
		}
		switch {
		case err == nil && string(buf) == string(msg):
			relays = append(relays, c)
		case errors.Is(err, syscall.ECONNRESET) || errors.Is(err, io.EOF):
			resets++
			c.Close()
		default:
			t.Fatalf("echo client %d: %q, %v", i, buf, err)
		}
	}
	t.Logf("tcp: %d relays hold a member conn, %d clients reset", len(relays), resets)
	if resets < 2 || len(relays) > 10 {
		t.Fatalf("%d relays with %d ports", len(relays), 10)
	}
	if !exWaitLog(p, "no member could take the connection; client reset", "no local port free toward "+memberIP(1), 2*time.Second) {
		t.Errorf("no log line says the tcp clients were reset for want of local ports\n%s", p.logTail())
	}
	// Let the health checks run into the shortage: a member marked down
	// for it would answer 503 after the ports came back.
	time.Sleep(time.Second)
	if n := len(p.logLines("member down")); n > 0 {
		t.Errorf("the member was marked down %d times for tether's own port shortage\n%s", n, p.logTail())
	}

	// The ports free up: served again, no restart.
	closeHeld()
	for _, c := range relays {
		// A relay the client ends with FIN leaves tether's member side in
		// TIME_WAIT whatever the close mode (tether passes the FIN on and
		// so closes first toward the member; see the README): its port
		// would stay taken 60 s. Ended with RST, tether closes the member
		// side with drain-reset and the port is free at once.
		_ = c.SetLinger(0)
		c.Close()
	}
	relays = nil
	released := time.Now()
	for {
		c, err := dialTimeout(l.CL, lbClientSide+":8080", 2*time.Second)
		if err != nil {
			t.Fatal(err)
		}
		st, err := exGet(c, bufio.NewReader(c), "after", 2*time.Second)
		c.Close()
		if err == nil && st == 200 {
			break
		}
		if err != nil || st != 502 || time.Since(released) > time.Second {
			t.Fatalf("after the ports freed up (%s): status %d, %v", time.Since(released), st, err)
		}
		time.Sleep(20 * time.Millisecond)
	}
	t.Logf("served again %s after the held conns closed", time.Since(released).Round(time.Millisecond))
	short := startLoad(t, loadSpec{NS: l.CL, Addr: lbClientSide + ":8080", Clients: 4, Requests: 10, Close: true, Duration: 15 * time.Second, Timeout: 2 * time.Second})
	if r := short.wait(); r.OK() != 40 {
		t.Errorf("40 one-request conns over 10 ports after the recovery: %s", &r)
	}
	// Each relay ended this way leaves a TIME_WAIT toward the member: 3 of
	// the 10 ports. (64 KiB: a relay whose last read is short and arrives
	// with the client's FIN passes the FIN on a second late; see the
	// report.)
	for i := 0; i < 3; i++ {
		if err := echoExact(l.CL, lbClientSide+":7007", 1<<16, 3*time.Second); err != nil {
			t.Errorf("echo %d after the recovery: %v", i, err)
		}
	}
	restore()
	u := p.settles(base, 2, 10*time.Second)
	t.Logf("after: %s (baseline %s)", u, base)
}

// exSlow is one slowloris conn's fate.
type exSlow struct {
	first  time.Time // its first byte sent
	status int       // the answer's status (0: none)
	closed time.Time // when it read EOF (or an error)
	err    error     // how the read ended, when not EOF
}

// Fault: 10,000 slowloris clients: each opens a conn to an http virtual
// server (request_header_timeout 2 s, max_connections 12,000), sends a
// request line and one header field, and one more field a second later,
// never ending the head.
//
// Load: the 10,000 conns opened by 40 openers in parallel, and alongside
// them 8 legitimate keepalive clients sending GETs (20 ms apart) all the
// while.
//
// Bound: every slowloris conn is answered 408 and closed 2 s after its
// first byte (±1 s), the trickle notwithstanding; tether's RSS grows by
// less than 32 KiB per slowloris conn at the peak; the legitimate clients
// are all answered 200 with p99 under 1 s.
//
// Nothing lost: no legitimate request fails or hangs; no slowloris conn
// stays open; tether's fds and goroutines come back to the baseline.
func TestFaultSlowloris(t *testing.T) {
	l := newLab(t, 1)
	l.startMember(1, memberConfig{HTTP: true})
	cfg := httpPool(1, "") + fmt.Sprintf(`
[[virtual_server]]
name = "web"
listen = "%s:8080"
mode = "http"
pool = "web"
max_connections = 12000
[virtual_server.http]
request_header_timeout = "2s"
`, lbClientSide)
	p := l.startTether(cfg, tetherOpts{})
	warm := startLoad(t, loadSpec{NS: l.CL, Addr: lbClientSide + ":8080", Clients: 8, Requests: 5, Duration: 10 * time.Second})
	if r := warm.wait(); r.OK() != 40 {
		t.Fatalf("warm-up: %s", &r)
	}
	base, rss0 := p.usage(), exRSS(t, p.pid())
	const timeout = 2 * time.Second

	// tether's RSS, sampled while the slowloris conns are open.
	var peak int64
	stopRSS := make(chan struct{})
	rssDone := make(chan struct{})
	go func() {
		defer close(rssDone)
		for {
			if b, err := os.ReadFile(fmt.Sprintf("/proc/%d/status", p.pid())); err == nil {
				for _, line := range strings.Split(string(b), "\n") {
					if rest, ok := strings.CutPrefix(line, "VmRSS:"); ok {
						kb, _ := strconv.ParseInt(strings.TrimSuffix(strings.TrimSpace(rest), " kB"), 10, 64)
						peak = max(peak, kb<<10)
					}
				}
			}
			select {
			case <-stopRSS:
				return
			case <-time.After(50 * time.Millisecond):
			}
		}
	}()

	legit := startLoad(t, loadSpec{NS: l.CL, Addr: lbClientSide + ":8080", Clients: 8, Duration: 30 * time.Second, Pause: 20 * time.Millisecond, Timeout: 5 * time.Second})

	const n, openers = 10000, 40
	slow := make([]exSlow, n)
	var readers sync.WaitGroup
	var openErrs sync.Map
	var opening sync.WaitGroup
	openStart := time.Now()
	for w := 0; w < openers; w++ {
		opening.Add(1)
		go func() {
			defer opening.Done()
			type pending struct {
				c     *net.TCPConn
				first time.Time
			}
			trickle := make(chan pending, n/openers)
			trickled := make(chan struct{})
			go func() {
				defer close(trickled)
				for pc := range trickle {
					time.Sleep(time.Until(pc.first.Add(time.Second)))
					_, _ = pc.c.Write([]byte("X-Slow: 1\r\n"))
				}
			}()
			for i := w; i < n; i += openers {
				c, err := dialTimeout(l.CL, lbClientSide+":8080", 10*time.Second)
				if err != nil {
					openErrs.Store(i, err)
					continue
				}
				s := &slow[i]
				s.first = time.Now()
				if _, err := fmt.Fprintf(c, "GET /slow HTTP/1.1\r\nHost: faults\r\nX-Req-Id: s%d\r\n", i); err != nil {
					openErrs.Store(i, err)
					c.Close()
					continue
				}
				trickle <- pending{c, s.first}
				readers.Add(1)
				go func() {
					defer readers.Done()
					defer c.Close()
					_ = c.SetReadDeadline(s.first.Add(10 * time.Second))
					br := bufio.NewReaderSize(c, 512)
					resp, err := http.ReadResponse(br, nil)
					if err == nil {
						s.status = resp.StatusCode
						_, err = io.Copy(io.Discard, resp.Body)
						resp.Body.Close()
						if err == nil {
							_, err = br.ReadByte() // the close
						}
					}
					s.closed = time.Now()
					if err != io.EOF {
						s.err = err
					}
				}()
			}
			close(trickle)
			<-trickled
		}()
	}
	opening.Wait()
	t.Logf("%d slowloris conns opened in %s", n, time.Since(openStart).Round(time.Millisecond))
	openErrs.Range(func(k, v any) bool {
		t.Errorf("slowloris conn %v: %v", k, v)
		return false
	})
	readers.Wait()
	close(stopRSS)
	<-rssDone
	r := legit.stop()

	// The slowloris conns: 408, closed at the header timeout.
	var early, late, no408 int
	var minD, maxD time.Duration = time.Hour, 0
	for i := range slow {
		s := &slow[i]
		if s.first.IsZero() {
			continue
		}
		d := s.closed.Sub(s.first)
		minD, maxD = min(minD, d), max(maxD, d)
		if s.status != 408 || s.err != nil {
			if no408 < 5 {
				t.Errorf("slowloris conn %d: status %d, %v after %s", i, s.status, s.err, d)
			}
			no408++
		}
		switch {
		case d < timeout-time.Second:
			early++
		case d > timeout+time.Second:
			late++
		}
	}
	t.Logf("slowloris conns closed %s to %s after their first byte (request_header_timeout %s)", minD.Round(time.Millisecond), maxD.Round(time.Millisecond), timeout)
	if no408 > 0 || early > 0 || late > 0 {
		t.Errorf("of %d slowloris conns: %d without a 408 and a clean close, %d closed early, %d late (bound %s ± 1 s)", n, no408, early, late, timeout)
	}

	// Memory.
	perConn := (peak - rss0) / n
	t.Logf("RSS: %d MiB before, %d MiB at the peak: %d KiB per slowloris conn", rss0>>20, peak>>20, perConn>>10)
	if perConn > 32<<10 {
		t.Errorf("tether's RSS grew %d KiB per slowloris conn (bound 32 KiB)", perConn>>10)
	}

	// The legitimate clients alongside.
	t.Logf("legitimate clients: %s, p99 %s", &r, r.P99())
	if r.Sent == 0 || r.OK() != r.Sent || r.Hung > 0 || r.Transport > 0 {
		t.Errorf("legitimate clients not all served: %s", &r)
	}
	if r.P99() > time.Second {
		t.Errorf("legitimate clients' p99 %s (bound 1 s)", r.P99())
	}

	u := p.settles(base, 4, 20*time.Second)
	t.Logf("after: %s (baseline %s); RSS %d MiB", u, base, exRSS(t, p.pid())>>20)
}
