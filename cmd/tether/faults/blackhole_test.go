package faults

import (
	"bufio"
	"bytes"
	"errors"
	"fmt"
	"io"
	"net"
	"net/http"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"
)

// Fault 1, the black-holed member: every packet between tether and member 1
// is dropped both ways (l.blackhole), so the member vanishes without a FIN
// or an RST. Two virtual servers per mode share ONE pool and dial it with
// different server profiles, so each must find the dead member at its own
// profile's time:
//
//   - a member conn with nothing unacknowledged (idle in a pool, or a relay
//     with no bytes in flight) by keepalive, at keepalive_idle +
//     keepalive_interval x keepalive_probes;
//   - a member conn with bytes in flight by TCP_USER_TIMEOUT, at
//     user_timeout.
//
// Linux stops keepalive probing at the first probe tick past user_timeout
// when user_timeout is set (the probe count is then ignored: see the
// kernel's tcp_keepalive_timer). The profiles below put user_timeout in
// (idle + (probes-1) x interval, idle + probes x interval], where that tick
// is the profile's idle + probes x interval: both figures hold, and differ.

// bhProfile is a server-side profile of the suite, with the figures it
// promises.
type bhProfile struct {
	name                  string
	kaIdle, kaIntvl, user time.Duration
	probes                int
}

// idleDead is when keepalive declares a silent member dead: idle +
// probes x interval after the last byte received.
func (p bhProfile) idleDead() time.Duration {
	return p.kaIdle + time.Duration(p.probes)*p.kaIntvl
}

// inflightDead is when the user timeout declares it dead: user_timeout
// after the unacknowledged bytes went out.
func (p bhProfile) inflightDead() time.Duration { return p.user }

func (p bhProfile) toml() string {
	return fmt.Sprintf("[tcp_profile.%s]\nkeepalive_idle = %q\nkeepalive_interval = %q\nkeepalive_probes = %d\nuser_timeout = %q\nidle_timeout = \"0s\"\n\n",
		p.name, p.kaIdle, p.kaIntvl, p.probes, p.user)
}

var (
	// bhSrvA: idle conns dead at 1 + 1x2 = 3 s, in-flight ones at 2 s.
	bhSrvA = bhProfile{name: "bhsrvA", kaIdle: time.Second, kaIntvl: 2 * time.Second, probes: 1, user: 2 * time.Second}
	// bhSrvB: idle conns dead at 1 + 2x2 = 5 s, in-flight ones at 4 s.
	bhSrvB = bhProfile{name: "bhsrvB", kaIdle: time.Second, kaIntvl: 2 * time.Second, probes: 2, user: 4 * time.Second}
)

// bhSlack is the bound's margin either side of a profile's figure.
const bhSlack = time.Second

// bhProfiles is the suite's profiles: the two server profiles, and the
// client profiles of virtual servers A (close = "reset": its clients get an
// RST) and B (close = "graceful": a FIN).
func bhProfiles() string {
	return bhSrvA.toml() + bhSrvB.toml() + `[tcp_profile.bhcliR]
close = "reset"
idle_timeout = "0s"

[tcp_profile.bhcliG]
close = "graceful"
idle_timeout = "0s"

`
}

// bhVS is a virtual server of the suite.
type bhVS struct {
	name, port  string
	srv         bhProfile
	clientClose string // "reset" or "graceful"
}

func (v bhVS) addr() string { return lbClientSide + ":" + v.port }

func (v bhVS) toml(mode, pool string) string {
	cli := "bhcliG"
	if v.clientClose == "reset" {
		cli = "bhcliR"
	}
	return fmt.Sprintf("[[virtual_server]]\nname = %q\nlisten = %q\nmode = %q\npool = %q\nclient_profile = %q\nserver_profile = %q\n\n",
		v.name, v.addr(), mode, pool, cli, v.srv.name)
}

// bhWithin fails unless took is within bhSlack of want.
func bhWithin(t *testing.T, what string, took, want time.Duration) {
	t.Helper()
	if took < want-bhSlack || took > want+bhSlack {
		t.Errorf("%s: after %s, want %s ± %s", what, took.Round(time.Millisecond), want, bhSlack)
	}
}

// bhLogTime is a log line's time.
func bhLogTime(t *testing.T, line map[string]any) time.Time {
	t.Helper()
	s, _ := line["ts"].(string)
	ts, err := time.Parse("2006-01-02T15:04:05.000Z0700", s)
	if err != nil {
		t.Fatalf("log line time %q: %v", s, err)
	}
	return ts
}

func bhStr(line map[string]any, key string) string {
	s, _ := line[key].(string)
	return s
}

// bhMemberOf maps the client ports of virtual server vs's live conns to
// the member each is relayed to (tcp mode), from /api/v1/connections.
func bhMemberOf(p *tetherProc, vs string) map[string]string {
	p.t.Helper()
	var body struct {
		Connections []struct {
			Client struct{ Remote string }  `json:"client"`
			Server *struct{ Remote string } `json:"server"`
		} `json:"connections"`
	}
	p.get("/api/v1/connections?virtual_server="+vs, &body)
	out := map[string]string{}
	for _, c := range body.Connections {
		if c.Server != nil {
			out[c.Client.Remote] = c.Server.Remote
		}
	}
	return out
}

// bhRelay is one client conn through a tcp-mode virtual server, read by a
// goroutine until it ends.
type bhRelay struct {
	vs       bhVS
	c        *net.TCPConn
	member   string // the member's address
	inflight bool   // bytes are written toward the member right after the black hole

	mu    sync.Mutex
	got   bytes.Buffer
	ended time.Time
	err   error // io.EOF (FIN), a reset ...
	done  chan struct{}
}

func (r *bhRelay) read() {
	defer close(r.done)
	buf := make([]byte, 32<<10)
	for {
		n, err := r.c.Read(buf)
		r.mu.Lock()
		r.got.Write(buf[:n])
		if err != nil {
			r.ended, r.err = time.Now(), err
			r.mu.Unlock()
			return
		}
		r.mu.Unlock()
	}
}

// waitGot waits up to d until the relay has read want (from its start).
func (r *bhRelay) waitGot(want []byte, d time.Duration) error {
	deadline := time.Now().Add(d)
	for {
		r.mu.Lock()
		ok, n, err := bytes.Equal(r.got.Bytes(), want), r.got.Len(), r.err
		r.mu.Unlock()
		if ok {
			return nil
		}
		if err != nil || time.Now().After(deadline) || n > len(want) {
			return fmt.Errorf("echo through %s: read %d bytes (want %d, equal %v), err %v", r.vs.name, n, len(want), ok, err)
		}
		time.Sleep(10 * time.Millisecond)
	}
}

func (r *bhRelay) result() (time.Time, error) {
	r.mu.Lock()
	defer r.mu.Unlock()
	return r.ended, r.err
}

// TestFaultBlackholeDetection: fault 1 on conns with no request in
// progress, tcp mode and http mode, each with two virtual servers on one
// pool: A (server profile bhsrvA: 3 s idle, 2 s in flight; client close
// "reset") and B (bhsrvB: 5 s idle, 4 s in flight; client close
// "graceful"). The pools have no health monitor, so only keepalive and the
// user timeout can find the member.
//
// Load: per tcp virtual server 8 relays through an echo member, 4 to each
// member: 2 idle (their last bytes echoed just before the black hole) and
// 2 that write 4 KiB right after it; the tcp pool's preconnect stock (2
// idle conns per member per profile); the http pool's min_idle conns (2
// per member per virtual server) with no request. Then, during the black
// hole, 2 new relays of 64 KiB per tcp virtual server; after it, 4 per tcp
// virtual server and 20 requests per http one.
//
// Bound: a relay to member 1 ends at its profile's figure ± 1 s (idle:
// idleDead, bytes in flight: user_timeout), its client gets an RST (A) or
// a FIN (B), and its access line says closed_first "server timed-out". A
// pooled idle conn to member 1 (preconnect stock, reuse pool) is dropped
// at its profile's idleDead ± 1 s (it idled at most keepalive_idle before
// the black hole; the reaper peeks every 250 ms), logged as a stale idle
// conn with its profile and "connection timed out".
//
// Nothing lost: the relays to member 2 carry on byte-exact through the
// black hole; every idle conn to member 1 is dropped (StaleOnPeek counts
// them exactly, per virtual server), none is lent again (the stocks hold
// none for member 1; a client that comes during the black hole is relayed
// through member 2), and the dead member teaches no idle timeout. After the
// link comes back, both virtual servers of each mode serve through both
// members again, and tether's fds and goroutines come back to baseline.
func TestFaultBlackholeDetection(t *testing.T) {
	t.Parallel()
	l := newLab(t, 2)
	l.startMember(1, memberConfig{HTTP: true, Echo: true})
	l.startMember(2, memberConfig{HTTP: true, Echo: true})
	m1, m2 := memberIP(1), memberIP(2)
	tA := bhVS{name: "tA", port: "7001", srv: bhSrvA, clientClose: "reset"}
	tB := bhVS{name: "tB", port: "7002", srv: bhSrvB, clientClose: "graceful"}
	hA := bhVS{name: "hA", port: "8081", srv: bhSrvA, clientClose: "reset"}
	hB := bhVS{name: "hB", port: "8082", srv: bhSrvB, clientClose: "graceful"}
	cfg := bhProfiles() + fmt.Sprintf(`[pool.echo]
connect_timeout = "1s"
preconnect = 4
peek_interval = "250ms"
[pool.echo.health]
type = "none"
[[pool.echo.members]]
address = "%s:7"
[[pool.echo.members]]
address = "%s:7"

[pool.web]
connect_timeout = "1s"
min_idle = 2
peek_interval = "250ms"
[pool.web.health]
type = "none"
[[pool.web.members]]
address = "%s:80"
[[pool.web.members]]
address = "%s:80"

`, m1, m2, m1, m2) + tA.toml("tcp", "echo") + tB.toml("tcp", "echo") + hA.toml("http", "web") + hB.toml("http", "web")
	p := l.startTether(cfg, tetherOpts{})
	echo1, echo2, web1, web2 := m1+":7", m2+":7", m1+":80", m2+":80"

	// The warm pools fill: 2 preconnected conns per member per profile, 2
	// idle reuse conns per member per http virtual server.
	bhWaitFor(t, 5*time.Second, "warm pools", func() bool {
		e, w := p.members("echo"), p.members("web")
		return e[echo1].Idle == 4 && e[echo2].Idle == 4 &&
			w[web1].Reuse["hA"].Idle == 2 && w[web1].Reuse["hB"].Idle == 2 &&
			w[web2].Reuse["hA"].Idle == 2 && w[web2].Reuse["hB"].Idle == 2
	})
	base := p.usage()

	// The relays, one at a time: each echoes a line before the next
	// connects, so the round-robin alternates them between the members.
	// Every other relay to each member is an in-flight one.
	var relays []*bhRelay
	hello := []byte("hello\n")
	for _, vs := range []bhVS{tA, tB} {
		for i := 0; i < 8; i++ {
			c, err := dialTimeout(l.CL, vs.addr(), 5*time.Second)
			if err != nil {
				t.Fatalf("connect to %s: %v", vs.name, err)
			}
			r := &bhRelay{vs: vs, c: c, done: make(chan struct{})}
			t.Cleanup(func() { c.Close() })
			go r.read()
			relays = append(relays, r)
			if _, err := r.c.Write(hello); err != nil {
				t.Fatal(err)
			}
			if err := r.waitGot(hello, 5*time.Second); err != nil {
				t.Fatal(err)
			}
		}
		of := bhMemberOf(p, vs.name)
		n := map[string]int{}
		for _, r := range relays {
			if r.vs == vs {
				r.member = of[r.c.LocalAddr().String()]
				r.inflight = n[r.member]%2 == 1
				n[r.member]++
			}
		}
	}
	kinds := map[string]int{}
	for _, r := range relays {
		kinds[fmt.Sprintf("%s %s inflight=%v", r.vs.name, r.member, r.inflight)]++
	}
	for _, vs := range []bhVS{tA, tB} {
		for _, m := range []string{echo1, echo2} {
			for _, inf := range []bool{false, true} {
				if kinds[fmt.Sprintf("%s %s inflight=%v", vs.name, m, inf)] == 0 {
					t.Fatalf("no relay of each kind to each member: %v", kinds)
				}
			}
		}
	}

	// The counters before the black hole.
	echoBefore, webBefore := p.members("echo"), p.members("web")
	if echoBefore[echo1].Idle != 4 || webBefore[web1].Reuse["hA"].Idle != 2 || webBefore[web1].Reuse["hB"].Idle != 2 {
		t.Fatalf("pools not warm before the black hole: echo %+v, web %+v", echoBefore[echo1], webBefore[web1])
	}

	// Every relay echoes once more, so that each member conn's last byte
	// received is now, then member 1 vanishes and the in-flight relays
	// write.
	again := []byte("again\n")
	for _, r := range relays {
		if _, err := r.c.Write(again); err != nil {
			t.Fatal(err)
		}
	}
	for _, r := range relays {
		if err := r.waitGot(append(append([]byte(nil), hello...), again...), 5*time.Second); err != nil {
			t.Fatal(err)
		}
	}
	restore := bhBlackhole(l, 1)
	t0 := time.Now()
	payload := patternBody(4096)
	for _, r := range relays {
		if r.inflight {
			if _, err := r.c.Write(payload); err != nil {
				t.Fatal(err)
			}
		}
	}

	// Wait for every relay to member 1 to end, and for both profiles'
	// pooled conns to be dropped.
	latest := max(bhSrvA.idleDead(), bhSrvB.idleDead()) + bhSlack
	for _, r := range relays {
		if r.member != echo1 {
			continue
		}
		select {
		case <-r.done:
		case <-time.After(time.Until(t0.Add(latest + time.Second))):
			t.Fatalf("relay through %s to %s (inflight %v) still open %s after the black hole", r.vs.name, r.member, r.inflight, time.Since(t0))
		}
	}
	bhWaitFor(t, time.Until(t0.Add(latest+time.Second)), "member 1's idle conns dropped", func() bool {
		e, w := p.members("echo"), p.members("web")
		return e[echo1].Idle == 0 && w[web1].Reuse["hA"].Idle == 0 && w[web1].Reuse["hB"].Idle == 0
	})

	// Each relay to member 1 ended at its profile's time, the way its
	// client profile says; those to member 2 are open.
	for _, r := range relays {
		ended, err := r.result()
		what := fmt.Sprintf("relay through %s to %s (inflight %v)", r.vs.name, r.member, r.inflight)
		if r.member != echo1 {
			if err != nil {
				t.Errorf("%s ended during member 1's black hole: %v", what, err)
			}
			continue
		}
		want := r.vs.srv.idleDead()
		if r.inflight {
			want = r.vs.srv.inflightDead()
		}
		took := ended.Sub(t0)
		bhWithin(t, what+" closed", took, want)
		switch r.vs.clientClose {
		case "reset":
			if !errors.Is(err, syscall.ECONNRESET) {
				t.Errorf("%s: client got %v, want a reset (client close = reset)", what, err)
			}
		default:
			if err != io.EOF {
				t.Errorf("%s: client got %v, want EOF (client close = graceful)", what, err)
			}
		}
		t.Logf("%s: closed after %s with %v (figure %s)", what, took.Round(time.Millisecond), err, want)
	}
	// The access lines of the relays to member 1 say why.
	seen := map[string]bool{}
	for _, line := range p.logLines("connection") {
		if bhStr(line, "member") == echo1 {
			seen[bhStr(line, "client")] = true
			if fc := bhStr(line, "closed_first"); fc != "server timed-out" {
				t.Errorf("access line of a relay to member 1: closed_first %q, want \"server timed-out\": %v", fc, line)
			}
		}
	}
	for _, r := range relays {
		if r.member == echo1 && !seen[r.c.LocalAddr().String()] {
			t.Errorf("no access line for relay %s through %s", r.c.LocalAddr(), r.vs.name)
		}
	}

	// The pooled idle conns to member 1 were dropped at their profile's
	// time, found dead by the peek (keepalive's ETIMEDOUT).
	dropped := map[string]int{} // "pool profile" -> lines
	for _, line := range p.logLines("stale idle conn dropped") {
		member := bhStr(line, "member")
		if member != echo1 && member != web1 {
			t.Errorf("an idle conn to a live member dropped: %v", line)
			continue
		}
		prof := bhStr(line, "profile")
		want := bhSrvA.idleDead()
		if prof == bhSrvB.name {
			want = bhSrvB.idleDead()
		}
		took := bhLogTime(t, line).Sub(t0)
		bhWithin(t, fmt.Sprintf("idle conn to %s (profile %s, preconnected %v) dropped", member, prof, line["preconnected"]), took, want)
		if e := bhStr(line, "error"); !strings.Contains(e, "timed out") {
			t.Errorf("idle conn dropped for %q, want keepalive's \"connection timed out\"", e)
		}
		dropped[member+" "+prof]++
		t.Logf("idle conn to %s, profile %s, preconnected %v: dropped after %s (figure %s)", member, prof, line["preconnected"], took.Round(time.Millisecond), want)
	}
	echoAfter, webAfter := p.members("echo"), p.members("web")
	if got := echoAfter[echo1].Counters.StaleDropped - echoBefore[echo1].Counters.StaleDropped; got != 4 {
		t.Errorf("preconnected conns to member 1 dropped: %d, want the 4 of the stocks", got)
	}
	if dropped[echo1+" bhsrvA"] != 2 || dropped[echo1+" bhsrvB"] != 2 {
		t.Errorf("preconnected conns dropped per profile: %v, want 2 of each", dropped)
	}
	for _, vs := range []bhVS{hA, hB} {
		b, a := webBefore[web1].Reuse[vs.name], webAfter[web1].Reuse[vs.name]
		if a.StaleOnPeek-b.StaleOnPeek != 2 || a.Reused != b.Reused || a.ExpiredIdle != b.ExpiredIdle || a.Idle != 0 {
			t.Errorf("%s's reuse pool, member 1: before %+v, after %+v: want its 2 idle conns found stale, none reused or expired", vs.name, b, a)
		}
		b2, a2 := webBefore[web2].Reuse[vs.name], webAfter[web2].Reuse[vs.name]
		if a2.StaleOnPeek != b2.StaleOnPeek || a2.Idle < 2 {
			t.Errorf("%s's reuse pool, member 2: before %+v, after %+v: its conns must stay", vs.name, b2, a2)
		}
	}
	if dropped[web1+" bhsrvA"] != 2 || dropped[web1+" bhsrvB"] != 2 {
		t.Errorf("reuse conns dropped per profile: %v, want 2 of each", dropped)
	}
	if lt := webAfter[web1].Counters.IdleTimeoutLearnt; lt != 0 {
		t.Errorf("the black hole taught member 1's idle timeout: %s", lt)
	}

	// A client that comes now is not given a dead conn: it is relayed
	// through member 2 (after at most a failed connect to member 1).
	for _, vs := range []bhVS{tA, tB} {
		for i := 0; i < 2; i++ {
			if err := echoExact(l.CL, vs.addr(), 64<<10, 5*time.Second); err != nil {
				t.Errorf("a new client of %s during the black hole: %v", vs.name, err)
			}
		}
	}
	if hits := p.members("echo")[echo1].Counters.PreconnectHits; hits != echoBefore[echo1].Counters.PreconnectHits {
		t.Errorf("preconnected conns to member 1 lent during the black hole: %d", hits-echoBefore[echo1].Counters.PreconnectHits)
	}

	// The link comes back. The relays to member 2 are intact.
	restore()
	want := append(append([]byte(nil), hello...), again...)
	for _, r := range relays {
		if r.member != echo2 {
			continue
		}
		w := append([]byte(nil), want...)
		if r.inflight {
			w = append(w, payload...)
		}
		w = append(w, "after\n"...)
		if _, err := r.c.Write([]byte("after\n")); err != nil {
			t.Fatalf("relay through %s to member 2 after the black hole: %v", r.vs.name, err)
		}
		if err := r.waitGot(w, 5*time.Second); err != nil {
			t.Errorf("relay to member 2 after the black hole: %v", err)
		}
	}
	for _, r := range relays {
		r.c.Close()
	}

	// Both virtual servers of each mode serve through both members again.
	bhWaitFor(t, 15*time.Second, "member 1's pooled conns back", func() bool {
		e, w := p.members("echo"), p.members("web")
		return e[echo1].Idle == 4 && w[web1].Reuse["hA"].Idle >= 2 && w[web1].Reuse["hB"].Idle >= 2
	})
	for _, vs := range []bhVS{hA, hB} {
		r := startLoad(t, loadSpec{NS: l.CL, Addr: vs.addr(), Clients: 2, Requests: 10, Duration: 10 * time.Second}).wait()
		if r.OK() != 20 || r.ByMember["m1"] == 0 || r.ByMember["m2"] == 0 {
			t.Errorf("%s after the black hole: %s", vs.name, &r)
		}
	}
	before := len(p.logLines("connection"))
	for _, vs := range []bhVS{tA, tB} {
		for i := 0; i < 4; i++ {
			if err := echoExact(l.CL, vs.addr(), 64<<10, 5*time.Second); err != nil {
				t.Errorf("%s after the black hole: %v", vs.name, err)
			}
		}
	}
	byMember := map[string]int{}
	for _, line := range p.logLines("connection")[before:] {
		byMember[bhStr(line, "member")]++
	}
	if byMember[echo1] == 0 || byMember[echo2] == 0 {
		t.Errorf("tcp relays after the black hole by member: %v, want both", byMember)
	}
	u := p.settles(base, 4, 10*time.Second)
	t.Logf("baseline %s, after %s", base, u)
}

// bhBlackhole is l.blackhole(i) whose restore also runs at the test's end
// if the test did not run it (before tether stops, so that its closes
// reach the member, whose conns would otherwise wait for its keepalive).
func bhBlackhole(l *lab, i int) (restore func()) {
	var once sync.Once
	r := l.blackhole(i)
	restore = func() { once.Do(r) }
	l.t.Cleanup(restore)
	return restore
}

// bhWaitFor polls cond every 50 ms for up to d.
func bhWaitFor(t *testing.T, d time.Duration, what string, cond func() bool) {
	t.Helper()
	deadline := time.Now().Add(d)
	for !cond() {
		if time.Now().After(deadline) {
			t.Fatalf("%s: not within %s", what, d)
		}
		time.Sleep(50 * time.Millisecond)
	}
}

// bhAnswer is how one request ended.
type bhAnswer struct {
	status int
	member string // X-Member
	took   time.Duration
	err    error
	after  error // the client conn's next read, after the answer
}

// bhRequest sends one request (X-Req-Id id) on a new conn through addr
// and reads its answer (up to d), then, when the answer closes the conn,
// what the conn does next.
func bhRequest(ns, addr, method, target, id string, body []byte, d time.Duration) bhAnswer {
	start := time.Now()
	c, err := dialTimeout(ns, addr, d)
	if err != nil {
		return bhAnswer{err: err}
	}
	defer c.Close()
	_ = c.SetDeadline(start.Add(d))
	req := fmt.Sprintf("%s %s HTTP/1.1\r\nHost: faults\r\nX-Req-Id: %s\r\n", method, target, id)
	if body != nil {
		req += fmt.Sprintf("Content-Length: %d\r\n", len(body))
	}
	if _, err := c.Write(append([]byte(req+"\r\n"), body...)); err != nil {
		return bhAnswer{err: err}
	}
	br := bufio.NewReader(c)
	resp, err := http.ReadResponse(br, nil)
	if err != nil {
		return bhAnswer{err: err, took: time.Since(start)}
	}
	_, err = io.Copy(io.Discard, resp.Body)
	resp.Body.Close()
	a := bhAnswer{status: resp.StatusCode, member: resp.Header.Get("X-Member"), took: time.Since(start), err: err}
	if resp.Close {
		_ = c.SetReadDeadline(time.Now().Add(time.Second))
		_, a.after = br.ReadByte()
	}
	return a
}

// bhDelay is how long the members take to answer the requests sent before
// the black hole.
const bhDelay = 1500 * time.Millisecond

// bhReq is one request of TestFaultBlackholeHTTPReplay.
type bhReq struct {
	vs       bhVS
	id       string
	method   string
	inflight bool // sent after the black hole; else before it, answered after 1.5 s
	ans      bhAnswer
}

func (r *bhReq) target() string {
	if r.inflight {
		return "/?id=" + r.id
	}
	return fmt.Sprintf("/?delay=%d&id=%s", bhDelay.Milliseconds(), r.id)
}

// TestFaultBlackholeHTTPReplay: fault 1 on http requests in progress. Two
// http virtual servers share pool "web" (tcp health checks every 500 ms,
// fall 2): A (server profile bhsrvA: 3 s idle, 2 s in flight; client close
// "reset") and B (bhsrvB: 5 s idle, 4 s in flight; client close
// "graceful").
//
// Load, per virtual server, each request on a conn of its own, sent in
// pairs that the round-robin splits between the members: 4 GETs and 4
// POSTs (1 KiB body) that the members answer after 1.5 s, all received
// (2 GETs and 2 POSTs by member 1) before member 1 is black-holed; then 2
// GETs and 2 POSTs sent right after the black hole (those lent a pooled
// conn to member 1 write into the black hole).
//
// Bound: a GET whose member conn died before any response byte is replayed
// on member 2 and answered 200 within the profile's figure ± 1 s from its
// send: idleDead (plus the 1.5 s member 2 takes to answer it) when member 1
// had acknowledged it (keepalive finds the conn), user_timeout when it was
// in flight. A POST whose body reached
// member 1 (or was written into the black hole) gets 502 at the same
// figure, with Connection: close and then the FIN. Everything else is
// answered 200 by member 2 within connect_timeout + 1 s.
//
// Nothing lost: every request is answered (no transport error, no hung
// client); no GET reaches member 2 twice, no POST reaches any member twice
// and a POST answered 502 never reaches member 2; the replays are exactly
// the pool's ReplaysNoResponse for member 1, per virtual server. After the
// link comes back, member 1 is up again, both virtual servers serve
// through both members, and tether's fds and goroutines come back to
// baseline.
func TestFaultBlackholeHTTPReplay(t *testing.T) {
	t.Parallel()
	l := newLab(t, 2)
	mem1 := l.startMember(1, memberConfig{HTTP: true})
	mem2 := l.startMember(2, memberConfig{HTTP: true})
	web1, web2 := memberIP(1)+":80", memberIP(2)+":80"
	hA := bhVS{name: "hA", port: "8081", srv: bhSrvA, clientClose: "reset"}
	hB := bhVS{name: "hB", port: "8082", srv: bhSrvB, clientClose: "graceful"}
	const connectTimeout = time.Second
	cfg := bhProfiles() + httpPool(2, fmt.Sprintf("connect_timeout = %q\nmin_idle = 2\npeek_interval = \"250ms\"\n", connectTimeout)) + "\n" +
		hA.toml("http", "web") + hB.toml("http", "web")
	p := l.startTether(cfg, tetherOpts{})
	warm := func() bool {
		w := p.members("web")
		for _, vs := range []string{"hA", "hB"} {
			if w[web1].Reuse[vs].Idle < 2 || w[web2].Reuse[vs].Idle < 2 {
				return false
			}
		}
		return true
	}
	bhWaitFor(t, 5*time.Second, "warm pools", warm)
	base := p.usage()

	var reqs []*bhReq
	for _, vs := range []bhVS{hA, hB} {
		for i := 0; i < 4; i += 2 {
			for _, m := range []string{"GET", "POST"} {
				for j := i; j < i+2; j++ {
					reqs = append(reqs, &bhReq{vs: vs, id: fmt.Sprintf("%s-delay-%s-%d", vs.name, strings.ToLower(m), j), method: m})
				}
			}
		}
	}
	var wg sync.WaitGroup
	send := func(r *bhReq) {
		wg.Add(1)
		go func() {
			defer wg.Done()
			var body []byte
			if r.method == "POST" {
				body = patternBody(1024)
			}
			r.ans = bhRequest(l.CL, r.vs.addr(), r.method, r.target(), r.id, body, 15*time.Second)
		}()
	}
	// One at a time, each once the members have the one before: the
	// round-robin then sends every other one to member 1.
	for i, r := range reqs {
		send(r)
		bhWaitFor(t, 5*time.Second, "the members have the request", func() bool {
			return mem1.snapshot().Requests+mem2.snapshot().Requests == i+1
		})
	}
	time.Sleep(100 * time.Millisecond) // the last body read and acknowledged
	bhWaitFor(t, 3*time.Second, "pools warm again", warm)
	before := p.members("web")
	restore := bhBlackhole(l, 1)
	// In pairs too, 20 ms apart (all sent before health checks can mark
	// member 1 down).
	for _, vs := range []bhVS{hA, hB} {
		for _, m := range []string{"GET", "POST"} {
			for i := 0; i < 2; i++ {
				r := &bhReq{vs: vs, id: fmt.Sprintf("%s-inflight-%s-%d", vs.name, strings.ToLower(m), i), method: m, inflight: true}
				reqs = append(reqs, r)
				send(r)
				time.Sleep(20 * time.Millisecond)
			}
		}
	}
	wg.Wait()
	// A request's access line is written once its answer went out.
	bhWaitFor(t, 2*time.Second, "every request's access line", func() bool { return len(p.logLines("request")) >= len(reqs) })

	s1, s2 := mem1.snapshot(), mem2.snapshot()
	replayed := map[string]bool{} // ids the access log says were replayed
	replays := map[string]int{}   // virtual server -> replays
	for _, line := range p.logLines("request") {
		if st, _ := line["status"].(float64); st == 502 && (!strings.Contains(bhStr(line, "error"), "timed out") || line["member_error"] != true) {
			t.Errorf("a 502's access line does not say the member conn timed out: %v", line)
		}
		if bhStr(line, "replay") == "" {
			continue
		}
		path := bhStr(line, "path")
		replayed[path[strings.Index(path, "id=")+3:]] = true
		replays[bhStr(line, "virtual_server")]++
		if bhStr(line, "replay") != "no-response" || !strings.Contains(bhStr(line, "error"), "timed out") {
			t.Errorf("replay's access line: %v, want replay no-response after a timeout", line)
		}
	}
	kinds := map[string]int{}
	for _, r := range reqs {
		a := r.ans
		what := fmt.Sprintf("%s %s", r.method, r.id)
		if a.err != nil {
			t.Errorf("%s: no answer after %s: %v", what, a.took.Round(time.Millisecond), a.err)
			continue
		}
		atM1 := s1.IDs[r.id] > 0
		switch {
		case r.method == "GET" && replayed[r.id]:
			want := r.vs.srv.inflightDead()
			if atM1 {
				want = r.vs.srv.idleDead() + bhDelay // member 2 takes as long to answer the replay
			}
			bhWithin(t, what+" replayed and answered", a.took, want)
			if a.status != 200 || a.member != "m2" || s2.IDs[r.id] != 1 {
				t.Errorf("%s replayed: status %d from %q, member 2 saw it %d times; want 200 from m2, once", what, a.status, a.member, s2.IDs[r.id])
			}
			kinds[fmt.Sprintf("%s GET replayed (at m1 %v)", r.vs.name, atM1)]++
			t.Logf("%s: at member 1 %v, replayed on member 2, answered after %s (figure %s)", what, atM1, a.took.Round(time.Millisecond), want)
		case r.method == "GET":
			if atM1 {
				t.Errorf("%s reached member 1 and was not replayed: %+v", what, a)
			}
		case a.status == 502:
			want := r.vs.srv.inflightDead()
			if atM1 {
				want = r.vs.srv.idleDead()
			}
			bhWithin(t, what+" answered 502", a.took, want)
			if s2.IDs[r.id] != 0 || s1.IDs[r.id] > 1 {
				t.Errorf("%s answered 502, yet member 1 saw it %d times, member 2 %d times", what, s1.IDs[r.id], s2.IDs[r.id])
			}
			if a.after != io.EOF {
				t.Errorf("%s: after the 502 the client conn gave %v, want EOF", what, a.after)
			}
			kinds[fmt.Sprintf("%s POST 502 (at m1 %v)", r.vs.name, atM1)]++
			t.Logf("%s: at member 1 %v, answered 502 after %s (figure %s)", what, atM1, a.took.Round(time.Millisecond), want)
		default: // a POST that never went into the black hole
			if atM1 || s2.IDs[r.id] != 1 {
				t.Errorf("%s: status %d from %q after %s, member 1 saw it %d times, member 2 %d times", what, a.status, a.member, a.took, s1.IDs[r.id], s2.IDs[r.id])
			}
		}
		if !replayed[r.id] && a.status == 200 && a.took > bhDelay+connectTimeout+bhSlack {
			t.Errorf("%s answered 200 by %s only after %s", what, a.member, a.took)
		}
		if a.status != 200 && a.status != 502 || a.status == 502 && r.method != "POST" {
			t.Errorf("%s: status %d", what, a.status)
		}
	}
	t.Logf("outcomes: %v", kinds)
	for _, vs := range []bhVS{hA, hB} {
		if kinds[vs.name+" GET replayed (at m1 true)"] != 2 || kinds[vs.name+" POST 502 (at m1 true)"] != 2 || kinds[vs.name+" GET replayed (at m1 false)"] == 0 {
			t.Errorf("%s: want 2 GETs at member 1 replayed, 2 POSTs at member 1 answered 502, and a GET in flight to member 1 replayed: %v", vs.name, kinds)
		}
		after := p.members("web")[web1].Reuse[vs.name]
		if got := after.ReplaysNoResponse - before[web1].Reuse[vs.name].ReplaysNoResponse; got != uint64(replays[vs.name]) {
			t.Errorf("%s: ReplaysNoResponse for member 1 %d, access lines %d", vs.name, got, replays[vs.name])
		}
	}
	for id, n := range s2.IDs {
		if n > 1 {
			t.Errorf("member 2 saw %s %d times", id, n)
		}
	}

	// The link comes back: member 1 is up and serves both virtual servers.
	restore()
	bhWaitFor(t, 5*time.Second, "member 1 up again", func() bool { return p.members("web")[web1].Health == "up" })
	for _, vs := range []bhVS{hA, hB} {
		r := startLoad(t, loadSpec{NS: l.CL, Addr: vs.addr(), Clients: 2, Requests: 10, PostEvery: 3, Duration: 10 * time.Second}).wait()
		if r.OK() != 20 || r.ByMember["m1"] == 0 || r.ByMember["m2"] == 0 {
			t.Errorf("%s after the black hole: %s", vs.name, &r)
		}
	}
	u := p.settles(base, 4, 10*time.Second)
	t.Logf("baseline %s, after %s", base, u)
}
