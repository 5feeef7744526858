package proxy

import (
	"bufio"
	"fmt"
	"io"
	"net"
	"net/http"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/tetherproxy/tether/pool"
	"github.com/tetherproxy/tether/sockopt"
	"github.com/tetherproxy/tether/sockopt/socktest"
)

// memberAction is what the scripted member does with one request it read.
type memberAction int

const (
	answer        memberAction = iota // 200, keep the conn open
	answerIdleEnd                     // 200 without Keep-Alive, then close the conn after 50 ms idle
	resetOnRead                       // read the head, then reset the conn without answering
	dieAfterBody                      // read head and body, then close without answering
	resetMidHead                      // write part of a response head, then reset the conn
)

// scriptedMember is a test member whose behaviour is chosen per (conn,
// request on that conn) and which records every request it fully read, so
// that tether's counters can be compared with what the member saw.
type scriptedMember struct {
	*socktest.Backend
	script func(conn, req int) memberAction

	mu      sync.Mutex
	nconns  int
	seen    []string          // "METHOD body" of every request read, in order
	resetCh map[int]chan bool // conn index -> reset it now, while idle
}

func startScriptedMember(t *testing.T, script func(conn, req int) memberAction) *scriptedMember {
	m := &scriptedMember{script: script, resetCh: map[int]chan bool{}}
	m.Backend = socktest.Start(t, m.serve)
	return m
}

func (m *scriptedMember) serve(c *net.TCPConn) {
	defer c.Close()
	m.mu.Lock()
	conn := m.nconns
	m.nconns++
	reset := make(chan bool, 1)
	m.resetCh[conn] = reset
	m.mu.Unlock()
	reqs := make(chan *http.Request)
	br := bufio.NewReader(c)
	go func() {
		defer close(reqs)
		for {
			req, err := http.ReadRequest(br)
			if err != nil {
				return
			}
			b, _ := io.ReadAll(req.Body)
			m.mu.Lock()
			m.seen = append(m.seen, strings.TrimSpace(req.Method+" "+string(b)))
			m.mu.Unlock()
			reqs <- req
		}
	}()
	idleEnd := false
	for n := 0; ; n++ {
		var timeout <-chan time.Time
		if idleEnd {
			timeout = time.After(50 * time.Millisecond)
		}
		select {
		case <-reset:
			_ = c.SetLinger(0)
			return
		case <-timeout:
			return
		case _, ok := <-reqs:
			if !ok {
				return
			}
		}
		switch m.script(conn, n) {
		case answer:
			_, _ = c.Write([]byte("HTTP/1.1 200 OK\r\nContent-Length: 2\r\n\r\nok"))
		case answerIdleEnd:
			_, _ = c.Write([]byte("HTTP/1.1 200 OK\r\nContent-Length: 2\r\n\r\nok"))
			idleEnd = true
		case resetOnRead:
			_ = c.SetLinger(0)
			return
		case dieAfterBody:
			return
		case resetMidHead:
			_, _ = c.Write([]byte("HTTP/1.1 200 OK\r\nContent-"))
			time.Sleep(20 * time.Millisecond) // tether reads the bytes before the reset
			_ = c.SetLinger(0)
			return
		}
	}
}

// resetIdle resets member conn i while it waits for a request.
func (m *scriptedMember) resetIdle(i int) {
	m.mu.Lock()
	ch := m.resetCh[i]
	m.mu.Unlock()
	ch <- true
}

func (m *scriptedMember) requests() []string {
	m.mu.Lock()
	defer m.mu.Unlock()
	return append([]string(nil), m.seen...)
}

// send does one request on a new client connection and returns the status
// line tether answered.
func send(t *testing.T, addr, method string) string {
	t.Helper()
	raw := "GET / HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n"
	if method == "POST" {
		raw = "POST / HTTP/1.1\r\nHost: x\r\nConnection: close\r\nContent-Length: 4\r\n\r\ndata"
	}
	out := rawExchange(t, addr, raw)
	line, _, _ := strings.Cut(out, "\r\n")
	return line
}

// The replay matrix of DESIGN.md's "Provable replay": a request is replayed
// once on a fresh conn, whatever its method, when the failure provably came
// before the member saw it; an idempotent request without a body also when a
// reused conn ended before any response byte; everything else gets 502 and
// the member sees it exactly once. Each case also checks that the Reuser's
// counters equal what the member saw.
func TestHTTPReplayMatrix(t *testing.T) {
	type want struct {
		status  string   // status line the client got for the last request
		seen    []string // every request the member read, in order
		retries string   // access-log retries of the last request
		replay  string   // access-log replay cause of the last request
		stats   pool.ReuseStats
	}
	for _, tc := range []struct {
		name   string
		script func(conn, req int) memberAction
		method string
		hook   bool // reset the reused conn after the pre-reuse peek, before the write
		// idleClose: wait for the member to close the first request's
		// conn (its idle end) before the second request.
		idleClose bool
		want      want
	}{{
		// (a) the member closes idle conns without announcing Keep-Alive:
		// the peek finds the conn closed, the request goes on a fresh one,
		// any method, and the member sees it once.
		name: "a/idle-close/GET", method: "GET", idleClose: true,
		script: func(conn, req int) memberAction { return answerIdleEnd },
		want: want{status: "HTTP/1.1 200 OK", seen: []string{"GET", "GET"}, retries: "0",
			stats: pool.ReuseStats{Opened: 2, StaleOnPeek: 1}},
	}, {
		name: "a/idle-close/POST", method: "POST", idleClose: true,
		script: func(conn, req int) memberAction { return answerIdleEnd },
		want: want{status: "HTTP/1.1 200 OK", seen: []string{"GET", "POST data"}, retries: "0",
			stats: pool.ReuseStats{Opened: 2, StaleOnPeek: 1}},
	}, {
		// (b) the member resets a reused conn when the request arrives: the
		// GET is replayed on a fresh conn (the member saw it on both) ...
		name: "b/reset-on-read/GET", method: "GET",
		script: func(conn, req int) memberAction {
			if conn == 0 && req == 1 {
				return resetOnRead
			}
			return answer
		},
		want: want{status: "HTTP/1.1 200 OK", seen: []string{"GET", "GET", "GET"}, retries: "1", replay: "no-response",
			stats: pool.ReuseStats{Opened: 2, Reused: 1, Discarded: 1, ClosedEarly: 1, ReplaysNoResponse: 1}},
	}, {
		// ... the POST the member read is not: 502, seen exactly once ...
		name: "b/reset-on-read/POST", method: "POST",
		script: func(conn, req int) memberAction {
			if conn == 0 && req == 1 {
				return resetOnRead
			}
			return answer
		},
		want: want{status: "HTTP/1.1 502 Bad Gateway", seen: []string{"GET", "POST data"}, retries: "0",
			stats: pool.ReuseStats{Opened: 1, Reused: 1, Discarded: 1, ClosedEarly: 1}},
	}, {
		// ... and a POST whose head provably never reached the member (the
		// reset came after the peek, the write failed with nothing taken)
		// is replayed on a fresh conn and seen exactly once.
		name: "b/reset-before-write/POST", method: "POST", hook: true,
		script: func(conn, req int) memberAction { return answer },
		want: want{status: "HTTP/1.1 200 OK", seen: []string{"GET", "POST data"}, retries: "1", replay: "head-unsent",
			stats: pool.ReuseStats{Opened: 2, Reused: 1, Discarded: 1, ClosedEarly: 1, ReplaysHeadUnsent: 1}},
	}, {
		// ... but not once a response byte came: a reused conn reset
		// after part of the response head gets 502, the GET seen once.
		name: "b/reset-mid-head/GET", method: "GET",
		script: func(conn, req int) memberAction {
			if conn == 0 && req == 1 {
				return resetMidHead
			}
			return answer
		},
		want: want{status: "HTTP/1.1 502 Bad Gateway", seen: []string{"GET", "GET"}, retries: "0",
			stats: pool.ReuseStats{Opened: 1, Reused: 1, Discarded: 1, ClosedEarly: 1}},
	}, {
		// (c) the member takes a POST body, then dies before answering:
		// 502, never replayed, seen exactly once.
		name: "c/die-after-body/POST", method: "POST",
		script: func(conn, req int) memberAction {
			if conn == 0 && req == 1 {
				return dieAfterBody
			}
			return answer
		},
		want: want{status: "HTTP/1.1 502 Bad Gateway", seen: []string{"GET", "POST data"}, retries: "0",
			stats: pool.ReuseStats{Opened: 1, Reused: 1, Discarded: 1, ClosedEarly: 1}},
	}, {
		// (c) on a fresh conn, a GET is replayed too (a member killed
		// under load resets its fresh conns as well; RFC 9110 9.2.2), on
		// another fresh conn.
		name: "c/die-on-fresh-conn/GET", method: "GET",
		script: func(conn, req int) memberAction {
			if conn == 1 {
				return dieAfterBody
			}
			return answerIdleEnd
		},
		idleClose: true,
		want: want{status: "HTTP/1.1 200 OK", seen: []string{"GET", "GET", "GET"}, retries: "1", replay: "no-response",
			stats: pool.ReuseStats{Opened: 3, StaleOnPeek: 1, Discarded: 1, ClosedEarly: 1, ReplaysNoResponse: 1}},
	}, {
		// (c) on a fresh conn, a POST is not replayed: its body went out.
		name: "c/die-on-fresh-conn/POST", method: "POST",
		script: func(conn, req int) memberAction {
			if conn == 1 {
				return dieAfterBody
			}
			return answerIdleEnd
		},
		idleClose: true,
		want: want{status: "HTTP/1.1 502 Bad Gateway", seen: []string{"GET", "POST data"}, retries: "0",
			stats: pool.ReuseStats{Opened: 2, StaleOnPeek: 1, Discarded: 1, ClosedEarly: 1}},
	}} {
		t.Run(tc.name, func(t *testing.T) {
			m := startScriptedMember(t, tc.script)
			if tc.hook {
				testHookMemberConn = func(sc *pool.ServerConn) {
					if !sc.Reused {
						return
					}
					m.resetIdle(0)
					deadline := time.Now().Add(2 * time.Second)
					for sockopt.Alive(sc.TCP) == nil && time.Now().Before(deadline) {
						time.Sleep(time.Millisecond)
					}
				}
				t.Cleanup(func() { testHookMemberConn = nil })
			}
			// The reaper must not find (a)'s closed conns before the Get
			// does: it runs at idle_timeout / 4.
			p := startProxy(t, httpConfig("", "idle_timeout = \"60s\"", m.Addr()))
			if got := send(t, p.addr("vs"), "GET"); got != "HTTP/1.1 200 OK" {
				t.Fatalf("first request: %q", got)
			}
			if tc.idleClose {
				waitMemberClosedIdle(t, m.Addr())
			}
			if got := send(t, p.addr("vs"), tc.method); got != tc.want.status {
				t.Fatalf("%s: got %q, want %q", tc.method, got, tc.want.status)
			}
			lines := p.waitAccess(t, 2)
			if got := fieldString(lines[1], "retries"); got != tc.want.retries {
				t.Errorf("access retries = %s, want %s", got, tc.want.retries)
			}
			if got := fieldString(lines[1], "replay"); got != tc.want.replay {
				t.Errorf("access replay = %q, want %q", got, tc.want.replay)
			}
			socktest.WaitFor(t, 2*time.Second, "the member to read every request", func() bool {
				return len(m.requests()) >= len(tc.want.seen)
			})
			if got := m.requests(); fmt.Sprint(got) != fmt.Sprint(tc.want.seen) {
				t.Errorf("member read %q, want %q", got, tc.want.seen)
			}
			st := p.srv.VirtualServer("vs").http.reuser.Stats()[0]
			if st.Opened != uint64(m.Accepted()) {
				t.Errorf("Opened = %d, but the member accepted %d conns", st.Opened, m.Accepted())
			}
			w := tc.want.stats
			got := pool.ReuseStats{Opened: st.Opened, Reused: st.Reused, StaleOnPeek: st.StaleOnPeek,
				Discarded: st.Discarded, ClosedEarly: st.ClosedEarly,
				ReplaysHeadUnsent: st.ReplaysHeadUnsent, ReplaysNoResponse: st.ReplaysNoResponse}
			if got != w {
				t.Errorf("counters\n got %+v\nwant %+v", got, w)
			}
		})
	}
}
