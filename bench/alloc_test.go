package bench

import (
	"bufio"
	"context"
	"net"
	"testing"
	"time"

	"github.com/tetherproxy/tether/proxy/certs/testpki"
)

// fixedResponse is what serveFixed answers.
var fixedResponse = []byte("HTTP/1.1 200 OK\r\nContent-Length: 64\r\n\r\n" +
	"bbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbb")

// serveFixed answers every bodiless request with fixedResponse and
// allocates nothing per request, so that an allocation count of the
// process is the client's.
func serveFixed(s *testServer, c net.Conn) {
	br := bufio.NewReader(c)
	for {
		for {
			line, err := br.ReadSlice('\n')
			if err != nil {
				return
			}
			if len(line) <= 2 {
				break
			}
		}
		s.requests.Add(1)
		if _, err := c.Write(fixedResponse); err != nil {
			return
		}
	}
}

// newTestWorker returns a worker of a one-worker phase against o.Target,
// with its conn not yet opened.
func newTestWorker(t testing.TB, o Options) *worker {
	t.Helper()
	o = o.withDefaults()
	tg, err := resolve(context.Background(), o)
	if err != nil {
		t.Fatal(err)
	}
	var ct *clientTLS
	if tg.tls {
		if ct, err = newClientTLS(o, tg); err != nil {
			t.Fatal(err)
		}
	}
	p := newPhase(o, tg, ct)
	w := p.newWorker(0)
	p.workers = []*worker{w}
	t.Cleanup(func() { w.closeConn(false) })
	return w
}

// The plain http request loop on a kept-alive conn allocates nothing per
// request (the TLS support must not change that).
func TestPlainHTTPRequestAllocatesNothing(t *testing.T) {
	s := (&testServer{serve: serveFixed}).start(t)
	w := newTestWorker(t, Options{Target: s.url(), Conn: ConnLong, Concurrency: 1})
	ctx := context.Background()
	if k := w.once(ctx, time.Now()); k != kindOK {
		t.Fatalf("first request: kind %d", k)
	}
	allocs := testing.AllocsPerRun(500, func() {
		if k := w.once(ctx, time.Now()); k != kindOK {
			t.Fatalf("kind %d", k)
		}
	})
	if allocs != 0 {
		t.Errorf("%v allocations per request, want 0", allocs)
	}
}

func BenchmarkRequestHTTPLong(b *testing.B) {
	s := (&testServer{serve: serveFixed}).start(b)
	benchOnce(b, newTestWorker(b, Options{Target: s.url(), Conn: ConnLong, Concurrency: 1}))
}

// BenchmarkRequestHTTPShort is one request on a new connection, closed by
// the client after the response (--conn short, the default --close client).
func BenchmarkRequestHTTPShort(b *testing.B) {
	s := (&testServer{serve: serveFixed}).start(b)
	benchOnce(b, newTestWorker(b, Options{Target: s.url(), Conn: ConnShort, Concurrency: 1}))
}

// BenchmarkRequestHTTPShortServerCloses is --conn short --close server: the
// request asks Connection: close and the client waits for the server's FIN.
func BenchmarkRequestHTTPShortServerCloses(b *testing.B) {
	s := (&testServer{}).start(b)
	benchOnce(b, newTestWorker(b, Options{Target: s.url(), Conn: ConnShort, Close: CloseServer, Concurrency: 1}))
}

func BenchmarkRequestTCPLong(b *testing.B) {
	s := (&testServer{serve: serveEcho}).start(b)
	benchOnce(b, newTestWorker(b, Options{Target: s.addr(), Conn: ConnLong, Concurrency: 1}))
}

func BenchmarkRequestTCPShort(b *testing.B) {
	s := (&testServer{serve: serveEcho}).start(b)
	benchOnce(b, newTestWorker(b, Options{Target: s.addr(), Conn: ConnShort, Concurrency: 1}))
}

func BenchmarkRequestHTTPSLong(b *testing.B) {
	ca := testpki.New(b)
	s := startTLSServer(b, ca, nil)
	benchOnce(b, newTestWorker(b, Options{Target: s.url(), Conn: ConnLong, Concurrency: 1, CACert: ca.File}))
}

// BenchmarkRequestHTTPSShort is a full handshake per request (x25519,
// verified against the test CA), both sides in this process.
func BenchmarkRequestHTTPSShort(b *testing.B) {
	ca := testpki.New(b)
	s := startTLSServer(b, ca, nil)
	benchOnce(b, newTestWorker(b, Options{Target: s.url(), Conn: ConnShort, Concurrency: 1, CACert: ca.File, TLSGroups: []string{"x25519"}}))
}

func benchOnce(b *testing.B, w *worker) {
	ctx := context.Background()
	b.ReportAllocs()
	for b.Loop() {
		if k := w.once(ctx, time.Now()); k != kindOK {
			b.Fatalf("kind %d", k)
		}
	}
}
