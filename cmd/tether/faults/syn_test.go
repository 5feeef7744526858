package faults

import (
	"bufio"
	"fmt"
	"io"
	"net/http"
	"sort"
	"strings"
	"sync"
	"testing"
	"time"
)

// SYN drops toward one member. Fault: lb drops every SYN it sends out of
// lb-m1 (iptables OUTPUT -o lb-m1 --syn DROP), so member 1 accepts no new
// conn while the conns already open to it (pooled ones) keep working. The
// pools: "web" (http) and "echo" (tcp) over both members, connect_timeout
// 1 s, connect_retries 2, tcp health checks every 500 ms (timeout 400 ms,
// fall 2, rise 1).
//
// Load: with pools warm to both members, the SYN drop starts and at once a
// burst of concurrent one-shot GETs (more than member 1's idle conns, each
// holding its member conn 200 ms) and concurrent tcp echo relays; once
// health has marked member 1 down, 8 keepalive clients and 2 short ones
// (with GETs that hold their member conn 20 ms, so member 1's warm conns
// would not be enough) and more echo relays; the rule removed, the same
// again.
//
// Bounds: a request or relay that gets a new conn to member 1 waits
// connect_timeout, then tether dials the next member: it takes
// connect_timeout (± 0.5 s) more than an unaffected one. Member 1's pooled
// conns still serve GETs (only SYNs drop). Health marks member 1 down
// within fall × interval + timeout + 0.6 s of the rule; from then on no
// request takes more than connect_timeout / 2 (none waits one). The
// member's counters show the failed connects and failed checks. Removing
// the rule, member 1 is up again within interval + 1 s and gets traffic.
//
// Nothing lost: every GET is answered 200 (never 502/503: another member
// is up), every tcp relay is byte-exact, no client hangs, and tether's
// fds and goroutines come back to their baseline.
func TestFaultSYNDrop(t *testing.T) {
	l := newLab(t, 2)
	l.startMember(1, memberConfig{HTTP: true, Echo: true})
	l.startMember(2, memberConfig{HTTP: true, Echo: true})
	const connectTimeout = time.Second
	health := "[pool.echo.health]\ntype = \"tcp\"\ninterval = \"500ms\"\ntimeout = \"400ms\"\nrise = 1\nfall = 2\n"
	cfg := webAndEcho(2, "connect_timeout = \"1s\"\nconnect_retries = 2\n", "connect_timeout = \"1s\"\nconnect_retries = 2\n"+health, "", "")
	p := l.startTether(cfg, tetherOpts{})
	base := p.usage()
	web, echo := lbClientSide+":8080", lbClientSide+":7007"
	m1, m1echo := fmt.Sprintf("%s:%d", memberIP(1), memberHTTPPort), fmt.Sprintf("%s:%d", memberIP(1), memberEchoPort)
	m2 := fmt.Sprintf("%s:%d", memberIP(2), memberHTTPPort)

	// Warm the pools: conns to both members, idle between requests.
	ka := startLoad(t, loadSpec{NS: l.CL, Addr: web, Clients: 4, Requests: 10, Duration: 10 * time.Second})
	short := startLoad(t, loadSpec{NS: l.CL, Addr: web, Clients: 2, Requests: 5, Close: true, Duration: 10 * time.Second})
	r, rs := ka.wait(), short.wait()
	if r.OK() != 40 || rs.OK() != 10 || r.ByMember["m1"] == 0 || r.ByMember["m2"] == 0 {
		t.Fatalf("warm-up: keepalive %s\nshort %s", &r, &rs)
	}
	before := p.members("web")
	idle1, idle2 := before[m1].Idle, before[m2].Idle
	if idle1 == 0 {
		t.Fatalf("no pooled conn to member 1 after the warm-up: %+v", before[m1])
	}
	echoBefore := p.members("echo")[m1echo].Counters

	// The fault, and at once a burst that needs new conns to member 1.
	const hold = 200 * time.Millisecond
	t0 := time.Now()
	unblock := l.iptables(l.LB, "OUTPUT", "-o", "lb-m1", "-p", "tcp", "--syn", "-j", "DROP")
	burst := 2*(idle1+idle2) + 4
	var wg sync.WaitGroup
	wg.Add(1)
	var relays []srRelay
	go func() {
		defer wg.Done()
		relays = srEchoBurst(l.CL, echo, 4, 64<<10, 5*time.Second)
	}()
	shots := srGetBurst(l.CL, web, fmt.Sprintf("/?delay=%d", hold.Milliseconds()), burst, 5*time.Second)
	wg.Wait()
	var affected, fromM1 []time.Duration
	for i, s := range shots {
		if s.err != nil || s.status != 200 {
			t.Fatalf("burst GET %d during the SYN drop: status %d, err %v (took %s)", i, s.status, s.err, s.took)
		}
		if s.member == "m1" {
			fromM1 = append(fromM1, s.took)
		}
		if s.took > hold+connectTimeout/2 {
			affected = append(affected, s.took)
			if s.member != "m2" {
				t.Errorf("GET %d waited %s but was answered by %s, not by the next member", i, s.took, s.member)
			}
		}
	}
	srSort(affected)
	t.Logf("burst of %d GETs (member 1 had %d idle conns, member 2 %d): %d answered by member 1's pooled conns (%s), %d waited a connect (%s)",
		burst, idle1, idle2, len(fromM1), srJoin(fromM1), len(affected), srJoin(affected))
	if len(fromM1) == 0 {
		t.Errorf("no GET of the burst was answered by member 1's pooled conns: only SYNs drop, they should still serve")
	}
	if len(affected) == 0 {
		t.Fatalf("no GET of the burst waited a connect to member 1: the burst did not need a new conn to it")
	}
	for _, d := range affected {
		if wait := d - hold; wait < connectTimeout-500*time.Millisecond || wait > connectTimeout+500*time.Millisecond {
			t.Errorf("a GET that needed a new conn to member 1 took %s: %s over the member's %s, want connect_timeout %s ± 0.5 s", d, wait, hold, connectTimeout)
		}
	}
	var slowRelays []time.Duration
	for i, rl := range relays {
		if rl.err != nil {
			t.Fatalf("tcp relay %d during the SYN drop: %v (after %s)", i, rl.err, rl.took)
		}
		if rl.took > connectTimeout/2 {
			slowRelays = append(slowRelays, rl.took)
			if rl.took > connectTimeout+500*time.Millisecond {
				t.Errorf("tcp relay %d took %s, want connect_timeout %s ± 0.5 s", i, rl.took, connectTimeout)
			}
		}
	}
	t.Logf("tcp relays during the SYN drop: %v", srTooks(relays))
	if len(slowRelays) == 0 {
		t.Errorf("no tcp relay waited a connect to member 1: %v", srTooks(relays))
	}

	// Health marks member 1 down in both pools.
	downBound := 2*500*time.Millisecond + 400*time.Millisecond + 600*time.Millisecond
	downWeb := srWaitHealth(p, "web", m1, "down", t0, 5*time.Second)
	downEcho := srWaitHealth(p, "echo", m1echo, "down", t0, 5*time.Second)
	t.Logf("member 1 down %s (web) and %s (echo) after the rule", downWeb, downEcho)
	if downWeb > downBound || downEcho > downBound {
		t.Errorf("member 1 marked down after %s (web), %s (echo): want within fall × interval + timeout + 0.6 s = %s", downWeb, downEcho, downBound)
	}
	mv := p.members("web")[m1]
	cs := mv.Counters
	if cs.ConnectFailures < uint64(len(affected)) || cs.CheckFailures == 0 || mv.Health != "down" || cs.HealthTransitions == 0 {
		t.Errorf("member 1's counters after the SYN drop: %d connect failures (want >= %d), %d failed checks, health %s, %d transitions",
			cs.ConnectFailures, len(affected), cs.CheckFailures, mv.Health, cs.HealthTransitions)
	}
	ecs := p.members("echo")[m1echo].Counters
	if ecs.ConnectFailures <= echoBefore.ConnectFailures || ecs.CheckFailures == 0 {
		t.Errorf("echo member 1's counters after the SYN drop: %+v", ecs)
	}

	// Member 1 down: nobody waits a connect_timeout any more.
	const fastBound = connectTimeout / 2
	ka = startLoad(t, loadSpec{NS: l.CL, Addr: web, Clients: 8, Requests: 15, Path: "/?delay=20", Duration: 20 * time.Second})
	short = startLoad(t, loadSpec{NS: l.CL, Addr: web, Clients: 2, Requests: 10, Close: true, Path: "/?delay=20", Duration: 20 * time.Second})
	relays = srEchoBurst(l.CL, echo, 4, 64<<10, 5*time.Second)
	r, rs = ka.wait(), short.wait()
	if r.OK() != 120 || rs.OK() != 20 || r.Hung+rs.Hung != 0 || r.ByMember["m1"]+rs.ByMember["m1"] != 0 {
		t.Fatalf("member 1 down: keepalive %s\nshort %s", &r, &rs)
	}
	maxLat := max(srMax(r.Latencies), srMax(rs.Latencies))
	t.Logf("member 1 down: slowest of %d requests %s (keepalive p99 %s)", r.Sent+rs.Sent, maxLat, r.P99())
	if maxLat > fastBound {
		t.Errorf("member 1 down, a request still took %s (bound %s): something waited a connect", maxLat, fastBound)
	}
	for i, rl := range relays {
		if rl.err != nil || rl.took > fastBound {
			t.Errorf("tcp relay %d with member 1 down: took %s, err %v (bound %s)", i, rl.took, rl.err, fastBound)
		}
	}

	// The rule removed: member 1 rises and gets traffic again.
	t1 := time.Now()
	unblock()
	upBound := 500*time.Millisecond + time.Second
	upWeb := srWaitHealth(p, "web", m1, "up", t1, 5*time.Second)
	upEcho := srWaitHealth(p, "echo", m1echo, "up", t1, 5*time.Second)
	t.Logf("member 1 up %s (web) and %s (echo) after the rule's removal", upWeb, upEcho)
	if upWeb > upBound || upEcho > upBound {
		t.Errorf("member 1 up after %s (web), %s (echo): want within interval + 1 s = %s", upWeb, upEcho, upBound)
	}
	echoUp := p.members("echo")[m1echo].Counters.Connects
	ka = startLoad(t, loadSpec{NS: l.CL, Addr: web, Clients: 4, Requests: 10, Duration: 10 * time.Second})
	short = startLoad(t, loadSpec{NS: l.CL, Addr: web, Clients: 2, Requests: 5, Close: true, Duration: 10 * time.Second})
	relays = srEchoBurst(l.CL, echo, 4, 64<<10, 5*time.Second)
	r, rs = ka.wait(), short.wait()
	if r.OK() != 40 || rs.OK() != 10 || r.ByMember["m1"]+rs.ByMember["m1"] == 0 {
		t.Fatalf("member 1 back: keepalive %s\nshort %s", &r, &rs)
	}
	for i, rl := range relays {
		if rl.err != nil {
			t.Errorf("tcp relay %d with member 1 back: %v", i, rl.err)
		}
	}
	if got := p.members("echo")[m1echo].Counters.Connects; got == echoUp {
		t.Errorf("no tcp relay went to member 1 after it came back")
	}
	u := p.settles(base, 2, 10*time.Second)
	t.Logf("baseline %s, after %s", base, u)
}

// srShot is one GET on a conn of its own.
type srShot struct {
	status int
	member string
	took   time.Duration
	err    error
}

// srGet sends one GET with Connection: close on a new conn from ns and
// reads its whole answer, all within timeout.
func srGet(ns, addr, path string, timeout time.Duration) srShot {
	start := time.Now()
	c, err := dialTimeout(ns, addr, timeout)
	if err != nil {
		return srShot{err: err, took: time.Since(start)}
	}
	defer c.Close()
	_ = c.SetDeadline(start.Add(timeout))
	if _, err := fmt.Fprintf(c, "GET %s HTTP/1.1\r\nHost: faults\r\nConnection: close\r\n\r\n", path); err != nil {
		return srShot{err: err, took: time.Since(start)}
	}
	resp, err := http.ReadResponse(bufio.NewReader(c), nil)
	if err != nil {
		return srShot{err: err, took: time.Since(start)}
	}
	_, err = io.Copy(io.Discard, resp.Body)
	resp.Body.Close()
	return srShot{status: resp.StatusCode, member: resp.Header.Get("X-Member"), took: time.Since(start), err: err}
}

// srGetBurst sends n GETs at once, each on its own conn.
func srGetBurst(ns, addr, path string, n int, timeout time.Duration) []srShot {
	out := make([]srShot, n)
	var wg sync.WaitGroup
	start := make(chan struct{})
	for i := range out {
		wg.Add(1)
		go func() {
			defer wg.Done()
			<-start
			out[i] = srGet(ns, addr, path, timeout)
		}()
	}
	close(start)
	wg.Wait()
	return out
}

// srRelay is one timed echoExact.
type srRelay struct {
	took time.Duration
	err  error
}

// srEchoBurst runs n byte-exact echo relays of size bytes at once.
func srEchoBurst(ns, addr string, n, size int, timeout time.Duration) []srRelay {
	out := make([]srRelay, n)
	var wg sync.WaitGroup
	start := make(chan struct{})
	for i := range out {
		wg.Add(1)
		go func() {
			defer wg.Done()
			<-start
			t := time.Now()
			err := echoExact(ns, addr, size, timeout)
			out[i] = srRelay{took: time.Since(t), err: err}
		}()
	}
	close(start)
	wg.Wait()
	return out
}

func srTooks(rs []srRelay) []time.Duration {
	var d []time.Duration
	for _, r := range rs {
		d = append(d, r.took.Round(time.Millisecond))
	}
	return d
}

// srWaitHealth polls pool's member addr until its health is want and
// returns how long after since that was seen; it fails the test after
// within.
func srWaitHealth(p *tetherProc, pool, addr, want string, since time.Time, within time.Duration) time.Duration {
	p.t.Helper()
	deadline := time.Now().Add(within)
	for {
		mv := p.members(pool)[addr]
		if mv.Health == want {
			return time.Since(since)
		}
		if time.Now().After(deadline) {
			p.t.Fatalf("pool %s member %s: health %s, not %s after %s\n%s", pool, addr, mv.Health, want, within, p.logTail())
		}
		time.Sleep(20 * time.Millisecond)
	}
}

func srSort(d []time.Duration) {
	sort.Slice(d, func(i, j int) bool { return d[i] < d[j] })
}

func srMax(d []time.Duration) time.Duration {
	var m time.Duration
	for _, x := range d {
		m = max(m, x)
	}
	return m
}

// srJoin formats durations rounded to the millisecond.
func srJoin(d []time.Duration) string {
	s := make([]string, len(d))
	for i, x := range d {
		s[i] = x.Round(time.Millisecond).String()
	}
	return strings.Join(s, " ")
}
