package proxy

import (
	"net"
	"sync/atomic"
	"time"
)

// workers runs connection work (an accepted conn, a parked socket taken up
// again) on goroutines that outlive one piece of it. A new goroutine starts
// on a small stack and, serving an HTTP exchange, grows it by copying
// (morestack/copystack: a fifth of the user CPU of a short-connection
// request, profiled with perf); a goroutine that exits gives its grown stack
// back. A worker keeps its stack between jobs, so the next connection runs
// on a stack already grown.
//
// A job goes to a worker waiting for one, else to a new goroutine, which
// then waits for more: no queue, never a wait. At most workersMaxIdle wait
// at once, each for at most workersIdle, so a burst of connections leaves
// no crowd of idle stacks behind (idle conns are parked without a
// goroutine; see parker). One workers serves a Server, across reloads.
type workers struct {
	jobs    chan workerJob // unbuffered: a send succeeds only into a waiting worker
	quit    chan struct{}  // closed by stop: waiting workers end
	idle    atomic.Int32   // workers waiting now
	stopped atomic.Bool
}

const (
	workersMaxIdle = 32
	workersIdle    = 5 * time.Second
)

// workerJob is one piece of work: handle conn c of vs, run a relay
// direction, or take up a parked socket's owner (ready as the parker
// reported it).
type workerJob struct {
	vs    *VirtualServer
	c     *net.TCPConn
	dir   *direction
	owner parkOwner
	ready bool
}

func (j *workerJob) run() {
	switch {
	case j.c != nil:
		j.vs.handle(j.c)
	case j.dir != nil:
		j.dir.r.runDirection(j.dir)
	default:
		j.owner.unparked(j.ready)
	}
}

func newWorkers() *workers {
	return &workers{jobs: make(chan workerJob), quit: make(chan struct{})}
}

// run hands j to a waiting worker or starts one for it.
func (w *workers) run(j workerJob) {
	select {
	case w.jobs <- j:
	default:
		go w.work(j)
	}
}

// work runs j, then the jobs handed to it, until it idled workersIdle, more
// than workersMaxIdle workers wait, or stop.
func (w *workers) work(j workerJob) {
	var t *time.Timer
	defer func() {
		if t != nil {
			t.Stop()
		}
	}()
	for {
		j.run()
		j = workerJob{} // hold no conn while waiting
		if w.idle.Add(1) > workersMaxIdle || w.stopped.Load() {
			w.idle.Add(-1)
			return
		}
		if t == nil {
			t = time.NewTimer(workersIdle)
		} else {
			t.Reset(workersIdle)
		}
		select {
		case j = <-w.jobs:
			w.idle.Add(-1)
		case <-t.C:
			w.idle.Add(-1)
			return
		case <-w.quit:
			w.idle.Add(-1)
			return
		}
	}
}

// stop ends the waiting workers, and each busy one when its job is done;
// jobs run after it get a goroutine of their own, which ends with the job.
func (w *workers) stop() {
	if w.stopped.CompareAndSwap(false, true) {
		close(w.quit)
	}
}
