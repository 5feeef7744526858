package proxy

import (
	"errors"
	"net"
	"os"
	"sync"
	"sync/atomic"
	"time"

	"github.com/tetherproxy/tether/sockopt"
)

// Side names one end of a proxied connection.
type Side string

const (
	SideClient Side = "client"
	SideServer Side = "server"
	SideTether Side = "tether"
)

// How names the way a proxied connection began to end.
type How string

const (
	HowFIN         How = "FIN"          // the side sent FIN (half-close propagated)
	HowRST         How = "RST"          // the side reset the connection
	HowIdleTimeout How = "idle-timeout" // no byte moved either way for the idle timeout
	HowShutdown    How = "shutdown"     // tether was stopping and the drain time ran out
	HowError       How = "error"        // a local error (e.g. a write to a side that went away)
)

// closeEvent says who ended a connection first and how.
type closeEvent struct {
	Side Side
	How  How
}

func (e closeEvent) String() string {
	if e.Side == "" {
		return ""
	}
	return string(e.Side) + " " + string(e.How)
}

// relay copies bytes between a client and a server connection.
//
// Idle detection without breaking splice: each direction copies with
// dst.ReadFrom(src), which splices and returns only at EOF, error or read
// deadline. The deadline is re-armed every tick (a tenth of the idle timeout);
// on expiry the relay compares the kernel's byte counters of both sockets
// (TCP_INFO bytes_received + bytes_acked) with the last reading. Any change
// means bytes moved in some direction, even in the middle of a splice, so the
// connection is idle only when the counters stood still for the whole
// timeout. Nothing wraps the conns, and a transfer longer than the timeout
// survives.
type relay struct {
	client, server *net.TCPConn
	idle           time.Duration
	tick           time.Duration

	mu         sync.Mutex
	lastSum    uint64
	lastChange time.Time

	first   atomic.Pointer[closeEvent]
	aborted atomic.Bool
	abortBy atomic.Pointer[closeEvent]

	toServer, toClient atomic.Int64 // bytes copied each way
}

func newRelay(client, server *net.TCPConn, idle time.Duration) *relay {
	r := &relay{client: client, server: server, idle: idle, lastChange: time.Now()}
	if idle > 0 {
		r.tick = max(idle/10, 10*time.Millisecond)
		r.lastSum = r.counters()
	}
	return r
}

// record keeps the first way the connection began to end.
func (r *relay) record(e closeEvent) {
	r.first.CompareAndSwap(nil, &e)
}

// abort ends both directions at once (idle timeout, an RST, shutdown): past
// deadlines wake any read or write blocked in splice.
func (r *relay) abort(e closeEvent) {
	r.record(e)
	if r.aborted.CompareAndSwap(false, true) {
		r.abortBy.Store(&e)
		past := time.Unix(1, 0)
		_ = r.client.SetDeadline(past)
		_ = r.server.SetDeadline(past)
	}
}

// run relays until both directions are done. It returns how the connection
// began to end.
func (r *relay) run() closeEvent {
	done := make(chan struct{})
	go func() {
		defer close(done)
		r.pipe(r.client, r.server, SideServer, &r.toClient)
	}()
	r.pipe(r.server, r.client, SideClient, &r.toServer)
	<-done
	if e := r.first.Load(); e != nil {
		return *e
	}
	return closeEvent{}
}

// pipe copies src to dst until src sends FIN (then FIN is passed on with
// CloseWrite and the other direction keeps going), src or dst fails (both
// directions end), or the connection is idle (both directions end).
func (r *relay) pipe(dst, src *net.TCPConn, from Side, count *atomic.Int64) {
	for {
		if r.idle > 0 && !r.aborted.Load() {
			_ = src.SetReadDeadline(time.Now().Add(r.tick))
		}
		n, err := dst.ReadFrom(src)
		count.Add(n)
		if err == nil { // src sent FIN
			r.record(closeEvent{from, HowFIN})
			if cerr := dst.CloseWrite(); cerr != nil && !r.aborted.Load() {
				r.abort(closeEvent{other(from), HowRST})
			}
			return
		}
		if r.aborted.Load() {
			return
		}
		if errors.Is(err, os.ErrDeadlineExceeded) {
			if r.stillActive() {
				continue
			}
			r.abort(closeEvent{SideTether, HowIdleTimeout})
			return
		}
		r.abort(closeEvent{r.failedSide(src, dst, from), HowRST})
		return
	}
}

// stillActive reports whether bytes moved on either socket within the idle
// timeout, reading the kernel's counters.
func (r *relay) stillActive() bool {
	sum := r.counters()
	now := time.Now()
	r.mu.Lock()
	defer r.mu.Unlock()
	if sum != r.lastSum {
		r.lastSum = sum
		r.lastChange = now
	}
	return now.Sub(r.lastChange) < r.idle
}

func (r *relay) counters() uint64 {
	var sum uint64
	for _, c := range []*net.TCPConn{r.client, r.server} {
		if info, err := sockopt.GetInfo(c); err == nil {
			sum += info.BytesReceived + info.BytesAcked
		}
	}
	return sum
}

// failedSide tells which socket failed: the one the kernel has already moved
// to CLOSE (it received an RST); when neither has, the error came from the
// read side.
func (r *relay) failedSide(src, dst *net.TCPConn, from Side) Side {
	if info, err := sockopt.GetInfo(dst); err == nil && info.State == sockopt.StateClosed {
		return other(from)
	}
	return from
}

func other(s Side) Side {
	if s == SideClient {
		return SideServer
	}
	return SideClient
}
