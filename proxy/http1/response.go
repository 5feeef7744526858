package http1

import (
	"bufio"
	"io"
	"time"
)

// ReadResponse reads one response head from br into resp and prepares
// p.Body() for its body. method is the method of the request this response
// answers (it decides the framing of responses to HEAD and CONNECT).
//
// For a 1xx other than 101 the body is empty and another head follows: call
// ReadResponse again. After 101, or a 2xx to CONNECT, resp.Tunnel is set and
// the connection carries opaque bytes; the parser must not be used again.
// Errors are sticky as for ReadRequest; status-line overflow is
// ErrHeaderTooLarge.
func (p *Parser) ReadResponse(br *bufio.Reader, resp *Response, method []byte) error {
	if err := p.ready(); err != nil {
		return err
	}
	if err := p.readResponse(br, resp, method); err != nil {
		if err == io.EOF {
			p.err = io.EOF
			return io.EOF
		}
		return p.fail(err)
	}
	p.body.Reset(br, resp.Framing, resp.ContentLength, p.Limits)
	return nil
}

func (p *Parser) readResponse(br *bufio.Reader, resp *Response, method []byte) error {
	lim := p.Limits.resolved()
	raw := resp.raw[:0]
	var err error
	raw, err = readLine(br, raw, lim.MaxRequestLine, ErrHeaderTooLarge, true)
	resp.raw = raw
	if err != nil {
		return err
	}
	line, err := checkEOL(raw)
	if err != nil {
		return err
	}
	// HTTP-version SP 3DIGIT [SP reason-phrase]; the SP before an empty
	// reason is optional (RFC 9112 4 requires it, many servers omit it).
	if len(line) < 12 || line[8] != ' ' {
		return errLine(ErrMalformedStatusLine, line)
	}
	minor, err := parseVersion(line[:8])
	if err != nil {
		if err == ErrMalformedVersion {
			err = ErrMalformedStatusLine
		}
		return errLine(err, line)
	}
	status := 0
	for _, c := range line[9:12] {
		if class[c]&cDigit == 0 {
			return errLine(ErrMalformedStatusLine, line)
		}
		status = status*10 + int(c-'0')
	}
	if status < 100 || status > 599 {
		return errLine(ErrMalformedStatusLine, line)
	}
	reasonStart := len(line)
	if len(line) > 12 {
		if line[12] != ' ' {
			return errLine(ErrMalformedStatusLine, line)
		}
		reasonStart = 13
		for _, c := range line[13:] {
			if class[c]&cField == 0 && !isOWS(c) {
				return errLine(ErrMalformedStatusLine, line)
			}
		}
	}
	lineEnd := len(line)

	spans := resp.spans[:0]
	raw, spans, err = readFields(br, raw, spans, lim.MaxHeaderBytes, lim.MaxHeaders)
	resp.raw, resp.spans = raw, spans
	if err != nil {
		return err
	}
	resp.Proto = raw[:8:8]
	resp.Minor = minor
	resp.Status = status
	resp.Reason = raw[reasonStart:lineEnd:lineEnd]
	resp.Headers = makeHeaders(resp.Headers, raw, spans)

	st := &p.st
	if err := st.collect(resp.Headers, true); err != nil {
		return err
	}
	resp.ContentLength = -1
	if st.clSeen {
		resp.ContentLength = st.cl
	}
	if minor == 0 {
		resp.KeepAlive = st.connKeep && !st.connClose
	} else {
		resp.KeepAlive = !st.connClose
	}
	resp.KeepAliveTimeout = time.Duration(st.kaTimeout) * time.Second
	resp.KeepAliveMax = int(st.kaMax)
	resp.Tunnel = status == 101 || string(method) == "CONNECT" && status/100 == 2

	// Framing (RFC 9112 6.3). Transfer-Encoding is checked even where it
	// does not frame (HEAD, 1xx, 204, 304): a member that sends a bad one is
	// broken, and strictness costs nothing here.
	if st.teSeen {
		if err := st.checkTE(minor); err != nil {
			return err
		}
	}
	switch {
	case resp.Tunnel:
		resp.Framing = FramingNone
		resp.KeepAlive = false
	case status < 200 || status == 204 || status == 304 || string(method) == "HEAD":
		resp.Framing = FramingNone
	case st.teSeen:
		resp.Framing = FramingChunked
	case st.clSeen:
		resp.Framing = FramingLength
	default:
		resp.Framing = FramingUntilClose
		resp.KeepAlive = false
	}
	return nil
}
