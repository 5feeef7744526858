package proxy

import (
	"runtime"
	"runtime/debug"
	"sync"
	"sync/atomic"
	"time"

	"go.uber.org/zap"
	"go.uber.org/zap/zapcore"
)

// memTrimmer gives memory back to the OS after a burst of connections went
// idle and parked.
//
// Why: each park ends a goroutine, and a burst of new connections leaves
// garbage behind (connect-path objects, buffers of the requests). The Go
// runtime frees a dead goroutine's stack only at the next GC, and returns
// freed heap pages to the OS only slowly (the background scavenger paces
// itself to ~1% of a CPU); once every connection of a burst is parked
// nothing allocates, so no GC comes for minutes (forcegc: 2 minutes) and
// the process keeps the burst's peak as RSS: 5,000 idle proxied tcp conns
// read ~13 KiB each 10 s after they opened, ~5 KiB once this memory is
// returned.
//
// When: the sockets parked now (all parkers) rose by at least batch since
// the last trim (or since the lowest count seen after it), so at least
// batch goroutines ended for good, not a steady churn where a woken conn
// reuses what a parked one freed. The trim then waits for the burst to
// settle: it runs once fewer than batch/8 parks came in the last quiet
// period (or maxWait after it was armed), and never sooner than
// minInterval after the last one.
//
// What: two GCs (the first moves sync.Pool contents to the victim cache,
// the second frees them: the read and copy buffers the burst's busy
// connections left pooled) and a scavenge of everything free
// (debug.FreeOSMemory). Its CPU cost: ~10 ms with 1,000 idle relays held
// (BenchmarkIdleTCPConnMemory's trim-ms), paid once per burst.
type memTrimmer struct {
	batch       int64         // net parks since the last trim that arm it
	quiet       time.Duration // a burst is over when a period this long has fewer than batch/8 parks
	maxWait     time.Duration // trim at the latest this long after arming, even if parks go on
	minInterval time.Duration // between two trims
	free        func()        // returns the memory; nil: trimMemory

	parked atomic.Int64  // sockets parked now, all parkers
	parks  atomic.Uint64 // parks since start, all parkers
	base   atomic.Int64  // parked at the last trim, or the lowest since
	armed  atomic.Bool

	mu         sync.Mutex
	timer      *time.Timer
	armedAt    time.Time
	parksSeen  uint64    // parks when the timer was last set
	last       time.Time // the last trim
	logger     *zap.Logger
	trims      atomic.Uint64
	trimTimeNs atomic.Int64 // wall time spent in trims, all of them
}

// memTrim is the process's trimmer, shared by every parker: the memory it
// gives back is the whole process's.
var memTrim = memTrimmer{batch: 1024, quiet: time.Second, maxWait: 10 * time.Second, minInterval: 10 * time.Second}

// noteParked counts a park; the logger is the parker's (for the trim's
// debug line).
func (t *memTrimmer) noteParked(logger *zap.Logger) {
	t.parks.Add(1)
	n := t.parked.Add(1)
	if n-t.base.Load() < t.batch || !t.armed.CompareAndSwap(false, true) {
		return
	}
	t.mu.Lock()
	defer t.mu.Unlock()
	t.logger = logger
	t.armedAt = time.Now()
	t.parksSeen = t.parks.Load()
	if t.timer == nil {
		t.timer = time.AfterFunc(t.quiet, t.check)
	} else {
		t.timer.Reset(t.quiet)
	}
}

// noteWoken counts a parked socket taken up again (woken, expired,
// unparked or let go by a stopping parker).
func (t *memTrimmer) noteWoken() {
	n := t.parked.Add(-1)
	if n < t.base.Load() { // racy with another note: the base is a heuristic
		t.base.Store(n)
	}
}

// check runs on the timer: trim once the burst has settled.
func (t *memTrimmer) check() {
	t.mu.Lock()
	now := time.Now()
	parks := t.parks.Load()
	busy := parks-t.parksSeen >= uint64(max(t.batch/8, 1)) && now.Sub(t.armedAt) < t.maxWait
	wait := t.minInterval - now.Sub(t.last)
	if busy || (!t.last.IsZero() && wait > 0) {
		t.parksSeen = parks
		t.timer.Reset(max(t.quiet, wait))
		t.mu.Unlock()
		return
	}
	logger := t.logger
	t.mu.Unlock()

	start := time.Now()
	free := t.free
	if free == nil {
		free = trimMemory
	}
	free()
	took := time.Since(start)
	t.trims.Add(1)
	t.trimTimeNs.Add(int64(took))

	t.mu.Lock()
	t.last = time.Now()
	t.base.Store(t.parked.Load())
	t.armed.Store(false)
	t.mu.Unlock()
	if logger != nil {
		if ce := logger.Check(zapcore.DebugLevel, "memory of parked connections returned to the OS"); ce != nil {
			ce.Write(zap.Int64("parked", t.parked.Load()), zap.Duration("took", took))
		}
	}
}

// trimMemory frees what the burst left (two GCs, see memTrimmer) and
// returns every free page to the OS.
func trimMemory() {
	runtime.GC()
	debug.FreeOSMemory()
}
