package proxy

import (
	"bufio"
	"bytes"
	"crypto/tls"
	"errors"
	"io"
	"net"
	"strconv"
	"sync"
	"sync/atomic"
	"syscall"
	"time"

	"github.com/tetherproxy/tether/config"
	"github.com/tetherproxy/tether/pool"
	"github.com/tetherproxy/tether/proxy/certs"
	"github.com/tetherproxy/tether/proxy/http1"
	"github.com/tetherproxy/tether/sockopt"
)

// The http path, by file: http.go (a virtual server's http side: settings,
// header edits, the reuse ConnPool), http_buffers.go (what a busy conn borrows),
// http_client.go (here: a client conn's life and its loop over requests),
// http_exchange.go (one request sent to a member, replays, the access
// line), http_response.go (the answer streamed back) and http_upgrade.go
// (the tunnel after a 101).
//
// A client conn's life, and who holds it on the way:
//
//	serveHTTP (the accept goroutine) ──► live(entryAccepted)
//	live ─► serve ─► loop ─┬─ awaitRequest: quiet ─► parker ─► unparked ─► live(entryReady or entryExpired)
//	                       └─ serveRequest ─► exchange ─► response: 101 ─► tunnel's relay ─► live(entryTunnelEnded)
//	live, once the loop is over (loopIdleEnd, loopBusyEnd) ─► the end: buffers and member conn back, close, connDone
//
// Every goroutine that takes the conn up enters live with the way it came
// (connEntry); live serves it until the loop hands it off (loopParked,
// loopTunneled: whoever holds it then enters live again, once) or is over
// (loopIdleEnd, loopBusyEnd), and then live ends it. Once serveHTTP has a
// conn, nothing else ends it.

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

	// clientWrite: the response path's writes to the client, bounded by
	// the idle timeout.
	clientWrite deadlineWriter

	memberRead deadlineReader
	memberBuf  *bufio.Reader
	resp       *http1.Response
	respParser *http1.Parser // responses

	heldMember *pool.ServerConn // held between requests (per-client, never)
	// reuser is the ConnPool of the last exchange's member conn (and so of
	// heldMember): vs's, or after a reload that of the virtual server in
	// force under vs's name (serverConn).
	reuser   *pool.ConnPool
	served   int
	reqStart time.Time   // the current request's first byte
	waiting  atomic.Bool // between requests: shutdown may wake it
	liveAt   int32       // index in the virtual server's liveConns (inspect_conns.go)
	// doneClean: the last request said Connection: close, was served whole
	// and nothing followed it in the buffer: the close needs no lingering.
	doneClean bool
	// out is a small answer (in head) not written yet: waitFirstByte
	// writes it together with the wait for the next request
	// (writeThenWait); outFn, outWrote and outErr are that write's.
	out      []byte
	outFn    func(fd uintptr) bool
	outWrote bool
	outErr   error
	// The member side's write-and-wait (writeAndAwait): awaited says the
	// answer was awaited after the request went out.
	memberOut   net.Conn
	memberFn    func(fd uintptr) bool
	memberN     int
	memberErr   error
	memberWrote bool
	awaited     bool

	member atomic.Pointer[net.TCPConn] // the member socket attached now, for Connections (inspect_conns.go)

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

var httpConns = sync.Pool{New: func() any { return new(httpConn) }}

// connEntry is the way a goroutine comes to take a client conn up: each
// enters live with one.
type connEntry uint8

const (
	entryAccepted    connEntry = iota // the accept loop's goroutine, after the TLS handshake if any
	entryReady                        // the parker: the client sent bytes, its FIN or a reset
	entryExpired                      // the parker: the wait's deadline passed, or shutdown came
	entryTunnelEnded                  // an upgrade tunnel's last direction ended
)

func (e connEntry) String() string {
	switch e {
	case entryAccepted:
		return "accepted"
	case entryReady:
		return "ready"
	case entryExpired:
		return "expired"
	case entryTunnelEnded:
		return "tunnel-ended"
	}
	return "connEntry(" + strconv.Itoa(int(e)) + ")"
}

// loopOutcome is how serving a client conn stopped: it is over (the two
// ends), or another owner has it (the two hand-offs).
type loopOutcome uint8

const (
	loopIdleEnd  loopOutcome = iota // the wait for a request ended (closed, reset, timed out, shutdown): nothing in flight
	loopBusyEnd                     // after a request (an error, a limit, Connection: close) or its tunnel: linger, then close
	loopParked                      // the parker has it: it comes back to live when the client sends or the wait ends
	loopTunneled                    // an upgrade tunnel has it: it comes back to live when the tunnel ends
)

func (o loopOutcome) String() string {
	switch o {
	case loopIdleEnd:
		return "idle-end"
	case loopBusyEnd:
		return "busy-end"
	case loopParked:
		return "parked"
	case loopTunneled:
		return "tunneled"
	}
	return "loopOutcome(" + strconv.Itoa(int(o)) + ")"
}

// awaitOutcome is what awaitRequest saw.
type awaitOutcome uint8

const (
	awaitReady  awaitOutcome = iota // a request's first bytes are buffered
	awaitEnd                        // closed, reset, timed out or shutdown: end quietly
	awaitParked                     // quiet: the parker has the conn now
)

func (o awaitOutcome) String() string {
	switch o {
	case awaitReady:
		return "ready"
	case awaitEnd:
		return "end"
	case awaitParked:
		return "parked"
	}
	return "awaitOutcome(" + strconv.Itoa(int(o)) + ")"
}

// serveHTTP takes up a new client connection in http mode: its life
// begins (and, unless it is parked or tunneled, ends) on this goroutine.
func (vs *VirtualServer) serveHTTP(c *net.TCPConn, tc *tls.Conn, ti *tlsInfo) {
	h := httpConns.Get().(*httpConn)
	h.vs, h.hs, h.client, h.clientTCP, h.clientTLS, h.tlsInfo = vs, vs.http, c, c, tc, ti
	h.reuser = vs.http.reuser
	if tc != nil {
		h.client = tc
	}
	h.clientRead = deadlineReader{c: h.client, cut: vs.cutCtx.Done()}
	h.clientWrite = deadlineWriter{c: h.client, rolling: vs.idle, cut: vs.cutCtx.Done()}
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
	h.track()
	if vs.cutCtx.Err() != nil {
		_ = c.SetDeadline(time.Unix(1, 0))
	}
	h.live(entryAccepted)
}

// parkDeadline is parkOwner's: the end of the wait (set by awaitRequest).
func (h *httpConn) parkDeadline() (time.Time, bool) { return h.parking.deadline, true }

// unparked is parkOwner's, on a goroutine of its own: the client sent or
// closed (ready), or its wait timed out or shutdown came.
func (h *httpConn) unparked(ready bool) {
	if ready {
		h.live(entryReady)
	} else {
		h.live(entryExpired)
	}
}

// live is the life of a client conn in http mode from entry on, and the
// one place where the conn ends. It serves the conn until the loop hands
// it off or is over. A hand-off comes back here exactly once: the parker
// reports each park once (ready, or expired), a relay calls its done once.
// So whatever path the conn took, the end below runs once, and nothing
// else gives back what the conn holds or closes it.
//
// The end gives back what the conn holds (its buffers, the member conn it
// kept), closes it (close_notify, then the FIN, as the client profile
// says), frees the httpConn and the conn's slot. After a request
// (loopBusyEnd) it first reads what the client still sends for a while
// (lingeringClose); an idle conn (its wait ended, shutdown, the client
// left) has nothing in flight and closes at once.
func (h *httpConn) live(entry connEntry) {
	out := h.serve(entry)
	if out == loopParked || out == loopTunneled {
		return // h belongs to the parker or the tunnel: not touched again here
	}
	vs := h.vs
	_ = h.flushOut() // an answer kept for the next wait, if the loop ended before it
	vs.http.conns.remove(h)
	h.untrack()
	if h.heldMember != nil { // the member conn this client kept
		h.reuser.Put(h.heldMember, h.hs.mode == config.ReusePerClient)
		h.heldMember = nil
	}
	h.giveBack()
	if h.clientTLS != nil {
		_ = h.clientWrite.arm() // for close_notify: the last response's deadline may have passed
	}
	c, tc, doneClean := h.clientTCP, h.clientTLS, h.doneClean
	h.doneClean = false
	h.vs, h.hs, h.client, h.clientTCP, h.clientTLS, h.tlsInfo, h.clientRead.c, h.memberRead.c, h.rawConn = nil, nil, nil, nil, nil, nil, nil, nil, nil
	h.clientWrite.c = nil
	h.reuser = nil
	httpConns.Put(h)
	if tc != nil {
		_ = tc.CloseWrite() // close_notify before the FIN
	}
	// After shutdown's cut, no lingering; nor after a plain-TCP client's
	// Connection: close request served whole with nothing behind it: that
	// client sends nothing more (RFC 9112 §9.6), so there is nothing to
	// drain, and the FIN and TIME_WAIT land on tether all the same (nginx's
	// lingering_close "on" lingers only when more may come, too). That
	// saves the shutdown, a read and a wait for the client's FIN per
	// short connection. A TLS client may still send close_notify.
	if out == loopBusyEnd && vs.cutCtx.Err() == nil && (tc != nil || !doneClean) {
		lingeringClose(c)
	}
	_ = sockopt.Close(c, vs.client.Close, vs.client.DrainTimeout)
	vs.connDone()
}

// serve takes the conn up as entry says and serves it until the loop ends
// or hands it off.
func (h *httpConn) serve(entry connEntry) loopOutcome {
	switch entry {
	case entryAccepted:
		return h.loop(false)
	case entryReady:
		h.hs.conns.add(h)
		h.borrow()
		// Ready at once: bytes, or the client's FIN or reset (then it
		// ends quietly, as a wait that reads nothing does).
		if h.waitFirstByte(h.parking.deadline) != nil {
			return loopIdleEnd
		}
		return h.loop(true)
	case entryTunnelEnded:
		return loopBusyEnd // the tunnel logged its request
	}
	// entryExpired. At shutdown the parker lets its conns go this way: one
	// whose client sent a request meanwhile serves it (waitFirstByte).
	if h.vs.idleCtx.Err() != nil {
		h.hs.conns.add(h)
		h.borrow()
		if h.waitFirstByte(h.parking.deadline) == nil {
			return h.loop(true)
		}
	}
	return loopIdleEnd
}

// loop serves requests until the client leaves, a limit is reached, an
// exchange leaves the connection unusable, or the connection is parked or
// tunneled. ready says a request's first bytes are buffered.
func (h *httpConn) loop(ready bool) loopOutcome {
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
		case exTunneled:
			return loopTunneled
		}
	}
}

// awaitRequest waits for the next request's first bytes, holding the
// buffers, for at most httpHoldBuffers (a pipelined request is already
// buffered; a busy client's next one usually comes sooner); then it parks
// the conn for the rest of the wait (keepalive_timeout, or
// request_header_timeout before the first request).
func (h *httpConn) awaitRequest() awaitOutcome {
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
// clientBuf, as a waiting conn shutdown can wake. It returns nil when a
// byte is buffered, the read's error, or once shutdown began errStopping:
// a waiting conn takes no new request then, but one that already reached
// tether (bytes in clientBuf or the socket) is served, with Connection:
// close (pendingRequest): closing on it would reset a request the client
// sent before the shutdown.
func (h *httpConn) waitFirstByte(deadline time.Time) error {
	_ = h.client.SetReadDeadline(deadline)
	h.waiting.Store(true)
	defer h.waiting.Store(false)
	// Shutdown cancels idleCtx (letIdleGo; ShutdownGently after a grace
	// in which waiting conns take one more request), then sets a past read
	// deadline on every waiting conn: checked after the deadline is set,
	// it is never missed.
	if h.vs.idleCtx.Err() != nil {
		if err := h.flushOut(); err != nil {
			return err
		}
		return h.pendingRequest()
	}
	if h.out != nil {
		if err := h.writeThenWait(); err != nil {
			if isTimeoutErr(err) && h.vs.idleCtx.Err() != nil {
				return h.pendingRequest()
			}
			return err
		}
	}
	if _, err := h.clientBuf.Peek(1); err != nil {
		if isTimeoutErr(err) && h.vs.idleCtx.Err() != nil {
			return h.pendingRequest() // bytes may have come with the wake
		}
		return err
	}
	return nil
}

// pendingRequest is waitFirstByte's answer once shutdown began: nil when a
// request's first bytes already reached tether (in clientBuf, or waiting
// in the socket: a non-blocking peek), else errStopping.
func (h *httpConn) pendingRequest() error {
	if h.clientBuf.Buffered() > 0 || errors.Is(sockopt.Alive(h.clientTCP), sockopt.ErrStaleData) {
		return nil
	}
	return errStopping
}

// writeThenWait writes the answer kept in h.out (see streamResponse) and
// waits for the client's next bytes, both in one RawConn.Read of the
// client socket. A client usually sends its next request after the
// answer, so the read that usually follows a write finds nothing (EAGAIN)
// and only then waits; within one RawConn.Read the poller keeps the
// readiness that comes after the write, so the wait needs no read first.
// The read comes after, through clientBuf, and finds bytes.
//
// What came before the wait is another matter: RawConn.Read starts by
// clearing the poller's readiness, so bytes or a FIN that arrived after
// the last read of the client (a pipelined request sent while the member
// answered, a half-close) raise no wakeup here. awaitRequest bounds that
// wait to httpHoldBuffers (10 ms) and then parks the conn, and the
// parker's level-triggered registration reports those bytes at once: the
// rare race costs 10 ms, never the request
// (TestHTTPRequestSentWhileTheFirstIsServedIsAnswered). It returns the
// write's error, else the wait's (the deadline, shutdown's past deadline,
// a closed socket).
func (h *httpConn) writeThenWait() error {
	if h.rawConn == nil {
		rc, err := h.clientTCP.SyscallConn()
		if err != nil {
			return h.flushOut()
		}
		h.rawConn = rc
	}
	if h.outFn == nil {
		h.outFn = h.writeOut // once per pooled httpConn: no allocation per request
	}
	h.outWrote, h.outErr = false, nil
	err := h.rawConn.Read(h.outFn)
	if !h.outWrote { // the wait ended before the callback ran (a past deadline)
		if werr := h.flushOut(); werr != nil {
			return werr
		}
		return err
	}
	h.out = nil
	if h.outErr != nil {
		return h.outErr
	}
	return err
}

// writeOut is writeThenWait's RawConn.Read callback: the first call
// writes the answer (Write may wait for room in the socket: the read lock
// held here does not stop it) and asks to wait; the next, after the
// poller reported the socket readable, ends the wait without reading.
func (h *httpConn) writeOut(uintptr) bool {
	if h.outWrote {
		return true
	}
	h.outWrote = true
	_, h.outErr = h.clientTCP.Write(h.out)
	return h.outErr != nil
}

// flushOut writes an answer still kept in h.out, and forgets it.
func (h *httpConn) flushOut() error {
	if h.out == nil {
		return nil
	}
	_, err := h.clientTCP.Write(h.out)
	h.out = nil
	return err
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
// request), exEnd (it must close) or exTunneled (an upgrade tunnel has it).
func (h *httpConn) serveRequest() exchangeOutcome {
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
	switch out := h.exchange(start, time.Since(start), last); {
	case out == exNext && !last:
		return exNext
	case out == exTunneled:
		return exTunneled
	}
	return exEnd
}

// headBuffered reports whether a whole request head (up to its empty line)
// is already in br's buffer.
func headBuffered(br *bufio.Reader) bool {
	b, _ := br.Peek(br.Buffered())
	return bytes.Contains(b, headEnd)
}

var headEnd = []byte("\r\n\r\n")

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
	_, err := h.clientWrite.Write(h.head)
	h.logRequest(start, 200, requestRecord{member: "acme-challenge", bytesOut: int64(len(keyAuth)), err: err})
	return err == nil
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
