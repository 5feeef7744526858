package faults

import (
	"bufio"
	"encoding/json"
	"fmt"
	"io"
	"net"
	"net/http"
	"os"
	"os/exec"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"time"
)

// memberRoleEnv, when set, makes the test binary a member process (see
// memberMain) instead of running tests: its value is the memberConfig as
// JSON.
const memberRoleEnv = "TETHER_FAULT_MEMBER"

// Member ports, on every member's address.
const (
	memberHTTPPort = 80
	memberEchoPort = 7
)

// memberConfig says what a member serves.
type memberConfig struct {
	Name     string // in the X-Member header and answers
	IP       string // its address (memberIP(i))
	HTTP     bool   // serve HTTP/1.1 on :80
	Echo     bool   // echo TCP on :7 (half-close passed on)
	Behavior string // a registered behavior ("" = plain)
	// IdleTimeout closes idle keepalive conns after it (0: net/http's
	// default, none).
	IdleTimeout time.Duration
}

// A behavior changes how a member treats conns and requests (a fault
// test's resets, stalls ...). Fault tests register theirs in init, keyed
// by name; memberConfig.Behavior picks one.
type behavior struct {
	// conn sees each accepted HTTP conn first (nil: none).
	conn func(m *member, c net.Conn) net.Conn
	// handler wraps the member's handler (nil: none).
	handler func(m *member, next http.Handler) http.Handler
}

var behaviors = map[string]behavior{}

// member is a member server: in the test process (startMember) or in a
// process of its own (startMemberProcess, which reads its counters from
// /_stats).
type member struct {
	cfg memberConfig
	lns []net.Listener
	srv *http.Server
	wg  sync.WaitGroup

	mu    sync.Mutex
	stats memberStats
	echo  map[net.Conn]bool // echo conns open, closed by close
	conns atomic.Int64      // HTTP conns accepted
}

// memberStats counts what a member received. IDs counts each X-Req-Id it
// read a whole request head for: a POST id seen twice was replayed.
type memberStats struct {
	Requests int            `json:"requests"`
	Posts    int            `json:"posts"`
	Conns    int64          `json:"conns"`
	IDs      map[string]int `json:"ids"`
}

// newMember starts the member's servers on listeners already open.
func newMember(cfg memberConfig, httpLn, echoLn net.Listener) *member {
	m := &member{cfg: cfg, stats: memberStats{IDs: map[string]int{}}}
	b := behaviors[cfg.Behavior]
	if httpLn != nil {
		var h http.Handler = http.HandlerFunc(m.serveHTTP)
		if b.handler != nil {
			h = b.handler(m, h)
		}
		m.srv = &http.Server{Handler: h, IdleTimeout: cfg.IdleTimeout, ReadHeaderTimeout: 30 * time.Second}
		ln := httpLn
		if b.conn != nil {
			ln = &wrapListener{Listener: httpLn, wrap: func(c net.Conn) net.Conn { return b.conn(m, c) }}
		}
		ln = &countListener{Listener: ln, n: &m.conns}
		m.lns = append(m.lns, httpLn)
		m.wg.Add(1)
		go func() { defer m.wg.Done(); _ = m.srv.Serve(ln) }()
	}
	if echoLn != nil {
		m.lns = append(m.lns, echoLn)
		m.wg.Add(1)
		go m.echoLoop(echoLn)
	}
	return m
}

// serveHTTP answers every request with 200, X-Member and a body: size=N
// bytes of pattern (see patternBody) when the query asks, else
// "ok NAME\n". It reads the request body whole first; delay=MS waits
// before answering.
func (m *member) serveHTTP(w http.ResponseWriter, r *http.Request) {
	if r.URL.Path == "/_stats" {
		m.mu.Lock()
		st := m.stats
		st.Conns = m.conns.Load()
		b, _ := json.Marshal(st)
		m.mu.Unlock()
		_, _ = w.Write(b)
		return
	}
	m.mu.Lock()
	m.stats.Requests++
	if r.Method == http.MethodPost {
		m.stats.Posts++
	}
	if id := r.Header.Get("X-Req-Id"); id != "" {
		m.stats.IDs[id]++
	}
	m.mu.Unlock()
	n, err := io.Copy(io.Discard, r.Body)
	if err != nil || (r.ContentLength >= 0 && n != r.ContentLength) {
		http.Error(w, "short body", http.StatusBadRequest)
		return
	}
	if ms, _ := strconv.Atoi(r.URL.Query().Get("delay")); ms > 0 {
		time.Sleep(time.Duration(ms) * time.Millisecond)
	}
	w.Header().Set("X-Member", m.cfg.Name)
	if size, err := strconv.Atoi(r.URL.Query().Get("size")); err == nil && size >= 0 {
		w.Header().Set("Content-Length", strconv.Itoa(size))
		_, _ = w.Write(patternBody(size))
		return
	}
	_, _ = fmt.Fprintf(w, "ok %s\n", m.cfg.Name)
}

// echoLoop echoes each conn's bytes back and passes its half-close on.
func (m *member) echoLoop(ln net.Listener) {
	defer m.wg.Done()
	for {
		c, err := ln.Accept()
		if err != nil {
			return
		}
		m.mu.Lock()
		if m.echo == nil {
			m.echo = map[net.Conn]bool{}
		}
		m.echo[c] = true
		m.mu.Unlock()
		m.wg.Add(1)
		go func() {
			defer m.wg.Done()
			defer func() {
				m.mu.Lock()
				delete(m.echo, c)
				m.mu.Unlock()
				c.Close()
			}()
			if _, err := io.Copy(c, c); err == nil {
				_ = c.(*net.TCPConn).CloseWrite()
				_, _ = io.Copy(io.Discard, c)
			}
		}()
	}
}

// snapshot returns a copy of the member's counters.
func (m *member) snapshot() memberStats {
	m.mu.Lock()
	defer m.mu.Unlock()
	st := memberStats{Requests: m.stats.Requests, Posts: m.stats.Posts, Conns: m.conns.Load(), IDs: map[string]int{}}
	for k, v := range m.stats.IDs {
		st.IDs[k] = v
	}
	return st
}

// close stops the member: its listeners and every conn (an in-process
// member's conns end with FIN, as a process's do when it exits).
func (m *member) close() {
	if m.srv != nil {
		_ = m.srv.Close()
	}
	for _, ln := range m.lns {
		_ = ln.Close()
	}
	m.mu.Lock()
	for c := range m.echo {
		_ = c.Close() // a conn whose peer vanished would wait for keepalive
	}
	m.mu.Unlock()
	m.wg.Wait()
}

// startMember runs member i (from 1) of the lab in the test process, its
// sockets in the member's namespace. The test's end stops it.
func (l *lab) startMember(i int, cfg memberConfig) *member {
	l.t.Helper()
	cfg.IP = memberIP(i)
	if cfg.Name == "" {
		cfg.Name = fmt.Sprintf("m%d", i)
	}
	var httpLn, echoLn net.Listener
	if cfg.HTTP {
		httpLn = listen(l.t, l.Members[i-1], fmt.Sprintf("%s:%d", cfg.IP, memberHTTPPort))
	}
	if cfg.Echo {
		echoLn = listen(l.t, l.Members[i-1], fmt.Sprintf("%s:%d", cfg.IP, memberEchoPort))
	}
	m := newMember(cfg, httpLn, echoLn)
	l.t.Cleanup(m.close)
	return m
}

// memberMain is the member process: it serves cfg until it is killed.
func memberMain(cfgJSON string) int {
	var cfg memberConfig
	if err := json.Unmarshal([]byte(cfgJSON), &cfg); err != nil {
		fmt.Fprintln(os.Stderr, "member config:", err)
		return 2
	}
	var httpLn, echoLn net.Listener
	var err error
	if cfg.HTTP {
		if httpLn, err = net.Listen("tcp", fmt.Sprintf("%s:%d", cfg.IP, memberHTTPPort)); err != nil {
			fmt.Fprintln(os.Stderr, err)
			return 1
		}
	}
	if cfg.Echo {
		if echoLn, err = net.Listen("tcp", fmt.Sprintf("%s:%d", cfg.IP, memberEchoPort)); err != nil {
			fmt.Fprintln(os.Stderr, err)
			return 1
		}
	}
	newMember(cfg, httpLn, echoLn)
	fmt.Println("ready")
	select {}
}

// memberProc is a member running as a process of its own, so that it can
// be killed (SIGKILL: the kernel ends its conns) and started again.
type memberProc struct {
	l    *lab
	i    int
	cfg  memberConfig
	cmd  *exec.Cmd
	done chan struct{}
}

// startMemberProcess runs member i (from 1) as a process in its namespace
// and waits until it listens. The test's end kills it.
func (l *lab) startMemberProcess(i int, cfg memberConfig) *memberProc {
	l.t.Helper()
	cfg.IP = memberIP(i)
	if cfg.Name == "" {
		cfg.Name = fmt.Sprintf("m%d", i)
	}
	mp := &memberProc{l: l, i: i, cfg: cfg}
	mp.start()
	l.t.Cleanup(mp.kill)
	return mp
}

func (mp *memberProc) start() {
	t := mp.l.t
	t.Helper()
	self, err := os.Executable()
	if err != nil {
		t.Fatal(err)
	}
	b, _ := json.Marshal(mp.cfg)
	mp.cmd = exec.Command("ip", "netns", "exec", mp.l.Members[mp.i-1], self)
	mp.cmd.Env = append(os.Environ(), memberRoleEnv+"="+string(b))
	mp.cmd.Stderr = os.Stderr
	out, err := mp.cmd.StdoutPipe()
	if err != nil {
		t.Fatal(err)
	}
	if err := mp.cmd.Start(); err != nil {
		t.Fatal(err)
	}
	mp.done = make(chan struct{})
	go func() { _ = mp.cmd.Wait(); close(mp.done) }()
	line, err := bufio.NewReader(out).ReadString('\n')
	if strings.TrimSpace(line) != "ready" {
		mp.kill()
		t.Fatalf("member %d did not start: %q %v", mp.i, line, err)
	}
}

// kill ends the member process with SIGKILL (later calls do nothing).
func (mp *memberProc) kill() {
	select {
	case <-mp.done:
		return
	default:
	}
	_ = mp.cmd.Process.Kill()
	<-mp.done
}

// stats reads the member process's counters from its /_stats, dialed from
// lb (not through tether).
func (mp *memberProc) stats() memberStats {
	t := mp.l.t
	t.Helper()
	c, err := dialTimeout(mp.l.LB, fmt.Sprintf("%s:%d", mp.cfg.IP, memberHTTPPort), 2*time.Second)
	if err != nil {
		t.Fatalf("member %d stats: %v", mp.i, err)
	}
	defer c.Close()
	_ = c.SetDeadline(time.Now().Add(5 * time.Second))
	_, _ = io.WriteString(c, "GET /_stats HTTP/1.1\r\nHost: m\r\nConnection: close\r\n\r\n")
	resp, err := http.ReadResponse(bufio.NewReader(c), nil)
	if err != nil {
		t.Fatalf("member %d stats: %v", mp.i, err)
	}
	defer resp.Body.Close()
	var st memberStats
	if err := json.NewDecoder(resp.Body).Decode(&st); err != nil {
		t.Fatalf("member %d stats: %v", mp.i, err)
	}
	return st
}

// patternBody is n bytes that no shift of itself matches, so a relay that
// drops, repeats or reorders bytes is caught.
func patternBody(n int) []byte {
	b := make([]byte, n)
	var x uint32 = 2463534242
	for i := range b {
		x ^= x << 13
		x ^= x >> 17
		x ^= x << 5
		b[i] = byte(x)
	}
	return b
}

type wrapListener struct {
	net.Listener
	wrap func(net.Conn) net.Conn
}

func (l *wrapListener) Accept() (net.Conn, error) {
	c, err := l.Listener.Accept()
	if err != nil {
		return nil, err
	}
	return l.wrap(c), nil
}

type countListener struct {
	net.Listener
	n *atomic.Int64
}

func (l *countListener) Accept() (net.Conn, error) {
	c, err := l.Listener.Accept()
	if err == nil {
		l.n.Add(1)
	}
	return c, err
}
