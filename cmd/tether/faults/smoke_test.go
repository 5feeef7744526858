package faults

import (
	"testing"
	"time"
)

// With no fault, the lab carries http and tcp traffic through tether to
// both members, and tether comes back to its baseline afterwards: the
// suite's harness works, so a fault test's failure is the fault's.
func TestFaultNoneBaseline(t *testing.T) {
	l := newLab(t, 2)
	m1 := l.startMember(1, memberConfig{HTTP: true, Echo: true})
	m2 := l.startMember(2, memberConfig{HTTP: true, Echo: true})
	cfg := webAndEcho(2, "", "", "", "")
	p := l.startTether(cfg, tetherOpts{})
	base := p.usage()

	ld := startLoad(t, loadSpec{NS: l.CL, Addr: lbClientSide + ":8080", Clients: 4, Requests: 50, PostEvery: 3, Duration: 20 * time.Second})
	short := startLoad(t, loadSpec{NS: l.CL, Addr: lbClientSide + ":8080", Clients: 2, Requests: 20, Close: true, Duration: 20 * time.Second})
	for i := 0; i < 4; i++ {
		if err := echoExact(l.CL, lbClientSide+":7007", 1<<20, 10*time.Second); err != nil {
			t.Fatalf("tcp relay %d: %v", i, err)
		}
	}
	r, rs := ld.wait(), short.wait()
	if r.OK() != 200 || rs.OK() != 40 {
		t.Fatalf("keepalive load: %s\nshort load: %s", &r, &rs)
	}
	if r.ByMember["m1"] == 0 || r.ByMember["m2"] == 0 {
		t.Fatalf("requests not spread over both members: %v", r.ByMember)
	}
	s1, s2 := m1.snapshot(), m2.snapshot()
	if got := s1.Requests + s2.Requests; got != 240 {
		t.Fatalf("members saw %d requests, clients were answered 240", got)
	}
	u := p.settles(base, 2, 10*time.Second)
	t.Logf("keepalive p99 %s; baseline %s, after %s", r.P99(), base, u)
}
