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
	// before: in the ring, L in force before this event came (died
	// restores it).
	before time.Duration
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

	// voidFrom, voidTo: closes dated in [voidFrom, voidTo) are no idle
	// timeout, the member was dying or down (died, revived); voidTo is
	// zero while it is down, voidFrom zero when it never died.
	voidFrom, voidTo time.Time
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
	if !l.voidFrom.IsZero() && !s.at.Before(l.voidFrom) && (l.voidTo.IsZero() || s.at.Before(l.voidTo)) {
		return false // the member died: its closes say nothing of a timeout
	}
	old := time.Duration(l.timeout.Load())
	s.before = old
	l.addLocked(s)
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
				s.before = e.before
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

// died records that health marked the member down at a time whose
// detection window began at from: a member that dies (a crash, a restart)
// closes all its idle conns at once at whatever idle time each had, and
// one such event per restart would, from the second restart on, make a
// timeout of it (of a few ms under load: no conn kept idle any more).
// The events dated from from on are dropped, L goes back to what it was
// before the first of them, and the closes dated from from until revived
// are ignored.
func (l *idleLearner) died(from time.Time) {
	l.mu.Lock()
	defer l.mu.Unlock()
	l.voidFrom, l.voidTo = from, time.Time{}
	var kept [learnRing]idleSample
	k, dropped := 0, false
	restore := time.Duration(0)
	oldest := (l.next - l.n + learnRing) % learnRing
	for i := range l.n {
		e := l.ring[(oldest+i)%learnRing]
		if !e.at.Before(from) {
			if !dropped {
				restore, dropped = e.before, true
			}
			continue
		}
		kept[k] = e
		k++
	}
	if !dropped {
		return
	}
	l.ring, l.n, l.next = kept, k, k%learnRing
	l.setLocked(restore, l.quietFrom)
}

// revived records that health marked the member up again at now: the
// closes dated from then on count again.
func (l *idleLearner) revived(now time.Time) {
	l.mu.Lock()
	defer l.mu.Unlock()
	if !l.voidFrom.IsZero() && l.voidTo.IsZero() {
		l.voidTo = now
	}
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
