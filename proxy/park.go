package proxy

import (
	"cmp"
	"container/heap"
	"errors"
	"fmt"
	"os"
	"sync"
	"sync/atomic"
	"syscall"
	"time"

	"go.uber.org/zap"
	"golang.org/x/sys/unix"
)

// parker holds a virtual server's idle sockets without a goroutine each.
// In http mode, a keepalive client connection that stays quiet for
// httpHoldBuffers after a request (or a new one that sends nothing that
// long) gives back its buffers, is registered in the parker's epoll set
// and its goroutine ends: what remains is the httpConn and the socket,
// instead of a parked goroutine's 4 KiB stack on top. When the client
// sends (or closes), epoll reports the socket and a new goroutine takes the
// connection up again; at the wait's deadline (keepalive_timeout, or
// request_header_timeout before the first request) or at shutdown it is
// ended as the waiting goroutine would have ended it. In tcp mode each
// direction of a relay parks the same way once its source has been quiet
// for a while (see relay). HAProxy and nginx hold an idle connection the
// same way: in an event loop, with no stack.
//
// A parked socket is a parkEntry; its owner's unparked method runs, in a
// goroutine of its own, when the socket is ready (ready true) or when its
// deadline passed, unpark was called or the parker stopped (ready false).
//
// The epoll set is level-triggered and one-shot: a socket that already has
// bytes (or a FIN) when it is registered is reported at once, and a report
// disarms the registration until the next park re-arms it (EPOLL_CTL_MOD).
// A closed socket leaves the set by itself. The parker waits for the set's
// readiness through Go's own netpoller (the epoll fd is pollable), so no OS
// thread blocks in epoll_wait. A parked entry has a slot in the parker's
// table and every park a fresh id; the event carries both: a late report
// for a connection already woken, expired or closed finds its slot empty
// or holding another park, and is dropped. (A table, not a map by id: an
// idle socket costs 8 bytes there, not a map slot.)
type parker struct {
	epfd int
	file *os.File // epfd, for the netpoller
	done chan struct{}

	mu      sync.Mutex
	closed  bool
	slots   []*parkEntry // the parked entries by slot; nil: a free slot
	free    []uint32     // free slots
	byTime  parkHeap     // the parked entries by deadline, for the timer
	nextID  uint32
	timer   *time.Timer // fires at byTime[0].deadline
	timerAt time.Time   // zero when the timer is stopped

	count atomic.Int64  // parked entries, for Stats without the lock
	parks atomic.Uint64 // parks since start

	trim     *memTrimmer // told of every park and wake (&memTrim)
	logger   *zap.Logger
	workers  *workers      // runs each owner's unparked
	failures atomic.Uint64 // epoll_ctl failures (the socket then keeps its goroutine)
	failLog  logLimit      // the warning about one: once a minute
}

// parkEvents are the readiness a parked connection wakes for: bytes, the
// client's FIN, an error or reset. One-shot: each park arms it once.
const parkEvents = unix.EPOLLIN | unix.EPOLLRDHUP | unix.EPOLLONESHOT

// parkEntry is a socket as the parker holds it. The zero value is ready
// for a first park; an owner keeps one per socket for the socket's life.
type parkEntry struct {
	owner    parkOwner
	deadline time.Time
	id       uint32 // this park's id, carried by its epoll events with slot
	slot     uint32 // in the parker's table, while parked
	index    int32  // in the deadline heap, while parked
	inEpoll  bool   // registered (armed or not) in the parker's set
	parked   bool
}

// parkOwner is what a parked socket belongs to.
type parkOwner interface {
	// parkDeadline is read under the parker's lock as the socket is
	// parked: until when it may stay parked, and false to refuse the park
	// (the owner is ending: an unpark meant for it may have come already).
	parkDeadline() (time.Time, bool)
	// unparked takes the socket up again, in a goroutine of its own:
	// ready when epoll reported it (bytes, FIN, error), else its
	// deadline passed, unpark was called, or the parker stopped.
	unparked(ready bool)
}

func newParker(logger *zap.Logger, w *workers) (*parker, error) {
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
	p := &parker{epfd: epfd, file: f, done: make(chan struct{}), logger: logger, workers: w,
		trim: &memTrim, failLog: logLimit{interval: time.Minute}}
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
				p.wake(uint32(events[i].Fd), uint32(events[i].Pad))
			}
			if n < len(events) {
				return false // drained: wait for the set to be ready again
			}
		}
	})
}

// park hands the socket of e over to the parker until it is ready or the
// owner's parkDeadline passes, and reports whether it did: false when the
// parker is stopped, the owner refused, or the socket could not be
// registered; the caller then still has it. On true the caller's goroutine must not touch e's owner again:
// it may already be running in another one.
func (p *parker) park(e *parkEntry, raw syscall.RawConn, owner parkOwner) bool {
	e.owner = owner
	p.mu.Lock()
	defer p.mu.Unlock()
	if p.closed {
		return false
	}
	deadline, ok := owner.parkDeadline()
	if !ok {
		return false
	}
	p.nextID++
	id := p.nextID
	var slot uint32
	if n := len(p.free); n > 0 {
		slot = p.free[n-1]
	} else {
		slot = uint32(len(p.slots))
	}
	ev := unix.EpollEvent{Events: parkEvents, Fd: int32(slot), Pad: int32(id)}
	op := unix.EPOLL_CTL_ADD
	if e.inEpoll {
		op = unix.EPOLL_CTL_MOD // re-arm the one-shot registration
	}
	var ctlErr error
	if err := raw.Control(func(fd uintptr) {
		ctlErr = unix.EpollCtl(p.epfd, op, int(fd), &ev)
		if op == unix.EPOLL_CTL_MOD && errors.Is(ctlErr, unix.ENOENT) {
			ctlErr = unix.EpollCtl(p.epfd, unix.EPOLL_CTL_ADD, int(fd), &ev)
		}
	}); err != nil || ctlErr != nil {
		p.failed(cmp.Or(ctlErr, err))
		return false
	}
	e.inEpoll, e.parked = true, true
	p.parks.Add(1)
	e.id, e.slot, e.deadline = id, slot, deadline
	if n := len(p.free); n > 0 {
		p.free = p.free[:n-1]
		p.slots[slot] = e
	} else {
		p.slots = append(p.slots, e)
	}
	heap.Push(&p.byTime, e)
	p.count.Add(1)
	if p.timerAt.IsZero() || deadline.Before(p.timerAt) {
		p.timerAt = deadline
		p.timer.Reset(time.Until(deadline))
	}
	p.trim.noteParked(p.logger)
	return true
}

// failed counts a socket that could not be parked (epoll_ctl failed: at
// fs.epoll.max_user_watches, out of memory) and warns at most once a
// minute: such sockets keep their goroutines, which costs memory, not
// correctness.
func (p *parker) failed(err error) {
	n := p.failures.Add(1)
	if ok, _ := p.failLog.allow(time.Now()); !ok {
		return
	}
	p.logger.Warn("an idle connection could not be parked; it keeps its goroutine (raise fs.epoll.max_user_watches?)",
		zap.Error(err), zap.Uint64("park_failures", n))
}

// take removes a parked entry (p.mu held).
func (p *parker) take(e *parkEntry) {
	p.slots[e.slot] = nil
	p.free = append(p.free, e.slot)
	heap.Remove(&p.byTime, int(e.index))
	e.parked = false
	p.count.Add(-1)
	p.trim.noteWoken()
	if len(p.byTime) == 0 {
		p.shrink()
	}
}

// shrink gives back the table of a burst of parked sockets once none is
// parked any more.
func (p *parker) shrink() {
	if cap(p.slots) > 1024 {
		p.slots, p.free, p.byTime = nil, nil, nil
		return
	}
	p.slots, p.free = p.slots[:0], p.free[:0]
}

// wake takes up the entry parked in slot under id: its socket is ready.
func (p *parker) wake(slot, id uint32) {
	p.mu.Lock()
	var e *parkEntry
	if int(slot) < len(p.slots) {
		e = p.slots[slot]
	}
	ok := e != nil && e.id == id
	if ok {
		p.take(e)
	}
	p.mu.Unlock()
	if ok {
		p.workers.run(workerJob{owner: e.owner, ready: true})
	}
}

// unpark takes e up now, as if its deadline had passed, when it is
// parked (else it does nothing).
func (p *parker) unpark(e *parkEntry) {
	p.mu.Lock()
	ok := e.parked
	if ok {
		p.take(e)
	}
	p.mu.Unlock()
	if ok {
		p.workers.run(workerJob{owner: e.owner})
	}
}

// expire takes up the entries whose deadline passed, and sets the timer
// for the next deadline.
func (p *parker) expire() {
	var over []*parkEntry
	p.mu.Lock()
	now := time.Now()
	for len(p.byTime) > 0 && !p.byTime[0].deadline.After(now) {
		e := p.byTime[0]
		p.take(e)
		over = append(over, e)
	}
	p.timerAt = time.Time{}
	if len(p.byTime) > 0 && !p.closed {
		p.timerAt = p.byTime[0].deadline
		p.timer.Reset(time.Until(p.timerAt))
	}
	p.mu.Unlock()
	for _, e := range over {
		p.workers.run(workerJob{owner: e.owner})
	}
}

// stop takes up every parked entry (not ready) and ends the parker; parks
// after it are refused. It waits for the parker's goroutine, also when
// another stop got there first.
func (p *parker) stop() {
	p.mu.Lock()
	if p.closed {
		p.mu.Unlock()
		<-p.done // another stop is ending the parker: wait for it too
		return
	}
	p.closed = true
	p.timer.Stop()
	over := make([]*parkEntry, 0, len(p.byTime))
	for _, e := range p.byTime {
		e.parked = false
		over = append(over, e)
		p.trim.noteWoken()
	}
	p.slots, p.free, p.byTime = nil, nil, nil
	p.count.Store(0)
	p.mu.Unlock()
	_ = p.file.Close() // ends run's wait
	<-p.done
	for _, e := range over {
		p.workers.run(workerJob{owner: e.owner})
	}
}

// parkedNow is how many sockets are parked now.
func (p *parker) parkedNow() int64 { return p.count.Load() }

// parkHeap orders parked entries by deadline (container/heap).
type parkHeap []*parkEntry

func (q parkHeap) Len() int           { return len(q) }
func (q parkHeap) Less(i, j int) bool { return q[i].deadline.Before(q[j].deadline) }
func (q parkHeap) Swap(i, j int) {
	q[i], q[j] = q[j], q[i]
	q[i].index, q[j].index = int32(i), int32(j)
}
func (q *parkHeap) Push(x any) {
	e := x.(*parkEntry)
	e.index = int32(len(*q))
	*q = append(*q, e)
}
func (q *parkHeap) Pop() any {
	old := *q
	e := old[len(old)-1]
	old[len(old)-1] = nil
	*q = old[:len(old)-1]
	e.index = -1
	return e
}
