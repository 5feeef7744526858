package http1

import "strconv"

// HeadOptions says how AppendRequest and AppendResponse rewrite a head for
// forwarding. The zero value forwards the message as received, minus the
// hop-by-hop fields, framed as it was received.
type HeadOptions struct {
	// Extra fields appended after the forwarded ones (X-Forwarded-For ...).
	// The caller guarantees they are valid (token name, no CR/LF/NUL in the
	// value); they are not checked.
	Extra []Header
	// Close adds "Connection: close" (the last request on a connection that
	// retires, or a response on a client connection that will close).
	Close bool
	// Upgrade keeps the Upgrade field and sends "Connection: upgrade", for a
	// message whose Upgrade flag is set (a request with Request.Upgrade, a
	// 101 response) when the caller tunnels. Ignored when Close is set.
	Upgrade bool
	// Chunk announces "Transfer-Encoding: chunked" for any message that has
	// a body (Framing other than FramingNone); forward the body with
	// BodyReader.Forward(w, buf, true). Without it the message's own framing
	// is announced: Content-Length for FramingLength, chunked for
	// FramingChunked, nothing for FramingUntilClose (and a response framed
	// until close then always gets "Connection: close").
	Chunk bool
}

// AppendRequest appends req's head, rewritten for forwarding, to dst:
//
//	METHOD target HTTP/1.1      (a proxy sends its own version, RFC 9110 6.2)
//	Host: req.Host              (first; received Host fields are dropped)
//	the received fields in order, without hop-by-hop and framing fields
//	framing, Connection, the Extra fields, the empty line
//
// Dropped: Connection, the fields Connection names, Keep-Alive,
// Proxy-Connection, TE, Transfer-Encoding, Content-Length (framing is
// re-announced from req.Framing), Upgrade (unless o.Upgrade), Host (re-sent
// from req.Host). Trailer is end-to-end (RFC 9110 6.6.2) and kept.
func AppendRequest(dst []byte, req *Request, o *HeadOptions) []byte {
	if o == nil {
		o = &HeadOptions{}
	}
	dst = append(dst, req.Method...)
	dst = append(dst, ' ')
	dst = append(dst, req.Target...)
	dst = append(dst, " HTTP/1.1\r\nHost: "...)
	dst = append(dst, req.Host...)
	dst = append(dst, '\r', '\n')
	upgrade := o.Upgrade && req.Upgrade && !o.Close
	dst = appendFields(dst, req.Headers, upgrade)
	dst = appendFraming(dst, req.Framing, req.ContentLength, o.Chunk)
	dst = appendConnection(dst, o.Close, upgrade)
	return appendExtra(dst, o.Extra)
}

// AppendResponse appends resp's head, rewritten for forwarding, to dst, with
// the same field rules as AppendRequest. The status line is "HTTP/1.1 code
// reason". Framing fields: FramingLength and FramingChunked as for requests
// (or chunked with o.Chunk); FramingNone keeps the declared Content-Length
// of a response to HEAD or a 304 (never for 1xx or 204); FramingUntilClose
// gets "Connection: close" unless o.Chunk re-frames it.
func AppendResponse(dst []byte, resp *Response, o *HeadOptions) []byte {
	if o == nil {
		o = &HeadOptions{}
	}
	dst = append(dst, "HTTP/1.1 "...)
	dst = strconv.AppendInt(dst, int64(resp.Status), 10)
	dst = append(dst, ' ')
	dst = append(dst, resp.Reason...)
	dst = append(dst, '\r', '\n')
	upgrade := o.Upgrade && resp.Status == 101 && !o.Close
	dst = appendFields(dst, resp.Headers, upgrade)
	closing := o.Close
	switch {
	case resp.Framing == FramingNone:
		if resp.ContentLength >= 0 && resp.Status >= 200 && resp.Status != 204 {
			dst = appendContentLength(dst, resp.ContentLength)
		}
	case resp.Framing == FramingUntilClose && !o.Chunk:
		closing = true
	default:
		dst = appendFraming(dst, resp.Framing, resp.ContentLength, o.Chunk)
	}
	dst = appendConnection(dst, closing, upgrade && !closing)
	return appendExtra(dst, o.Extra)
}

// Forwarded reports whether a field is forwarded by AppendRequest and
// AppendResponse (false for hop-by-hop, framing and Host fields).
func Forwarded(h *Header, keepUpgrade bool) bool {
	if h.hop {
		return false
	}
	switch fieldKind(h.Name) {
	case kHost, kContentLength, kTransferEncoding, kConnection, kKeepAlive, kProxyConnection, kTE:
		return false
	case kUpgrade:
		return keepUpgrade
	}
	return true
}

func appendFields(dst []byte, hs []Header, keepUpgrade bool) []byte {
	for i := range hs {
		if !Forwarded(&hs[i], keepUpgrade) {
			continue
		}
		dst = append(dst, hs[i].Name...)
		dst = append(dst, ':', ' ')
		dst = append(dst, hs[i].Value...)
		dst = append(dst, '\r', '\n')
	}
	return dst
}

func appendFraming(dst []byte, f Framing, n int64, chunk bool) []byte {
	switch {
	case f == FramingNone:
	case chunk || f == FramingChunked:
		dst = append(dst, "Transfer-Encoding: chunked\r\n"...)
	case f == FramingLength:
		dst = appendContentLength(dst, n)
	}
	return dst
}

func appendContentLength(dst []byte, n int64) []byte {
	dst = append(dst, "Content-Length: "...)
	dst = strconv.AppendInt(dst, n, 10)
	return append(dst, '\r', '\n')
}

func appendConnection(dst []byte, closing, upgrade bool) []byte {
	switch {
	case closing:
		dst = append(dst, "Connection: close\r\n"...)
	case upgrade:
		dst = append(dst, "Connection: upgrade\r\n"...)
	}
	return dst
}

func appendExtra(dst []byte, extra []Header) []byte {
	for _, h := range extra {
		dst = append(dst, h.Name...)
		dst = append(dst, ':', ' ')
		dst = append(dst, h.Value...)
		dst = append(dst, '\r', '\n')
	}
	return append(dst, '\r', '\n')
}
