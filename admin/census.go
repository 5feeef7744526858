package admin

import (
	"context"
	"net"
	"net/netip"
	"strconv"
	"time"

	"github.com/tetherproxy/tether/proxy"
	"github.com/tetherproxy/tether/sockopt"
)

// censusTimeout bounds one sock_diag census (a scrape of /metrics, a GET of
// /api/v1/virtual-servers).
const censusTimeout = time.Second

// stateCounts counts sockets by sockopt.State (indexed by the state).
type stateCounts [16]int

// sideCounts is one virtual server's census: client side, the sockets whose
// local address is its listen address (the listener included); server side,
// those whose remote address is a member of its pool (virtual servers
// sharing a pool count the same server sockets).
type sideCounts struct {
	Client, Server stateCounts
}

// takeCensus counts the sockets of each of vss (same order) from one
// sock_diag dump, within censusTimeout; ok is false when the dump failed or
// took longer. Both /metrics (tether_tcp_sockets) and
// /api/v1/virtual-servers ("sockets") read it.
func takeCensus(srv *proxy.Server, vss []*proxy.VirtualServer) (counts []sideCounts, ok bool) {
	socks, ok := census()
	if !ok {
		return nil, false
	}
	counts = make([]sideCounts, len(vss))
	for i, vs := range vss {
		if a := vs.Addr(); a != nil {
			if e, ok := parseEndpoint(a.String()); ok {
				countSockets(&counts[i].Client, socks, func(s sockopt.Socket) bool { return e.matches(s.Local) })
			}
		}
		var members []endpoint
		if p := srv.Pool(vs.PoolName()); p != nil {
			for _, m := range p.Members() {
				if e, ok := parseEndpoint(m.Address()); ok {
					members = append(members, e)
				}
			}
		}
		countSockets(&counts[i].Server, socks, func(s sockopt.Socket) bool {
			for _, e := range members {
				if e.matches(s.Remote) {
					return true
				}
			}
			return false
		})
	}
	return counts, true
}

// socketsBody is the "sockets" field of a virtual server in
// /api/v1/virtual-servers: per side, every one of the eleven TCP states
// (named as ss prints them) with its count, zeros included.
type socketsBody struct {
	Client map[string]int `json:"client"`
	Server map[string]int `json:"server"`
}

func (c sideCounts) body() *socketsBody {
	b := &socketsBody{Client: map[string]int{}, Server: map[string]int{}}
	for _, st := range sockopt.States() {
		b.Client[st.String()] = c.Client[st]
		b.Server[st.String()] = c.Server[st]
	}
	return b
}

// endpoint matches a socket address: port and, unless any, the address.
type endpoint struct {
	addr netip.Addr
	port uint16
	any  bool
}

func (e endpoint) matches(ap netip.AddrPort) bool {
	return ap.Port() == e.port && (e.any || ap.Addr() == e.addr)
}

// parseEndpoint reads a member or listen address; a host that is not an IP
// (or is unspecified) matches any address on the port.
func parseEndpoint(s string) (endpoint, bool) {
	host, port, err := net.SplitHostPort(s)
	if err != nil {
		return endpoint{}, false
	}
	n, err := strconv.ParseUint(port, 10, 16)
	if err != nil {
		return endpoint{}, false
	}
	e := endpoint{port: uint16(n)}
	a, err := netip.ParseAddr(host)
	e.addr, e.any = a.Unmap(), err != nil || a.IsUnspecified()
	return e, true
}

// census runs sockopt.Sockets within censusTimeout. The dump cannot be
// cancelled: on timeout its goroutine ends on its own (the channel is
// buffered).
func census() ([]sockopt.Socket, bool) {
	type result struct {
		socks []sockopt.Socket
		err   error
	}
	done := make(chan result, 1)
	go func() {
		socks, err := sockopt.Sockets()
		done <- result{socks, err}
	}()
	ctx, cancel := context.WithTimeout(context.Background(), censusTimeout)
	defer cancel()
	select {
	case r := <-done:
		return r.socks, r.err == nil
	case <-ctx.Done():
		return nil, false
	}
}

// countSockets counts the sockets that match by state into n.
func countSockets(n *stateCounts, socks []sockopt.Socket, match func(sockopt.Socket) bool) {
	for _, s := range socks {
		if int(s.State) < len(n) && match(s) {
			n[s.State]++
		}
	}
}
