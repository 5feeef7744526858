package sockopt

import (
	"fmt"
	"net"
	"time"

	"golang.org/x/sys/unix"
)

// Info is the part of TCP_INFO tether reports.
type Info struct {
	State  State
	RTT    time.Duration // smoothed round-trip time (tcpi_rtt)
	RTTVar time.Duration // its mean deviation (tcpi_rttvar)
	// Retransmits is the number of retransmission timeouts in a row for the
	// segment at the head of the queue (tcpi_retransmits); TotalRetrans is
	// every segment retransmitted over the connection's life.
	Retransmits  uint8
	TotalRetrans uint32
	// Unacked is segments (not bytes) sent and not yet acknowledged;
	// NotSentBytes is bytes queued and not yet sent. [OutQueue] gives bytes
	// unacknowledged, sent or not.
	Unacked       uint32
	NotSentBytes  uint32
	Cwnd          uint32 // congestion window, in segments (tcpi_snd_cwnd)
	BytesAcked    uint64 // bytes sent and acknowledged
	BytesReceived uint64 // bytes received
	// LastAckRecv is the time since the last ACK-bearing segment came in
	// (tcpi_last_ack_recv, ms precision): on an idle conn the peer closed
	// with a FIN, the time since that FIN arrived. A RST does not update
	// it (checked on Linux 6.18): after a reset it still dates the last
	// segment before. LastDataRecv is the time since the last data
	// segment came in (tcpi_last_data_recv); neither a FIN nor a RST
	// updates it.
	LastAckRecv  time.Duration
	LastDataRecv time.Duration
}

// GetInfo reads TCP_INFO of c.
func GetInfo(c *net.TCPConn) (Info, error) {
	var info Info
	err := connControl(c, func(fd int) error {
		ti, err := unix.GetsockoptTCPInfo(fd, unix.IPPROTO_TCP, unix.TCP_INFO)
		if err != nil {
			return fmt.Errorf("sockopt: get TCP_INFO: %w", err)
		}
		info = Info{
			State:         State(ti.State),
			RTT:           time.Duration(ti.Rtt) * time.Microsecond,
			RTTVar:        time.Duration(ti.Rttvar) * time.Microsecond,
			Retransmits:   ti.Retransmits,
			TotalRetrans:  ti.Total_retrans,
			Unacked:       ti.Unacked,
			NotSentBytes:  ti.Notsent_bytes,
			Cwnd:          ti.Snd_cwnd,
			BytesAcked:    ti.Bytes_acked,
			BytesReceived: ti.Bytes_received,
			LastAckRecv:   time.Duration(ti.Last_ack_recv) * time.Millisecond,
			LastDataRecv:  time.Duration(ti.Last_data_recv) * time.Millisecond,
		}
		return nil
	})
	return info, err
}

// OutQueue returns the bytes in c's send queue not yet acknowledged by the
// peer, whether sent or not (ioctl SIOCOUTQ: write_seq - snd_una).
func OutQueue(c *net.TCPConn) (int, error) {
	var n int
	err := connControl(c, func(fd int) error {
		v, err := unix.IoctlGetInt(fd, unix.SIOCOUTQ)
		if err != nil {
			return fmt.Errorf("sockopt: ioctl SIOCOUTQ: %w", err)
		}
		n = v
		return nil
	})
	return n, err
}
