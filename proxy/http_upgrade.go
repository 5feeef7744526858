package proxy

import (
	"bufio"
	"io"
	"time"

	"github.com/tetherproxy/tether/pool"
	"github.com/tetherproxy/tether/proxy/http1"
)

// tunnel passes the 101 on, then relays both ways as tcp mode does (same
// idle timeout). The member conn never returns to the pool. It returns
// the status and exTunneled once the relay has the conn (then the relay's
// last direction logs the request and takes the conn back to live, to
// end it), or exEnd when the 101 could not be passed on.
func (h *httpConn) tunnel(sc *pool.ServerConn, rec *requestRecord) (int, exchangeOutcome) {
	h.head = http1.AppendResponse(h.head[:0], h.resp, &http1.HeadOptions{Upgrade: true})
	if _, err := h.client.Write(h.head); err != nil {
		h.drop(sc, pool.DiscardFailed)
		rec.err = err
		return h.resp.Status, exEnd
	}
	// Bytes already read past the heads belong to the tunnel.
	err := flushBuffered(h.clientBuf, sc.Conn)
	if err == nil {
		err = flushBuffered(h.memberBuf, h.client)
	}
	if err != nil {
		h.drop(sc, pool.DiscardFailed)
		rec.err = err
		return h.resp.Status, exEnd
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
		h.live(entryTunnelEnded)
	})
	return status, exTunneled
}

// flushBuffered writes what br holds to w: bytes read past a head that
// belong to the tunnel.
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
