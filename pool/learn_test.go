package pool

import (
	"testing"
	"time"
)

// t0 is the learner tests' clock origin: they inject every time.
var t0 = time.Date(2026, 12, 1, 12, 0, 0, 0, time.UTC)

func ms(n int) time.Duration { return time.Duration(n) * time.Millisecond }

// closeAt makes l observe a close dated at at of a conn idle for idle,
// seen at once, and returns what observe reported.
func closeAt(l *idleLearner, at time.Time, idle time.Duration) bool {
	return l.observe(idleSample{idle: idle, at: at}, at)
}

// Closes dated when seen (resets) are upper bounds: one event of them keeps
// the shortest; a close dated by its FIN beats them.
func TestLearnerEventOfResetsKeepsTheShortest(t *testing.T) {
	var l idleLearner
	for i, idle := range []int{325, 310, 318} { // a wave of Gets finding resets
		l.observe(idleSample{idle: ms(idle), at: t0.Add(ms(i)), upper: true}, t0.Add(ms(i)))
	}
	at := t0.Add(time.Second)
	for i, idle := range []int{330, 312} {
		l.observe(idleSample{idle: ms(idle), at: at.Add(ms(i)), upper: true}, at.Add(ms(i)))
	}
	if L := l.Timeout(at); L != ms(312) {
		t.Fatalf("L %v; want 312ms (events of 310 and 312)", L)
	}
	at = at.Add(time.Second)
	l.observe(idleSample{idle: ms(305), at: at, upper: true}, at)
	l.observe(idleSample{idle: ms(301), at: at.Add(ms(1))}, at.Add(ms(1))) // dated: replaces
	l.observe(idleSample{idle: ms(290), at: at.Add(ms(2)), upper: true}, at.Add(ms(2)))
	if e := l.ring[2]; e.idle != ms(301) || e.upper {
		t.Fatalf("third event %+v; want the dated 301 ms", e)
	}
	if L := l.Timeout(at); L != ms(310) {
		t.Fatalf("L %v; want 310ms (events of 310, 312, 301)", L)
	}
}

func TestLearnerIgnoresOneEarlyCloseAndARestart(t *testing.T) {
	var l idleLearner
	if closeAt(&l, t0, ms(300)) || l.Timeout(t0) != 0 {
		t.Fatalf("one close learnt %v; want nothing", l.Timeout(t0))
	}
	// A restart: every idle conn closed at one instant, whatever its idle
	// time. One event, the same as the single close above.
	var r idleLearner
	for i, idle := range []int{40, 900, 5, 310, 1200} {
		closeAt(&r, t0.Add(ms(i)), ms(idle))
	}
	if got := r.Timeout(t0.Add(time.Second)); got != 0 {
		t.Fatalf("a restart's closes learnt %v; want nothing", got)
	}
	if r.samples.Load() != 5 {
		t.Errorf("samples %d, want 5 (counted before merging)", r.samples.Load())
	}
	// A second event makes two: the restart's counts with its longest
	// idle time (the merge keeps the upper bound).
	if !closeAt(&r, t0.Add(2*time.Second), ms(2000)) || r.Timeout(t0.Add(2*time.Second)) != ms(2000) {
		t.Errorf("after a second event: %v; want 2s (second smallest of 1.2s and 2s)", r.Timeout(t0.Add(2*time.Second)))
	}
}

func TestLearnerTakesTheSecondSmallestEvent(t *testing.T) {
	var l idleLearner
	at := t0
	for i, tc := range []struct {
		idle, want int
		tighter    bool
	}{
		{400, 0, false},   // one event: nothing yet
		{300, 400, true},  // two: the second smallest is 400
		{310, 310, true},  // 300, 310, 400
		{500, 310, false}, // a longer one changes nothing
		{5, 300, true},    // one early close moves it to the old smallest only
	} {
		at = at.Add(time.Second)
		got := closeAt(&l, at, ms(tc.idle))
		if L := l.Timeout(at); L != ms(tc.want) || got != tc.tighter {
			t.Errorf("close %d (%d ms): L %v reported %v; want %d ms, %v", i, tc.idle, L, got, tc.want, tc.tighter)
		}
	}
}

func TestLearnerCountsOnlyRecentEvents(t *testing.T) {
	var l idleLearner
	closeAt(&l, t0, ms(200)) // alone, then out of the window
	later := t0.Add(learnWindow + time.Second)
	closeAt(&l, later, ms(400))
	if L := l.Timeout(later); L != 0 {
		t.Fatalf("L %v with one recent event; want nothing (the other is %v old)", L, learnWindow+time.Second)
	}
	closeAt(&l, later.Add(time.Second), ms(450))
	if L := l.Timeout(later.Add(time.Second)); L != ms(450) {
		t.Fatalf("L %v; want 450ms (the 200 ms event is out of the window)", L)
	}
	// The ring keeps the last learnRing events.
	var r idleLearner
	for i := range learnRing + 2 {
		closeAt(&r, t0.Add(time.Duration(i)*time.Second), ms(100+10*i)) // 100, 110, ... 190
	}
	if L := r.Timeout(t0.Add(10 * time.Second)); L != ms(130) {
		t.Fatalf("L %v; want 130ms (100 and 110 fell off the ring)", L)
	}
}

func TestLearnerRelaxesWhenQuietAndBacksOffWhenContradicted(t *testing.T) {
	l := idleLearner{ceiling: time.Minute}
	at := t0
	closeAt(&l, at, ms(300))
	at = at.Add(time.Second)
	closeAt(&l, at, ms(300))
	quiet := relaxQuietMin
	for round := 1; round <= 9; round++ {
		if L := l.Timeout(at.Add(quiet - time.Millisecond)); L != ms(300) {
			t.Fatalf("round %d: L %v just before the quiet period (%v) ends; want 300ms", round, L, quiet)
		}
		at = at.Add(quiet)
		if L := l.Timeout(at); L != ms(450) {
			t.Fatalf("round %d: L %v after a quiet period of %v; want 450ms (one step)", round, L, quiet)
		}
		// The member still closes at 300 ms: the step was wrong.
		at = at.Add(time.Second)
		if !closeAt(&l, at, ms(301)) || l.Timeout(at) != ms(300) {
			t.Fatalf("round %d: L %v after the contradicting close; want 300ms (the step undone)", round, l.Timeout(at))
		}
		quiet = min(2*quiet, relaxQuietMax)
	}
	if quiet != relaxQuietMax || l.quiet != relaxQuietMax {
		t.Fatalf("quiet period %v (test %v); want it capped at %v", l.quiet, quiet, relaxQuietMax)
	}
	// Steps not contradicted go on, several at once after a long quiet,
	// and the value is dropped above the ceiling (idle_timeout, 1 min).
	at = at.Add(3 * relaxQuietMax)
	if L := l.Timeout(at); L != ms(1012)+ms(1)/2 {
		t.Fatalf("L %v after three quiet hours; want 1.0125s (300 ms × 1.5³)", L)
	}
	for i := 0; i < 20 && l.Timeout(at) != 0; i++ {
		at = at.Add(relaxQuietMax)
	}
	if L := l.Timeout(at); L != 0 || l.relaxAt.Load() != 0 {
		t.Fatalf("L %v, next step at %d; want it dropped above the 1 min ceiling", L, l.relaxAt.Load())
	}
	// A member that then closes again is learnt again.
	closeAt(&l, at.Add(time.Second), ms(280))
	closeAt(&l, at.Add(2*time.Second), ms(290))
	if L := l.Timeout(at.Add(2 * time.Second)); L != ms(290) {
		t.Fatalf("L %v; want 290ms learnt again", L)
	}
}

// A member that really keeps conns longer now: steps go on past the old
// value's events (forgotten at each step), and the new closes are learnt.
func TestLearnerFollowsAMemberThatRaisedItsTimeout(t *testing.T) {
	var l idleLearner
	closeAt(&l, t0, ms(300))
	closeAt(&l, t0.Add(time.Second), ms(300))
	at := t0.Add(time.Second)
	for l.Timeout(at) < 5*time.Second {
		at = at.Add(relaxQuietMin)
	}
	// 300 ms × 1.5⁷ ≈ 5.1 s: the member (now 2 s) closes before it.
	closeAt(&l, at.Add(time.Second), 2*time.Second)
	closeAt(&l, at.Add(2*time.Second), 2*time.Second)
	if L := l.Timeout(at.Add(2 * time.Second)); L != 2*time.Second {
		t.Fatalf("L %v; want 2s (the 300 ms events before the steps are forgotten)", L)
	}
}

func TestLearntLimitMargin(t *testing.T) {
	for _, tc := range []struct{ L, margin, want time.Duration }{
		{ms(300), time.Second, ms(270)},            // a tenth
		{30 * time.Second, time.Second, ms(29000)}, // at most keepalive_margin
		{ms(20), time.Second, ms(15)},              // at least 5 ms
		{ms(300), 0, ms(295)},                      // margin 0: still 5 ms
		{ms(4), time.Second, 0},                    // not kept idle
		{0, time.Second, -1},                       // nothing learnt
	} {
		if got := learntLimit(tc.L, tc.margin); got != tc.want {
			t.Errorf("learntLimit(%v, %v) = %v, want %v", tc.L, tc.margin, got, tc.want)
		}
	}
}
