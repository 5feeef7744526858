package pool

import (
	"testing"
	"time"

	"github.com/tetherproxy/tether/config"
	"github.com/tetherproxy/tether/sockopt/socktest"
)

// A member that closes idle conns after 300 ms and says nothing about it:
// the first closes are its (seen by the reaper's peek), two close events
// teach tether its timeout, and from then on tether closes each idle conn
// first (the member sees tether's reset, never its own timer) and no
// more stale conns are found.
func TestReaperClosesBeforeAMembersLearntIdleTimeout(t *testing.T) {
	const memberIdle = 300 * time.Millisecond
	b := newLineBackend(t, memberIdle)
	p, r := reusePool(t, config.Reuse{MaxIdle: 4, IdleTimeout: time.Minute, KeepaliveMargin: time.Second, PeekInterval: 20 * time.Millisecond},
		0, config.CloseDrainReset, b.addr)
	m := p.Members()[0]
	learntAt, staleThen := 0, uint64(0)
	for cycle := 1; cycle <= 6; cycle++ {
		c1, c2 := get(t, r), get(t, r)
		mustExchange(t, c1, "one")
		mustExchange(t, c2, "two")
		put := time.Now()
		r.Put(c1, true)
		r.Put(c2, true)
		var ends []connEnd
		socktest.WaitFor(t, 5*time.Second, "both conns of the cycle to end", func() bool {
			ends = ends[:0]
			for _, c := range []*ServerConn{c1, c2} {
				if e, ok := b.endOf(c.TCP.LocalAddr().String()); ok {
					ends = append(ends, e)
				}
			}
			return len(ends) == 2
		})
		// The member's 300 ms timer and the reaper's peek (20 ms) both have
		// to run for a close by the member to be counted.
		socktest.WaitFor(t, 5*time.Second, "the idle stack to empty", func() bool { return r.Idle(m) == 0 && m.Active() == 0 })
		s, L := stats(r, 0), m.Stats().IdleTimeoutLearnt
		t.Logf("cycle %d: ends %s/%s at %v/%v after Put; learnt %v; stale on peek %d", cycle, ends[0].how, ends[1].how,
			ends[0].at.Sub(put).Round(time.Millisecond), ends[1].at.Sub(put).Round(time.Millisecond), L, s.StaleOnPeek)
		if learntAt == 0 {
			if L > 0 {
				learntAt, staleThen = cycle, s.StaleOnPeek
			}
			continue
		}
		for _, e := range ends {
			if e.how != "reset" || e.at.Sub(put) >= memberIdle {
				t.Errorf("cycle %d: the member saw %q %v after Put; want tether's reset before its 300 ms", cycle, e.how, e.at.Sub(put))
			}
		}
		if s.StaleOnPeek != staleThen {
			t.Errorf("cycle %d: stale on peek %d, was %d when learnt; want no more", cycle, s.StaleOnPeek, staleThen)
		}
	}
	if learntAt != 2 {
		t.Fatalf("learnt after cycle %d; want 2 (each cycle's two closes are one event; two events needed)", learntAt)
	}
	// The member's timer starts at its write, a moment before tether's
	// Put; TCP_INFO dates the FIN to the ms.
	if L := m.Stats().IdleTimeoutLearnt; L < memberIdle-10*time.Millisecond || L > memberIdle+30*time.Millisecond {
		t.Errorf("learnt %v; want the member's 300 ms (from TCP_INFO, not the 20 ms peek)", L)
	}
	if lim, src := r.idleLimit(&ServerConn{Member: m, idleLimit: time.Minute}, time.Now()); src != IdleLearnt || lim < 265*time.Millisecond || lim > 290*time.Millisecond {
		t.Errorf("idle limit %v (%v); want ~270ms learnt (a tenth off)", lim, src)
	}
}

// Get's stale check dates a FIN from TCP_INFO: a conn the member closed at
// ~100 ms idle and found by Get 300 ms later teaches 100 ms, not 400.
func TestGetLearnsWhenTheMemberClosedAnIdleConnNotWhenItLooked(t *testing.T) {
	b := newLineBackend(t, 0)
	p, r := reusePool(t, config.Reuse{MaxIdle: 4, IdleTimeout: time.Minute, KeepaliveMargin: time.Second, PeekInterval: time.Hour},
		0, config.CloseGraceful, b.addr)
	m := p.Members()[0]
	for round := 1; round <= 2; round++ {
		c := get(t, r)
		mustExchange(t, c, "hello")
		r.Put(c, true)
		r.mu.Lock()
		since := c.idleSince
		r.mu.Unlock()
		socktest.WaitFor(t, 5*time.Second, "100 ms of idle", func() bool { return time.Since(since) >= 100*time.Millisecond })
		closed := time.Since(since)
		b.CloseConns()
		socktest.WaitFor(t, 5*time.Second, "300 ms more", func() bool { return time.Since(since) >= closed+300*time.Millisecond })
		c2 := get(t, r) // finds the stale conn, drops it, dials
		if c2.Reused {
			t.Fatalf("round %d: Get reused the conn the member closed", round)
		}
		r.Discard(c2, DiscardFailed) // the next round starts with nothing idle
		if round == 2 {
			L := m.Stats().IdleTimeoutLearnt
			if L < closed-5*time.Millisecond || L > closed+50*time.Millisecond {
				t.Errorf("learnt %v; the member closed at %v idle and Get looked at ~%v", L, closed, closed+300*time.Millisecond)
			}
		}
	}
}
