package http1

import (
	"bufio"
	"io"
	"strings"
	"testing"
)

const browserGET = "GET /static/app.js?v=3 HTTP/1.1\r\n" +
	"Host: www.example.com\r\n" +
	"User-Agent: Mozilla/5.0 (X11; Linux x86_64; rv:128.0) Gecko/20100101 Firefox/128.0\r\n" +
	"Accept: */*\r\n" +
	"Accept-Language: en-US,en;q=0.5\r\n" +
	"Accept-Encoding: gzip, deflate, br, zstd\r\n" +
	"Referer: https://www.example.com/\r\n" +
	"Connection: keep-alive\r\n" +
	"Cookie: session=4f1c2a9e8b7d6c5f; theme=dark\r\n" +
	"Sec-Fetch-Dest: script\r\n" +
	"Sec-Fetch-Mode: no-cors\r\n" +
	"If-None-Match: \"5d8c72a5edda8\"\r\n" +
	"\r\n"

const postChunked = "POST /api/items HTTP/1.1\r\n" +
	"Host: api.example.com\r\n" +
	"Content-Type: application/json\r\n" +
	"Transfer-Encoding: chunked\r\n" +
	"\r\n" +
	"1a\r\n{\"name\":\"widget\",\"qty\":12}\r\n" +
	"0\r\n\r\n"

const postLength = "POST /api/items HTTP/1.1\r\n" +
	"Host: api.example.com\r\n" +
	"Content-Type: application/json\r\n" +
	"Content-Length: 26\r\n" +
	"\r\n" +
	"{\"name\":\"widget\",\"qty\":12}"

const typicalResponse = "HTTP/1.1 200 OK\r\n" +
	"Date: Tue, 25 Nov 2026 10:12:34 GMT\r\n" +
	"Server: backend\r\n" +
	"Content-Type: text/html; charset=utf-8\r\n" +
	"Cache-Control: max-age=60\r\n" +
	"ETag: \"5d8c72a5edda8\"\r\n" +
	"Keep-Alive: timeout=5, max=100\r\n" +
	"Connection: keep-alive\r\n" +
	"Transfer-Encoding: chunked\r\n" +
	"\r\n" +
	"5\r\nhello\r\n0\r\n\r\n"

// loop is a reader that replays msg forever, so one bufio.Reader (one
// "connection") carries request after request.
type loop struct {
	msg string
	off int
}

func (l *loop) Read(p []byte) (int, error) {
	n := copy(p, l.msg[l.off:])
	l.off = (l.off + n) % len(l.msg)
	return n, nil
}

func TestParseRequestAllocatesNothing(t *testing.T) {
	for _, msg := range []string{browserGET, postChunked, postLength} {
		br := bufio.NewReader(&loop{msg: msg})
		var p Parser
		var req Request
		buf := make([]byte, 64)
		out := make([]byte, 0, 1024)
		run := func() {
			if err := p.ReadRequest(br, &req); err != nil {
				t.Fatal(err)
			}
			if _, err := p.Body().Forward(io.Discard, buf, req.Framing == FramingChunked); err != nil {
				t.Fatal(err)
			}
			out = AppendRequest(out[:0], &req, nil)
		}
		run() // warm the per-connection buffers
		if n := testing.AllocsPerRun(200, run); n != 0 {
			t.Errorf("%q...: %v allocs per request", msg[:20], n)
		}
	}
}

func TestParseResponseAllocatesNothing(t *testing.T) {
	br := bufio.NewReader(&loop{msg: typicalResponse})
	var p Parser
	var resp Response
	buf := make([]byte, 64)
	out := make([]byte, 0, 1024)
	get := []byte("GET")
	run := func() {
		if err := p.ReadResponse(br, &resp, get); err != nil {
			t.Fatal(err)
		}
		if _, err := p.Body().Forward(io.Discard, buf, true); err != nil {
			t.Fatal(err)
		}
		out = AppendResponse(out[:0], &resp, nil)
	}
	run()
	if n := testing.AllocsPerRun(200, run); n != 0 {
		t.Errorf("%v allocs per response", n)
	}
}

func benchRequests(b *testing.B, msg string) {
	br := bufio.NewReader(&loop{msg: msg})
	var p Parser
	var req Request
	buf := make([]byte, 4096)
	b.SetBytes(int64(len(msg)))
	b.ReportAllocs()
	for b.Loop() {
		if err := p.ReadRequest(br, &req); err != nil {
			b.Fatal(err)
		}
		if req.Framing != FramingNone {
			if _, err := p.Body().Forward(io.Discard, buf, false); err != nil {
				b.Fatal(err)
			}
		}
	}
}

func BenchmarkParseRequest(b *testing.B)                { benchRequests(b, browserGET) }
func BenchmarkParseRequestWithBody(b *testing.B)        { benchRequests(b, postLength) }
func BenchmarkParseRequestWithChunkedBody(b *testing.B) { benchRequests(b, postChunked) }

func BenchmarkParseResponse(b *testing.B) {
	br := bufio.NewReader(&loop{msg: typicalResponse})
	var p Parser
	var resp Response
	buf := make([]byte, 4096)
	get := []byte("GET")
	b.SetBytes(int64(len(typicalResponse)))
	b.ReportAllocs()
	for b.Loop() {
		if err := p.ReadResponse(br, &resp, get); err != nil {
			b.Fatal(err)
		}
		if _, err := p.Body().Forward(io.Discard, buf, false); err != nil {
			b.Fatal(err)
		}
	}
}

func BenchmarkAppendRequest(b *testing.B) {
	var p Parser
	var req Request
	if err := p.ReadRequest(bufio.NewReader(strings.NewReader(browserGET)), &req); err != nil {
		b.Fatal(err)
	}
	out := make([]byte, 0, 2048)
	xff := []Header{{Name: []byte("X-Forwarded-For"), Value: []byte("10.1.2.3")}}
	o := &HeadOptions{Extra: xff}
	b.ReportAllocs()
	for b.Loop() {
		out = AppendRequest(out[:0], &req, o)
	}
}

// BenchmarkNetHTTPReadRequest is the reference: the same head through
// net/http.ReadRequest.
func BenchmarkNetHTTPReadRequest(b *testing.B) {
	br := bufio.NewReader(&loop{msg: browserGET})
	b.SetBytes(int64(len(browserGET)))
	b.ReportAllocs()
	for b.Loop() {
		if _, err := httpReadRequest(br); err != nil {
			b.Fatal(err)
		}
	}
}
