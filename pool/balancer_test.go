package pool

import (
	"fmt"
	"net/netip"
	"testing"

	"github.com/tetherproxy/tether/config"
)

// testMembers builds members with the given weights (no pool, no sockets).
func testMembers(weights ...int) []*Member {
	ms := make([]*Member, len(weights))
	for i, w := range weights {
		ms[i] = newMember(nil, i, config.Member{Address: fmt.Sprintf("10.0.0.%d:80", i+1), Weight: w})
	}
	return ms
}

func mustBalancer(t *testing.T, method string, n int) balancer {
	t.Helper()
	b, err := newBalancer(method, n)
	if err != nil {
		t.Fatal(err)
	}
	return b
}

func countPicks(b balancer, ms []*Member, n int) []int {
	counts := make([]int, len(ms))
	for range n {
		counts[b.pick(ms, netip.Addr{}).index]++
	}
	return counts
}

func TestRoundRobinSharesExactlyEqually(t *testing.T) {
	ms := testMembers(1, 1, 1, 1)
	got := countPicks(mustBalancer(t, config.MethodRoundRobin, 4), ms, 1000)
	for i, n := range got {
		if n != 250 {
			t.Errorf("member %d: %d picks of 1000, want 250 (all: %v)", i, n, got)
		}
	}
}

func TestWeightedIsSmoothAndExactOverWholeCycles(t *testing.T) {
	ms := testMembers(3, 1)
	b := mustBalancer(t, config.MethodWeighted, 2)
	var first []int
	for range 4 {
		first = append(first, b.pick(ms, netip.Addr{}).index)
	}
	if fmt.Sprint(first) != "[0 0 1 0]" {
		t.Errorf("first cycle = %v, want smooth [0 0 1 0]", first)
	}
	got := countPicks(b, ms, 1000) // 250 more whole cycles of 4
	if got[0] != 750 || got[1] != 250 {
		t.Errorf("weights 3:1 over 1000 picks = %v, want [750 250]", got)
	}
	// A subset (member 0 tried already) still works.
	if m := b.pick(ms[1:], netip.Addr{}); m != ms[1] {
		t.Errorf("pick among [1] = %d", m.index)
	}
}

func TestLeastConnsPrefersTheIdleMember(t *testing.T) {
	ms := testMembers(1, 1, 1)
	ms[0].active.Store(3)
	ms[2].active.Store(3)
	b := mustBalancer(t, config.MethodLeastConns, 3)
	if got := countPicks(b, ms, 1000); got[1] != 1000 {
		t.Errorf("picks = %v, want all 1000 on idle member 1", got)
	}
	// Preconnected idle conns are not load.
	ms[0].active.Store(5)
	ms[0].idle.Store(5)
	ms[1].active.Store(1)
	if got := countPicks(b, ms, 1000); got[0] != 1000 {
		t.Errorf("picks = %v, want all on member 0 (its 5 conns are idle stock)", got)
	}
	// Ties are broken round-robin.
	for _, m := range ms {
		m.active.Store(0)
		m.idle.Store(0)
	}
	ms4 := testMembers(1, 1, 1, 1)
	if got := countPicks(mustBalancer(t, config.MethodLeastConns, 4), ms4, 1000); fmt.Sprint(got) != "[250 250 250 250]" {
		t.Errorf("tied picks = %v, want [250 250 250 250]", got)
	}
}

func TestRandomTwoBalancesAndNeverPicksTheBusierOfTwo(t *testing.T) {
	ms := testMembers(1, 1, 1, 1)
	b := mustBalancer(t, config.MethodRandomTwo, 4)
	for i, n := range countPicks(b, ms, 1000) {
		if n < 150 || n > 350 {
			t.Errorf("member %d: %d picks of 1000 with equal load, want about 250", i, n)
		}
	}
	two := testMembers(1, 1)
	two[0].active.Store(5)
	if got := countPicks(b, two, 1000); got[1] != 1000 {
		t.Errorf("picks = %v, want all on the idle member", got)
	}
	three := testMembers(1, 1, 1)
	three[1].active.Store(1)
	three[2].active.Store(2)
	got := countPicks(b, three, 1000)
	if got[2] != 0 {
		t.Errorf("busiest member picked %d times, want 0 (any pair has a less busy one): %v", got[2], got)
	}
	if got[0] < 500 || got[1] == 0 {
		t.Errorf("picks = %v: member 0 should win every pair it is in (2/3), member 1 the pair {1,2}", got)
	}
	if m := b.pick(two[1:], netip.Addr{}); m != two[1] {
		t.Errorf("single candidate not picked")
	}
}

func TestSourceHashIsStableAndMovesOnlyTheDownedMembersClients(t *testing.T) {
	ms := testMembers(1, 1, 1)
	b := mustBalancer(t, config.MethodSourceHash, 3)
	clients := make([]netip.Addr, 1000)
	owner := make([]*Member, 1000)
	counts := make([]int, 3)
	for i := range clients {
		clients[i] = netip.AddrFrom4([4]byte{10, byte(i >> 16), byte(i >> 8), byte(i)})
		owner[i] = b.pick(ms, clients[i])
		counts[owner[i].index]++
	}
	for i, n := range counts {
		if n < 200 {
			t.Errorf("member %d owns %d of 1000 clients, want about 333 (all: %v)", i, n, counts)
		}
	}
	for i, c := range clients {
		if m := b.pick(ms, c); m != owner[i] {
			t.Fatalf("client %s moved from %s to %s with no change", c, owner[i].addr, m.addr)
		}
		// The same IP as an IPv4-mapped IPv6 address is the same client.
		if m := b.pick(ms, netip.AddrFrom16(c.As16())); m != owner[i] {
			t.Fatalf("client %s as ::ffff: form maps elsewhere", c)
		}
	}
	without1 := []*Member{ms[0], ms[2]}
	moved := 0
	for i, c := range clients {
		m := b.pick(without1, c)
		if owner[i] != ms[1] && m != owner[i] {
			t.Fatalf("client %s of %s moved to %s when member 1 went down", c, owner[i].addr, m.addr)
		}
		if owner[i] == ms[1] {
			moved++
		}
	}
	if moved != counts[1] {
		t.Errorf("moved %d clients, want member 1's %d", moved, counts[1])
	}
}

func TestUnknownMethodIsRejected(t *testing.T) {
	cfg := testPool("fastest", "127.0.0.1:1")
	if _, err := New(cfg, nil); err == nil {
		t.Fatal("New accepted method fastest")
	}
}
