package bench

import (
	"bufio"
	"bytes"
	"errors"
	"fmt"
	"io"
)

// The minimal HTTP/1.1 client: one prebuilt request written as is, and a
// response reader that finds the status and the body framing
// (Content-Length, chunked or until close) and discards the body. It does
// not aim at strictness (the proxy's codec does); it aims at reading any
// sane server correctly without allocating per response.

// errProtocol wraps a response bench could not parse.
var errProtocol = errors.New("bench: malformed response")

// maxLine bounds a status or header line (the bufio.Reader's size).
const maxLine = 16 << 10

// buildRequest returns the bytes of the request every worker sends.
// askClose adds Connection: close.
func buildRequest(o Options, t target, askClose bool) []byte {
	var b bytes.Buffer
	fmt.Fprintf(&b, "%s %s HTTP/1.1\r\nHost: %s\r\n", o.Method, t.path, t.host)
	hasUA := false
	for _, h := range o.Headers {
		name, _, _ := bytes.Cut([]byte(h), []byte(":"))
		if bytes.EqualFold(name, []byte("User-Agent")) {
			hasUA = true
		}
		b.WriteString(h)
		b.WriteString("\r\n")
	}
	if !hasUA {
		b.WriteString("User-Agent: tether-bench\r\n")
	}
	if o.BodySize > 0 || o.Method == "POST" || o.Method == "PUT" {
		fmt.Fprintf(&b, "Content-Length: %d\r\n", o.BodySize)
	}
	if askClose {
		b.WriteString("Connection: close\r\n")
	}
	b.WriteString("\r\n")
	for range o.BodySize {
		b.WriteByte('x')
	}
	return b.Bytes()
}

// respHead is what bench needs from a response head.
type respHead struct {
	status  int
	closing bool  // Connection: close, or HTTP/1.0 without keep-alive
	chunked bool  // Transfer-Encoding ends in chunked
	length  int64 // Content-Length; -1 when absent
}

// readResponse reads one response from br and discards its body. It skips
// 1xx interim responses. closing reports that the connection cannot carry
// another request: the server said Connection: close (or spoke HTTP/1.0
// without keep-alive), or the body ran until close. A connection that
// ended before the response did returns io.ErrUnexpectedEOF.
func readResponse(br *bufio.Reader, head bool) (status int, closing bool, err error) {
	var h respHead
	for {
		if h, err = readHead(br); err != nil {
			return 0, false, err
		}
		if h.status >= 200 || h.status == 101 {
			break
		}
	}
	switch {
	case head || h.status == 204 || h.status == 304 || h.status == 101:
		return h.status, h.closing || h.status == 101, nil
	case h.chunked:
		return h.status, h.closing, discardChunked(br)
	case h.length >= 0:
		if _, err := br.Discard(int(h.length)); err != nil {
			return h.status, h.closing, eofIsShort(err)
		}
		return h.status, h.closing, nil
	default: // the body runs until the server closes
		if _, err := io.Copy(io.Discard, br); err != nil {
			return h.status, true, err
		}
		return h.status, true, nil
	}
}

// readHead reads a status line and the header fields up to the empty line.
func readHead(br *bufio.Reader) (respHead, error) {
	h := respHead{length: -1}
	line, err := readLine(br)
	if err != nil {
		return h, err
	}
	// HTTP/1.x SSS[ reason]
	if len(line) < 12 || !bytes.HasPrefix(line, []byte("HTTP/1.")) || line[8] != ' ' {
		return h, fmt.Errorf("%w: status line %q", errProtocol, truncate(line))
	}
	http10 := line[7] == '0'
	for _, c := range line[9:12] {
		if c < '0' || c > '9' {
			return h, fmt.Errorf("%w: status line %q", errProtocol, truncate(line))
		}
		h.status = h.status*10 + int(c-'0')
	}
	keepAlive := false
	for {
		line, err := readLine(br)
		if err != nil {
			return h, err
		}
		if len(line) == 0 {
			break
		}
		i := bytes.IndexByte(line, ':')
		if i < 0 {
			return h, fmt.Errorf("%w: header line %q", errProtocol, truncate(line))
		}
		// The three fields bench reads have distinct lengths: compare
		// names of those lengths only (most lines are none of them).
		name := line[:i]
		switch len(name) {
		case len("Content-Length"):
			if !bytes.EqualFold(name, []byte("Content-Length")) {
				continue
			}
			value := bytes.TrimSpace(line[i+1:])
			n, err := parseLength(value)
			if err != nil {
				return h, fmt.Errorf("%w: Content-Length %q", errProtocol, truncate(value))
			}
			h.length = n
		case len("Transfer-Encoding"):
			if bytes.EqualFold(name, []byte("Transfer-Encoding")) {
				h.chunked = hasSuffixFold(bytes.TrimSpace(line[i+1:]), "chunked")
			}
		case len("Connection"):
			if !bytes.EqualFold(name, []byte("Connection")) {
				continue
			}
			value := bytes.TrimSpace(line[i+1:])
			if containsFold(value, "close") {
				h.closing = true
			}
			if containsFold(value, "keep-alive") {
				keepAlive = true
			}
		}
	}
	if http10 && !keepAlive {
		h.closing = true
	}
	return h, nil
}

// parseLength parses a Content-Length value: 1*DIGIT (RFC 9110), at most
// 18 digits so that it cannot overflow. No allocation, unlike going
// through a string for strconv.
func parseLength(v []byte) (int64, error) {
	if len(v) == 0 || len(v) > 18 {
		return 0, errProtocol
	}
	var n int64
	for _, c := range v {
		if c < '0' || c > '9' {
			return 0, errProtocol
		}
		n = n*10 + int64(c-'0')
	}
	return n, nil
}

// readLine returns one line without its CRLF (or LF). The slice is valid
// until the next read.
func readLine(br *bufio.Reader) ([]byte, error) {
	line, err := br.ReadSlice('\n')
	if err == bufio.ErrBufferFull {
		return nil, fmt.Errorf("%w: line longer than %d bytes", errProtocol, maxLine)
	}
	if err != nil {
		return nil, eofIsShort(err)
	}
	line = line[:len(line)-1]
	if n := len(line); n > 0 && line[n-1] == '\r' {
		line = line[:n-1]
	}
	return line, nil
}

// discardChunked reads a chunked body up to and including its trailers.
func discardChunked(br *bufio.Reader) error {
	for {
		line, err := readLine(br)
		if err != nil {
			return err
		}
		if i := bytes.IndexByte(line, ';'); i >= 0 {
			line = line[:i]
		}
		line = bytes.TrimSpace(line)
		var size int64
		if len(line) == 0 || len(line) > 15 {
			return fmt.Errorf("%w: chunk size %q", errProtocol, truncate(line))
		}
		for _, c := range line {
			var d byte
			switch {
			case c >= '0' && c <= '9':
				d = c - '0'
			case c >= 'a' && c <= 'f':
				d = c - 'a' + 10
			case c >= 'A' && c <= 'F':
				d = c - 'A' + 10
			default:
				return fmt.Errorf("%w: chunk size %q", errProtocol, truncate(line))
			}
			size = size<<4 | int64(d)
		}
		if size == 0 {
			for { // trailers, up to the empty line
				line, err := readLine(br)
				if err != nil {
					return err
				}
				if len(line) == 0 {
					return nil
				}
			}
		}
		if _, err := br.Discard(int(size)); err != nil {
			return eofIsShort(err)
		}
		if line, err := readLine(br); err != nil {
			return err
		} else if len(line) != 0 {
			return fmt.Errorf("%w: no CRLF after chunk data", errProtocol)
		}
	}
}

// eofIsShort turns io.EOF (the conn ended mid-response) into
// io.ErrUnexpectedEOF.
func eofIsShort(err error) error {
	if err == io.EOF {
		return io.ErrUnexpectedEOF
	}
	return err
}

func truncate(b []byte) string {
	if len(b) > 64 {
		return string(b[:64]) + "..."
	}
	return string(b)
}

// containsFold reports whether the comma-separated list v holds token.
func containsFold(v []byte, token string) bool {
	for len(v) > 0 {
		var item []byte
		item, v, _ = bytes.Cut(v, []byte(","))
		if bytes.EqualFold(bytes.TrimSpace(item), []byte(token)) {
			return true
		}
	}
	return false
}

// hasSuffixFold reports whether the last item of the list v is token.
func hasSuffixFold(v []byte, token string) bool {
	if i := bytes.LastIndexByte(v, ','); i >= 0 {
		v = v[i+1:]
	}
	return bytes.EqualFold(bytes.TrimSpace(v), []byte(token))
}
