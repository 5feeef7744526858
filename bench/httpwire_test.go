package bench

import (
	"bufio"
	"errors"
	"io"
	"strings"
	"testing"
)

// Each response is followed by "NEXT" so that the test also sees that
// readResponse consumed exactly the response, no more, no less.
func TestReadResponseFramesEveryKindOfBody(t *testing.T) {
	for _, tc := range []struct {
		name, in   string
		head       bool
		status     int
		closing    bool
		err        error
		untilClose bool // the body runs to EOF: nothing left after it
	}{
		{name: "content-length", in: "HTTP/1.1 200 OK\r\nServer: x\r\nContent-Length: 5\r\n\r\nhello", status: 200},
		{name: "case and spaces", in: "HTTP/1.1 200 OK\r\ncontent-length:   3 \r\nCONNECTION: Keep-Alive\r\n\r\nabc", status: 200},
		{name: "bare LF", in: "HTTP/1.1 200 OK\nContent-Length: 2\n\nhi", status: 200},
		{name: "chunked", in: "HTTP/1.1 200 OK\r\nTransfer-Encoding: gzip, chunked\r\n\r\n5;ext=1\r\nhello\r\nA\r\n0123456789\r\n0\r\nTrailer: x\r\n\r\n", status: 200},
		{name: "connection close", in: "HTTP/1.1 200 OK\r\nConnection: keep-alive, close\r\nContent-Length: 0\r\n\r\n", status: 200, closing: true},
		{name: "http/1.0", in: "HTTP/1.0 200 OK\r\nContent-Length: 1\r\n\r\nx", status: 200, closing: true},
		{name: "http/1.0 keep-alive", in: "HTTP/1.0 200 OK\r\nConnection: keep-alive\r\nContent-Length: 1\r\n\r\nx", status: 200},
		{name: "interim skipped", in: "HTTP/1.1 100 Continue\r\n\r\nHTTP/1.1 201 Created\r\nContent-Length: 1\r\n\r\nx", status: 201},
		{name: "head has no body", in: "HTTP/1.1 200 OK\r\nContent-Length: 99\r\n\r\n", head: true, status: 200},
		{name: "204 has no body", in: "HTTP/1.1 204 No Content\r\nContent-Length: 99\r\n\r\n", status: 204},
		{name: "until close", in: "HTTP/1.1 200 OK\r\n\r\nall of it", status: 200, closing: true, untilClose: true},
		{name: "404 is read", in: "HTTP/1.1 404 Not Found\r\nContent-Length: 3\r\n\r\nno!", status: 404},
		{name: "signed length", in: "HTTP/1.1 200 OK\r\nContent-Length: +3\r\n\r\nabc", err: errProtocol},
		{name: "negative length", in: "HTTP/1.1 200 OK\r\nContent-Length: -3\r\n\r\nabc", err: errProtocol},
		{name: "empty length", in: "HTTP/1.1 200 OK\r\nContent-Length: \r\n\r\n", err: errProtocol},
		{name: "no colon", in: "HTTP/1.1 200 OK\r\nContent-Length 3\r\n\r\nabc", err: errProtocol},
		{name: "bad status line", in: "HTTP/2 200\r\n\r\n", err: errProtocol},
		{name: "bad chunk size", in: "HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\nzz\r\n", err: errProtocol},
		{name: "short body", in: "HTTP/1.1 200 OK\r\nContent-Length: 10\r\n\r\nabc", err: io.ErrUnexpectedEOF, untilClose: true},
		{name: "short head", in: "HTTP/1.1 200 OK\r\nContent-Le", err: io.ErrUnexpectedEOF, untilClose: true},
	} {
		t.Run(tc.name, func(t *testing.T) {
			in := tc.in
			if !tc.untilClose {
				in += "NEXT"
			}
			br := bufio.NewReaderSize(strings.NewReader(in), maxLine)
			status, closing, err := readResponse(br, tc.head)
			if tc.err != nil {
				if !errors.Is(err, tc.err) {
					t.Fatalf("err %v, want %v", err, tc.err)
				}
				return
			}
			if err != nil || status != tc.status || closing != tc.closing {
				t.Fatalf("status %d closing %v err %v; want %d %v nil", status, closing, err, tc.status, tc.closing)
			}
			rest, _ := io.ReadAll(br)
			if want := "NEXT"; tc.untilClose {
				if len(rest) != 0 {
					t.Errorf("left %q after a body that runs until close", rest)
				}
			} else if string(rest) != want {
				t.Errorf("left %q, want %q", rest, want)
			}
		})
	}
}

// readResponse never panics and never reads past what it was given; what
// it accepts with a Content-Length leaves the bytes after the body alone.
func FuzzReadResponse(f *testing.F) {
	for _, s := range []string{
		"HTTP/1.1 200 OK\r\nContent-Length: 5\r\n\r\nhello",
		"HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n5\r\nhello\r\n0\r\n\r\n",
		"HTTP/1.0 200 OK\r\nConnection: keep-alive\r\n\r\n",
		"HTTP/1.1 100 Continue\r\n\r\nHTTP/1.1 204 No Content\r\n\r\n",
	} {
		f.Add(s, false)
	}
	f.Fuzz(func(t *testing.T, in string, head bool) {
		br := bufio.NewReaderSize(strings.NewReader(in), maxLine)
		status, _, err := readResponse(br, head)
		if err == nil && (status < 100 || status > 999) {
			t.Errorf("status %d accepted", status)
		}
	})
}
