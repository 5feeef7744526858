package proxy

import (
	"bufio"
	"crypto/tls"
	"fmt"
	"io"
	"net"
	"net/http"
	"strings"
	"sync/atomic"
	"testing"

	"github.com/tetherproxy/tether/proxy/certs/testpki"
	"github.com/tetherproxy/tether/sockopt/socktest"
)

// A client that reached tether over TLS is an https client: the member is
// told X-Forwarded-Proto: https (a member that redirects http to https
// would otherwise send the client round in a loop).
func TestHTTPSVirtualServerForwardsProtoHTTPS(t *testing.T) {
	ca := testpki.New(t)
	leaf := ca.Issue(t, "a", "a.test", testpki.Options{})
	seen := make(chan string, 1)
	be := startHTTPBackend(t, func(w http.ResponseWriter, r *http.Request) {
		select {
		case seen <- r.Header.Get("X-Forwarded-Proto"):
		default:
		}
		_, _ = io.WriteString(w, "ok")
	}, nil)
	p := startProxy(t, httpConfig(tlsBlock(leaf.CertFile, leaf.KeyFile, ""), "", be.Addr()))
	if status, body, _ := tlsGet(t, p.addr("vs"), ca.ClientConfig("a.test")); status != "200 OK" || body != "ok" {
		t.Fatalf("got %q %q", status, body)
	}
	if got := <-seen; got != "https" {
		t.Fatalf("X-Forwarded-Proto = %q for a TLS client, want https", got)
	}
}

// Bytes a TLS member sends past the end of a response (a body longer than
// its Content-Length, a second answer) make its conn stale, as they do on
// a plain conn: here they arrive in the same TLS record as the response,
// so crypto/tls holds them decrypted and the socket shows nothing. The
// next request must not be sent on that conn, where the stray bytes would
// be read as its answer (another client's, with reuse = "shared").
func TestTLSMemberStrayBytesAfterResponseMakeItsConnStale(t *testing.T) {
	ca := testpki.New(t)
	leaf := ca.Issue(t, "member", "member.test", testpki.Options{})
	var conns atomic.Int64
	be := socktest.Start(t, func(raw *net.TCPConn) {
		n := conns.Add(1)
		// Full-size records from the start: the response and what follows
		// it share one.
		c := tls.Server(raw, &tls.Config{Certificates: []tls.Certificate{leaf.Pair}, DynamicRecordSizingDisabled: true})
		defer c.Close()
		br := bufio.NewReader(c)
		for {
			req, err := http.ReadRequest(br)
			if err != nil {
				return
			}
			_ = req.Body.Close()
			body := fmt.Sprintf("conn %d %s ", n, req.URL.Path)
			if req.URL.Path == "/first" {
				// One write, one TLS record: a 12000-byte body, then a
				// whole second response nobody asked for.
				body += strings.Repeat("x", 12000-len(body))
				stray := "HTTP/1.1 200 OK\r\nContent-Length: 5\r\n\r\nstray"
				_, _ = fmt.Fprintf(c, "HTTP/1.1 200 OK\r\nContent-Length: %d\r\n\r\n%s%s", len(body), body, stray)
				continue
			}
			_, _ = fmt.Fprintf(c, "HTTP/1.1 200 OK\r\nContent-Length: %d\r\n\r\n%s", len(body), body)
		}
	})
	p := startProxy(t, httpConfig("", fmt.Sprintf("\n[pool.p.tls]\nserver_name = \"member.test\"\nca = %q\n", ca.File), be.Addr()))
	out := rawExchange(t, p.addr("vs"), "GET /first HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n")
	if !strings.HasPrefix(out, "HTTP/1.1 200 ") || !strings.Contains(out, "conn 1 /first ") || strings.Contains(out, "stray") {
		t.Fatalf("first response %.200q", out)
	}
	out = rawExchange(t, p.addr("vs"), "GET /second HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n")
	if !strings.HasSuffix(out, "conn 2 /second ") {
		t.Fatalf("second client got %.300q, want its own answer on a new member conn", out)
	}
}
