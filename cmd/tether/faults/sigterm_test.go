package faults

import (
	"bufio"
	"bytes"
	"errors"
	"fmt"
	"io"
	"net"
	"net/http"
	"sync"
	"syscall"
	"testing"
	"time"
)

// Fault: SIGTERM while tether is under load, with global.shutdown_timeout
// = 3 s.
//
// Load at the signal: 4 fast keepalive clients (requests back to back), 4
// slow keepalive clients each with a request in flight (delay=1500 ms at
// the member, sent on a conn that already carried one request), 2 clients
// opening a conn per request, and two tcp relays through the echo member:
// one that keeps sending and never ends, one that sends 2 MiB over the
// second after the signal, half-closes and reads everything back.
//
// Bound: every request sent before the signal is answered 200 (no reset,
// no EOF, no timeout); the first response a keepalive client gets after
// the signal says Connection: close and tether then closes the conn (EOF
// within 1 s) — or, for a client idle at the signal, tether closes the
// idle conn and its next request (sent after the signal) is the one that
// gets no answer; new connections after the signal are refused (tether
// closes its listeners: the kernel answers SYN with RST, proxy/vs.go
// closeListener; a conn whose handshake completed in the accept backlog
// just before the close is reset instead); the relay that stays open is cut at shutdown_timeout
// (3 s ± 1 s after the signal), the one that ends before is byte-exact;
// tether exits 0, at the cut.
//
// Nothing lost: every request a member received was answered to its
// client (the members' count equals the clients' 200s), the finished relay
// echoed every byte, the cut relay echoed a byte-exact prefix, no client
// hung.
func TestFaultSigtermUnderLoad(t *testing.T) {
	l := newLab(t, 2)
	m1 := l.startMember(1, memberConfig{HTTP: true, Echo: true})
	m2 := l.startMember(2, memberConfig{HTTP: true, Echo: true})
	const shutdownTimeout = 3 * time.Second
	cfg := "[global]\nshutdown_timeout = \"3s\"\n\n" + webAndEcho(2, "", "",
		"[virtual_server.http]\nmax_requests = 0 # no Connection: close but shutdown's\n", "")
	p := l.startTether(cfg, tetherOpts{})
	web, echo := lbClientSide+":8080", lbClientSide+":7007"

	var sig sgSignal
	rec := &sgRecorder{}
	var wg sync.WaitGroup
	ends := make([]sgEnd, 8)
	slowSent := make(chan struct{}, 4)
	for i := 0; i < 4; i++ {
		wg.Add(2)
		go func() { // fast keepalive
			defer wg.Done()
			ends[i] = sgKeepalive(l.CL, web, fmt.Sprintf("fast%d", i), &sig, rec, func(int) string { return "/" }, nil)
		}()
		go func() { // slow keepalive: one quick request, then one that outlives the signal
			defer wg.Done()
			ends[4+i] = sgKeepalive(l.CL, web, fmt.Sprintf("slow%d", i), &sig, rec, func(n int) string {
				if n == 0 {
					return "/"
				}
				return "/?delay=1500"
			}, slowSent)
		}()
	}
	shortRefused := make([]error, 2)
	for i := 0; i < 2; i++ {
		wg.Add(1)
		go func() {
			defer wg.Done()
			shortRefused[i] = sgShort(l.CL, web, fmt.Sprintf("short%d", i), &sig, rec)
		}()
	}
	long := sgStartLongRelay(t, l.CL, echo)
	fin := sgStartFinishingRelay(t, l.CL, echo, &sig)

	for i := 0; i < 4; i++ {
		select {
		case <-slowSent:
		case <-time.After(5 * time.Second):
			t.Fatalf("the slow requests were not sent: %v", ends)
		}
	}
	time.Sleep(300 * time.Millisecond) // the slow requests are at the members now
	sig.mark()
	p.signal(syscall.SIGTERM)
	at := sig.at()

	// New connections: refused, on both virtual servers.
	time.Sleep(300 * time.Millisecond)
	for _, addr := range []string{web, echo} {
		c, err := dialTimeout(l.CL, addr, 2*time.Second)
		if err == nil {
			c.Close()
			t.Errorf("a new connection to %s 300 ms after SIGTERM was accepted", addr)
		} else if !errors.Is(err, syscall.ECONNREFUSED) {
			t.Errorf("a new connection to %s after SIGTERM: %v, want connection refused", addr, err)
		}
	}

	code := p.wait(10 * time.Second)
	exitAfter := time.Since(at)
	wg.Wait()
	longEnd, longErr := long.wait()
	finErr := fin.wait()
	// Tether's own moment: its log line just before the shutdown begins
	// (ms precision, truncated): it stopped in [logAt, stopAt).
	logAt, stopAt := at, at
	if ls := p.logLines("stopping: not accepting; draining open connections"); len(ls) != 1 {
		t.Errorf("tether logged %d stopping lines, want 1", len(ls))
	} else if ts, err := time.Parse("2006-01-02T15:04:05.000Z0700", fmt.Sprint(ls[0]["ts"])); err != nil {
		t.Errorf("stopping line's ts: %v", err)
	} else if ts.After(at.Add(-time.Millisecond)) {
		logAt, stopAt = ts, ts.Add(time.Millisecond)
	}
	keptConnsUntil := at // keepalive clients' requests sent before it must be answered
	if logAt.After(at) {
		keptConnsUntil = logAt
	}
	if code != 0 {
		t.Errorf("tether exited %d after SIGTERM, want 0\n%s", code, p.logTail())
	}

	// Requests: those sent before the signal all answered 200, and on the
	// keepalive conns those sent before tether began stopping too (a short
	// conn may still have been in the accept backlog, which the
	// listener's close resets: see below); the members answered nothing
	// the clients did not get.
	reqs := rec.all()
	var before, after, ok200, failedAfter int
	for _, r := range reqs {
		if r.status == 200 {
			ok200++
		}
		if r.sent.Before(at) || (r.keepalive && r.sent.Before(keptConnsUntil)) {
			before++
			if r.status != 200 {
				t.Errorf("%s: a request sent %s before SIGTERM (tether logged its stop %s after it) got status %d, error %v", r.client, at.Sub(r.sent), logAt.Sub(at), r.status, r.err)
			}
			continue
		}
		after++
		if r.status != 200 {
			failedAfter++
		}
	}
	if got := m1.snapshot().Requests + m2.snapshot().Requests; got != ok200 {
		t.Errorf("members received %d requests, clients got %d answers", got, ok200)
	}

	// Keepalive clients: told Connection: close, then closed. Tether
	// begins its shutdown a few ms after the signal: the first response to
	// a request sent after that (stopAt, tether's log line) says close.
	told, idleClosed := 0, 0
	for i, e := range ends {
		for _, sent := range e.kept {
			if sent.After(stopAt) {
				t.Errorf("keepalive client %d: a request sent %s after tether began stopping was answered without Connection: close", i, sent.Sub(stopAt))
				break
			}
		}
		switch {
		case e.hung:
			t.Errorf("keepalive client %d hung: %v", i, e)
		case e.toldClose && e.eofAfter:
			told++
			if !e.closeResp.After(at) {
				t.Errorf("keepalive client %d was told Connection: close before SIGTERM", i)
			}
		case e.toldClose:
			t.Errorf("keepalive client %d: Connection: close, then tether did not close the conn within 1 s: %v", i, e)
		case i >= 4:
			t.Errorf("slow keepalive client %d (a request in flight at SIGTERM) was not told Connection: close: %v", i, e)
		case e.lastSent.After(at) && (errors.Is(e.err, io.ErrUnexpectedEOF) || errors.Is(e.err, syscall.ECONNRESET)):
			// Idle when tether stopped: it closed the idle conn, and the
			// request the client sent after the signal met the close.
			idleClosed++
		default:
			t.Errorf("keepalive client %d ended without Connection: close: %v", i, e)
		}
	}
	// A short client's first failed connect: refused, or reset when its
	// handshake completed in the accept backlog just before the listener
	// closed (the kernel resets the conns it held for an accept).
	backlogReset := 0
	for i, err := range shortRefused {
		switch {
		case errors.Is(err, syscall.ECONNRESET):
			backlogReset++
		case !errors.Is(err, syscall.ECONNREFUSED):
			t.Errorf("short client %d: its first failed connect after SIGTERM: %v, want connection refused (or reset)", i, err)
		}
	}

	// Relays: the finished one byte-exact, the open one cut at the
	// shutdown timeout.
	if finErr != nil {
		t.Errorf("the relay that ended 1 s after SIGTERM: %v", finErr)
	}
	if longErr != nil {
		t.Errorf("the open relay: %v", longErr)
	}
	if cut := longEnd.Sub(at); cut < shutdownTimeout-time.Second || cut > shutdownTimeout+time.Second {
		t.Errorf("the open relay was cut %s after SIGTERM, want %s ± 1 s", cut, shutdownTimeout)
	}
	if exitAfter > shutdownTimeout+2*time.Second {
		t.Errorf("tether exited %s after SIGTERM (shutdown_timeout %s)", exitAfter, shutdownTimeout)
	}
	t.Logf("requests: %d sent before SIGTERM (all 200), %d after (%d unanswered); keepalive clients: %d told Connection: close then closed, %d closed idle; short clients reset in the backlog: %d; open relay cut %s after SIGTERM (%d bytes echoed exactly); tether exited %d, %s after SIGTERM",
		before, after, failedAfter, told, idleClosed, backlogReset, longEnd.Sub(at).Round(time.Millisecond), long.echoed, code, exitAfter.Round(time.Millisecond))
}

// sgSignal is the moment the test sent the signal (zero before).
type sgSignal struct {
	mu sync.Mutex
	t  time.Time
}

func (s *sgSignal) mark() {
	s.mu.Lock()
	s.t = time.Now()
	s.mu.Unlock()
}

func (s *sgSignal) at() time.Time {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.t
}

// sent reports whether the signal was sent.
func (s *sgSignal) sent() bool { return !s.at().IsZero() }

// sgReq is one request as a client saw it.
type sgReq struct {
	client    string
	keepalive bool      // on a keepalive client's conn
	sent      time.Time // its last byte written
	status    int       // 0: no answer
	err       error
}

type sgRecorder struct {
	mu   sync.Mutex
	reqs []sgReq
}

func (r *sgRecorder) add(q sgReq) {
	r.mu.Lock()
	r.reqs = append(r.reqs, q)
	r.mu.Unlock()
}

func (r *sgRecorder) all() []sgReq {
	r.mu.Lock()
	defer r.mu.Unlock()
	return append([]sgReq(nil), r.reqs...)
}

// sgEnd is how a keepalive client's conn ended.
type sgEnd struct {
	toldClose bool        // a response said Connection: close
	closeResp time.Time   // when that response was read
	eofAfter  bool        // then tether closed the conn (EOF within 1 s)
	kept      []time.Time // when the requests answered without Connection: close were sent, after the signal
	lastSent  time.Time   // the last request's last byte written
	hung      bool
	err       error
}

func (e sgEnd) String() string {
	return fmt.Sprintf("{told close %v, EOF after %v, hung %v, error %v}", e.toldClose, e.eofAfter, e.hung, e.err)
}

// sgExchange sends GET path on c and reads the whole answer.
func sgExchange(c net.Conn, br *bufio.Reader, path, id string, closeReq bool) (sent time.Time, resp *http.Response, err error) {
	_ = c.SetDeadline(time.Now().Add(10 * time.Second))
	req := fmt.Sprintf("GET %s HTTP/1.1\r\nHost: faults\r\nX-Req-Id: %s\r\n", path, id)
	if closeReq {
		req += "Connection: close\r\n"
	}
	if _, err := io.WriteString(c, req+"\r\n"); err != nil {
		return time.Now(), nil, err
	}
	sent = time.Now()
	resp, err = http.ReadResponse(br, nil)
	if err != nil {
		return sent, nil, err
	}
	_, err = io.Copy(io.Discard, resp.Body)
	resp.Body.Close()
	return sent, resp, err
}

// sgKeepalive runs one keepalive client: requests on one conn (path(n)
// for the nth) until tether ends it, after the signal, by a response with
// Connection: close (then it wants EOF) or by closing. sentCh, when not
// nil, is told when the first answer came back, just before the second
// request goes out.
func sgKeepalive(ns, addr, name string, sig *sgSignal, rec *sgRecorder, path func(int) string, sentCh chan<- struct{}) (e sgEnd) {
	c, err := dialTimeout(ns, addr, 5*time.Second)
	if err != nil {
		e.err = err
		return e
	}
	defer c.Close()
	br := bufio.NewReader(c)
	hardStop := time.Now().Add(20 * time.Second)
	for n := 0; time.Now().Before(hardStop); n++ {
		if n == 1 && sentCh != nil {
			sentCh <- struct{}{}
		}
		sent, resp, err := sgExchange(c, br, path(n), fmt.Sprintf("%s-%d", name, n), false)
		e.lastSent = sent
		q := sgReq{client: name, keepalive: true, sent: sent, err: err}
		if resp != nil {
			q.status = resp.StatusCode
		}
		rec.add(q)
		if err != nil {
			e.hung = isTimeout(err)
			e.err = err
			return e
		}
		now := time.Now()
		if !resp.Close && sig.sent() && sent.After(sig.at()) {
			e.kept = append(e.kept, sent)
		}
		if resp.Close {
			e.toldClose, e.closeResp = true, now
			_ = c.SetReadDeadline(time.Now().Add(time.Second))
			var b [1]byte
			_, err := c.Read(b[:])
			e.eofAfter = err == io.EOF
			e.err = err
			return e
		}
		if resp.StatusCode != 200 {
			e.err = fmt.Errorf("status %d", resp.StatusCode)
			return e
		}
	}
	e.hung = true
	return e
}

// sgShort runs a client that opens a conn per request until, after the
// signal, a connect fails; it returns that connect's error.
func sgShort(ns, addr, name string, sig *sgSignal, rec *sgRecorder) error {
	hardStop := time.Now().Add(20 * time.Second)
	for n := 0; time.Now().Before(hardStop); n++ {
		c, err := dialTimeout(ns, addr, 5*time.Second)
		if err != nil {
			if sig.sent() {
				return err
			}
			rec.add(sgReq{client: name, sent: time.Now(), err: fmt.Errorf("connect: %w", err)})
			continue
		}
		sent, resp, err := sgExchange(c, bufio.NewReader(c), "/", fmt.Sprintf("%s-%d", name, n), true)
		c.Close()
		q := sgReq{client: name, sent: sent, err: err}
		if resp != nil {
			q.status = resp.StatusCode
		}
		rec.add(q)
	}
	return errors.New("still connecting 20 s on")
}

// sgLongRelay is a tcp relay that sends 1 KiB every 20 ms and reads it
// back until the conn ends.
type sgLongRelay struct {
	done   chan struct{}
	end    time.Time // when the read side ended
	err    error     // a wrong echo, or no end
	echoed int
}

func sgStartLongRelay(t *testing.T, ns, addr string) *sgLongRelay {
	t.Helper()
	c, err := dialTimeout(ns, addr, 5*time.Second)
	if err != nil {
		t.Fatalf("tcp relay: %v", err)
	}
	r := &sgLongRelay{done: make(chan struct{})}
	want := patternBody(1 << 20)
	stopW := make(chan struct{})
	go func() { // writer
		off := 0
		for off+1024 <= len(want) {
			select {
			case <-stopW:
				return
			case <-time.After(20 * time.Millisecond):
			}
			if _, err := c.Write(want[off : off+1024]); err != nil {
				return
			}
			off += 1024
		}
	}()
	go func() { // reader
		defer close(r.done)
		defer c.Close()
		defer close(stopW)
		_ = c.SetReadDeadline(time.Now().Add(20 * time.Second))
		buf := make([]byte, 64<<10)
		for {
			n, err := c.Read(buf)
			if n > 0 {
				if !bytes.Equal(buf[:n], want[r.echoed:r.echoed+n]) {
					r.err = fmt.Errorf("echo differs after %d bytes", r.echoed)
				}
				r.echoed += n
			}
			if err != nil {
				r.end = time.Now()
				if isTimeout(err) {
					r.err = fmt.Errorf("not cut within 20 s: %w", err)
				}
				return
			}
		}
	}()
	return r
}

func (r *sgLongRelay) wait() (time.Time, error) {
	<-r.done
	return r.end, r.err
}

// sgFinishingRelay is a tcp relay open at the signal that sends 2 MiB over
// the second after it, half-closes, and wants every byte back, then EOF.
type sgFinishingRelay struct {
	done chan struct{}
	err  error
}

func sgStartFinishingRelay(t *testing.T, ns, addr string, sig *sgSignal) *sgFinishingRelay {
	t.Helper()
	c, err := dialTimeout(ns, addr, 5*time.Second)
	if err != nil {
		t.Fatalf("tcp relay: %v", err)
	}
	const total, chunks = 2 << 20, 20
	want := patternBody(total)
	r := &sgFinishingRelay{done: make(chan struct{})}
	werr := make(chan error, 1)
	go func() {
		// A first chunk at once: the relay is established at the signal.
		if _, err := c.Write(want[:total/chunks]); err != nil {
			werr <- err
			return
		}
		for !sig.sent() {
			time.Sleep(5 * time.Millisecond)
		}
		for i := 1; i < chunks; i++ {
			time.Sleep(time.Second / chunks)
			if _, err := c.Write(want[i*total/chunks : (i+1)*total/chunks]); err != nil {
				werr <- err
				return
			}
		}
		werr <- c.CloseWrite()
	}()
	go func() {
		defer close(r.done)
		defer c.Close()
		_ = c.SetDeadline(time.Now().Add(20 * time.Second))
		got, rerr := io.ReadAll(c)
		if err := <-werr; err != nil {
			r.err = fmt.Errorf("write: %w", err)
			return
		}
		switch {
		case rerr != nil:
			r.err = fmt.Errorf("read after %d of %d bytes: %w", len(got), total, rerr)
		case !bytes.Equal(got, want):
			r.err = fmt.Errorf("echo differs: %d bytes back of %d", len(got), total)
		}
	}()
	return r
}

func (r *sgFinishingRelay) wait() error {
	<-r.done
	return r.err
}
