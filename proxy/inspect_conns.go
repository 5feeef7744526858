package proxy

import (
	"cmp"
	"net"
	"net/netip"
	"slices"
	"sync"
	"time"

	"github.com/tetherproxy/tether/sockopt"
)

// The per-connection view the admin API's /api/v1/connections reads: every
// proxied client conn of a virtual server with its member conn, and what
// the kernel says about both sockets.
//
// The cost on the serving side is one map insert and one delete under a
// mutex per client conn (liveConns), and in http mode two atomic stores
// per request (httpConn.member: set when a member conn is attached, cleared
// when it goes back). Everything else (sorting, TCP_INFO) is paid by the
// reader.

// ConnInfo is one proxied client connection, as Connections read it.
type ConnInfo struct {
	// ID numbers the virtual server's client conns from 1, in the order
	// they were registered (tcp mode: once connected to a member; http
	// mode: once accepted, after the TLS handshake if any). Unique for the
	// virtual server's life.
	ID uint64
	// Age is the time since the client conn was accepted (http mode: since
	// its TLS handshake ended, when it has one).
	Age time.Duration
	// Client is the client's socket: Local is tether's listen address,
	// Remote the client's.
	Client SocketInfo
	// Server is the member conn attached to the client conn now: in tcp
	// mode the relay's; in http mode the one lent for the request in
	// progress, the one a per-client (or never-reuse) conn holds between
	// requests, or the one carrying its upgrade tunnel. nil when there is
	// none (an idle client conn under shared reuse), or when it closed as
	// it was read. Under shared reuse its byte counts are the member
	// conn's whole life, across the clients it served.
	Server *SocketInfo
}

// SocketInfo is one socket's 4-tuple and its TCP_INFO. In Info,
// BytesReceived is what came in on the socket and BytesAcked what went
// out (sent and acknowledged; the kernel counts a SYN it sent, and a FIN,
// as one byte each); TotalRetrans is retransmits over its life, Cwnd the
// congestion window in segments, Unacked segments in flight.
type SocketInfo struct {
	Local, Remote netip.AddrPort
	sockopt.Info
}

// Connections returns the virtual server's live proxied client conns,
// oldest first (then by ID), at most limit of them (limit <= 0: all), and
// how many there are in all. A conn whose client socket closed while it
// was read is left out, and not counted. Client conns still in their TLS
// handshake or (tcp mode) still connecting to a member are not listed.
//
// It reads TCP_INFO of two sockets per listed conn (two system calls
// each); the registry's lock is held only to copy the set.
func (vs *VirtualServer) Connections(limit int) (total int, conns []ConnInfo) {
	snap := vs.live.snapshot()
	slices.SortFunc(snap, func(a, b liveConn) int {
		return cmp.Or(a.since.Compare(b.since), cmp.Compare(a.id, b.id))
	})
	now := time.Now()
	total = len(snap)
	for i := range snap {
		if limit > 0 && len(conns) == limit {
			break
		}
		lc := &snap[i]
		client, ok := readSocket(lc.client)
		if !ok {
			total-- // closed since the copy: it is gone
			continue
		}
		ci := ConnInfo{ID: lc.id, Age: now.Sub(lc.since), Client: client}
		if lc.server != nil {
			if server, ok := readSocket(lc.server); ok {
				ci.Server = &server
			}
		}
		conns = append(conns, ci)
	}
	return total, conns
}

// readSocket reads c's addresses and TCP_INFO; false when c is closed
// (RawConn.Control refuses a closed conn, so a socket closing meanwhile
// is never read through a reused descriptor).
func readSocket(c *net.TCPConn) (SocketInfo, bool) {
	info, err := sockopt.GetInfo(c)
	if err != nil {
		return SocketInfo{}, false
	}
	return SocketInfo{Local: addrPort(c.LocalAddr()), Remote: addrPort(c.RemoteAddr()), Info: info}, true
}

// addrPort is a TCP address as a netip.AddrPort, an IPv4-mapped IPv6
// address shown as IPv4.
func addrPort(a net.Addr) netip.AddrPort {
	ta, ok := a.(*net.TCPAddr)
	if !ok {
		return netip.AddrPort{}
	}
	ap := ta.AddrPort()
	return netip.AddrPortFrom(ap.Addr().Unmap(), ap.Port())
}

// liveConns is every proxied client conn of a virtual server, with an ID
// and when it was accepted: tcp-mode relays from the moment they have a
// member conn until they end, http-mode client conns from the moment they
// are taken up until live ends them (parked, busy or tunneled alike:
// httpSide.conns leaves out the parked ones).
//
// It is a slice, not a map: each conn keeps its slot's index (liveSlot),
// so add and remove are O(1) (remove moves the last entry into the hole),
// and an idle conn costs its 32-byte entry instead of a map slot (~90
// bytes with a map's load factor and growth). The slice shrinks again
// when a burst of conns has ended.
type liveConns struct {
	mu    sync.Mutex
	next  uint64
	conns []liveEntry
}

// connSockets is what liveConns holds: a relay or an httpConn.
type connSockets interface {
	// sockets returns the client socket and the member socket attached
	// now (nil: none). It is called under liveConns' lock, and is valid
	// from add to remove.
	sockets() (client, server *net.TCPConn)
	// liveSlot is where the conn's index in liveConns is kept, under
	// liveConns' lock, from add to remove.
	liveSlot() *int32
}

type liveEntry struct {
	c     connSockets
	id    uint64
	since int64 // Unix ns
}

// liveConn is one entry of a snapshot.
type liveConn struct {
	id             uint64
	since          time.Time
	client, server *net.TCPConn
}

func (l *liveConns) add(c connSockets, since time.Time) {
	l.mu.Lock()
	l.next++
	*c.liveSlot() = int32(len(l.conns))
	l.conns = append(l.conns, liveEntry{c: c, id: l.next, since: since.UnixNano()})
	l.mu.Unlock()
}

func (l *liveConns) remove(c connSockets) {
	l.mu.Lock()
	i := int(*c.liveSlot())
	if i < len(l.conns) && l.conns[i].c == c {
		last := len(l.conns) - 1
		if i != last {
			l.conns[i] = l.conns[last]
			*l.conns[i].c.liveSlot() = int32(i)
		}
		l.conns[last] = liveEntry{}
		l.conns = l.conns[:last]
		// Give back what a burst of conns grew, once most have ended.
		if c := cap(l.conns); c > 256 && len(l.conns) < c/4 {
			l.conns = append(make([]liveEntry, 0, c/2), l.conns...)
		}
	}
	l.mu.Unlock()
}

// snapshot copies the set, with each conn's sockets as they are now.
func (l *liveConns) snapshot() []liveConn {
	l.mu.Lock()
	defer l.mu.Unlock()
	out := make([]liveConn, 0, len(l.conns))
	for _, e := range l.conns {
		client, server := e.c.sockets()
		out = append(out, liveConn{id: e.id, since: time.Unix(0, e.since), client: client, server: server})
	}
	return out
}

// sockets is connSockets': a relay's sockets never change.
func (r *relay) sockets() (client, server *net.TCPConn) { return r.client, r.server }

// liveSlot is connSockets'.
func (r *relay) liveSlot() *int32 { return &r.liveAt }

// liveSlot is connSockets'.
func (h *httpConn) liveSlot() *int32 { return &h.liveAt }

// sockets is connSockets': clientTCP is set before the conn is added and
// cleared after it is removed (live), so reading it under liveConns' lock
// is safe; member is the exchange's to change at any time.
func (h *httpConn) sockets() (client, server *net.TCPConn) { return h.clientTCP, h.member.Load() }

// track registers a client conn being taken up in http mode (serveHTTP).
func (h *httpConn) track() { h.vs.live.add(h, time.Now()) }

// untrack is track's undo, as the conn ends (live, before the conn's
// fields are cleared): no member socket is attached any more.
func (h *httpConn) untrack() {
	h.vs.live.remove(h)
	h.member.Store(nil)
}
