// Package pool owns a pool's members and how tether reaches them: member
// state (enabled, disabled, up, down), the balancers that pick a member for a
// new connection, the active health monitor, passive health from failed
// connects, per-member connection limits, and ONE per-member connection pool
// type, ConnPool, that tcp preconnect and http reuse both use.
//
// A Pool is built from a validated config.Pool (New), started (Start) and
// closed (Close). A virtual server gets a Dialer for its server-side TCP
// profile (Pool.Dialer).
//
// A ConnPool keeps, per member, an idle stack (most recent first), and
// around them a FIFO of Gets waiting at max_connections (each delivered
// once), one filler that keeps a floor of established idle conns with
// backoff and never beyond max_connections, one reaper for idle deadlines
// (idle timeout, a learnt Keep-Alive timeout) that also peeks at every idle
// conn each peek_interval, and one stale check before a conn is lent (a
// non-blocking MSG_PEEK; over TLS, a read of the records the member sent
// unasked). Get tries an idle conn, else dials on a free slot (failing over
// across members: each at most once, at most 1+connect_retries dials,
// health observed), else queues.
//
//   - tcp mode: every Dialer holds a ConnPool as its preconnect stock,
//     filled to the pool's preconnect spread over the members that are up.
//     Dialer.Connect lends from it once per client connection; the returned
//     Conn carries the bare *net.TCPConn so the proxy can splice, and is
//     never given back (Release frees its slot).
//   - http mode: a virtual server builds a ConnPool on its Dialer with the
//     pool's reuse settings (NewReusePool) and borrows a ServerConn per
//     request (Get), giving it back after the exchange (Put, or Discard
//     when it failed). The filler keeps min_idle per member; conns retire
//     so the member closes first (Retire, then `Connection: close` from the
//     relay).
//
// Settings come from package config as they are (config.Pool and its
// Reuse): the package keeps no defaults and validates nothing config
// validated. It never parses HTTP and never sets a socket option itself:
// every option goes through package sockopt.
package pool
