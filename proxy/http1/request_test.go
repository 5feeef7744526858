package http1

import (
	"bufio"
	"bytes"
	"errors"
	"io"
	"strings"
	"testing"
)

func newReader(s string) *bufio.Reader { return bufio.NewReader(strings.NewReader(s)) }

// rejectCase is one request that must be refused with err (and so status).
type rejectCase struct {
	name   string
	in     string
	err    error
	status int
}

// requestRejections is the table of every rejection rule. It doubles as
// the smuggling corpus: FuzzRequestDifferential is seeded with it.
var requestRejections = []rejectCase{
	// request line
	{"empty line first", "\r\nGET / HTTP/1.1\r\nHost: a\r\n\r\n", ErrMalformedRequestLine, 400},
	{"no spaces", "GET\r\n\r\n", ErrMalformedRequestLine, 400},
	{"one space", "GET /\r\n\r\n", ErrMalformedRequestLine, 400},
	{"two spaces after method", "GET  / HTTP/1.1\r\nHost: a\r\n\r\n", ErrInvalidTarget, 400},
	{"trailing space", "GET / HTTP/1.1 \r\nHost: a\r\n\r\n", ErrMalformedVersion, 400},
	{"method with slash", "GE/T / HTTP/1.1\r\nHost: a\r\n\r\n", ErrInvalidMethod, 400},
	{"method with NUL", "GE\x00T / HTTP/1.1\r\nHost: a\r\n\r\n", ErrInvalidMethod, 400},
	{"empty method", " / HTTP/1.1\r\nHost: a\r\n\r\n", ErrInvalidMethod, 400},
	{"lower-case version", "GET / http/1.1\r\nHost: a\r\n\r\n", ErrMalformedVersion, 400},
	{"version two digits", "GET / HTTP/1.10\r\nHost: a\r\n\r\n", ErrMalformedVersion, 400},
	{"version no minor", "GET / HTTP/1\r\nHost: a\r\n\r\n", ErrMalformedVersion, 400},
	{"HTTP/2.0", "GET / HTTP/2.0\r\nHost: a\r\n\r\n", ErrUnsupportedVersion, 505},
	{"HTTP/0.9", "GET / HTTP/0.9\r\n\r\n", ErrUnsupportedVersion, 505},
	{"h2 preface", "PRI * HTTP/2.0\r\n\r\nSM\r\n\r\n", ErrUnsupportedVersion, 505},
	{"tab in target", "GET /a\tb HTTP/1.1\r\nHost: a\r\n\r\n", ErrInvalidTarget, 400},
	{"NUL in target", "GET /a\x00b HTTP/1.1\r\nHost: a\r\n\r\n", ErrInvalidTarget, 400},
	{"fragment in target", "GET /a#b HTTP/1.1\r\nHost: a\r\n\r\n", ErrInvalidTarget, 400},
	{"obs-text in target", "GET /\xc3\xa9 HTTP/1.1\r\nHost: a\r\n\r\n", ErrInvalidTarget, 400},
	{"bad escape in path", "GET /a%zz HTTP/1.1\r\nHost: a\r\n\r\n", ErrInvalidTarget, 400},
	{"cut escape in path", "GET /a% HTTP/1.1\r\nHost: a\r\n\r\n", ErrInvalidTarget, 400},
	{"asterisk for GET", "GET * HTTP/1.1\r\nHost: a\r\n\r\n", ErrInvalidTarget, 400},
	{"relative target", "GET a/b HTTP/1.1\r\nHost: a\r\n\r\n", ErrInvalidTarget, 400},
	{"authority-form for GET", "GET a:80 HTTP/1.1\r\nHost: a\r\n\r\n", ErrInvalidTarget, 400},
	{"CONNECT without port", "CONNECT a HTTP/1.1\r\nHost: a\r\n\r\n", ErrInvalidTarget, 400},
	{"CONNECT with path", "CONNECT /a HTTP/1.1\r\nHost: a\r\n\r\n", ErrInvalidTarget, 400},
	{"absolute-form ftp", "GET ftp://a/ HTTP/1.1\r\nHost: a\r\n\r\n", ErrInvalidTarget, 400},
	{"absolute-form userinfo", "GET http://u@a/ HTTP/1.1\r\nHost: a\r\n\r\n", ErrInvalidTarget, 400},
	{"absolute-form no host", "GET http:///a HTTP/1.1\r\nHost: a\r\n\r\n", ErrInvalidTarget, 400},
	{"request line too long", "GET /" + strings.Repeat("a", DefaultMaxRequestLine) + " HTTP/1.1\r\nHost: a\r\n\r\n", ErrURITooLong, 414},

	// line endings
	{"bare LF request line", "GET / HTTP/1.1\nHost: a\r\n\r\n", ErrBareLF, 400},
	{"bare LF field", "GET / HTTP/1.1\r\nHost: a\n\r\n", ErrBareLF, 400},
	{"bare LF end of head", "GET / HTTP/1.1\r\nHost: a\r\n\n", ErrBareLF, 400},
	{"bare CR in value", "GET / HTTP/1.1\r\nHost: a\r\nX: a\rb\r\n\r\n", ErrBareCR, 400},
	{"CR before CRLF", "GET / HTTP/1.1\r\nHost: a\r\nX: a\r\r\n\r\n", ErrBareCR, 400},
	{"bare CR request line", "GET /\r HTTP/1.1\r\nHost: a\r\n\r\n", ErrBareCR, 400},

	// field lines
	{"obs-fold", "GET / HTTP/1.1\r\nHost: a\r\nX: a\r\n b\r\n\r\n", ErrObsFold, 400},
	{"obs-fold tab", "GET / HTTP/1.1\r\nHost: a\r\nX: a\r\n\tb\r\n\r\n", ErrObsFold, 400},
	{"leading space first field", "GET / HTTP/1.1\r\n Host: a\r\n\r\n", ErrObsFold, 400},
	{"space before colon", "GET / HTTP/1.1\r\nHost : a\r\n\r\n", ErrSpaceBeforeColon, 400},
	{"tab before colon", "GET / HTTP/1.1\r\nHost: a\r\nTransfer-Encoding\t: chunked\r\n\r\n0\r\n\r\n", ErrSpaceBeforeColon, 400},
	{"space in name", "GET / HTTP/1.1\r\nHost: a\r\nX Y: 1\r\n\r\n", ErrInvalidHeaderName, 400},
	{"no colon", "GET / HTTP/1.1\r\nHost: a\r\nX\r\n\r\n", ErrInvalidHeaderName, 400},
	{"empty name", "GET / HTTP/1.1\r\nHost: a\r\n: x\r\n\r\n", ErrInvalidHeaderName, 400},
	{"non-token name", "GET / HTTP/1.1\r\nHost: a\r\nX(y): 1\r\n\r\n", ErrInvalidHeaderName, 400},
	{"obs-text name", "GET / HTTP/1.1\r\nHost: a\r\nX\xe9: 1\r\n\r\n", ErrInvalidHeaderName, 400},
	{"NUL in value", "GET / HTTP/1.1\r\nHost: a\r\nX: a\x00b\r\n\r\n", ErrInvalidHeaderValue, 400},
	{"CTL in value", "GET / HTTP/1.1\r\nHost: a\r\nX: a\x01b\r\n\r\n", ErrInvalidHeaderValue, 400},
	{"DEL in value", "GET / HTTP/1.1\r\nHost: a\r\nX: a\x7fb\r\n\r\n", ErrInvalidHeaderValue, 400},
	{"field section too large", "GET / HTTP/1.1\r\nHost: a\r\nX: " + strings.Repeat("a", DefaultMaxHeaderBytes) + "\r\n\r\n", ErrHeaderTooLarge, 431},
	{"too many fields", "GET / HTTP/1.1\r\nHost: a\r\n" + strings.Repeat("X: 1\r\n", DefaultMaxHeaders) + "\r\n", ErrTooManyHeaders, 431},

	// Host
	{"HTTP/1.1 without Host", "GET / HTTP/1.1\r\nX: 1\r\n\r\n", ErrMissingHost, 400},
	{"two Host", "GET / HTTP/1.1\r\nHost: a\r\nHost: b\r\n\r\n", ErrMultipleHost, 400},
	{"two identical Host", "GET / HTTP/1.1\r\nHost: a\r\nhost: a\r\n\r\n", ErrMultipleHost, 400},
	{"two Host HTTP/1.0", "GET / HTTP/1.0\r\nHost: a\r\nHost: b\r\n\r\n", ErrMultipleHost, 400},
	{"Host with userinfo", "GET / HTTP/1.1\r\nHost: u@a\r\n\r\n", ErrInvalidHost, 400},
	{"Host with slash", "GET / HTTP/1.1\r\nHost: a/b\r\n\r\n", ErrInvalidHost, 400},
	{"Host bad port", "GET / HTTP/1.1\r\nHost: a:b\r\n\r\n", ErrInvalidHost, 400},
	{"Host two values", "GET / HTTP/1.1\r\nHost: a, b\r\n\r\n", ErrInvalidHost, 400},

	// Content-Length
	{"CL not a number", "POST / HTTP/1.1\r\nHost: a\r\nContent-Length: x\r\n\r\n", ErrBadContentLength, 400},
	{"CL empty", "POST / HTTP/1.1\r\nHost: a\r\nContent-Length:\r\n\r\n", ErrBadContentLength, 400},
	{"CL negative", "POST / HTTP/1.1\r\nHost: a\r\nContent-Length: -1\r\n\r\n", ErrBadContentLength, 400},
	{"CL plus sign", "POST / HTTP/1.1\r\nHost: a\r\nContent-Length: +1\r\n\r\n", ErrBadContentLength, 400},
	{"CL hex", "POST / HTTP/1.1\r\nHost: a\r\nContent-Length: 0x1\r\n\r\n", ErrBadContentLength, 400},
	{"CL overflow", "POST / HTTP/1.1\r\nHost: a\r\nContent-Length: 9223372036854775808\r\n\r\n", ErrBadContentLength, 400},
	{"CL space inside", "POST / HTTP/1.1\r\nHost: a\r\nContent-Length: 1 2\r\n\r\n", ErrBadContentLength, 400},
	{"CL list identical", "POST / HTTP/1.1\r\nHost: a\r\nContent-Length: 5, 5\r\n\r\nhello", ErrDuplicateContentLength, 400},
	{"CL list differing", "POST / HTTP/1.1\r\nHost: a\r\nContent-Length: 5, 6\r\n\r\nhello", ErrConflictingContentLength, 400},
	{"CL twice identical", "POST / HTTP/1.1\r\nHost: a\r\nContent-Length: 5\r\nContent-Length: 5\r\n\r\nhello", ErrDuplicateContentLength, 400},
	{"CL twice differing", "POST / HTTP/1.1\r\nHost: a\r\nContent-Length: 5\r\nContent-Length: 0\r\n\r\nhello", ErrConflictingContentLength, 400},

	// Transfer-Encoding (CL.TE, TE.CL, TE.TE)
	{"CL.TE", "POST / HTTP/1.1\r\nHost: a\r\nContent-Length: 6\r\nTransfer-Encoding: chunked\r\n\r\n0\r\n\r\nG", ErrContentLengthWithTE, 400},
	{"TE.CL", "POST / HTTP/1.1\r\nHost: a\r\nTransfer-Encoding: chunked\r\nContent-Length: 3\r\n\r\n8\r\nSMUGGLED\r\n0\r\n\r\n", ErrContentLengthWithTE, 400},
	{"TE.CL gzip", "POST / HTTP/1.1\r\nHost: a\r\nTransfer-Encoding: gzip\r\nContent-Length: 3\r\n\r\nabc", ErrContentLengthWithTE, 400},
	{"TE xchunked", "POST / HTTP/1.1\r\nHost: a\r\nTransfer-Encoding: xchunked\r\n\r\n0\r\n\r\n", ErrUnsupportedTransferEncoding, 501},
	{"TE gzip only", "POST / HTTP/1.1\r\nHost: a\r\nTransfer-Encoding: gzip\r\n\r\n", ErrUnsupportedTransferEncoding, 501},
	{"TE gzip, chunked", "POST / HTTP/1.1\r\nHost: a\r\nTransfer-Encoding: gzip, chunked\r\n\r\n0\r\n\r\n", ErrUnsupportedTransferEncoding, 501},
	{"TE identity", "POST / HTTP/1.1\r\nHost: a\r\nTransfer-Encoding: identity\r\n\r\n", ErrUnsupportedTransferEncoding, 501},
	{"TE chunked, identity", "POST / HTTP/1.1\r\nHost: a\r\nTransfer-Encoding: chunked, identity\r\n\r\n0\r\n\r\n", ErrChunkedNotLast, 400},
	{"TE chunked, gzip", "POST / HTTP/1.1\r\nHost: a\r\nTransfer-Encoding: chunked, gzip\r\n\r\n0\r\n\r\n", ErrChunkedNotLast, 400},
	{"TE chunked twice one field", "POST / HTTP/1.1\r\nHost: a\r\nTransfer-Encoding: chunked, chunked\r\n\r\n0\r\n\r\n", ErrChunkedNotLast, 400},
	{"TE chunked twice two fields", "POST / HTTP/1.1\r\nHost: a\r\nTransfer-Encoding: chunked\r\nTransfer-Encoding: chunked\r\n\r\n0\r\n\r\n", ErrChunkedNotLast, 400},
	{"TE chunked then gzip field", "POST / HTTP/1.1\r\nHost: a\r\nTransfer-Encoding: chunked\r\nTransfer-Encoding: gzip\r\n\r\n0\r\n\r\n", ErrChunkedNotLast, 400},
	{"TE leading space obs-fold", "POST / HTTP/1.1\r\nHost: a\r\nTransfer-Encoding:\r\n chunked\r\n\r\n0\r\n\r\n", ErrObsFold, 400},
	{"TE space before colon", "POST / HTTP/1.1\r\nHost: a\r\nTransfer-Encoding : chunked\r\n\r\n0\r\n\r\n", ErrSpaceBeforeColon, 400},
	{"TE empty", "POST / HTTP/1.1\r\nHost: a\r\nTransfer-Encoding:\r\n\r\n", ErrBadTransferEncoding, 400},
	{"TE empty element", "POST / HTTP/1.1\r\nHost: a\r\nTransfer-Encoding: ,chunked\r\n\r\n0\r\n\r\n", ErrBadTransferEncoding, 400},
	{"TE trailing comma", "POST / HTTP/1.1\r\nHost: a\r\nTransfer-Encoding: chunked,\r\n\r\n0\r\n\r\n", ErrBadTransferEncoding, 400},
	{"TE quoted", "POST / HTTP/1.1\r\nHost: a\r\nTransfer-Encoding: \"chunked\"\r\n\r\n0\r\n\r\n", ErrBadTransferEncoding, 400},
	{"TE chunked with params", "POST / HTTP/1.1\r\nHost: a\r\nTransfer-Encoding: chunked;q=1\r\n\r\n0\r\n\r\n", ErrBadTransferEncoding, 400},
	{"TE vertical tab", "POST / HTTP/1.1\r\nHost: a\r\nTransfer-Encoding: \x0bchunked\r\n\r\n0\r\n\r\n", ErrInvalidHeaderValue, 400},
	{"TE NUL", "POST / HTTP/1.1\r\nHost: a\r\nTransfer-Encoding: chunked\x00\r\n\r\n0\r\n\r\n", ErrInvalidHeaderValue, 400},
	{"TE in HTTP/1.0", "POST / HTTP/1.0\r\nTransfer-Encoding: chunked\r\n\r\n0\r\n\r\n", ErrTransferEncodingHTTP10, 400},
	{"TE name obs-text", "POST / HTTP/1.1\r\nHost: a\r\nTransfer-Encod\xefng: chunked\r\n\r\n0\r\n\r\n", ErrInvalidHeaderName, 400},
	{"Trailer names CL", "POST / HTTP/1.1\r\nHost: a\r\nTrailer: Content-Length\r\nTransfer-Encoding: chunked\r\n\r\n0\r\n\r\n", ErrBadTrailerField, 400},
}

func TestRequestRejections(t *testing.T) {
	for _, tc := range requestRejections {
		t.Run(tc.name, func(t *testing.T) {
			var p Parser
			var req Request
			br := newReader(tc.in)
			err := p.ReadRequest(br, &req)
			if err == nil {
				// Some rejections are found in the body; read it.
				_, err = io.Copy(io.Discard, p.Body())
			}
			if !errors.Is(err, tc.err) {
				t.Fatalf("got %v, want %v", err, tc.err)
			}
			if got := StatusFor(err); got != tc.status {
				t.Fatalf("StatusFor(%v) = %d, want %d", err, got, tc.status)
			}
			// Sticky: nothing more is read from the connection.
			if err2 := p.ReadRequest(br, &req); !errors.Is(err2, tc.err) {
				t.Fatalf("second ReadRequest = %v, want the sticky %v", err2, tc.err)
			}
		})
	}
}

// Chunked-body rejections: the head is fine, the body is not.
var chunkedRejections = []rejectCase{
	{"chunk size not hex", "g\r\n", ErrBadChunk, 400},
	{"chunk size empty", "\r\n", ErrBadChunk, 400},
	{"chunk size negative", "-1\r\n", ErrBadChunk, 400},
	{"chunk size 0x prefix", "0x5\r\nhello\r\n0\r\n\r\n", ErrBadChunk, 400},
	{"chunk size 17 digits", "00000000000000005\r\nhello\r\n0\r\n\r\n", ErrChunkSizeOverflow, 400},
	{"chunk size over int64", "8000000000000000\r\n", ErrChunkSizeOverflow, 400},
	{"chunk size huge", strings.Repeat("f", 40) + "\r\n", ErrChunkSizeOverflow, 400},
	{"chunk size trailing space", "5 \r\nhello\r\n0\r\n\r\n", ErrBadChunk, 400},
	{"chunk size leading space", " 5\r\nhello\r\n0\r\n\r\n", ErrBadChunk, 400},
	{"chunk size bare LF", "5\nhello\r\n0\r\n\r\n", ErrBareLF, 400},
	{"chunk data bare LF", "5\r\nhello\n0\r\n\r\n", ErrBadChunk, 400},
	{"chunk data too long", "5\r\nhelloX\r\n0\r\n\r\n", ErrBadChunk, 400},
	{"last chunk bare LF", "0\n\r\n", ErrBareLF, 400},
	{"chunk ext BWS before semicolon", "5 ;a\r\nhello\r\n0\r\n\r\n", ErrBadChunk, 400},
	{"chunk ext BWS around equals", "5;a = b\r\nhello\r\n0\r\n\r\n", ErrBadChunk, 400},
	{"chunk ext no name", "5;\r\nhello\r\n0\r\n\r\n", ErrBadChunk, 400},
	{"chunk ext bad value", "5;a=\"b\r\nhello\r\n0\r\n\r\n", ErrBadChunk, 400},
	{"chunk ext NUL", "5;a\x00\r\nhello\r\n0\r\n\r\n", ErrBadChunk, 400},
	{"chunk ext too long", "5;a=" + strings.Repeat("b", DefaultMaxChunkExtension) + "\r\nhello\r\n0\r\n\r\n", ErrChunkExtensionTooLong, 400},
	{"chunk ext too long line", "5;a=" + strings.Repeat("b", 10000) + "\r\nhello\r\n0\r\n\r\n", ErrChunkExtensionTooLong, 400},
	{"chunk ext budget", strings.Repeat("1;"+strings.Repeat("e", 200)+"\r\nx\r\n", 200) + "0\r\n\r\n", ErrChunkExtensionTooLong, 400},
	{"trailer obs-fold", "0\r\nT: a\r\n b\r\n\r\n", ErrObsFold, 400},
	{"trailer bare LF", "0\r\nT: a\n\r\n", ErrBareLF, 400},
	{"trailer NUL", "0\r\nT: a\x00\r\n\r\n", ErrInvalidHeaderValue, 400},
	{"missing final CRLF", "0\r\n", io.ErrUnexpectedEOF, 400},
	{"cut in data", "5\r\nhel", io.ErrUnexpectedEOF, 400},
	{"trailer too large", "0\r\nT: " + strings.Repeat("a", DefaultMaxHeaderBytes) + "\r\n\r\n", ErrHeaderTooLarge, 431},
}

func TestChunkedRejections(t *testing.T) {
	for _, tc := range chunkedRejections {
		t.Run(tc.name, func(t *testing.T) {
			var p Parser
			var req Request
			br := newReader("POST / HTTP/1.1\r\nHost: a\r\nTransfer-Encoding: chunked\r\n\r\n" + tc.in + "GET /next HTTP/1.1\r\nHost: a\r\n\r\n")
			if tc.err == io.ErrUnexpectedEOF {
				br = newReader("POST / HTTP/1.1\r\nHost: a\r\nTransfer-Encoding: chunked\r\n\r\n" + tc.in)
			}
			if err := p.ReadRequest(br, &req); err != nil {
				t.Fatal(err)
			}
			_, err := io.Copy(io.Discard, p.Body())
			if !errors.Is(err, tc.err) {
				t.Fatalf("got %v, want %v", err, tc.err)
			}
			if got := StatusFor(err); got != tc.status {
				t.Fatalf("StatusFor = %d, want %d", got, tc.status)
			}
			if err2 := p.ReadRequest(br, &req); !errors.Is(err2, tc.err) {
				t.Fatalf("next ReadRequest after a bad body = %v (method %q), want the sticky error", err2, req.Method)
			}
		})
	}
}

// TestRejectedRequestNeverYieldsASecond checks the smuggling payloads: the
// bytes after the rejected head (which hold a "second request") are never
// parsed, whatever the caller does next.
func TestRejectedRequestNeverYieldsASecond(t *testing.T) {
	smuggled := "GET /admin HTTP/1.1\r\nHost: a\r\n\r\n"
	for _, tc := range requestRejections {
		var p Parser
		var req Request
		br := newReader(tc.in + smuggled + smuggled)
		err := p.ReadRequest(br, &req)
		if err == nil {
			_, err = io.Copy(io.Discard, p.Body())
		}
		if err == nil {
			t.Fatalf("%s: accepted", tc.name)
		}
		for i := 0; i < 3; i++ {
			if err := p.ReadRequest(br, &req); err == nil || string(req.Target) == "/admin" {
				t.Fatalf("%s: read a request after the rejection: %q %v", tc.name, req.Target, err)
			}
		}
	}
}

func TestBodyMustBeConsumedBeforeNextRequest(t *testing.T) {
	var p Parser
	var req Request
	br := newReader("POST / HTTP/1.1\r\nHost: a\r\nContent-Length: 5\r\n\r\nhelloGET / HTTP/1.1\r\nHost: a\r\n\r\n")
	if err := p.ReadRequest(br, &req); err != nil {
		t.Fatal(err)
	}
	if err := p.ReadRequest(br, &req); !errors.Is(err, ErrBodyNotConsumed) {
		t.Fatalf("got %v, want ErrBodyNotConsumed", err)
	}
}

func TestPipelinedRequestsParseInOrder(t *testing.T) {
	in := "POST /one HTTP/1.1\r\nHost: a\r\nContent-Length: 5\r\n\r\nhello" +
		"PUT /two HTTP/1.1\r\nHost: a\r\nTransfer-Encoding: chunked\r\n\r\n3\r\nabc\r\n2;x=y\r\nde\r\n0\r\nT: v\r\n\r\n" +
		"GET /three HTTP/1.1\r\nHost: a\r\n\r\n"
	// A tiny bufio buffer forces lines across fills.
	br := bufio.NewReaderSize(strings.NewReader(in), 16)
	var p Parser
	var req Request
	want := []struct{ method, target, body string }{
		{"POST", "/one", "hello"},
		{"PUT", "/two", "abcde"},
		{"GET", "/three", ""},
	}
	for _, w := range want {
		if err := p.ReadRequest(br, &req); err != nil {
			t.Fatalf("%s: %v", w.target, err)
		}
		body, err := io.ReadAll(p.Body())
		if err != nil {
			t.Fatalf("%s body: %v", w.target, err)
		}
		if string(req.Method) != w.method || string(req.Target) != w.target || string(body) != w.body {
			t.Fatalf("got %s %s %q, want %+v", req.Method, req.Target, body, w)
		}
	}
	if err := p.ReadRequest(br, &req); err != io.EOF {
		t.Fatalf("after the last request: %v, want io.EOF", err)
	}
}

func TestReadRequestLeavesNextRequestBuffered(t *testing.T) {
	br := newReader("GET /a HTTP/1.1\r\nHost: a\r\n\r\nGET /b HTTP/1.1\r\n")
	var p Parser
	var req Request
	if err := p.ReadRequest(br, &req); err != nil {
		t.Fatal(err)
	}
	rest, _ := br.Peek(br.Buffered())
	if string(rest) != "GET /b HTTP/1.1\r\n" {
		t.Fatalf("buffered after the head: %q", rest)
	}
}

func TestRequestSemantics(t *testing.T) {
	tests := []struct {
		name  string
		in    string
		check func(*Request) bool
	}{
		{"1.1 keep-alive by default", "GET / HTTP/1.1\r\nHost: a\r\n\r\n", func(r *Request) bool { return r.KeepAlive && r.Minor == 1 }},
		{"1.1 close", "GET / HTTP/1.1\r\nHost: a\r\nConnection: Close\r\n\r\n", func(r *Request) bool { return !r.KeepAlive }},
		{"1.1 close in list", "GET / HTTP/1.1\r\nHost: a\r\nConnection: x, close\r\n\r\n", func(r *Request) bool { return !r.KeepAlive }},
		{"1.0 closes by default", "GET / HTTP/1.0\r\n\r\n", func(r *Request) bool { return !r.KeepAlive && r.Minor == 0 && r.Host == nil }},
		{"1.0 keep-alive", "GET / HTTP/1.0\r\nConnection: Keep-Alive\r\n\r\n", func(r *Request) bool { return r.KeepAlive }},
		{"1.2 read as 1.1", "GET / HTTP/1.2\r\nHost: a\r\n\r\n", func(r *Request) bool { return r.KeepAlive && r.Minor == 2 }},
		{"expect", "POST / HTTP/1.1\r\nHost: a\r\nExpect: 100-Continue\r\nContent-Length: 1\r\n\r\nx", func(r *Request) bool {
			return r.ExpectContinue && r.Framing == FramingLength && r.ContentLength == 1
		}},
		{"upgrade", "GET / HTTP/1.1\r\nHost: a\r\nConnection: Upgrade\r\nUpgrade: websocket\r\n\r\n", func(r *Request) bool { return r.Upgrade }},
		{"upgrade not in Connection", "GET / HTTP/1.1\r\nHost: a\r\nUpgrade: websocket\r\n\r\n", func(r *Request) bool { return !r.Upgrade }},
		{"upgrade 1.0 ignored", "GET / HTTP/1.0\r\nConnection: upgrade\r\nUpgrade: websocket\r\n\r\n", func(r *Request) bool { return !r.Upgrade }},
		{"absolute-form authority wins", "GET http://b.example:8080/x?y HTTP/1.1\r\nHost: a\r\n\r\n", func(r *Request) bool { return string(r.Host) == "b.example:8080" }},
		{"CONNECT", "CONNECT b:443 HTTP/1.1\r\nHost: b:443\r\n\r\n", func(r *Request) bool { return string(r.Host) == "b:443" && r.Framing == FramingNone }},
		{"OPTIONS *", "OPTIONS * HTTP/1.1\r\nHost: a\r\n\r\n", func(r *Request) bool { return string(r.Target) == "*" }},
		{"IPv6 host", "GET / HTTP/1.1\r\nHost: [::1]:80\r\n\r\n", func(r *Request) bool { return string(r.Host) == "[::1]:80" }},
		{"empty host", "GET / HTTP/1.1\r\nHost:\r\n\r\n", func(r *Request) bool { return len(r.Host) == 0 }},
		{"chunked case-insensitive", "POST / HTTP/1.1\r\nHost: a\r\nTransfer-Encoding: Chunked\r\n\r\n0\r\n\r\n", func(r *Request) bool { return r.Framing == FramingChunked }},
		{"CL zero", "POST / HTTP/1.1\r\nHost: a\r\nContent-Length: 0\r\n\r\n", func(r *Request) bool { return r.Framing == FramingLength && r.ContentLength == 0 }},
		{"CL leading zeros", "POST / HTTP/1.1\r\nHost: a\r\nContent-Length: 007\r\n\r\n1234567", func(r *Request) bool { return r.ContentLength == 7 }},
		{"value whitespace trimmed, obs-text kept", "GET / HTTP/1.1\r\nHost: a\r\nX: \t v\xe9 w \t\r\n\r\n", func(r *Request) bool { return string(r.Header("x")) == "v\xe9 w" }},
		{"query escapes not checked", "GET /a?%zz HTTP/1.1\r\nHost: a\r\n\r\n", func(r *Request) bool { return string(r.Target) == "/a?%zz" }},
		{"no body without framing", "GET / HTTP/1.1\r\nHost: a\r\n\r\n", func(r *Request) bool { return r.Framing == FramingNone }},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			var p Parser
			var req Request
			if err := p.ReadRequest(newReader(tc.in), &req); err != nil {
				t.Fatal(err)
			}
			if !tc.check(&req) {
				t.Fatalf("unexpected %+v", req)
			}
		})
	}
}

func TestLimitsAreConfigurable(t *testing.T) {
	p := Parser{Limits: Limits{MaxRequestLine: 20, MaxHeaderBytes: 30, MaxHeaders: 2}}
	var req Request
	if err := p.ReadRequest(newReader("GET /aaaaaaaaaaaaaaaaaaaaaa HTTP/1.1\r\n"), &req); !errors.Is(err, ErrURITooLong) {
		t.Fatalf("request line: %v", err)
	}
	p.Reset()
	if err := p.ReadRequest(newReader("GET / HTTP/1.1\r\nHost: a\r\nX: 1\r\nY: 2\r\n\r\n"), &req); !errors.Is(err, ErrTooManyHeaders) {
		t.Fatalf("count: %v", err)
	}
	p.Reset()
	if err := p.ReadRequest(newReader("GET / HTTP/1.1\r\nHost: a\r\nX: 12345678901234567890\r\n\r\n"), &req); !errors.Is(err, ErrHeaderTooLarge) {
		t.Fatalf("bytes: %v", err)
	}
	p.Reset()
	if err := p.ReadRequest(newReader("GET / HTTP/1.1\r\nHost: a\r\n\r\n"), &req); err != nil {
		t.Fatalf("within limits: %v", err)
	}
}

func TestStatusFor(t *testing.T) {
	for _, tc := range []struct {
		err  error
		want int
	}{
		{nil, 0}, {io.EOF, 0}, {io.ErrUnexpectedEOF, 400}, {errors.New("net"), 0},
		{ErrURITooLong, 414}, {ErrHeaderTooLarge, 431}, {ErrUnsupportedTransferEncoding, 501},
		{ErrUnsupportedVersion, 505}, {errLine(ErrObsFold, []byte("x")), 400},
	} {
		if got := StatusFor(tc.err); got != tc.want {
			t.Errorf("StatusFor(%v) = %d, want %d", tc.err, got, tc.want)
		}
	}
}

func TestErrorQuotesTruncatedLine(t *testing.T) {
	var p Parser
	var req Request
	err := p.ReadRequest(newReader("GET / HTTP/1.1\r\nHost: a\r\nX: a\x00"+strings.Repeat("b", 200)+"\r\n\r\n"), &req)
	msg := err.Error()
	if !strings.Contains(msg, `X: a\x00b`) || len(msg) > 200 {
		t.Fatalf("message %q", msg)
	}
}

func TestCleanEOFBetweenRequests(t *testing.T) {
	var p Parser
	var req Request
	if err := p.ReadRequest(newReader(""), &req); err != io.EOF {
		t.Fatalf("empty: %v", err)
	}
	p.Reset()
	if err := p.ReadRequest(newReader("GET / HT"), &req); err != io.ErrUnexpectedEOF {
		t.Fatalf("cut: %v", err)
	}
	p.Reset()
	if err := p.ReadRequest(newReader("GET / HTTP/1.1\r\nHost: a\r\n"), &req); err != io.ErrUnexpectedEOF {
		t.Fatalf("cut in fields: %v", err)
	}
}

var _ = bytes.Equal
