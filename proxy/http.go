package proxy

import (
	"bufio"
	"bytes"
	"crypto/tls"
	"errors"
	"io"
	"net"
	"os"
	"slices"
	"sort"
	"strconv"
	"sync"
	"sync/atomic"
	"syscall"
	"time"

	"go.uber.org/zap"
	"go.uber.org/zap/zapcore"

	"github.com/tetherproxy/tether/config"
	"github.com/tetherproxy/tether/pool"
	"github.com/tetherproxy/tether/proxy/certs"
	"github.com/tetherproxy/tether/proxy/http1"
	"github.com/tetherproxy/tether/sockopt"
)

// httpSide is what an http-mode virtual server adds to a tcp one: the
// client-side HTTP settings and the Reuser its requests borrow member
// connections from.
type httpSide struct {
	cfg    config.HTTP
	mode   string // config.ReuseShared | ReusePerClient | ReuseNever
	reuser *pool.Reuser
	limits http1.Limits

	// Configured header edits: names removed (any case), fields added.
	// An added name is removed first, so adding replaces.
	reqRemove, respRemove [][]byte
	reqAdd, respAdd       []http1.Header

	// busy counts client conns holding request buffers: a request in
	// progress (idle keepalive conns hold none).
	busy atomic.Int64

	// conns are the client conns being served, for shutdown.
	conns liveSet[*httpConn]
}

// shutdown wakes the tracked conns at shutdown: with cut false the idle
// ones (waiting for a request; a busy one answers its current request with
// Connection: close and ends), with cut true all of them (the drain time is
// over).
func (hs *httpSide) shutdown(cut bool) {
	past := time.Unix(1, 0)
	hs.conns.each(func(h *httpConn) {
		switch {
		case cut:
			_ = h.clientTCP.SetDeadline(past)
		case h.waiting.Load():
			_ = h.clientTCP.SetReadDeadline(past)
		}
	})
}

// headerEdits turns a config's add/remove lists into codec fields, in a
// stable order.
func headerEdits(add map[string]string, remove []string) (rm [][]byte, ad []http1.Header) {
	for _, n := range remove {
		rm = append(rm, []byte(n))
	}
	names := make([]string, 0, len(add))
	for n := range add {
		names = append(names, n)
	}
	sort.Strings(names)
	for _, n := range names {
		rm = append(rm, []byte(n))
		ad = append(ad, http1.Header{Name: []byte(n), Value: []byte(add[n])})
	}
	return rm, ad
}

// removeFields drops, in place, the fields whose names are in names.
func removeFields(hs []http1.Header, names [][]byte) []http1.Header {
	if len(names) == 0 {
		return hs
	}
	out := hs[:0]
	for _, f := range hs {
		drop := false
		for _, n := range names {
			if bytes.EqualFold(f.Name, n) {
				drop = true
				break
			}
		}
		if !drop {
			out = append(out, f)
		}
	}
	return out
}

func newHTTPSide(vc config.VirtualServer, pc config.Pool, d *pool.Dialer) (*httpSide, error) {
	s := pool.ReuseSettings{
		MaxIdle:         pc.MaxIdle,
		MinIdle:         pc.MinIdle,
		IdleTimeout:     pc.IdleTimeout,
		MaxAge:          pc.MaxAge,
		AgeJitter:       pc.AgeJitter,
		MaxRequests:     pc.MaxRequests,
		QueueTimeout:    pc.QueueTimeout,
		KeepAliveMargin: pc.KeepaliveMargin,
	}
	if pc.Reuse.Mode == config.ReuseNever {
		s.MaxIdle = 0
	}
	r, err := pool.NewReuser(d, s)
	if err != nil {
		return nil, err
	}
	hs := &httpSide{
		cfg:    *vc.HTTP,
		mode:   pc.Reuse.Mode,
		reuser: r,
		limits: http1.Limits{MaxRequestLine: vc.HTTP.MaxRequestLine, MaxHeaderBytes: vc.HTTP.MaxHeaderBytes},
	}
	hs.reqRemove, hs.reqAdd = headerEdits(vc.HTTP.AddRequestHeaders, vc.HTTP.RemoveRequestHeaders)
	hs.respRemove, hs.respAdd = headerEdits(vc.HTTP.AddResponseHeaders, vc.HTTP.RemoveResponseHeaders)
	return hs, nil
}

// Buffers of the http path. A client connection borrows the read and body
// buffers (httpBufs) while it is busy and gives them back when it goes
// quiet: an idle connection is parked (see parker) and holds none.
const (
	httpReadBuffer = 4 << 10
	httpBodyBuffer = 32 << 10
	// httpHoldBuffers: a connection keeps its buffers (and its goroutine)
	// this long after a request, or after it connected, before it is
	// parked.
	httpHoldBuffers = 10 * time.Millisecond
)

// bodyBufPool holds the httpBodyBuffer buffers that stream bodies: taken
// by a request only when it has one to stream (most requests and
// responses are small and go out with their head), so a burst of small
// requests leaves no pile of them behind.
var bodyBufPool = sync.Pool{New: func() any {
	b := make([]byte, httpBodyBuffer)
	return &b
}}

// bodyBuf is the request's body buffer, taken from bodyBufPool at first
// use and given back with the other buffers.
func (h *httpConn) bodyBuf() []byte {
	if h.bodyPooled == nil {
		h.bodyPooled = bodyBufPool.Get().(*[]byte)
		h.body = *h.bodyPooled
	}
	return h.body
}

// httpBufs are the buffers one request (and any pipelined behind it) uses,
// and the parsed request and response with their field storage.
type httpBufs struct {
	clientBuf, memberBuf  *bufio.Reader
	req                   http1.Request
	resp                  http1.Response
	reqParser, respParser http1.Parser
	head                  []byte         // httpConn.head while borrowed
	extra                 []http1.Header // httpConn.extra while borrowed
}

var httpBufPool = sync.Pool{New: func() any {
	return &httpBufs{
		clientBuf: bufio.NewReaderSize(nil, httpReadBuffer),
		memberBuf: bufio.NewReaderSize(nil, httpReadBuffer),
	}
}}

// deadlineReader reads from a conn, re-arming the read deadline before each
// read when rolling > 0 (body transfers: an idle timeout per read instead
// of a bound on the whole body).
type deadlineReader struct {
	c       net.Conn
	rolling time.Duration
	cut     <-chan struct{} // closed at shutdown's cut: no more re-arming
}

func (d *deadlineReader) Read(p []byte) (int, error) {
	if d.rolling > 0 {
		// Shutdown's cut set a past deadline: re-arming would undo it and
		// let a long body hold the shutdown.
		select {
		case <-d.cut:
			return 0, os.ErrDeadlineExceeded
		default:
		}
		_ = d.c.SetReadDeadline(time.Now().Add(d.rolling))
	}
	return d.c.Read(p)
}

// httpConn is one client connection in http mode and everything it reuses
// from one request to the next, so the steady state allocates nothing.
type httpConn struct {
	vs         *VirtualServer
	hs         *httpSide
	client     net.Conn     // the client stream: clientTLS when TLS, else clientTCP
	clientTCP  *net.TCPConn // the client socket
	clientTLS  *tls.Conn    // nil without TLS
	tlsInfo    *tlsInfo     // the client's TLS, for the access log; nil without TLS
	clientRead deadlineReader
	clientBuf  *bufio.Reader
	req        *http1.Request // the borrowed httpBufs' (as reqParser, resp, respParser)
	reqParser  *http1.Parser  // requests

	memberRead deadlineReader
	memberBuf  *bufio.Reader
	resp       *http1.Response
	respParser *http1.Parser // responses

	heldMember *pool.ServerConn // held between requests (per-client, never)
	served     int
	reqStart   time.Time   // the current request's first byte
	waiting    atomic.Bool // between requests: shutdown may wake it

	bufs       *httpBufs      // borrowed while busy: clientBuf, memberBuf and body are its; nil while idle
	body       []byte         // the body buffer, taken at first use (bodyBuf)
	bodyPooled *[]byte        // body's bodyBufPool entry
	head       []byte         // request and response heads being built (borrowed)
	extra      []http1.Header // fields tether adds to a request (borrowed)
	clientIP   []byte         // the client's IP, for X-Forwarded-For

	// Parking (see parker): the client socket's raw conn and its entry.
	rawConn syscall.RawConn
	parking parkEntry
}

// parkDeadline is parkOwner's: the end of the wait (set by awaitRequest).
func (h *httpConn) parkDeadline() (time.Time, bool) { return h.parking.deadline, true }

// unparked is parkOwner's: the client sent or closed (ready), or its wait
// timed out or shutdown came.
func (h *httpConn) unparked(ready bool) {
	if ready {
		h.vs.resumeHTTP(h)
	} else {
		h.vs.finishHTTP(h, false)
	}
}

var httpConns = sync.Pool{New: func() any { return new(httpConn) }}

// borrow takes the buffers for a request.
func (h *httpConn) borrow() {
	b := httpBufPool.Get().(*httpBufs)
	h.bufs, h.clientBuf, h.memberBuf = b, b.clientBuf, b.memberBuf
	h.req, h.resp, h.reqParser, h.respParser = &b.req, &b.resp, &b.reqParser, &b.respParser
	h.head, h.extra = b.head, b.extra
	// A request boundary on a healthy conn: the parsers start clean.
	b.reqParser.Limits, b.respParser.Limits = h.hs.limits, h.hs.limits
	b.reqParser.Reset()
	b.respParser.Reset()
	h.hs.busy.Add(1)
	h.clientBuf.Reset(&h.clientRead)
	h.memberBuf.Reset(&h.memberRead)
}

// giveBack returns the buffers; the caller made sure nothing is buffered
// in them that the connection still needs.
func (h *httpConn) giveBack() {
	if h.bufs == nil {
		return
	}
	h.clientBuf.Reset(nil)
	h.memberBuf.Reset(nil)
	h.bufs.head, h.bufs.extra = h.head[:0], h.extra[:0] // grown capacity stays with the buffers
	h.head, h.extra = nil, nil
	httpBufPool.Put(h.bufs)
	h.hs.busy.Add(-1)
	if h.bodyPooled != nil {
		bodyBufPool.Put(h.bodyPooled)
	}
	h.bufs, h.clientBuf, h.memberBuf, h.body, h.bodyPooled = nil, nil, nil, nil, nil
	h.req, h.resp, h.reqParser, h.respParser = nil, nil, nil, nil
}

// serveHTTP serves one client connection in http mode until it ends or is
// parked, and ends it (closes it and frees what it held).
func (vs *VirtualServer) serveHTTP(c *net.TCPConn, tc *tls.Conn, ti *tlsInfo) {
	h := httpConns.Get().(*httpConn)
	h.vs, h.hs, h.client, h.clientTCP, h.clientTLS, h.tlsInfo = vs, vs.http, c, c, tc, ti
	if tc != nil {
		h.client = tc
	}
	h.clientRead = deadlineReader{c: h.client, cut: vs.cutCtx.Done()}
	h.served = 0
	h.rawConn, h.parking = nil, parkEntry{}
	if a, ok := c.RemoteAddr().(*net.TCPAddr); ok {
		h.clientIP = a.AddrPort().Addr().Unmap().AppendTo(h.clientIP[:0])
	}
	// Shutdown: an idle client is let go at once (a busy one gets
	// Connection: close on its current response); when the drain time is
	// over every read is cut. The virtual server does both on the conns it
	// tracks (httpSide.shutdown) and the parker on the parked ones; one
	// that starts after the cut cuts itself.
	vs.http.conns.add(h)
	if vs.cutCtx.Err() != nil {
		_ = c.SetDeadline(time.Unix(1, 0))
	}
	if end := h.loop(false); end != loopParked { // parked: the parker has it now
		vs.finishHTTP(h, end == loopBusyEnd)
	}
}

// resumeHTTP serves a parked conn whose client sent (or closed): the
// parker's report starts it in a goroutine of its own.
func (vs *VirtualServer) resumeHTTP(h *httpConn) {
	vs.http.conns.add(h)
	h.borrow()
	// Ready at once: bytes, or the client's FIN or reset (then it ends
	// quietly, as a wait that reads nothing does).
	end := loopIdleEnd
	if h.waitFirstByte(h.parking.deadline) == nil {
		end = h.loop(true)
	}
	if end != loopParked { // else parked again
		vs.finishHTTP(h, end == loopBusyEnd)
	}
}

// finishHTTP ends a client conn that is no longer served: it gives back
// what the conn holds, closes it (close_notify, then the FIN, as the
// client profile says), and frees the httpConn. linger reads what the
// client still sends for a while before the close (a conn that ended
// after a response: see lingeringClose); an idle conn (its wait timed out,
// shutdown, the client left) has nothing in flight and closes at once.
func (vs *VirtualServer) finishHTTP(h *httpConn, linger bool) {
	vs.http.conns.remove(h)
	if h.heldMember != nil { // the member conn this client kept
		h.hs.reuser.Put(h.heldMember, h.hs.mode == config.ReusePerClient)
		h.heldMember = nil
	}
	h.giveBack()
	c, tc := h.clientTCP, h.clientTLS
	h.vs, h.hs, h.client, h.clientTCP, h.clientTLS, h.tlsInfo, h.clientRead.c, h.memberRead.c, h.rawConn = nil, nil, nil, nil, nil, nil, nil, nil, nil
	httpConns.Put(h)
	if tc != nil {
		_ = tc.CloseWrite() // close_notify before the FIN
	}
	if linger && vs.cutCtx.Err() == nil { // after shutdown's cut, no lingering
		lingeringClose(c)
	}
	_ = sockopt.Close(c, vs.client.Close, vs.client.DrainTimeout)
	vs.connDone()
}

// How loop ended.
const (
	loopParked  = iota // the parker (or a tunnel) has the conn: the caller must not touch it
	loopIdleEnd        // the wait for a request ended: the conn is idle
	loopBusyEnd        // after a request: an error, a limit, Connection: close
)

// loop serves requests until the client leaves, a limit is reached, an
// exchange leaves the connection unusable, or the connection is parked.
// ready says a request's first bytes are buffered.
func (h *httpConn) loop(ready bool) int {
	for {
		if !ready {
			switch h.awaitRequest() {
			case awaitEnd:
				return loopIdleEnd
			case awaitParked:
				return loopParked
			}
		}
		ready = false
		switch h.serveRequest() {
		case exEnd:
			return loopBusyEnd
		case exHandedOff:
			return loopParked // the tunnel ends the conn
		}
	}
}

// What awaitRequest saw.
const (
	awaitReady  = iota // a request's first bytes are buffered
	awaitEnd           // closed, reset, timed out or shutdown: end quietly
	awaitParked        // quiet: the parker has the conn now
)

// awaitRequest waits for the next request's first bytes, holding the
// buffers, for at most httpHoldBuffers (a pipelined request is already
// buffered; a busy client's next one usually comes sooner); then it parks
// the conn for the rest of the wait (keepalive_timeout, or
// request_header_timeout before the first request).
func (h *httpConn) awaitRequest() int {
	wait := h.hs.cfg.KeepaliveTimeout
	if h.served == 0 {
		wait = h.hs.cfg.RequestHeaderTimeout
	}
	h.clientRead.rolling = 0
	now := time.Now()
	if h.bufs == nil {
		h.borrow()
	}
	first := min(wait, httpHoldBuffers)
	err := h.waitFirstByte(now.Add(first))
	if err == nil {
		return awaitReady
	}
	if !isTimeoutErr(err) || first == wait {
		return awaitEnd // closed, reset, timed out, shutting down
	}
	// Quiet for httpHoldBuffers: park without the buffers and the
	// goroutine. Out of the tracked set first: once parked, a wake may
	// add it back from another goroutine at any moment.
	h.giveBack()
	h.hs.conns.remove(h)
	h.parking.deadline = now.Add(wait)
	if h.parkable() && h.vs.parker.park(&h.parking, h.rawConn, h) {
		return awaitParked // h is the parker's: not touched again here
	}
	// Not parked (shutdown stopped the parker, or the socket could not
	// be registered): wait here with the buffers.
	h.hs.conns.add(h)
	h.borrow()
	if h.waitFirstByte(now.Add(wait)) != nil {
		return awaitEnd
	}
	return awaitReady
}

// errStopping is waitFirstByte's answer once shutdown began.
var errStopping = errors.New("proxy: shutting down")

// waitFirstByte waits until deadline for the next request's first byte in
// br, as a waiting conn shutdown can wake. It returns nil when a byte is
// buffered, the read's error, or errStopping when shutdown began: a
// waiting conn takes no new request then.
func (h *httpConn) waitFirstByte(deadline time.Time) error {
	_ = h.client.SetReadDeadline(deadline)
	h.waiting.Store(true)
	defer h.waiting.Store(false)
	// Shutdown cancels acceptCtx, then sets a past read deadline on every
	// waiting conn: checked after the deadline is set, it is never missed.
	if h.vs.acceptCtx.Err() != nil {
		return errStopping
	}
	if _, err := h.clientBuf.Peek(1); err != nil {
		return err
	}
	if h.vs.acceptCtx.Err() != nil {
		return errStopping
	}
	return nil
}

// parkable reports whether the conn can be parked: the virtual server has
// a parker and the socket's raw conn is at hand.
func (h *httpConn) parkable() bool {
	if h.vs.parker == nil {
		return false
	}
	if h.rawConn == nil {
		rc, err := h.clientTCP.SyscallConn()
		if err != nil {
			return false
		}
		h.rawConn = rc
	}
	return true
}

// serveRequest reads the request whose first bytes are buffered and proxies
// it. It says what became of the connection: exNext (it takes another
// request), exEnd (it must close) or exHandedOff (an upgrade tunnel has it).
func (h *httpConn) serveRequest() int {
	cfg := &h.hs.cfg
	start := time.Now()
	h.reqStart = start
	if !headBuffered(h.clientBuf) {
		// The head is still arriving: it must be whole within the
		// header timeout (a whole buffered head needs no new deadline).
		_ = h.client.SetReadDeadline(start.Add(cfg.RequestHeaderTimeout))
	}
	if err := h.reqParser.ReadRequest(h.clientBuf, h.req); err != nil {
		status := http1.StatusFor(err)
		if isTimeoutErr(err) {
			status = 408
		}
		if status != 0 {
			h.writeError(status)
		}
		h.req.Method, h.req.Target = nil, nil // not a request: log no stale ones
		h.logRequest(start, status, requestRecord{err: err})
		return exEnd
	}
	h.served++
	last := !h.req.KeepAlive || (cfg.MaxRequests > 0 && h.served >= cfg.MaxRequests) || h.vs.acceptCtx.Err() != nil
	if h.vs.idle > 0 {
		h.clientRead.rolling = h.vs.idle
	} else {
		_ = h.client.SetReadDeadline(time.Time{})
	}
	if h.clientTLS == nil && h.req.Framing == http1.FramingNone && bytes.HasPrefix(h.req.Target, acmeChallengePrefix) && h.req.IsMethod("GET") {
		if keyAuth, ok := certs.HTTPChallenge(string(h.req.Host), string(h.req.Target)); ok {
			if h.answerChallenge(start, keyAuth, last) && !last {
				return exNext
			}
			return exEnd
		}
	}
	switch r := h.exchange(start, time.Since(start), last); {
	case r == exNext && !last:
		return exNext
	case r == exHandedOff:
		return exHandedOff
	}
	return exEnd
}

var acmeChallengePrefix = []byte(certs.HTTPChallengePrefix)

// answerChallenge answers an ACME http-01 validation request of this
// process's own certificate work itself (see certs.HTTPChallenge); the
// member never sees it.
func (h *httpConn) answerChallenge(start time.Time, keyAuth string, last bool) bool {
	h.head = append(h.head[:0], "HTTP/1.1 200 OK\r\nContent-Type: text/plain\r\nContent-Length: "...)
	h.head = strconv.AppendInt(h.head, int64(len(keyAuth)), 10)
	if last {
		h.head = append(h.head, "\r\nConnection: close"...)
	}
	h.head = append(h.head, "\r\n\r\n"...)
	h.head = append(h.head, keyAuth...)
	_, err := h.client.Write(h.head)
	h.logRequest(start, 200, requestRecord{member: "acme-challenge", bytesOut: int64(len(keyAuth)), err: err})
	return err == nil
}

// requestRecord is what one request did, for the access log. The member conn's
// details are copied when it is borrowed: once given back, it belongs to
// another request.
type requestRecord struct {
	member   string
	connID   uint64
	reused   bool
	connReqs int
	retries  int
	replay   string // why the request was replayed, if it was
	// method and target: copies, for a tunnel's access line (written
	// after the buffers holding the request went back).
	method, target string
	headRead       time.Duration // first byte to whole request head
	bytesIn        int64         // request body bytes sent to the member
	bytesOut       int64         // response body bytes sent to the client
	waited         time.Duration // getting a member conn: idle hand-out, queue, connect
	err            error
	memberErr      bool
}

// What exchange (and serveRequest) did with the client conn.
const (
	exNext      = iota // it takes another request
	exEnd              // it must close: an error response, a response framed by close, a failure after the head was sent
	exHandedOff        // an upgrade tunnel has it: the caller must not touch h again
)

// statusHandedOff is what response returns (as the status) when a tunnel
// took the conn over; the tunnel logs the request and ends the conn.
const statusHandedOff = -1

// exchange proxies the request just read and says what became of the
// client conn (exNext, exEnd, exHandedOff).
func (h *httpConn) exchange(start time.Time, headRead time.Duration, last bool) int {
	rec := requestRecord{headRead: headRead}
	hasBody := h.req.Framing != http1.FramingNone
	h.req.Headers = removeFields(h.req.Headers, h.hs.reqRemove)
	if hasBody && h.req.ExpectContinue {
		// Answer 100 Continue here, as nginx does, and stream the body: a
		// member that ignores Expect cannot then deadlock the exchange. Its
		// own 100, if it sends one, is passed on too (a client takes any
		// number of 1xx).
		if _, err := h.client.Write(continue100); err != nil {
			return exEnd
		}
	}
	smallKept := 0 // a small body sent with a failed first head, for the replay
	for {
		small := false
		asked := time.Now()
		sc, err := h.serverConn()
		rec.waited += time.Since(asked)
		if err != nil {
			status := 502
			if errors.Is(err, pool.ErrNoMember) {
				status = 503
			}
			rec.err = err
			h.writeError(status)
			h.logRequest(start, status, rec)
			return exEnd
		}
		rec.member, rec.connID, rec.reused, rec.connReqs = sc.Member.Address(), sc.ID, sc.Reused, sc.Requests
		retire := sc.Retire()
		h.head = http1.AppendRequest(h.head[:0], h.req, &http1.HeadOptions{
			Extra: h.forwarded(), Close: retire, Upgrade: h.req.Upgrade,
		})
		headLen := len(h.head)
		if smallKept > 0 {
			// A replay: the small body went with the first head; it was
			// kept in h.body.
			h.head = append(h.head, h.bodyBuf()[:smallKept]...)
		} else {
			h.head, small = appendSmallBody(h.head, h.reqParser.Body(), h.req.Framing, h.req.ContentLength, h.clientBuf.Buffered())
		}
		// One deadline for the whole exchange with the member: sending the
		// request and the start of its answer (re-armed after a streamed
		// body). One call per request, not one per direction and phase.
		_ = sc.TCP.SetDeadline(time.Now().Add(h.hs.cfg.ServerResponseTimeout))
		if testHookMemberConn != nil {
			testHookMemberConn(sc)
		}
		if n, err := sc.Conn.Write(h.head); err != nil {
			// The member never got the whole head (the kernel took fewer
			// bytes): it cannot have acted on the request, so a replay is
			// safe whatever the method.
			h.drop(sc, pool.DiscardClosedEarly)
			if sc.Reused && rec.retries == 0 && n < headLen {
				if small {
					smallKept = copy(h.bodyBuf(), h.head[len(h.head)-int(h.req.ContentLength):])
				}
				h.hs.reuser.NoteReplay(sc.Member, pool.ReplayHeadUnsent)
				rec.retries, rec.replay = rec.retries+1, pool.ReplayHeadUnsent.String()
				continue
			}
			rec.err, rec.memberErr = err, true
			h.writeError(502)
			h.logRequest(start, 502, rec)
			return exEnd
		}
		if small || smallKept > 0 {
			rec.bytesIn = h.req.ContentLength
		} else if hasBody {
			n, err := h.reqParser.Body().Forward(sc.Conn, h.bodyBuf(), h.req.Framing == http1.FramingChunked)
			rec.bytesIn += n
			if err != nil {
				h.drop(sc, pool.DiscardFailed)
				rec.err = err
				status := 502
				if h.reqParser.Body().Err() != nil && h.reqParser.Body().Err() != io.EOF {
					status, rec.memberErr = 400, false // the client's body was bad or cut
				} else {
					rec.memberErr = true
				}
				h.writeError(status)
				h.logRequest(start, status, rec)
				return exEnd
			}
		}
		status, ok, retry := h.response(sc, &rec, retire, last, hasBody && !small && smallKept == 0)
		if retry { // response allows it only once
			h.hs.reuser.NoteReplay(sc.Member, pool.ReplayNoResponse)
			rec.retries, rec.replay = rec.retries+1, pool.ReplayNoResponse.String()
			continue
		}
		if status == statusHandedOff {
			return exHandedOff // a tunnel has the conn: h is not touched again here
		}
		h.logRequest(start, status, rec)
		if ok {
			return exNext
		}
		return exEnd
	}
}

// response reads the member's answer and streams it to the client. It
// returns the status sent, whether the client connection stays usable, and
// whether the request may be replayed (a reused conn failed before any
// response byte and the request is idempotent with no body).
func (h *httpConn) response(sc *pool.ServerConn, rec *requestRecord, retire, last, streamed bool) (status int, ok, retry bool) {
	h.memberRead = deadlineReader{c: sc.Conn, cut: h.vs.cutCtx.Done()}
	h.memberBuf.Reset(&h.memberRead)
	h.respParser.Reset()
	if streamed {
		// The response timeout runs from the end of a streamed body.
		_ = sc.TCP.SetReadDeadline(time.Now().Add(h.hs.cfg.ServerResponseTimeout))
	}
	noBody := h.req.Framing == http1.FramingNone
	for {
		err := h.respParser.ReadResponse(h.memberBuf, h.resp, h.req.Method)
		if err != nil {
			h.drop(sc, pool.DiscardClosedEarly)
			rec.err, rec.memberErr = err, true
			// Replay once: a reused conn that ended (EOF, reset) before any
			// response byte, for an idempotent request without a body.
			if rec.retries == 0 && sc.Reused && h.memberBuf.Buffered() == 0 && noBody && idempotent(h.req.Method) &&
				(errors.Is(err, io.EOF) || isReset(err)) {
				return 0, false, true
			}
			status = 502
			if isTimeoutErr(err) {
				status = 504
			}
			h.writeError(status)
			return status, false, false
		}
		if !h.resp.Informational() || h.resp.Tunnel {
			break
		}
		// 1xx (100 Continue, 103 Early Hints ...): pass it on.
		h.head = http1.AppendResponse(h.head[:0], h.resp, nil)
		if _, err := h.client.Write(h.head); err != nil {
			h.drop(sc, pool.DiscardFailed)
			rec.err = err
			return h.resp.Status, false, false
		}
	}
	if h.resp.KeepAliveTimeout > 0 || h.resp.KeepAliveMax > 0 {
		sc.LearnKeepAlive(h.resp.KeepAliveTimeout, h.resp.KeepAliveMax)
	}
	if h.resp.Tunnel {
		return h.tunnel(sc, rec)
	}
	chunked := h.resp.Framing == http1.FramingChunked
	if chunked && h.req.Minor == 0 {
		// An HTTP/1.0 client knows no chunked coding: send the body
		// de-chunked and delimit it by closing (trailers are dropped).
		h.resp.Framing, chunked = http1.FramingUntilClose, false
	}
	closeClient := last || h.resp.Framing == http1.FramingUntilClose
	h.resp.Headers = removeFields(h.resp.Headers, h.hs.respRemove)
	h.head = http1.AppendResponse(h.head[:0], h.resp, &http1.HeadOptions{Close: closeClient, Extra: h.hs.respAdd})
	var small bool
	h.head, small = appendSmallBody(h.head, h.respParser.Body(), h.resp.Framing, h.resp.ContentLength, h.memberBuf.Buffered())
	if _, err := h.client.Write(h.head); err != nil {
		h.drop(sc, pool.DiscardFailed)
		rec.err = err
		return h.resp.Status, false, false
	}
	if h.vs.idle > 0 {
		h.memberRead.rolling = h.vs.idle // mid-body: an idle bound per read, not a total
	} else {
		_ = sc.TCP.SetReadDeadline(time.Time{})
	}
	var n int64
	var err error
	if small {
		n = h.resp.ContentLength
	} else {
		n, err = h.respParser.Body().Forward(h.client, h.bodyBuf(), chunked)
	}
	rec.bytesOut = n
	if err != nil {
		// The head is out: no fake 502, the client conn just ends.
		h.drop(sc, pool.DiscardFailed)
		rec.err = err
		rec.memberErr = h.respParser.Body().Err() != nil && h.respParser.Body().Err() != io.EOF
		return h.resp.Status, false, false
	}
	reusable := h.resp.KeepAlive && h.memberBuf.Buffered() == 0
	if !h.resp.KeepAlive {
		sc.ExpectMemberClose()
	}
	h.release(sc, reusable, retire)
	return h.resp.Status, !closeClient, false
}

// tunnel passes the 101 on, then relays both ways as tcp mode does (same
// idle timeout). The member conn never returns to the pool.
func (h *httpConn) tunnel(sc *pool.ServerConn, rec *requestRecord) (int, bool, bool) {
	h.head = http1.AppendResponse(h.head[:0], h.resp, &http1.HeadOptions{Upgrade: true})
	if _, err := h.client.Write(h.head); err != nil {
		h.drop(sc, pool.DiscardFailed)
		rec.err = err
		return h.resp.Status, false, false
	}
	// Bytes already read past the heads belong to the tunnel.
	err := flushBuffered(h.clientBuf, sc.Conn)
	if err == nil {
		err = flushBuffered(h.memberBuf, h.client)
	}
	if err != nil {
		h.drop(sc, pool.DiscardFailed)
		rec.err = err
		return h.resp.Status, false, false
	}
	_ = h.clientTCP.SetDeadline(time.Time{})
	_ = sc.TCP.SetDeadline(time.Time{})
	// The relay takes the conn over: this goroutine returns, the buffers
	// go back now (the access line keeps copies of what it prints), and
	// the relay's directions park when idle like tcp mode's. The last
	// direction to end logs the request and ends the client conn.
	vs, status, start := h.vs, h.resp.Status, h.reqStart
	rec.method, rec.target = string(h.req.Method), string(h.req.Target)
	h.giveBack()
	r := newRelay(h.clientTCP, h.clientTLS, sc.TCP, sc.TLS, vs.idle, vs.halfClose, vs.parker)
	vs.relays.add(r) // shutdown's cut aborts it
	if vs.cutCtx.Err() != nil {
		r.abort(closeEvent{SideTether, HowShutdown})
	}
	done := *rec
	r.start(func(first, end closeEvent) {
		vs.relays.remove(r)
		done.bytesIn += r.toServer.Load()
		done.bytesOut += r.toClient.Load()
		h.drop(sc, pool.DiscardFailed)
		h.logRequest(start, status, done)
		vs.finishHTTP(h, true)
	})
	return statusHandedOff, false, false
}

func flushBuffered(br *bufio.Reader, w io.Writer) error {
	if n := br.Buffered(); n > 0 {
		b, _ := br.Peek(n)
		if _, err := w.Write(b); err != nil {
			return err
		}
		_, _ = br.Discard(n)
	}
	return nil
}

// testHookMemberConn, set only by tests, runs with each member conn just
// before the request is written to it (after the pre-reuse peek).
var testHookMemberConn func(*pool.ServerConn)

// serverConn returns the member conn for the next request: the one this
// client holds (per-client, never) or one from the Reuser.
func (h *httpConn) serverConn() (*pool.ServerConn, error) {
	if h.heldMember != nil {
		sc := h.heldMember
		h.heldMember = nil
		// Held since the last exchange: count that exchange now (Put counts
		// the last one), and check the conn as the pool checks its idle
		// conns before reuse.
		sc.Requests++
		sc.Reused = true
		if sc.Alive() == nil {
			return sc, nil
		}
		h.hs.reuser.Discard(sc, pool.DiscardClosedEarly)
	}
	// cutCtx ends a queued wait at shutdown; no per-request context, so
	// the steady state allocates nothing.
	return h.hs.reuser.Get(h.vs.cutCtx, h.client.RemoteAddr())
}

// release ends an exchange that went well: the conn stays with this client
// (per-client, never) or goes back to the pool. retired says the request
// carried Connection: close (the member closes; Put waits for its FIN).
func (h *httpConn) release(sc *pool.ServerConn, reusable, retired bool) {
	if reusable && !retired && h.hs.mode != config.ReuseShared {
		h.heldMember = sc // kept by this client; serverConn counts the exchange
		return
	}
	h.hs.reuser.Put(sc, reusable)
}

// drop gives up a member conn after a failure.
func (h *httpConn) drop(sc *pool.ServerConn, why pool.DiscardReason) {
	h.hs.reuser.Discard(sc, why)
}

// forwarded returns the fields tether adds to this request: X-Forwarded-*
// and the configured ones.
func (h *httpConn) forwarded() []http1.Header {
	h.extra = h.extra[:0]
	if h.hs.cfg.ForwardedHeaders {
		proto := protoHTTP
		if h.clientTLS != nil {
			proto = protoHTTPS // the client came over TLS
		}
		h.extra = append(h.extra,
			http1.Header{Name: hdrXFF, Value: h.clientIP},
			http1.Header{Name: hdrXFP, Value: proto},
		)
		if len(h.req.Host) > 0 {
			h.extra = append(h.extra, http1.Header{Name: hdrXFH, Value: h.req.Host})
		}
	}
	return append(h.extra, h.hs.reqAdd...)
}

var (
	continue100 = []byte("HTTP/1.1 100 Continue\r\n\r\n")

	hdrXFF     = []byte("X-Forwarded-For")
	hdrXFP     = []byte("X-Forwarded-Proto")
	hdrXFH     = []byte("X-Forwarded-Host")
	protoHTTP  = []byte("http")
	protoHTTPS = []byte("https")
)

// writeError answers with a short error response and Connection: close.
func (h *httpConn) writeError(status int) {
	text := statusText(status)
	h.head = append(h.head[:0], "HTTP/1.1 "...)
	h.head = strconv.AppendInt(h.head, int64(status), 10)
	h.head = append(h.head, ' ')
	h.head = append(h.head, text...)
	h.head = append(h.head, "\r\nContent-Type: text/plain; charset=utf-8\r\nContent-Length: "...)
	h.head = strconv.AppendInt(h.head, int64(len(text)+1), 10)
	h.head = append(h.head, "\r\nConnection: close\r\n\r\n"...)
	h.head = append(h.head, text...)
	h.head = append(h.head, '\n')
	_ = h.client.SetWriteDeadline(time.Now().Add(time.Second))
	_, _ = h.client.Write(h.head)
}

func statusText(status int) string {
	switch status {
	case 400:
		return "Bad Request"
	case 408:
		return "Request Timeout"
	case 414:
		return "URI Too Long"
	case 431:
		return "Request Header Fields Too Large"
	case 501:
		return "Not Implemented"
	case 502:
		return "Bad Gateway"
	case 503:
		return "Service Unavailable"
	case 504:
		return "Gateway Timeout"
	case 505:
		return "HTTP Version Not Supported"
	}
	return "Error"
}

func idempotent(method []byte) bool {
	switch string(method) {
	case "GET", "HEAD", "OPTIONS", "TRACE", "PUT", "DELETE":
		return true
	}
	return false
}

func isTimeoutErr(err error) bool { return errors.Is(err, os.ErrDeadlineExceeded) }

func isReset(err error) bool {
	var ne *net.OpError
	return errors.As(err, &ne) && !ne.Timeout()
}

// logRequest writes the access line of one request.
func (h *httpConn) logRequest(start time.Time, status int, rec requestRecord) {
	if !h.vs.accessLog {
		return
	}
	level := zapcore.InfoLevel
	ce := h.vs.logger.Check(level, "request")
	if ce == nil {
		return
	}
	method, path := zap.String("method", rec.method), zap.String("path", rec.target)
	if h.req != nil { // nil once a tunnel gave the buffers back
		method, path = zap.ByteString("method", h.req.Method), zap.ByteString("path", h.req.Target)
	}
	fields := []zap.Field{
		zap.String("log", "access"),
		zap.Stringer("client", h.client.RemoteAddr()),
		method, path,
		zap.Int("status", status),
		zap.Int64("bytes_in", rec.bytesIn),
		zap.Int64("bytes_out", rec.bytesOut),
		zap.Duration("head_read", rec.headRead),
		zap.Duration("member_wait", rec.waited),
		zap.Duration("duration", time.Since(start)),
		zap.Int("retries", rec.retries),
		zap.String("replay", rec.replay),
		zap.Int("client_request", h.served),
	}
	if rec.member != "" {
		fields = append(fields,
			zap.String("member", rec.member),
			zap.Uint64("server_conn", rec.connID),
			zap.Bool("reused", rec.reused),
			zap.Int("server_conn_requests", rec.connReqs),
		)
	}
	if h.tlsInfo != nil {
		fields = h.tlsInfo.appendFields(fields)
	}
	if rec.err != nil {
		fields = append(fields, zap.Error(rec.err), zap.Bool("member_error", rec.memberErr))
	}
	ce.Write(fields...)
}

// lingeringClose sends FIN, then reads and drops what the client still
// sends (a pipelined request, the rest of a body) for a short while before
// the close: closing with unread data makes Linux send RST, which can
// destroy the last response before the client reads it (nginx's
// lingering_close does the same).
func lingeringClose(c *net.TCPConn) {
	if err := c.CloseWrite(); err != nil {
		return
	}
	_ = c.SetReadDeadline(time.Now().Add(lingerTime))
	_, _ = io.CopyN(io.Discard, c, lingerBytes)
}

const (
	lingerTime  = 2 * time.Second
	lingerBytes = 256 << 10
)

// smallBody is the largest Content-Length body sent in the same write as
// its head when it is already buffered: one system call per message
// instead of two for typical API requests and responses.
const smallBody = 16 << 10

// appendSmallBody appends a whole Content-Length body to head when it is
// small and already in the reader's buffer, and reports whether it did (the
// body is then consumed).
func appendSmallBody(head []byte, body *http1.BodyReader, f http1.Framing, length int64, buffered int) ([]byte, bool) {
	if f != http1.FramingLength || length > smallBody || length > int64(buffered) {
		return head, false
	}
	start := len(head)
	head = slices.Grow(head, int(length))[:start+int(length)]
	if _, err := io.ReadFull(body, head[start:]); err != nil {
		return head[:start], false // cannot happen: the bytes are buffered
	}
	return head, true
}

// headBuffered reports whether a whole request head (up to its empty line)
// is already in br's buffer.
func headBuffered(br *bufio.Reader) bool {
	b, _ := br.Peek(br.Buffered())
	return bytes.Contains(b, headEnd)
}

var headEnd = []byte("\r\n\r\n")
