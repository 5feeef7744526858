package main

import (
	"math/rand/v2"
	"net"
	"strconv"
	"sync"

	"github.com/tetherproxy/tether/sockopt"
)

// ports hands out 127.0.0.1 ports below the ephemeral range (32768-60999
// here), so thousands of client connections cannot take one; never the same
// twice in a run, and only a port free now with no socket of any state
// (TIME_WAIT included) on it, so counting sockets by port counts only the
// run's own.
type ports struct {
	mu   sync.Mutex
	used map[int]bool
}

func newPorts() *ports { return &ports{used: map[int]bool{}} }

func (p *ports) pick() int {
	p.mu.Lock()
	defer p.mu.Unlock()
	busy := map[int]bool{}
	if socks, err := sockopt.Sockets(); err == nil {
		for _, s := range socks {
			busy[int(s.Local.Port())] = true
			busy[int(s.Remote.Port())] = true
		}
	}
	for range 2000 {
		n := 20000 + rand.IntN(12000)
		if p.used[n] || busy[n] {
			continue
		}
		ln, err := net.Listen("tcp", "127.0.0.1:"+strconv.Itoa(n))
		if err != nil {
			continue
		}
		ln.Close()
		p.used[n] = true
		return n
	}
	panic("no free 127.0.0.1 port in 20000-32000")
}
