// Package bench is the load generator behind `tether bench` and
// `tether demo`: it measures what short connections cost against long ones
// on any target (tether, nginx, an echo server ...).
//
// It owns:
//   - two protocols: a minimal HTTP/1.1 client of its own on raw
//     *net.TCPConn (net/http's Transport would hide the connections it opens)
//     or, for short plain connections, on a raw non-blocking socket that
//     costs what ab's do (rawdial.go),
//     over crypto/tls for an https:// target (one handshake per connection,
//     timed on its own, full unless Options.TLSResume), and a tcp echo round
//     trip (write N bytes, read N bytes back);
//   - the connection modes short (one TCP connection per request) and long
//     (keepalive, optionally N requests per connection);
//   - the load: a bounded pool of Concurrency workers, closed loop or open
//     loop (Rate): requests are scheduled from the start time, as
//     tsenart/vegeta does, and latency is measured from the scheduled send
//     time, so a stalled target cannot hide its stall by slowing the
//     generator down (no coordinated omission);
//   - the results: HDR latency histograms, connect times, errors by kind,
//     connections opened, ephemeral ports used, who closed each connection
//     first and the TIME_WAIT sockets each side was left with (counted with
//     sock_diag through [sockopt.Sockets], by port), a throughput series;
//   - the reports: a text table, JSON and one self-contained HTML page with
//     inline SVG charts; and the Markdown table that the bench programs
//     (bench/soak, bench/compare) print their own reports with.
//
// It must not depend on proxy internals: it measures any target. The only
// tether package it imports is sockopt, for the socket census.
//
// Counting rules, which the tests check against what a server saw:
//   - Requests is every request attempted in the measured phase, and
//     Requests == OK + the sum of Errors: each attempt ends as exactly one
//     success or one error kind;
//   - a connection is counted in ConnsOpened when connect succeeded; a
//     failed connect is an error ("refused", "timeout" ...), not a conn. A
//     TLS handshake that fails after it is an error ("tls", or "timeout")
//     on a counted conn, so TLS.Handshakes <= ConnsOpened;
//   - Latency runs from the scheduled send time (open loop) or from the
//     start of the attempt (closed loop) to the last byte of the response,
//     and so includes the connect (and the TLS handshake) when the request
//     opened one; Connect and TLS.Handshake alone are reported separately.
//     Only successful requests are recorded.
package bench
