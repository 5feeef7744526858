package http1

import (
	"errors"
	"io"
	"strconv"
)

// codecError is the type of every sentinel error of this package. Each
// carries the HTTP status a server answers with when it meets the error on a
// request head (StatusFor).
type codecError struct {
	msg    string
	status int
}

func (e *codecError) Error() string { return e.msg }

func newErr(status int, msg string) error { return &codecError{msg: "http1: " + msg, status: status} }

// Sentinel errors. Callers branch on them with errors.Is; StatusFor maps
// them to a status code. Every error the parser returns for a bad head wraps
// exactly one of these (with the offending line quoted, truncated).
var (
	// 400 Bad Request: malformed framing or syntax.
	ErrMalformedRequestLine     = newErr(400, "malformed request line")
	ErrInvalidMethod            = newErr(400, "invalid method")
	ErrInvalidTarget            = newErr(400, "invalid request-target")
	ErrMalformedVersion         = newErr(400, "malformed HTTP version")
	ErrBareLF                   = newErr(400, "line ends in bare LF")
	ErrBareCR                   = newErr(400, "bare CR")
	ErrObsFold                  = newErr(400, "obs-fold (line folding) in field section")
	ErrSpaceBeforeColon         = newErr(400, "whitespace between field name and colon")
	ErrInvalidHeaderName        = newErr(400, "invalid field name")
	ErrInvalidHeaderValue       = newErr(400, "invalid byte in field value")
	ErrMissingHost              = newErr(400, "HTTP/1.1 request without Host")
	ErrMultipleHost             = newErr(400, "more than one Host field")
	ErrInvalidHost              = newErr(400, "invalid Host field value")
	ErrBadContentLength         = newErr(400, "malformed Content-Length")
	ErrDuplicateContentLength   = newErr(400, "repeated Content-Length (identical values are rejected too)")
	ErrConflictingContentLength = newErr(400, "repeated Content-Length with differing values")
	ErrContentLengthWithTE      = newErr(400, "both Content-Length and Transfer-Encoding")
	ErrBadTransferEncoding      = newErr(400, "malformed Transfer-Encoding")
	ErrChunkedNotLast           = newErr(400, "chunked is not the final transfer coding (or is applied twice)")
	ErrTransferEncodingHTTP10   = newErr(400, "Transfer-Encoding in an HTTP/1.0 message")
	ErrBadTrailerField          = newErr(400, "Trailer field names a framing field")
	ErrBadChunk                 = newErr(400, "malformed chunked coding")
	ErrChunkSizeOverflow        = newErr(400, "chunk size too large")
	ErrChunkExtensionTooLong    = newErr(400, "chunk extension too long")
	ErrMalformedStatusLine      = newErr(400, "malformed status line")
	ErrBodyNotConsumed          = newErr(400, "previous message body not fully read")

	// 414 URI Too Long: the request line exceeds Limits.MaxRequestLine.
	ErrURITooLong = newErr(414, "request line too long")
	// 431 Request Header Fields Too Large.
	ErrHeaderTooLarge = newErr(431, "field section too large")
	ErrTooManyHeaders = newErr(431, "too many field lines")
	// 501 Not Implemented: a transfer coding other than chunked.
	ErrUnsupportedTransferEncoding = newErr(501, "unsupported transfer coding")
	// 505 HTTP Version Not Supported: a version other than HTTP/1.x.
	ErrUnsupportedVersion = newErr(505, "unsupported HTTP version")
)

// StatusFor returns the status code a server answers a request with when
// reading its head or body failed with err:
//
//   - 400, 414, 431, 501 or 505 for this package's errors;
//   - 400 for io.ErrUnexpectedEOF (the client stopped mid-message; the
//     answer may or may not reach it);
//   - 0 for nil, io.EOF (a clean close between requests) and errors that are
//     not the codec's (network errors, timeouts): the caller decides, and
//     usually just closes.
//
// Whatever the status, after an error the connection must be closed: the
// parser's errors are sticky and it will not read another message from it.
// For errors met while reading a response from a member, a proxy answers
// 502 instead, whatever StatusFor says.
func StatusFor(err error) int {
	if err == nil || err == io.EOF {
		return 0
	}
	var ce *codecError
	if errors.As(err, &ce) {
		return ce.status
	}
	if errors.Is(err, io.ErrUnexpectedEOF) {
		return 400
	}
	return 0
}

// lineError wraps a sentinel with the offending input, quoted and truncated.
type lineError struct {
	err  error
	line string
}

func (e *lineError) Error() string { return e.err.Error() + ": " + strconv.Quote(e.line) }
func (e *lineError) Unwrap() error { return e.err }

const quoteMax = 64

// errLine wraps sentinel with a copy of (at most quoteMax bytes of) line.
// Only called on failure paths, where allocating is fine.
func errLine(sentinel error, line []byte) error {
	if len(line) > quoteMax {
		line = line[:quoteMax]
	}
	return &lineError{err: sentinel, line: string(line)}
}
