package proxy

import (
	"runtime"
	"sync"
	"testing"
	"time"

	"github.com/tetherproxy/tether/sockopt/socktest"
)

// stackDepth grows the calling goroutine's stack by about n KiB.
//
//go:noinline
func stackDepth(n int) byte {
	var b [1024]byte
	b[n%1024] = byte(n)
	if n > 1 {
		return stackDepth(n-1) + b[0]
	}
	return b[0]
}

// Jobs run one after another go to the same worker, whose stack has grown
// once; a worker waiting when the next job comes takes it instead of a new
// goroutine.
func TestWorkersReuseAWaitingWorker(t *testing.T) {
	w := newWorkers()
	defer w.stop()
	var mu sync.Mutex
	gids := map[uint64]bool{}
	done := make(chan struct{}, 1)
	job := ownerFunc(func(bool) {
		_ = stackDepth(16)
		mu.Lock()
		gids[curGoroutineID()] = true
		mu.Unlock()
		done <- struct{}{}
	})
	for range 50 {
		// The worker that ran the last job is waiting by the time the
		// next one comes.
		socktest.WaitFor(t, 2*time.Second, "a waiting worker", func() bool { return w.idle.Load() > 0 || len(gids) == 0 })
		w.run(workerJob{owner: job})
		<-done
	}
	// A worker counts itself idle just before it reaches its receive: a
	// job that comes in that instant (a loaded machine can stretch it)
	// starts a goroutine instead, which is correct. Without reuse the 50
	// jobs would run on 50.
	if len(gids) > 3 {
		t.Fatalf("50 jobs in turn ran on %d goroutines, want 1 reused worker (a few at most on a loaded machine)", len(gids))
	}
}

// No more than workersMaxIdle workers wait after a burst, and stop ends
// every waiting one.
func TestWorkersBoundTheIdleAndStopEndsThem(t *testing.T) {
	base := runtime.NumGoroutine()
	w := newWorkers()
	release := make(chan struct{})
	var started sync.WaitGroup
	n := workersMaxIdle + 40
	started.Add(n)
	for range n {
		w.run(workerJob{owner: ownerFunc(func(bool) { started.Done(); <-release })})
	}
	started.Wait()
	close(release)
	socktest.WaitFor(t, 5*time.Second, "the burst's workers beyond the idle bound to end", func() bool {
		return runtime.NumGoroutine() <= base+workersMaxIdle && w.idle.Load() == workersMaxIdle
	})
	w.stop()
	socktest.WaitFor(t, 5*time.Second, "stop to end the waiting workers", func() bool {
		return runtime.NumGoroutine() <= base && w.idle.Load() == 0
	})
	// After stop a job still runs, on a goroutine that then ends.
	ran := make(chan bool)
	w.run(workerJob{owner: ownerFunc(func(bool) { ran <- true })})
	<-ran
	socktest.WaitFor(t, 5*time.Second, "the job's goroutine to end", func() bool { return runtime.NumGoroutine() <= base })
}

// curGoroutineID parses this goroutine's id from its stack header.
func curGoroutineID() uint64 {
	var buf [64]byte
	b := buf[:runtime.Stack(buf[:], false)]
	// "goroutine 123 [running]:..."
	var id uint64
	for _, c := range b[len("goroutine "):] {
		if c < '0' || c > '9' {
			break
		}
		id = id*10 + uint64(c-'0')
	}
	return id
}
