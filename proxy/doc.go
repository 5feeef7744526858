// Package proxy runs tether's virtual servers: it binds each listener with the
// client-side TCP profile, accepts within the connection limit, borrows a
// server-side connection from the virtual server's pool and relays bytes both
// ways.
//
// The tcp relay keeps the bare *net.TCPConn on both sides (nothing wraps the
// conns). Each direction waits for data holding nothing, moves a small
// message with one read(2) and one write(2), and hands a burst (a read that
// fills its 16 KiB buffer) to splice(2), bounded so that the splice pipe is
// given back when the burst ends. Go's plain TCPConn-to-TCPConn splice would
// park every idle direction inside splice holding a pipe (2 extra fds and
// kernel memory per direction) and costs three splice calls per small
// message; bench/compare measured both. The relay propagates half-close
// with CloseWrite in each direction, enforces the idle timeout without
// breaking splice (read deadlines checked against kernel byte counters, see
// relay.go), and closes each side with its own profile's close mode.
//
// A Listeners (SetListeners) may give the listening sockets instead: ones a
// hot upgrade's old process or systemd passed; ShutdownGently is the drain
// of the old process of an upgrade (listeners.go).
//
// proxy defines no socket option itself (package sockopt does) and picks no
// member itself (package pool does).
package proxy
