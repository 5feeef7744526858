package pool

import "context"

// wantConn is a Get queued while every member is at its max_connections.
// It is delivered exactly once (done), under ConnPool.mu: a conn handed
// over by Put (c), an error (Close), or nothing when it leaves the queue by
// itself (its turn at a freed slot, its timeout or its ctx). Until then it
// may be woken any number of times to look at the pool again.
type wantConn struct {
	ctx   context.Context
	ready chan struct{} // cap 1: delivered, or "look again" (a slot freed)
	c     *ServerConn
	err   error
	done  bool
}

func (w *wantConn) signal() {
	select {
	case w.ready <- struct{}{}:
	default:
	}
}

// deliverLocked settles a waiter with a conn or an error, once: a settled
// one is left alone and reports false. p.mu is held.
func (p *ConnPool) deliverLocked(w *wantConn, c *ServerConn, err error) bool {
	if w.done {
		return false
	}
	w.done, w.c, w.err = true, c, err
	p.nwait.Add(-1)
	w.signal()
	return true
}

// kickFrontLocked wakes the oldest live queued Get. p.mu is held.
func (p *ConnPool) kickFrontLocked() {
	if w := p.q.front(); w != nil {
		w.signal()
	}
}

// handOffLocked gives c (not lent out) to the oldest queued Get whose ctx
// is still live; dead ones met on the way are settled with their ctx's
// error. p.mu is held.
func (p *ConnPool) handOffLocked(c *ServerConn) bool {
	for {
		w := p.q.popFront()
		if w == nil {
			return false
		}
		if w.done {
			continue
		}
		if err := w.ctx.Err(); err != nil {
			p.deliverLocked(w, nil, err)
			continue
		}
		c.Reused, c.out = true, true
		p.deliverLocked(w, c, nil)
		// w may have been woken for a freed slot it will not use now: the
		// next one looks instead.
		p.kickFrontLocked()
		return true
	}
}

// cancelWant withdraws a queued Get (timeout or ctx). It returns the conn a
// Put handed over in the meantime, if any.
func (p *ConnPool) cancelWant(w *wantConn) *ServerConn {
	p.mu.Lock()
	defer p.mu.Unlock()
	if w.done {
		return w.c
	}
	wasFront := p.q.front() == w
	p.deliverLocked(w, nil, nil)
	if wasFront {
		p.kickFrontLocked()
	}
	return nil
}

// wantQueue is the FIFO of queued Gets, two slices as in net/http's
// wantConnQueue. Settled entries stay until they reach the front.
type wantQueue struct {
	head    []*wantConn
	headPos int
	tail    []*wantConn
}

func (q *wantQueue) pushBack(w *wantConn) { q.tail = append(q.tail, w) }

// front returns the oldest live entry, dropping settled ones before it.
func (q *wantQueue) front() *wantConn {
	for {
		w := q.peekFront()
		if w == nil || !w.done {
			return w
		}
		q.popFront()
	}
}

// popFront removes and returns the oldest entry, settled or not.
func (q *wantQueue) popFront() *wantConn {
	w := q.peekFront()
	if w != nil {
		q.head[q.headPos] = nil
		q.headPos++
	}
	return w
}

// peekFront returns the oldest entry, settled or not, moving the tail to
// the head when the head is used up.
func (q *wantQueue) peekFront() *wantConn {
	if q.headPos >= len(q.head) {
		if len(q.tail) == 0 {
			return nil
		}
		q.head, q.headPos, q.tail = q.tail, 0, q.head[:0]
	}
	return q.head[q.headPos]
}
