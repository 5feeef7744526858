package http1

import (
	"bufio"
	"io"
	"math"
	"strconv"
)

// chunked decoder states
const (
	stSize    uint8 = iota // expecting a chunk-size line
	stData                 // inside chunk data (n bytes left)
	stDataEnd              // expecting the CRLF after chunk data
)

// BodyReader streams one message body from a *bufio.Reader, never holding
// more of it than the caller's buffer. It is an io.Reader that returns the
// decoded body and then io.EOF; a body cut short fails with
// io.ErrUnexpectedEOF; a malformed chunked coding with one of the package's
// sentinels. Errors are sticky.
//
// The zero value is an empty body at EOF. Reset reuses it for the next
// message; a Parser embeds one per connection (Parser.Body), so neither
// allocates in steady state.
type BodyReader struct {
	br      *bufio.Reader
	framing Framing
	n       int64 // Length: bytes left; Chunked: bytes left in the chunk
	state   uint8
	err     error // sticky; io.EOF once the body is complete
	lim     Limits
	extLeft int // chunk-extension bytes left for this body

	line     []byte // chunk-size line
	traw     []byte // trailer section
	tspans   []span
	trailers []Header
	scratch  [20]byte
}

// Reset prepares b to read a body framed by f (n is the length for
// FramingLength, ignored otherwise) from br, with lim bounding chunk lines
// and trailers.
func (b *BodyReader) Reset(br *bufio.Reader, f Framing, n int64, lim Limits) {
	b.br, b.framing, b.n, b.state = br, f, 0, stSize
	b.lim = lim.resolved()
	b.extLeft = b.lim.MaxHeaderBytes
	b.err = nil
	b.trailers = b.trailers[:0]
	switch f {
	case FramingNone:
		b.err = io.EOF
	case FramingLength:
		b.n = n
		if n <= 0 {
			b.err = io.EOF
		}
	}
}

// Framing returns the framing b was reset with.
func (b *BodyReader) Framing() Framing { return b.framing }

// Done reports whether the body was read to its end.
func (b *BodyReader) Done() bool { return b.err == io.EOF }

// Err returns the sticky read error: nil while reading, io.EOF once done.
func (b *BodyReader) Err() error { return b.err }

// Trailers returns the trailer fields of a chunked body once it was read to
// io.EOF; they alias b's buffer until the next Reset.
func (b *BodyReader) Trailers() []Header { return b.trailers }

// Read implements io.Reader over the decoded body.
func (b *BodyReader) Read(p []byte) (int, error) {
	if b.err != nil {
		return 0, b.err
	}
	switch b.framing {
	case FramingLength:
		if int64(len(p)) > b.n {
			p = p[:b.n]
		}
		n, err := b.br.Read(p)
		b.n -= int64(n)
		if b.n == 0 {
			b.err = io.EOF
			return n, nil
		}
		if err != nil {
			if err == io.EOF {
				err = io.ErrUnexpectedEOF
			}
			b.err = err
		}
		return n, nil
	case FramingUntilClose:
		n, err := b.br.Read(p)
		if err != nil {
			b.err = err
		}
		return n, nil
	case FramingChunked:
		return b.readChunked(p)
	}
	b.err = io.EOF
	return 0, io.EOF
}

func (b *BodyReader) readChunked(p []byte) (int, error) {
	for {
		switch b.state {
		case stSize:
			if err := b.readChunkSize(); err != nil {
				b.err = err
				return 0, err
			}
			if b.n == 0 {
				if err := b.readTrailers(); err != nil {
					b.err = err
					return 0, err
				}
				b.err = io.EOF
				return 0, io.EOF
			}
			b.state = stData
		case stData:
			if len(p) == 0 {
				return 0, nil
			}
			if int64(len(p)) > b.n {
				p = p[:b.n]
			}
			n, err := b.br.Read(p)
			b.n -= int64(n)
			if b.n == 0 {
				b.state = stDataEnd
			}
			if err != nil && b.n > 0 {
				if err == io.EOF {
					err = io.ErrUnexpectedEOF
				}
				b.err = err
			}
			if n > 0 || b.err != nil {
				return n, nil
			}
		case stDataEnd:
			c1, err := b.br.ReadByte()
			if err == nil {
				var c2 byte
				c2, err = b.br.ReadByte()
				if err == nil && (c1 != '\r' || c2 != '\n') {
					err = ErrBadChunk
				}
			}
			if err != nil {
				if err == io.EOF {
					err = io.ErrUnexpectedEOF
				}
				b.err = err
				return 0, err
			}
			b.state = stSize
		}
	}
}

// readChunkSize reads chunk-size [chunk-ext] CRLF (RFC 9112 7.1) into b.n.
// The size is 1 to 16 hex digits within int64; extensions must follow the
// grammar without whitespace (";" token ["=" (token / quoted-string)]) and
// stay within MaxChunkExtension per line and MaxHeaderBytes per body. They
// are then ignored.
func (b *BodyReader) readChunkSize() error {
	max := 16 + b.lim.MaxChunkExtension + 2
	var err error
	b.line, err = readLine(b.br, b.line[:0], max, ErrChunkExtensionTooLong, false)
	if err == ErrChunkExtensionTooLong {
		hex := 0
		for hex < len(b.line) && class[b.line[hex]]&cHex != 0 {
			hex++
		}
		if hex > 16 {
			return errLine(ErrChunkSizeOverflow, b.line)
		}
		return errLine(err, b.line)
	}
	if err != nil {
		return err
	}
	line, err := checkEOL(b.line)
	if err != nil {
		return err
	}
	i := 0
	var n uint64
	for i < len(line) && class[line[i]]&cHex != 0 {
		if i == 16 {
			return errLine(ErrChunkSizeOverflow, line)
		}
		n = n<<4 | uint64(unhex(line[i]))
		i++
	}
	if i == 0 {
		return errLine(ErrBadChunk, line)
	}
	if n > math.MaxInt64 {
		return errLine(ErrChunkSizeOverflow, line)
	}
	ext := line[i:]
	if len(ext) > 0 {
		b.extLeft -= len(ext)
		if len(ext) > b.lim.MaxChunkExtension || b.extLeft < 0 {
			return errLine(ErrChunkExtensionTooLong, line)
		}
		if !validChunkExt(ext) {
			return errLine(ErrBadChunk, line)
		}
	}
	b.n = int64(n)
	return nil
}

func unhex(c byte) byte {
	switch {
	case c <= '9':
		return c - '0'
	case c >= 'a':
		return c - 'a' + 10
	}
	return c - 'A' + 10
}

// validChunkExt checks *( ";" chunk-ext-name [ "=" chunk-ext-val ] ) with
// nothing after it. The BWS the grammar allows around ';' and '=' is
// refused: nobody sends it, net/http refuses it before ';', and a proxy
// gains nothing by accepting what the next hop may read differently.
func validChunkExt(e []byte) bool {
	i := 0
	token := func() bool {
		s := i
		for i < len(e) && class[e[i]]&cToken != 0 {
			i++
		}
		return i > s
	}
	for i < len(e) {
		if e[i] != ';' {
			return false
		}
		i++
		if !token() {
			return false
		}
		if i < len(e) && e[i] == '=' {
			i++
			if i < len(e) && e[i] == '"' {
				if !quoted(e, &i) {
					return false
				}
			} else if !token() {
				return false
			}
		}
	}
	return true
}

// quoted advances *i over a quoted-string starting at e[*i] == '"'.
func quoted(e []byte, i *int) bool {
	k := *i + 1
	for k < len(e) {
		c := e[k]
		switch {
		case c == '"':
			*i = k + 1
			return true
		case c == '\\':
			if k+1 >= len(e) || (class[e[k+1]]&cField == 0 && !isOWS(e[k+1])) {
				return false
			}
			k += 2
		case class[c]&cQDText != 0:
			k++
		default:
			return false
		}
	}
	return false
}

// readTrailers reads the trailer section after the last chunk, with the
// field-line rules of a head.
func (b *BodyReader) readTrailers() error {
	var err error
	b.traw, b.tspans, err = readFields(b.br, b.traw[:0], b.tspans[:0], b.lim.MaxHeaderBytes, b.lim.MaxHeaders)
	if err != nil {
		return err
	}
	b.trailers = makeHeaders(b.trailers, b.traw, b.tspans)
	return nil
}

// Forward copies the rest of the body to w through buf (which must not be
// empty), never holding more than len(buf) bytes of it.
//
// With chunked false it writes the decoded bytes (a Content-Length body
// passes through verbatim). With chunked true it writes the chunked coding
// whatever the input framing: each read becomes one chunk (chunk extensions
// are dropped), then the last chunk, the trailer fields of a chunked input
// except the ones a trailer must not carry (framing, routing and hop-by-hop
// fields: Content-Length, Transfer-Encoding, Host, Connection, Keep-Alive,
// Proxy-Connection, TE, Trailer, Upgrade, Expect), and the final CRLF.
//
// It returns the body bytes written. A read failure is also left in b.Err();
// an error with b.Err() still nil came from w.
func (b *BodyReader) Forward(w io.Writer, buf []byte, chunked bool) (int64, error) {
	var total int64
	for {
		n, rerr := b.Read(buf)
		if n > 0 {
			if chunked {
				hdr := strconv.AppendUint(b.scratch[:0], uint64(n), 16)
				hdr = append(hdr, '\r', '\n')
				if _, err := w.Write(hdr); err != nil {
					return total, err
				}
			}
			if _, err := w.Write(buf[:n]); err != nil {
				return total, err
			}
			total += int64(n)
			if chunked {
				if _, err := w.Write(crlf); err != nil {
					return total, err
				}
			}
		}
		if rerr == io.EOF {
			break
		}
		if rerr != nil {
			return total, rerr
		}
	}
	if !chunked {
		return total, nil
	}
	out := append(b.line[:0], "0\r\n"...)
	for _, t := range b.trailers {
		if t.hop || fieldKind(t.Name) != kOther {
			continue
		}
		out = append(out, t.Name...)
		out = append(out, ':', ' ')
		out = append(out, t.Value...)
		out = append(out, '\r', '\n')
	}
	out = append(out, '\r', '\n')
	b.line = out
	_, err := w.Write(out)
	return total, err
}

var crlf = []byte("\r\n")
