package pool

import (
	"errors"
	"testing"
	"time"

	"github.com/tetherproxy/tether/config"
)

// srRestart feeds l one restart at at: the member closes its idle conns at
// once, at whatever idle time each had (ms each, all dated at at).
func srRestart(l *idleLearner, at time.Time, idles ...int) {
	for i, idle := range idles {
		closeAt(l, at.Add(ms(i)), ms(idle))
	}
}

// A member restarted again and again under load closes its idle conns, each
// time, a few ms into their idle time: one event per restart, and from the
// second on the learner took them for a timeout of a few ms, after which no
// conn was kept idle (the fault suite's member restart test: every request
// to the member dialed, none reused, a GET in flight on such a fresh conn
// lost). Health marks such a member down: the closes it made while dying
// and while down teach nothing, and what was learnt before stays.
func TestLearnerIgnoresTheClosesOfAMemberThatDied(t *testing.T) {
	const window = 1400 * time.Millisecond // fall 2 × interval 500 ms + timeout 400 ms
	var l, blind idleLearner
	for _, x := range []*idleLearner{&l, &blind} {
		closeAt(x, t0, ms(300))
		closeAt(x, t0.Add(time.Second), ms(310))
	}
	if L := l.Timeout(t0.Add(time.Second)); L != ms(310) {
		t.Fatalf("L %v; want 310ms", L)
	}
	at := t0.Add(10 * time.Second)
	for restart := 1; restart <= 3; restart++ {
		srRestart(&l, at, 4, 40, 2)
		srRestart(&blind, at, 4, 40, 2)
		l.died(at.Add(200*time.Millisecond - window)) // marked down 200 ms after it died
		closeAt(&l, at.Add(time.Second), ms(3))       // seen while it is down
		l.revived(at.Add(2 * time.Second))
		if L := l.Timeout(at.Add(2 * time.Second)); L != ms(310) {
			t.Fatalf("restart %d: L %v; want still 310ms", restart, L)
		}
		at = at.Add(5 * time.Second)
	}
	if L := blind.Timeout(at); L > ms(40) {
		t.Fatalf("without health, the restarts learnt %v; want the few ms this test guards against", L)
	}
	// Up again, its closes count again.
	if !closeAt(&l, at, ms(305)) || l.Timeout(at) != ms(305) {
		t.Fatalf("after revival: L %v; want 305ms (second smallest of 300, 305, 310)", l.Timeout(at))
	}
	// A member that never died is not affected; nothing learnt stays
	// nothing learnt.
	var fresh idleLearner
	srRestart(&fresh, t0, 5)
	fresh.died(t0.Add(-time.Second))
	fresh.revived(t0.Add(time.Second))
	srRestart(&fresh, t0.Add(3*time.Second), 7)
	if L := fresh.Timeout(t0.Add(3 * time.Second)); L != 0 {
		t.Fatalf("one restart voided, one close after: L %v; want nothing learnt", L)
	}
}

// Pool health calls died when it marks a member down and revived when it
// marks it up again.
func TestHealthVoidsTheLearnerWhileAMemberIsDown(t *testing.T) {
	cfg := testPool(config.MethodRoundRobin, "192.0.2.1:80")
	cfg.Health = config.Health{Type: config.HealthTCP, Interval: 500 * time.Millisecond, Timeout: 400 * time.Millisecond, Rise: 1, Fall: 2}
	p, err := New(cfg, nil)
	if err != nil {
		t.Fatal(err)
	}
	defer p.Close()
	m := p.Members()[0]
	now := time.Now()
	m.idleClosed(idleSample{idle: ms(300), at: now.Add(-10 * time.Second)}, now)
	m.idleClosed(idleSample{idle: ms(310), at: now.Add(-9 * time.Second)}, now)
	m.idleClosed(idleSample{idle: ms(4), at: now.Add(-time.Second)}, now) // it died
	if L := m.learn.Timeout(now); L != ms(300) {
		t.Fatalf("L %v; want 300ms before health knows", L)
	}
	refused := errors.New("connection refused")
	p.observe(m, refused, "health check")
	p.observe(m, refused, "health check")
	if m.healthy.Load() {
		t.Fatal("member still up after fall failures")
	}
	if L := m.learn.Timeout(time.Now()); L != ms(310) {
		t.Fatalf("member down: L %v; want 310ms (the close within fall × interval + timeout voided)", L)
	}
	p.observe(m, nil, "health check")
	later := time.Now().Add(time.Millisecond)
	m.idleClosed(idleSample{idle: ms(305), at: later}, later)
	if L := m.learn.Timeout(later); L != ms(305) {
		t.Fatalf("member up again: L %v; want 305ms", L)
	}
}
