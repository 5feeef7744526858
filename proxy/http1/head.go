package http1

import (
	"bufio"
	"bytes"
	"io"
	"math"
	"time"
)

// Default limits (Limits fields left at zero).
const (
	DefaultMaxRequestLine    = 8 << 10  // like nginx's large_client_header_buffers
	DefaultMaxHeaderBytes    = 32 << 10 // field section, each trailer section too
	DefaultMaxHeaders        = 100      // like Apache's LimitRequestFields
	DefaultMaxChunkExtension = 256      // per chunk-size line
)

// Limits bound every read of the codec. The zero value is valid: each zero
// field means its Default... constant; a negative value is treated as zero
// (the default) too.
type Limits struct {
	// MaxRequestLine bounds the request line (or status line), CRLF included.
	// Beyond it a request fails with ErrURITooLong (414), a response with
	// ErrHeaderTooLarge. 0 = DefaultMaxRequestLine.
	MaxRequestLine int
	// MaxHeaderBytes bounds the field section after the start line, every
	// field line's CRLF and the final empty line included; the trailer
	// section of a chunked body has the same bound, and so has the sum of a
	// body's chunk extensions. Beyond: ErrHeaderTooLarge (431).
	// 0 = DefaultMaxHeaderBytes.
	MaxHeaderBytes int
	// MaxHeaders bounds the number of field lines (and of trailer lines).
	// Beyond: ErrTooManyHeaders (431). 0 = DefaultMaxHeaders.
	MaxHeaders int
	// MaxChunkExtension bounds the chunk extensions of one chunk-size line
	// (the bytes after the hex size). Beyond: ErrChunkExtensionTooLong.
	// 0 = DefaultMaxChunkExtension.
	MaxChunkExtension int
}

func (l Limits) resolved() Limits {
	if l.MaxRequestLine <= 0 {
		l.MaxRequestLine = DefaultMaxRequestLine
	}
	if l.MaxHeaderBytes <= 0 {
		l.MaxHeaderBytes = DefaultMaxHeaderBytes
	}
	if l.MaxHeaders <= 0 {
		l.MaxHeaders = DefaultMaxHeaders
	}
	if l.MaxChunkExtension <= 0 {
		l.MaxChunkExtension = DefaultMaxChunkExtension
	}
	return l
}

// Framing says how a message's body is delimited (RFC 9112 6.3).
type Framing uint8

const (
	// FramingNone: the message has no body (a request without
	// Content-Length or Transfer-Encoding; a response to HEAD; 1xx, 204, 304).
	FramingNone Framing = iota
	// FramingLength: exactly ContentLength bytes follow (possibly 0).
	FramingLength
	// FramingChunked: the chunked transfer coding, then a trailer section.
	FramingChunked
	// FramingUntilClose: a response without a length; the body ends when the
	// member closes the connection, which therefore cannot be reused.
	FramingUntilClose
)

func (f Framing) String() string {
	switch f {
	case FramingNone:
		return "none"
	case FramingLength:
		return "length"
	case FramingChunked:
		return "chunked"
	case FramingUntilClose:
		return "until-close"
	}
	return "invalid"
}

// Header is one field line. Name and Value alias the message's own buffer:
// they are valid until the next Read... call on the same Request/Response.
// Value has its leading and trailing whitespace removed.
type Header struct {
	Name, Value []byte
	// hop is set by the parser on fields that the Connection field names:
	// they are not forwarded.
	hop bool
}

// span locates one field line in a raw buffer while the buffer may still
// grow (and move); the Header slices are made once reading is done.
type span struct{ ns, ne, vs, ve uint32 }

// Request is a parsed request head. Reuse one per connection: its buffers
// are kept and overwritten by the next ReadRequest, which then allocates
// nothing. Every []byte aliases that buffer.
type Request struct {
	Method []byte
	Target []byte // the request-target as received
	Proto  []byte // "HTTP/1.0" or "HTTP/1.1" (or HTTP/1.x, treated as 1.1)
	Minor  int    // the minor version: 0 or ≥ 1

	Headers []Header // in order of arrival, Host and framing fields included

	// Host is the authority of the request: that of an absolute-form target
	// (whose Host field is then ignored, RFC 9112 3.2.2), else the Host
	// field's value (possibly empty for HTTP/1.0).
	Host []byte

	Framing       Framing
	ContentLength int64 // the body's length when Framing == FramingLength

	// KeepAlive: the client wants the connection kept after this exchange
	// (HTTP/1.1 unless "Connection: close"; HTTP/1.0 only with
	// "Connection: keep-alive").
	KeepAlive bool
	// ExpectContinue: "Expect: 100-continue" was sent.
	ExpectContinue bool
	// Upgrade: an Upgrade field is present and listed in Connection
	// (HTTP/1.1 only); the proxy may tunnel after a 101.
	Upgrade bool

	raw   []byte
	spans []span
}

// Header returns the value of the first field called name (any ASCII case),
// or nil.
func (r *Request) Header(name string) []byte { return lookup(r.Headers, name) }

// IsMethod reports whether the method is m (case-sensitive, as methods are).
func (r *Request) IsMethod(m string) bool { return string(r.Method) == m }

// Response is a parsed response head; reuse one per connection like Request.
type Response struct {
	Proto  []byte
	Minor  int
	Status int
	Reason []byte

	Headers []Header

	Framing Framing
	// ContentLength is the declared Content-Length, -1 if none. For
	// FramingLength it is the body's length; for a response to HEAD or a 304
	// it is the length the body would have had (Framing is FramingNone).
	ContentLength int64

	// KeepAlive: the connection may carry another request after this
	// response's body (false for FramingUntilClose, "Connection: close",
	// HTTP/1.0 without "Connection: keep-alive", and tunnels).
	KeepAlive bool
	// KeepAliveTimeout and KeepAliveMax come from "Keep-Alive: timeout=N,
	// max=M"; zero when absent or malformed (the field is advisory).
	KeepAliveTimeout time.Duration
	KeepAliveMax     int
	// Tunnel: after this head the connection carries opaque bytes both ways
	// (101 Switching Protocols, or 2xx to CONNECT).
	Tunnel bool

	raw   []byte
	spans []span
}

// Header returns the value of the first field called name, or nil.
func (r *Response) Header(name string) []byte { return lookup(r.Headers, name) }

// Informational reports a 1xx status: another head follows (except after
// 101, which makes a tunnel).
func (r *Response) Informational() bool { return r.Status >= 100 && r.Status < 200 }

func lookup(hs []Header, name string) []byte {
	for i := range hs {
		if len(hs[i].Name) == len(name) && equalFoldString(hs[i].Name, name) {
			return hs[i].Value
		}
	}
	return nil
}

func equalFoldString(b []byte, s string) bool {
	for i := 0; i < len(b); i++ {
		if lower(b[i]) != lower(s[i]) {
			return false
		}
	}
	return true
}

// Parser reads message heads from one connection, one direction. Keep one
// per connection (client side: requests; server side: responses); the zero
// value is ready to use with default Limits.
//
// Errors are sticky: once a Read... call or the body reader failed, every
// later call returns the same error, so leftover bytes of a rejected message
// can never be taken for a next one. The caller closes the connection.
type Parser struct {
	Limits Limits

	err  error
	body BodyReader
	st   headState
}

// Err returns the sticky error, if any.
func (p *Parser) Err() error { return p.err }

// Reset makes p ready for a new connection (the sticky error is cleared).
func (p *Parser) Reset() {
	p.err = nil
	p.body.Reset(nil, FramingNone, 0, p.Limits)
}

// Body returns the reader of the body of the last head read. Read it to
// io.EOF (or Forward it) before reading the next head.
func (p *Parser) Body() *BodyReader { return &p.body }

func (p *Parser) fail(err error) error {
	if p.err == nil {
		p.err = err
	}
	return p.err
}

// ready checks the sticky error and that the previous body was consumed.
func (p *Parser) ready() error {
	if p.err != nil {
		return p.err
	}
	if err := p.body.err; err != io.EOF {
		if err == nil {
			if p.body.br == nil {
				return nil // fresh parser
			}
			return p.fail(ErrBodyNotConsumed)
		}
		return p.fail(err)
	}
	return nil
}

// headState collects what the field section says about framing and
// connection handling.
type headState struct {
	clSeen    bool
	cl        int64
	teSeen    bool
	teBad     bool // syntax error in the list
	teChunked int  // how many times chunked appears
	teLast    bool // the last coding seen is chunked
	teOther   bool // a coding other than chunked
	hostCount int
	host      []byte
	connClose bool
	connKeep  bool
	connUpg   bool
	connOther bool // Connection names other fields
	upgrade   bool
	expect100 bool
	kaTimeout int64
	kaMax     int64
}

// readLine appends one line, LF included, from br to buf. It fails with
// tooLong once the line exceeds max bytes. At io.EOF before any byte of the
// line it returns io.EOF when eofOK, else io.ErrUnexpectedEOF.
func readLine(br *bufio.Reader, buf []byte, max int, tooLong error, eofOK bool) ([]byte, error) {
	start := len(buf)
	for {
		frag, err := br.ReadSlice('\n')
		buf = append(buf, frag...)
		if len(buf)-start > max {
			return buf, tooLong
		}
		switch err {
		case nil:
			return buf, nil
		case bufio.ErrBufferFull:
			continue
		case io.EOF:
			if eofOK && len(buf) == start {
				return buf, io.EOF
			}
			return buf, io.ErrUnexpectedEOF
		default:
			return buf, err
		}
	}
}

// checkEOL checks that line (LF included) ends in CRLF and holds no other
// CR; it returns the line without its CRLF.
func checkEOL(line []byte) ([]byte, error) {
	n := len(line)
	if n < 2 || line[n-2] != '\r' {
		return nil, errLine(ErrBareLF, line)
	}
	if i := bytes.IndexByte(line, '\r'); i != n-2 {
		return nil, errLine(ErrBareCR, line)
	}
	return line[:n-2], nil
}

// readFields reads field lines through the empty line that ends the
// section, appending the bytes to raw and one span per field to spans.
// maxBytes bounds the section (CRLFs included), maxCount the field lines.
func readFields(br *bufio.Reader, raw []byte, spans []span, maxBytes, maxCount int) ([]byte, []span, error) {
	start := len(raw)
	for {
		used := len(raw) - start
		lineStart := len(raw)
		var err error
		raw, err = readLine(br, raw, maxBytes-used, ErrHeaderTooLarge, false)
		if err != nil {
			return raw, spans, err
		}
		line, err := checkEOL(raw[lineStart:])
		if err != nil {
			return raw, spans, err
		}
		if len(line) == 0 {
			return raw, spans, nil
		}
		if len(spans) >= maxCount {
			return raw, spans, ErrTooManyHeaders
		}
		s, err := parseField(line)
		if err != nil {
			return raw, spans, err
		}
		off := uint32(lineStart)
		s.ns += off
		s.ne += off
		s.vs += off
		s.ve += off
		spans = append(spans, s)
	}
}

// parseField splits a field line (without CRLF) into name and value
// offsets relative to line.
func parseField(line []byte) (span, error) {
	if isOWS(line[0]) {
		return span{}, errLine(ErrObsFold, line)
	}
	i := 0
	for i < len(line) && class[line[i]]&cToken != 0 {
		i++
	}
	if i == len(line) {
		return span{}, errLine(ErrInvalidHeaderName, line) // no colon
	}
	if line[i] != ':' {
		if isOWS(line[i]) {
			j := i
			for j < len(line) && isOWS(line[j]) {
				j++
			}
			if j < len(line) && line[j] == ':' {
				return span{}, errLine(ErrSpaceBeforeColon, line)
			}
		}
		return span{}, errLine(ErrInvalidHeaderName, line)
	}
	if i == 0 {
		return span{}, errLine(ErrInvalidHeaderName, line)
	}
	s := span{ns: 0, ne: uint32(i)}
	v := i + 1
	for v < len(line) && isOWS(line[v]) {
		v++
	}
	e := len(line)
	for e > v && isOWS(line[e-1]) {
		e--
	}
	for k := v; k < e; k++ {
		if c := line[k]; class[c]&cField == 0 && !isOWS(c) {
			return span{}, errLine(ErrInvalidHeaderValue, line)
		}
	}
	s.vs, s.ve = uint32(v), uint32(e)
	return s, nil
}

// makeHeaders turns spans into Headers over the final raw buffer.
func makeHeaders(dst []Header, raw []byte, spans []span) []Header {
	dst = dst[:0]
	for _, s := range spans {
		dst = append(dst, Header{
			Name:  raw[s.ns:s.ne:s.ne],
			Value: raw[s.vs:s.ve:s.ve],
		})
	}
	return dst
}

// ReadRequest reads one request head from br into req and prepares
// p.Body() for its body. It consumes exactly the head's bytes: a pipelined
// next request stays in br. The previous request's body must have been read
// to its end (ErrBodyNotConsumed otherwise).
//
// It returns io.EOF when br ends cleanly before a new request, and a sticky
// error wrapping one of the package's sentinels for a bad head.
func (p *Parser) ReadRequest(br *bufio.Reader, req *Request) error {
	if err := p.ready(); err != nil {
		return err
	}
	if err := p.readRequest(br, req); err != nil {
		if err == io.EOF {
			// A clean end of the connection; still sticky.
			p.err = io.EOF
			return io.EOF
		}
		return p.fail(err)
	}
	p.body.Reset(br, req.Framing, req.ContentLength, p.Limits)
	return nil
}

func (p *Parser) readRequest(br *bufio.Reader, req *Request) error {
	lim := p.Limits.resolved()
	raw := req.raw[:0]
	var err error
	raw, err = readLine(br, raw, lim.MaxRequestLine, ErrURITooLong, true)
	req.raw = raw
	if err != nil {
		return err
	}
	line, err := checkEOL(raw)
	if err != nil {
		return err
	}
	// method SP request-target SP HTTP-version
	sp1 := bytes.IndexByte(line, ' ')
	if sp1 < 0 {
		return errLine(ErrMalformedRequestLine, line)
	}
	if !isToken(line[:sp1]) {
		return errLine(ErrInvalidMethod, line)
	}
	rest := line[sp1+1:]
	sp2 := bytes.IndexByte(rest, ' ')
	if sp2 < 0 {
		return errLine(ErrMalformedRequestLine, line)
	}
	target := rest[:sp2]
	// A well-formed but unsupported version (an HTTP/2 preface) is 505
	// whatever the target; then the target, then the version's syntax.
	minor, verr := parseVersion(rest[sp2+1:])
	if verr == ErrUnsupportedVersion {
		return errLine(verr, line)
	}
	authA, authB, err := checkTarget(line[:sp1], target)
	if err != nil {
		return errLine(err, line)
	}
	if verr != nil {
		return errLine(verr, line)
	}
	targetStart := sp1 + 1
	targetEnd := targetStart + sp2
	protoStart := targetEnd + 1
	lineEnd := len(line)

	// Field section.
	spans := req.spans[:0]
	raw, spans, err = readFields(br, raw, spans, lim.MaxHeaderBytes, lim.MaxHeaders)
	req.raw, req.spans = raw, spans
	if err != nil {
		return err
	}
	req.Method = raw[:sp1:sp1]
	req.Target = raw[targetStart:targetEnd:targetEnd]
	req.Proto = raw[protoStart:lineEnd:lineEnd]
	req.Minor = minor
	req.Headers = makeHeaders(req.Headers, raw, spans)

	st := &p.st
	if err := st.collect(req.Headers, false); err != nil {
		return err
	}
	if st.hostCount > 1 {
		return ErrMultipleHost
	}
	if st.hostCount == 0 && minor >= 1 {
		return ErrMissingHost
	}
	req.Host = nil
	if st.hostCount == 1 {
		h := st.host
		if !validHost(h) {
			return errLine(ErrInvalidHost, h)
		}
		req.Host = h
	}
	if authA != authB {
		// absolute-form or CONNECT: the target's authority is the host.
		req.Host = req.Target[authA:authB:authB]
	}

	// Framing (RFC 9112 6.1, 6.3).
	req.Framing, req.ContentLength = FramingNone, 0
	if st.teSeen {
		if err := st.checkTE(minor); err != nil {
			return err
		}
		req.Framing = FramingChunked
	} else if st.clSeen {
		req.Framing, req.ContentLength = FramingLength, st.cl
	}

	if minor == 0 {
		req.KeepAlive = st.connKeep && !st.connClose
	} else {
		req.KeepAlive = !st.connClose
	}
	req.ExpectContinue = st.expect100
	req.Upgrade = minor >= 1 && st.upgrade && st.connUpg
	return nil
}

// parseVersion accepts exactly "HTTP/" DIGIT "." DIGIT and returns the
// minor version; a major other than 1 is ErrUnsupportedVersion.
func parseVersion(v []byte) (int, error) {
	if len(v) != 8 || string(v[:5]) != "HTTP/" || v[6] != '.' ||
		class[v[5]]&cDigit == 0 || class[v[7]]&cDigit == 0 {
		return 0, ErrMalformedVersion
	}
	if v[5] != '1' {
		return 0, ErrUnsupportedVersion
	}
	return int(v[7] - '0'), nil
}

// collect interprets the fields that matter to framing and connection
// handling. It rejects malformed or conflicting framing fields; the
// Transfer-Encoding verdict is left to checkTE.
func (st *headState) collect(hs []Header, response bool) error {
	*st = headState{}
	for i := range hs {
		h := &hs[i]
		h.hop = false
		switch fieldKind(h.Name) {
		case kHost:
			st.hostCount++
			if st.hostCount == 1 {
				st.host = h.Value
			}
		case kContentLength:
			n, err := parseContentLength(h.Value)
			if err != nil {
				return err
			}
			if st.clSeen {
				if n == st.cl {
					return errLine(ErrDuplicateContentLength, h.Value)
				}
				return errLine(ErrConflictingContentLength, h.Value)
			}
			st.clSeen, st.cl = true, n
		case kTransferEncoding:
			st.teSeen = true
			st.parseTE(h.Value)
		case kConnection:
			for rest := h.Value; rest != nil; {
				var e []byte
				e, rest = nextElement(rest)
				switch {
				case equalFold(e, "close"):
					st.connClose = true
				case equalFold(e, "keep-alive"):
					st.connKeep = true
				case equalFold(e, "upgrade"):
					st.connUpg = true
				case len(e) > 0:
					st.connOther = true
				}
			}
		case kUpgrade:
			st.upgrade = true
		case kExpect:
			if equalFold(h.Value, "100-continue") {
				st.expect100 = true
			}
		case kTrailer:
			for rest := h.Value; rest != nil; {
				var e []byte
				e, rest = nextElement(rest)
				switch fieldKind(e) {
				case kContentLength, kTransferEncoding, kTrailer:
					return errLine(ErrBadTrailerField, h.Value)
				}
			}
		case kKeepAlive:
			if response {
				st.parseKeepAlive(h.Value)
			}
		}
	}
	if st.connOther {
		markConnectionNamed(hs)
	}
	return nil
}

// markConnectionNamed flags the fields that a Connection field names.
func markConnectionNamed(hs []Header) {
	for i := range hs {
		if fieldKind(hs[i].Name) != kConnection {
			continue
		}
		for rest := hs[i].Value; rest != nil; {
			var e []byte
			e, rest = nextElement(rest)
			if len(e) == 0 {
				continue
			}
			for j := range hs {
				if len(hs[j].Name) == len(e) && equalFoldBytes(hs[j].Name, e) {
					hs[j].hop = true
				}
			}
		}
	}
}

func equalFoldBytes(a, b []byte) bool {
	for i := range a {
		if lower(a[i]) != lower(b[i]) {
			return false
		}
	}
	return true
}

// parseContentLength accepts 1*DIGIT within int64; a list ("5, 5") is
// rejected as a repeat.
func parseContentLength(v []byte) (int64, error) {
	if len(v) == 0 {
		return 0, errLine(ErrBadContentLength, v)
	}
	var n int64
	for i, c := range v {
		if class[c]&cDigit == 0 {
			if c == ',' {
				first, rest := nextElement(v)
				for rest != nil {
					var e []byte
					e, rest = nextElement(rest)
					if !bytes.Equal(e, first) {
						return 0, errLine(ErrConflictingContentLength, v)
					}
				}
				if i > 0 {
					return 0, errLine(ErrDuplicateContentLength, v)
				}
			}
			return 0, errLine(ErrBadContentLength, v)
		}
		d := int64(c - '0')
		if n > (math.MaxInt64-d)/10 {
			return 0, errLine(ErrBadContentLength, v)
		}
		n = n*10 + d
	}
	return n, nil
}

// parseTE folds one Transfer-Encoding field value into the state.
func (st *headState) parseTE(v []byte) {
	for rest := v; ; {
		var e []byte
		e, rest = nextElement(rest)
		name := e
		params := false
		if i := bytes.IndexByte(e, ';'); i >= 0 {
			name, params = trimOWS(e[:i]), true
		}
		switch {
		case !isToken(name):
			st.teBad = true
		case equalFold(name, "chunked"):
			if params {
				st.teBad = true
			}
			st.teChunked++
			st.teLast = true
		default:
			st.teOther = true
			st.teLast = false
		}
		if rest == nil {
			return
		}
	}
}

// checkTE gives the verdict on a message with Transfer-Encoding: nil means
// chunked framing.
func (st *headState) checkTE(minor int) error {
	switch {
	case st.clSeen:
		return ErrContentLengthWithTE
	case minor == 0:
		return ErrTransferEncodingHTTP10
	case st.teBad:
		return ErrBadTransferEncoding
	case st.teChunked > 1 || st.teChunked == 1 && !st.teLast:
		return ErrChunkedNotLast
	case st.teOther:
		return ErrUnsupportedTransferEncoding
	}
	return nil
}

// parseKeepAlive reads "timeout=N, max=M" (RFC 2068 19.7.1.1); malformed
// parameters are ignored.
func (st *headState) parseKeepAlive(v []byte) {
	for rest := v; rest != nil; {
		var e []byte
		e, rest = nextElement(rest)
		eq := bytes.IndexByte(e, '=')
		if eq < 0 {
			continue
		}
		name, val := trimOWS(e[:eq]), trimOWS(e[eq+1:])
		if len(val) >= 2 && val[0] == '"' && val[len(val)-1] == '"' {
			val = val[1 : len(val)-1]
		}
		n, ok := smallUint(val)
		if !ok {
			continue
		}
		switch {
		case equalFold(name, "timeout"):
			st.kaTimeout = n
		case equalFold(name, "max"):
			st.kaMax = n
		}
	}
}

// smallUint parses up to 9 digits.
func smallUint(b []byte) (int64, bool) {
	if len(b) == 0 || len(b) > 9 {
		return 0, false
	}
	var n int64
	for _, c := range b {
		if class[c]&cDigit == 0 {
			return 0, false
		}
		n = n*10 + int64(c-'0')
	}
	return n, true
}
