package main

import (
	"bufio"
	"bytes"
	"context"
	"errors"
	"fmt"
	"io"
	"net"
	"net/http"
	"sync"
	"sync/atomic"
	"syscall"
	"time"

	hdrhistogram "github.com/HdrHistogram/hdrhistogram-go"
)

// kind is one sort of request of the mix.
type kind int

const (
	kaGet    kind = iota // GET on a keepalive conn
	kaPost               // POST of postBody bytes on a keepalive conn
	shortGet             // GET with Connection: close on a conn of its own
	tcpEcho              // echoBytes through the tcp virtual server, a conn of its own
	nKinds
)

var kindNames = [nKinds]string{"keepalive GET", "keepalive POST", "short GET", "tcp echo"}

// mix is each kind's share of the open loop, in percent.
var mix = [nKinds]int{85, 5, 8, 2}

// The load's sizes.
const (
	peakConns    = 32 // workers (each a keepalive conn) of the closed-loop peak
	kaConns      = 64 // keepalive conns of the open loop
	shortWorkers = 32 // at most this many short GETs and echoes at once
	postBody     = 1024
	echoBytes    = 64
	reqTimeout   = 10 * time.Second
)

// kindOf is the kind of the open loop's i-th request: slot (i*37)%100 of
// the mix's cumulative shares, so that every 100 requests hold the mix
// exactly, the kinds spread through them.
func kindOf(i int) kind {
	slot := i * 37 % 100
	for k, share := range mix {
		if slot < share {
			return kind(k)
		}
		slot -= share
	}
	return kaGet
}

// Requests as sent.
var (
	reqKAGet    = []byte("GET /ka HTTP/1.1\r\nHost: soak\r\nUser-Agent: tether-soak\r\n\r\n")
	reqShortGet = []byte("GET /short HTTP/1.1\r\nHost: soak\r\nUser-Agent: tether-soak\r\nConnection: close\r\n\r\n")
	reqKAPost   = append([]byte(fmt.Sprintf("POST /post HTTP/1.1\r\nHost: soak\r\nUser-Agent: tether-soak\r\nContent-Type: application/octet-stream\r\nContent-Length: %d\r\n\r\n", postBody)),
		bytes.Repeat([]byte("p"), postBody)...)
	echoMsg = bytes.Repeat([]byte("0123456789abcdef"), echoBytes/16)
)

// periodStats is what the requests that ended in one period did.
type periodStats struct {
	hist     *hdrhistogram.Histogram // latency in µs, from when each was due
	requests int64                   // ended, answered or failed
	byKind   [nKinds]int64
	errors   map[string]int64 // by kind and cause ("keepalive POST: status 502", "short GET: dial refused" ...)
}

func newPeriodStats() *periodStats {
	return &periodStats{hist: hdrhistogram.New(1, 60_000_000, 3), errors: map[string]int64{}}
}

func (s *periodStats) errorCount() int64 {
	var n int64
	for _, v := range s.errors {
		n += v
	}
	return n
}

// merge adds o into s.
func (s *periodStats) merge(o *periodStats) {
	s.hist.Merge(o.hist)
	s.requests += o.requests
	for k := range s.byKind {
		s.byKind[k] += o.byKind[k]
	}
	for k, v := range o.errors {
		s.errors[k] += v
	}
}

// recorder collects the requests' outcomes into the current period.
type recorder struct {
	mu  sync.Mutex
	cur *periodStats
}

func newRecorder() *recorder { return &recorder{cur: newPeriodStats()} }

// record notes one request of kind k that was due at due and ended now
// with err (nil: answered as expected). Failed requests count in the
// latency too: a client waited that long for its failure.
func (r *recorder) record(k kind, due time.Time, err error) {
	us := max(1, time.Since(due).Microseconds())
	r.mu.Lock()
	_ = r.cur.hist.RecordValue(min(us, 60_000_000))
	r.cur.requests++
	r.cur.byKind[k]++
	if err != nil {
		r.cur.errors[kindNames[k]+": "+cause(err)]++
	}
	r.mu.Unlock()
}

// swap returns the current period's stats and starts a new period.
func (r *recorder) swap() *periodStats {
	r.mu.Lock()
	defer r.mu.Unlock()
	s := r.cur
	r.cur = newPeriodStats()
	return s
}

// statusError is an answer other than 200.
type statusError int

func (e statusError) Error() string { return fmt.Sprintf("status %d", int(e)) }

// dialError is a failed connect.
type dialError struct{ err error }

func (e dialError) Error() string { return "dial: " + e.err.Error() }
func (e dialError) Unwrap() error { return e.err }

// cause names an error for the counts.
func cause(err error) string {
	var se statusError
	if errors.As(err, &se) {
		return se.Error()
	}
	prefix := ""
	if errors.As(err, new(dialError)) {
		prefix = "dial "
	}
	var ne net.Error
	switch {
	case errors.As(err, &ne) && ne.Timeout():
		return prefix + "timeout"
	case errors.Is(err, syscall.ECONNREFUSED):
		return prefix + "refused"
	case errors.Is(err, syscall.ECONNRESET):
		return prefix + "reset"
	case errors.Is(err, syscall.EPIPE):
		return prefix + "broken pipe"
	case errors.Is(err, io.EOF), errors.Is(err, io.ErrUnexpectedEOF):
		return prefix + "closed early"
	case errors.Is(err, errEchoMismatch):
		return "echo mismatch"
	}
	return prefix + "other"
}

var errEchoMismatch = errors.New("echo: bytes differ")

// client dials tether from the run's client source addresses, in turn.
type client struct {
	a addrs
	n atomic.Uint64
}

func (c *client) dial(addr string) (*net.TCPConn, error) {
	d := net.Dialer{Timeout: reqTimeout, LocalAddr: &net.TCPAddr{IP: c.a.clientIP(int(c.n.Add(1)))}}
	conn, err := d.Dial("tcp", addr)
	if err != nil {
		return nil, dialError{err}
	}
	return conn.(*net.TCPConn), nil
}

// kaConn is a keepalive client conn (nil c: none open).
type kaConn struct {
	cl *client
	c  *net.TCPConn
	br *bufio.Reader
}

// do sends req on the conn, dialing one first when none is open, and
// reads the answer. The conn is closed after an error or when tether said
// Connection: close.
func (k *kaConn) do(req []byte) error {
	if k.c == nil {
		c, err := k.cl.dial(k.cl.a.web)
		if err != nil {
			return err
		}
		k.c = c
		if k.br == nil {
			k.br = bufio.NewReaderSize(c, 4096)
		} else {
			k.br.Reset(c)
		}
	}
	closing, err := roundTrip(k.c, k.br, req)
	if err != nil || closing {
		k.close()
	}
	return err
}

func (k *kaConn) close() {
	if k.c != nil {
		k.c.Close()
		k.c = nil
	}
}

// roundTrip writes req and reads one answer whole; closing reports that
// the conn cannot carry another request.
func roundTrip(c net.Conn, br *bufio.Reader, req []byte) (closing bool, err error) {
	_ = c.SetDeadline(time.Now().Add(reqTimeout))
	if _, err := c.Write(req); err != nil {
		return true, err
	}
	resp, err := http.ReadResponse(br, nil)
	if err != nil {
		return true, err
	}
	_, err = io.Copy(io.Discard, resp.Body)
	resp.Body.Close()
	if err != nil {
		return true, err
	}
	if resp.StatusCode != http.StatusOK {
		return resp.Close, statusError(resp.StatusCode)
	}
	return resp.Close, nil
}

// shortGET does one GET on a conn of its own.
func (cl *client) shortGET() error {
	c, err := cl.dial(cl.a.web)
	if err != nil {
		return err
	}
	defer c.Close()
	_, err = roundTrip(c, bufio.NewReaderSize(c, 1024), reqShortGet)
	return err
}

// echo sends echoBytes through the tcp virtual server on a conn of its
// own, reads them back, half-closes and waits for tether's FIN.
func (cl *client) echo() error {
	c, err := cl.dial(cl.a.echo)
	if err != nil {
		return err
	}
	defer c.Close()
	_ = c.SetDeadline(time.Now().Add(reqTimeout))
	if _, err := c.Write(echoMsg); err != nil {
		return err
	}
	got := make([]byte, len(echoMsg)+1)
	if _, err := io.ReadFull(c, got[:len(echoMsg)]); err != nil {
		return err
	}
	if !bytes.Equal(got[:len(echoMsg)], echoMsg) {
		return errEchoMismatch
	}
	if err := c.CloseWrite(); err != nil {
		return err
	}
	if n, err := c.Read(got); n != 0 || !errors.Is(err, io.EOF) {
		if err == nil || errors.Is(err, io.EOF) {
			err = errEchoMismatch // bytes beyond the echo
		}
		return err
	}
	return nil
}

// peak measures the closed-loop peak of the open loop's mix: peakConns
// workers, each with a keepalive conn, send the mix's requests back to
// back for d (the i-th of all of them of kind kindOf(i), the keepalive
// ones on the worker's conn, the others on conns of their own). It
// returns the answered requests per second and the failed ones.
func peak(ctx context.Context, cl *client, d time.Duration) (float64, int64) {
	var ok, failed atomic.Int64
	var next atomic.Int64
	ctx, cancel := context.WithTimeout(ctx, d)
	defer cancel()
	t0 := time.Now()
	var wg sync.WaitGroup
	for range peakConns {
		wg.Add(1)
		go func() {
			defer wg.Done()
			k := &kaConn{cl: cl}
			defer k.close()
			for ctx.Err() == nil {
				if err := cl.do(k, kindOf(int(next.Add(1)-1))); err != nil {
					failed.Add(1)
					continue
				}
				ok.Add(1)
			}
		}()
	}
	wg.Wait()
	return float64(ok.Load()) / time.Since(t0).Seconds(), failed.Load()
}

// do sends one request of kind k: on k's conn when it is a keepalive kind.
func (cl *client) do(ka *kaConn, k kind) error {
	switch k {
	case kaPost:
		return ka.do(reqKAPost)
	case shortGet:
		return cl.shortGET()
	case tcpEcho:
		return cl.echo()
	}
	return ka.do(reqKAGet)
}

// job is one request of the open loop: its kind and when it was due.
type job struct {
	due  time.Time
	kind kind
}

// openLoop offers rate requests per second from start until end (or ctx's
// end), each due at start + i/rate whether or not the previous ones were
// answered; it returns when every request sent has ended. kaConns workers
// take the keepalive requests, shortWorkers the others; a request waits
// in a queue for a free worker, its wait counted in its latency.
func openLoop(ctx context.Context, cl *client, rec *recorder, rate float64, start, end time.Time) {
	ka := make(chan job, 1<<14)
	short := make(chan job, 1<<12)
	var wg sync.WaitGroup
	for range kaConns {
		wg.Add(1)
		go func() {
			defer wg.Done()
			kaWorker(ctx, cl, rec, ka)
		}()
	}
	for range shortWorkers {
		wg.Add(1)
		go func() {
			defer wg.Done()
			shortWorker(ctx, cl, rec, short)
		}()
	}
	schedule(ctx, rate, start, end, ka, short)
	close(ka)
	close(short)
	wg.Wait()
}

// dueAt is when the open loop's i-th request is due, from its start.
func dueAt(i int, rate float64) time.Duration {
	return time.Duration(float64(i) * float64(time.Second) / rate)
}

// schedule sends the jobs, each when it is due.
func schedule(ctx context.Context, rate float64, start, end time.Time, ka, short chan<- job) {
	t := time.NewTimer(0)
	defer t.Stop()
	for i := 0; ; i++ {
		due := start.Add(dueAt(i, rate))
		if !due.Before(end) {
			return
		}
		if d := time.Until(due); d > 0 {
			t.Reset(d)
			select {
			case <-t.C:
			case <-ctx.Done():
				return
			}
		}
		j := job{due: due, kind: kindOf(i)}
		ch := ka
		if j.kind == shortGet || j.kind == tcpEcho {
			ch = short
		}
		select {
		case ch <- j:
		case <-ctx.Done():
			return
		}
	}
}

// kaWorker sends the keepalive jobs on its conn; once ctx has ended it
// drops what is left in the queue.
func kaWorker(ctx context.Context, cl *client, rec *recorder, jobs <-chan job) {
	k := &kaConn{cl: cl}
	defer k.close()
	for j := range jobs {
		if ctx.Err() == nil {
			rec.record(j.kind, j.due, cl.do(k, j.kind))
		}
	}
}

// shortWorker sends each job on a conn of its own; once ctx has ended it
// drops what is left in the queue.
func shortWorker(ctx context.Context, cl *client, rec *recorder, jobs <-chan job) {
	for j := range jobs {
		if ctx.Err() == nil {
			rec.record(j.kind, j.due, cl.do(nil, j.kind))
		}
	}
}
