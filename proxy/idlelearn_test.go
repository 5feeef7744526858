package proxy

import (
	"bufio"
	"errors"
	"fmt"
	"io"
	"net"
	"net/http"
	"os"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/tetherproxy/tether/sockopt/socktest"
)

// idleMember is an in-process HTTP/1.1 member that closes every conn
// exactly idle after its last response (with a FIN, or with rst a reset),
// announcing nothing: no Keep-Alive header, no Connection: close. It
// counts the requests it saw by their X-Request-Id.
type idleMember struct {
	*socktest.Backend
	idle time.Duration
	rst  bool

	idleCloses atomic.Int64
	mu         sync.Mutex
	seen       map[string]int
}

func startIdleMember(t *testing.T, idle time.Duration, rst bool) *idleMember {
	m := &idleMember{idle: idle, rst: rst, seen: make(map[string]int)}
	m.Backend = socktest.Start(t, m.serve)
	return m
}

func (m *idleMember) serve(c *net.TCPConn) {
	defer c.Close()
	br := bufio.NewReader(c)
	for {
		req, err := http.ReadRequest(br)
		if err != nil {
			if errors.Is(err, os.ErrDeadlineExceeded) { // the idle timer
				m.idleCloses.Add(1)
				if m.rst {
					_ = c.SetLinger(0)
				}
			}
			return
		}
		_, _ = io.Copy(io.Discard, req.Body)
		m.mu.Lock()
		m.seen[req.Header.Get("X-Request-Id")]++
		m.mu.Unlock()
		if _, err := io.WriteString(c, "HTTP/1.1 200 OK\r\nContent-Length: 2\r\n\r\nok"); err != nil {
			return
		}
		_ = c.SetReadDeadline(time.Now().Add(m.idle))
	}
}

// raceVariant is one run of the reuse-race harness: how the member closes,
// and whether clients keep their conns to tether.
type raceVariant struct {
	name      string
	rst       bool
	keepalive bool
}

// The reuse race with a member that closes idle conns unannounced, after
// 300 ms: waves of POSTs (and a GET in four requests) land when tether's
// pooled conns are ~300 ms idle (the phase swept over ±10 ms), with FIN and
// RST closes, keepalive and fresh clients, in parallel. No client sees an
// error, and the member sees every POST exactly once (a GET may be replayed): tether learns the member's timeout from its
// first closes (the first waves land just after them) and from then on
// never hands out a conn the member is about to close.
func TestHTTPPostsSurviveAMemberThatClosesIdleConnsUnannounced(t *testing.T) {
	for _, v := range []raceVariant{
		{"fin-keepalive", false, true},
		{"fin-fresh", false, false},
		{"rst-keepalive", true, true},
		{"rst-fresh", true, false},
	} {
		t.Run(v.name, func(t *testing.T) {
			t.Parallel()
			runRaceVariant(t, v)
		})
	}
}

const (
	raceMemberIdle = 300 * time.Millisecond
	raceClients    = 20 // requests per wave: 15 POSTs, 5 GETs
	raceWaves      = 26 // 520 requests per variant, 2,080 in all
)

func runRaceVariant(t *testing.T, v raceVariant) {
	member := startIdleMember(t, raceMemberIdle, v.rst)
	p := startProxy(t, httpConfig("", "", member.Addr()))
	url := "http://" + p.addr("vs") + "/post"
	var clients [raceClients]*http.Client
	for i := range clients {
		clients[i] = proxyClient(v.keepalive)
		defer clients[i].CloseIdleConnections()
	}
	var failures atomic.Int64
	var firstErr atomic.Value
	sent := 0
	deadline := time.Now().Add(20 * time.Second) // a bound; the run takes ~9 s
	var last time.Time
	learntAt := -1
	for wave := 0; wave < raceWaves && time.Now().Before(deadline); wave++ {
		if wave > 0 {
			// Pace the wave: the member's conns went idle as the last wave
			// ended; land at 300 ms of idle plus an offset from +10 ms down
			// to -10 ms, 1 ms a wave (a schedule, not a wait for a state).
			offset := time.Duration(10-(wave-1)%21) * time.Millisecond
			tm := time.NewTimer(time.Until(last.Add(raceMemberIdle + offset)))
			<-tm.C
		}
		var wg sync.WaitGroup
		for i, cl := range clients {
			wg.Add(1)
			go func() {
				defer wg.Done()
				method := "POST"
				if i%4 == 3 {
					method = "GET"
				}
				id := fmt.Sprintf("%s-%s-%d-%d", method, v.name, wave, i)
				if err := raceRequest(cl, method, url, id); err != nil {
					failures.Add(1)
					firstErr.CompareAndSwap(nil, err)
				}
			}()
		}
		wg.Wait()
		last = time.Now()
		sent += raceClients
		if learntAt < 0 && p.srv.Pool("p").Stats()[0].IdleTimeoutLearnt > 0 {
			learntAt = wave
		}
	}
	t.Logf("%s: learnt after wave %d of %d", v.name, learntAt, raceWaves)
	if sent < raceClients*raceWaves {
		t.Errorf("only %d of %d requests sent within the bound", sent, raceClients*raceWaves)
	}
	checkRaceVariant(t, v, p, member, sent, failures.Load(), firstErr.Load())
}

// raceRequest sends one request (a POST with a body, or a GET) with its id
// and wants 200 "ok".
func raceRequest(cl *http.Client, method, url, id string) error {
	var body io.Reader
	if method == "POST" {
		body = strings.NewReader("payload " + id)
	}
	req, err := http.NewRequest(method, url, body)
	if err != nil {
		return err
	}
	req.Header.Set("X-Request-Id", id)
	resp, err := cl.Do(req)
	if err != nil {
		return fmt.Errorf("%s: %w", id, err)
	}
	defer resp.Body.Close()
	got, err := io.ReadAll(resp.Body)
	if err != nil || resp.StatusCode != 200 || string(got) != "ok" {
		return fmt.Errorf("%s: %d %q %v", id, resp.StatusCode, got, err)
	}
	return nil
}

// checkRaceVariant checks a variant's outcome: no client error, each
// request seen by the member, each POST exactly once (a GET may be replayed), the timeout learnt and shown in access lines.
func checkRaceVariant(t *testing.T, v raceVariant, p *proxyUnderTest, member *idleMember, sent int, failures int64, first any) {
	ms := p.srv.Pool("p").Stats()[0]
	t.Logf("%s: %d requests, %d client errors; member: %d conns, %d idle closes; tether learnt %v from %d closes",
		v.name, sent, failures, member.Accepted(), member.idleCloses.Load(), ms.IdleTimeoutLearnt, ms.IdleCloses)
	if failures != 0 {
		t.Errorf("%s: %d client errors, first: %v", v.name, failures, first)
	}
	member.mu.Lock()
	if len(member.seen) != sent {
		t.Errorf("%s: the member saw %d distinct requests, want %d", v.name, len(member.seen), sent)
	}
	for id, n := range member.seen {
		if n != 1 && strings.HasPrefix(id, "POST-") {
			t.Errorf("%s: the member saw %s %d times", v.name, id, n)
		}
	}
	member.mu.Unlock()
	// tether's idle time starts when it has the response, a little after
	// the member's; a reset is dated when seen (an upper bound).
	if ms.IdleTimeoutLearnt < raceMemberIdle-30*time.Millisecond || ms.IdleTimeoutLearnt > raceMemberIdle+60*time.Millisecond {
		t.Errorf("%s: learnt %v; want about the member's 300 ms", v.name, ms.IdleTimeoutLearnt)
	}
	// A line is written just after its response went out.
	lines := p.waitAccess(t, sent)
	e := lines[len(lines)-1]
	if src, lim := fieldString(e, "server_conn_idle_source"), fieldString(e, "server_conn_idle_limit"); src != "learnt" || lim == "" {
		t.Errorf("%s: last access line says idle source %q limit %v; want learnt, ~270ms", v.name, src, lim)
	}
}
