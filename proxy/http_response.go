package proxy

import (
	"errors"
	"io"
	"runtime"
	"syscall"
	"time"

	"github.com/tetherproxy/tether/pool"
	"github.com/tetherproxy/tether/proxy/http1"
)

// response reads the member's answer to the request just sent on sc and
// streams it to the client. It returns the status sent and what became of
// the client conn: exNext (it stays usable), exEnd, exTunneled (an
// upgrade: the tunnel has the conn, logs the request and ends the conn),
// or exReplay (nothing went to the client: a reused conn failed before any
// response byte and the request is idempotent with no body; exchange sends
// it again). streamed says the request's body was streamed: the response
// timeout then runs from its end.
func (h *httpConn) response(sc *pool.ServerConn, rec *requestRecord, retire, last, streamed bool) (int, exchangeOutcome) {
	if status, out := h.responseHead(sc, rec, streamed); out != exNext {
		return status, out
	}
	if h.resp.KeepAliveTimeout > 0 || h.resp.KeepAliveMax > 0 {
		sc.LearnKeepAlive(h.resp.KeepAliveTimeout, h.resp.KeepAliveMax)
		rec.idleLimit, rec.idleSource = sc.IdleLimit()
	}
	if h.resp.Tunnel {
		return h.tunnel(sc, rec)
	}
	return h.streamResponse(sc, rec, retire, last)
}

// responseHead reads the head of the member's final answer (or of a 101)
// into h.resp, passing any 1xx before it on to the client. exNext: the
// head is read; else the status sent and exEnd or exReplay, as response
// says.
func (h *httpConn) responseHead(sc *pool.ServerConn, rec *requestRecord, streamed bool) (int, exchangeOutcome) {
	h.memberRead = deadlineReader{c: sc.Conn, cut: h.vs.cutCtx.Done()}
	h.memberBuf.Reset(&h.memberRead)
	h.respParser.Reset()
	if streamed {
		// The response timeout runs from the end of a streamed body.
		_ = sc.TCP.SetReadDeadline(time.Now().Add(h.hs.cfg.ServerResponseTimeout))
	}
	noBody := h.req.Framing == http1.FramingNone
	// After a streamed body (or over TLS) the answer was not awaited
	// (writeAndAwait): it is rarely in yet, and a read now would find
	// nothing (EAGAIN) and park this goroutine in the netpoller. Letting
	// the conns that are ready run first, as an event loop does, gives the
	// member that time: the read more often finds the answer (4-11% more
	// requests per CPU-second through a keepalive load, 6 of 6 A/B runs).
	if !h.awaited {
		runtime.Gosched()
	}
	h.awaited = false
	for {
		err := h.respParser.ReadResponse(h.memberBuf, h.resp, h.req.Method)
		if err != nil {
			h.drop(sc, pool.DiscardClosedEarly)
			rec.err, rec.memberErr = err, true
			// Replay once: a conn that ended (EOF, reset, or the kernel
			// gave up on it: keepalive or user timeout's ETIMEDOUT, a
			// member that vanished) before any response byte, for an
			// idempotent request without a body. Reused or fresh alike: a
			// member killed under load resets its fresh conns too, and
			// RFC 9110 (9.2.2) lets a client repeat an idempotent request
			// whose conn failed before the answer. Not the response
			// deadline (504): the member may be at work on it. The parser
			// consumes what it read of a head cut short, so the bytes read
			// from the member say whether any came, not memberBuf.
			if rec.retries == 0 && h.memberRead.n == 0 && noBody && idempotent(h.req.Method) &&
				(errors.Is(err, io.EOF) || isReset(err) || errors.Is(err, syscall.ETIMEDOUT)) {
				return 0, exReplay
			}
			status := 502
			if isTimeoutErr(err) {
				status = 504
			}
			h.writeError(status)
			return status, exEnd
		}
		if !h.resp.Informational() || h.resp.Tunnel {
			return h.resp.Status, exNext
		}
		// 1xx (100 Continue, 103 Early Hints ...): pass it on.
		h.head = http1.AppendResponse(h.head[:0], h.resp, nil)
		if _, err := h.clientWrite.Write(h.head); err != nil {
			h.drop(sc, pool.DiscardFailed)
			rec.err = err
			return h.resp.Status, exEnd
		}
	}
}

// streamResponse sends the response head read in h.resp to the client,
// with a small buffered body in the same write, or streams its body, then
// gives sc back (or keeps it for this client). It returns the status sent
// and whether the client conn stays usable (exNext) or ends (exEnd).
func (h *httpConn) streamResponse(sc *pool.ServerConn, rec *requestRecord, retire, last bool) (int, exchangeOutcome) {
	chunked := h.resp.Framing == http1.FramingChunked
	if chunked && h.req.Minor == 0 {
		// An HTTP/1.0 client knows no chunked coding: send the body
		// de-chunked and delimit it by closing (trailers are dropped).
		h.resp.Framing, chunked = http1.FramingUntilClose, false
	}
	// Shutdown began while the request was in flight: this response is
	// the client's last, and says so.
	closeClient := last || h.resp.Framing == http1.FramingUntilClose || h.vs.acceptCtx.Err() != nil
	h.resp.Headers = removeFields(h.resp.Headers, h.hs.respRemove)
	h.head = http1.AppendResponse(h.head[:0], h.resp, &http1.HeadOptions{Close: closeClient, Extra: h.hs.respAdd})
	var small bool
	h.head, small = appendSmallBody(h.head, h.respParser.Body(), h.resp.Framing, h.resp.ContentLength, h.memberBuf.Buffered())
	if small && !closeClient && h.clientTLS == nil && h.clientBuf.Buffered() == 0 {
		// The whole answer is in head and the client's next request is
		// not buffered: it goes out with the wait for that request
		// (waitFirstByte, writeThenWait), which then needs no read that
		// finds nothing.
		h.out = h.head
		_ = h.clientWrite.arm() // writeThenWait writes it next
	} else if _, err := h.clientWrite.Write(h.head); err != nil {
		h.drop(sc, pool.DiscardFailed)
		rec.err = err
		return h.resp.Status, exEnd
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
		n, err = h.respParser.Body().Forward(&h.clientWrite, h.bodyBuf(), chunked)
	}
	rec.bytesOut = n
	if err != nil {
		// The head is out: no fake 502, the client conn just ends.
		h.drop(sc, pool.DiscardFailed)
		rec.err = err
		rec.memberErr = h.respParser.Body().Err() != nil && h.respParser.Body().Err() != io.EOF
		return h.resp.Status, exEnd
	}
	reusable := h.resp.KeepAlive && h.memberBuf.Buffered() == 0
	if !h.resp.KeepAlive {
		sc.ExpectMemberClose()
	}
	h.release(sc, reusable, retire)
	if closeClient {
		// Served whole: if the client asked for the close and sent
		// nothing behind its request, it sends nothing more.
		h.doneClean = !h.req.KeepAlive && h.clientBuf.Buffered() == 0
		return h.resp.Status, exEnd
	}
	return h.resp.Status, exNext
}
