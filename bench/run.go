package bench

import (
	"bufio"
	"bytes"
	"context"
	"crypto/tls"
	"errors"
	"fmt"
	"io"
	"math/bits"
	"net"
	"net/netip"
	"os"
	"runtime"
	"sync"
	"sync/atomic"
	"syscall"
	"time"

	hdrhistogram "github.com/HdrHistogram/hdrhistogram-go"
	"github.com/schollz/progressbar/v3"

	"golang.org/x/sys/unix"

	"github.com/tetherproxy/tether/sockopt"
)

// Run measures o.Target under the load o describes and returns what it
// saw. It validates o first (the error names the flag). When ctx ends
// during the run, Run stops every worker, cuts the requests in flight
// (they are not counted) and returns what was measured until then, with
// Result.Interrupted set and a nil error.
func Run(ctx context.Context, o Options) (*Result, error) {
	if err := o.Validate(); err != nil {
		return nil, err
	}
	o = o.withDefaults()
	t, err := resolve(ctx, o)
	if err != nil {
		return nil, err
	}
	var ct *clientTLS
	if t.tls {
		if ct, err = newClientTLS(o, t); err != nil {
			return nil, err
		}
	}
	if o.Warmup > 0 {
		w := o
		w.Duration, w.Requests, w.Progress = o.Warmup, 0, nil
		newPhase(w, t, ct).run(ctx)
		if ctx.Err() != nil {
			return &Result{Label: o.Label, Target: t.addr.String(), Protocol: protocolName(o, t), Conn: o.Conn,
				Errors: map[string]int64{}, Interrupted: true}, nil
		}
	}
	p := newPhase(o, t, ct)
	p.run(ctx)
	r := p.result()
	r.Interrupted = ctx.Err() != nil
	var twErr error
	if r.TimeWaitClient, r.TimeWaitTarget, twErr = p.countTimeWait(); twErr != nil {
		r.TimeWaitErr = twErr.Error()
	}
	return r, nil
}

// protocolName is Result.Protocol: o.Protocol, or https for http over TLS.
func protocolName(o Options, t target) string {
	if t.tls {
		return "https"
	}
	return o.Protocol
}

// phase is one load run (the warmup or the measured one) and what its
// workers share.
type phase struct {
	o        Options
	t        target
	tls      *clientTLS // https; nil otherwise
	addr     string
	req      []byte // the http request, sent as is
	payload  []byte // the tcp payload
	dialer   net.Dialer
	start    time.Time
	end      time.Time                     // duration mode; zero otherwise
	interval time.Duration                 // open loop: time between two due sends
	ticket   atomic.Int64                  // open loop: next request index
	done     atomic.Int64                  // finished requests, for the progress bar
	ports    [1024]atomic.Uint64           // local ports used, a bit each
	local    atomic.Pointer[netip.Addr]    // local address of the conns
	conns    []atomic.Pointer[net.TCPConn] // per worker, to cut on cancel (net.Dialer conns)
	files    []atomic.Pointer[os.File]     // the same for rawConns in the poller
	workers  []*worker
	elapsed  time.Duration
	cpu      time.Duration // the process's CPU time over the run
}

func newPhase(o Options, t target, ct *clientTLS) *phase {
	p := &phase{o: o, t: t, tls: ct, addr: t.addr.String()}
	p.dialer = net.Dialer{Timeout: o.Timeout, KeepAlive: -1}
	if o.Protocol == ProtocolHTTP {
		p.req = buildRequest(o, t, o.Conn == ConnShort && o.Close == CloseServer)
	} else {
		p.payload = make([]byte, o.Size)
		for i := range p.payload {
			p.payload[i] = byte('a' + i%26)
		}
	}
	if o.Rate > 0 {
		p.interval = time.Duration(float64(time.Second) / o.Rate)
	}
	p.conns = make([]atomic.Pointer[net.TCPConn], o.Concurrency)
	p.files = make([]atomic.Pointer[os.File], o.Concurrency)
	return p
}

// run starts the workers, waits for them and records the elapsed time.
func (p *phase) run(ctx context.Context) {
	n := p.o.Concurrency
	p.workers = make([]*worker, n)
	for i := range p.workers {
		w := p.newWorker(i)
		if p.o.Requests > 0 && p.o.Rate == 0 {
			// Closed loop with a request count: shared out up front, so
			// the conns a long run opens do not depend on scheduling.
			w.quota = p.o.Requests / n
			if i < p.o.Requests%n {
				w.quota++
			}
		}
		p.workers[i] = w
	}
	cpu0 := processCPU()
	p.start = time.Now()
	if p.o.Duration > 0 {
		p.end = p.start.Add(p.o.Duration)
	}
	stopCut := context.AfterFunc(ctx, p.cutConns)
	defer stopCut()
	stopBar := p.progress()
	var wg sync.WaitGroup
	for _, w := range p.workers {
		wg.Add(1)
		go func() {
			defer wg.Done()
			w.loop(ctx)
		}()
	}
	wg.Wait()
	p.elapsed = time.Since(p.start)
	p.cpu = processCPU() - cpu0
	stopBar()
}

// newWorker returns worker i of the phase, with no conn and no quota.
func (p *phase) newWorker(i int) *worker {
	w := &worker{p: p, id: i, quota: -1, lat: newHist(), connect: newHist()}
	if p.o.Protocol == ProtocolTCP {
		w.buf = make([]byte, p.o.Size)
	}
	if p.tls != nil {
		w.hs = newHist()
	}
	return w
}

// processCPU is the user+system CPU time this process used so far; 0 when
// getrusage fails.
func processCPU() time.Duration {
	var ru syscall.Rusage
	if syscall.Getrusage(syscall.RUSAGE_SELF, &ru) != nil {
		return 0
	}
	return time.Duration(ru.Utime.Nano() + ru.Stime.Nano())
}

// cutConns makes every conn's I/O fail at once (ctx ended).
func (p *phase) cutConns() {
	for i := range p.conns {
		if c := p.conns[i].Load(); c != nil {
			_ = c.SetDeadline(time.Unix(1, 0))
		}
		if f := p.files[i].Load(); f != nil {
			_ = f.SetDeadline(time.Unix(1, 0))
		}
	}
}

// progress starts the progress bar, if any, and returns its stop.
func (p *phase) progress() (stop func()) {
	if p.o.Progress == nil {
		return func() {}
	}
	max := int64(-1)
	switch {
	case p.o.Requests > 0:
		max = int64(p.o.Requests)
	case p.o.Duration > 0:
		max = int64(p.o.Duration / SeriesStep)
	}
	bar := progressbar.NewOptions64(max,
		progressbar.OptionSetWriter(p.o.Progress),
		progressbar.OptionSetDescription(p.o.Label),
		progressbar.OptionShowCount(),
		progressbar.OptionSetWidth(30),
		progressbar.OptionThrottle(100*time.Millisecond),
		progressbar.OptionClearOnFinish(),
	)
	quit, exited := make(chan struct{}), make(chan struct{})
	go func() { // owner: stop, below
		defer close(exited)
		tick := time.NewTicker(SeriesStep)
		defer tick.Stop()
		for {
			select {
			case <-quit:
				return
			case <-tick.C:
				if p.o.Requests > 0 {
					_ = bar.Set64(p.done.Load())
				} else {
					_ = bar.Set64(int64(time.Since(p.start) / SeriesStep))
					bar.Describe(fmt.Sprintf("%s %d req", p.o.Label, p.done.Load()))
				}
			}
		}
	}()
	return func() {
		close(quit)
		<-exited
		_ = bar.Finish()
		_ = bar.Clear()
	}
}

// worker sends requests one at a time, over at most one conn.
type worker struct {
	p     *phase
	id    int
	quota int // requests left (closed loop with a count); -1 = no count

	c        wire         // the open conn: conn or &raw; nil when none
	conn     *net.TCPConn // c when it came from net.Dialer
	raw      rawConn      // c when it came from rawDial
	tc       *tls.Conn    // https: the TLS layer over conn; nil otherwise
	br       *bufio.Reader
	uses     int
	deadline time.Time
	connAt   time.Time // when the conn (and its TLS handshake) was ready
	buf      []byte    // tcp echo
	timer    *time.Timer

	lat, connect     *hdrhistogram.Histogram
	ok               int64
	errs             [numKinds]int64
	opened           int64
	byServer         int64
	byClient         int64
	okSeries, errSer []int64
	sent, received   int64
	waitEOF          [1]byte

	// rawDial's target address and getsockname buffer
	family int
	sa     unix.Sockaddr
	name   unix.RawSockaddrAny

	// https only
	hs                  *hdrhistogram.Histogram // handshake times
	handshakes, resumed int64
	tlsSeen             []tlsParams      // distinct negotiated parameters
	tlsErrs             map[string]int64 // failed handshakes by message
}

// loop is a worker's body: take the next request, send it, record it.
func (w *worker) loop(ctx context.Context) {
	p := w.p
	defer w.closeConn(false)
	for ctx.Err() == nil {
		var start, now time.Time // due time; now (closed loop: the same)
		if p.interval > 0 {
			i := p.ticket.Add(1) - 1
			if p.o.Requests > 0 && i >= int64(p.o.Requests) {
				return
			}
			start = p.start.Add(time.Duration(i) * p.interval)
			if !p.end.IsZero() && !start.Before(p.end) {
				return
			}
			if !w.sleepUntil(ctx, start) {
				return
			}
			now = time.Now()
		} else {
			if w.quota == 0 {
				return
			}
			if w.quota > 0 {
				w.quota--
			}
			start = time.Now()
			if !p.end.IsZero() && !start.Before(p.end) {
				return
			}
			now = start
		}
		kind := w.once(ctx, now)
		if kind != kindOK && ctx.Err() != nil {
			return // cut by the cancel, not by the target
		}
		end := time.Now()
		b := int(end.Sub(p.start) / SeriesStep)
		if kind == kindOK {
			w.ok++
			recordDur(w.lat, end.Sub(start))
			w.okSeries = bump(w.okSeries, b)
		} else {
			w.errs[kind]++
			w.errSer = bump(w.errSer, b)
		}
		if p.o.Progress != nil {
			p.done.Add(1)
		}
	}
}

func bump(s []int64, i int) []int64 {
	if i < 0 {
		i = 0
	}
	for len(s) <= i {
		s = append(s, 0)
	}
	s[i]++
	return s
}

// sleepUntil waits for the due time of an open-loop request; false when
// ctx ended first.
func (w *worker) sleepUntil(ctx context.Context, due time.Time) bool {
	d := time.Until(due)
	if d <= 0 {
		return true
	}
	if w.timer == nil {
		w.timer = time.NewTimer(d)
	} else {
		w.timer.Reset(d)
	}
	select {
	case <-w.timer.C:
		return true
	case <-ctx.Done():
		w.timer.Stop()
		return false
	}
}

// once sends one request and reads its answer, opening a conn first when
// the worker has none; now is the time the attempt starts. It returns
// kindOK or the error kind.
func (w *worker) once(ctx context.Context, now time.Time) int {
	p := w.p
	if w.c == nil {
		k := kindOK
		if p.useRaw() {
			k = w.rawDial(ctx, now)
		} else {
			k = w.dial(ctx, now)
		}
		if k != kindOK {
			return k
		}
		now = w.connAt
	}
	c := w.c
	// Coarse deadline: refreshed when less than half the timeout is left.
	if w.deadline.Sub(now) < p.o.Timeout/2 {
		w.deadline = now.Add(p.o.Timeout)
		_ = c.SetDeadline(w.deadline)
		if ctx.Err() != nil { // cutConns may have run before this deadline
			return kindOther
		}
	}
	if p.o.Protocol == ProtocolTCP {
		return w.echo(c)
	}
	var err error
	if w.tc != nil {
		_, err = w.tc.Write(p.req)
	} else {
		_, err = c.Write(p.req)
	}
	if err != nil {
		return w.fail(err)
	}
	w.sent += int64(len(p.req))
	yieldForAnswer(w.br)
	status, closing, err := readResponse(w.br, p.o.Method == "HEAD")
	if err != nil {
		return w.fail(err)
	}
	w.uses++
	if closing || p.o.Conn == ConnShort || (p.o.RequestsPerConn > 0 && w.uses >= p.o.RequestsPerConn) {
		w.closeConn(closing)
	}
	if status < 200 || status >= 400 {
		return kindBadStatus
	}
	return kindOK
}

// yieldForAnswer lets the other workers run between a request's write
// and the read of its answer, when nothing of the answer is buffered yet.
// A read right after the write nearly always finds nothing (the target
// has not run yet) and costs a failed read(2) and a park in the poller;
// after the other workers' turns the answer is usually there, and read
// in one call. It changes no measured time: a worker whose answer came
// waits for its turn either way, and with nothing else runnable Gosched
// returns at once. Long conns: 0.47 failed reads per request -> 0.12 and
// ~9% less CPU per request against nginx.
func yieldForAnswer(br *bufio.Reader) {
	if br.Buffered() == 0 {
		runtime.Gosched()
	}
}

// echo is one tcp round trip: the payload out, the same bytes back.
func (w *worker) echo(c wire) int {
	p := w.p
	if _, err := c.Write(p.payload); err != nil {
		return w.fail(err)
	}
	w.sent += int64(len(p.payload))
	runtime.Gosched() // see yieldForAnswer
	n, err := io.ReadFull(c, w.buf)
	w.received += int64(n)
	if err != nil {
		return w.fail(err)
	}
	w.uses++
	if !bytes.Equal(w.buf, p.payload) {
		w.closeConn(false)
		return kindProtocol
	}
	if p.o.Conn == ConnShort || (p.o.RequestsPerConn > 0 && w.uses >= p.o.RequestsPerConn) {
		w.closeConn(false)
	}
	return kindOK
}

// dial opens the worker's conn and records it, the attempt having started
// at t0; for https it also runs the TLS handshake, timed on its own.
func (w *worker) dial(ctx context.Context, t0 time.Time) int {
	p := w.p
	nc, err := p.dialer.DialContext(ctx, "tcp", p.addr)
	if err != nil {
		return classify(err)
	}
	t1 := time.Now()
	recordDur(w.connect, t1.Sub(t0))
	c := nc.(*net.TCPConn)
	w.opened++
	if la, ok := c.LocalAddr().(*net.TCPAddr); ok {
		port := uint(la.Port)
		p.ports[port>>6].Or(1 << (port & 63))
		if p.local.Load() == nil {
			if ip, ok := netip.AddrFromSlice(la.IP); ok {
				ip = ip.Unmap()
				p.local.CompareAndSwap(nil, &ip)
			}
		}
	}
	w.c, w.conn, w.uses, w.deadline, w.connAt = c, c, 0, time.Time{}, t1
	p.conns[w.id].Store(c)
	var r io.Reader = c
	if p.tls != nil {
		// The handshake runs on the request's deadline; a cut (cutConns)
		// that came before this deadline is seen by the ctx check.
		w.deadline = t1.Add(p.o.Timeout)
		_ = c.SetDeadline(w.deadline)
		if ctx.Err() != nil {
			w.drop(false)
			return kindOther
		}
		tc := tls.Client(c, p.tls.conf)
		if err := tc.Handshake(); err != nil {
			kind := w.handshakeFailed(err)
			w.fail(err)
			return kind
		}
		w.connAt = time.Now()
		recordDur(w.hs, w.connAt.Sub(t1))
		st := tc.ConnectionState()
		w.noteHandshake(&st)
		w.tc, r = tc, tc
	}
	if p.o.Protocol == ProtocolHTTP {
		if w.br == nil {
			w.br = newBufReader(r)
		} else {
			w.br.Reset(r)
		}
	}
	return kindOK
}

// fail drops the conn after an I/O error and classifies the error.
func (w *worker) fail(err error) int {
	if w.c != nil {
		if errors.Is(err, io.EOF) || errors.Is(err, io.ErrUnexpectedEOF) || errors.Is(err, syscall.ECONNRESET) {
			w.byServer++
		} else {
			w.byClient++
		}
		w.drop(false)
	}
	return classify(err)
}

// closeConn closes the worker's conn and notes who closed first. When the
// server announced it closes (serverCloses), bench waits for its FIN
// (bounded by the timeout) so that the server does close first and keeps
// the TIME_WAIT, instead of racing it. Over TLS, a client that closes
// first sends close_notify before its FIN; after the server's FIN it
// sends nothing (an alert written to a closed peer would draw a reset,
// which would take the TIME_WAIT away from the server).
func (w *worker) closeConn(serverCloses bool) {
	c := w.c
	if c == nil {
		return
	}
	if serverCloses {
		_ = c.SetReadDeadline(time.Now().Add(w.p.o.Timeout))
		_, err := w.br.Read(w.waitEOF[:])
		for err == nil { // bytes after the response: drain them
			_, err = w.br.Read(w.waitEOF[:])
		}
		if err == io.EOF {
			w.byServer++
			w.drop(false)
			return
		}
		w.byClient++
		w.drop(true)
		return
	}
	if w.peerClosed() {
		w.byServer++
		w.drop(false)
		return
	}
	w.byClient++
	w.drop(true)
}

// peerClosed reports whether the target has already closed (EOF) or
// reset the worker's conn, without consuming anything.
func (w *worker) peerClosed() bool {
	if w.conn == nil {
		return peerClosed(w.raw.fd)
	}
	err := sockopt.Alive(w.conn)
	return errors.Is(err, io.EOF) || errors.Is(err, syscall.ECONNRESET)
}

// drop closes the worker's conn; notify sends a TLS close_notify first
// (https).
func (w *worker) drop(notify bool) {
	if notify && w.tc != nil {
		_ = w.tc.Close() // closes w.conn too
	} else {
		_ = w.c.Close()
	}
	if w.conn != nil {
		w.p.conns[w.id].Store(nil)
	}
	w.c, w.conn, w.tc = nil, nil, nil
}

// wire is what a worker's requests go over: a *net.TCPConn or, on the
// raw path, a *rawConn.
type wire interface {
	io.ReadWriteCloser
	SetDeadline(t time.Time) error
	SetReadDeadline(t time.Time) error
}

func newBufReader(r io.Reader) *bufio.Reader { return bufio.NewReaderSize(r, maxLine) }

// classify maps an error to its kind.
func classify(err error) int {
	var ne net.Error
	switch {
	case errors.Is(err, syscall.ECONNREFUSED):
		return kindRefused
	case errors.Is(err, syscall.ECONNRESET), errors.Is(err, syscall.EPIPE), errors.Is(err, syscall.ECONNABORTED):
		return kindReset
	case errors.Is(err, os.ErrDeadlineExceeded), errors.As(err, &ne) && ne.Timeout():
		return kindTimeout
	case errors.Is(err, io.EOF), errors.Is(err, io.ErrUnexpectedEOF):
		return kindShortRead
	case errors.Is(err, errProtocol):
		return kindProtocol
	}
	return kindOther
}

// result merges what the workers recorded.
func (p *phase) result() *Result {
	o := p.o
	r := &Result{
		Label: o.Label, Target: p.addr, Protocol: protocolName(o, p.t), Conn: o.Conn,
		Concurrency: o.Concurrency, RequestsPerConn: o.RequestsPerConn, Rate: o.Rate,
		Errors: map[string]int64{}, Duration: p.elapsed, CPU: p.cpu,
	}
	lat, conn := newHist(), newHist()
	var okS, errS []int64
	for _, w := range p.workers {
		lat.Merge(w.lat)
		conn.Merge(w.connect)
		r.OK += w.ok
		for k, n := range w.errs {
			if n > 0 {
				r.Errors[errKinds[k]] += n
			}
		}
		r.ConnsOpened += int(w.opened)
		r.ClosedByServer += w.byServer
		r.ClosedByClient += w.byClient
		r.BytesSent += w.sent
		r.BytesReceived += w.received
		okS, errS = addSeries(okS, w.okSeries), addSeries(errS, w.errSer)
	}
	r.Requests = r.OK + r.ErrorCount()
	if p.elapsed > 0 {
		r.RPS = float64(r.OK) / p.elapsed.Seconds()
	}
	r.Latency, r.Connect, r.Distribution = percentiles(lat), percentiles(conn), distribution(lat)
	for i := range p.ports {
		r.PortsUsed += bits.OnesCount64(p.ports[i].Load())
	}
	if p.tls != nil {
		p.mergeTLS(r)
	}
	n := max(len(okS), len(errS))
	r.Series = make([]Point, n)
	for i := range n {
		r.Series[i].At = time.Duration(i) * SeriesStep
		if i < len(okS) {
			r.Series[i].Requests = okS[i]
		}
		if i < len(errS) {
			r.Series[i].Errors = errS[i]
		}
	}
	return r
}

func addSeries(dst, src []int64) []int64 {
	for len(dst) < len(src) {
		dst = append(dst, 0)
	}
	for i, v := range src {
		dst[i] += v
	}
	return dst
}
