package proxy

import (
	"crypto/tls"
	"errors"
	"io"
	"net"
	"os"
	"strconv"
	"sync"
	"sync/atomic"
	"syscall"
	"time"

	"golang.org/x/sys/unix"

	"github.com/tetherproxy/tether/pool"
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
	// HowHalfCloseTimeout: one side had sent FIN and nothing moved for the
	// half-close timeout (HAProxy's timeout client-fin, F5's Close Wait).
	HowHalfCloseTimeout How = "half-close-timeout"
	HowTimedOut         How = "timed-out" // the kernel gave up on the side: keepalive probes or user timeout unanswered
	HowShutdown         How = "shutdown"  // tether was stopping and the drain time ran out
	HowError            How = "error"     // a local error (e.g. a write to a side that went away)
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

// relay copies bytes between a client and a server connection, one
// goroutine per direction, on the bare *net.TCPConn of each side.
//
// Idle detection: each direction re-arms a read deadline one tick ahead (a
// tenth of the idle timeout). When it passes, the relay compares the
// kernel's byte counters of both sockets (TCP_INFO bytes_received +
// bytes_acked) with the last reading. Any change means bytes moved in some
// direction, even in the middle of a splice or while the other goroutine is
// blocked writing to a slow peer, so the connection is idle only when the
// counters stood still for the whole timeout. A transfer longer than the
// timeout survives, and nothing wraps the conns.
//
// After a half-close the surviving direction keeps this watch, bounded by
// the half-close timeout when one is set, so a peer that never closes
// cannot pin the connection (no CLOSE_WAIT lingers).
//
// Parking: with a parker (tcp mode, http upgrade tunnels), a direction
// whose source has been quiet for parkAfter hands the socket to the parker
// and its goroutine ends (a TLS source also gives back its wait buffer);
// an idle relay then holds no goroutine. The tick is then
// at most parkAfter. The parker takes the direction up again when the
// source is readable (bytes, FIN, reset), when the idle timeout would
// fall due (lastChange + limit: the byte counters are checked then, as at a
// tick), or when abort or the other direction's FIN wakes it.
//
// A side that speaks TLS (clientTLS, serverTLS) is read and written
// through its *tls.Conn: that direction holds a buffer while it waits (TLS
// may have decrypted bytes buffered that the socket no longer shows) and
// never splices. Deadlines, the byte counters and the close still act on
// the socket beneath. A close_notify or a FIN at a record boundary is that
// side's FIN; it is passed on as close_notify then FIN to a TLS peer.
type relay struct {
	client, server       *net.TCPConn
	clientTLS, serverTLS *tls.Conn     // nil: that side is plain TCP
	halfClose            time.Duration // 0 = the idle timeout also bounds a half-closed connection
	limit                atomic.Int64  // inactivity allowed now, ns: idle, then halfClose after a FIN; 0 = none
	halfClosed           atomic.Bool

	mu         sync.Mutex
	lastSum    uint64
	haveSum    bool         // lastSum was read: not at the start, only once the first limit passed
	read       atomic.Int64 // bytes read from either source, counted as they are read
	lastChange time.Time

	first   atomic.Pointer[closeEvent] // what began the end
	ended   atomic.Pointer[closeEvent] // what cut both directions (nil: both FINs passed)
	aborted atomic.Bool

	toServer, toClient atomic.Int64 // bytes copied each way
	running            atomic.Int32 // directions still running (parked ones too)
	liveAt             int32        // index in the virtual server's liveConns

	member *pool.Member                // tcp mode: the member relayed to (a drain's end cuts it)
	parker *parker                     // nil: directions never park
	done   func(first, end closeEvent) // start's
	dirs   [2]*direction               // toClient, toServer
}

// parkAfter is how long a direction's source is quiet before the direction
// parks (a relay with a parker).
const parkAfter = time.Second

// newRelay relays between client and server; either side (or both) may
// speak TLS over its socket: a nil *tls.Conn is a plain side.
// With a parker, its directions park when idle (nil: never).
func newRelay(client *net.TCPConn, clientTLS *tls.Conn, server *net.TCPConn, serverTLS *tls.Conn, idle, halfClose time.Duration, p *parker) *relay {
	r := &relay{client: client, server: server, clientTLS: clientTLS, serverTLS: serverTLS,
		halfClose: halfClose, lastChange: time.Now(), parker: p}
	r.limit.Store(int64(idle))
	// The directions exist before the relay is shared (abort reads them).
	toClient := newDirection(r, r.client, r.server, SideServer, &r.toClient)
	toClient.setTLS(r.clientTLS, r.serverTLS)
	toServer := newDirection(r, r.server, r.client, SideClient, &r.toServer)
	toServer.setTLS(r.serverTLS, r.clientTLS)
	if p != nil {
		toClient.parker, toServer.parker = p, p
	}
	r.dirs = [2]*direction{toClient, toServer}
	return r
}

// tick is how far ahead a direction arms its read deadline: a tenth of the
// current inactivity limit, so a timeout fires within 10% of its value.
func (r *relay) tick() time.Duration {
	return max(time.Duration(r.limit.Load())/10, 10*time.Millisecond)
}

// record keeps the first way the connection began to end.
func (r *relay) record(e closeEvent) {
	r.first.CompareAndSwap(nil, &e)
}

// abort ends both directions at once (idle timeout, an RST, shutdown): past
// deadlines wake any read or write blocked in splice, and parked
// directions are taken up (they see aborted and end).
func (r *relay) abort(e closeEvent) {
	r.record(e)
	if r.aborted.CompareAndSwap(false, true) {
		r.ended.Store(&e)
		past := time.Unix(1, 0)
		_ = r.client.SetDeadline(past)
		_ = r.server.SetDeadline(past)
		if r.parker != nil {
			for _, d := range r.dirs {
				r.parker.unpark(&d.parking)
			}
		}
	}
}

// start runs both directions, each on its own goroutine, and calls done on
// the goroutine that finishes last, with what began the end (first) and what
// cut the connection (end; zero when both sides closed with FIN).
func (r *relay) start(done func(first, end closeEvent)) {
	r.done = done
	r.running.Store(2)
	if r.parker != nil { // on the Server's workers, as parked directions wake
		r.parker.workers.run(workerJob{dir: r.dirs[0]})
		r.parker.workers.run(workerJob{dir: r.dirs[1]})
		return
	}
	go r.runDirection(r.dirs[0])
	go r.runDirection(r.dirs[1])
}

// runDirection runs a direction until it ends or parks; the last direction
// to end calls done.
func (r *relay) runDirection(d *direction) {
	if r.pipe(d) {
		return // parked: unparked goes on
	}
	r.directionDone()
}

func (r *relay) directionDone() {
	done := r.done
	if r.running.Add(-1) == 0 {
		var first, end closeEvent
		if e := r.first.Load(); e != nil {
			first = *e
		}
		if e := r.ended.Load(); e != nil {
			end = *e
		}
		done(first, end)
	}
}

// unparked is parkOwner's: the source is readable (ready), or the
// direction was woken to check the idle timeout, by abort, or by the other
// direction's FIN.
func (d *direction) unparked(ready bool) {
	r := d.r
	if !ready && !r.waitFailed(os.ErrDeadlineExceeded, d) {
		r.directionDone()
		return
	}
	d.deadline = time.Time{} // re-armed on the next turn
	r.runDirection(d)
}

// parkDeadline is parkOwner's, read under the parker's lock: when the idle
// timeout would fall due (the counters are checked then), and false when
// the relay is ending (abort, then its unpark, may have run before).
func (d *direction) parkDeadline() (time.Time, bool) {
	r := d.r
	if r.aborted.Load() {
		return time.Time{}, false
	}
	limit := time.Duration(r.limit.Load())
	if limit <= 0 {
		return time.Now().Add(24 * time.Hour), true // no idle timeout: just a periodic look
	}
	r.mu.Lock()
	due := r.lastChange.Add(limit)
	r.mu.Unlock()
	return due, true
}

// tick is how far ahead this direction arms its read deadline: the relay's
// tick, at most parkAfter when the direction can park.
func (d *direction) tick() time.Duration {
	if d.parker == nil {
		return d.r.tick()
	}
	if d.r.limit.Load() <= 0 {
		return parkAfter
	}
	return min(d.r.tick(), parkAfter)
}

// Relay buffers: a direction borrows one only while it copies, never while
// it waits, so an idle connection holds no buffer and no splice pipe.
const (
	copyBufferSize = 16 << 10 // HAProxy's default bufsize
	spliceBurst    = 4 << 20  // most bytes one splice hand-off moves before waiting again
)

var copyBuffers = sync.Pool{New: func() any { b := make([]byte, copyBufferSize); return &b }}

// direction is one way of a relay. Its read state lives here, outside the
// read callback, so that waiting for data allocates nothing.
type direction struct {
	r          *relay
	dst, src   *net.TCPConn
	tdst, tsrc *tls.Conn // TLS over dst / src; nil = plain
	rc         syscall.RawConn
	from       Side
	count      *atomic.Int64
	readFn     func(fd uintptr) bool
	ended      bool      // the read callback's forward ended the direction
	deadline   time.Time // src's read deadline as last set

	buf *[]byte // filled by read
	// TLS source: a small buffer to wait with (crypto/tls has its own
	// record buffer), the pooled one only while a burst lasts (the last
	// read filled its buffer).
	waitBuf []byte
	burst   bool
	n       int
	rerr    error
	lr      io.LimitedReader

	parker  *parker // nil: this direction does not park
	parking parkEntry
}

func newDirection(r *relay, dst, src *net.TCPConn, from Side, count *atomic.Int64) *direction {
	d := &direction{r: r, dst: dst, src: src, from: from, count: count}
	d.rc, _ = src.SyscallConn() // cannot fail on an open *net.TCPConn
	d.readFn = d.read
	return d
}

// read is the RawConn.Read callback: one non-blocking read(2) into a pooled
// buffer. On EAGAIN it hands the buffer back and asks to wait for data.
//
// Bytes that came short of the buffer (a request, an answer) are written
// to dst right here, and the callback reads again before it waits. That
// read usually finds nothing (EAGAIN), but it cannot be skipped: a FIN that
// came in the same segment as the data (a sender that wrote and shut down
// at once) raised no wakeup of its own, so only a read sees it; waiting
// instead held the half-close until the direction's deadline (1 s, or
// idle_timeout/10). EOF, an error, a full buffer (a splice burst may
// follow) and a TLS destination return to pipe.
func (d *direction) read(fd uintptr) bool {
	b := copyBuffers.Get().(*[]byte)
	for {
		n, err := unix.Read(int(fd), *b)
		if err == unix.EINTR {
			continue
		}
		if err == unix.EAGAIN {
			copyBuffers.Put(b)
			return false
		}
		d.buf, d.n, d.rerr = b, max(n, 0), err
		if n > 0 {
			d.r.read.Add(int64(n))
		}
		if err != nil || n <= 0 || n == len(*b) || d.tdst != nil {
			return true
		}
		if !d.r.forward(d) {
			d.ended = true
			return true
		}
		d.armDeadline()
		b = copyBuffers.Get().(*[]byte) // forward handed d.buf back
	}
}

func (d *direction) putBuffer() {
	if d.buf != &d.waitBuf {
		copyBuffers.Put(d.buf)
	}
	d.buf = nil
}

// tlsWaitBuffer is what a TLS direction holds while it waits: an idle TLS
// side costs this, not a 16 KiB copy buffer.
const tlsWaitBuffer = 1 << 10

func (d *direction) setTLS(dst, src *tls.Conn) {
	d.tdst, d.tsrc = dst, src
	if src != nil {
		d.waitBuf = make([]byte, tlsWaitBuffer)
	}
}

// pipe copies src to dst until src sends FIN (then FIN is passed on with
// CloseWrite and the other direction keeps going), src or dst fails (both
// directions end), or the connection is idle (both directions end).
//
// How bytes move: the direction waits for data without holding anything,
// reads what is there with one read(2) and writes it on: two system calls
// per message, as HAProxy does. When a read fills the buffer a burst is
// under way, and splice(2) moves the rest of it (up to spliceBurst) inside
// the kernel: dst.ReadFrom on an io.LimitedReader around the bare
// *net.TCPConn splices, and the limit makes it return instead of waiting
// holding a pipe once the burst is over.
//
// It reports whether the direction parked: then the caller's goroutine
// must not touch d again.
func (r *relay) pipe(d *direction) (parked bool) {
	for {
		d.armDeadline()
		var step pipeStep
		if d.tsrc != nil {
			step = r.readTLS(d)
		} else {
			step = r.readPlain(d)
		}
		switch step {
		case stepParked:
			return true
		case stepEnded:
			return false
		case stepWait:
			continue
		}
		if !r.forward(d) {
			return false
		}
	}
}

// pipeStep is what one read of a direction's source came to.
type pipeStep uint8

const (
	stepRead   pipeStep = iota // d.buf, d.n and d.rerr hold what the read got (bytes, EOF or an error)
	stepWait                   // nothing read, the direction goes on waiting (a tick passed, bytes moved somewhere)
	stepParked                 // quiet: the parker has the direction now
	stepEnded                  // the direction is over (idle timeout, abort, a failure)
)

func (s pipeStep) String() string {
	switch s {
	case stepRead:
		return "read"
	case stepWait:
		return "wait"
	case stepParked:
		return "parked"
	case stepEnded:
		return "ended"
	}
	return "pipeStep(" + strconv.Itoa(int(s)) + ")"
}

// armDeadline moves src's read deadline one tick ahead when an idle
// timeout or the parker needs it, and only when half the tick is used up:
// not a timer update per message.
func (d *direction) armDeadline() {
	r := d.r
	if (r.limit.Load() > 0 || d.parker != nil) && !r.aborted.Load() {
		tick := d.tick()
		if now := time.Now(); d.deadline.Sub(now) < tick/2 {
			d.deadline = now.Add(tick)
			_ = d.src.SetReadDeadline(d.deadline)
		}
	}
}

// readPlain waits for src to be readable and reads what is there with one
// read(2) into a pooled buffer (the RawConn callback d.read), parking the
// direction when its source has been quiet for a tick.
func (r *relay) readPlain(d *direction) pipeStep {
	err := d.rc.Read(d.readFn)
	if d.ended { // the read callback forwarded, and that ended the direction
		d.ended = false
		return stepEnded
	}
	if err == nil {
		return stepRead
	}
	if !r.waitFailed(err, d) {
		return stepEnded
	}
	// Quiet for a tick but the relay lives on: park.
	if d.parker != nil && errors.Is(err, os.ErrDeadlineExceeded) && d.parker.park(&d.parking, d.rc, d) {
		return stepParked
	}
	return stepWait
}

// readTLS reads from a TLS source: into the small wait buffer, or a
// pooled one while a burst lasts (the last read filled its buffer). A
// close_notify or a FIN at a record boundary reads as EOF (n 0, no error).
func (r *relay) readTLS(d *direction) pipeStep {
	if d.waitBuf == nil { // given back when it parked
		d.waitBuf = make([]byte, tlsWaitBuffer)
	}
	d.buf = &d.waitBuf
	if d.burst {
		d.buf = copyBuffers.Get().(*[]byte)
	}
	d.n, d.rerr = d.tsrc.Read(*d.buf)
	d.burst = d.n == len(*d.buf)
	if d.n > 0 {
		r.read.Add(int64(d.n))
	}
	switch {
	case d.n > 0:
		d.rerr = nil // a lasting error comes back on the next read
	case errors.Is(d.rerr, io.EOF): // close_notify, or FIN at a record boundary
		d.rerr = nil
	case d.rerr != nil && errors.Is(d.rerr, os.ErrDeadlineExceeded):
		d.putBuffer()
		if !r.waitFailed(d.rerr, d) {
			return stepEnded
		}
		// Quiet for a tick: park. crypto/tls holds no whole record unread
		// when its read timed out (at most part of one, whose rest makes
		// the socket readable).
		if d.parker != nil {
			wait := d.waitBuf
			d.waitBuf = nil
			if d.parker.park(&d.parking, d.rc, d) {
				return stepParked
			}
			d.waitBuf = wait
		}
		return stepWait
	}
	return stepRead
}

// forward passes on what the last read got: an error ends both
// directions, EOF passes the FIN on, bytes are written to dst, and a read
// that filled the buffer starts a splice burst. It reports whether the
// direction goes on.
func (r *relay) forward(d *direction) bool {
	if d.rerr != nil {
		d.putBuffer()
		if !r.aborted.Load() {
			r.abort(r.failure(d.rerr, d))
		}
		return false
	}
	if d.n == 0 {
		d.putBuffer()
		r.finished(d)
		return false
	}
	full := d.n == len(*d.buf) && d.tsrc == nil && d.tdst == nil
	var werr error
	if d.tdst != nil {
		_, werr = d.tdst.Write((*d.buf)[:d.n])
	} else {
		_, werr = d.dst.Write((*d.buf)[:d.n])
	}
	d.count.Add(int64(d.n))
	d.putBuffer()
	if werr != nil {
		if !r.aborted.Load() {
			r.abort(r.failure(werr, d))
		}
		return false
	}
	if !full {
		return true
	}
	d.lr = io.LimitedReader{R: d.src, N: spliceBurst}
	m, err := d.dst.ReadFrom(&d.lr)
	d.count.Add(m)
	r.read.Add(m)
	switch {
	case err == nil && d.lr.N > 0: // src sent FIN during the burst
		r.finished(d)
		return false
	case err != nil && !r.waitFailed(err, d):
		return false
	}
	return true
}

// finished passes src's FIN on to dst, then bounds the surviving
// direction by the half-close timeout.
func (r *relay) finished(d *direction) {
	r.record(closeEvent{d.from, HowFIN})
	if d.tdst != nil {
		// close_notify first: the peer tells a clean end from a cut one.
		_ = d.tdst.CloseWrite()
	}
	if err := d.dst.CloseWrite(); err != nil && !r.aborted.Load() {
		r.abort(closeEvent{other(d.from), HowRST})
		return
	}
	if r.halfClose <= 0 || !r.halfClosed.CompareAndSwap(false, true) {
		return
	}
	if cur := time.Duration(r.limit.Load()); cur > 0 && cur <= r.halfClose {
		return // the idle timeout is already the tighter bound
	}
	sum := r.counters()
	r.mu.Lock()
	r.lastSum, r.haveSum, r.lastChange = sum, true, time.Now() // the FIN itself is activity
	r.mu.Unlock()
	r.limit.Store(int64(r.halfClose))
	// Wake the surviving direction (reading from dst) within one new tick;
	// it may be waiting on a deadline armed for the longer idle timeout,
	// or parked until it.
	if !r.aborted.Load() {
		_ = d.dst.SetReadDeadline(time.Now().Add(r.tick()))
		if r.parker != nil {
			for _, o := range r.dirs {
				if o != d {
					r.parker.unpark(&o.parking)
				}
			}
		}
	}
}

// waitFailed handles an error from waiting on or splicing from src. It
// returns true when the direction should go on: the read deadline passed
// but bytes moved somewhere within the idle timeout.
func (r *relay) waitFailed(err error, d *direction) bool {
	if r.aborted.Load() {
		return false
	}
	if errors.Is(err, os.ErrDeadlineExceeded) {
		if r.limit.Load() <= 0 || r.stillActive() { // no idle timeout (a parking tick), or bytes moved
			// The deadline that passed may not be the one this direction
			// armed (finished moves it closer): re-arm on the next turn.
			d.deadline = time.Time{}
			return true
		}
		how := HowIdleTimeout
		if r.halfClosed.Load() && r.limit.Load() == int64(r.halfClose) {
			how = HowHalfCloseTimeout
		}
		r.abort(closeEvent{SideTether, how})
		return false
	}
	r.abort(r.failure(err, d))
	return false
}

// failure names the side that failed and how: timed out (ETIMEDOUT: the
// kernel's keepalive or user timeout gave up on it) or reset.
func (r *relay) failure(err error, d *direction) closeEvent {
	side := r.failedSide(d.src, d.dst, d.from)
	if errors.Is(err, syscall.ETIMEDOUT) {
		return closeEvent{side, HowTimedOut}
	}
	return closeEvent{side, HowRST}
}

// stillActive reports whether bytes moved on either socket within the idle
// timeout, reading the kernel's counters.
func (r *relay) stillActive() bool {
	sum := r.counters()
	now := time.Now()
	r.mu.Lock()
	defer r.mu.Unlock()
	switch {
	case !r.haveSum:
		// The first check, a limit after the start: the counters were not
		// read at the start (two getsockopt calls that a short relay
		// never needs). Any byte read since means activity in the window;
		// none read means none received (a waiting or parked direction
		// reads what comes) and none sent, so none acknowledged either.
		r.lastSum, r.haveSum = sum, true
		if r.read.Load() > 0 {
			r.lastChange = now
		}
	case sum != r.lastSum:
		r.lastSum = sum
		r.lastChange = now
	}
	return now.Sub(r.lastChange) < time.Duration(r.limit.Load())
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
