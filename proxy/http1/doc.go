// Package http1 is tether's HTTP/1.1 codec: strict parsing of request and
// response heads (RFC 9112), body framing (Content-Length, chunked,
// until-close) with streaming body readers, and the rewriting of heads for
// forwarding (hop-by-hop fields dropped, framing re-announced, fields added).
//
// It owns bytes only. It works on a *bufio.Reader and an io.Writer (or a
// []byte) handed to it and must not touch sockets, deadlines or pools: the
// http relay in package proxy owns the connections, this package tells it
// what the bytes mean.
//
// # Use
//
// One Parser and one Request (client side) or Response (server side) per
// connection; both keep their buffers, so reading a message allocates
// nothing in steady state. ReadRequest / ReadResponse consume exactly one
// head from the bufio.Reader (a pipelined next request stays buffered);
// Parser.Body() then streams that message's body, and must reach io.EOF
// before the next head is read. Every error is sticky: after one, the Parser
// refuses to read anything else from the connection, so the bytes after a
// rejected message can never be parsed as a "second request". The caller
// answers with StatusFor(err) (when non-zero) and closes.
//
// # Strictness decisions
//
// Where RFC 9112 lets a recipient choose, this codec rejects (400 unless
// said otherwise). net/http's parser is more lenient on most of these; the
// differential fuzz test (FuzzRequestDifferential) lists every difference.
//
//   - Line endings: every line of a head, of a trailer section and every
//     chunk-size line ends in CRLF. A bare LF is rejected (ErrBareLF), so is
//     a CR anywhere else (ErrBareCR). Empty lines before the request line
//     are not skipped either.
//   - Request line: exactly method SP target SP HTTP-version, single spaces;
//     the method is a token; the version is exactly "HTTP/" DIGIT "." DIGIT;
//     a major version other than 1 is 505 (HTTP/1.2-1.9 are read as 1.1).
//   - Request-target: VCHARs only (no obs-text, no '#'); origin-form with
//     well-formed percent-escapes in the path; "*" for OPTIONS only;
//     authority-form (host:port, port required) for CONNECT only;
//     absolute-form only for http/https, without userinfo. Its authority
//     then overrides Host.
//   - Host: exactly one for HTTP/1.x with x ≥ 1, at most one for HTTP/1.0;
//     its value empty or a valid authority without userinfo or
//     percent-escapes (a reg-name, IPv4 or bracketed IPv6, port 1-5 digits).
//   - Field lines: no obs-fold (a line starting with SP/HTAB, including the
//     first), no whitespace between name and colon, token names, values of
//     VCHAR / obs-text / SP / HTAB only (NUL, CR, LF and other CTLs are
//     rejected). Leading and trailing whitespace of values is removed.
//   - Content-Length: 1*DIGIT within int64. Repeats are rejected even when
//     identical ("5, 5" or two fields "5": ErrDuplicateContentLength), as
//     RFC 9110 8.6 allows; differing ones with ErrConflictingContentLength.
//   - Transfer-Encoding: only chunked is implemented. With Content-Length
//     too: 400 (ErrContentLengthWithTE). In an HTTP/1.0 message: 400. List
//     syntax errors (empty elements, non-tokens, parameters on chunked): 400.
//     chunked not last, or more than once: 400 (ErrChunkedNotLast). Any
//     other coding (gzip, xchunked, identity, ...) with chunked last or
//     without chunked: 501 (ErrUnsupportedTransferEncoding). A response
//     whose codings do not end in chunked is rejected too instead of being
//     read until close.
//   - Trailer field naming Content-Length, Transfer-Encoding or Trailer: 400
//     (as net/http does for chunked messages; here for all).
//   - Chunked coding: chunk-size is 1 to 16 hex digits within int64
//     (ErrChunkSizeOverflow); extensions must follow the RFC grammar
//     without its optional whitespace (";name=value", value a token or a
//     quoted-string), are
//     bounded per line (Limits.MaxChunkExtension) and per body
//     (Limits.MaxHeaderBytes), and are dropped. Any whitespace in a chunk-size line is
//     rejected. Chunk data must be followed by CRLF.
//   - Trailers: the trailer section is parsed with the field-line rules and
//     limits of a head, exposed by BodyReader.Trailers, and passed through
//     by BodyReader.Forward when it re-encodes chunked, minus the fields a
//     trailer must not carry (framing, Host, hop-by-hop).
//   - Bodies are forwarded re-encoded, never copied raw from the wire as
//     chunked: what the next hop sees is exactly what this codec parsed.
//   - Responses: status 100-599 only; the SP after the code may be omitted
//     when there is no reason phrase. 1xx, 204, 304 and responses to HEAD
//     have no body whatever their fields say (their framing fields are
//     still checked); 101 and 2xx to CONNECT make a tunnel; a response
//     without Content-Length or chunked is read until close.
//   - Hop-by-hop (RFC 9110 7.6.1): Connection, the fields it names,
//     Keep-Alive, Proxy-Connection, TE, Transfer-Encoding and Upgrade are
//     not forwarded (Upgrade is when the caller tunnels); Trailer is
//     forwarded (end-to-end in RFC 9110); Content-Length and Host are
//     re-emitted by the codec.
//
// # Limits
//
// Every read is bounded (Limits): request line (414), field section bytes
// and count (431), chunk extensions, trailer section. Keep-Alive parameters
// of responses (timeout=N, max=M) are parsed for the pool.
package http1
