package proxy

import (
	"testing"
	"time"
)

// A rate-limited message is written the first time, held back (and
// counted) within the interval, and written again after it with the count
// of those held back.
func TestLogLimitWritesFirstHoldsBackWithinIntervalWritesAfter(t *testing.T) {
	l := logLimit{interval: time.Second}
	t0 := time.Unix(1_000_000, 0)
	if ok, n := l.allow(t0); !ok || n != 0 {
		t.Fatalf("first message: allow = %v, %d; want true, 0", ok, n)
	}
	for _, at := range []time.Duration{0, time.Millisecond, 999 * time.Millisecond} {
		if ok, _ := l.allow(t0.Add(at)); ok {
			t.Fatalf("message %v after the first: let through within the 1s interval", at)
		}
	}
	ok, n := l.allow(t0.Add(time.Second))
	if !ok || n != 3 {
		t.Fatalf("message 1s after the first: allow = %v, %d; want true, 3 held back", ok, n)
	}
	if ok, _ := l.allow(t0.Add(1500 * time.Millisecond)); ok {
		t.Fatal("message 0.5s after the second: let through within the interval")
	}
	if ok, n := l.allow(t0.Add(2 * time.Second)); !ok || n != 1 {
		t.Fatalf("message 1s after the second: allow = %v, %d; want true, 1 held back", ok, n)
	}
}

// Of many goroutines asking at once, exactly one is let through.
func TestLogLimitLetsOneThroughUnderContention(t *testing.T) {
	l := logLimit{interval: time.Minute}
	now := time.Now()
	const n = 32
	got := make(chan bool, n)
	for range n {
		go func() {
			ok, _ := l.allow(now)
			got <- ok
		}()
	}
	through := 0
	for range n {
		if <-got {
			through++
		}
	}
	if through != 1 || l.suppressed.Load() != n-1 {
		t.Fatalf("%d let through, %d held back; want 1 and %d", through, l.suppressed.Load(), n-1)
	}
}
