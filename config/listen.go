package config

import (
	"fmt"
	"net/netip"
	"strconv"
	"strings"
)

// bindAddr is where a listen value binds, as Go's net.Listen("tcp", ...)
// binds it (sockopt.Listen goes through it), so that two virtual servers
// whose listeners cannot coexist are caught by check rather than by run.
//
// What Linux does, measured with SO_REUSEADDR on (Go sets it on every
// listener) on kernel 6.18:
//   - Go binds every wildcard ("", 0.0.0.0, ::, ::ffff:0.0.0.0) to one
//     dual-stack [::]:port socket, so any wildcard conflicts with every other
//     listener on the port, IPv6 ones included (0.0.0.0:P beside [::1]:P);
//   - two listeners on the same address conflict; two different addresses
//     (127.0.0.1 and 127.0.0.2, 127.0.0.1 and ::1) do not;
//   - "localhost" binds 127.0.0.1 (Go prefers the IPv4 address of a name);
//     ::ffff:127.0.0.1 binds 127.0.0.1;
//   - SO_REUSEPORT on both sockets (same user) lifts every conflict: a
//     wildcard beside a specific address then gets only what the specific
//     one does not take (the kernel picks the most specific listener for
//     each connection), but two sockets on the same address share its
//     connections at random. On one side only, it changes nothing.
type bindAddr struct {
	wildcard bool       // every address on port, IPv4 and IPv6
	ip       netip.Addr // a literal address, IPv4-mapped ones unmapped
	name     string     // any other host name, lower case: resolved by run
	port     int        // 0 = a free port, which never conflicts
}

// parseBind reads a listen value that checkHostPort accepted.
func parseBind(listen string) bindAddr {
	i := strings.LastIndex(listen, ":")
	host := strings.TrimSuffix(strings.TrimPrefix(listen[:i], "["), "]")
	port, _ := strconv.Atoi(listen[i+1:])
	b := bindAddr{port: port}
	if ip, err := netip.ParseAddr(host); err == nil {
		b.ip = ip.Unmap()
		b.wildcard = b.ip.IsUnspecified()
		return b
	}
	switch name := strings.TrimSuffix(strings.ToLower(host), "."); name {
	case "":
		b.wildcard = true
	case "localhost":
		b.ip = netip.AddrFrom4([4]byte{127, 0, 0, 1})
	default:
		b.name = name
	}
	return b
}

func (b bindAddr) String() string {
	switch {
	case b.wildcard:
		return fmt.Sprintf("[::]:%d", b.port)
	case b.name != "":
		return fmt.Sprintf("%s:%d", b.name, b.port)
	}
	return netip.AddrPortFrom(b.ip, uint16(b.port)).String()
}

// overlap says whether listeners on a and b may collide: same when both bind
// the same socket address, wide when one is a wildcard that takes the
// other's address too. Two names, or a name and an address, are compared as
// written (run resolves them, check does not): different ones never overlap.
func overlap(a, b bindAddr) (same, wide bool) {
	if a.port != b.port || a.port == 0 {
		return false, false
	}
	switch {
	case a.wildcard && b.wildcard:
		return true, false
	case a.wildcard || b.wildcard:
		return false, true
	case a.name != "" || b.name != "":
		return a.name == b.name, false
	}
	return a.ip == b.ip, false
}

// listener is a virtual server's listen value seen by checkListeners.
type listener struct {
	path, listen string // the virtual server's path in messages, its listen value as written
	bind         bindAddr
	reusePort    bool // its client profile sets SO_REUSEPORT
}

// checkListeners reports l (at path) when it cannot listen beside one of
// the listeners before it, naming both virtual servers and listen values.
func checkListeners(v *validator, path string, l listener, before []listener) {
	key := fmt.Sprintf("listen %q", l.listen)
	for _, o := range before {
		same, wide := overlap(l.bind, o.bind)
		other := fmt.Sprintf("%s (listen %q)", o.path, o.listen)
		switch {
		case same && l.reusePort && o.reusePort:
			v.add(path, key, fmt.Sprintf("is also the address of %s: both bind %s, and with reuse_port on both the kernel would deal connections between the two at random", other, l.bind))
		case same:
			v.add(path, key, fmt.Sprintf("is also the address of %s: both bind %s, so the second fails with \"address already in use\"", other, l.bind))
		case wide && !(l.reusePort && o.reusePort):
			v.add(path, key, fmt.Sprintf("overlaps %s: a wildcard takes port %d on every address (Go binds it as [::]:%d, IPv4 and IPv6), so the second fails with \"address already in use\"; set reuse_port = true in both client profiles to let each connection go to the more specific listener",
				other, l.bind.port, l.bind.port))
		}
	}
}
