package http1

import (
	"errors"
	"io"
	"testing"
	"time"
)

func TestResponseFraming(t *testing.T) {
	tests := []struct {
		name    string
		method  string
		in      string
		framing Framing
		body    string
		keep    bool
		tunnel  bool
	}{
		{"content-length", "GET", "HTTP/1.1 200 OK\r\nContent-Length: 5\r\n\r\nhello", FramingLength, "hello", true, false},
		{"chunked with trailers", "GET", "HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\nTrailer: T\r\n\r\n5\r\nhello\r\n0\r\nT: v\r\n\r\n", FramingChunked, "hello", true, false},
		{"until close", "GET", "HTTP/1.1 200 OK\r\n\r\nhello world", FramingUntilClose, "hello world", false, false},
		{"HEAD with length", "HEAD", "HTTP/1.1 200 OK\r\nContent-Length: 5\r\n\r\n", FramingNone, "", true, false},
		{"HEAD with chunked", "HEAD", "HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n", FramingNone, "", true, false},
		{"204", "GET", "HTTP/1.1 204 No Content\r\n\r\n", FramingNone, "", true, false},
		{"304 with length", "GET", "HTTP/1.1 304 Not Modified\r\nContent-Length: 10\r\n\r\n", FramingNone, "", true, false},
		{"100", "POST", "HTTP/1.1 100 Continue\r\n\r\n", FramingNone, "", true, false},
		{"101", "GET", "HTTP/1.1 101 Switching Protocols\r\nConnection: upgrade\r\nUpgrade: websocket\r\n\r\n", FramingNone, "", false, true},
		{"CONNECT 200", "CONNECT", "HTTP/1.1 200 Connection established\r\n\r\n", FramingNone, "", false, true},
		{"CONNECT 407 has a body", "CONNECT", "HTTP/1.1 407 Auth\r\nContent-Length: 2\r\n\r\nno", FramingLength, "no", true, false},
		{"no reason no space", "GET", "HTTP/1.1 200\r\nContent-Length: 0\r\n\r\n", FramingLength, "", true, false},
		{"empty reason", "GET", "HTTP/1.1 200 \r\nContent-Length: 0\r\n\r\n", FramingLength, "", true, false},
		{"1.0 closes", "GET", "HTTP/1.0 200 OK\r\nContent-Length: 1\r\n\r\nx", FramingLength, "x", false, false},
		{"1.0 keep-alive", "GET", "HTTP/1.0 200 OK\r\nConnection: keep-alive\r\nContent-Length: 1\r\n\r\nx", FramingLength, "x", true, false},
		{"close", "GET", "HTTP/1.1 200 OK\r\nConnection: close\r\nContent-Length: 1\r\n\r\nx", FramingLength, "x", false, false},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			var p Parser
			var resp Response
			br := newReader(tc.in)
			if err := p.ReadResponse(br, &resp, []byte(tc.method)); err != nil {
				t.Fatal(err)
			}
			body, err := io.ReadAll(p.Body())
			if err != nil {
				t.Fatal(err)
			}
			if resp.Framing != tc.framing || string(body) != tc.body || resp.KeepAlive != tc.keep || resp.Tunnel != tc.tunnel {
				t.Fatalf("framing %v body %q keep %v tunnel %v", resp.Framing, body, resp.KeepAlive, resp.Tunnel)
			}
		})
	}
}

func TestInformationalThenFinalResponse(t *testing.T) {
	br := newReader("HTTP/1.1 100 Continue\r\n\r\nHTTP/1.1 103 Early Hints\r\nLink: </a>\r\n\r\nHTTP/1.1 200 OK\r\nContent-Length: 2\r\n\r\nok")
	var p Parser
	var resp Response
	var seen []int
	for {
		if err := p.ReadResponse(br, &resp, []byte("POST")); err != nil {
			t.Fatal(err)
		}
		seen = append(seen, resp.Status)
		if !resp.Informational() {
			break
		}
	}
	body, _ := io.ReadAll(p.Body())
	if len(seen) != 3 || seen[2] != 200 || string(body) != "ok" {
		t.Fatalf("statuses %v body %q", seen, body)
	}
}

func TestResponseHeadAndContentLengthDeclared(t *testing.T) {
	var p Parser
	var resp Response
	if err := p.ReadResponse(newReader("HTTP/1.1 200 OK\r\nContent-Length: 42\r\n\r\n"), &resp, []byte("HEAD")); err != nil {
		t.Fatal(err)
	}
	if resp.ContentLength != 42 || resp.Framing != FramingNone {
		t.Fatalf("%+v", resp)
	}
	out := AppendResponse(nil, &resp, nil)
	if string(out) != "HTTP/1.1 200 OK\r\nContent-Length: 42\r\n\r\n" {
		t.Fatalf("%q", out)
	}
}

func TestKeepAliveHeaderParsed(t *testing.T) {
	tests := []struct {
		v       string
		timeout time.Duration
		max     int
	}{
		{"timeout=5, max=100", 5 * time.Second, 100},
		{"Timeout = 30 ,MAX=7", 30 * time.Second, 7},
		{"timeout=\"4\"", 4 * time.Second, 0},
		{"max=3", 0, 3},
		{"timeout=abc, max=-1", 0, 0},
		{"timeout=99999999999", 0, 0},
		{"garbage", 0, 0},
	}
	for _, tc := range tests {
		var p Parser
		var resp Response
		in := "HTTP/1.1 200 OK\r\nKeep-Alive: " + tc.v + "\r\nContent-Length: 0\r\n\r\n"
		if err := p.ReadResponse(newReader(in), &resp, []byte("GET")); err != nil {
			t.Fatal(err)
		}
		if resp.KeepAliveTimeout != tc.timeout || resp.KeepAliveMax != tc.max {
			t.Errorf("%q: timeout %v max %d", tc.v, resp.KeepAliveTimeout, resp.KeepAliveMax)
		}
	}
}

func TestResponseRejections(t *testing.T) {
	tests := []struct {
		name string
		in   string
		err  error
	}{
		{"HTTP/2", "HTTP/2.0 200 OK\r\n\r\n", ErrUnsupportedVersion},
		{"bad version", "HTTP/1.x 200 OK\r\n\r\n", ErrMalformedStatusLine},
		{"short code", "HTTP/1.1 20 OK\r\n\r\n", ErrMalformedStatusLine},
		{"code 099", "HTTP/1.1 099 X\r\n\r\n", ErrMalformedStatusLine},
		{"code 600", "HTTP/1.1 600 X\r\n\r\n", ErrMalformedStatusLine},
		{"no space after code", "HTTP/1.1 200OK\r\n\r\n", ErrMalformedStatusLine},
		{"NUL in reason", "HTTP/1.1 200 O\x00K\r\n\r\n", ErrMalformedStatusLine},
		{"bare LF", "HTTP/1.1 200 OK\nContent-Length: 0\n\n", ErrBareLF},
		{"CL.TE", "HTTP/1.1 200 OK\r\nContent-Length: 1\r\nTransfer-Encoding: chunked\r\n\r\n", ErrContentLengthWithTE},
		{"TE gzip", "HTTP/1.1 200 OK\r\nTransfer-Encoding: gzip\r\n\r\n", ErrUnsupportedTransferEncoding},
		{"TE chunked, gzip", "HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked, gzip\r\n\r\n", ErrChunkedNotLast},
		{"TE in 1.0", "HTTP/1.0 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n", ErrTransferEncodingHTTP10},
		{"CL differing", "HTTP/1.1 200 OK\r\nContent-Length: 1\r\nContent-Length: 2\r\n\r\n", ErrConflictingContentLength},
		{"obs-fold", "HTTP/1.1 200 OK\r\nX: a\r\n b\r\n\r\n", ErrObsFold},
		{"status line too long", "HTTP/1.1 200 " + string(make([]byte, DefaultMaxRequestLine)) + "\r\n\r\n", ErrHeaderTooLarge},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			var p Parser
			var resp Response
			br := newReader(tc.in)
			if err := p.ReadResponse(br, &resp, []byte("GET")); !errors.Is(err, tc.err) {
				t.Fatalf("got %v, want %v", err, tc.err)
			}
			if err := p.ReadResponse(br, &resp, []byte("GET")); !errors.Is(err, tc.err) {
				t.Fatalf("not sticky: %v", err)
			}
		})
	}
}
