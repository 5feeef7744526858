package sockopt

import "strconv"

// State is a Linux TCP state, numbered as the kernel numbers them
// (include/net/tcp_states.h), so TCP_INFO and sock_diag values convert
// directly.
type State uint8

// The eleven TCP states.
const (
	StateEstablished State = 1 + iota
	StateSynSent
	StateSynRecv
	StateFinWait1
	StateFinWait2
	StateTimeWait
	StateClosed // the kernel's TCP_CLOSE
	StateCloseWait
	StateLastAck
	StateListen
	StateClosing
)

var stateNames = [...]string{
	StateEstablished: "ESTABLISHED",
	StateSynSent:     "SYN_SENT",
	StateSynRecv:     "SYN_RECV",
	StateFinWait1:    "FIN_WAIT1",
	StateFinWait2:    "FIN_WAIT2",
	StateTimeWait:    "TIME_WAIT",
	StateClosed:      "CLOSED",
	StateCloseWait:   "CLOSE_WAIT",
	StateLastAck:     "LAST_ACK",
	StateListen:      "LISTEN",
	StateClosing:     "CLOSING",
}

// String returns the state's name as ss and netstat print it
// ("ESTABLISHED", "TIME_WAIT", "CLOSED" ...), or "State(n)" for a number
// outside the eleven.
func (s State) String() string {
	if int(s) < len(stateNames) && stateNames[s] != "" {
		return stateNames[s]
	}
	return "State(" + strconv.Itoa(int(s)) + ")"
}

// States lists the eleven states in kernel order, for iteration (metrics,
// reports).
func States() []State {
	return []State{
		StateEstablished, StateSynSent, StateSynRecv, StateFinWait1, StateFinWait2,
		StateTimeWait, StateClosed, StateCloseWait, StateLastAck, StateListen, StateClosing,
	}
}
