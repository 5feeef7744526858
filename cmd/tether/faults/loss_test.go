package faults

import (
	"fmt"
	"strconv"
	"strings"
	"sync"
	"testing"
	"time"
)

// lcLossConfig is the config of the random-loss test: http virtual server
// "web" and tcp virtual server "echo", both on member 1 only, so every
// byte crosses the lossy link.
func lcLossConfig() string {
	return webAndEcho(1, "", "", "", "")
}

// lcLoss drops a random share prob of the packets on member i's link,
// both ways, until the returned func is called. Each way is dropped where
// it arrives (INPUT in lb for the member's packets, INPUT in the member's
// namespace for tether's), as a lossy wire loses them: a DROP in the
// sender's own OUTPUT chain is not a loss TCP has to find out about (the
// send fails locally, TCP backs off and sends the segment again at once,
// without a retransmission).
func (l *lab) lcLoss(i int, prob string) (restore func()) {
	l.t.Helper()
	match := []string{"-m", "statistic", "--mode", "random", "--probability", prob, "-j", "DROP"}
	in := l.iptables(l.LB, append([]string{"INPUT", "-i", fmt.Sprintf("lb-m%d", i)}, match...)...)
	out := l.iptables(l.Members[i-1], append([]string{"INPUT", "-i", fmt.Sprintf("m%d", i)}, match...)...)
	return func() { in(); out() }
}

// Fault 4: a random 5% of the packets on the member link (lb-m1 <-> m1)
// are lost, both ways (iptables statistic match, where each way arrives:
// see lcLoss), one TCP segment per packet (gso_max_segs 1 on both ends).
//
// Load: lcLossRelays relays at once of 100 MiB each way through the tcp
// virtual server to member 1's echo, while a keepalive http load of
// bounded count (4 clients x 50 requests) runs on the same link.
//
// Bound: each relay within lcLossRelayBound (60 s; they take about 20 s
// here); each request answered within the client's 10 s timeout (no hung
// client, no transport error).
//
// Nothing lost: every relay gives back exactly the 100 MiB it sent, byte
// for byte, then EOF; every request is answered 200 by member 1, which saw
// exactly as many requests; the loss was real (packets dropped, tether's
// member side retransmitted); tether's fds and goroutines come back to
// baseline.
func TestFaultRandomLoss(t *testing.T) {
	l := newLab(t, 1)
	m1 := l.startMember(1, memberConfig{HTTP: true, Echo: true})
	p := l.startTether(lcLossConfig(), tetherOpts{})
	base := p.usage()

	// One segment per packet on the member link: without this TCP hands
	// the veth 64 KiB GSO packets, and 5% of packets would be a far
	// smaller share of the segments than 5%.
	l.ip("-n", l.LB, "link", "set", "dev", "lb-m1", "gso_max_segs", "1")
	l.ip("-n", l.Members[0], "link", "set", "dev", "m1", "gso_max_segs", "1")
	restore := l.lcLoss(1, "0.05")
	ld := startLoad(t, loadSpec{NS: l.CL, Addr: lbClientSide + ":8080", Clients: 4, Requests: 50, Duration: 60 * time.Second, Timeout: 10 * time.Second})
	start := time.Now()
	var wg sync.WaitGroup
	errs := make([]error, lcLossRelays)
	took := make([]time.Duration, lcLossRelays)
	for i := range errs {
		wg.Add(1)
		go func() {
			defer wg.Done()
			s := time.Now()
			errs[i] = echoExact(l.CL, lbClientSide+":7007", lcLossBytes, lcLossRelayBound)
			took[i] = time.Since(s)
		}()
	}
	wg.Wait()
	all := time.Since(start)
	r := ld.wait()
	dropped := l.lcDropped(l.LB) + l.lcDropped(l.Members[0])
	restore()
	if dropped == 0 {
		t.Fatal("the loss rules dropped no packet: no fault was injected")
	}
	t.Logf("packets dropped on member 1's link: %d", dropped)
	for i, err := range errs {
		if err != nil {
			t.Errorf("relay %d of 100 MiB each way at 5%% loss: %v (after %s)", i, err, took[i])
		}
	}
	t.Logf("%d relay(s) of 100 MiB each way at 5%% loss: %v, all done in %s", lcLossRelays, took, all)
	retrans := 0.0
	for _, m := range p.logLines("connection") {
		if m["virtual_server"] == "echo" {
			v, _ := m["server_retransmits"].(float64)
			retrans += v
		}
	}
	if retrans == 0 {
		t.Fatal("tether's member side retransmitted nothing: the loss did not reach its segments")
	}
	t.Logf("tether's member-side retransmits over the relays: %.0f", retrans)
	if r.Hung != 0 || r.Transport != 0 || r.OK() != 200 || r.Sent != 200 {
		t.Fatalf("keepalive load at 5%% loss: %s", &r)
	}
	if got := m1.snapshot().Requests; got != 200 {
		t.Fatalf("member 1 saw %d requests, clients were answered 200", got)
	}
	u := p.settles(base, 2, 10*time.Second)
	t.Logf("keepalive load: p99 %s; baseline %s, after %s", r.P99(), base, u)
}

// lcDropped sums the packets that the statistic DROP rules of ns's INPUT
// and OUTPUT chains dropped.
func (l *lab) lcDropped(ns string) int {
	l.t.Helper()
	total := 0
	for _, chain := range []string{"INPUT", "OUTPUT"} {
		out := l.run(ns, "iptables", "-w", "-L", chain, "-v", "-x", "-n")
		for _, line := range strings.Split(out, "\n") {
			f := strings.Fields(line)
			if len(f) > 2 && f[2] == "DROP" && strings.Contains(line, "statistic") {
				n, err := strconv.Atoi(f[0])
				if err != nil {
					l.t.Fatalf("iptables counters: %q: %v", line, err)
				}
				total += n
			}
		}
	}
	return total
}

const (
	lcLossBytes      = 100 << 20
	lcLossRelays     = 2
	lcLossRelayBound = 60 * time.Second
)
