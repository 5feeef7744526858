package bench

import (
	"net/netip"
	"time"

	"github.com/tetherproxy/tether/sockopt"
)

// TIME_WAIT accounting, through sock_diag ([sockopt.Sockets]).
//
// A TIME_WAIT socket of this run is one whose 4-tuple joins one of the
// run's local ports to the target: on bench's side Local = (any, our port)
// and Remote = target; on the target's side Local = target and Remote =
// (any, our port). Sockets already in TIME_WAIT before the run are left
// out, so earlier runs (Linux keeps TIME_WAIT 60 s) do not count.

// settleFor bounds the wait for closes to finish after a run.
const settleFor = 500 * time.Millisecond

type fourTuple struct{ local, remote netip.AddrPort }

// timeWaitSet lists the TIME_WAIT sockets to or from the target.
func timeWaitSet(t netip.AddrPort) (map[fourTuple]bool, error) {
	socks, err := sockopt.Sockets()
	if err != nil {
		return nil, err
	}
	set := make(map[fourTuple]bool)
	for _, s := range socks {
		if s.State == sockopt.StateTimeWait && (s.Remote == t || s.Local == t) {
			set[fourTuple{s.Local, s.Remote}] = true
		}
	}
	return set, nil
}

// ours reports whether port is one of the phase's local ports.
func (p *phase) ours(port uint16) bool {
	return p.ports[port>>6].Load()&(1<<(port&63)) != 0
}

// countTimeWait waits (up to settleFor) until none of the run's sockets is
// still closing on either side, then counts the TIME_WAIT sockets of the
// run that were not in before.
func (p *phase) countTimeWait(before map[fourTuple]bool) (client, target int, err error) {
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
			var mine, clientSide bool
			switch {
			case s.Remote == t && p.ours(s.Local.Port()):
				mine, clientSide = true, true
			case s.Local == t && p.ours(s.Remote.Port()):
				mine = true
			}
			if !mine {
				continue
			}
			switch s.State {
			case sockopt.StateTimeWait:
				if before[fourTuple{s.Local, s.Remote}] {
					continue
				}
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
