// Package pool owns a pool's members and how tether reaches them: member
// state (enabled, disabled, up, down), the balancers that pick a member for a
// new connection, the active TCP health monitor, passive health from failed
// connects, per-member connection limits, and the preconnect stock (tcp
// mode: established idle server-side connections kept ready, each used once).
//
// A Pool is built from a validated config.Pool (New), started (Start) and
// closed (Close). A virtual server gets a Dialer for its server-side TCP
// profile (Pool.Dialer) and calls Dialer.Connect once per client connection;
// the returned Conn carries the bare *net.TCPConn so the proxy can splice.
//
// In http mode a virtual server builds a Reuser on its Dialer (NewReuser)
// and borrows a ServerConn per request (Get), giving it back after the
// exchange (Put, or Discard when it failed). The Reuser keeps returned conns
// idle per member (most recent first), checks each with a MSG_PEEK before
// reuse, expires idle ones before the member's announced Keep-Alive timeout,
// queues Gets at max_connections, and retires conns so the member closes
// first (Retire, then `Connection: close` from the relay).
//
// The package never parses HTTP and never sets a socket option itself: every
// option goes through package sockopt.
package pool
