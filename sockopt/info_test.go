package sockopt

import (
	"errors"
	"fmt"
	"io"
	"net"
	"testing"
	"time"

	"github.com/tetherproxy/tether/config"
	"github.com/tetherproxy/tether/sockopt/socktest"
)

func TestGetInfoOnEstablishedConn(t *testing.T) {
	c, peer := pair(t, config.DefaultProfile())
	// Some round trips so the kernel has RTT samples.
	go func() { io.Copy(peer, peer) }() // echo; ends when the conns close
	buf := make([]byte, 1000)
	c.SetDeadline(time.Now().Add(5 * time.Second))
	for range 10 {
		if _, err := c.Write(buf); err != nil {
			t.Fatal(err)
		}
		if _, err := io.ReadFull(c, buf); err != nil {
			t.Fatal(err)
		}
	}
	info, err := GetInfo(c)
	if err != nil {
		t.Fatal(err)
	}
	t.Logf("%+v", info)
	if info.State != StateEstablished {
		t.Errorf("State = %v, want ESTABLISHED", info.State)
	}
	if info.RTT <= 0 || info.RTTVar <= 0 {
		t.Errorf("RTT = %v, RTTVar = %v; want > 0", info.RTT, info.RTTVar)
	}
	if info.BytesReceived != 10000 {
		t.Errorf("BytesReceived = %d, want 10000", info.BytesReceived)
	}
	// At least the 1-byte greeting of connect plus the echoed data (the
	// kernel's count includes the SYN's sequence number too).
	if info.BytesAcked < 10001 {
		t.Errorf("BytesAcked = %d, want >= 10001", info.BytesAcked)
	}
	if info.Cwnd == 0 {
		t.Errorf("Cwnd = 0 on an established conn, want the congestion window in segments")
	}
	if info.Retransmits != 0 || info.TotalRetrans != 0 {
		t.Errorf("retransmissions on loopback: %d / %d", info.Retransmits, info.TotalRetrans)
	}
	socktest.WaitFor(t, 5*time.Second, "an empty send queue", func() bool {
		n, err := OutQueue(c)
		return err == nil && n == 0
	})
	if info, err := GetInfo(c); err != nil || info.Unacked != 0 || info.NotSentBytes != 0 {
		t.Errorf("idle: %+v, %v; want nothing unacked or unsent", info, err)
	}
	c.Close()
	peer.Close()
	if _, err := GetInfo(c); !errors.Is(err, net.ErrClosed) {
		t.Errorf("GetInfo on a closed conn = %v, want net.ErrClosed", err)
	}
	if _, err := OutQueue(c); !errors.Is(err, net.ErrClosed) {
		t.Errorf("OutQueue on a closed conn = %v, want net.ErrClosed", err)
	}
}

func TestGetInfoFollowsCloseStates(t *testing.T) {
	c, peer := pair(t, config.DefaultProfile())
	if err := peer.CloseWrite(); err != nil {
		t.Fatal(err)
	}
	socktest.WaitFor(t, 5*time.Second, "CLOSE_WAIT after the peer's FIN", func() bool {
		info, err := GetInfo(c)
		return err == nil && info.State == StateCloseWait
	})
	socktest.WaitFor(t, 5*time.Second, "FIN_WAIT2 on the half-closed peer", func() bool {
		info, err := GetInfo(peer)
		return err == nil && info.State == StateFinWait2
	})
}

func TestStateNames(t *testing.T) {
	want := []string{"ESTABLISHED", "SYN_SENT", "SYN_RECV", "FIN_WAIT1", "FIN_WAIT2", "TIME_WAIT",
		"CLOSED", "CLOSE_WAIT", "LAST_ACK", "LISTEN", "CLOSING"}
	for i, s := range States() {
		if int(s) != i+1 || s.String() != want[i] {
			t.Errorf("States()[%d] = %d %q, want %d %q", i, s, s, i+1, want[i])
		}
	}
	for _, s := range []State{0, 12, 255} {
		if got := s.String(); got != fmt.Sprintf("State(%d)", s) {
			t.Errorf("State(%d).String() = %q", s, got)
		}
	}
}

// LastAckRecv dates the peer's FIN on an idle conn (the FIN is the last
// segment in), to the kernel's ms precision; a RST leaves it at the last
// segment before the reset. LastDataRecv dates the last data either way.
func TestLastAckRecvDatesThePeersFINButNotItsReset(t *testing.T) {
	for _, reset := range []bool{false, true} {
		c, peer := pair(t, config.DefaultProfile())
		if _, err := peer.Write([]byte("response")); err != nil {
			t.Fatal(err)
		}
		buf := make([]byte, 8)
		c.SetReadDeadline(time.Now().Add(5 * time.Second))
		if _, err := io.ReadFull(c, buf); err != nil {
			t.Fatal(err)
		}
		idleSince := time.Now()
		// The peer closes after 100 ms idle; TCP_INFO is read well after.
		socktest.WaitFor(t, 5*time.Second, "100 ms of idle", func() bool { return time.Since(idleSince) >= 100*time.Millisecond })
		if reset {
			peer.SetLinger(0)
		}
		closed := time.Now()
		peer.Close()
		socktest.WaitFor(t, 5*time.Second, "the peer's close to arrive, then 200 ms", func() bool {
			return Alive(c) != nil && time.Since(closed) >= 200*time.Millisecond
		})
		info, err := GetInfo(c)
		now := time.Now()
		if err != nil {
			t.Fatal(err)
		}
		closeAt := now.Add(-info.LastAckRecv) // as the pool reads it
		if d := now.Sub(idleSince) - info.LastDataRecv; d < -10*time.Millisecond || d > 10*time.Millisecond {
			t.Errorf("reset=%v: LastDataRecv %v, want the time since the response (%v)", reset, info.LastDataRecv, now.Sub(idleSince))
		}
		if !reset {
			// ms granularity (and a jiffy) either way of the close.
			if d := closeAt.Sub(closed); d < -10*time.Millisecond || d > 20*time.Millisecond {
				t.Errorf("FIN: LastAckRecv %v dates the close %v off", info.LastAckRecv, d)
			}
		} else if info.LastAckRecv < now.Sub(closed)+50*time.Millisecond {
			t.Errorf("RST: LastAckRecv %v; want it to date the last segment before the reset (>= %v)", info.LastAckRecv, now.Sub(closed)+50*time.Millisecond)
		}
		t.Logf("reset=%v: state %v, close read back at idle %v (closed at %v)", reset, info.State,
			closeAt.Sub(idleSince).Round(time.Millisecond), closed.Sub(idleSince).Round(time.Millisecond))
	}
}
