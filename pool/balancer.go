package pool

import (
	"fmt"
	"math/rand/v2"
	"net/netip"
	"sync"
	"sync/atomic"

	"github.com/tetherproxy/tether/config"
)

// balancer picks one member among candidates: members that are up, enabled,
// not yet tried for this client connection and not at their connection
// limit. candidates is never empty and is in pool order. client is the
// client's IP (the zero Addr when unknown); only source-hash reads it.
// Implementations are safe for concurrent use.
type balancer interface {
	pick(candidates []*Member, client netip.Addr) *Member
}

// newBalancer returns the balancer for method over a pool of n members.
func newBalancer(method string, n int) (balancer, error) {
	switch method {
	case config.MethodRoundRobin, "":
		return &roundRobin{}, nil
	case config.MethodWeighted:
		return &smoothWeighted{current: make([]int, n)}, nil
	case config.MethodLeastConns:
		return &leastConns{}, nil
	case config.MethodRandomTwo:
		return randomTwo{}, nil
	case config.MethodSourceHash:
		return &sourceHash{}, nil
	}
	return nil, fmt.Errorf("unknown method %q", method)
}

// roundRobin takes the candidates in turn. When the candidate set is stable
// every member gets exactly the same share.
type roundRobin struct{ next atomic.Uint64 }

func (b *roundRobin) pick(c []*Member, _ netip.Addr) *Member {
	return c[(b.next.Add(1)-1)%uint64(len(c))]
}

// smoothWeighted is nginx's smooth weighted round-robin: each pick adds every
// candidate's weight to its current value, takes the largest and subtracts
// the candidates' total from it. Over a cycle of sum(weights) picks each
// member is taken exactly weight times, interleaved (3:1 gives a a b a).
type smoothWeighted struct {
	mu      sync.Mutex
	current []int // by member index
}

func (b *smoothWeighted) pick(c []*Member, _ netip.Addr) *Member {
	b.mu.Lock()
	defer b.mu.Unlock()
	total := 0
	var best *Member
	for _, m := range c {
		if m.index >= len(b.current) { // added by a reload
			b.current = append(b.current, make([]int, m.index+1-len(b.current))...)
		}
		w := m.Weight()
		b.current[m.index] += w
		total += w
		if best == nil || b.current[m.index] > b.current[best.index] {
			best = m
		}
	}
	b.current[best.index] -= total
	return best
}

// leastConns takes the candidate carrying the fewest conns; ties are broken
// round-robin by starting the scan one further each time.
type leastConns struct{ next atomic.Uint64 }

func (b *leastConns) pick(c []*Member, _ netip.Addr) *Member {
	n := len(c)
	start := int((b.next.Add(1) - 1) % uint64(n))
	best := c[start]
	bestLoad := best.load()
	for i := 1; i < n; i++ {
		m := c[(start+i)%n]
		if l := m.load(); l < bestLoad {
			best, bestLoad = m, l
		}
	}
	return best
}

// randomTwo is the power of two random choices: draw two distinct
// candidates, take the one carrying fewer conns (the first drawn on a tie).
// It never picks the busier of the two it drew.
type randomTwo struct{}

func (randomTwo) pick(c []*Member, _ netip.Addr) *Member {
	n := len(c)
	if n == 1 {
		return c[0]
	}
	i := rand.IntN(n)
	j := rand.IntN(n - 1)
	if j >= i {
		j++
	}
	if c[j].load() < c[i].load() {
		return c[j]
	}
	return c[i]
}

// sourceHash is rendezvous (highest random weight) hashing on the client IP:
// every candidate gets a score from hash(client, member) and the highest
// wins. Removing a member only moves the clients that it won; everyone else
// keeps their member. Without a client IP it falls back to round-robin.
type sourceHash struct{ fallback roundRobin }

func (b *sourceHash) pick(c []*Member, client netip.Addr) *Member {
	if !client.IsValid() {
		return b.fallback.pick(c, client)
	}
	a := client.Unmap().As16()
	h := uint64(fnvOffset)
	for _, x := range a {
		h = (h ^ uint64(x)) * fnvPrime
	}
	var best *Member
	var bestScore uint64
	for _, m := range c {
		s := mix64(h ^ m.seed)
		if best == nil || s > bestScore {
			best, bestScore = m, s
		}
	}
	return best
}

const (
	fnvOffset = 14695981039346656037
	fnvPrime  = 1099511628211
)

// hashString is 64-bit FNV-1a of s, finished with mix64.
func hashString(s string) uint64 {
	h := uint64(fnvOffset)
	for i := 0; i < len(s); i++ {
		h = (h ^ uint64(s[i])) * fnvPrime
	}
	return mix64(h)
}

// mix64 is the murmur3 64-bit finalizer: every input bit affects every
// output bit, which FNV alone does not give.
func mix64(h uint64) uint64 {
	h ^= h >> 33
	h *= 0xff51afd7ed558ccd
	h ^= h >> 33
	h *= 0xc4ceb9fe1a85ec53
	h ^= h >> 33
	return h
}
