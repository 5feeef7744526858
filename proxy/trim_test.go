package proxy

import (
	"sync/atomic"
	"testing"
	"time"

	"go.uber.org/zap"

	"github.com/tetherproxy/tether/sockopt/socktest"
)

func newTestTrimmer(frees *atomic.Int32) *memTrimmer {
	return &memTrimmer{batch: 100, quiet: 20 * time.Millisecond, maxWait: time.Second, minInterval: 50 * time.Millisecond,
		free: func() { frees.Add(1) }}
}

// A burst of parks (a batch of conns gone idle) returns memory once, after
// the burst settled; parks and wakes that balance never do.
func TestTrimReturnsMemoryOnceAfterAParkBurst(t *testing.T) {
	var frees atomic.Int32
	tr := newTestTrimmer(&frees)
	defer stopTrimmer(tr)
	// Churn: a conn parks, another wakes, many times: no net growth.
	for range 1000 {
		tr.noteParked(zap.NewNop())
		tr.noteWoken()
	}
	time.Sleep(100 * time.Millisecond) // nothing should happen: a fixed wait for an absence
	if n := frees.Load(); n != 0 {
		t.Fatalf("balanced parks and wakes trimmed %d times", n)
	}
	for range 150 {
		tr.noteParked(zap.NewNop())
	}
	socktest.WaitFor(t, 2*time.Second, "a trim", func() bool { return frees.Load() == 1 })
	if tr.trims.Load() != 1 || tr.base.Load() != 150 {
		t.Fatalf("trims %d base %d, want 1 and 150", tr.trims.Load(), tr.base.Load())
	}
	// A few more parks (under a batch) do not trim again.
	for range 50 {
		tr.noteParked(zap.NewNop())
	}
	time.Sleep(100 * time.Millisecond)
	if n := frees.Load(); n != 1 {
		t.Fatalf("%d trims after 50 more parks, want still 1", n)
	}
	// The conns end (parked drops to 0, the base follows), then a new
	// batch parks: one more trim.
	for range 200 {
		tr.noteWoken()
	}
	for range 120 {
		tr.noteParked(zap.NewNop())
	}
	socktest.WaitFor(t, 2*time.Second, "a second trim", func() bool { return frees.Load() == 2 })
}

// While parks keep coming (the burst goes on), the trim waits.
func TestTrimWaitsForTheBurstToSettle(t *testing.T) {
	var frees atomic.Int32
	tr := newTestTrimmer(&frees)
	defer stopTrimmer(tr)
	tr.quiet, tr.maxWait = 100*time.Millisecond, 10*time.Second
	stop := time.Now().Add(500 * time.Millisecond)
	for time.Now().Before(stop) {
		for range 20 {
			tr.noteParked(zap.NewNop())
		}
		time.Sleep(time.Millisecond)
		if frees.Load() != 0 {
			t.Fatal("trimmed while the burst went on")
		}
	}
	socktest.WaitFor(t, 2*time.Second, "a trim once the parks stopped", func() bool { return frees.Load() == 1 })
}

func stopTrimmer(tr *memTrimmer) {
	tr.mu.Lock()
	if tr.timer != nil {
		tr.timer.Stop()
	}
	tr.mu.Unlock()
}
