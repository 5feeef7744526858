package proxy

import (
	"container/heap"
	"errors"
	"fmt"
	"os"
	"sync"
	"sync/atomic"
	"syscall"
	"time"

	"golang.org/x/sys/unix"
)

// parker holds the idle client connections of an http virtual server
// without a goroutine each. A keepalive connection that stays quiet for
// httpHoldBuffers after a request (or a new one that sends nothing that
// long) gives back its buffers, is registered in the parker's epoll set
// and its goroutine ends: what remains is the httpConn and the socket,
// about 1 KiB instead of a parked goroutine's 4 KiB stack on top. When the
// client sends (or closes), epoll reports the socket and a new goroutine
// takes the connection up again; at the wait's deadline (keepalive_timeout,
// or request_header_timeout before the first request) the parker ends it
// as the waiting goroutine would have; at shutdown it ends them all.
// HAProxy and nginx hold an idle connection the same way: in an event loop,
// with no stack.
//
// The epoll set is level-triggered and one-shot: a socket that already has
// bytes (or a FIN) when it is registered is reported at once, and a report
// disarms the registration until the next park re-arms it (EPOLL_CTL_MOD).
// A closed socket leaves the set by itself. The parker waits for the set's
// readiness through Go's own netpoller (the epoll fd is pollable), so no OS
// thread blocks in epoll_wait. Every park gets a fresh id, carried in the
// event: a late report for a connection already woken, expired or closed
// finds no id and is dropped.
type parker struct {
	vs   *VirtualServer
	epfd int
	file *os.File // epfd, for the netpoller
	done chan struct{}

	mu      sync.Mutex
	closed  bool
	parked  map[uint64]*httpConn
	byTime  parkHeap // the parked conns by deadline, for the timer
	nextID  uint64
	timer   *time.Timer // fires at byTime[0].parkDeadline
	timerAt time.Time   // zero when the timer is stopped

	count atomic.Int64 // len(parked), for Stats without the lock
}

// parkEvents are the readiness a parked connection wakes for: bytes, the
// client's FIN, an error or reset. One-shot: each park arms it once.
const parkEvents = unix.EPOLLIN | unix.EPOLLRDHUP | unix.EPOLLONESHOT

func newParker(vs *VirtualServer) (*parker, error) {
	epfd, err := unix.EpollCreate1(unix.EPOLL_CLOEXEC)
	if err != nil {
		return nil, fmt.Errorf("epoll_create1: %w", err)
	}
	if err := unix.SetNonblock(epfd, true); err != nil {
		_ = unix.Close(epfd)
		return nil, fmt.Errorf("epoll fd nonblocking: %w", err)
	}
	// Non-blocking, so os.NewFile puts it in the netpoller.
	f := os.NewFile(uintptr(epfd), "tether-parked-conns")
	rc, err := f.SyscallConn()
	if err != nil {
		_ = f.Close()
		return nil, err
	}
	p := &parker{vs: vs, epfd: epfd, file: f, done: make(chan struct{}), parked: map[uint64]*httpConn{}}
	p.timer = time.AfterFunc(time.Hour, p.expire)
	p.timer.Stop()
	go p.run(rc)
	return p, nil
}

// run takes the reports of the epoll set until the parker is stopped.
func (p *parker) run(rc syscall.RawConn) {
	defer close(p.done)
	events := make([]unix.EpollEvent, 128)
	_ = rc.Read(func(fd uintptr) bool {
		for {
			n, err := unix.EpollWait(int(fd), events, 0)
			if errors.Is(err, unix.EINTR) {
				continue
			}
			if err != nil {
				return true // the set is closed: stop
			}
			for i := range events[:n] {
				p.wake(uint64(uint32(events[i].Fd)) | uint64(uint32(events[i].Pad))<<32)
			}
			if n < len(events) {
				return false // drained: wait for the set to be ready again
			}
		}
	})
}

// park hands h over to the parker until its client sends or deadline
// passes, and reports whether it did: false when the parker is stopped
// (shutdown) or the socket could not be registered; h is then still the
// caller's. On true the caller's goroutine must not touch h again: it may
// already be served by another one.
func (p *parker) park(h *httpConn, deadline time.Time) bool {
	if h.raw == nil {
		rc, err := h.tcp.SyscallConn()
		if err != nil {
			return false
		}
		h.raw = rc
	}
	p.mu.Lock()
	defer p.mu.Unlock()
	if p.closed {
		return false
	}
	p.nextID++
	id := p.nextID
	ev := unix.EpollEvent{Events: parkEvents, Fd: int32(uint32(id)), Pad: int32(uint32(id >> 32))}
	op := unix.EPOLL_CTL_ADD
	if h.inEpoll {
		op = unix.EPOLL_CTL_MOD // re-arm the one-shot registration
	}
	var ctlErr error
	if err := h.raw.Control(func(fd uintptr) {
		ctlErr = unix.EpollCtl(p.epfd, op, int(fd), &ev)
		if op == unix.EPOLL_CTL_MOD && errors.Is(ctlErr, unix.ENOENT) {
			ctlErr = unix.EpollCtl(p.epfd, unix.EPOLL_CTL_ADD, int(fd), &ev)
		}
	}); err != nil || ctlErr != nil {
		return false
	}
	h.inEpoll = true
	h.parkID, h.parkDeadline = id, deadline
	p.parked[id] = h
	heap.Push(&p.byTime, h)
	p.count.Store(int64(len(p.parked)))
	if p.timerAt.IsZero() || deadline.Before(p.timerAt) {
		p.timerAt = deadline
		p.timer.Reset(time.Until(deadline))
	}
	return true
}

// take removes a parked conn (p.mu held).
func (p *parker) take(h *httpConn) {
	delete(p.parked, h.parkID)
	heap.Remove(&p.byTime, h.heapIndex)
	p.count.Store(int64(len(p.parked)))
}

// wake starts serving the conn parked under id: its client sent or
// closed.
func (p *parker) wake(id uint64) {
	p.mu.Lock()
	h, ok := p.parked[id]
	if ok {
		p.take(h)
	}
	p.mu.Unlock()
	if ok {
		go p.vs.resumeHTTP(h)
	}
}

// expire ends the conns whose wait is over, and sets the timer for the
// next deadline.
func (p *parker) expire() {
	var over []*httpConn
	p.mu.Lock()
	now := time.Now()
	for len(p.byTime) > 0 && !p.byTime[0].parkDeadline.After(now) {
		h := p.byTime[0]
		p.take(h)
		over = append(over, h)
	}
	p.timerAt = time.Time{}
	if len(p.byTime) > 0 && !p.closed {
		p.timerAt = p.byTime[0].parkDeadline
		p.timer.Reset(time.Until(p.timerAt))
	}
	p.mu.Unlock()
	for _, h := range over {
		go p.vs.endParked(h)
	}
}

// stop ends every parked conn (shutdown lets idle conns go at once) and
// the parker; parks after it are refused. It waits for the parker's
// goroutine.
func (p *parker) stop() {
	p.mu.Lock()
	if p.closed {
		p.mu.Unlock()
		return
	}
	p.closed = true
	p.timer.Stop()
	over := make([]*httpConn, 0, len(p.parked))
	for _, h := range p.parked {
		over = append(over, h)
	}
	clear(p.parked)
	p.byTime = p.byTime[:0]
	p.count.Store(0)
	p.mu.Unlock()
	_ = p.file.Close() // ends run's wait
	<-p.done
	for _, h := range over {
		go p.vs.endParked(h)
	}
}

// parked is how many conns are parked now.
func (p *parker) parkedConns() int64 { return p.count.Load() }

// parkHeap orders parked conns by deadline (container/heap).
type parkHeap []*httpConn

func (q parkHeap) Len() int           { return len(q) }
func (q parkHeap) Less(i, j int) bool { return q[i].parkDeadline.Before(q[j].parkDeadline) }
func (q parkHeap) Swap(i, j int) {
	q[i], q[j] = q[j], q[i]
	q[i].heapIndex, q[j].heapIndex = i, j
}
func (q *parkHeap) Push(x any) {
	h := x.(*httpConn)
	h.heapIndex = len(*q)
	*q = append(*q, h)
}
func (q *parkHeap) Pop() any {
	old := *q
	h := old[len(old)-1]
	old[len(old)-1] = nil
	*q = old[:len(old)-1]
	h.heapIndex = -1
	return h
}
