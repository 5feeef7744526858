package faults

import (
	"bytes"
	"fmt"
	"io"
	"net/http"
	"sync"
	"sync/atomic"
	"testing"
	"time"
)

// sgInflight counts the requests the members of a test with behavior
// "sg-inflight" are answering now, and the most at once.
var sgInflight, sgInflightMax atomic.Int64

func init() {
	behaviors["sg-inflight"] = behavior{handler: func(_ *member, next http.Handler) http.Handler {
		return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
			n := sgInflight.Add(1)
			defer sgInflight.Add(-1)
			for {
				m := sgInflightMax.Load()
				if n <= m || sgInflightMax.CompareAndSwap(m, n) {
					break
				}
			}
			next.ServeHTTP(w, r)
		})
	}}
}

// sgSampler polls a virtual server's Active (and in tcp mode
// ServerActive) while a load runs, and keeps the most seen.
type sgSampler struct {
	stop            chan struct{}
	done            chan struct{}
	maxActive       int64
	maxServerActive int64
	samples         int
}

func sgSample(p *tetherProc, vs string) *sgSampler {
	s := &sgSampler{stop: make(chan struct{}), done: make(chan struct{})}
	go func() {
		defer close(s.done)
		for {
			st := p.vsStats(vs)
			s.samples++
			s.maxActive = max(s.maxActive, st.Active)
			s.maxServerActive = max(s.maxServerActive, st.ServerActive)
			select {
			case <-s.stop:
				return
			case <-time.After(20 * time.Millisecond):
			}
		}
	}()
	return s
}

func (s *sgSampler) end() *sgSampler {
	close(s.stop)
	<-s.done
	return s
}

// Fault: a virtual server's max_connections is reached: 60 keepalive
// clients at once on an http virtual server with max_connections = 20,
// and 15 tcp relays at once on a tcp one with max_connections = 5.
//
// Load: each http client opens its conn, sends 8 requests one after the
// other (delay=25 ms at the member, so a client holds its conn ~200 ms),
// then closes: three waves' worth. Each tcp client sends 64 KiB over
// ~200 ms through the echo member, half-closes and reads it all back.
//
// Bound: backpressure, not errors. Tether stops accepting at the limit
// (proxy/vs.go acceptLoop): the clients beyond it wait in the kernel's
// accept backlog (their connect succeeds, their request waits unread)
// and get in as others close. Client conns never exceed the limit (the
// virtual server's Active, sampled every 20 ms, and the members' requests
// in flight at once), the limit is hit (LimitHits > 0) and reached
// (Active reaches it), and the clients waited for slots: the http load
// lasts at least three client sessions (60 sessions of 8 x 25 ms on 20
// slots).
//
// Nothing lost: every request answered 200 (no refused conn, no reset, no
// error status, no hung client), every relay byte-exact, and tether back
// to its baseline fds and goroutines afterwards.
func TestFaultMaxConnections(t *testing.T) {
	l := newLab(t, 2)
	l.startMember(1, memberConfig{HTTP: true, Echo: true, Behavior: "sg-inflight"})
	l.startMember(2, memberConfig{HTTP: true, Echo: true, Behavior: "sg-inflight"})
	sgInflight.Store(0)
	sgInflightMax.Store(0)
	const httpLimit, tcpLimit = 20, 5
	cfg := webAndEcho(2, "", "", fmt.Sprintf("max_connections = %d\n", httpLimit), fmt.Sprintf("max_connections = %d\n", tcpLimit))
	p := l.startTether(cfg, tetherOpts{})
	base := p.usage()

	// http: 60 clients, 20 slots.
	const clients, requests = 60, 8
	smp := sgSample(p, "web")
	start := time.Now()
	ld := startLoad(t, loadSpec{NS: l.CL, Addr: lbClientSide + ":8080", Clients: clients, Requests: requests,
		Path: "/?delay=25", Timeout: 15 * time.Second, Duration: 30 * time.Second})
	r := ld.wait()
	took := time.Since(start)
	smp.end()
	st := p.vsStats("web")
	if r.OK() != clients*requests || r.Transport != 0 || r.Hung != 0 || len(r.Status) != 1 {
		t.Errorf("http at max_connections: %s, want all %d answered 200", &r, clients*requests)
	}
	if st.LimitHits == 0 {
		t.Errorf("http: LimitHits = 0 with %d clients on %d slots", clients, httpLimit)
	}
	if smp.maxActive > httpLimit || smp.maxActive < httpLimit {
		t.Errorf("http: at most %d client conns active at once (of %d samples), want the limit %d exactly", smp.maxActive, smp.samples, httpLimit)
	}
	if m := sgInflightMax.Load(); m > httpLimit {
		t.Errorf("http: the members answered %d requests at once, more than the %d conns tether may hold", m, httpLimit)
	}
	if st.Accepted < clients {
		t.Errorf("http: %d conns accepted, want %d", st.Accepted, clients)
	}
	// A client's session is ~8 x 25 ms: with 20 slots the 60 take at least
	// three sessions' time; the slowest first answer waited for a slot.
	session := requests * 25 * time.Millisecond
	if took < 3*session {
		t.Errorf("http: the load took %s, less than 3 sessions (%s): clients did not wait for slots", took, 3*session)
	}
	waited := r.P99()
	t.Logf("http: %d clients on %d slots: %d answered 200 in %s; most active at once %d (%d samples), members' requests in flight at most %d, LimitHits %d, p99 latency %s",
		clients, httpLimit, r.OK(), took.Round(time.Millisecond), smp.maxActive, smp.samples, sgInflightMax.Load(), st.LimitHits, waited.Round(time.Millisecond))

	// tcp: 15 relays, 5 slots.
	const relays = 15
	smp = sgSample(p, "echo")
	start = time.Now()
	var wg sync.WaitGroup
	errs := make([]error, relays)
	for i := 0; i < relays; i++ {
		wg.Add(1)
		go func() {
			defer wg.Done()
			errs[i] = sgSlowEcho(l.CL, lbClientSide+":7007", 64<<10, 8, 25*time.Millisecond, 15*time.Second)
		}()
	}
	wg.Wait()
	took = time.Since(start)
	smp.end()
	st = p.vsStats("echo")
	for i, err := range errs {
		if err != nil {
			t.Errorf("tcp relay %d at max_connections: %v", i, err)
		}
	}
	if st.LimitHits == 0 {
		t.Errorf("tcp: LimitHits = 0 with %d relays on %d slots", relays, tcpLimit)
	}
	if smp.maxActive != tcpLimit || smp.maxServerActive > tcpLimit {
		t.Errorf("tcp: at most %d client conns and %d member conns at once (%d samples), want the limit %d", smp.maxActive, smp.maxServerActive, smp.samples, tcpLimit)
	}
	// (No lower bound on the time here: a relay waiting in the backlog has
	// all its bytes and its FIN in tether's socket already, so once in it
	// ends at once.)
	t.Logf("tcp: %d relays on %d slots: all byte-exact in %s; most active at once %d client, %d member conns (%d samples), LimitHits %d",
		relays, tcpLimit, took.Round(time.Millisecond), smp.maxActive, smp.maxServerActive, smp.samples, st.LimitHits)

	u := p.settles(base, 2, 10*time.Second)
	t.Logf("baseline %s, after %s", base, u)
}

// sgSlowEcho sends n pattern bytes through addr to an echo member in
// chunks chunks, one every gap, half-closes, and wants the same n bytes
// back then EOF, all within d.
func sgSlowEcho(ns, addr string, n, chunks int, gap, d time.Duration) error {
	c, err := dialTimeout(ns, addr, d)
	if err != nil {
		return err
	}
	defer c.Close()
	_ = c.SetDeadline(time.Now().Add(d))
	want := patternBody(n)
	werr := make(chan error, 1)
	go func() {
		for i := 0; i < chunks; i++ {
			if i > 0 {
				time.Sleep(gap)
			}
			if _, err := c.Write(want[i*n/chunks : (i+1)*n/chunks]); err != nil {
				werr <- err
				return
			}
		}
		werr <- c.CloseWrite()
	}()
	got, rerr := io.ReadAll(c)
	if err := <-werr; err != nil {
		return fmt.Errorf("write: %w", err)
	}
	if rerr != nil {
		return fmt.Errorf("read after %d of %d bytes: %w", len(got), n, rerr)
	}
	if !bytes.Equal(got, want) {
		return fmt.Errorf("echo differs: got %d bytes, want %d", len(got), n)
	}
	return nil
}
