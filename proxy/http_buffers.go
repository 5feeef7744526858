package proxy

import (
	"bufio"
	"net"
	"os"
	"sync"
	"time"

	"github.com/tetherproxy/tether/proxy/http1"
)

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
// of a bound on the whole body). n counts the bytes read since it was set.
type deadlineReader struct {
	c       net.Conn
	rolling time.Duration
	cut     <-chan struct{} // closed at shutdown's cut: no more re-arming
	n       int64
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
	n, err := d.c.Read(p)
	d.n += int64(n)
	return n, err
}

// deadlineWriter writes to a client conn, re-arming the write deadline
// before each write when rolling > 0 (the idle timeout): a client that
// stops reading (a zero window, which the kernel's probes keep alive, or a
// black hole with no user_timeout) cannot hold a response, its member conn
// and its buffers past the idle timeout, as a tcp relay cannot.
type deadlineWriter struct {
	c       net.Conn
	rolling time.Duration
	cut     <-chan struct{} // closed at shutdown's cut: no more re-arming
}

func (d *deadlineWriter) Write(p []byte) (int, error) {
	if err := d.arm(); err != nil {
		return 0, err
	}
	return d.c.Write(p)
}

// arm moves the write deadline one idle timeout ahead (for a write that
// follows at once), unless shutdown's cut set a past one.
func (d *deadlineWriter) arm() error {
	if d.rolling > 0 {
		select {
		case <-d.cut:
			return os.ErrDeadlineExceeded
		default:
		}
		_ = d.c.SetWriteDeadline(time.Now().Add(d.rolling))
	}
	return nil
}

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
