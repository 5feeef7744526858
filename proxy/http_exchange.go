package proxy

import (
	"errors"
	"io"
	"net"
	"os"
	"slices"
	"strconv"
	"time"

	"go.uber.org/zap"
	"go.uber.org/zap/zapcore"

	"github.com/tetherproxy/tether/config"
	"github.com/tetherproxy/tether/pool"
	"github.com/tetherproxy/tether/proxy/http1"
)

// exchangeOutcome is what the exchange of one request did with the client
// conn.
type exchangeOutcome uint8

const (
	exNext     exchangeOutcome = iota // it takes another request
	exEnd                             // it must close: an error response, a response framed by close, a failure after the head was sent
	exTunneled                        // an upgrade tunnel has it and logs the request: the caller must not touch h again
	// exReplay: nothing reached the client, and the request may go to
	// another member conn (see DESIGN.md's replay rules). Only sendRequest
	// and response say it, to exchange, which replays.
	exReplay
)

func (o exchangeOutcome) String() string {
	switch o {
	case exNext:
		return "next"
	case exEnd:
		return "end"
	case exTunneled:
		return "tunneled"
	case exReplay:
		return "replay"
	}
	return "exchangeOutcome(" + strconv.Itoa(int(o)) + ")"
}

// requestRecord is what one request did, for the access log. The member
// conn's details are copied when it is borrowed: once given back, it
// belongs to another request.
type requestRecord struct {
	member   string
	connID   uint64
	reused   bool
	connReqs int
	retries  int
	// idleLimit and idleSource: how long the member conn may idle after
	// this exchange and why (pool.ServerConn.IdleLimit); -1: no limit.
	idleLimit  time.Duration
	idleSource pool.IdleSource
	replay     string // why the request was replayed, if it was
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

// exchange proxies the request just read to a member and its answer back,
// replaying it (once per cause) when the member conn failed before it
// could have acted on it. It writes the request's access line, except for
// a tunnel (which logs when it ends), and says what became of the client
// conn: exNext, exEnd or exTunneled.
func (h *httpConn) exchange(start time.Time, headRead time.Duration, last bool) exchangeOutcome {
	rec := requestRecord{headRead: headRead}
	h.req.Headers = removeFields(h.req.Headers, h.hs.reqRemove)
	if h.req.Framing != http1.FramingNone && h.req.ExpectContinue {
		// Answer 100 Continue here, as nginx does, and stream the body: a
		// member that ignores Expect cannot then deadlock the exchange. Its
		// own 100, if it sends one, is passed on too (a client takes any
		// number of 1xx).
		if _, err := h.clientWrite.Write(continue100); err != nil {
			return exEnd
		}
	}
	smallKept := 0          // a small body sent with a failed first head, for the replay
	var failed *pool.Member // the member whose conn failed, for the replay
	for {
		asked := time.Now()
		sc, err := h.serverConn(failed)
		rec.waited += time.Since(asked)
		if err != nil {
			status := 502
			if errors.Is(err, pool.ErrNoMember) {
				status = 503
			}
			rec.err = err
			return h.failRequest(start, status, &rec)
		}
		rec.member, rec.connID, rec.reused, rec.connReqs = sc.Member.Address(), sc.ID, sc.Reused, sc.Requests
		h.member.Store(sc.TCP) // cleared by release (shared) and drop
		rec.idleLimit, rec.idleSource = sc.IdleLimit()
		retire := sc.Retire()
		streamed, out := h.sendRequest(sc, &rec, start, retire, &smallKept)
		switch out {
		case exReplay:
			failed = sc.Member
			continue
		case exEnd:
			return exEnd
		}
		status, out := h.response(sc, &rec, retire, last, streamed)
		switch out {
		case exReplay: // response allows it only once
			h.reuser.NoteReplay(sc.Member, pool.ReplayNoResponse)
			rec.retries, rec.replay = rec.retries+1, pool.ReplayNoResponse.String()
			failed = sc.Member
			continue
		case exTunneled:
			return exTunneled // a tunnel has the conn: h is not touched again here
		}
		h.logRequest(start, status, rec)
		return out
	}
}

// sendRequest sends the request to the member conn sc: its head, with a
// small buffered body in the same write (on a replay, the small body kept
// in *smallKept bytes of the body buffer from the first try), then a
// larger body streamed. It says whether a body was streamed (the response
// timeout then runs from its end) and what became of the request: exNext
// (sent), exReplay (the head did not go out whole on a reused conn:
// exchange sends it on another), or exEnd (failed: the client got its
// error response, the request its access line).
func (h *httpConn) sendRequest(sc *pool.ServerConn, rec *requestRecord, start time.Time, retire bool, smallKept *int) (streamed bool, out exchangeOutcome) {
	h.head = http1.AppendRequest(h.head[:0], h.req, &http1.HeadOptions{
		Extra: h.forwarded(), Close: retire, Upgrade: h.req.Upgrade,
	})
	headLen := len(h.head)
	small := false
	if *smallKept > 0 {
		// A replay: the small body went with the first head; it was
		// kept in h.body.
		h.head = append(h.head, h.bodyBuf()[:*smallKept]...)
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
	var n int
	var err error
	if (small || *smallKept > 0 || h.req.Framing == http1.FramingNone) && sc.TLS == nil {
		n, err = h.writeAndAwait(sc) // the whole request: its answer is awaited in the same call
	} else {
		n, err = sc.Conn.Write(h.head)
	}
	if err != nil {
		// The member never got the whole head (the kernel took fewer
		// bytes): it cannot have acted on the request, so a replay is
		// safe whatever the method.
		h.drop(sc, pool.DiscardClosedEarly)
		if sc.Reused && rec.retries == 0 && n < headLen {
			if small {
				*smallKept = copy(h.bodyBuf(), h.head[len(h.head)-int(h.req.ContentLength):])
			}
			h.reuser.NoteReplay(sc.Member, pool.ReplayHeadUnsent)
			rec.retries, rec.replay = rec.retries+1, pool.ReplayHeadUnsent.String()
			return false, exReplay
		}
		rec.err, rec.memberErr = err, true
		return false, h.failRequest(start, 502, rec)
	}
	if small || *smallKept > 0 {
		rec.bytesIn = h.req.ContentLength
		return false, exNext
	}
	if h.req.Framing == http1.FramingNone {
		return false, exNext
	}
	sent, err := h.reqParser.Body().Forward(sc.Conn, h.bodyBuf(), h.req.Framing == http1.FramingChunked)
	rec.bytesIn += sent
	if err != nil {
		h.drop(sc, pool.DiscardFailed)
		rec.err = err
		status := 502
		if h.reqParser.Body().Err() != nil && h.reqParser.Body().Err() != io.EOF {
			status, rec.memberErr = 400, false // the client's body was bad or cut
		} else {
			rec.memberErr = true
		}
		return true, h.failRequest(start, status, rec)
	}
	return true, exNext
}

// writeAndAwait writes the whole request in h.head to the plain member
// conn sc and waits for its answer's first bytes, both in one RawConn.Read
// of the member socket: the answer cannot come before the request went
// out, so the read that usually follows the write finds nothing (EAGAIN)
// and only then waits; within one RawConn.Read the poller keeps the
// readiness that comes after the write, so the wait needs no read first
// and loses no wakeup. It returns the write's count and error; the wait's
// own end (the response deadline, a closed socket) is left to the read of
// the answer, which meets it again. h.awaited says the wait ran.
func (h *httpConn) writeAndAwait(sc *pool.ServerConn) (int, error) {
	rc, err := sc.RawConn()
	if err != nil {
		return sc.Conn.Write(h.head)
	}
	if h.memberFn == nil {
		h.memberFn = h.writeMember // once per pooled httpConn: no allocation per request
	}
	h.memberOut, h.memberWrote, h.memberN, h.memberErr = sc.Conn, false, 0, nil
	_ = rc.Read(h.memberFn)
	h.memberOut = nil
	if !h.memberWrote { // the wait ended before the callback ran (a past deadline, closed)
		return sc.Conn.Write(h.head)
	}
	h.awaited = h.memberErr == nil
	return h.memberN, h.memberErr
}

// writeMember is writeAndAwait's RawConn.Read callback: the first call
// writes the request (Write may wait for room: the read lock held here
// does not stop it) and asks to wait; the next, once the socket is
// readable, ends the wait without reading.
func (h *httpConn) writeMember(uintptr) bool {
	if h.memberWrote {
		return true
	}
	h.memberWrote = true
	h.memberN, h.memberErr = h.memberOut.Write(h.head)
	return h.memberErr != nil
}

// failRequest answers the client with an error response, writes the
// request's access line, and says the client conn ends.
func (h *httpConn) failRequest(start time.Time, status int, rec *requestRecord) exchangeOutcome {
	h.writeError(status)
	h.logRequest(start, status, *rec)
	return exEnd
}

// testHookMemberConn, set only by tests, runs with each member conn just
// before the request is written to it (after the pre-reuse peek).
var testHookMemberConn func(*pool.ServerConn)

// serverConn returns the member conn for the next request: the one this
// client holds (per-client, never) or one from the reuse ConnPool; for a
// replay (failed: the member whose conn failed), a fresh one, to another
// member if one is up (pool.GetReplay).
//
// A reload may have put another virtual server in force under this one's
// name: the request then goes to its pool; a conn held from the old one
// goes back to it (which retires it).
func (h *httpConn) serverConn(failed *pool.Member) (*pool.ServerConn, error) {
	route := h.vs.reuser()
	if h.heldMember != nil {
		sc := h.heldMember
		h.heldMember = nil
		if route != h.reuser {
			h.reuser.Put(sc, true)
		} else {
			// Held since the last exchange: count that exchange now (Put
			// counts the last one), and check the conn as the pool checks
			// its idle conns before reuse.
			sc.Requests++
			sc.Reused = true
			if sc.Alive() == nil {
				return sc, nil
			}
			h.reuser.Discard(sc, pool.DiscardClosedEarly)
		}
	}
	h.reuser = route
	// cutCtx ends a queued wait at shutdown; no per-request context, so
	// the steady state allocates nothing.
	sc, err := h.getConn(route, failed)
	if errors.Is(err, pool.ErrConnPoolClosed) && h.vs.reuser() != route {
		// A reload closed route while this Get ran: once more on the new one.
		h.reuser = h.vs.reuser()
		sc, err = h.getConn(h.reuser, failed)
	}
	return sc, err
}

// getConn gets a member conn from r for the request, or for its replay
// when failed (the member whose conn failed) is not nil.
func (h *httpConn) getConn(r *pool.ConnPool, failed *pool.Member) (*pool.ServerConn, error) {
	if failed != nil {
		return r.GetReplay(h.vs.cutCtx, h.client.RemoteAddr(), failed)
	}
	return r.GetFor(h.vs.cutCtx, h.client.RemoteAddr(), h.requestKind())
}

// requestKind says whether the request may take any idle member conn (an
// idempotent one, which a replay covers) or only a young one (see
// pool.NonIdempotent): an upgrade is not idempotent whatever its method.
func (h *httpConn) requestKind() pool.RequestKind {
	if idempotent(h.req.Method) && !h.req.Upgrade {
		return pool.Idempotent
	}
	return pool.NonIdempotent
}

// release ends an exchange that went well: the conn stays with this client
// (per-client, never) or goes back to the pool. retired says the request
// carried Connection: close (the member closes; Put waits for its FIN).
func (h *httpConn) release(sc *pool.ServerConn, reusable, retired bool) {
	if reusable && !retired && h.hs.mode != config.ReuseShared {
		h.heldMember = sc // kept by this client; serverConn counts the exchange
		return
	}
	h.member.Store(nil)
	h.reuser.Put(sc, reusable)
}

// drop gives up a member conn after a failure.
func (h *httpConn) drop(sc *pool.ServerConn, why pool.DiscardReason) {
	h.member.Store(nil)
	h.reuser.Discard(sc, why)
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
	h.head = append(h.head, "\r\n"...)
	h.head = append(h.head, h.hs.hstsLine...)
	h.head = append(h.head, "Content-Type: text/plain; charset=utf-8\r\nContent-Length: "...)
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

// logRequest counts one request (status class, duration) for RequestStats
// and writes its access line.
func (h *httpConn) logRequest(start time.Time, status int, rec requestRecord) {
	h.hs.reqs.observe(status, time.Since(start))
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
			zap.String("server_conn_idle_source", rec.idleSource.String()),
		)
		if rec.idleLimit >= 0 {
			fields = append(fields, zap.Duration("server_conn_idle_limit", rec.idleLimit))
		}
	}
	if h.tlsInfo != nil {
		fields = h.tlsInfo.appendFields(fields)
	}
	if rec.err != nil {
		fields = append(fields, zap.Error(rec.err), zap.Bool("member_error", rec.memberErr))
	}
	ce.Write(fields...)
}

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
