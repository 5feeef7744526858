package bench

import (
	"net/netip"
	"time"

	"github.com/tetherproxy/tether/sockopt"
)

// TIME_WAIT accounting, through sock_diag ([sockopt.Sockets]).
//
// A TIME_WAIT socket of this run is one whose 4-tuple is one of the run's
// connections: on bench's side Local = (our address, one of our ports) and
// Remote = the target; on the target's side the same pair reversed. No
// "before" snapshot is needed: a TIME_WAIT socket left by an earlier run
// on one of those 4-tuples cannot survive this run using the 4-tuple (the
// kernel either avoids the port or recycles the TIME_WAIT socket,
// tcp_tw_reuse), so every match is this run's. For the same reason a port
// used twice within the run leaves one TIME_WAIT socket, not two: the
// counts are the TIME_WAIT sockets the run leaves behind, which can be
// fewer than the connections closed.

// settleFor bounds the wait for closes to finish after a run.
const settleFor = 500 * time.Millisecond

// ours reports whether a is one of the phase's local addresses.
func (p *phase) ours(a netip.AddrPort) bool {
	local := p.local.Load()
	port := a.Port()
	return local != nil && a.Addr() == *local && p.ports[port>>6].Load()&(1<<(port&63)) != 0
}

// countTimeWait waits (up to settleFor) until none of the run's sockets is
// still closing on either side, then counts the run's TIME_WAIT sockets.
func (p *phase) countTimeWait() (client, target int, err error) {
	t := p.t.addr
	deadline := time.Now().Add(settleFor)
	for {
		socks, err := sockopt.Sockets()
		if err != nil {
			return 0, 0, err
		}
		client, target = 0, 0
		closing := false
		for _, s := range socks {
			var clientSide bool
			switch {
			case s.Remote == t && p.ours(s.Local):
				clientSide = true
			case s.Local == t && p.ours(s.Remote):
			default:
				continue
			}
			switch s.State {
			case sockopt.StateTimeWait:
				if clientSide {
					client++
				} else {
					target++
				}
			case sockopt.StateFinWait1, sockopt.StateFinWait2, sockopt.StateClosing,
				sockopt.StateLastAck, sockopt.StateCloseWait:
				closing = true
			}
		}
		if !closing || time.Now().After(deadline) {
			return client, target, nil
		}
		time.Sleep(20 * time.Millisecond)
	}
}
