package pool

import (
	"math"
	"sync"
	"sync/atomic"
	"time"
)

// How a member's unannounced idle timeout is learnt from its closes (see
// idleLearner). These are the algorithm's constants, not settings.
const (
	// learnRing: the close events kept per member.
	learnRing = 8
	// learnWindow: only events this recent count toward a new value.
	learnWindow = 10 * time.Minute
	// learnSameEvent: closes this close in time are one event. A member
	// that restarts (or drops every conn for any other reason) closes all
	// its idle conns at one instant, at whatever idle time each had: that
	// is one early close, not as many samples of a timeout.
	learnSameEvent = 20 * time.Millisecond
	// relaxQuietMin, relaxQuietMax: the quiet period (no close seen) after
	// which the learnt value is raised one step; it doubles each time a
	// step is contradicted by a new close, up to relaxQuietMax.
	relaxQuietMin = time.Minute
	relaxQuietMax = time.Hour
	// relaxCeiling bounds the learnt value when the pool's idle_timeout is
	// 0 (no limit): relaxed beyond it, the learnt value is dropped.
	relaxCeiling = time.Hour
)

// idleSample is one close event: when a member closed idle conns, and how
// long they had idled by then. upper: dated when seen, not when it
// happened (a reset, which TCP_INFO does not date; a conn failing as the
// request arrived), so idle is an upper bound.
type idleSample struct {
	idle  time.Duration
	at    time.Time
	upper bool
}

// idleLearner learns a member's idle timeout from the idle conns it closes
// on its own (the member's property: every ConnPool of the member feeds and
// reads the same one).
//
// The learnt timeout L is the second smallest close event within
// learnWindow, once there are two: one early close (a restart, a crash) is
// not a timeout, and a sample is an upper bound of the member's timeout
// (the close was seen late, or its time read back late), so the smallest
// values are the best ones.
//
// Once tether closes conns before L the member closes none, so nothing
// says when it keeps conns longer. After a quiet period without a close,
// L is raised one step (×1.5), or dropped once above the ceiling (the
// pool's idle_timeout); the samples before the step are forgotten. A close
// after a step contradicts it: the step is undone and the quiet period
// doubles (up to relaxQuietMax), so a wrong step is tried less and less
// often and the value cannot flap.
//
// Every method takes the time from its caller (tests inject it). Timeout
// is lock-free unless a relaxation step is due.
type idleLearner struct {
	// ceiling: relaxed above it, L is dropped; 0 = relaxCeiling.
	ceiling time.Duration

	timeout   atomic.Int64  // L in ns; 0 = none learnt
	relaxAt   atomic.Int64  // Unix ns when the next step is due; 0 = none
	samples   atomic.Uint64 // closes observed (before merging into events)
	announced atomic.Int64  // the last Keep-Alive timeout announced, ns; 0 = none

	mu        sync.Mutex
	ring      [learnRing]idleSample
	n, next   int           // events held, where the next one goes
	prev      time.Duration // L before the last relaxation step
	relaxed   bool          // a step was taken since the last close
	quietFrom time.Time     // the last close or step
	quiet     time.Duration // the current quiet period; 0 = relaxQuietMin
}

// Timeout returns L at now (0: none learnt), taking the relaxation steps
// due first.
func (l *idleLearner) Timeout(now time.Time) time.Duration {
	if at := l.relaxAt.Load(); at != 0 && now.UnixNano() >= at {
		l.relax(now)
	}
	return time.Duration(l.timeout.Load())
}

// observe records that the member closed an idle conn (s), as seen at
// now. It reports whether L became shorter
// (or was learnt): idle conns may then be past it.
func (l *idleLearner) observe(s idleSample, now time.Time) bool {
	l.samples.Add(1)
	l.mu.Lock()
	defer l.mu.Unlock()
	l.addLocked(s)
	old := time.Duration(l.timeout.Load())
	L := old
	if l.relaxed { // the last step was wrong: undo it, step less often
		L = l.prev
		l.quiet = min(2*l.quietLocked(), relaxQuietMax)
	}
	if c, ok := l.secondSmallestLocked(now); ok && (!l.relaxed || c < L) {
		L = c
	}
	l.relaxed = false
	l.setLocked(L, now)
	return L > 0 && (old == 0 || L < old)
}

// addLocked adds s to the ring, merged into the event at the same instant
// if there is one. Closes dated when they happened keep the longest idle
// time (a restart's closes are one event, at its oldest conn's idle
// time); closes dated when seen, upper bounds, keep the shortest; a dated
// close beats those. l.mu is held.
func (l *idleLearner) addLocked(s idleSample) {
	for i := range l.n {
		e := &l.ring[i]
		if d := e.at.Sub(s.at); d <= learnSameEvent && d >= -learnSameEvent {
			switch {
			case e.upper && s.upper:
				e.idle = min(e.idle, s.idle)
			case e.upper: // s is dated
				*e = s
			case !s.upper:
				e.idle = max(e.idle, s.idle)
			}
			return
		}
	}
	l.ring[l.next] = s
	l.next = (l.next + 1) % learnRing
	l.n = min(l.n+1, learnRing)
}

// secondSmallestLocked returns the second smallest idle time among the
// events within learnWindow of now; ok is false with fewer than two.
// l.mu is held.
func (l *idleLearner) secondSmallestLocked(now time.Time) (d time.Duration, ok bool) {
	first, second := time.Duration(math.MaxInt64), time.Duration(math.MaxInt64)
	k := 0
	for _, e := range l.ring[:l.n] {
		if now.Sub(e.at) > learnWindow {
			continue
		}
		k++
		if e.idle < first {
			first, second = e.idle, first
		} else if e.idle < second {
			second = e.idle
		}
	}
	return second, k >= 2
}

// relax takes the steps due at now: each raises L by half (or drops it
// above the ceiling) and forgets the events before it. l.mu is not held.
func (l *idleLearner) relax(now time.Time) {
	l.mu.Lock()
	defer l.mu.Unlock()
	L := time.Duration(l.timeout.Load())
	for L > 0 && !now.Before(l.quietFrom.Add(l.quietLocked())) {
		l.prev = L
		L += L / 2
		if L > l.ceilingOr() {
			L = 0
		}
		l.relaxed = true
		l.n, l.next = 0, 0
		l.quietFrom = l.quietFrom.Add(l.quietLocked())
	}
	l.setLocked(L, l.quietFrom)
}

// setLocked puts L in force and schedules the next step a quiet period
// after from. l.mu is held.
func (l *idleLearner) setLocked(L time.Duration, from time.Time) {
	l.timeout.Store(int64(L))
	l.quietFrom = from
	if L == 0 {
		l.relaxAt.Store(0)
		return
	}
	l.relaxAt.Store(from.Add(l.quietLocked()).UnixNano())
}

func (l *idleLearner) quietLocked() time.Duration {
	if l.quiet == 0 {
		return relaxQuietMin
	}
	return l.quiet
}

func (l *idleLearner) ceilingOr() time.Duration {
	if l.ceiling > 0 {
		return l.ceiling
	}
	return relaxCeiling
}

// learntLimit is how long an idle conn may stay idle given a learnt
// timeout L: L less a tenth of it, at least 5 ms (a close time is read to
// the ms, a jiffy more) and at most margin (keepalive_margin). Never
// below 0 (0: not kept idle); -1 when nothing is learnt.
func learntLimit(L, margin time.Duration) time.Duration {
	if L <= 0 {
		return -1
	}
	m := min(max(L/10, learnMarginMin), max(margin, learnMarginMin))
	return max0(L - m)
}

// learnMarginMin is the least margin taken off a learnt timeout.
const learnMarginMin = 5 * time.Millisecond
