// Package proxy runs tether's virtual servers: it binds each listener with the
// client-side TCP profile, accepts within the connection limit, borrows a
// server-side connection from the virtual server's pool and relays bytes both
// ways.
//
// The tcp relay keeps *net.TCPConn on both sides so that Linux splice(2)
// moves the bytes (nothing wraps the conns), propagates half-close with
// CloseWrite in each direction, enforces the idle timeout without breaking
// splice (read deadlines re-armed from kernel byte counters, see relay.go),
// and closes each side with its own profile's close mode.
//
// proxy defines no socket option itself (package sockopt does) and picks no
// member itself (package pool does).
package proxy
