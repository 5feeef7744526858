package sockopt

import (
	"encoding/binary"
	"errors"
	"fmt"
	"net/netip"
	"slices"

	"golang.org/x/sys/unix"
)

// Socket is one TCP socket of this network namespace, as sock_diag reports
// it. IPv4-mapped IPv6 addresses (dual-stack sockets) are unmapped, so a
// socket reads the same whichever family it was opened with.
type Socket struct {
	State         State
	Local, Remote netip.AddrPort
	// RecvQ / SendQ are the queues as ss shows them: bytes unread / not yet
	// acknowledged; for a LISTEN socket, connections waiting in the accept
	// queue / the backlog.
	RecvQ, SendQ uint32
}

// ErrDumpInterrupted is returned when the kernel kept flagging the socket
// dump as inconsistent (sockets changed during it) on every attempt.
var ErrDumpInterrupted = errors.New("sockopt: sock_diag dump interrupted")

// Layout of the sock_diag messages (include/uapi/linux/inet_diag.h).
const (
	sockDiagByFamily = 20 // SOCK_DIAG_BY_FAMILY
	sizeofNlMsghdr   = 16
	sizeofDiagSockID = 48 // inet_diag_sockid
	sizeofDiagReqV2  = 8 + sizeofDiagSockID
	sizeofDiagMsg    = 4 + sizeofDiagSockID + 20 // inet_diag_msg
	// allStates asks for the eleven TCP states, bits 1..11 (TIME_WAIT and
	// pending SYN_RECV included); bit 13 (bound, inactive) stays out.
	allStates  = 1<<12 - 2
	dumpTries  = 3
	recvBufLen = 64 << 10 // > the kernel's largest dump part (32 KiB)
)

// Sockets lists every TCP socket, IPv4 and IPv6, in every state, through one
// NETLINK_SOCK_DIAG dump per family (inet_diag_req_v2). It does not read
// ss or /proc. A dump the kernel flags as interrupted is retried.
func Sockets() ([]Socket, error) {
	var all []Socket
	for _, family := range []uint8{unix.AF_INET, unix.AF_INET6} {
		var err error
		all, err = dumpFamily(all, family)
		if err != nil {
			return nil, err
		}
	}
	return all, nil
}

// CountStates counts TCP sockets by state among those whose local or
// remote port is one of ports; no ports counts every socket.
func CountStates(ports ...uint16) (map[State]int, error) {
	socks, err := Sockets()
	if err != nil {
		return nil, err
	}
	counts := make(map[State]int)
	for _, s := range socks {
		if len(ports) == 0 || slices.Contains(ports, s.Local.Port()) || slices.Contains(ports, s.Remote.Port()) {
			counts[s.State]++
		}
	}
	return counts, nil
}

// dumpFamily appends the TCP sockets of one address family to dst.
func dumpFamily(dst []Socket, family uint8) ([]Socket, error) {
	for try := 0; ; try++ {
		socks, interrupted, err := dumpOnce(dst, family)
		if err != nil || !interrupted {
			return socks, err
		}
		if try+1 == dumpTries {
			return nil, fmt.Errorf("%w (family %d, %d tries)", ErrDumpInterrupted, family, dumpTries)
		}
	}
}

// dumpOnce runs one dump on a fresh netlink socket. interrupted reports
// NLM_F_DUMP_INTR on any part of the answer.
func dumpOnce(dst []Socket, family uint8) (_ []Socket, interrupted bool, err error) {
	fd, err := unix.Socket(unix.AF_NETLINK, unix.SOCK_DGRAM|unix.SOCK_CLOEXEC, unix.NETLINK_SOCK_DIAG)
	if err != nil {
		return nil, false, fmt.Errorf("sockopt: sock_diag socket: %w", err)
	}
	defer unix.Close(fd)

	const seq = 1
	if err := unix.Sendto(fd, diagRequest(family, seq), 0, &unix.SockaddrNetlink{Family: unix.AF_NETLINK}); err != nil {
		return nil, false, fmt.Errorf("sockopt: sock_diag request: %w", err)
	}
	n0 := len(dst)
	buf := make([]byte, recvBufLen)
	for {
		n, _, rflags, _, err := unix.Recvmsg(fd, buf, nil, 0)
		if err == unix.EINTR {
			continue
		}
		if err != nil {
			return nil, false, fmt.Errorf("sockopt: sock_diag receive: %w", err)
		}
		if rflags&unix.MSG_TRUNC != 0 { // cannot happen: the kernel caps dump parts at 32 KiB
			return nil, false, fmt.Errorf("sockopt: sock_diag: answer truncated at %d bytes", n)
		}
		for b := buf[:n]; len(b) >= sizeofNlMsghdr; {
			mlen := int(binary.NativeEndian.Uint32(b[0:4]))
			typ := binary.NativeEndian.Uint16(b[4:6])
			flags := binary.NativeEndian.Uint16(b[6:8])
			if mlen < sizeofNlMsghdr || mlen > len(b) {
				return nil, false, fmt.Errorf("sockopt: sock_diag: bad netlink message length %d", mlen)
			}
			if flags&unix.NLM_F_DUMP_INTR != 0 {
				interrupted = true
			}
			body := b[sizeofNlMsghdr:mlen]
			switch typ {
			case unix.NLMSG_DONE:
				if interrupted {
					return dst[:n0], true, nil
				}
				return dst, false, nil
			case unix.NLMSG_ERROR:
				if len(body) >= 4 {
					if errno := int32(binary.NativeEndian.Uint32(body[0:4])); errno != 0 {
						return nil, false, fmt.Errorf("sockopt: sock_diag family %d: %w", family, unix.Errno(-errno))
					}
				}
			case sockDiagByFamily:
				if len(body) < sizeofDiagMsg {
					return nil, false, fmt.Errorf("sockopt: sock_diag: short inet_diag_msg (%d bytes)", len(body))
				}
				dst = append(dst, parseDiagMsg(body))
			}
			b = b[min(nlmsgAlign(mlen), len(b)):]
		}
	}
}

// diagRequest builds nlmsghdr + inet_diag_req_v2 for a dump of every TCP
// socket of family in every state. The socket id stays zero: a dump ignores
// it, and no filter bytecode is attached.
func diagRequest(family uint8, seq uint32) []byte {
	b := make([]byte, sizeofNlMsghdr+sizeofDiagReqV2)
	ne := binary.NativeEndian
	ne.PutUint32(b[0:4], uint32(len(b)))
	ne.PutUint16(b[4:6], sockDiagByFamily)
	ne.PutUint16(b[6:8], unix.NLM_F_REQUEST|unix.NLM_F_DUMP)
	ne.PutUint32(b[8:12], seq)
	r := b[sizeofNlMsghdr:]
	r[0] = family           // sdiag_family
	r[1] = unix.IPPROTO_TCP // sdiag_protocol
	r[2] = 0                // idiag_ext: no extensions
	ne.PutUint32(r[4:8], allStates)
	return b
}

// parseDiagMsg decodes an inet_diag_msg: family, state, timer, retrans,
// then the socket id (ports big-endian, addresses 16 bytes each), expires,
// rqueue, wqueue, uid, inode.
func parseDiagMsg(m []byte) Socket {
	family := m[0]
	id := m[4 : 4+sizeofDiagSockID]
	sport := binary.BigEndian.Uint16(id[0:2])
	dport := binary.BigEndian.Uint16(id[2:4])
	addr := func(raw []byte) netip.Addr {
		if family == unix.AF_INET {
			return netip.AddrFrom4([4]byte(raw[:4]))
		}
		return netip.AddrFrom16([16]byte(raw[:16])).Unmap()
	}
	rest := m[4+sizeofDiagSockID:]
	return Socket{
		State:  State(m[1]),
		Local:  netip.AddrPortFrom(addr(id[4:20]), sport),
		Remote: netip.AddrPortFrom(addr(id[20:36]), dport),
		RecvQ:  binary.NativeEndian.Uint32(rest[4:8]),
		SendQ:  binary.NativeEndian.Uint32(rest[8:12]),
	}
}

// nlmsgAlign rounds a netlink message length up to 4 bytes (NLMSG_ALIGN).
func nlmsgAlign(n int) int { return (n + 3) &^ 3 }
