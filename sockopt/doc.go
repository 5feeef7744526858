// Package sockopt is the only place in tether that touches a socket option.
//
// It owns:
//   - turning a config.TCPProfile into socket options, through
//     golang.org/x/sys/unix only: on listeners ([Listen]), on accepted and
//     dialed connections ([Apply]) and before connect ([Dialer]);
//   - switching Go's own defaults off (15 s keepalive on every conn,
//     TCP_NODELAY forced on, MPTCP listeners) so that what the profile says is
//     what the kernel holds;
//   - reading TCP_INFO ([GetInfo]), the send queue ([OutQueue]) and a
//     listener's backlog ([Backlog]);
//   - the census of TCP sockets by state through sock_diag netlink
//     ([Sockets], [CountStates]) — never by parsing ss or /proc;
//   - the three close modes, graceful, reset and drain-reset ([Close]),
//     drain-reset reporting discarded data as [ErrUndelivered];
//   - the stale check before an idle connection is reused ([Alive]).
//
// It must not know about pools, members, virtual servers or HTTP: callers
// hand it a *net.TCPConn and a profile and decide themselves what to do with
// the result. Every function takes *net.TCPConn (not net.Conn) so that the
// relay can keep splicing and nothing here wraps a connection.
//
// Errors name the option or call that failed and wrap the errno once, so
// callers can test them with errors.Is (unix.EINVAL, net.ErrClosed ...).
// Apply and Alive run per accept / per reuse and do not allocate.
package sockopt
