package http1

import (
	"bufio"
	"bytes"
	"errors"
	"fmt"
	"io"
	"net/http"
	"net/http/httputil"
	"net/textproto"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"testing"
)

// acceptedRequests seed the differential fuzzer with valid messages.
var acceptedRequests = []string{
	browserGET, postChunked, postLength,
	"GET / HTTP/1.0\r\n\r\n",
	"GET http://a.example:8080/x?y HTTP/1.1\r\nHost: b\r\n\r\n",
	"CONNECT a.example:443 HTTP/1.1\r\nHost: a.example:443\r\n\r\n",
	"OPTIONS * HTTP/1.1\r\nHost: a\r\n\r\n",
	"POST / HTTP/1.1\r\nHost: a\r\nTransfer-Encoding: chunked\r\nTrailer: X-Sum\r\n\r\n5;a=b;c=\"d\"\r\nhello\r\n0\r\nX-Sum: 1\r\n\r\n",
	"GET / HTTP/1.1\r\nHost: a\r\nPragma: no-cache\r\nConnection: close, X\r\nX: y\r\n\r\n",
}

// A disagreement with net/http is allowed only when it is one of these
// documented rules. stricterThanNetHTTP: we reject (with that sentinel),
// net/http.ReadRequest accepts. The predicate, when set, narrows the rule
// to the inputs it really covers.
var stricterThanNetHTTP = []struct {
	err  error
	why  string
	only func(in []byte) bool
}{
	{ErrBareLF, "net/http accepts bare LF line endings; we reject", nil},
	{ErrBareCR, "net/http trims a CR before CRLF as whitespace; we reject every bare CR", nil},
	{ErrObsFold, "net/http unfolds obs-fold; we reject", nil},
	{ErrSpaceBeforeColon, "net/http accepts whitespace before the colon; we reject", nil},
	{ErrInvalidHeaderName, "net/http accepts SP inside a field name (uncanonicalised); we reject", hasSpaceInName},
	{ErrMissingHost, "net/http.ReadRequest leaves the Host requirement to its Server; we reject", nil},
	{ErrInvalidHost, "net/http.ReadRequest does not validate Host; we do", nil},
	{ErrDuplicateContentLength, "net/http merges identical repeated Content-Length; we reject", nil},
	{ErrContentLengthWithTE, "net/http lets chunked override Content-Length; we reject both together", nil},
	{ErrTransferEncodingHTTP10, "net/http ignores Transfer-Encoding in HTTP/1.0; we reject", nil},
	{ErrUnsupportedVersion, "net/http.ReadRequest parses any HTTP/d.d; we reject major ≠ 1 (505)", nil},
	{ErrInvalidTarget, "net/http accepts obs-text and '#' in targets, '*' for any method, CONNECT /path or an empty CONNECT authority, any scheme, userinfo, empty ports and %-escapes in hosts; we reject", nonOriginOrOdd},
	{ErrURITooLong, "net/http.ReadRequest has no request-line limit", nil},
	{ErrHeaderTooLarge, "net/http.ReadRequest has no field-section limit", nil},
	{ErrTooManyHeaders, "net/http.ReadRequest has no field-count limit", nil},
	{ErrBadChunk, "net/http ignores chunk-extension syntax and whitespace after the chunk size or extensions; we reject", nil},
	{ErrChunkExtensionTooLong, "we bound chunk extensions per line; net/http only by overhead ratio", nil},
	{ErrChunkSizeOverflow, "net/http accepts chunk sizes up to 2^64-1; we cap at int64", nil},
	{ErrBadTrailerField, "net/http checks the Trailer field only with chunked; we always", nil},
	{ErrInvalidHeaderValue, "net/http parses trailers with its lenient reader only when present; same value rules otherwise", inTrailer},
}

// netHTTPStricter: net/http rejects (error text), we accept.
var netHTTPStricter = []struct{ substr, why string }{
	{"too much non-data", "net/http bounds chunk overhead by a ratio to data; we bound extensions by bytes"},
	{"suspiciously long trailer", "net/http bounds trailers by its bufio size (4 KiB); we by MaxHeaderBytes"},
}

func hasSpaceInName(in []byte) bool {
	head, _, _ := bytes.Cut(in, []byte("\r\n\r\n"))
	for _, l := range bytes.Split(head, []byte("\n"))[1:] {
		if name, _, ok := bytes.Cut(l, []byte(":")); ok && bytes.IndexByte(name, ' ') > 0 {
			return true
		}
	}
	return false
}

func nonOriginOrOdd(in []byte) bool {
	line, _, _ := bytes.Cut(in, []byte("\n"))
	parts := bytes.SplitN(line, []byte(" "), 3)
	if len(parts) >= 2 && string(parts[0]) == "CONNECT" {
		return true // net/http takes any CONNECT target as an authority, even an empty one
	}
	if len(parts) < 2 || len(parts[1]) == 0 {
		return false
	}
	t := parts[1]
	if t[0] != '/' || bytes.IndexByte(t, '#') >= 0 || string(parts[0]) == "CONNECT" {
		return true
	}
	for _, c := range t {
		if c >= 0x80 {
			return true
		}
	}
	return false
}

func inTrailer(in []byte) bool {
	_, body, _ := bytes.Cut(in, []byte("\r\n\r\n"))
	return bytes.Contains(body, []byte("0\r\n"))
}

// fuzzLimits are small so that the fuzzer reaches every limit with small
// inputs (and minimises quickly).
var fuzzLimits = Limits{MaxRequestLine: 512, MaxHeaderBytes: 1024, MaxHeaders: 16, MaxChunkExtension: 32}

// addSeed skips the huge table entries (they test default limits; the
// fuzzer would spend its time minimising them).
func addSeed(f *testing.F, s string) {
	if len(s) <= 4096 {
		f.Add([]byte(s))
	}
}

type parsed struct {
	method, target, proto, host string
	header                      map[string][]string
	body                        []byte
	close                       bool
	err                         error
}

func parseOurs(in []byte) parsed {
	p := Parser{Limits: fuzzLimits}
	var req Request
	if err := p.ReadRequest(bufio.NewReader(bytes.NewReader(in)), &req); err != nil {
		return parsed{err: err}
	}
	body, err := io.ReadAll(p.Body())
	if err != nil {
		return parsed{err: err}
	}
	h := map[string][]string{}
	for _, f := range req.Headers {
		k := textproto.CanonicalMIMEHeaderKey(string(f.Name))
		h[k] = append(h[k], string(f.Value))
	}
	return parsed{
		method: string(req.Method), target: string(req.Target), proto: string(req.Proto),
		host: string(req.Host), header: h, body: body, close: !req.KeepAlive,
	}
}

func parseNetHTTP(in []byte) parsed {
	r, err := http.ReadRequest(bufio.NewReader(bytes.NewReader(in)))
	if err != nil {
		return parsed{err: err}
	}
	body, err := io.ReadAll(r.Body)
	if err != nil {
		return parsed{err: err}
	}
	return parsed{
		method: r.Method, target: r.RequestURI, proto: r.Proto, host: r.Host,
		header: r.Header, body: body, close: r.Close,
	}
}

// normalise applies to our fields what net/http does to its Header map.
func normalise(h map[string][]string) {
	delete(h, "Host") // net/http moves it to Request.Host
	if _, ok := h["Transfer-Encoding"]; ok {
		delete(h, "Transfer-Encoding")
		delete(h, "Trailer")
	}
	if pv, ok := h["Pragma"]; ok && pv[0] == "no-cache" {
		if _, ok := h["Cache-Control"]; !ok {
			h["Cache-Control"] = []string{"no-cache"}
		}
	}
}

func FuzzRequestDifferential(f *testing.F) {
	for _, s := range acceptedRequests {
		addSeed(f, s)
	}
	for _, tc := range requestRejections {
		addSeed(f, tc.in)
	}
	for _, tc := range chunkedRejections {
		addSeed(f, "POST / HTTP/1.1\r\nHost: a\r\nTransfer-Encoding: chunked\r\n\r\n"+tc.in)
	}
	f.Fuzz(func(t *testing.T, in []byte) {
		ours, theirs := parseOurs(in), parseNetHTTP(in)
		switch {
		case ours.err == nil && theirs.err == nil:
			normalise(ours.header)
			if ours.method != theirs.method || ours.target != theirs.target || ours.proto != theirs.proto ||
				ours.host != theirs.host || ours.close != theirs.close {
				t.Fatalf("request line differs:\nours   %q %q %q host %q close %v\ntheirs %q %q %q host %q close %v",
					ours.method, ours.target, ours.proto, ours.host, ours.close,
					theirs.method, theirs.target, theirs.proto, theirs.host, theirs.close)
			}
			if !mapsEqual(ours.header, theirs.header) {
				t.Fatalf("headers differ:\nours   %q\ntheirs %q", ours.header, theirs.header)
			}
			if !bytes.Equal(ours.body, theirs.body) {
				t.Fatalf("bodies differ: ours %q theirs %q", ours.body, theirs.body)
			}
		case ours.err != nil && theirs.err == nil:
			for _, r := range stricterThanNetHTTP {
				if errors.Is(ours.err, r.err) && (r.only == nil || r.only(in)) {
					return
				}
			}
			t.Fatalf("we reject (%v), net/http accepts, and no documented rule covers it: %q", ours.err, in)
		case ours.err == nil && theirs.err != nil:
			for _, r := range netHTTPStricter {
				if strings.Contains(theirs.err.Error(), r.substr) {
					return
				}
			}
			t.Fatalf("net/http rejects (%v), we accept, and no documented rule covers it: %q", theirs.err, in)
		}
	})
}

func mapsEqual(a, b map[string][]string) bool {
	if len(a) != len(b) {
		return false
	}
	for k, v := range a {
		if !slices.Equal(v, b[k]) {
			return false
		}
	}
	return true
}

var responseSeeds = []string{
	typicalResponse,
	"HTTP/1.1 200 OK\r\nContent-Length: 5\r\n\r\nhello",
	"HTTP/1.1 200 OK\r\n\r\nuntil close",
	"HTTP/1.1 204 No Content\r\nContent-Length: 3\r\n\r\n",
	"HTTP/1.1 304 Not Modified\r\nTransfer-Encoding: chunked\r\n\r\n",
	"HTTP/1.1 100 Continue\r\n\r\nHTTP/1.1 200 OK\r\nContent-Length: 0\r\n\r\n",
	"HTTP/1.1 101 Switching Protocols\r\nUpgrade: websocket\r\nConnection: upgrade\r\n\r\n",
	"HTTP/1.0 200 OK\r\nConnection: keep-alive\r\nKeep-Alive: timeout=5, max=10\r\nContent-Length: 1\r\n\r\nx",
	"HTTP/1.1 200 OK\r\nContent-Length: 1\r\nTransfer-Encoding: chunked\r\n\r\n0\r\n\r\n",
	"HTTP/1.1 200\r\nTransfer-Encoding: chunked\r\n\r\n5\r\nhello\r\n0\r\nT: 1\r\n\r\n",
}

func FuzzResponse(f *testing.F) {
	for _, s := range responseSeeds {
		for m := uint8(0); m < 3; m++ {
			f.Add(m, []byte(s))
		}
	}
	methods := [][]byte{[]byte("GET"), []byte("HEAD"), []byte("CONNECT")}
	f.Fuzz(func(t *testing.T, m uint8, in []byte) {
		method := methods[int(m)%len(methods)]
		p := Parser{Limits: fuzzLimits}
		var resp Response
		br := bufio.NewReader(bytes.NewReader(in))
		for range 4 { // informational heads may precede the final one
			if err := p.ReadResponse(br, &resp, method); err != nil {
				if StatusFor(err) == 0 && err != io.EOF && !errors.Is(err, io.ErrUnexpectedEOF) {
					t.Fatalf("error outside the codec's set: %v", err)
				}
				return
			}
			checkResponseFraming(t, &resp, method)
			body, err := io.ReadAll(p.Body())
			if len(body) > len(in) {
				t.Fatalf("body of %d bytes from %d input bytes", len(body), len(in))
			}
			if err == nil && resp.Framing == FramingLength && int64(len(body)) != resp.ContentLength {
				t.Fatalf("length body %d bytes, Content-Length %d", len(body), resp.ContentLength)
			}
			if err != nil || !resp.Informational() || resp.Tunnel {
				return
			}
		}
	})
}

func checkResponseFraming(t *testing.T, r *Response, method []byte) {
	t.Helper()
	noBody := r.Status < 200 || r.Status == 204 || r.Status == 304 || string(method) == "HEAD" || r.Tunnel
	switch {
	case r.Status < 100 || r.Status > 599:
		t.Fatalf("status %d accepted", r.Status)
	case noBody && r.Framing != FramingNone:
		t.Fatalf("status %d to %s framed %v", r.Status, method, r.Framing)
	case !noBody && r.Framing == FramingNone:
		t.Fatalf("status %d to %s without a body", r.Status, method)
	case r.Framing == FramingUntilClose && r.KeepAlive:
		t.Fatal("until-close response kept alive")
	case r.Tunnel && r.KeepAlive:
		t.Fatal("tunnel kept alive")
	case r.Framing == FramingLength && r.ContentLength < 0:
		t.Fatal("length framing without a length")
	}
}

var chunkedSeeds = []string{
	"5\r\nhello\r\n0\r\n\r\n",
	"5;a=b\r\nhello\r\n6;c=\"d\\\"e\";f\r\n world\r\n0\r\nT: v\r\n\r\n",
	"0\r\n\r\n",
	"A\r\n0123456789\r\n0\r\n\r\n",
	"ffffffffffffffff\r\n",
	"1;" + strings.Repeat("x", 300) + "\r\na\r\n0\r\n\r\n",
}

// FuzzChunked checks the chunked decoder alone: it never panics, never
// returns more bytes than it was given, and where it accepts, the reference
// decoder (net/http/internal through httputil.NewChunkedReader, which stops
// before the trailer section) produces the same bytes.
func FuzzChunked(f *testing.F) {
	for _, s := range chunkedSeeds {
		addSeed(f, s)
	}
	for _, tc := range chunkedRejections {
		addSeed(f, tc.in)
	}
	f.Fuzz(func(t *testing.T, in []byte) {
		var b BodyReader
		b.Reset(bufio.NewReader(bytes.NewReader(in)), FramingChunked, 0, fuzzLimits)
		ours, oerr := io.ReadAll(&b)
		if len(ours) > len(in) {
			t.Fatalf("decoded %d bytes from %d", len(ours), len(in))
		}
		theirs, terr := io.ReadAll(httputil.NewChunkedReader(bufio.NewReader(bytes.NewReader(in))))
		switch {
		case oerr == nil && terr == nil:
			if !bytes.Equal(ours, theirs) {
				t.Fatalf("decoded differently: ours %q theirs %q", ours, theirs)
			}
		case oerr == nil:
			if !strings.Contains(terr.Error(), "too much non-data") {
				t.Fatalf("we accept %q, reference rejects: %v", in, terr)
			}
		case terr == nil:
			// Documented stricter rules (extension syntax, trailing
			// whitespace, int64 cap, extension bounds) and trailer-section
			// errors, which the reference does not read. What we did
			// decode must be a prefix of the reference's bytes.
			if !bytes.HasPrefix(theirs, ours) {
				t.Fatalf("we failed (%v) after decoding %q, reference decoded %q", oerr, ours, theirs)
			}
			if StatusFor(oerr) != 400 && StatusFor(oerr) != 431 {
				t.Fatalf("rejection outside the codec's errors: %v", oerr)
			}
		}
	})
}

// TestWriteSeedCorpus writes the seeds (the smuggling corpus included) as
// files under testdata/fuzz; run with HTTP1_WRITE_CORPUS=1 after changing
// the tables.
func TestWriteSeedCorpus(t *testing.T) {
	if os.Getenv("HTTP1_WRITE_CORPUS") == "" {
		t.Skip("set HTTP1_WRITE_CORPUS=1 to rewrite testdata/fuzz seeds")
	}
	write := func(target, name string, content string) {
		dir := filepath.Join("testdata", "fuzz", target)
		if err := os.MkdirAll(dir, 0o755); err != nil {
			t.Fatal(err)
		}
		if err := os.WriteFile(filepath.Join(dir, name), []byte(content), 0o644); err != nil {
			t.Fatal(err)
		}
	}
	slug := func(s string) string {
		return strings.Map(func(r rune) rune {
			if r >= 'a' && r <= 'z' || r >= '0' && r <= '9' {
				return r
			}
			return '-'
		}, strings.ToLower(s))
	}
	bytesEntry := func(s string) string { return fmt.Sprintf("go test fuzz v1\n[]byte(%q)\n", s) }
	write = func(write func(string, string, string)) func(string, string, string) {
		return func(target, name, content string) {
			if len(content) <= 4096+64 {
				write(target, name, content)
			}
		}
	}(write)
	for i, s := range acceptedRequests {
		write("FuzzRequestDifferential", fmt.Sprintf("accept-%02d", i), bytesEntry(s))
	}
	for _, tc := range requestRejections {
		write("FuzzRequestDifferential", "smuggle-"+slug(tc.name), bytesEntry(tc.in))
	}
	for _, tc := range chunkedRejections {
		write("FuzzRequestDifferential", "chunked-"+slug(tc.name),
			bytesEntry("POST / HTTP/1.1\r\nHost: a\r\nTransfer-Encoding: chunked\r\n\r\n"+tc.in))
		write("FuzzChunked", "reject-"+slug(tc.name), bytesEntry(tc.in))
	}
	for i, s := range chunkedSeeds {
		write("FuzzChunked", fmt.Sprintf("seed-%02d", i), bytesEntry(s))
	}
	for i, s := range responseSeeds {
		write("FuzzResponse", fmt.Sprintf("seed-%02d", i), fmt.Sprintf("go test fuzz v1\nuint8(%d)\n[]byte(%q)\n", i%3, s))
	}
}
